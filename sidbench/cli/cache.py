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
        n = cache.clear(args.backbone)
        print(f"removed {n} entries from {cache.path}")
        return 0
    info = cache.info()
    print(f"feature cache: {info['path']}")
    print(f"{info['entries']} entries, {human(info['bytes_on_disk'])} on disk")
    if info["groups"]:
        from tabulate import tabulate

        rows = [(g["backbone"], g["feature"], g["entries"], human(g["bytes"] or 0)) for g in info["groups"]]
        print(tabulate(rows, headers=("backbone", "feature", "entries", "size"), tablefmt="github"))
    return 0
