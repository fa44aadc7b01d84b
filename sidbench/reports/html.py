"""The offline HTML report: one ``index.html`` with inline CSS and PNG figures in ``figures/`` next to it
(relative links, no scripts, no network), so the folder can be zipped, mailed or opened from disk."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..api.paths import write_atomic
from .figures import FigureFile
from ..results.leaderboard import DAGGER, ORACLE_NOTE, Leaderboard, format_value, metric_label, split_columns
from ..results.metrics import LOWER_IS_BETTER, tpr_target
from .tables import to_html

if TYPE_CHECKING:
    from .merge import Merged

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:1180px;margin:24px auto;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
.muted{color:#666} .note{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:10px 0 18px;font-size:.88em}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #e4e4e4;padding:4px 9px;text-align:right;white-space:nowrap}
thead th{border-bottom:2px solid #999;background:#f6f6f6} tbody th{text-align:left;font-weight:500}
tbody tr:hover{background:#fafaf0} .best{color:#0b5d1e} .seen{color:#b35900}
.ci{display:block;font-size:.78em;color:#777} .scroll{overflow-x:auto}
figure{margin:14px 0 26px} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555} td.mark{text-align:center;color:#b35900;font-weight:600}
details{margin:6px 0} summary{cursor:pointer;font-weight:600;margin:8px 0} .mean{background:#f7f7fb} pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:.82em}
.gallery td{vertical-align:top;text-align:left} .errs{display:flex;flex-wrap:wrap;gap:6px}
figure.err{margin:0;text-align:center;font-size:.8em} figure.err img{max-width:128px;max-height:128px;display:block}
.kind{font-size:.85em;color:#555;margin-bottom:2px} sup.sig{color:#0a6}
"""


def _runs_section(merged: "Merged") -> str:
    rows = []
    for run in merged.runs:
        info, env = run.info, run.info.get("environment", {})
        counts = info.get("counts", {})
        backbones = ", ".join(info.get("backbones", {})) or "-"
        dets = ", ".join(sorted({v for (r, _), v in merged.rename.items() if r == run.name}))
        commit = str(env.get("git_commit") or "")[:10] or "-"
        rows.append(f"<tr><th>{html.escape(run.name)}</th><td>{html.escape(str(info.get('name', '-')))}</td>"
                    f"<td>{counts.get('test', '-')}</td><td>{counts.get('skipped', '-')}</td>"
                    f"<td>{html.escape(_policy(info))}</td>"
                    f"<td>{html.escape(backbones)}</td><td style='text-align:left'>{html.escape(dets)}</td>"
                    f"<td>{html.escape(str(env.get('sidbench', '-')))} ({html.escape(commit)})</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "data", "images", "skipped", "threshold", "backbone", "detectors", "sidbench"))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _policy(info: dict) -> str:
    """A run's threshold policy and calibration, from run.json (older runs: fixed)."""
    op = info.get("operating_points") or {}
    method = (op.get("calibration") or {}).get("method")
    return str(op.get("threshold", "fixed")) + (f", {method} calibration" if method else "")


OPERATING = ("eer", "ece", "brier", "nll")


def _operating_section(merged: "Merged", intervals) -> str:
    """Detectors x operating-point metrics (TPR at each target FPR, EER, calibration) on clean images,
    mean over splits, with bootstrap intervals where computed."""
    m = merged.metrics
    rows_all = m[(m["split"] == "mean:all") & (m["perturbation"] == "none")].set_index("detector")
    tprs = sorted((c for c in m.columns if tpr_target(c) is not None), key=tpr_target)
    cols = [c for c in (*tprs, *OPERATING) if c in rows_all and rows_all[c].notna().any()]
    if tprs and not len(rows_all):
        return ('<p class="note">No mean over splits: every split holds one class (real-only or fake-only), '
                "so ROC-based metrics are undefined; see the per-split tables.</p>")
    if not cols or not len(rows_all):
        return '<p class="note">These results hold no operating-point columns (written by an older sidbench).</p>'
    ci = {} if intervals is None or not len(intervals) else {
        (r.detector, r.metric): (r.lo, r.hi) for r in intervals[(intervals["split"] == "mean:all")
                                                               & (intervals["perturbation"] == "none")].itertuples()}
    head = "".join(f"<th>{html.escape(metric_label(c))}{' ↓' if c in LOWER_IS_BETTER else ''}</th>" for c in cols)
    body = []
    for det in merged.detectors:
        if det not in rows_all.index:
            continue
        cells = []
        for c in cols:
            v = rows_all.at[det, c]
            text = "-" if v != v else format_value(c, v)
            if (det, c) in ci and ci[(det, c)][0] == ci[(det, c)][0]:
                lo, hi = ci[(det, c)]
                text += f'<span class="ci">[{format_value(c, lo)}, {format_value(c, hi)}]</span>'
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(det)}</th>{''.join(cells)}</tr>")
    return ('<p class="note">Clean images, unweighted mean over splits; these do not depend on the threshold. '
            "TPR at x% FPR: the highest true-positive rate whose false-positive rate on the reals is at most x%; "
            "EER: where FPR = 1 - TPR; ECE, Brier and NLL of P(fake) (calibrated where the run calibrated); "
            "↓ = lower is better.</p>"
            f'<div class="scroll"><table><thead><tr><th>detector</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _training_section(merged: "Merged") -> str:
    splits = [s for s in split_columns(merged.metrics) if not s.startswith("mean:")]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ["detector", "trained on", *splits])
    rows = []
    for det in merged.detectors:
        seen = merged.training_data.get(det, set())
        marks = "".join(f'<td class="mark">{"✓" if merged.seen_in_training(det, s) else ""}</td>' for s in splits)
        rows.append(f"<tr><th>{html.escape(det)}</th><td style='text-align:left'>"
                    f"{html.escape(', '.join(sorted(seen)) or 'not declared')}</td>{marks}</tr>")
    return (f'<p class="note">✓ = a generator of this split is in the detector\'s declared training data '
            f'(<code>run.json</code> &rarr; detectors[].training_data); such cells carry {DAGGER} in the tables.</p>'
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _figures_section(figures: Sequence[FigureFile], section: str) -> str:
    parts = []
    for f in figures:
        if f.section == section:
            cap = html.escape(f.title + (f": {f.caption}" if f.caption else ""))
            parts.append(f'<figure><img src="{html.escape(f.path)}" alt="{html.escape(f.title)}">'
                         f"<figcaption>{cap}</figcaption></figure>")
    return "".join(parts)


def render_html(merged: "Merged", boards: Sequence[Leaderboard], figures: Sequence[FigureFile],
                n_boot: int = 0, intervals=None, gallery: str = "") -> str:
    """The whole page as a string."""
    ci = (f"Below each value: the bootstrap 95% interval ({n_boot} resamples of the images of each split, "
          "stratified by label; means resample every split).") if n_boot else "No bootstrap intervals (use --bootstrap N)."
    title = "sidbench report: " + ", ".join(r.name for r in merged.runs)
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="muted">Accuracy at each run\'s threshold (column <i>threshold</i> of Runs: fixed = P(fake) &gt; 0.5, '
            f"val = chosen on the validation split); AP, ROC-AUC, EER and TPR at a fixed FPR rank by the logit; "
            f"means are unweighted over splits. Best per column in <b class='best'>bold</b>; "
            f"<span class='seen'>{DAGGER}</span> = split generator seen in training. {html.escape(ci)}</p>",
            "<h2>Runs</h2>", _runs_section(merged), "<h2>Leaderboard (clean images)</h2>"]
    body += [f'<div class="scroll">{to_html(b)}</div>' for b in boards if b.perturbation == "none" and not b.oracle]
    body += ["<h2>Operating points</h2>", _operating_section(merged, intervals)]
    for section in dict.fromkeys(f.section for f in figures):
        body += [f"<h2>{html.escape(section)}</h2>", _figures_section(figures, section)]
    perturbed = [f'<div class="scroll">{to_html(b)}</div>' for b in boards if b.perturbation != "none" and not b.oracle]
    if perturbed:
        body += ["<h2>Leaderboards under perturbations</h2>",
                 f"<details><summary>{len(perturbed)} tables</summary>{''.join(perturbed)}</details>"]
    oracle = [f'<div class="scroll">{to_html(b)}</div>' for b in boards if b.oracle]
    if oracle:
        body += ["<h2>Oracle thresholds (diagnostic)</h2>",
                 f'<p class="note"><b>{html.escape(ORACLE_NOTE)}.</b> Each value uses the threshold that maximises '
                 "balanced accuracy on that test split's own labels: an upper bound of what a threshold could "
                 "reach, which no deployed detector can choose. Compare detectors on the tables above.</p>",
                 f"<details><summary>{len(oracle)} tables</summary>{''.join(oracle)}</details>"]
    if gallery:
        body += ["<h2>Error gallery</h2>", gallery]
    body += ["<h2>Training data</h2>", _training_section(merged)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html(merged: "Merged", boards: Sequence[Leaderboard], figures: Sequence[FigureFile], out: Path,
               n_boot: int = 0, intervals=None) -> Path:
    """Write ``out/index.html`` (the figures are already under ``out/figures``; the error gallery's thumbnails
    go to ``out/gallery``)."""
    from .gallery import gallery_section

    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    page = render_html(merged, boards, figures, n_boot, intervals, gallery_section(merged, out))
    # bytes of a name that are not UTF-8 shown as \\xNN: the page stays valid UTF-8
    write_atomic(path, re.sub("[\udc80-\udcff]", lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", page))
    return path
