"""Several results folders merged into one leaderboard (read by :mod:`sidbench.reports.runs`).

Merging rule: a row is one *model under one operating point*: (detector name, model identity, threshold
policy, calibration). The model identity comes from run.json: the weights' or fitted checkpoint's SHA-256
(or the checkpoint the run saved under ``checkpoints/``), the backbone and the options; two models that share
a name are never averaged: each row is labelled with what tells them apart, ``clip_svm [ab12cd]`` (the
first hex digits of the weights' hash, or of the identity when there are no weights), ``name [val]`` (threshold
policy) or ``name [platt]`` (calibration). Rows of one key found in several runs merge when the runs cover
different cells (e.g. one run on the UniversalFakeDetect splits, another on Synthbuster: one row, means over
the union); when two runs hold the same cell, nothing is overwritten: the row is shown once per run as
``name (run)``. Group means are always recomputed from the per-split rows (the same unweighted means as
``metrics.csv``), and every merged table names each row's threshold policy and calibration.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Sequence

from ..api.checkpoints import file_sha256
from .runs import ReportError, Run, checked_scores, read_table

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ModelKey:
    """What a merged row stands for: a detector name, its model identity, threshold policy and calibration."""

    detector: str
    identity: str  # hex digest: weights/checkpoint SHA-256, or a digest of backbone + options ("" when unknown)
    threshold: str = "fixed"
    calibration: str = "none"

    @property
    def tag(self) -> str:
        return self.identity[:6]

    @property
    def operating(self) -> str:
        return f"threshold {self.threshold}, calibration {self.calibration}"


def model_identity(run: "Run", detector: str) -> str:
    """The model behind ``detector`` in ``run``: the SHA-256 of its weights or fitted checkpoint as run.json
    records it, else of the checkpoint the run fitted (``checkpoints/NAME.safetensors``), else a digest of
    the spec, backbone and options in run.json; "" when run.json does not describe the detector."""
    import hashlib

    info = next((d for d in run.info.get("detectors", []) if d.get("name") == detector), None)
    for key in ("checkpoint", "weights"):
        entry = (info or {}).get(key)
        if isinstance(entry, dict) and entry.get("sha256"):
            return str(entry["sha256"])
    fitted = run.path / "checkpoints" / f"{detector}.safetensors"
    if fitted.is_file() and not fitted.is_symlink():
        try:
            return file_sha256(fitted, remember=False)  # a report never writes the user's hash memo
        except OSError:
            pass
    if info is None:
        return ""
    described = {k: info.get(k) for k in ("spec", "backbone", "options", "input") if info.get(k) is not None}
    if not described:
        return ""
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def calibration_of(run: "Run") -> dict:
    """run.json's ``operating_points.calibration`` ({} when absent or null, as an older or hand-edited run.json
    may hold)."""
    return (run.info.get("operating_points") or {}).get("calibration") or {}


def operating_of(run: "Run", detector: str) -> tuple[str, str]:
    """(threshold policy, calibration method or "none") of ``detector`` in ``run``: from run.json's
    ``operating_points``, else from the metrics rows' ``threshold_source`` (older runs: fixed)."""
    op = run.info.get("operating_points") or {}
    method = calibration_of(run).get("method")
    detectors = calibration_of(run).get("detectors") or {}
    calibration = method if method and (not detectors or detector in detectors) else "none"
    if op.get("threshold"):
        return str(op["threshold"]), calibration
    rows = run.metrics[run.metrics["detector"] == detector]
    sources = sorted({str(v) for v in rows.get("threshold_source", []) if str(v)})
    return ("+".join(sources) or "fixed"), calibration


def shown_names(keys: Sequence[ModelKey]) -> dict[ModelKey, str]:
    """The row label of each key: the detector name, plus in brackets what tells apart keys sharing that name
    (identity tag, threshold policy, calibration)."""
    out: dict[ModelKey, str] = {}
    by_name: dict[str, list[ModelKey]] = {}
    for k in dict.fromkeys(keys):
        by_name.setdefault(k.detector, []).append(k)
    for name, ks in by_name.items():
        if len(ks) == 1:
            out[ks[0]] = name
            continue
        differ = [f for f in ("tag", "threshold", "calibration") if len({getattr(k, f) for k in ks}) > 1]
        for k in ks:
            parts = [getattr(k, f) or "unknown" for f in differ]
            out[k] = f"{name} [{', '.join(parts)}]"
    return out


@dataclass
class Merged:
    """Several runs as one table; ``rename`` maps (run name, detector) to the name shown, ``keys`` a shown
    name to the model key(s) behind it."""

    runs: list[Run]
    rename: dict[tuple[str, str], str]
    metrics: "pd.DataFrame"  # per-split rows then mean:<group> and mean:all rows
    keys: dict[str, ModelKey] = field(default_factory=dict)

    def operating_note(self) -> str:
        """One line for every merged table: each row's threshold policy and calibration."""
        ops = {name: k.operating for name, k in self.keys.items() if name in set(self.metrics["detector"])}
        if not ops:
            return ""
        if len(set(ops.values())) == 1:
            return f"All rows: {next(iter(ops.values()))}."
        return "Per row: " + "; ".join(f"{n}: {o}" for n, o in ops.items()) + "."

    @property
    def detectors(self) -> list[str]:
        return list(dict.fromkeys(self.rename.values()))

    @property
    def has_scores(self) -> bool:
        return all(r.scores_path.is_file() for r in self.runs)

    @cached_property
    def scores(self) -> "pd.DataFrame":
        """Every run's ``scores.csv`` with detectors renamed as in the tables."""
        import pandas as pd

        from ..results.scores import read_scores

        missing = [str(r.scores_path) for r in self.runs if not r.scores_path.is_file()]
        if missing:
            raise ReportError(f"{missing[0]} is missing: bootstrap intervals and curves need the per-image scores")
        parts = []
        for run in self.runs:
            df = checked_scores(run.scores_path, read_table(run.scores_path, lambda p=run.scores_path: read_scores(p)))
            calibrations = calibration_of(run).get("detectors") or {}
            if calibrations:
                df["logit_calibrated"] = calibrated_logits(df, calibrations)
            df["detector"] = [self.rename.get((run.name, d), d) for d in df["detector"]]
            parts.append(df)
        scores = pd.concat(parts, ignore_index=True)
        if "logit_calibrated" in scores:  # runs without a calibration: the raw logit
            scores["logit_calibrated"] = scores["logit_calibrated"].fillna(scores["logit"])
        return scores

    @cached_property
    def training_data(self) -> dict[str, set[str]]:
        """Shown detector name -> generators (lower case) it saw in training, from run.json."""
        seen: dict[str, set[str]] = {}
        for run in self.runs:
            for det in run.info.get("detectors", []):
                shown = self.rename.get((run.name, det.get("name", "")))
                if shown:
                    seen.setdefault(shown, set()).update(str(g).lower() for g in det.get("training_data") or ())
        return seen

    @cached_property
    def split_generators(self) -> dict[str, set[str]]:
        """Split -> its name, its last path part and the generators of its fake images (lower case)."""
        import pandas as pd

        from ..results.leaderboard import split_names

        splits = set(self.metrics["split"])
        pairs = [(s, "") for s in splits]
        for run in self.runs:
            if run.scores_path.is_file():
                gens = read_table(run.scores_path, lambda p=run.scores_path: pd.read_csv(
                    p, usecols=["split", "generator"], dtype=object, keep_default_na=False, encoding="utf-8",
                    encoding_errors="surrogateescape"))
                pairs += [(s, g) for s, g in gens.drop_duplicates().itertuples(index=False) if s in splits]
        return split_names(pairs)

    def seen_in_training(self, detector: str, split: str) -> bool:
        """Whether any generator of ``split`` is in the detector's training data."""
        return self._seen(detector, split)

    @cached_property
    def _seen(self):
        from ..results.leaderboard import seen_marker

        return seen_marker(self.training_data, self.split_generators)


def calibrated_logits(scores: "pd.DataFrame", calibrations: dict[str, dict[str, float]]):
    """``scale * logit + bias`` per detector, as run.json's ``operating_points.calibration`` records it."""
    import numpy as np

    logits = scores["logit"].to_numpy(dtype=np.float64)
    out = logits.copy()
    from ..results.operating import Calibration

    for det, cal in calibrations.items():
        rows = (scores["detector"] == det).to_numpy()
        out[rows] = Calibration("", float(cal["scale"]), float(cal["bias"])).apply(logits[rows])
    return out


def merge_runs(runs: Sequence[Run]) -> Merged:
    """One leaderboard from several runs (see the module docstring for the rule on clashes)."""
    import pandas as pd

    from ..results.metrics import group_means

    if not runs:
        raise ReportError("give at least one results folder")
    key_of: dict[tuple[str, str], ModelKey] = {}
    for run in runs:
        for det in dict.fromkeys(run.metrics["detector"]):
            key_of[(run.name, det)] = ModelKey(det, model_identity(run, det), *operating_of(run, det))
    label = shown_names(list(key_of.values()))
    cells: dict[str, dict[str, set]] = {}
    for run in runs:
        for det, df in run.metrics.groupby("detector", sort=False):
            cells.setdefault(label[key_of[(run.name, det)]], {})[run.name] = set(zip(df["split"], df["perturbation"]))
    rename, keys = {}, {}
    for (run_name, det), key in key_of.items():
        shown, by_run = label[key], cells[label[key]]
        clash = len(by_run) > 1 and sum(map(len, by_run.values())) > len(set().union(*by_run.values()))
        rename[(run_name, det)] = f"{shown} ({run_name})" if clash else shown
        keys[rename[(run_name, det)]] = key
    parts = []
    for run in runs:
        df = run.metrics.copy()
        df["detector"] = [rename[(run.name, d)] for d in df["detector"]]
        parts.append(df)
    table = pd.concat(parts, ignore_index=True)
    table = pd.concat([table, group_means(table)], ignore_index=True)
    return Merged(list(runs), rename, table, keys)
