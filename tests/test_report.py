"""`sidbench report`: tables equal the metrics they summarise, bootstrap intervals, merged runs, the
Markdown/LaTeX/CSV forms, and an offline HTML page whose images exist (and renders in chromium)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from sidbench.cli import main
from sidbench.results.metrics import metrics_table

SPLITS = {"progan": "gan", "stylegan": "gan", "ldm": "diffusion", "glide": "diffusion"}
# detector -> (separation of fake logits, bias): higher separation = better AP; bias moves accuracy
DETECTORS = {"rine": (3.0, 0.0), "univfd": (1.5, 1.0), "clip_svm": (0.8, -0.5)}
PERTURBATIONS = {"none": 1.0, "jpeg90": 0.9, "jpeg65": 0.7, "jpeg40": 0.5, "blur1": 0.8}


def make_results(out: Path, n: int = 40, detectors=DETECTORS, splits=SPLITS, perturbations=PERTURBATIONS,
                 seed: int = 0, training: dict | None = None) -> Path:
    """A results folder like `sidbench run` writes: scores.csv, metrics.csv (metrics_table), run.json."""
    rng = np.random.default_rng(seed)
    rows = []
    for det, (sep, bias) in detectors.items():
        for split, group in splits.items():
            for pert, keep in perturbations.items():
                for i in range(n):
                    label = int(i >= n // 2)
                    logit = rng.normal() + bias + label * sep * keep - sep / 2
                    path = f"/data/{split}/{'1_fake' if label else '0_real'}/{i:05d}.png"
                    rows.append((det, split, group, split if label else "", pert, "center_crop", path, label,
                                 logit, 1 / (1 + np.exp(-logit))))
    scores = pd.DataFrame(rows, columns=["detector", "split", "group", "generator", "perturbation", "protocol",
                                         "path", "label", "logit", "prob"])
    out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out / "scores.csv", index=False)
    metrics_table(scores).to_csv(out / "metrics.csv", index=False)
    training = training if training is not None else {"rine": ["progan"], "univfd": ["progan", "LDM"]}
    info = {"name": out.name, "detectors": [{"name": d, "training_data": training.get(d, [])} for d in detectors],
            "counts": {"test": n * len(splits), "skipped": 0}, "backbones": {"clip-tiny": {}},
            "environment": {"sidbench": "0.1.0", "git_commit": "abc"}}
    (out / "run.json").write_text(json.dumps(info))
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return make_results(tmp_path_factory.mktemp("runs") / "run1")


def report(args: list[str], capsys) -> str:
    assert main(["report", *map(str, args)]) == 0
    return capsys.readouterr().out


# -- tables --------------------------------------------------------------------------------------

def test_csv_values_equal_metrics_csv(results, capsys):
    text = report([results, "--format", "csv", "--metric", "acc,ap,auc,f1"], capsys)
    got = pd.read_csv(pd.io.common.StringIO(text), keep_default_na=False)
    want = pd.read_csv(results / "metrics.csv", keep_default_na=False)
    for metric in ("acc", "ap", "auc", "f1"):
        merged = got[got["metric"] == metric].merge(want, on=["detector", "split", "perturbation"])
        assert len(merged) == len(want)  # every per-split and mean row, once
        np.testing.assert_allclose(merged["value"].astype(float), merged[metric].astype(float), rtol=1e-12)
    # spot check one cell against scikit-learn directly
    scores = pd.read_csv(results / "scores.csv")
    s = scores[(scores.detector == "univfd") & (scores.split == "ldm") & (scores.perturbation == "none")]
    row = got[(got.detector == "univfd") & (got.split == "ldm") & (got.perturbation == "none")].set_index("metric")
    assert row.at["ap", "value"] == pytest.approx(average_precision_score(s.label, s.logit))
    assert row.at["f1", "value"] == pytest.approx(f1_score(s.label, s.logit > 0))
    seen = got[(got.metric == "ap") & (got.perturbation == "none")].set_index(["detector", "split"])["seen_in_training"]
    assert seen[("rine", "progan")] and seen[("univfd", "ldm")]  # "LDM" matches case-insensitively
    assert not seen[("rine", "ldm")] and not seen[("clip_svm", "progan")]


def parse_markdown_tables(text: str) -> dict[str, pd.DataFrame]:
    tables, title = {}, None
    for block in text.split("\n\n"):
        if block.startswith("### "):
            title = block[4:].strip()
        elif block.startswith("|"):
            lines = [ln.strip().strip("|").split("|") for ln in block.strip().splitlines()]
            header = [c.strip() for c in lines[0]]
            tables[title] = pd.DataFrame([[c.strip() for c in r] for r in lines[2:]], columns=header).set_index("detector")
    return tables


def test_markdown_tables_match_metrics_and_mark_best_and_seen(results, capsys):
    tables = parse_markdown_tables(report([results, "--format", "md"], capsys))
    assert list(tables) == [f"{m} (%), perturbation `{p}`" for p in ("none", "blur1", "jpeg40", "jpeg65", "jpeg90")
                            for m in ("Accuracy", "Average precision")]
    ap = tables["Average precision (%), perturbation `none`"]
    assert list(ap.columns) == ["progan", "stylegan", "glide", "ldm", "mean:gan", "mean:diffusion", "mean:all"]
    metrics = pd.read_csv(results / "metrics.csv")
    clean = metrics[metrics.perturbation == "none"]
    order = clean[clean.split == "mean:all"].sort_values("ap", ascending=False)["detector"].tolist()
    assert list(ap.index) == order == ["rine", "univfd", "clip_svm"]
    for det in ap.index:
        for split in ap.columns:
            cell = ap.at[det, split]
            value = float(re.search(r"[\d.]+", cell).group())
            want = clean[(clean.detector == det) & (clean.split == split)]["ap"].item()
            assert value == pytest.approx(100 * want, abs=0.051)
            best = 100 * clean[clean.split == split]["ap"].max()
            assert cell.startswith("**") == (round(100 * want, 1) == round(best, 1))
    assert ap.at["rine", "progan"].endswith("†") and not ap.at["rine", "ldm"].endswith("†")


def test_latex_is_booktabs_with_bold_best(results, capsys):
    text = report([results, "--format", "latex", "--metric", "auc"], capsys)
    tables = text.split(r"\end{table}")[:-1]
    assert len(tables) == len(PERTURBATIONS)
    first = tables[0]
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{lrrrrrrr}"):
        assert first.count(rule) == 1
    body = first.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    rows = [ln.removesuffix(r"\\").strip().split(" & ") for ln in body]
    assert [r[0] for r in rows] == ["rine", "univfd", "clip\\_svm"] and all(len(r) == 8 for r in rows)
    bold_rows = {c: [i for i, r in enumerate(rows) if r[c].startswith(r"\textbf{")] for c in range(1, 8)}
    assert all(v == [0] for v in bold_rows.values())  # rine separates best everywhere on clean images
    assert rows[0][1].endswith(r"$^\dagger$")


def test_several_runs_merge_and_clashes_are_named_by_run(tmp_path, capsys):
    run1 = make_results(tmp_path / "run1", detectors={"rine": (3, 0), "univfd": (1.5, 0)})
    run2 = make_results(tmp_path / "run2", detectors={"rine": (1, 0)}, seed=1)  # same cells: a clash
    run3 = make_results(tmp_path / "run3", detectors={"univfd": (1.5, 0)}, splits={"dalle": "diffusion"}, seed=2)
    text = report([run1, run2, run3, "--format", "csv", "--metric", "ap"], capsys)
    got = pd.read_csv(pd.io.common.StringIO(text), keep_default_na=False)
    assert set(got.detector) == {"rine (run1)", "rine (run2)", "univfd"}
    # univfd: run1's four splits and run3's dalle in one row; its mean is over all five
    u = got[(got.detector == "univfd") & (got.perturbation == "none")].set_index("split")["value"]
    assert set(u.index) == {"progan", "stylegan", "ldm", "glide", "dalle", "mean:gan", "mean:diffusion", "mean:all"}
    m1, m3 = pd.read_csv(run1 / "metrics.csv"), pd.read_csv(run3 / "metrics.csv")
    per_split = pd.concat([m1[(m1.detector == "univfd") & ~m1.split.str.startswith("mean:")], m3[~m3.split.str.startswith("mean:")]])
    per_split = per_split[per_split.perturbation == "none"]
    assert u["mean:all"] == pytest.approx(per_split["ap"].mean())
    assert u["mean:diffusion"] == pytest.approx(per_split[per_split.group == "diffusion"]["ap"].mean())
    r2 = got[(got.detector == "rine (run2)") & (got.split == "ldm") & (got.perturbation == "none")]["value"].item()
    m2 = pd.read_csv(run2 / "metrics.csv")
    assert r2 == m2[(m2.split == "ldm") & (m2.perturbation == "none")]["ap"].item()


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.csv" in capsys.readouterr().err
    run = make_results(tmp_path / "r", n=8, perturbations={"none": 1.0})
    assert main(["report", str(run), "--metric", "acc,recall"]) == 2
    assert "unknown metric(s) recall" in capsys.readouterr().err
    assert main(["report", str(run), str(make_results(tmp_path / "s", n=8, perturbations={"none": 1.0}))]) == 2
    assert "--out" in capsys.readouterr().err
    (run / "scores.csv").unlink()
    assert main(["report", str(run), "--format", "md", "--bootstrap", "10"]) == 2
    assert "scores.csv is missing" in capsys.readouterr().err


# -- bootstrap -----------------------------------------------------------------------------------

def test_weighted_metrics_match_sklearn_with_sample_weights():
    from sidbench.reports.bootstrap import stratified_counts, weighted_metrics

    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(30, int), np.ones(20, int)]
    s = np.round(rng.normal(size=50) + y, 1)  # rounding makes ties, which AP and AUC must handle
    w = stratified_counts(y, 5, rng)
    assert (w[:, y == 0].sum(1) == 30).all() and (w[:, y == 1].sum(1) == 20).all()
    got = weighted_metrics(y, s, w)
    for b in range(5):
        pred = (s > 0).astype(int)
        assert got["ap"][b] == pytest.approx(average_precision_score(y, s, sample_weight=w[b]))
        assert got["auc"][b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]))
        assert got["f1"][b] == pytest.approx(f1_score(y, pred, sample_weight=w[b]))
        assert got["acc"][b] == pytest.approx(np.average(pred == y, weights=w[b]))
        assert got["real_acc"][b] == pytest.approx(np.average(pred[y == 0] == 0, weights=w[b][y == 0]))


def interval_width(tmp_path: Path, n: int) -> pd.DataFrame:
    from sidbench.reports.bootstrap import bootstrap_intervals

    run = make_results(tmp_path / f"n{n}", n=n, detectors={"univfd": (1.0, 0.3)}, perturbations={"none": 1.0})
    ci = bootstrap_intervals(pd.read_csv(run / "scores.csv", keep_default_na=False), 200, ("acc", "ap"), seed=0)
    point = pd.read_csv(run / "metrics.csv").melt(id_vars=["detector", "split", "perturbation"], value_vars=["acc", "ap"],
                                                  var_name="metric", value_name="value")
    return ci.merge(point, on=["detector", "split", "perturbation", "metric"])


def test_bootstrap_intervals_contain_the_estimate_and_shrink_with_data(tmp_path):
    small, large = interval_width(tmp_path, 40), interval_width(tmp_path, 4000)
    for df in (small, large):
        assert len(df) == 2 * (len(SPLITS) + 3)  # four splits, two group means, mean:all
        assert ((df.lo <= df.value) & (df.value <= df.hi)).all()
    w_small, w_large = (small.hi - small.lo).to_numpy(), (large.hi - large.lo).to_numpy()
    # width ~ 1/sqrt(n): 100x the images gives about a tenth of the width
    assert (w_large < w_small / 4).all() and (w_large > 0).all()
    mean_all = large[large.split == "mean:all"].set_index("metric")
    one = large[large.split == "progan"].set_index("metric")
    assert (mean_all.hi - mean_all.lo < one.hi - one.lo).all()  # averaging four splits narrows it


def test_bootstrap_is_seeded_and_paired_across_detectors(results):
    from sidbench.reports.bootstrap import bootstrap_intervals

    scores = pd.read_csv(results / "scores.csv", keep_default_na=False)
    scores = scores[scores.perturbation == "none"]
    a = bootstrap_intervals(scores, 50, ("acc",), seed=1)
    pd.testing.assert_frame_equal(a, bootstrap_intervals(scores, 50, ("acc",), seed=1))
    assert not a.equals(bootstrap_intervals(scores, 50, ("acc",), seed=2))
    twin = scores[scores.detector == "rine"].assign(detector="rine_copy")
    b = bootstrap_intervals(pd.concat([scores, twin]), 50, ("acc",), seed=1).set_index(["detector", "split"])
    pd.testing.assert_frame_equal(b.loc["rine"], b.loc["rine_copy"])  # same images -> same resamples


# -- HTML ------------------------------------------------------------------------------------------

class PageChecker(HTMLParser):
    """Balanced tags (void elements excepted) and the image sources of a page."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.images, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src"))
        if tag in ("link", "script"):
            self.links.append(attrs.get("href") or attrs.get("src"))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def html_report(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html")
    assert main(["report", str(results), "--out", str(out), "--bootstrap", "20"]) == 0
    return out / "index.html"


def test_html_is_valid_offline_and_its_images_exist(html_report):
    page = html_report.read_text()
    checker = PageChecker()
    checker.feed(page)
    assert checker.errors == [] and checker.stack == []
    assert checker.links == []  # no stylesheets or scripts to fetch
    assert "http://" not in page and "https://" not in page
    names = {Path(src).name for src in checker.images}
    assert names == {"bars_acc.png", "bars_ap.png", "roc.png", "pr.png", "robustness_jpeg.png",
                     "robustness_blur.png", "real_vs_fake.png", "reliability.png"}
    for src in checker.images:
        assert not Path(src).is_absolute()
        png = html_report.parent / src
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.count('<table class="board">') == 2 * len(PERTURBATIONS)
    # leaderboard cells (2 metrics x perturbations x detectors x 7 columns) + the operating-point table
    # (tpr_fpr01, tpr_fpr05, eer, ece, brier, nll per detector)
    assert page.count('class="ci"') == 2 * len(PERTURBATIONS) * len(DETECTORS) * 7 + 6 * len(DETECTORS)


def test_html_default_location_is_inside_the_results_folder(tmp_path, capsys):
    run = make_results(tmp_path / "r", n=8, perturbations={"none": 1.0})
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "index.html").is_file() and "report written to" in capsys.readouterr().err
    assert not list((run / "report" / "figures").glob("robustness_*.png"))  # no perturbations, no curves


def test_robustness_levels_run_from_clean_to_severe(results):
    from sidbench.reports.figures import robustness_frames

    frames = robustness_frames(pd.read_csv(results / "metrics.csv", keep_default_na=False))
    assert set(frames) == {"jpeg", "blur"}
    assert list(dict.fromkeys(frames["jpeg"]["level"])) == ["clean", "90", "65", "40"]
    jpeg = frames["jpeg"].set_index(["detector", "level"])
    m = pd.read_csv(results / "metrics.csv", keep_default_na=False)
    want = m[(m.detector == "rine") & (m.split == "mean:all") & (m.perturbation == "jpeg40")]["ap"].item()
    assert jpeg.at[("rine", "40"), "ap"] == want


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_html_renders_in_headless_chromium(html_report, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,1600",
           html_report.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape == (1600, 1280)
    assert (img < 128).mean() > 0.005  # text and tables were drawn, not a blank page
