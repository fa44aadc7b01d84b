"""``sidbench plugins``: what was loaded, from where, which version; and what failed."""
from __future__ import annotations

import argparse


def register(sub, common) -> None:
    p = sub.add_parser("plugins", parents=[common], help="show loaded plugins and failures")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from . import load_plugins_from

    plugins = load_plugins_from(args)
    rows = [(p.name, p.source, p.version, ", ".join(h.removeprefix("sidbench_") for h in p.hooks), p.origin)
            for p in plugins.loaded]
    print(tabulate(rows, headers=["plugin", "source", "version", "hooks", "origin"], tablefmt="simple"))
    if plugins.failed:
        print(f"\n{len(plugins.failed)} plugin(s) failed to load:")
        for f in plugins.failed:
            print(f"  {f.name} ({f.origin}): {f.reason}")
        return 1
    return 0
