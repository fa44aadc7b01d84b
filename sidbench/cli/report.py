"""``sidbench report``: leaderboards (Markdown, LaTeX, CSV) or an offline HTML report from results folders."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("html", "md", "latex", "csv")


def register(sub, common) -> None:
    p = sub.add_parser(
        "report", parents=[common], help="leaderboards and an HTML report from results folders",
        description="Summarise one or more results folders written by `sidbench run`. Several folders merge "
                    "into one leaderboard; a detector evaluated on the same split in two runs is shown once "
                    "per run as 'name (run)'.",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="results folder(s) of `sidbench run`")
    p.add_argument("--format", choices=FORMATS, default="html",
                   help="html (default): index.html + figures/; md, latex, csv: printed, and written with --out")
    p.add_argument("--out", metavar="DIR", help="output folder (html default: RESULTS_DIR/report; "
                                                "required for html with several runs)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap resamples for 95%% intervals (e.g. 1000; default 0 = none)")
    p.add_argument("--metric", default="acc,ap", metavar="A,B",
                   help="metrics in the tables: acc, real_acc, fake_acc, ap, auc, f1, bal_acc, eer, tpr_fpr01, "
                        "tpr_fpr05 (and other tpr_fpr* columns of the run), ece, brier, nll (default acc,ap)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="bootstrap seed (default 0)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..api.escape import terminal_safe
    from ..reports import ReportError, ReportOptions, check_metrics, load_runs, report_text, write_report

    if args.bootstrap < 0:
        raise ReportError("--bootstrap must be 0 (off) or a number of resamples such as 1000")
    names = check_metrics([m.strip() for m in args.metric.split(",") if m.strip()])
    merged = load_runs(args.results)
    from ..results.leaderboard import coverage_warning

    if (warning := coverage_warning(merged.metrics)) is not None:
        print(f"sidbench: warning: {warning}", file=sys.stderr)
    opts = ReportOptions(args.format, check_metrics(names, merged), args.bootstrap, args.seed)
    if args.format != "html" and not args.out:
        print(terminal_safe(report_text(merged, opts)), end="")  # --out keeps the exact text
        return 0
    if args.out:
        out = Path(args.out)
    elif len(args.results) == 1:
        out = Path(args.results[0]) / "report"
    else:
        raise ReportError("several results folders: say where the report goes with --out DIR")
    path = write_report(merged, out, opts)
    print(terminal_safe(f"report written to {path}"))
    return 0
