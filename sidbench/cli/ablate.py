"""``sidbench ablate STUDY``: ablation studies on in-memory features (one extraction serves every variant)."""
from __future__ import annotations

import argparse

STUDY_FLAGS = ("detector", "epochs", "variants", "shots", "alphas", "alpha_shots", "beta", "qualities", "backbones")


def register(sub, common) -> None:
    from ..studies import STUDIES
    from .run import add_backbone_args

    p = sub.add_parser(
        "ablate", parents=[common], help="run an ablation study (table, plot, study.json)",
        description="Run one ablation study and write table.csv/.md, metrics.csv, a PNG plot and study.json to --out. "
                    "With no --data/--train/--val: the offline quickstart data on clip-tiny.",
        epilog="Studies: " + "; ".join(f"{k}: {v}" for k, v in STUDIES.items()),
    )
    p.add_argument("study", metavar="STUDY", help=", ".join(STUDIES))
    p.add_argument("--data", action="append", metavar="PATH", help="test data (repeatable)")
    p.add_argument("--train", metavar="PATH", help="training data")
    p.add_argument("--val", metavar="PATH", help="validation data (model and hyper-parameter selection)")
    p.add_argument("--out", metavar="DIR", help="results folder (default results/ablate-STUDY)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="detector option for every variant (repeatable), e.g. --set epochs=3")
    add_backbone_args(p)
    g = p.add_argument_group("study flags (each study takes only its own)")
    g.add_argument("--detector", metavar="NAME", help="rine: the RINE variant (rine.progan4); jpeg_matrix: the detector "
                   "fitted per quality (clip_svm); backbone: comma-separated detectors (clip_svm)")
    g.add_argument("--epochs", metavar="N[,N...]", help="rine: training epochs of every variant; "
                   "tip_adapter_f: the epoch grid (5,10,20,50,100)")
    g.add_argument("--variants", metavar="A,B", help="rine: full,no_tie,no_contrastive,last_block,block_outputs")
    g.add_argument("--shots", metavar="K,K", help="tip_adapter: shots per class (1,2,4,8,16,64,256,500)")
    g.add_argument("--alphas", metavar="A,A", help="tip_adapter: alpha grid (0,0.5,1,2,3,4,5; 0 = zero-shot CLIP)")
    g.add_argument("--alpha-shots", metavar="K", help="tip_adapter: shots per class of the alpha sweep's cache (16)")
    g.add_argument("--beta", metavar="search|B", help="tip_adapter: beta of the alpha sweep: searched on --val (default) or fixed")
    g.add_argument("--qualities", metavar="Q,Q", help="jpeg_matrix: JPEG qualities for train and test (40,65,90)")
    g.add_argument("--backbones", metavar="A,B", help="backbone: comma-separated backbones")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..api.errors import SidbenchError
    from ..studies import study_module
    from ..studies.runner import Study
    from . import load_plugins_from
    from .train import parse_options

    module = study_module(args.study)
    given = [f for f in STUDY_FLAGS if getattr(args, f, None) is not None]
    if args.study == "backbone" and args.backbone:
        given.append("backbone")
    wrong = [f for f in given if f not in module.FLAGS]
    if wrong:
        takes = ", ".join("--" + f.replace("_", "-") for f in module.FLAGS) or "no study flags"
        raise SidbenchError(f"study {args.study} does not take {', '.join('--' + w.replace('_', '-') for w in wrong)} "
                            f"(it takes {takes})")
    plugins = load_plugins_from(args)
    config = {"argv": command_line(args, given), "study": args.study, "set": parse_options(args.set),
              **{f: getattr(args, f) for f in given}, "backbone": args.backbone}
    if hasattr(module, "validate"):
        module.validate(config)
    study = Study(args.study, args, plugins, config)
    try:
        module.run(study)
    finally:
        study.close()
    return 0


def command_line(args: argparse.Namespace, study_flags: list[str]) -> list[str]:
    """The flags this study was run with, as a command line (for study.json)."""
    out = [args.study]
    for flag in ("data", "train", "val", "out", "backbone", "seed", "device"):
        for v in (getattr(args, flag) if isinstance(getattr(args, flag), list) else [getattr(args, flag)]):
            if v is not None:
                out += [f"--{flag}", str(v)]
    out += [x for item in args.set for x in ("--set", item)]
    for flag in study_flags:
        if flag != "backbone":
            out += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return out
