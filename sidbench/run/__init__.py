"""Runs: the configuration (one RunConfig for run, train, ablate and score), the records it reads
(folders, suites, the quickstart), and the orchestration of fitting and scoring into a results folder."""
from __future__ import annotations

from .config import RunConfig, RunData, pick_device
from .orchestrate import run

__all__ = ["RunConfig", "RunData", "pick_device", "run"]
