"""Resume follows the files: before scoring, every row an earlier run wrote is checked against this run.

A row stays only while it still describes this run: its detector and perturbation are configured, its
detector is the same (code, options, checkpoint content: ``.sidbench-detectors`` remembers each detector's
identity digest), its image is still listed (a deleted image leaves the results), it was scored under the
protocol this run assigns it, and the file still has the content it was scored from (a changed image is
scored again).
A folder without ``config.json`` is adopted only when every row passes the first four checks.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.records import Record
from ..results.scores import score_files
from .config import RunConfig, RunData

if TYPE_CHECKING:
    import pandas as pd

    from ..api.detector import Detector

Log = Callable[[str], None]
DETECTORS_NAME = ".sidbench-detectors"  # detector name -> identity digest of the detector that scored its rows


def detector_digest(det: "Detector") -> str:
    """A short digest of what fixes a detector's scores (:meth:`Detector.identity`); the weights of a detector
    fitted by this command (saved in, and reloaded from, the results folder) are covered by the run's config."""
    ident = det.identity()
    if getattr(det, "fitted_in_run", False):
        ident.pop("weights", None)
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def recorded_detectors(out: Path) -> dict[str, Any]:
    """``.sidbench-detectors`` of ``out``: detector name -> the identity digest that scored its rows ({} when
    there is none or it is unreadable)."""
    try:
        known = json.loads((out / DETECTORS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def changed_detectors(out: Path, detectors: Sequence["Detector"]) -> set[str]:
    """The detectors whose identity differs from the one that scored their rows in ``out`` (none known: none)."""
    before = recorded_detectors(out)
    return {d.name for d in detectors if d.name in before and before[d.name] != detector_digest(d)}


def record_detectors(out: Path, detectors: Sequence["Detector"]) -> None:
    """Remember which detector identity scores each detector's rows (read back by :func:`changed_detectors`)."""
    from ..api.paths import write_atomic

    known = recorded_detectors(out)
    known.update({d.name: detector_digest(d) for d in detectors})
    write_atomic(out / DETECTORS_NAME, json.dumps(known, indent=1, sort_keys=True) + "\n")


def protocol_for(det: "Detector", r: Record, data: RunData, cfg: RunConfig) -> str:
    """The preprocessing protocol ``det`` scores ``r`` with: ``--protocol``, a suite plan's, or the detector's."""
    planned = data.plan.protocol(det, r) if data.plan is not None and not cfg.protocol else None
    return planned or det.preprocess


class RowCheck:
    """Whether an earlier run's score row belongs to this run's configuration."""

    def __init__(self, detectors: Sequence["Detector"], perturbations: Sequence[Any], data: RunData, cfg: RunConfig,
                 records: Sequence[Record] | None = None):
        self.detectors = {d.name: d for d in detectors}
        self.perturbations = {p.name for p in perturbations}
        self.records = {(r.split, r.path): r for r in (data.test if records is None else records)}
        self.data, self.cfg = data, cfg
        self.changed: set[str] = set()  # detectors whose code, options or checkpoint changed (changed_detectors)

    def problem(self, detector: str, perturbation: str, split: str, path: str, protocol: str) -> str | None:
        """Why the row does not belong here (None: it does); ``deleted`` when its image is no longer listed."""
        det = self.detectors.get(detector)
        if det is None:
            return f"detector {detector!r} is not in this run"
        if detector in self.changed:
            return "detector changed"
        if perturbation not in self.perturbations:
            return f"perturbation {perturbation!r} is not in this run"
        r = self.records.get((split, path))
        if r is None:
            return "deleted"
        if self.data.plan is not None and not self.data.plan.wants(perturbation, r):
            return f"perturbation {perturbation!r} is not planned for split {split!r}"
        want = protocol_for(det, r, self.data, self.cfg)
        if protocol != want:
            return f"scored with protocol {protocol!r}, this run uses {want!r}"
        return None

    def problems(self, df: "pd.DataFrame") -> list[str | None]:
        cols = ("detector", "perturbation", "split", "path", "protocol")
        return [self.problem(*row) for row in zip(*(df[c] for c in cols))]

    def adoption_problem(self, out: Path) -> str | None:
        """The first row of ``out``'s score files that does not belong to this run (for a folder without
        config.json), or None when all do."""
        from ..results.resume import complete_scores

        for path in score_files(out):
            df = complete_scores(path)
            for (det, split, p), problem in zip(zip(df["detector"], df["split"], df["path"]), self.problems(df)):
                if problem:
                    reason = "an image this run does not list" if problem == "deleted" else problem
                    return f"{path.name} has a row of {det!r} on {split}/{Path(p).name}: {reason}"
        return None


def prune_stale_rows(out: Path, check: RowCheck, log: Log, files: Sequence[Path] | None = None,
                     what: str = "score") -> None:
    """Drop every row that no longer holds (see the module docstring) from every score file in ``out`` (or
    ``files``), so the resume scores those images again; says in one line what went and why."""
    import numpy as np

    from ..results.resume import INDEX_NAME, FileIndex, current_digests, repaired_scores, write_scores

    frames = {f: repaired_scores(f) for f in (score_files(out) if files is None else [f for f in files if f.exists()])}
    if not frames:
        return
    listed = {p for df in frames.values() for s, p in zip(df["split"], df["path"]) if (s, p) in check.records}
    index, fresh = FileIndex(out / INDEX_NAME), []
    digests = current_digests(listed, index.load(), fresh=fresh)
    index.append(fresh)  # a touched but unchanged image is not read again on the next resume
    counts = {"changed": 0, "deleted": 0, "detector changed": 0, "other": 0}
    for f, df in frames.items():
        mask = []
        for problem, path, sha in zip(check.problems(df), df["path"], df["sha256"]):
            why = problem if problem else (None if sha and digests.get(path) == sha else "changed")
            why = why if why in (None, "changed", "deleted", "detector changed") else "other"
            if why:
                counts[why] += 1
            mask.append(why is None)
        if not all(mask):
            write_scores(f, df[np.array(mask, dtype=bool)])
    said = {"changed": "of changed images (scored again)", "deleted": "of images no longer listed",
            "detector changed": f"of detectors whose code, options or checkpoint changed ({', '.join(sorted(check.changed))}; "
                                "scored again)",
            "other": "of another protocol (scored again)"}
    parts = [f"{n} {said[k]}" for k, n in counts.items() if n]
    if parts:
        log(f"resume: dropped {sum(counts.values())} {what} row(s) that no longer hold: {', '.join(parts)}")
