"""The streaming writer of ``scores.csv`` (:class:`ScoreLog`): score rows handed over a chunk at a time
(:class:`ScoreBlock`), formatted and appended by a background thread, made durable with at most one fsync a
second; which rows are finished (:class:`RowKeys`); and :class:`ScoreRows`, the same interface in memory.
The row format itself and the whole-file operations live in :mod:`sidbench.results.scores`."""
from __future__ import annotations

import csv
import io
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

from ..api.paths import ENCODING, ERRORS, check_replace, note_written, open_no_follow, write_atomic
from .scores import SCORE_COLUMNS, done_rows, header_of, read_scores, row_key, score_row, sigmoid, to_csv

if TYPE_CHECKING:
    import pandas as pd

    from ..api.records import Record

FSYNC_EVERY = 1.0  # seconds between fsyncs of scores.csv (each batch still reaches the OS at once)
QUEUED_BATCHES = 64  # jobs (a chunk's rows, its hash-index lines) waiting for the writer thread before a write waits


_QUOTED = re.compile('[,"\r\n]')  # what makes csv.writer (QUOTE_MINIMAL) quote a cell


def csv_cells(*values: Any) -> str:
    """``values`` as csv.writer writes them inside a row (without the line end): strings without a comma, quote
    or line break joined as they are (the usual case, fast), anything else through csv.writer itself."""
    if all(type(v) is str for v in values) and not _QUOTED.search("".join(values)):
        return ",".join(values)
    buf = io.StringIO()
    csv.writer(buf).writerow([*values, ""])  # a last empty cell: never a row of one empty cell (written "")
    return buf.getvalue()[:-3]  # less ",\r\n"


@dataclass
class ScoreBlock:
    """One chunk's score rows, kept raw: the scoring thread makes it with a few steps per detector, the score
    log's writer thread turns it into text (:meth:`text`, byte for byte what csv.writer writes of :meth:`rows`).

    Rows come detector by detector, each in ``records`` order, where ``records`` lists every image's records
    (an image in several splits has one per split) and ``image_of`` maps a record to its image's position in
    ``logits``/``sha256`` (None: one record per image, the same positions)."""

    detectors: Sequence[str]
    perturbation: str
    protocol: str
    records: Sequence["Record"]
    image_of: Sequence[int] | None
    sha256: Sequence[str]  # per image ("" when unknown)
    logits: Sequence[Sequence[float]]  # per detector, per image
    owed: Sequence[Sequence[int] | None]  # per detector: positions in ``records`` of its rows (None: every one)

    def _positions(self) -> Iterator[tuple[str, Sequence[float], Iterable[int]]]:
        for name, logits, owed in zip(self.detectors, self.logits, self.owed):
            yield name, logits, range(len(self.records)) if owed is None else owed

    def rows(self) -> list[tuple]:
        """The rows as :func:`score_row` tuples."""
        image_of, pert, protocol = self.image_of, self.perturbation, self.protocol
        out = []
        for name, logits, positions in self._positions():
            for k in positions:
                j = k if image_of is None else image_of[k]
                out.append(score_row(name, self.records[k], pert, protocol, logits[j], self.sha256[j]))
        return out

    def mark_done(self, done: "RowKeys") -> None:
        """Count the block's rows as done in ``done``: a step per detector."""
        for name, owed in zip(self.detectors, self.owed):
            if owed is None:
                done.add_records(name, self.perturbation, self.records)
            else:
                done.pairs(name, self.perturbation).update((self.records[k].split, self.records[k].path) for k in owed)

    def text(self) -> str:
        """The rows as CSV lines: each record's cells are formatted once for every detector, each image's logit
        and probability once per detector (whatever number of splits it is in)."""
        middle = f",{csv_cells(self.perturbation, self.protocol)},"
        shas = self.sha256
        if not all(type(x) is str for x in shas) or _QUOTED.search("".join(shas)):
            shas = [csv_cells(x) for x in shas]
        cells = [_record_cells(r, middle) for r in self.records]
        image_of, lines = self.image_of, []
        for name, logits, owed in zip(self.detectors, self.logits, self.owed):
            if owed is not None and not owed:
                continue
            head = csv_cells(name) + ","
            tails = [f"{x!r},{sigmoid(x)!r},{sha}\r\n" for x, sha in zip(map(float, logits), shas)]
            if image_of is None and owed is None:
                lines += [head + c + t for c, t in zip(cells, tails)]
            else:
                lines += [head + cells[k] + tails[k if image_of is None else image_of[k]]
                          for k in (range(len(cells)) if owed is None else owed)]
        return "".join(lines)


def _record_cells(r: "Record", middle: str) -> str:
    """A record's cells of a row, ``middle`` (the perturbation's and protocol's) in their place, and a comma."""
    split, group, generator, path, label = r.split, r.group, r.generator, r.path, r.label
    if type(split) is str and type(group) is str and type(generator) is str and type(path) is str \
            and type(label) is int and not _QUOTED.search(split + group + generator + path):
        return f"{split},{group},{generator}{middle}{path},{label},"
    return f"{csv_cells(split, group, generator)}{middle}{csv_cells(path, label)},"


class RowKeys:
    """The row keys (:data:`ROW_KEY` tuples) of finished rows, as a set, kept per (detector, perturbation).
    A chunk's rows count as done in one step per detector: its records are kept as they are and become (split,
    path) pairs only when that detector and perturbation is looked up (a run scores each once: never)."""

    def __init__(self, keys: Iterable[tuple] = ()):
        self._by: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._records: dict[tuple[str, str], list[Sequence["Record"]]] = {}  # done, not yet in _by
        self.update(keys)

    def pairs(self, detector: str, perturbation: str) -> set[tuple[str, str]]:
        """The (split, path) pairs done for ``detector`` under ``perturbation`` (the live set: add to it)."""
        done = self._by.setdefault((detector, perturbation), set())
        for records in self._records.pop((detector, perturbation), ()):
            done.update((r.split, r.path) for r in records)
        return done

    def add_records(self, detector: str, perturbation: str, records: Sequence["Record"]) -> None:
        """Count the rows of ``records`` as done (``records`` is kept: never change it)."""
        self._records.setdefault((detector, perturbation), []).append(records)

    def any(self, detector: str, perturbation: str) -> bool:
        return bool(self.pairs(detector, perturbation))

    def update(self, keys: Iterable[tuple]) -> None:
        by = self._by
        for detector, perturbation, split, path in keys:
            if (done := by.get((detector, perturbation))) is None:
                done = by[detector, perturbation] = set()
            done.add((split, path))

    def add(self, key: tuple) -> None:
        self.update([key])

    def __ior__(self, keys: Iterable[tuple]) -> "RowKeys":
        self.update(keys)
        return self

    def __contains__(self, key: object) -> bool:
        detector, perturbation, split, path = key  # type: ignore[misc]
        return (split, path) in self.pairs(detector, perturbation)

    def __iter__(self) -> Iterator[tuple[str, str, str, str]]:
        for later in list(self._records):
            self.pairs(*later)
        for (detector, perturbation), pairs in self._by.items():
            for split, path in pairs:
                yield detector, perturbation, split, path

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ScoreLog:
    """Append-only ``scores.csv``, written by a background thread so that formatting rows and the disk are
    off the scoring loop's critical path: each batch reaches the operating system as soon as the thread has
    formatted it, so a killed run loses at most the batches in flight (a SIGKILL does not lose what the OS
    holds); the file is fsynced at most once a second (``FSYNC_EVERY``) and when closed, so a power loss
    costs at most that last second. Whatever is lost, a resume scores again, bit-identically (rows are
    written by whole chunks). A write error (full disk) is raised by the next ``write`` or by ``close``.
    On reopening, a torn last line is cut off and finished rows are known.
    A file of an older format (other columns) is rewritten in this one first (unknown cells empty)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.done = RowKeys()  # row keys already written
        check_replace(self.path)
        if self.path.exists():
            self._repair()
            if self.path.stat().st_size and header_of(self.path) != list(SCORE_COLUMNS):
                write_atomic(self.path, to_csv(read_scores(self.path)))
            self.done = RowKeys(done_rows(self.path))
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._synced = 0.0  # time.monotonic() of the last fsync
        note_written(self.path)  # listed before it exists: a kill in between leaves no file "in the way"
        self._f = open(self.path, "a", newline="", encoding=ENCODING, errors=ERRORS, opener=open_no_follow)
        self._w = csv.writer(self._f)
        if new:
            self._w.writerow(SCORE_COLUMNS)
            self._flush()
        self._queue: "queue.Queue[Callable[[], object] | None]" = queue.Queue(maxsize=QUEUED_BATCHES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="sidbench-scores", daemon=True)
        self._thread.start()

    def _repair(self) -> None:
        fd = open_no_follow(self.path, os.O_RDWR)  # never cut a file a planted link points to
        with os.fdopen(fd, "r+b") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def write(self, rows: Iterable[tuple]) -> None:
        """Queue ``rows`` (tuples from :func:`score_row`) for the writer thread; they count as done at once."""
        rows = list(rows)
        self.done.update(map(row_key, rows))
        self._put(lambda: self._w.writerows(rows))

    def write_block(self, block: ScoreBlock) -> None:
        """Queue a chunk's rows for the writer thread, which formats them; they count as done at once."""
        block.mark_done(self.done)
        self._put(lambda: self._f.write(block.text()))

    def after(self, job: "Callable[[], object]") -> None:
        """Run ``job`` on the writer thread once the rows queued so far are written (bookkeeping that need not
        hold up scoring, such as the hash index); its error is raised like a write error."""
        self._put(job)

    def _put(self, job: "Callable[[], object]") -> None:
        if self._error is not None:
            self._raise()
        self._queue.put(job)

    def _drain(self) -> None:
        while (job := self._queue.get()) is not None:
            if self._error is None:
                try:
                    job()
                    self._flush()
                except BaseException as exc:  # noqa: BLE001 - handed to the scoring thread, raised there
                    self._error = exc

    def _raise(self) -> None:
        error, self._error = self._error, None
        raise error

    def _flush(self, sync: bool = False) -> None:
        self._f.flush()
        now = time.monotonic()
        if sync or now - self._synced >= FSYNC_EVERY:
            os.fsync(self._f.fileno())
            self._synced = now

    def close(self) -> None:
        """Write what is queued, fsync and close; raises a write error the thread met."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            if self._error is None and not self._f.closed:
                self._flush(sync=True)
        finally:
            self._f.close()
        if self._error is not None:
            self._raise()


class ScoreRows:
    """The rows a :class:`ScoreLog` would write, kept in memory (``sidbench score``: no results folder)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.done = RowKeys()

    def write(self, rows: Iterable[tuple]) -> None:
        for row in rows:
            self.rows.append(row)
            self.done.add(row_key(row))

    def write_block(self, block: ScoreBlock) -> None:
        """As :meth:`ScoreLog.write_block` (here at once)."""
        block.mark_done(self.done)
        self.rows.extend(block.rows())

    def after(self, job: "Callable[[], object]") -> None:
        """As :meth:`ScoreLog.after` (here at once)."""
        job()

    def close(self) -> None:
        """Nothing to flush (the ScoreLog interface)."""

    def frame(self) -> "pd.DataFrame":
        """The rows with ``SCORE_COLUMNS``; logit and prob as floats."""
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=SCORE_COLUMNS)
        return df.astype({"logit": float, "prob": float})
