"""The rest of a results folder: opening it (lock, --overwrite, manifest), the configuration claim,
skipped.csv, run.json and its provenance."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from ..api.errors import SidbenchError
from ..api.paths import write_atomic
from . import manifest
from .lock import LOCK_NAME, FolderLock

log = logging.getLogger(__name__)
SKIPPED_COLUMNS = ("path", "reason", "split")
CONFIG_NAME = "config.json"


class ResultsFolder:
    """A results folder held by this run: locked, marked as sidbench's, claimed for one configuration.

    Opening it never deletes anything sidbench did not write; a run that fails before it scored or fitted
    anything leaves nothing behind that could block the corrected command (:meth:`abandon`)."""

    def __init__(self, path: Path, created: list[Path], lock: FolderLock):
        self.path, self.created, self.lock = Path(path), created, lock  # created: the folders this run made
        self.overwritten = False  # cleared by --overwrite: what is left here is not sidbench's, never adopted

    @classmethod
    def open(cls, out: Path, overwrite: bool = False) -> "ResultsFolder":
        """Create (if needed) and lock ``out``; with ``overwrite`` remove what an earlier run wrote there."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise SidbenchError(f"--out {out} is a file, not a folder; choose a folder for the results")
        missing = [p for p in (out, *out.parents) if not p.exists()]  # what mkdir creates (removed by abandon)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SidbenchError(f"--out {out}: cannot create the results folder ({exc.strerror}); "
                                "choose a writable folder") from None
        folder = cls(out, missing, FolderLock(out).acquire())
        try:
            if manifest.is_legacy_results(out):  # written before results folders had a manifest
                manifest.adopt_legacy(out)
            if overwrite:
                manifest.clear_for_overwrite(out, keep=(LOCK_NAME,))
            manifest.mark(out)
        except BaseException:
            folder.release()
            raise
        folder.overwritten = overwrite
        return folder

    def claim(self, identity: dict[str, Any], rows_problem: Callable[[], str | None] = lambda: None) -> None:
        """Resume only the run that started here (see :func:`claim_results_folder`)."""
        if self.overwritten:
            write_atomic(self.path / CONFIG_NAME, config_text(identity))
            return
        claim_results_folder(self.path, identity, rows_problem)

    def has_results(self) -> bool:
        """Whether anything of value is here: a scored row or a fitted checkpoint."""
        return has_results(self.path)

    def abandon(self) -> None:
        """After a failure: if nothing was scored or fitted, remove what this run wrote (and the folder, if
        this run created it and it is now empty), so the corrected command starts clean."""
        if self.has_results():
            return
        manifest.remove_written(self.path, keep=(LOCK_NAME,))
        if self.created and not manifest.files_left(self.path, keep=(LOCK_NAME,)):
            self.release()
            for folder in self.created:  # innermost first: --out, then the parents mkdir made for it
                try:
                    os.rmdir(folder)
                except OSError:
                    break

    def release(self) -> None:
        self.lock.release()


def has_results(out: Path) -> bool:
    """A scores file with at least one row, or a checkpoint (fitting may have taken hours)."""
    from .scores import score_files

    for scores in score_files(out):
        try:
            with open(scores, "rb") as f:
                if len(f.read(1 << 16).splitlines()) > 1:
                    return True
        except OSError:
            continue
    return has_checkpoints(out)


def has_checkpoints(out: Path) -> bool:
    ckpts = out / "checkpoints"
    return ckpts.is_dir() and any(ckpts.iterdir())


def claim_results_folder(out: Path, identity: dict[str, Any], rows_problem: Callable[[], str | None] = lambda: None) -> None:
    """Resume only the run that started in ``out``: another configuration there would mix two runs' scores.

    A claim whose run scored and fitted nothing is taken over (a run that failed on a typo must not block its
    fix). A folder with results but no ``config.json`` is adopted only when ``rows_problem()`` finds that its
    rows belong to this configuration, and never with checkpoints (their training data cannot be checked)."""
    marker, now = out / CONFIG_NAME, json.loads(json.dumps(identity))  # as it reads back (tuples become lists)
    if marker.exists():
        try:
            before = json.loads(marker.read_text(encoding="utf-8", errors="surrogateescape"))
        except (OSError, ValueError):
            before = None
        if before == now:
            return
        if has_results(out):
            changed = sorted(k for k in now if not isinstance(before, dict) or before.get(k) != now[k])
            raise SidbenchError(
                f"{out} holds a run with another configuration (differs in: {', '.join(changed) or 'format'}); "
                "add --overwrite to start over there, or choose another --out"
            )
        log.info(f"{out}: taking over the claim of a run that scored nothing")
    elif has_results(out):
        problem = ("it holds checkpoints/ fitted on unknown data" if has_checkpoints(out)
                   else rows_problem() or recorded_config_problem(out, now))
        if problem:
            raise SidbenchError(f"{out} holds results without a {CONFIG_NAME} that do not match this run ({problem}); "
                                "add --overwrite to start over there, or choose another --out")
        manifest.register(out, ("scores.csv", "scores.rank*-of-*.csv"))  # adopted: they are this run's now
    write_atomic(marker, config_text(now))


def recorded_config_problem(out: Path, identity: dict[str, Any]) -> str | None:
    """Why ``out``'s run.json does not show that its scores were made with ``identity`` (None: it does). The rows
    name only detector, split, perturbation and protocol; backbone, weights, options and seed are in run.json."""
    from .manifest import RUN_JSON_KEYS, json_dict

    info = json_dict(out / "run.json")
    config = info.get("config") if RUN_JSON_KEYS <= set(info) else None
    if not isinstance(config, dict):
        return "no run.json records the options its scores were made with"
    changed = sorted(k for k in identity if config.get(k) != identity[k])
    return f"its run.json records other options: {', '.join(changed)}" if changed else None


def config_text(identity: dict[str, Any]) -> str:
    return json.dumps(identity, indent=2, sort_keys=True) + "\n"


def write_skipped(path: Path, skipped: dict[str, tuple[str, str]]) -> int:
    """``skipped`` maps path -> (reason, split): what this run could not read. Nothing of an earlier run is
    kept: every image without a score is tried again on resume, so one that now reads is no longer listed.
    Returns the count."""
    import pandas as pd

    from .scores import to_csv

    rows = sorted((p, r, s) for p, (r, s) in skipped.items())
    write_atomic(path, to_csv(pd.DataFrame(rows, columns=SKIPPED_COLUMNS)))
    return len(rows)


def environment() -> dict[str, Any]:
    """Versions and hardware for provenance."""
    import platform
    import sys

    import torch

    from .. import __version__

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

    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_json(path: Path, info: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(info, indent=2, default=str, sort_keys=False) + "\n")
