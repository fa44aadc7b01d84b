"""``sidbench run``: evaluate detectors on data and write a results folder (no arguments: the quickstart)."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..api.backbone import PRECISIONS
from ..data.preprocess import PROTOCOLS

QUICKSTART_OUT = "results/quickstart"


def register(sub, common) -> None:
    p = sub.add_parser(
        "run", parents=[common], help="run detectors over data and write a leaderboard",
        description="Evaluate detectors on image folders. With no arguments: the offline quickstart "
                    "(generated data, clip-tiny backbone, every built-in detector).",
    )
    p.add_argument("--data", action="append", metavar="PATH", help="folder with 0_real/1_fake below it, a layout a dataset "
                   "plugin recognises (`sidbench list datasets`), or a CSV list path,label (repeatable)")
    p.add_argument("--dataset", metavar="NAME", help="force a dataset layout (see `sidbench list datasets`)")
    p.add_argument("--suite", metavar="NAME", help="a named benchmark over --data ROOT: ufd, ufd-univfd, synthbuster, jpeg, paper, "
                   "genimage, aigcdetect, wildrf, chameleon (layouts, perturbations and published protocols; see the README)")
    p.add_argument("--detectors", metavar="A,B", help="spec or family names, NAME@CHECKPOINT to attach weights")
    add_backbone_args(p)
    p.add_argument("--perturb", metavar="SPEC", help="e.g. 'jpeg:40,65,90' or 'blur:1+jpeg:75;webp:75' (clean rows always included)")
    p.add_argument("--protocol", metavar="NAME", help="override every detector's preprocessing: "
                   f"{', '.join(PROTOCOLS)}, or a pixel detector's own (`sidbench list protocols`)")
    p.add_argument("--train", metavar="PATH", help="fit detectors that need it on this folder (a GenImage generator or "
                   "WildRF root gives its train/)")
    p.add_argument("--val", metavar="PATH", help="validation folder for fitting (hyper-parameters, epochs; a WildRF "
                   "root gives its val/)")
    add_operating_args(p)
    p.add_argument("--out", metavar="DIR", help="results folder (default results/<name>); the same --out resumes")
    p.add_argument("--set", action="append", default=[], metavar="[NAME:]KEY=VALUE",
                   help="detector option (repeatable), as in `sidbench train`: for every detector that takes KEY, "
                        "or with NAME: for that one, e.g. --set epochs=3 --set clip_svm:C=10")
    p.add_argument("--config", metavar="FILE", help="TOML file with the same keys as these flags (flags win)")
    p.add_argument("--overwrite", action="store_true",
                   help="start over instead of resuming: removes the files an earlier sidbench run wrote in --out "
                        "(listed in its .sidbench-results manifest) and nothing else; a folder sidbench did not "
                        "write is refused")
    p.set_defaults(func=main)


def add_operating_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("thresholds and calibration (they change metrics only: the same --out reuses the scores)")
    g.add_argument("--threshold", metavar="POLICY",
                   help="threshold of the accuracy columns: fixed (default: P(fake) > 0.5, as published), val (per "
                        "detector, max balanced accuracy on --val), val-fpr:0.05 (FPR <= 5%% on the --val reals), "
                        "oracle (best on each test split's own labels: a labelled diagnostic, never a result)")
    g.add_argument("--calibrate", choices=("temperature", "platt"),
                   help="fit temperature or Platt scaling of the logit per detector on --val, applied before the "
                        "thresholded and probability metrics (scores.csv gains prob_calibrated)")
    g.add_argument("--ap-from", choices=("logit", "sigmoid32"),
                   help="what AP and ROC-AUC rank: logit (default: no float32 saturation ties) or sigmoid32 (float32 "
                        "P(fake), the reference scripts' convention: saturated logits tie; for comparing with papers)")
    g.add_argument("--fpr-targets", type=_fractions, metavar="A,B",
                   help="more false-positive rates for TPR columns, e.g. 0.001,0.1 (tpr_fpr01 and tpr_fpr05 are always there)")


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated fractions such as 0.001,0.1") from None


def add_backbone_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backbone and hardware")
    g.add_argument("--backbone", metavar="NAME", help="override the detectors' backbone, e.g. clip-tiny or ViT-L-14:openai")
    g.add_argument("--weights", metavar="PATH", help="local weights of the --backbone (e.g. --backbone ViT-L-14:openai "
                   "--weights PATH: these weights, that tag's architecture, activation and preprocessing)")
    g.add_argument("--device", metavar="DEV", help="cpu, cuda, cuda:1 (default: cuda when available)")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="backbone numerics on CUDA: fp16 autocast (default, what RINE's and Tip-Adapter's reference "
                        "code ran), bf16 autocast, or fp32 (UnivFD's reference); the CPU always runs fp32")
    g.add_argument("--batch-size", type=int, metavar="N", help="images per backbone batch (default 64; halves on GPU out-of-memory)")
    g.add_argument("--workers", type=int, metavar="N", help="DataLoader workers (default: 0 on CPU, up to 16 on GPU)")
    g.add_argument("--decode", choices=("auto", "cpu", "device"),
                   help="where JPEGs are decoded: auto (default: on the device when it is CUDA), cpu (Pillow, in the "
                        "loader workers) or device (torchvision's decode_jpeg in batches; a protocol variant: its "
                        "pixels may differ from Pillow's, so its scores and cache entries are kept apart)")
    g.add_argument("--seed", type=int, metavar="N", help="seed for everything random (default 0)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bars (they are off anyway when the output is not a terminal)")
    g.add_argument("--no-cache", action="store_true", default=None,
                   help="neither read nor write the feature cache ($SIDBENCH_CACHE/features; see `sidbench cache info`)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the backbone (GPU: ~1.4x on ViT-L/14)")


def config_from_args(args: argparse.Namespace):
    """RunConfig from --config (if any) overlaid with the flags given."""
    from ..run.config import RunConfig, config_from, read_toml

    values: dict = read_toml(args.config) if getattr(args, "config", None) else {}
    source = getattr(args, "config", None)
    config_from(values, source)  # unknown keys in the file are reported before flags are merged
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is not None and v != []:
            values[f.name] = v
    if not show_progress(args):
        values["progress"] = False
    return config_from(values, source)


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only for a person watching: not with --no-progress or --quiet, nor when stdout or stderr
    is not a terminal (a log file, a pipe, CI)."""
    if getattr(args, "no_progress", False) or getattr(args, "quiet", False):
        return False
    return sys.stdout.isatty() and sys.stderr.isatty()


def main(args: argparse.Namespace) -> int:
    from ..api.escape import terminal_safe
    from ..run.inputs import check_names, quickstart_data, run_data, suite_run_data
    from ..run.orchestrate import run
    from . import load_plugins_from

    plugins = load_plugins_from(args)
    cfg = config_from_args(args)
    check_names(cfg, plugins)
    if args.set:
        from ..run.config import with_settings
        from ..run.inputs import default_detectors

        targets = cfg.detectors or ([] if cfg.data else default_detectors(plugins))
        if targets:  # without detectors the run stops below with "no detectors given", the error that matters
            cfg = with_settings(cfg, args.set, plugins, targets)
    if cfg.suite and not cfg.data:
        from ..api.errors import SidbenchError

        raise SidbenchError(f"--suite {cfg.suite}: give the benchmark root with --data ROOT")
    if not cfg.data:
        cfg, data = quickstart_data(cfg, plugins)
        default_out = QUICKSTART_OUT
    elif cfg.suite:
        digest = cfg.digest()  # of the command as given, so the same command resumes
        cfg, data = suite_run_data(cfg, plugins)
        default_out = f"results/{data.name}-{digest}"
    else:
        data = run_data(cfg, plugins)
        default_out = f"results/{data.name}-{cfg.digest()}"
    out = Path(cfg.out or default_out)
    cfg.out = str(out)
    if run(cfg, data, out, plugins, overwrite=args.overwrite) is None:  # torchrun rank > 0
        return 0
    log_timings(out)
    print(terminal_safe((out / "leaderboard.md").read_text(encoding="utf-8", errors="surrogateescape")), end="",
          flush=True)
    return 0


def log_timings(out: Path) -> None:
    """run.json's timings, one DEBUG line each (``--verbose``)."""
    import json
    import logging

    logger = logging.getLogger("sidbench.run")
    if logger.isEnabledFor(logging.DEBUG):
        timings = json.loads((out / "run.json").read_text(encoding="utf-8")).get("timings_s", {})
        for step, seconds in timings.items():
            logger.debug("timing: %s: %.3f s", step, seconds)
