"""What every ablation study shares: its data, backbones, counted feature extractions, fitting under
one seed, scoring in-memory test features through the engine, and its output: a standard results
folder (scores.csv, metrics.csv, and run.json written by the same writer as ``sidbench run``'s, from a
RunConfig built of the study's flags, readable by ``sidbench report``) plus the study's own table, plot,
``study.csv`` (every variant's metrics with its settings) and ``study.json``."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..api.errors import SidbenchError
from ..api.fitting import FeatureSet
from ..api.log import note
from ..api.records import Record
from ..data.perturb import NONE, Perturbation
from ..engine.inputs import ExtractOptions
from ..engine.workers import WorkerPool
from ..engine.sources import BackboneSource
from .inputs import StudyData, study_config, study_data
from .tables import markdown_table, parse_list, wide

__all__ = ["Study", "StudyData", "study_config", "study_data", "markdown_table", "wide", "parse_list"]

if TYPE_CHECKING:
    import argparse

    import pandas as pd

    from ..api.detector import Detector
    from ..engine.fitting import EngineFitData

QUICKSTART_BACKBONE = "clip-tiny"


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
        from ..results.score_log import ScoreLog
        from ..run.config import pick_device

        self.name, self.args, self.plugins, self.config = name, args, plugins, config
        self.cfg = study_config(args, name)
        self.seed = self.cfg.seed
        self.device = pick_device(self.cfg.device)
        self.out = Path(self.cfg.out)
        self.data = study_data(self.cfg, plugins, name)
        self.workers = WorkerPool()  # one set of loader processes for every pass of the study
        self.extract_options = ExtractOptions(self.cfg.batch_size, self.cfg.workers, self.cfg.progress,
                                              pool=self.workers, decode=self.cfg.decode_mode())
        self.passes: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self._backbones: dict[str, CountedSource] = {}
        self._test: dict[tuple, FeatureSet] = {}
        self._evaluated: dict[str, dict[str, Any]] = {}  # result name -> its run.json entry
        self._built: list[str] = []  # the detector names built (run.json's config.detectors)
        self._backbone_of: dict[int, str] = {}  # id of a detector built here -> the backbone it was built on
        self._perturbations: list[str] = []
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
        """Stop the loader workers and let go of the folder's lock (the study finished or failed)."""
        self.workers.close()
        self.folder.release()

    @property
    def images_encoded(self) -> dict[str, int]:
        return {n: s.encoded for n, s in self._backbones.items()}

    # -- backbones and features -------------------------------------------------------------
    def backbone_name(self, detector: str | None = None) -> str:
        """``--backbone``, else clip-tiny on the quickstart, else the detector's own backbone."""
        if self.cfg.backbone:
            return self.cfg.backbone
        if self.data.quickstart or detector is None:
            return QUICKSTART_BACKBONE
        from ..api.names import spec_name

        return self.plugins.detector(spec_name(detector)).backbone

    def backbone(self, name: str) -> CountedSource:
        """The backbone source ``name`` (built on first use); every image it encodes is counted."""
        if name not in self._backbones:
            self._backbones[name] = CountedSource(name, self.plugins, weights=self.cfg.weights, device=self.device,
                                                  precision=self.cfg.precision, compile=self.cfg.compile)
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
        """``name`` on ``backbone`` with quickstart options (on the quickstart), ``--set`` and ``options``, built
        from the study's seeded random state (as `sidbench run` builds each detector)."""
        from ..api.names import spec_name
        from ..run.build import load_seeded

        quick = self._quick(self.plugins.detector(spec_name(name)))
        det = load_seeded(name, self.seed, self.plugins, backbone, **{**quick, **self.config.get("set", {}), **options})
        if name not in self._built:
            self._built.append(name)
        self._backbone_of[id(det)] = backbone
        return det

    def _quick(self, spec: Any) -> dict[str, Any]:
        """The quickstart options of ``spec`` when the study runs on the quickstart data (as `sidbench run`)."""
        from ..run.inputs import quickstart_options

        return quickstart_options(spec, {}) if self.data.quickstart else {}

    def fit(self, det: "Detector", data: "EngineFitData", label: str) -> dict[str, Any]:
        """Fit under the study's seed (every variant starts from the same random state); what it was trained on
        is noted for run.json, as `sidbench run` notes it."""
        from ..engine.fitting import fit_detector
        from ..run.fit import note_training

        summary, seconds = fit_detector(det, data.with_protocol(det.preprocess), self.seed,
                                        log=lambda m: self.log(f"{label}: {m}", verbose=True))
        note_training(det, data.records("train"), self.data.sources.get("train") or self.data.sources.get("quickstart"))
        self.timings[f"fit {label}"] = round(seconds, 3)
        return summary

    def evaluate(self, det: "Detector", fs: FeatureSet, name: str, perturbation: str = "none",
                 backbone: str | None = None) -> "pd.DataFrame":
        """Score ``det`` on ``fs`` through the engine, write its rows to ``scores.csv`` as detector ``name``,
        and return its metrics per test split, then the unweighted ``mean`` row; its run.json entry is taken now
        (a sweep may change the detector before the next variant)."""
        import pandas as pd

        from ..engine.scoring import score_features
        from ..results.metrics import metrics_table
        from ..results.scores import SCORE_COLUMNS, score_row
        from ..run.record import describe_detector

        logits = score_features(det.to(self.device).eval(), fs)
        protocol = det.preprocess
        rows = [score_row(name, r, perturbation, protocol, float(x)) for r, x in zip(fs.records, logits)]
        self.scores.write(rows)
        self._evaluated[name] = describe_detector(det, backbone or self._backbone_of.get(id(det)), name=name)
        if perturbation not in self._perturbations:
            self._perturbations.append(perturbation)

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
        from ..results.folder import environment
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
        command = "sidbench ablate " + " ".join(self.config.get("argv", []))
        settings = {k: v for k, v in self.config.items() if k != "argv"}
        self.write_run_json(title, command, settings, backbones, counts)
        info = {
            "study": self.name, "title": title, "command": command,
            "config": settings, "seed": self.seed, "device": self.device,
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

    def write_run_json(self, title: str, command: str, settings: dict[str, Any], backbones: dict[str, Any],
                       counts: dict[str, Any]) -> None:
        """run.json through the writer `sidbench run` uses: the study's RunConfig (with the detectors it built and
        ``--set`` as their options), every evaluated variant's entry, and the study's own fields under ``study``."""
        from ..run.record import write_run_record

        given = self.config.get("set") or {}
        cfg = dataclasses.replace(self.cfg, detectors=list(self._built),
                                  detector_options={n: dict(given) for n in self._built} if given else {})
        study = {"name": self.name, "title": title, "command": command, "settings": settings, "data": counts}
        write_run_record(self.out, cfg, f"ablate-{self.name}", list(self._evaluated.values()), plugins=self.plugins,
                         backbones=backbones, perturbations=list(self._perturbations), study=study,
                         counts={k: counts[k]["images"] for k in ("test", "train", "val")}, timings=self.timings)

    def cost_line(self) -> str:
        per = ", ".join(f"{n}: {k} images" for n, k in self.images_encoded.items())
        return (f"Backbone passes: {self.n_passes()} feature extractions ({per}); every variant's fit and score "
                f"reused them. Seed {self.seed}.")
