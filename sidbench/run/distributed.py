"""Scale-out with ``torch.distributed`` under ``torchrun``: each rank scores a shard, rank 0 merges.

``torchrun --nproc_per_node N -m sidbench.cli run ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``;
each rank takes every N-th chunk of ``batch_size`` records, streams its scores to ``scores.rank<R>-of-<N>.csv`` (resumable
like ``scores.csv``) and its features to its own cache shard, and, once every rank is done, rank 0 merges
the scores and writes metrics, leaderboard and run.json.

Nothing is fitted under torchrun (one rank fitting for hours while the others idle behind a collective is the
wrong use of N GPUs): a detector that needs fitting and has no checkpoint is refused before the results
folder is touched, with the command that fits it on one process. So every wait between ranks is short
(claiming the folder, pruning stale rows, the slowest rank's last chunks), and ``TIMEOUT`` bounds it. Rank 0's
steps that the others wait for (:meth:`Dist.on_main`, :meth:`Dist.main_first`) always answer them: a failure
there ends every rank at once with the same one-line error.
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

# The longest one rank waits for another: at the end of scoring the fastest waits for the slowest (one chunk
# apart on even hardware). ``SIDBENCH_DIST_TIMEOUT`` (minutes) changes it.
TIMEOUT = timedelta(minutes=60)


def timeout() -> timedelta:
    from ..api.errors import SidbenchError

    text = os.environ.get("SIDBENCH_DIST_TIMEOUT", "")
    if not text:
        return TIMEOUT
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if minutes <= 0:
        raise SidbenchError(f"SIDBENCH_DIST_TIMEOUT={text!r}: give a positive number of minutes")
    return timedelta(minutes=minutes)


def describe_failure(exc: BaseException) -> str:
    """The one line the other ranks raise when rank 0 failed with ``exc``."""
    from ..api.errors import SidbenchError

    if isinstance(exc, SidbenchError):
        return str(exc) or type(exc).__name__
    return f"rank 0 failed ({type(exc).__name__}: {exc}); its own output has the details"


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
            message = self.gather(None if error is None else describe_failure(error))[0]
            if message is not None and error is None:
                raise SidbenchError(message)
        if error is not None:
            raise error
        return result

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. drops stale score rows); the others then run it too. Whatever
        happens on rank 0 (an error, an interrupt), the others are answered: on a failure they raise the same
        one-line error without running the block."""
        from ..api.errors import SidbenchError

        if not self.active:
            yield
            return
        if not self.is_main:
            message = self.gather(None)[0]
            if message is not None:
                raise SidbenchError(message)
            yield
            return
        try:
            yield
        except BaseException as exc:
            try:
                self.gather(describe_failure(exc))
            except Exception:  # noqa: BLE001 - the group itself failed: the original error is the one to report
                pass
            raise
        self.gather(None)

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
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timeout())
        owns = True
    return Dist(rank, world, local, owns)


def scores_path(out: Path, d: Dist) -> Path:
    return out / "scores.csv" if not d.active else out / f"scores.rank{d.rank}-of-{d.world}.csv"


def open_scores(out: Path, d: Dist):
    """This rank's ScoreLog, knowing every row any earlier run (single or distributed) finished."""
    from ..results.scores import done_rows, score_files
    from ..results.score_log import ScoreLog

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
