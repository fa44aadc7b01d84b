"""Loader worker processes kept for a whole run (:class:`WorkerPool`): every pass (split, protocol,
perturbation, training epoch) reuses them instead of forking new ones."""
from __future__ import annotations

import itertools
import logging
import os
import pickle
from typing import Callable, Iterator, Sequence

from ..api.records import Record
from .loader import Batch, ImageDataset, Item, collate, make_loader

log = logging.getLogger(__name__)


class PassUnavailable(Exception):
    """A pooled worker could not unpickle a pass's settings (e.g. a plugin module imported after it started)."""


_PASSES: dict[str, ImageDataset] = {}  # in a pooled worker: the settings of the latest passes, by token


class _PoolDataset:
    """The pool's dataset: each task carries its pass's token, pickled settings, index and record."""

    def __getitem__(self, task: tuple[str, bytes, int, Record]) -> Item:
        token, blob, i, rec = task
        job = _PASSES.get(token)
        if job is None:
            try:
                job = pickle.loads(blob)
            except Exception as exc:  # noqa: BLE001 - said in the main process, which falls back to a fresh loader
                raise PassUnavailable(f"pass settings could not be unpickled in a worker ({type(exc).__name__}: {exc})") from None
            while len(_PASSES) >= 2:  # old passes' settings (and their cache connections) go
                _PASSES.pop(next(iter(_PASSES)))
            _PASSES[token] = job
        return job.load(i, rec)


class _PassSampler:
    """The pool's batch sampler: iterates the current pass's tasks, batch by batch."""

    def __init__(self) -> None:
        self.tasks: Callable[[], Iterator[list]] = lambda: iter(())

    def __iter__(self) -> Iterator[list]:
        return self.tasks()


class WorkerPool:
    """DataLoader workers kept for a whole run (``persistent_workers``): every pass reuses the same processes.

    A pass's settings (its :class:`ImageDataset` without records) are pickled once in the main process and sent
    with each batch's records; a worker unpickles them once per pass. Which worker loads an image never changes
    its pixels (decoding, perturbations and augmentations are seeded per image), so pooled passes are
    bit-identical to fresh loaders. One pass runs at a time; a pass that cannot use the pool (another pass
    still open, settings that do not pickle) gets a fresh loader as before. :meth:`close` (or leaving the
    ``with`` block) stops the workers; a pass that fails in the loader (a worker killed, Ctrl-C while waiting
    for a batch) stops them too, and the next pass starts new ones."""

    def __init__(self) -> None:
        self._loader = None
        self._key: tuple[int, bool] | None = None
        self._sampler = _PassSampler()
        self._busy = False
        self._tokens = itertools.count()
        self.starts = 0  # times worker processes were started (1 for a whole run when all goes well)

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workers(self) -> list[int]:
        """Process ids of the live workers (empty when none run)."""
        it = getattr(self._loader, "_iterator", None)
        return [w.pid for w in getattr(it, "_workers", [])] if it is not None else []

    def loader(self, dataset: ImageDataset, batch_size: int, workers: int, device: str,
               order: "Sequence[int] | None" = None) -> "PooledPass | None":
        """An iterable of ``dataset``'s batches on the pool's workers, or None when this pass cannot use it."""
        if self._busy:
            return None
        try:
            blob = pickle.dumps(dataset.settings())
        except Exception as exc:  # noqa: BLE001 - e.g. a plugin's lambda: that pass forks its own workers
            log.debug("loader pool: a fresh loader for this pass (settings do not pickle: %s)", exc)
            return None
        order = list(range(len(dataset))) if order is None else list(order)
        return PooledPass(self, dataset, blob, order, batch_size, workers, str(device).startswith("cuda"))

    def _open(self, workers: int, pin: bool):
        import torch
        from torch.utils.data import DataLoader

        if self._loader is not None and (self._key != (workers, pin) or not self._healthy()):
            self.close()
        if self._loader is None:
            self._loader = DataLoader(_PoolDataset(), batch_sampler=self._sampler, num_workers=workers,  # type: ignore[arg-type]
                                      collate_fn=collate, pin_memory=pin, persistent_workers=True, prefetch_factor=4,
                                      generator=torch.Generator())  # its own seed draw: the global RNG untouched
            self._key = (workers, pin)
        return self._loader

    def _healthy(self) -> bool:
        """Whether every started worker still runs (one killed between batches, e.g. by the out-of-memory killer,
        is reported by torch's SIGCHLD handler wherever the main thread is, not by the loader)."""
        it = getattr(self._loader, "_iterator", None)
        return it is None or all(w.is_alive() for w in getattr(it, "_workers", []))

    def close(self) -> None:
        """Stop the workers (joined: no process outlives this call)."""
        loader, self._loader, self._key = self._loader, None, None
        it = getattr(loader, "_iterator", None)
        if it is not None:
            it._shutdown_workers()
            loader._iterator = None


class PooledPass:
    """One pass over a dataset on a :class:`WorkerPool`'s workers (iterate it once)."""

    def __init__(self, pool: WorkerPool, dataset: ImageDataset, blob: bytes, order: list[int], batch_size: int,
                 workers: int, pin: bool):
        self.pool, self.dataset, self.blob, self.order = pool, dataset, blob, order
        self.batch_size, self.workers, self.pin = batch_size, workers, pin

    def _tasks(self, token: str) -> Iterator[list]:
        records, blob, order, n = self.dataset.records, self.blob, self.order, self.batch_size
        for k in range(0, len(order), n):
            yield [(token, blob, i, records[i]) for i in order[k:k + n]]

    def __iter__(self) -> Iterator[Batch]:
        import torch

        pool = self.pool
        if pool._busy:  # another pass started on the pool since this one was made
            yield from self._fresh()
            return
        pool._busy, delivered = True, False
        try:
            token = f"{os.getpid()}-{next(pool._tokens)}"
            loader = pool._open(self.workers, self.pin)
            pool._sampler.tasks = lambda: self._tasks(token)
            if loader._iterator is None:
                pool.starts += 1
            with torch.random.fork_rng(devices=[]):
                it = iter(loader)
            for batch in it:
                delivered = True
                yield batch
        except PassUnavailable:
            pool.close()
            if delivered:
                raise
            log.debug("loader pool: restarted (a worker could not read this pass's settings)")
            pool._busy = False
            yield from self._fresh()
        except GeneratorExit:  # the consumer stopped early: the next pass drains what is in flight
            if not pool._healthy():
                pool.close()
            raise
        except BaseException:  # the loader itself failed (a worker died, Ctrl-C while waiting): no workers kept
            pool.close()
            raise
        finally:
            pool._busy = False

    def _fresh(self) -> Iterator[Batch]:
        from .inputs import isolated_iter

        yield from isolated_iter(make_loader(self.dataset, self.batch_size, self.workers, "cuda" if self.pin else "cpu",
                                             self.order))
