"""What every ablation study shares: its data, backbones, counted feature extractions, fitting under
one seed, scoring in-memory test features through the engine, and its output: a standard results
folder (scores.csv, metrics.csv, run.json, readable by ``sidbench report``) plus the study's own
table, plot, ``study.csv`` (every variant's metrics with its settings) and ``study.json``."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..api.errors import SidbenchError
from ..api.fitting import FeatureSet
from ..api.log import note
from ..api.records import Record
from ..data.perturb import NONE, Perturbation
from ..engine.inputs import ExtractOptions
from ..engine.sources import BackboneSource

if TYPE_CHECKING:
    import argparse

    import pandas as pd

    from ..api.detector import Detector
    from ..engine.fitting import EngineFitData

QUICKSTART_BACKBONE = "clip-tiny"


@dataclass
class StudyData:
    """Training, validation and test records, and where they came from."""

    train: list[Record]
    val: list[Record]
    test: list[Record]
    quickstart: bool
    sources: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        count = lambda rs: {"images": len(rs), "real": sum(r.label == 0 for r in rs), "fake": sum(r.label == 1 for r in rs)}
        return {"quickstart": self.quickstart, "sources": self.sources, "train": count(self.train),
                "val": count(self.val), "test": {**count(self.test), "splits": sorted({r.split for r in self.test})}}


def study_data(args: "argparse.Namespace", plugins: Any, study: str) -> StudyData:
    """``--data/--train/--val`` records, or the generated quickstart when none of them is given."""
    from ..run.inputs import records_of

    if not (args.data or args.train or args.val):
        from ..data.quickstart import QuickstartLayout, ensure_quickstart

        root, layout = ensure_quickstart(), QuickstartLayout()
        return StudyData(layout.records(root, split="train"), layout.records(root, split="val"),
                         layout.records(root, split="test"), True, {"quickstart": str(root)})
    if not args.data:
        raise SidbenchError(f"study {study}: give the test data with --data PATH (or no data flags for the quickstart)")
    if not args.train:
        raise SidbenchError(f"study {study} fits detectors: give --train PATH (and --val PATH to select on)")
    test, train, val = (records_of(args.data, plugins), records_of(args.train, plugins, role="train", flag="--train"),
                         records_of(args.val, plugins, role="val", flag="--val"))
    return StudyData(train, val, test, False, {"data": args.data, "train": args.train, "val": args.val})


class CountedSource(BackboneSource):
    """A backbone source that counts the images it encodes (zero padding rows excluded)."""

    encoded = 0

    def outputs(self, pixels: Any, names: Sequence[str]) -> dict[str, Any]:
        self.encoded += int(pixels.flatten(1).abs().amax(1).gt(0).sum())
        return super().outputs(pixels, names)


class Study:
    """One study run: data, live backbones, the extraction count, results and provenance."""

    def __init__(self, name: str, args: "argparse.Namespace", plugins: Any, config: dict[str, Any]):
        from ..api.paths import check_replace
        from ..results.folder import ResultsFolder
        from ..results.scores import ScoreLog
        from ..run.config import pick_device

        self.name, self.args, self.plugins, self.config = name, args, plugins, config
        self.seed = 0 if args.seed is None else int(args.seed)
        self.device = pick_device(args.device)
        self.out = Path(args.out or f"results/ablate-{name}")
        self.data = study_data(args, plugins, name)
        progress = not (args.no_progress or getattr(args, "quiet", False)) and sys.stderr.isatty()
        self.extract_options = ExtractOptions(args.batch_size or 64, args.workers, progress)
        self.passes: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self._backbones: dict[str, CountedSource] = {}
        self._test: dict[tuple, FeatureSet] = {}
        self._evaluated: dict[str, dict[str, Any]] = {}  # result name -> detector provenance
        self._t0 = time.time()
        # locked and listed like a run's results folder: nothing of the user's is replaced, nothing written through a link
        self.folder = ResultsFolder.open(self.out)
        stale = self.out / "scores.csv"
        try:
            if os.path.lexists(stale):  # a study is recomputed whole: its scores are not resumed
                check_replace(stale)
                stale.unlink()
            self.scores = ScoreLog(stale)
        except BaseException:
            self.folder.release()
            raise

    def close(self) -> None:
        """Let go of the folder's lock (the study finished or failed)."""
        self.folder.release()

    @property
    def images_encoded(self) -> dict[str, int]:
        return {n: s.encoded for n, s in self._backbones.items()}

    # -- backbones and features -------------------------------------------------------------
    def backbone_name(self, detector: str | None = None) -> str:
        """``--backbone``, else clip-tiny on the quickstart, else the detector's own backbone."""
        if self.args.backbone:
            return self.args.backbone
        if self.data.quickstart or detector is None:
            return QUICKSTART_BACKBONE
        from ..api.names import spec_name

        return self.plugins.detector(spec_name(detector)).backbone

    def backbone(self, name: str) -> CountedSource:
        """The backbone source ``name`` (built on first use); every image it encodes is counted."""
        if name not in self._backbones:
            self._backbones[name] = CountedSource(name, self.plugins, weights=self.args.weights, device=self.device,
                                                  precision=getattr(self.args, "precision", None))
        return self._backbones[name]

    def _count(self, backbone: str):
        def on_extract(info: dict[str, Any]) -> None:
            self.passes.append({"backbone": backbone, **info})

        return on_extract

    def fit_data(self, backbone: str, protocol: str, names: Sequence[str] = (), perturbation: Perturbation = NONE,
                 train: Sequence[Record] | None = None) -> "EngineFitData":
        """One FitData for every fit of a (backbone, protocol, perturbation): each view extracted once, and
        K-shot subsets are row selections of it."""
        from ..engine.fitting import EngineFitData

        return EngineFitData(self.data.train if train is None else train, self.data.val, protocol=protocol,
                             seed=self.seed, options=self.extract_options, backbone=self.backbone(backbone),
                             device=self.device, names=names, perturbation=perturbation, share_subsets=True,
                             on_extract=self._count(backbone))

    def test_features(self, backbone: str, names: Sequence[str], protocol: str,
                      perturbation: Perturbation = NONE) -> FeatureSet:
        """Features of the test records (memoised per backbone, features, protocol and perturbation)."""
        from ..engine.inputs import extract

        key = (backbone, tuple(names), protocol, perturbation.name)
        if key not in self._test:
            desc = f"test features [{perturbation.name}]"
            self._count(backbone)({"what": desc, "perturbation": perturbation.name, "protocol": protocol,
                                   "images": len(self.data.test), "features": list(names)})
            opts = dataclasses.replace(self.extract_options, desc=desc)
            fs = extract(self.backbone(backbone), self.data.test, tuple(names), protocol=protocol,
                         perturbation=perturbation, options=opts)
            if not len(fs):
                raise SidbenchError(f"study {self.name}: none of the {len(self.data.test)} test images could be read")
            self._test[key] = fs
        return self._test[key]

    # -- detectors ----------------------------------------------------------------------------
    def protocol(self, name: str) -> str:
        """The preprocessing ``name`` runs with in this study: as in `sidbench run`, its own, or on the
        quickstart what its quickstart options say (the native centre crop for feature detectors)."""
        from ..api.names import spec_name

        spec = self.plugins.detector(spec_name(name))
        return self._quick(spec).get("preprocess") or spec.preprocess

    def detector(self, name: str, backbone: str, **options: Any) -> "Detector":
        """``name`` on ``backbone`` with quickstart options (on the quickstart), ``--set`` and ``options``."""
        from ..api.names import spec_name
        from ..registry.lookup import load_detector

        quick = self._quick(self.plugins.detector(spec_name(name)))
        return load_detector(name, backbone=backbone, plugins=self.plugins,
                             **{**quick, **self.config.get("set", {}), **options})

    def _quick(self, spec: Any) -> dict[str, Any]:
        """The quickstart options of ``spec`` when the study runs on the quickstart data (as `sidbench run`)."""
        from ..run.inputs import quickstart_options

        return quickstart_options(spec, {}) if self.data.quickstart else {}

    def fit(self, det: "Detector", data: "EngineFitData", label: str) -> dict[str, Any]:
        """Fit under the study's seed (every variant starts from the same random state)."""
        from ..engine.fitting import fit_detector

        summary, seconds = fit_detector(det, data.with_protocol(det.preprocess), self.seed,
                                        log=lambda m: self.log(f"{label}: {m}", verbose=True))
        self.timings[f"fit {label}"] = round(seconds, 3)
        return summary

    def evaluate(self, det: "Detector", fs: FeatureSet, name: str, perturbation: str = "none",
                 backbone: str | None = None) -> "pd.DataFrame":
        """Score ``det`` on ``fs`` through the engine, write its rows to ``scores.csv`` as detector ``name``,
        and return its metrics per test split, then the unweighted ``mean`` row."""
        import pandas as pd

        from ..engine.scoring import score_features
        from ..results.metrics import metrics_table
        from ..results.scores import SCORE_COLUMNS, score_row

        logits = score_features(det.to(self.device).eval(), fs)
        protocol = det.preprocess
        rows = [score_row(name, r, perturbation, protocol, float(x)) for r, x in zip(fs.records, logits)]
        self.scores.write(rows)
        self._evaluated[name] = {"name": name, "spec": det.spec.name, "input": det.input, "backbone": backbone,
                                 "preprocess": protocol, "training_data": sorted({r.generator for r in self.data.train
                                                                                  if r.label == 1 and r.generator}),
                                 "options": {k: v for k, v in det.options.items()
                                             if isinstance(v, (str, int, float, bool, list, type(None)))}}

        df = pd.DataFrame(rows, columns=SCORE_COLUMNS)
        df["label"], df["logit"] = df["label"].astype(int), df["logit"].astype(float)
        table = metrics_table(df)
        table = table[~table["split"].str.startswith("mean:") | (table["split"] == "mean:all")]
        table = table.assign(split=table["split"].replace({"mean:all": "mean"}))
        return table.drop(columns=["detector", "group", "perturbation", "protocol"]).reset_index(drop=True)

    # -- output -------------------------------------------------------------------------------
    def log(self, message: str, verbose: bool = False) -> None:
        """A progress line (:func:`~sidbench.api.note`); ``verbose`` ones (a fit's epochs) not with --no-progress."""
        if not verbose or not self.args.no_progress:
            note(message)

    def n_passes(self) -> int:
        return len(self.passes)

    def finish(self, table: "pd.DataFrame", long: "pd.DataFrame", figures: dict[str, Any], title: str,
               percent: Sequence[str] | None = None) -> Path:
        """Write the standard results files (scores.csv, metrics.csv, run.json), then table.csv/.md,
        study.csv (tidy), the figures and study.json; print the table."""
        from ..api.paths import write_atomic
        from ..reports.plots import save_figure
        from ..results.folder import environment, write_run_json
        from ..results.metrics import metrics_table
        from ..results.scores import finalize_scores, to_csv

        self.scores.close()
        write_atomic(self.out / "metrics.csv", to_csv(metrics_table(finalize_scores(self.out / "scores.csv"))))
        write_atomic(self.out / "table.csv", to_csv(table))
        write_atomic(self.out / "study.csv", to_csv(long))
        cost = self.cost_line()
        markdown = f"# {title}\n\n{markdown_table(table, percent)}\n\n{cost}\n" + "".join(f"\n{n}\n" for n in self.notes)
        write_atomic(self.out / "table.md", markdown)
        for fname, fig in figures.items():
            save_figure(fig, self.out / fname)
        self.timings["total"] = round(time.time() - self._t0, 3)
        backbones = {n: b.describe() for n, b in self._backbones.items()}
        counts = self.data.describe()
        write_run_json(self.out / "run.json", {
            "name": f"ablate-{self.name}", "study": self.name, "detectors": list(self._evaluated.values()),
            "backbones": backbones, "counts": {k: counts[k]["images"] for k in ("test", "train", "val")},
            "seed": self.seed, "timings_s": self.timings, "environment": environment()})
        info = {
            "study": self.name, "title": title, "command": "sidbench ablate " + " ".join(self.config.get("argv", [])),
            "config": {k: v for k, v in self.config.items() if k != "argv"}, "seed": self.seed, "device": self.device,
            "backbones": backbones, "data": counts,
            "backbone_passes": {"extractions": self.n_passes(), "images_encoded": self.images_encoded,
                                "passes": self.passes},
            **self.extra, "notes": self.notes, "timings_s": self.timings, "environment": environment(),
        }
        write_atomic(self.out / "study.json", json.dumps(info, indent=2, default=str) + "\n")
        print(markdown_table(table, percent))
        print(cost)
        for n in self.notes:
            print(n)
        print(f"results in {self.out}")
        return self.out

    def cost_line(self) -> str:
        per = ", ".join(f"{n}: {k} images" for n, k in self.images_encoded.items())
        return (f"Backbone passes: {self.n_passes()} feature extractions ({per}); every variant's fit and score "
                f"reused them. Seed {self.seed}.")


def markdown_table(table: "pd.DataFrame", percent: Sequence[str] | None = None) -> str:
    """Fractions in ``percent`` columns (default: those named like metrics) shown as percentages, one decimal."""
    shown = table.copy()
    for col in shown.columns:
        if (col in percent if percent is not None else is_metric(col)) and shown[col].dtype.kind == "f":
            shown[col] = (shown[col] * 100).map(lambda v: "" if v != v else f"{v:.1f}")
    return shown.to_markdown(index=False)


def is_metric(column: str) -> bool:
    words = str(column).replace("_", " ").split()
    return bool(words) and words[-1] in {"acc", "AP", "ap", "AUC", "auc"}


def wide(long: "pd.DataFrame", row: str, metrics: Sequence[str] = ("acc", "ap")) -> "pd.DataFrame":
    """Rows = ``row`` values (in first-seen order), columns ``<split> acc``, ``<split> AP``, ..., ``mean acc``."""
    import pandas as pd

    label = {"acc": "acc", "ap": "AP", "auc": "AUC"}
    order = list(dict.fromkeys(long[row]))
    splits = [s for s in dict.fromkeys(long["split"]) if s != "mean"] + ["mean"]
    cols = {}
    for split in splits:
        for m in metrics:
            sub = long[long["split"] == split].set_index(row)[m]
            cols[f"{split} {label.get(m, m)}"] = sub.reindex(order).to_numpy()
    return pd.concat([pd.DataFrame({row: order}), pd.DataFrame(cols)], axis=1)


def parse_list(flag: str, text: str | None, kind: type = float, default: Sequence | None = None) -> list:
    """``"1,2,4"`` -> [1, 2, 4]; a bad item is a one-line error naming the flag."""
    if text is None:
        return list(default or [])
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise SidbenchError(f"--{flag} {text!r}: give comma-separated {'integers' if kind is int else 'numbers'}, "
                            f"e.g. --{flag} {'1,2,4' if kind is int else '0,0.5,1'}") from None
    if not values:
        raise SidbenchError(f"--{flag}: give at least one value")
    return values
