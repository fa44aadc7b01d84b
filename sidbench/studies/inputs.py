"""What a study reads: the RunConfig built of its flags (as `sidbench run` has one) and its records
(``--data/--train/--val``, or the generated quickstart)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..api.errors import SidbenchError
from ..api.records import Record

if TYPE_CHECKING:
    import argparse

    from ..run.config import RunConfig


@dataclass
class StudyData:
    """Training, validation and test records, and where they came from."""

    train: list[Record]
    val: list[Record]
    test: list[Record]
    quickstart: bool
    sources: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        count = lambda rs: {"images": len(rs), "real": sum(r.label == 0 for r in rs), "fake": sum(r.label == 1 for r in rs)}
        return {"quickstart": self.quickstart, "sources": self.sources, "train": count(self.train),
                "val": count(self.val), "test": {**count(self.test), "splits": sorted({r.split for r in self.test})}}


def study_data(cfg: "RunConfig", plugins: Any, study: str) -> StudyData:
    """``--data/--train/--val`` records, or the generated quickstart when none of them is given."""
    from ..run.inputs import records_of

    if not (cfg.data or cfg.train or cfg.val):
        from ..data.quickstart import QuickstartLayout, ensure_quickstart

        root, layout = ensure_quickstart(), QuickstartLayout()
        return StudyData(layout.records(root, split="train"), layout.records(root, split="val"),
                         layout.records(root, split="test"), True, {"quickstart": str(root)})
    if not cfg.data:
        raise SidbenchError(f"study {study}: give the test data with --data PATH (or no data flags for the quickstart)")
    if not cfg.train:
        raise SidbenchError(f"study {study} fits detectors: give --train PATH (and --val PATH to select on)")
    test, train, val = (records_of(cfg.data, plugins), records_of(cfg.train, plugins, role="train", flag="--train"),
                         records_of(cfg.val, plugins, role="val", flag="--val"))
    return StudyData(train, val, test, False, {"data": cfg.data, "train": cfg.train, "val": cfg.val})


def study_config(args: "argparse.Namespace", study: str) -> "RunConfig":
    """The RunConfig of a study's flags (recorded in run.json as a run's is); its ``detectors`` are filled in
    when the study finishes, with the detectors it built. Studies keep their features in memory: no cache."""
    from ..run.config import RunConfig

    return RunConfig(data=list(args.data or []), backbone=args.backbone, weights=args.weights, device=args.device,
                     precision=getattr(args, "precision", None), batch_size=args.batch_size or 64,
                     workers=args.workers, out=args.out or f"results/ablate-{study}", train=args.train, val=args.val,
                     seed=0 if args.seed is None else int(args.seed),
                     progress=not (args.no_progress or getattr(args, "quiet", False)) and sys.stderr.isatty(), no_cache=True,
                     compile=bool(getattr(args, "compile", None)), decode=getattr(args, "decode", None) or "auto")
