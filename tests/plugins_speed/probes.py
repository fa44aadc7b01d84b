"""Test detectors for resume and scale-out: a slow fixed probe (logs what it scores) and a fitted mean probe."""
from __future__ import annotations

import os
import time

from sidbench.api import Detector
from sidbench.api import hookimpl
from sidbench.api import DetectorSpec


class SlowProbe(Detector):
    """A fixed random projection of image_embed + cls_ln2; sleeps per batch so a test can kill it mid-run."""

    def __init__(self, spec, backbone, **options):
        super().__init__(spec, backbone, **options)
        import torch

        g = torch.Generator().manual_seed(7)
        self.w = torch.randn(backbone.embed_dim, generator=g)
        self.v = torch.randn(backbone.width, generator=g)

    def score(self, features):
        log = os.environ.get("SLOWPROBE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{features['image_embed'].shape[0]}\n")
        time.sleep(float(os.environ.get("SLOWPROBE_SLEEP", "0")))
        return features["image_embed"] @ self.w + features["cls_ln2"].mean(1) @ self.v


class MeanProbe(Detector):
    """Fitted: the difference of the class means of image_embed, as a linear probe."""

    def __init__(self, spec, backbone, **options):
        super().__init__(spec, backbone, **options)
        import torch

        self.m = torch.nn.Module()
        self.m.register_buffer("w", torch.zeros(backbone.embed_dim))

    def modules(self):
        return {"m": self.m}

    def fit(self, data, log=print):
        fs = data.features("train", ["image_embed"])
        x, y = fs.features["image_embed"], fs.labels
        self.m.w = x[y == 1].mean(0) - x[y == 0].mean(0)
        return {"n": len(fs)}

    def score(self, features):
        return features["image_embed"] @ self.m.w


@hookimpl
def sidbench_detectors():
    return [
        DetectorSpec("slowprobe", SlowProbe, ("image_embed", "cls_ln2"), backbone="clip-tiny"),
        DetectorSpec("meanprobe", MeanProbe, ("image_embed",), backbone="clip-tiny", needs_fit=True),
    ]
