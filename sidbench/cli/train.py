"""``sidbench train``: fit one detector on a training folder and save a checkpoint."""
from __future__ import annotations

import argparse


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
    from ..detector import parse_key_values

    return parse_key_values(items, "--set")


def main(args: argparse.Namespace) -> int:
    from ..backbones.registry import build_backbone
    from ..cache import FeatureCache
    from ..detector import load_detector
    from ..errors import DataError
    from ..features import ExtractOptions
    from ..harness import pick_device
    from ..training import FitData, fit_detector
    from . import load_plugins_from
    from .data import records_of

    plugins = load_plugins_from(args)
    seed = 0 if args.seed is None else args.seed
    det = load_detector(args.name, backbone=args.backbone, plugins=plugins, **parse_options(args.set))
    train, val = records_of(args.data, plugins), records_of(args.val, plugins)
    if args.classes:
        keep = {c.strip() for c in args.classes.split(",")}
        train = [r for r in train if r.split in keep]
        val = [r for r in val if r.split in keep]
        if not train:
            raise DataError(f"--classes {args.classes}: no training images in those class folders under {args.data}")
    device = pick_device(args.device)
    backbone = build_backbone(args.backbone or det.spec.backbone, weights=args.weights, device=device, plugins=plugins)
    if args.compile:
        backbone.compile()
    cache = None if args.no_cache else FeatureCache()
    opts = ExtractOptions(args.batch_size or 64, args.workers, not args.no_progress, cache=cache)
    data = FitData(backbone, train, val, protocol=det.preprocess, seed=seed, options=opts)
    print(f"training {det.name} on {len(train)} images ({len(val)} validation) with {backbone.identity} on {device}")
    summary, seconds = fit_detector(det, data, seed, log=print)
    path = det.save(args.out)
    print(f"done in {seconds:.1f}s {summary or ''}\ncheckpoint: {path}")
    return 0
