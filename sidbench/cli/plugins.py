"""``sidbench plugins``: what was loaded, from where, which version; and what failed.
``sidbench plugins check NAME``: whether a detector survives train -> checkpoint -> run."""
from __future__ import annotations

import argparse


def register(sub, common) -> None:
    p = sub.add_parser("plugins", parents=[common], help="show loaded plugins and failures; check a detector",
                       description="Without arguments: the loaded plugins and any failure. `check NAME`: fit NAME on a "
                                   "few generated images (if it needs fitting; clip-tiny for feature detectors), save, "
                                   "reload from the checkpoint alone and score; reports any logit difference, any option "
                                   "that did not survive the round trip and any state the checkpoint does not hold.")
    p.add_argument("action", nargs="?", choices=["check"], help="check: the train -> checkpoint -> run round trip")
    p.add_argument("name", nargs="?", metavar="NAME", help="the detector to check (with `check`)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="detector option for the check (repeatable), e.g. --set pretrained=false")
    p.add_argument("--backbone", default="clip-tiny", help="backbone of a feature detector (default clip-tiny)")
    p.add_argument("--keep", metavar="DIR", help="keep the generated images and the checkpoint in DIR")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from . import load_plugins_from

    plugins = load_plugins_from(args)
    if args.action == "check":
        return check(args, plugins)
    if args.name:
        from ..api.errors import SidbenchError

        raise SidbenchError(f"sidbench plugins {args.name}: did you mean `sidbench plugins check {args.name}`?")
    rows = [(p.name, p.source, p.version, ", ".join(h.removeprefix("sidbench_") for h in p.hooks), p.origin)
            for p in plugins.loaded]
    print(tabulate(rows, headers=["plugin", "source", "version", "hooks", "origin"], tablefmt="simple"))
    if plugins.failed:
        print(f"\n{len(plugins.failed)} plugin(s) failed to load:")
        for f in plugins.failed:
            print(f"  {f.name} ({f.origin}): {f.reason}")
        return 1
    return 0


def check(args: argparse.Namespace, plugins) -> int:
    from ..api.errors import SidbenchError
    from ..api.names import parse_key_values
    from ..run.check import check_detector

    if not args.name:
        raise SidbenchError("sidbench plugins check NAME: name the detector to check (see `sidbench list detectors`)")
    report = check_detector(args.name, plugins, options=parse_key_values(args.set, "--set"), backbone=args.backbone,
                            workdir=args.keep)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1
