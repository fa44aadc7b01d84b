"""``sidbench cache info|clear``: where the feature cache is, how big, and emptying it."""
from __future__ import annotations

import argparse


def register(sub, common) -> None:
    p = sub.add_parser("cache", parents=[common], help="show or clear the feature cache",
                       description="The feature cache lives in $SIDBENCH_CACHE/features (default ~/.cache/sidbench/features).")
    p.add_argument("action", choices=("info", "clear"), help="info: location and size per backbone and feature; clear: delete entries")
    p.add_argument("--backbone", metavar="IDENTITY", help="clear only this backbone identity (as `info` lists it)")
    p.set_defaults(func=main)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def database_of(file: str) -> str:
    """The database a removed file belongs to (its WAL and shared-memory files carry a suffix)."""
    from pathlib import Path

    return Path(file).name.removesuffix("-wal").removesuffix("-shm")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..engine.cache import OLD_DB_NAMES, FeatureCache, databases

    cache = FeatureCache()
    if args.action == "clear":
        dbs = databases(cache.root) if cache.root.is_dir() else []
        done = cache.clear(args.backbone)
        where = cache.path if len(dbs) <= 1 else f"{cache.root} ({len(dbs)} databases: {', '.join(p.name for p in dbs)})"
        if done.entries or not done.damaged:
            print(f"removed {done.entries} entries from {where}")
        if done.damaged:
            damaged = [f for f in done.removed if database_of(f) not in OLD_DB_NAMES]
            print(f"removed the damaged feature cache {', '.join(damaged)} ({done.damaged})")
        old = [f for f in done.removed if database_of(f) in OLD_DB_NAMES]
        if old:
            print(f"removed {len(old)} file(s) of an older cache format: {', '.join(old)}")
        return 0
    info = cache.info()
    print(f"feature cache: {info['path']}")
    shards = [Path(p).name for p in info["databases"] if Path(p) != cache.path]
    if shards:
        print(f"also read (torchrun shards, one per rank): {', '.join(shards)}")
    if info["damaged"]:
        hint = "; `sidbench cache clear` removes it" if cache.root.is_dir() else ""
        print(f"damaged: {info['damaged']}{hint}")
    if info.get("unreadable"):
        print(f"not readable now: {info['unreadable']}")
    print(f"{info['entries']} entries, {human(info['bytes_on_disk'])} on disk")
    if info["old_files"]:
        print(f"older cache format (no longer read; `sidbench cache clear` removes it): {', '.join(info['old_files'])}")
    if info["groups"]:
        from tabulate import tabulate

        rows = [(g["backbone"], g["feature"], g["entries"], human(g["bytes"] or 0)) for g in info["groups"]]
        print(tabulate(rows, headers=("backbone", "feature", "entries", "size"), tablefmt="github"))
    return 0
