"""What every ablation study shares: its data, backbones, counted feature extractions, fitting under
one seed, scoring on in-memory test features, and the results folder (table, plot, study.json)."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..data.perturb import NONE, Perturbation
from ..data.records import Record
from ..errors import SidbenchError
from ..features import ExtractOptions, FeatureSet
from .fitdata import StudyFitData

if TYPE_CHECKING:
    import argparse

    import pandas as pd

    from ..backbones.base import Backbone
    from ..detector import Detector

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
    from ..cli.data import records_of

    if not (args.data or args.train or args.val):
        from ..datasets.quickstart import QuickstartLayout, ensure_quickstart

        root, layout = ensure_quickstart(), QuickstartLayout()
        return StudyData(layout.records(root, split="train"), layout.records(root, split="val"),
                         layout.records(root, split="test"), True, {"quickstart": str(root)})
    if not args.data:
        raise SidbenchError(f"study {study}: give the test data with --data PATH (or no data flags for the quickstart)")
    if not args.train:
        raise SidbenchError(f"study {study} fits detectors: give --train PATH (and --val PATH to select on)")
    test, train, val = records_of(args.data, plugins), records_of(args.train, plugins), records_of(args.val, plugins)
    return StudyData(train, val, test, False, {"data": args.data, "train": args.train, "val": args.val})


class Study:
    """One study run: data, live backbones, the extraction count, results and provenance."""

    def __init__(self, name: str, args: "argparse.Namespace", plugins: Any, config: dict[str, Any]):
        from ..harness import pick_device

        self.name, self.args, self.plugins, self.config = name, args, plugins, config
        self.seed = 0 if args.seed is None else int(args.seed)
        self.device = pick_device(args.device)
        self.out = Path(args.out or f"results/ablate-{name}")
        self.data = study_data(args, plugins, name)
        progress = not args.no_progress and sys.stderr.isatty()
        self.extract_options = ExtractOptions(args.batch_size or 64, args.workers, progress)
        self.passes: list[dict[str, Any]] = []
        self.images_encoded: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self._backbones: dict[str, "Backbone"] = {}
        self._test: dict[tuple, FeatureSet] = {}
        self._t0 = time.time()

    # -- backbones and features -------------------------------------------------------------
    def backbone_name(self, detector: str | None = None) -> str:
        """``--backbone``, else clip-tiny on the quickstart, else the detector's own backbone."""
        if self.args.backbone:
            return self.args.backbone
        if self.data.quickstart or detector is None:
            return QUICKSTART_BACKBONE
        from ..detector import split_name, split_options

        return self.plugins.detector(split_options(split_name(detector)[0])[0]).backbone

    def backbone(self, name: str) -> "Backbone":
        """The live backbone ``name`` (built once); every image it encodes is counted."""
        from ..backbones.registry import build_backbone

        if name not in self._backbones:
            bb = build_backbone(name, weights=self.args.weights, device=self.device, plugins=self.plugins)
            self.images_encoded[name] = 0
            encode = bb.features

            def counted(images: Any, names: Any, _name: str = name) -> Any:
                # the backbone runs on fixed-size batches zero-padded at the end: count the real images only
                self.images_encoded[_name] += int(images.flatten(1).abs().amax(1).gt(0).sum())
                return encode(images, names)

            bb.features = counted  # type: ignore[method-assign]
            self._backbones[name] = bb
        return self._backbones[name]

    def source(self, backbone: str, perturbation: Perturbation = NONE) -> Callable[..., FeatureSet]:
        """A FitData feature source: ``sidbench.features.extract`` under ``perturbation``, one counted pass per call."""
        def extract(bb: Any, records: Sequence[Record], names: Sequence[str], **kwargs: Any) -> FeatureSet:
            from .. import features

            opts = kwargs.get("options")
            self.passes.append({"backbone": backbone, "what": getattr(opts, "desc", "features"),
                                "perturbation": perturbation.name, "protocol": kwargs.get("protocol"),
                                "images": len(records), "features": list(names)})
            return features.extract(bb, records, names, perturbation=perturbation, **kwargs)

        return extract

    def fit_data(self, backbone: str, protocol: str, names: Sequence[str] = (), perturbation: Perturbation = NONE,
                 train: Sequence[Record] | None = None) -> StudyFitData:
        """One FitData for every fit of a (backbone, protocol, perturbation): each view extracted once."""
        return StudyFitData(self.backbone(backbone), self.data.train if train is None else train, self.data.val,
                            protocol=protocol, seed=self.seed, options=self.extract_options,
                            feature_source=self.source(backbone, perturbation), names=names)

    def test_features(self, backbone: str, names: Sequence[str], protocol: str,
                      perturbation: Perturbation = NONE) -> FeatureSet:
        """Features of the test records (memoised per backbone, features, protocol and perturbation)."""
        key = (backbone, tuple(names), protocol, perturbation.name)
        if key not in self._test:
            opts = dataclasses.replace(self.extract_options, desc=f"test features [{perturbation.name}]")
            self._test[key] = self.source(backbone, perturbation)(self.backbone(backbone), self.data.test, tuple(names),
                                                                  protocol=protocol, options=opts)
            if not len(self._test[key]):
                raise SidbenchError(f"study {self.name}: none of the {len(self.data.test)} test images could be read")
        return self._test[key]

    # -- detectors ----------------------------------------------------------------------------
    def protocol(self, name: str) -> str:
        """The preprocessing ``name`` runs with in this study (its own, or the quickstart's)."""
        if self.data.quickstart:
            from ..cli.data import QUICKSTART_PROTOCOL

            return QUICKSTART_PROTOCOL
        from ..detector import split_name, split_options

        return self.plugins.detector(split_options(split_name(name)[0])[0]).preprocess

    def detector(self, name: str, backbone: str, **options: Any) -> "Detector":
        """``name`` on ``backbone`` with quickstart options (on the quickstart), ``--set`` and ``options``."""
        from ..detector import load_detector, split_name, split_options

        base = split_options(split_name(name)[0])[0]
        quick = {}
        if self.data.quickstart:  # as `sidbench run`: quickstart options and the native centre crop for all
            from ..cli.data import QUICKSTART_PROTOCOL

            quick = {**self.plugins.detector(base).quickstart_options, "preprocess": QUICKSTART_PROTOCOL}
        return load_detector(name, backbone=backbone, plugins=self.plugins,
                             **{**quick, **self.config.get("set", {}), **options})

    def fit(self, det: "Detector", data: StudyFitData, label: str) -> dict[str, Any]:
        """Fit under the study's seed (every variant starts from the same random state)."""
        from ..training import fit_detector

        summary, seconds = fit_detector(det, data, self.seed, log=lambda m: self.log(f"{label}: {m}", verbose=True))
        self.timings[f"fit {label}"] = round(seconds, 3)
        return summary

    def evaluate(self, det: "Detector", fs: FeatureSet, backbone: "Backbone | None" = None) -> "pd.DataFrame":
        """Per test split: acc, AP, ROC-AUC ... of ``det`` on ``fs``, then the unweighted ``mean`` row."""
        import pandas as pd

        from ..metrics import binary_metrics

        logits = score(det.to(self.device).eval(), fs)
        rows = []
        for split in sorted({r.split for r in fs.records}):
            idx = [i for i, r in enumerate(fs.records) if r.split == split]
            rows.append({"split": split, **binary_metrics([fs.records[i].label for i in idx], logits[idx])})
        table = pd.DataFrame(rows)
        mean = {"split": "mean", **table.drop(columns="split").mean(numeric_only=True).to_dict()}
        mean.update(n_real=int(table.n_real.sum()), n_fake=int(table.n_fake.sum()))
        return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)

    # -- output -------------------------------------------------------------------------------
    def log(self, message: str, verbose: bool = False) -> None:
        if not verbose or not self.args.no_progress:
            print(message, flush=True)

    def n_passes(self) -> int:
        return len(self.passes)

    def finish(self, table: "pd.DataFrame", long: "pd.DataFrame", figures: dict[str, Any], title: str,
               percent: Sequence[str] | None = None) -> Path:
        """Write table.csv/.md, metrics.csv (tidy), the figures, study.json; print the table."""
        from ..reports.plots import save_figure
        from ..paths import write_atomic
        from ..results import environment

        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out / "table.csv", table.to_csv(index=False))
        write_atomic(self.out / "metrics.csv", long.to_csv(index=False))
        cost = self.cost_line()
        markdown = f"# {title}\n\n{markdown_table(table, percent)}\n\n{cost}\n" + "".join(f"\n{n}\n" for n in self.notes)
        write_atomic(self.out / "table.md", markdown)
        for fname, fig in figures.items():
            save_figure(fig, self.out / fname)
        self.timings["total"] = round(time.time() - self._t0, 3)
        info = {
            "study": self.name, "title": title, "command": "sidbench ablate " + " ".join(self.config.get("argv", [])),
            "config": {k: v for k, v in self.config.items() if k != "argv"}, "seed": self.seed, "device": self.device,
            "backbones": {n: {"identity": b.identity, **dataclasses.asdict(b.info)} for n, b in self._backbones.items()},
            "data": self.data.describe(),
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


def score(det: "Detector", fs: FeatureSet, chunk: int = 4096) -> "Any":
    """Logits (numpy) of ``det`` on in-memory features; multi-crop [B, n, ...] averages the n crop logits."""
    import torch

    feats = {k: fs.features[k] for k in det.required_features}
    n = len(fs)
    out = []
    with torch.inference_mode():
        for i in range(0, n, chunk):
            part = {k: v[i:i + chunk].to(det.device) for k, v in feats.items()}
            views = next(iter(part.values())).shape[1] if _multi_view(det, part) else 1
            if views > 1:
                part = {k: v.flatten(0, 1) for k, v in part.items()}
            out.append(det.score(part).float().view(-1, views).mean(1).cpu())
    return torch.cat(out).numpy() if out else torch.empty(0).numpy()


def _multi_view(det: "Detector", part: dict) -> bool:
    from ..data.preprocess import n_views

    return n_views(det.preprocess) > 1


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
