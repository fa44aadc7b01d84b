"""``sidbench report``: leaderboards (Markdown, LaTeX, CSV) or an offline HTML report from results folders."""
from __future__ import annotations

import argparse
import logging
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
    p.add_argument("--compare", metavar="A,B",
                   help="the paired test of two detectors (as named in the leaderboard): per split and for the means, "
                        "A - B with its 95%% paired-bootstrap interval and p (--bootstrap N resamples, default 1000), "
                        "and DeLong's test for AUC; printed")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="bootstrap seed (default 0)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..api.escape import terminal_safe
    from ..api.log import note
    from ..reports import ReportError, ReportOptions, check_metrics, load_runs, report_text, write_report

    if args.bootstrap < 0:
        raise ReportError("--bootstrap must be 0 (off) or a number of resamples such as 1000")
    names = check_metrics([m.strip() for m in args.metric.split(",") if m.strip()])
    merged = load_runs(args.results)
    from ..results.leaderboard import coverage_warning

    if (warning := coverage_warning(merged.metrics)) is not None:
        logging.getLogger("sidbench").warning("%s", warning)
    opts = ReportOptions(args.format, check_metrics(names, merged), args.bootstrap, args.seed)
    if args.compare:
        print(terminal_safe(compare_text(merged, args.compare, opts)), end="")
        return 0
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
    note(f"report written to {path}")
    return 0


def compare_text(merged, pair: str, opts) -> str:
    """The ``--compare A,B`` table: the paired bootstrap (and DeLong for AUC) of two detectors."""
    from tabulate import tabulate

    from ..api.names import split_list
    from ..reports import ReportError
    from ..reports.significance import COMPARE_HEADERS, compare_rows

    names = split_list(pair)
    known = sorted(set(merged.scores["detector"]))
    if len(names) != 2 or names[0] == names[1]:
        raise ReportError(f"--compare {pair}: give two different detectors, e.g. --compare {','.join(known[:2]) or 'A,B'}")
    for name in names:
        if name not in known:
            raise ReportError(f"--compare: no detector {name!r} in these results; they hold {', '.join(known)}")
    metrics = list(dict.fromkeys([*opts.metrics, *(["auc"] if "auc" in merged.metrics else [])]))
    rows = compare_rows(merged.scores, merged.metrics, names[0], names[1], metrics, opts.bootstrap or 1000, opts.seed)
    fmt = [[*r[:3], *(f"{v:.4f}" if isinstance(v, float) and v == v else ("-" if isinstance(v, float) else v)
                      for v in r[3:])] for r in rows]
    head = (f"A = {names[0]}, B = {names[1]}: paired bootstrap over the same images ({opts.bootstrap or 1000} resamples, "
            f"seed {opts.seed}); significant when the 95% interval of A-B excludes 0. DeLong: the AUC test of "
            "DeLong et al. (1988) on the same images.\n\n")
    return head + tabulate(fmt, headers=COMPARE_HEADERS, tablefmt="simple", disable_numparse=True) + "\n"
