"""``sidbench score PATH...``: P(fake) per image for files and folders (no labels), as a table, CSV or JSON."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

FORMATS = ("table", "csv", "json")


def register(sub, common) -> None:
    from ..data.preprocess import PROTOCOLS
    from .run import add_backbone_args

    p = sub.add_parser(
        "score", parents=[common], help="P(fake) per image for files and folders (no labels needed)",
        description="Score image files, and every file below folders, with the given detectors: P(fake) = "
                    "sigmoid(logit) per image and detector. Unreadable files are listed, not scored.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--detectors", required=True, metavar="A,B",
                   help="spec or family names; NAME@CHECKPOINT or NAME@official for detectors that need fitting")
    p.add_argument("--format", choices=FORMATS, help="table, csv or json (one row per image and detector: path, "
                   "detector, logit, prob, protocol, skipped); default: from --out's suffix, else table")
    p.add_argument("--out", metavar="FILE", help="write there instead of printing (.csv or .json)")
    p.add_argument("--protocol", metavar="NAME", help=f"override every detector's preprocessing: {', '.join(PROTOCOLS)}, "
                   "or a pixel detector's own (`sidbench list protocols`)")
    add_backbone_args(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..api.errors import SidbenchError
    from ..api.log import note
    from ..run.config import config_from
    from ..run.inputs import check_names
    from ..run.score import image_records, score_images
    from . import load_plugins_from

    plugins = load_plugins_from(args)
    fmt = args.format or (Path(args.out).suffix.lstrip(".").lower() if args.out else "table")
    if fmt not in FORMATS:
        raise SidbenchError(f"--out {args.out}: give --format csv or json (or a .csv/.json file name)")
    settings = {k: getattr(args, k, None) for k in ("detectors", "backbone", "weights", "device", "batch_size", "workers", "decode",
                                              "seed", "protocol", "precision", "no_cache", "compile")}
    settings = {k: v for k, v in settings.items() if v is not None}
    cfg = config_from({**settings, "progress": not (args.no_progress or args.quiet) and sys.stderr.isatty()})
    check_names(cfg, plugins)
    table = score_images(cfg, image_records(args.paths), plugins, log=note)
    text = render(table, fmt)
    if args.out:
        Path(args.out).write_text(text)
        note(f"scores written to {args.out}")
    else:
        print(text, end="")
    for row in table[table["skipped"] != ""].drop_duplicates("path").itertuples():
        logging.getLogger("sidbench").warning("skipped %s: %s", row.path, row.skipped)
    return 0


def render(table, fmt: str) -> str:
    """CSV and JSON: one row per image and detector; the table: images x detectors, P(fake) in the cells."""
    if fmt == "csv":
        from ..results.scores import to_csv

        return to_csv(table)
    if fmt == "json":
        import json

        rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")  # NaN -> null
        return json.dumps(rows, indent=1) + "\n"
    from tabulate import tabulate

    from ..api.escape import one_line

    scored = table[table["skipped"] == ""]
    wide = scored.pivot(index="path", columns="detector", values="prob")
    wide = wide.reindex(index=list(dict.fromkeys(scored["path"])), columns=list(dict.fromkeys(table["detector"])))
    rows = [[one_line(path), *(f"{p:.4f}" for p in probs)] for path, probs in zip(wide.index, wide.to_numpy())]
    headers = ["path", *(one_line(c) for c in wide.columns)]  # names may hold terminal escape codes
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True) + "\n"
