"""Scale-out with ``torch.distributed`` under ``torchrun``: each rank scores a shard, rank 0 merges.

``torchrun --nproc_per_node N -m sidbench.cli run ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
each rank takes every N-th chunk of ``batch_size`` records, streams its scores to ``scores.rank<R>-of-<N>.csv`` (resumable
like ``scores.csv``), rank 0 fits the detectors that need it (the others load the checkpoint it
saves) and, once every rank is done, merges the scores and writes metrics, leaderboard and run.json.
Backend: NCCL on CUDA, gloo on CPU. Without ``WORLD_SIZE`` > 1 everything here is a no-op.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

T = TypeVar("T")

TIMEOUT = timedelta(hours=4)  # rank 0 may fit heads for a long time while the others wait


@dataclass(frozen=True)
class Dist:
    """This process's place in the run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this run initialised the process group, so it tears it down

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """One GPU per rank: ``cuda`` (or any ``cuda:N``: under torchrun a fixed index would put every rank on
        one GPU) becomes ``cuda:LOCAL_RANK``."""
        if self.active and str(device).split(":")[0] == "cuda":
            import torch

            if str(device) not in ("cuda", f"cuda:{self.local_rank}"):
                import logging

                logging.getLogger("sidbench").warning(
                    "--device %s under torchrun: rank %d uses cuda:%d (one GPU per local rank)", device, self.rank,
                    self.local_rank)
            torch.cuda.set_device(self.local_rank)
            return f"cuda:{self.local_rank}"
        return device

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` on every rank (small Python objects: skipped files, timings)."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """Rank 0 runs ``fn`` (e.g. locks and claims the results folder) while the others wait; its failure
        becomes the same one-line error on every rank. Returns fn's result on rank 0, None elsewhere."""
        from ..api.errors import SidbenchError

        result, error = None, None
        try:
            if self.is_main:
                result = fn()
        except BaseException as exc:
            error = exc
        if self.active:
            message = self.gather(None if error is None else str(error) or type(error).__name__)[0]
            if message is not None and error is None:
                raise SidbenchError(message)
        if error is not None:
            raise error
        return result

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. fits and saves a checkpoint); the others then run it too."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def close(self) -> None:
        if self.active and self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def init(device: str | None) -> Dist:
    """Join the process group torchrun describes in the environment (or return a single-process Dist)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        cuda = (device or "auto").startswith("cuda") or (device in (None, "", "auto") and torch.cuda.is_available())
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        owns = True
    return Dist(rank, world, local, owns)


def scores_path(out: Path, d: Dist) -> Path:
    return out / "scores.csv" if not d.active else out / f"scores.rank{d.rank}-of-{d.world}.csv"


def open_scores(out: Path, d: Dist):
    """This rank's ScoreLog, knowing every row any earlier run (single or distributed) finished."""
    from ..results.scores import ScoreLog, done_rows, score_files

    log = ScoreLog(scores_path(out, d))
    if d.active:
        for other in score_files(out):
            if other != log.path:
                log.done |= done_rows(other)
    return log


def merge_scores(out: Path) -> None:
    """Rank 0, after every rank finished: fold the rank files into ``scores.csv`` and remove them."""
    from ..results.scores import merge_score_files, rank_score_files

    merge_score_files(out / "scores.csv", rank_score_files(out))
