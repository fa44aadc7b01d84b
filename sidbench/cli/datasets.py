"""``sidbench datasets check PATH``: counts, formats and sizes per split and class, and warnings
when reals and fakes differ in a way a detector could learn instead of the content."""
from __future__ import annotations

import argparse


def register(sub, common) -> None:
    p = sub.add_parser("datasets", parents=[common], help="inspect data folders (`datasets check PATH`)",
                       description="Inspect benchmark folders before running detectors on them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser("check", parents=[common], help="counts, formats, sizes, unreadable files, format bias",
                           description="Per split and class: image counts, file formats, sizes and JPEG quality; "
                                       "per split: whether reals and fakes differ in format, resolution or JPEG "
                                       "quality (a detector could learn that instead of the content), with the "
                                       "JPEG-aligned protocol that removes a compression difference; lists "
                                       "unreadable files.")
    c.add_argument("path", metavar="PATH", help="a data folder or CSV list (any layout `sidbench run --data` accepts)")
    c.add_argument("--dataset", metavar="NAME", help="force a dataset layout (see `sidbench list datasets`)")
    c.add_argument("--role", choices=("test", "train", "val"), default="test",
                   help="which part of the tree to check: the test splits (default), or what --train / --val read")
    c.add_argument("--sample", type=int, default=200, metavar="N",
                   help="open N files per split and class (evenly spaced; default 200; 0 = all)")
    c.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ..api.escape import one_line, terminal_safe
    from ..data.check import CheckReport, check, suggestion
    from ..data.layout import resolve_records
    from . import load_plugins_from

    records = resolve_records(args.path, load_plugins_from(args), args.dataset, args.role)
    report = check(records, args.sample)
    print(terminal_safe(tabulate(report.rows, headers=CheckReport.ROW_HEADERS, tablefmt="github")))
    if report.confounds:
        print()
        print(terminal_safe(tabulate(report.confounds, headers=CheckReport.CONFOUND_HEADERS, tablefmt="github")))
    limit = "" if args.sample <= 0 else f" (at most {args.sample} per split and class; --sample 0 opens all)"
    print(f"\n{len(records)} records; opened {report.opened} distinct files{limit}")
    for path, reason in sorted(report.bad.items()):
        print(f"UNREADABLE: {one_line(path)}: {one_line(reason)}")
    for w in report.warnings:
        print(f"WARNING: {one_line(w)}")
    hint = suggestion(report, args.path)
    if hint:
        print(f"SUGGESTION: {one_line(hint)}")
    return 0
