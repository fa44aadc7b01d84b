"""The ``sidbench`` command. Each subcommand lives in its own module with ``register(subparsers, common)``.

Nothing heavy is imported here, so ``sidbench --help`` and ``sidbench list`` stay instant.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback

from ..api.errors import SidbenchError

DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
FIXABLE_ERRNOS = DISK_FULL | {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG,
                              errno.EFBIG}
COMMANDS = ("run", "score", "train", "list_", "plugins", "datasets", "report", "ablate", "cache", "weights")


def common_parser(after_command: bool = False) -> argparse.ArgumentParser:
    """``--plugins-dir``, ``--strict``, ``--debug``, ``--quiet`` and ``--verbose``, accepted before the command
    and after it.

    After the command they have no defaults (argparse would otherwise let a subcommand's defaults reset what
    was given before it), and ``--plugins-dir`` collects into its own list, merged by :func:`parse`."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("plugins and debugging")
    unset = argparse.SUPPRESS
    g.add_argument("--plugins-dir", action="append", default=unset if after_command else [], metavar="DIR",
                   dest="plugins_dir_after" if after_command else "plugins_dir",
                   help="load every .py file in DIR as a plugin (repeatable; also $SIDBENCH_PLUGINS_DIR)")
    g.add_argument("--strict", action="store_true", default=unset if after_command else False,
                   help="fail when any plugin fails to load")
    g.add_argument("--debug", action="store_true", default=unset if after_command else False, help="show tracebacks")
    m = common.add_argument_group("messages (on stderr; command output stays on stdout)")
    m.add_argument("--quiet", "-q", action="store_true", default=unset if after_command else False,
                   help="warnings and errors only: no progress lines or bars")
    m.add_argument("--verbose", "-v", action="store_true", default=unset if after_command else False,
                   help="debugging details too (timings, feature cache files passed over)")
    return common


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="sidbench",
        description="Benchmark synthetic-image detectors: many detectors, many test sets, one harness.",
        epilog="Run `sidbench run` with no arguments for the offline quickstart. `sidbench COMMAND --help` for details.",
        parents=[common_parser()],
    )
    parser.add_argument("--version", action="version", version=f"sidbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = common_parser(after_command=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub, common)
    return parser


def parse(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The parser and the parsed arguments, with global flags given before and after the command merged."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.plugins_dir = [*args.plugins_dir, *vars(args).pop("plugins_dir_after", [])]
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose: give one of them")
    return parser, args


def load_plugins_from(args: argparse.Namespace):
    """The plugin manager for this invocation, with failures reported as warnings."""
    from ..registry.plugins import load_plugins

    plugins = load_plugins(args.plugins_dir, strict=args.strict)
    for failure in plugins.failed:
        logging.getLogger("sidbench").warning("%s", failure)
    return plugins


def system_error(exc: BaseException) -> str | None:
    """One line for an error of the machine the user can fix (disk full, read-only or forbidden place), found
    anywhere in the chain of exceptions (a failed clean-up, e.g. a ROLLBACK, must not hide the cause)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FIXABLE_ERRNOS:
            where = f"{exc.filename}: " if exc.filename else ""
            hint = " (free some space, or choose another --out)" if exc.errno in DISK_FULL else \
                " (the file size limit of this shell, `ulimit -f`, is reached: raise it)" if exc.errno == errno.EFBIG else ""
            return f"{where}{exc.strerror or exc}{hint}"
        if type(exc).__module__ == "sqlite3" and "disk is full" in str(exc):
            return f"the feature cache database cannot grow ({exc}); free some space or use --no-cache"
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    from ..api.log import level_of, messages_shown

    parser, args = parse(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    with messages_shown(level_of(args.quiet, args.verbose)):
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """``args.func(args)``, with user errors and fixable machine errors as one line on stderr."""
    from ..api.escape import one_line

    try:
        return int(args.func(args) or 0)
    except SidbenchError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sidbench: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `sidbench list detectors | head -3`
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - only machine errors the user can fix; anything else is re-raised
        message = system_error(exc)
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"sidbench: error: {one_line(message)}", file=sys.stderr)
        return SidbenchError.exit_code
    except KeyboardInterrupt:
        print("sidbench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
