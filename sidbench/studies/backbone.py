"""The same detector(s) on several backbones (the AID-challenge report's CLIP vs DINOv2), same data and seed.
Backbones without a text tower (DINOv2) serve image-feature detectors only."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.errors import SidbenchError

if TYPE_CHECKING:
    from .runner import Study

TITLE = "Backbones"
FLAGS = ("detector", "backbones")
DETECTORS = "clip_svm"
QUICKSTART_BACKBONES = "clip-tiny,timm:vit_small_patch14_dinov2:random"
PAPER_BACKBONES = "ViT-L-14:openai,timm:vit_large_patch14_dinov2.lvd142m"


def run(study: "Study") -> None:
    import re

    import pandas as pd

    from .runner import wide

    names = [d for d in re.split(r",(?![^\[]*\])", study.config.get("detector") or DETECTORS) if d.strip()]
    default = QUICKSTART_BACKBONES if study.data.quickstart else PAPER_BACKBONES
    backbones = [b.strip() for b in (study.config.get("backbones") or default).split(",") if b.strip()]
    if len(set(backbones)) < 2:
        raise SidbenchError("--backbones: give at least two different backbones, e.g. --backbones clip-tiny,"
                            "timm:vit_small_patch14_dinov2:random")
    dets = {(b, n): study.detector(n, b) for b in backbones for n in names}
    for (b, n), det in dets.items():
        _check_text(study, det, b, n)
    rows = []
    for b in backbones:
        group = [dets[(b, n)] for n in names]
        for protocol in dict.fromkeys(d.preprocess for d in group):
            feats = tuple(sorted({f for d in group if d.preprocess == protocol for f in d.required_features}))
            data = study.fit_data(b, protocol, feats)
            test = study.test_features(b, feats, protocol)
            for n, det in zip(names, group):
                if det.preprocess != protocol:
                    continue
                study.fit(det, data, f"{n} on {b}")
                det.bind(study.backbone(b))
                rows.append(study.evaluate(det, test, f"{n} ({b})", backbone=b).assign(backbone=b, detector=n, row=f"{n} | {b}"))
    long = pd.concat(rows, ignore_index=True)
    table = wide(long[["row", "split", "acc", "ap"]], "row")
    split = table["row"].str.split(" | ", regex=False)
    table.insert(0, "backbone", split.str[1])
    table.insert(0, "detector", split.str[0])
    table = table.drop(columns="row")
    from ..reports.plots import bar_plot

    mean = long[long["split"] == "mean"]
    fig = bar_plot(mean, "detector", "acc", "backbone", title="mean accuracy over test splits per backbone",
                   xlabel="", ylabel="mean test accuracy")
    study.finish(table, long.drop(columns="row"), {"plot.png": fig}, f"{TITLE}: {', '.join(names)}")


def _check_text(study: "Study", det, backbone: str, name: str) -> None:
    """A text-prompt detector on a backbone without a text tower is a one-line error (before any work)."""
    bb = study.backbone(backbone)
    if bb.has_text:
        return
    try:
        det.bind(bb)
    except SidbenchError:
        raise SidbenchError(f"{name} needs text prompts, but backbone {backbone} has no text tower (DINOv2 is "
                            f"image-only); compare image-feature detectors such as clip_svm, univfd or rine") from None
