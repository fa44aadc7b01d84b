"""A record is one image to score: where it is, what it is, and which split it belongs to."""
from __future__ import annotations

from dataclasses import dataclass

REAL, FAKE = 0, 1
UNKNOWN = -1  # images scored without a label (``sidbench score``); such records never reach the metrics


@dataclass(frozen=True)
class Record:
    """One image. ``label`` 1 = fake (the positive class everywhere), 0 = real, -1 (``UNKNOWN``) not known."""

    path: str
    label: int
    split: str
    group: str = ""
    generator: str = ""  # which generator made a fake ("" for reals)

    @property
    def key(self) -> str:
        """Stable identity for per-image seeds: independent of where the data folder is mounted."""
        parts = self.path.replace("\\", "/").split("/")
        return "/".join([self.split, *parts[-3:]])
