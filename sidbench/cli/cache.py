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


def main(args: argparse.Namespace) -> int:
    from ..engine.cache import FeatureCache

    cache = FeatureCache()
    if args.action == "clear":
        done = cache.clear(args.backbone)
        if done.damaged:
            print(f"removed the damaged feature cache {cache.path} ({done.damaged})")
        else:
            print(f"removed {done.entries} entries from {cache.path}")
        old = [f for f in done.removed if not f.startswith(str(cache.path))]
        if old and not done.damaged:
            print(f"removed {len(old)} file(s) of an older cache format: {', '.join(old)}")
        return 0
    info = cache.info()
    print(f"feature cache: {info['path']}")
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
