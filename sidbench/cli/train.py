"""``sidbench train``: fit one detector on a training folder and save a checkpoint."""
from __future__ import annotations

import argparse
import dataclasses


def register(sub, common) -> None:
    from .run import add_backbone_args

    p = sub.add_parser("train", parents=[common], help="fit a detector and save its checkpoint",
                       description="Fit NAME on --data (0_real/1_fake folders; ProGAN train/<class>/... works), "
                                   "validate on --val, save to --out (safetensors).")
    p.add_argument("name", metavar="NAME", help="detector spec or family, e.g. rine.progan4, univfd, clip_svm")
    p.add_argument("--data", required=True, metavar="PATH", help="training folder")
    p.add_argument("--val", metavar="PATH", help="validation folder")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint to write (.safetensors)")
    p.add_argument("--classes", metavar="A,B", help="train only on these class folders (ProGAN layout: car,cat,chair,horse)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="detector option (repeatable), e.g. --set epochs=2")
    add_backbone_args(p)
    p.set_defaults(func=main)


def parse_options(items: list[str]) -> dict:
    from ..api.names import parse_key_values

    return parse_key_values(items, "--set")


def main(args: argparse.Namespace) -> int:
    from ..run.config import RunConfig
    from ..run.inputs import check_names
    from .run import show_progress
    from ..run.train import train_detector
    from . import load_plugins_from

    plugins = load_plugins_from(args)
    cfg = RunConfig(train=args.data, val=args.val, backbone=args.backbone, weights=args.weights, device=args.device,
                    batch_size=args.batch_size or 64, workers=args.workers, progress=show_progress(args),
                    seed=0 if args.seed is None else args.seed, no_cache=bool(args.no_cache),
                    compile=bool(args.compile), precision=getattr(args, "precision", None),
                    decode=getattr(args, "decode", None) or "auto")
    check_names(dataclasses.replace(cfg, detectors=[args.name]), plugins)
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    train_detector(cfg, args.name, args.out, plugins, parse_options(args.set), classes)
    return 0
