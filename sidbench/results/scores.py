"""``scores.csv``: one row per detector x image x perturbation, streamed (resumable) and finalised sorted.

The row key ``(detector, perturbation, split, path)`` is spelled once, here: one image may belong to
several splits (Synthbuster pairs every generator with the same RAISE reals), so the split is part of it.
``sha256`` is the content hash of the bytes the row was scored from: a resume keeps a row only while the
file still has that content (see :mod:`sidbench.run.resume`).

Text is UTF-8; a path that is not valid UTF-8 is written as its original bytes (surrogate escapes), so it
reads back exactly with :func:`read_scores` (or ``pandas.read_csv(..., encoding_errors="surrogateescape")``).
Cells are written as they are, formulas included (``=...`` split names): these files are data for programs;
``sidbench report --format csv`` is the export to open in a spreadsheet.

This module holds the row format and the whole-file operations (read, finalise, merge); the streaming writer
a run appends through is :mod:`sidbench.results.score_log`.
"""
from __future__ import annotations

import csv
import math
import operator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Mapping

from ..api.paths import ENCODING, ERRORS, write_atomic

if TYPE_CHECKING:
    import pandas as pd

    from ..api.records import Record
    from .operating import OperatingPoints

CALIBRATED = "prob_calibrated"  # with --calibrate: P(fake) after the detector's calibration (added when finished)
SCORE_COLUMNS = ("detector", "split", "group", "generator", "perturbation", "protocol", "path", "label", "logit", "prob",
                 "sha256")
TEXT_COLUMNS = ("detector", "split", "group", "generator", "perturbation", "protocol", "path", "sha256")
ROW_KEY = ("detector", "perturbation", "split", "path")
_KEY_INDEX = tuple(SCORE_COLUMNS.index(c) for c in ROW_KEY)
_KEY_OF_TUPLE = operator.itemgetter(*_KEY_INDEX)


def row_key(row: Mapping[str, Any] | tuple) -> tuple[str, str, str, str]:
    """The key of a score row (a mapping with the column names, or a tuple in ``SCORE_COLUMNS`` order)."""
    if isinstance(row, tuple):  # score_row's: the key cells are strings already
        return _KEY_OF_TUPLE(row)
    return tuple(str(row[c]) for c in ROW_KEY)  # type: ignore[return-value]


def sigmoid(x: float) -> float:
    """P(fake) of a logit, without overflow."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def score_row(detector: str, record: "Record", perturbation: str, protocol: str, logit: float, sha256: str = "") -> tuple:
    """One ``scores.csv`` row (``SCORE_COLUMNS`` order); floats written with ``repr`` so they read back exactly.
    ``sha256``: the content hash of the image bytes scored ("" when unknown: a resume scores such rows again)."""
    r = record
    return (detector, r.split, r.group, r.generator, perturbation, protocol, r.path, r.label,
            repr(float(logit)), repr(sigmoid(logit)), sha256)


def header_of(path: Path) -> list[str]:
    with open(path, newline="", encoding=ENCODING, errors=ERRORS) as f:
        return next(csv.reader(f), [])


def read_scores(path: "Path | IO[bytes]") -> "pd.DataFrame":
    """A scores file with text columns kept verbatim (a split named ``NA`` stays text, undecodable names
    come back as they were); a file of an older format gets the missing columns, empty."""
    import pandas as pd

    df = pd.read_csv(path, dtype={c: object for c in TEXT_COLUMNS}, keep_default_na=False,
                     encoding=ENCODING, encoding_errors=ERRORS)
    for c in SCORE_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    return df[list(SCORE_COLUMNS) + [c for c in df.columns if c not in SCORE_COLUMNS]]


def to_csv(df: "pd.DataFrame") -> str:
    """CSV text of ``df`` that reads back as it was: Python's csv writer leaves a lone ``\\r`` unquoted when lines
    end with ``\\n`` (a file name holding one then splits its row), so such a table quotes every text cell."""
    text_cols = [c for c in df.columns if df[c].dtype == object or str(df[c].dtype) in ("str", "string")]
    if any(df[c].astype(str).str.contains("\r", regex=False).any() for c in text_cols):
        return df.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)
    return df.to_csv(index=False)


def finalize_scores(path: Path) -> "pd.DataFrame":
    """Sort the streamed scores (so a resumed run's file equals an uninterrupted one) and rewrite atomically."""
    df = read_scores(path).sort_values(list(ROW_KEY), kind="stable")
    df = df.drop_duplicates(list(ROW_KEY), keep="first").reset_index(drop=True)
    write_atomic(path, to_csv(df))
    return df


def write_calibrated(path: Path, scores: "pd.DataFrame", op: "OperatingPoints") -> "pd.DataFrame":
    """Put ``prob_calibrated`` (the calibrated P(fake)) next to ``prob`` when ``op`` calibrates, or take an
    earlier run's column away when it does not; the raw ``logit`` and ``prob`` stay as they are."""
    import numpy as np

    from .operating import p_fake

    if CALIBRATED not in scores and not op.calibration:
        return scores
    df = scores.drop(columns=[CALIBRATED], errors="ignore")
    if op.calibration:
        logits = df["logit"].to_numpy(dtype=np.float64)
        calibrated = logits.copy()
        for det, cal in op.calibration.items():
            rows = (df["detector"] == det).to_numpy()
            calibrated[rows] = cal.apply(logits[rows])
        df.insert(df.columns.get_loc("prob") + 1, CALIBRATED, p_fake(calibrated))
    write_atomic(path, to_csv(df))
    return df


def rank_score_files(out: Path) -> list[Path]:
    """The per-rank score files of a torchrun run in ``out`` (merged into scores.csv when it ends)."""
    return sorted(out.glob("scores.rank*-of-*.csv"))


def score_files(out: Path) -> list[Path]:
    """``out``'s score files that exist: scores.csv and any per-rank file."""
    return [p for p in [out / "scores.csv", *rank_score_files(out)] if p.exists()]


def done_rows(path: Path) -> set[tuple[str, str, str, str]]:
    """The row keys of a (possibly torn) scores file."""
    with open(path, newline="", encoding=ENCODING, errors=ERRORS) as f:
        return {row_key(row) for row in csv.DictReader(f) if all(row.get(c) is not None for c in ROW_KEY)}


def merge_score_files(main: Path, parts: list[Path]) -> None:
    """Fold per-rank score files into ``main`` (first row of a key wins) and remove them."""
    import pandas as pd

    from .score_log import ScoreLog

    if not parts:
        return
    for p in parts:
        ScoreLog(p).close()  # cuts a torn last line left by a killed earlier run
    frames = [read_scores(p) for p in ([main] if main.exists() else []) + parts]
    merged = pd.concat(frames, ignore_index=True).drop_duplicates(list(ROW_KEY), keep="first")
    write_atomic(main, to_csv(merged))
    for p in parts:
        p.unlink()
