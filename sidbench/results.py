"""The results folder: scores.csv (streamed, resumable), skipped.csv, metrics.csv, leaderboard.md, run.json."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .paths import write_atomic

if TYPE_CHECKING:
    import pandas as pd

SCORE_COLUMNS = ("detector", "split", "group", "generator", "perturbation", "protocol", "path", "label", "logit", "prob")
SKIPPED_COLUMNS = ("path", "reason", "split")


class ScoreLog:
    """Append-only ``scores.csv``: each batch is flushed and fsynced, so a killed run loses at
    most the batch in flight; on reopening, a torn last line is cut off and finished rows are known."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # (detector, perturbation, split, path): one image may belong to several splits
        # (Synthbuster pairs every generator with the same RAISE reals).
        self.done: set[tuple[str, str, str, str]] = set()
        if self.path.exists():
            self._repair()
            with open(self.path, newline="") as f:
                for row in csv.DictReader(f):
                    self.done.add((row["detector"], row["perturbation"], row["split"], row["path"]))
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._f = open(self.path, "a", newline="")
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(SCORE_COLUMNS)
            self._flush()

    def _repair(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def write(self, rows: Iterable[tuple]) -> None:
        for row in rows:
            self._w.writerow(row)
            self.done.add((row[0], row[4], row[1], row[6]))
        self._flush()

    def _flush(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_scores(path: Path) -> "pd.DataFrame":
    import pandas as pd

    return pd.read_csv(path, dtype={"split": str, "group": str, "generator": str, "detector": str,
                                    "perturbation": str, "path": str}, keep_default_na=False)


def finalize_scores(path: Path) -> "pd.DataFrame":
    """Sort the streamed scores (so a resumed run's file equals an uninterrupted one) and rewrite atomically."""
    df = read_scores(path).sort_values(["detector", "perturbation", "split", "path"], kind="stable")
    df = df.drop_duplicates(["detector", "perturbation", "split", "path"], keep="first").reset_index(drop=True)
    write_atomic(path, df.to_csv(index=False))
    return df


def write_skipped(path: Path, skipped: dict[str, tuple[str, str]]) -> None:
    """``skipped`` maps path -> (reason, split); merged with what an interrupted run recorded."""
    import pandas as pd

    if path.exists():
        for row in pd.read_csv(path, dtype=str, keep_default_na=False).itertuples():
            skipped.setdefault(row.path, (row.reason, row.split))
    rows = sorted((p, r, s) for p, (r, s) in skipped.items())
    write_atomic(path, pd.DataFrame(rows, columns=SKIPPED_COLUMNS).to_csv(index=False))


def leaderboard_markdown(metrics: "pd.DataFrame", metrics_shown: tuple[str, ...] = ("acc", "ap")) -> str:
    """Detectors x splits tables (in %), one per metric and perturbation, means last: the same
    tables as ``sidbench report --format md`` (best per column in bold)."""
    from .reports.tables import leaderboard, perturbation_order, to_markdown

    perts = perturbation_order(metrics["perturbation"])
    return to_markdown([leaderboard(metrics, m, p) for p in perts for m in metrics_shown])


def environment() -> dict[str, Any]:
    """Versions and hardware for provenance."""
    import platform
    import sys

    import torch

    from . import __version__

    env: dict[str, Any] = {
        "sidbench": __version__,
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
    }
    try:
        import open_clip

        env["open_clip"] = open_clip.__version__
    except Exception:  # noqa: BLE001
        pass
    return env


def git_commit() -> str | None:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_json(path: Path, info: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(info, indent=2, default=str, sort_keys=False) + "\n")
