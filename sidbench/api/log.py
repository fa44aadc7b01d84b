"""sidbench's one path for progress and diagnostic messages: the ``sidbench`` logger.

Progress ("fitted in 3.1s", "resuming after epoch 2") goes through :func:`note`, the default ``log``
callback of fits, trainings and runs; warnings through ``logging.getLogger("sidbench...").warning``;
details (cache misses, timings) at DEBUG. Command output (tables, lists, JSON) is not a message: commands
print it on stdout. The CLI shows the messages on stderr with :func:`show_messages` (``--quiet``: warnings
and errors only; ``--verbose``: DEBUG too); a script or notebook may call it as well, or configure
:mod:`logging` as it likes.
"""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from .escape import one_line, terminal_safe

LOGGER = "sidbench"


def note(message: object) -> None:
    """A progress message for the person running sidbench (INFO on the ``sidbench`` logger), made
    terminal-safe (file names may hold escape codes). The default ``log`` of ``Detector.fit(data, log)``."""
    logging.getLogger(LOGGER).info("%s", terminal_safe(message))


class StderrHandler(logging.Handler):
    """sidbench's messages on stderr: progress as it is, ``sidbench: warning: ...`` and ``sidbench: error: ...``
    on one line, ``sidbench: debug: ...`` with ``--verbose``. Looks ``sys.stderr`` up at each message (so a
    replaced stream, e.g. pytest's capture, gets it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.levelno >= logging.ERROR:
                line = f"sidbench: error: {one_line(text)}"
            elif record.levelno >= logging.WARNING:
                line = f"sidbench: warning: {one_line(text)}"
            elif record.levelno >= logging.INFO:
                line = terminal_safe(text)
            else:
                line = f"sidbench: debug: {one_line(text)}"
            print(line, file=sys.stderr, flush=True)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's convention: a failed message never stops the program
            self.handleError(record)


class OthersToStderr(logging.StreamHandler):
    """The root logger's handler for other libraries' warnings (``WARNING:name:message``, as
    ``logging.basicConfig`` would print them). Being there, it stops a library's ``logging.info(...)`` from
    installing basicConfig's handler, which would print each sidbench message a second time, raw."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        self.addFilter(lambda r: r.name != LOGGER and not r.name.startswith(LOGGER + "."))

    @property
    def stream(self):  # the stderr of now, not of when the handler was made
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def level_of(quiet: bool = False, verbose: bool = False) -> int:
    """The level ``--quiet`` / ``--verbose`` ask for: WARNING, DEBUG, else INFO (progress)."""
    return logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO


def show_messages(level: int = logging.INFO) -> logging.Handler:
    """Show sidbench's messages at ``level`` and above on stderr (one handler, however often it is called)."""
    logger = logging.getLogger(LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        logger.addHandler(handler)
    handler.setLevel(level)
    logger.setLevel(level)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(OthersToStderr())
    return handler


@contextlib.contextmanager
def messages_shown(level: int = logging.INFO) -> Iterator[None]:
    """:func:`show_messages` for one command; the ``sidbench`` logger's level and handlers are put back after it
    (so one in-process command's ``--quiet`` does not silence the next)."""
    logger = logging.getLogger(LOGGER)
    before, handlers = logger.level, list(logger.handlers)
    handler = show_messages(level)
    try:
        yield
    finally:
        logger.setLevel(before)
        if handler not in handlers:
            logger.removeHandler(handler)
