"""The rest of a results folder: the configuration claim, skipped.csv, run.json and its provenance."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..api.errors import SidbenchError
from ..api.paths import write_atomic

SKIPPED_COLUMNS = ("path", "reason", "split")


def claim_results_folder(out: Path, identity: dict[str, Any]) -> None:
    """Resume only the run that started in ``out``: another configuration there would mix two runs' scores."""
    marker, now = out / "config.json", json.loads(json.dumps(identity))
    if marker.exists():
        try:
            before = json.loads(marker.read_text())
        except ValueError:
            before = None
        if before != now:
            changed = sorted(k for k in now if not isinstance(before, dict) or before.get(k) != now[k])
            raise SidbenchError(
                f"{out} holds a run with another configuration (differs in: {', '.join(changed) or 'format'}); "
                "add --overwrite to start over there, or choose another --out"
            )
        return
    write_atomic(marker, json.dumps(now, indent=2, sort_keys=True) + "\n")


def write_skipped(path: Path, skipped: dict[str, tuple[str, str]]) -> int:
    """``skipped`` maps path -> (reason, split); merged with what an interrupted run recorded. Returns the count."""
    import pandas as pd

    if path.exists():
        for row in pd.read_csv(path, dtype=str, keep_default_na=False).itertuples():
            skipped.setdefault(row.path, (row.reason, row.split))
    rows = sorted((p, r, s) for p, (r, s) in skipped.items())
    write_atomic(path, pd.DataFrame(rows, columns=SKIPPED_COLUMNS).to_csv(index=False))
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
