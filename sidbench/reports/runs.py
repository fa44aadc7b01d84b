"""Results folders read back for reports: ``metrics.csv``, ``run.json`` and ``scores.csv``, each checked where it
is read so that a torn or hand-edited file is one line naming what is wrong (:mod:`sidbench.reports.merge`
makes one leaderboard of several).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..api.errors import SidbenchError
from ..results.metrics import KEYS, METRICS, metric_columns

if TYPE_CHECKING:
    import pandas as pd

    from .merge import Merged


class ReportError(SidbenchError):
    """A results folder cannot be reported on (missing files, bad options)."""


@dataclass
class Run:
    """One results folder written by ``sidbench run``."""

    name: str
    path: Path
    metrics: "pd.DataFrame"  # per-split rows only (mean rows are recomputed after merging)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.csv"


def read_metrics(path: Path) -> "pd.DataFrame":
    """``metrics.csv`` with text keys kept verbatim (a split named ``none`` or ``NA`` stays text)."""
    import pandas as pd

    df = read_table(path, lambda: pd.read_csv(path, dtype=object, keep_default_na=False, encoding="utf-8",
                                              encoding_errors="surrogateescape"))
    missing = [c for c in (*KEYS, "n_real", "n_fake", *METRICS) if c not in df.columns]
    if missing:
        raise ReportError(f"{path}: not a sidbench metrics table (missing column(s) {', '.join(missing)})")
    for c in ("n_real", "n_fake", *metric_columns(df), *(["threshold"] if "threshold" in df else [])):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


def read_table(path: Path, read: "Callable[[], pd.DataFrame]") -> "pd.DataFrame":
    """``read()`` of a CSV file, its faults (empty, torn, unreadable) as one line."""
    import pandas as pd

    try:
        return read()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror})") from None
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ReportError(f"{path}: not a CSV table sidbench wrote ({detail}); restore it, or run again") from None


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read ``metrics.csv`` (required) and ``run.json`` (optional) of a results folder."""
    path = Path(path)
    if not (path / "metrics.csv").is_file():
        raise ReportError(f"{path} is not a results folder (no metrics.csv); give a folder written by `sidbench run`")
    metrics = read_metrics(path / "metrics.csv")
    metrics = metrics[~metrics["split"].str.startswith("mean:")].reset_index(drop=True)
    info_path = path / "run.json"
    info = read_run_info(info_path) if info_path.is_file() else {}
    return Run(name or path.resolve().name, path, metrics, info)


def load_runs(paths: Sequence[str | Path]) -> "Merged":
    """Read and merge results folders (:func:`sidbench.reports.merge.merge_runs`)."""
    from .merge import merge_runs

    names = run_names([Path(p) for p in paths])
    return merge_runs([load_run(p, n) for p, n in zip(paths, names)])


_INFO_TYPES = {"environment": dict, "counts": dict, "backbones": dict, "operating_points": dict, "detectors": list}


def read_run_info(path: Path) -> dict[str, Any]:
    """``run.json``, checked where the report reads it: a file edited by hand is one line naming what is wrong."""
    def bad(what: str) -> ReportError:
        return ReportError(f"{path}: not a run.json written by sidbench ({what}); restore it, or remove it to report "
                           "without provenance")

    try:
        info = json.loads(path.read_bytes())
    except OSError as exc:
        raise ReportError(f"{path}: cannot read it ({exc.strerror})") from None
    except ValueError as exc:
        raise bad(f"invalid JSON: {exc}") from None
    if not isinstance(info, dict):
        raise bad("not a JSON object")
    for key, kind in _INFO_TYPES.items():
        if info.get(key) is not None and not isinstance(info[key], kind):
            raise bad(f"{key!r} is not a {'list' if kind is list else 'table'}")
    for det in info.get("detectors") or []:
        if not isinstance(det, dict) or not isinstance(det.get("name", ""), str) \
                or not isinstance(det.get("training_data") or [], list):
            raise bad("'detectors' holds an entry that is not a detector with a name")
    calibration = (info.get("operating_points") or {}).get("calibration") or {}
    detectors = calibration.get("detectors") if isinstance(calibration, dict) else None
    if not isinstance(calibration, dict) or not isinstance(detectors or {}, dict) or not all(
            isinstance(c, dict) and all(_number(c.get(k)) for k in ("scale", "bias")) for c in (detectors or {}).values()):
        raise bad("'operating_points.calibration' is not a table of numeric scale and bias per detector")
    return info


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_names(paths: Sequence[Path]) -> list[str]:
    """Folder names, lengthened with their parents where two runs share one."""
    paths = [Path(p).resolve() for p in paths]
    if len(set(paths)) < len(paths):
        raise ReportError("the same results folder was given twice")
    depth = 1
    while True:
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names) or depth > max(len(p.parts) for p in paths):
            return names
        depth += 1


def checked_scores(path: Path, df: "pd.DataFrame") -> "pd.DataFrame":
    """A scores table whose labels are 0/1 and logits numbers (a hand-edited cell is one line naming its row)."""
    import numpy as np
    import pandas as pd

    for col in ("detector", "split", "perturbation", "path"):
        if (df[col] == "").all() and len(df):
            raise ReportError(f"{path}: not a sidbench scores table (its {col!r} column is missing or empty)")
    label = pd.to_numeric(df["label"], errors="coerce")
    logit = pd.to_numeric(df["logit"], errors="coerce")
    bad = ~label.isin([0, 1]) | logit.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ReportError(f"{path}: line {row + 2} is not a score (label {str(df['label'].iloc[row])!r}, logit "
                          f"{str(df['logit'].iloc[row])!r}); restore the file, or run again")
    return df.assign(label=label.astype(int), logit=logit.astype(float))
