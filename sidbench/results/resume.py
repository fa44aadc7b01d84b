"""What a resume needs to follow the files: the content hash of every scored image, and a cheap way to know it.

Each score row carries the SHA-256 of the bytes it was scored from. On resume a row still holds only while
the image has that content; to avoid reading every finished image again, ``.sidbench-hashes`` remembers
each hash with the file's state when it was read (size, mtime, ctime, inode): an image whose state is
unchanged is not read at all, any other is hashed once (never decoded). The index is an optimisation only:
a missing or torn entry just means hashing that file again.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..api.paths import check_replace, note_written, open_no_follow, written_by_sidbench
from ..data.images import FileState, UnreadableImage, content_sha256, read_file
from .manifest import is_hash_index

if TYPE_CHECKING:
    import pandas as pd

INDEX_NAME = ".sidbench-hashes"
_json_text = json.encoder.encode_basestring_ascii  # json.dumps of a str


def index_line(path: str, sha256: str, state: FileState) -> bytes:
    """One line of the index: ``json.dumps([path, sha256, size, mtime_ns, ctime_ns, inode])``, spelled out
    (the scoring writer makes 64 per chunk)."""
    st = state
    return (f"[{_json_text(path)}, {_json_text(sha256)}, {int.__repr__(st.size)}, {int.__repr__(st.mtime_ns)}, "
            f"{int.__repr__(st.ctime_ns)}, {int.__repr__(st.inode)}]\n").encode()


class FileIndex:
    """Append-only (path, sha256, file state) lines, JSON per line (any file name survives)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._checked = False  # an earlier append checked the path and listed it in the results folder's manifest

    def append(self, entries: Iterable[tuple[str, str, FileState]]) -> None:
        lines = [index_line(p, sha, st) for p, sha, st in entries]
        if not lines:
            return
        if not self._checked:
            if not os.path.islink(self.path) and not written_by_sidbench(self.path) and is_hash_index(self.path):
                note_written(self.path)  # an index an older sidbench left unlisted: sidbench's by its content
            check_replace(self.path)
            note_written(self.path)  # listed before it exists: a kill in between leaves no file "in the way"
            self._checked = True
        fd = open_no_follow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for line in lines:  # one write per line: ranks appending at once keep their lines whole
                os.write(fd, line)
        finally:
            os.close(fd)

    def load(self) -> dict[str, tuple[FileState, str]]:
        """path -> (state, sha256) of the latest entry per path; malformed lines are ignored."""
        known: dict[str, tuple[FileState, str]] = {}
        try:
            raw = self.path.read_bytes()
        except OSError:
            return known
        for line in raw.splitlines():
            try:
                p, sha, size, mtime, ctime, inode = json.loads(line)
                known[p] = (FileState(int(size), int(mtime), int(ctime), int(inode)), str(sha))
            except (ValueError, TypeError):
                continue
        return known


def current_digests(paths: Iterable[str], known: dict[str, tuple[FileState, str]], threads: int = 8,
                    fresh: list[tuple[str, str, FileState]] | None = None) -> dict[str, str | None]:
    """path -> the SHA-256 of its bytes now (None: gone or unreadable); unchanged files are not read. The files
    that were read are added to ``fresh`` as (path, sha256, state), for the index."""
    def one(path: str) -> tuple[str, str | None]:
        try:
            state = FileState.of(os.stat(path))
        except OSError:
            return path, None
        hit = known.get(path)
        if hit is not None and hit[0] == state:
            return path, hit[1]
        try:
            data, now = read_file(path)
        except UnreadableImage:
            return path, None
        sha = content_sha256(data)
        if fresh is not None:
            fresh.append((path, sha, now))  # list.append is atomic under the GIL
        return path, sha

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return dict(pool.map(one, list(dict.fromkeys(paths))))


def complete_scores(path: Path) -> "pd.DataFrame":
    """The complete rows of a scores file, read without touching it (a torn last line is left out)."""
    import io

    from .scores import read_scores

    data = path.read_bytes()
    return read_scores(io.BytesIO(data[: data.rfind(b"\n") + 1]))


def repaired_scores(path: Path) -> "pd.DataFrame":
    """The rows of a scores file, after cutting a torn last line and bringing an older format to this one."""
    from .scores import read_scores
    from .score_log import ScoreLog

    ScoreLog(path).close()
    return read_scores(path)


def write_scores(path: Path, df: "pd.DataFrame") -> None:
    """Replace a scores file with ``df`` (atomically)."""
    from ..api.paths import write_atomic
    from .scores import to_csv

    write_atomic(path, to_csv(df))
