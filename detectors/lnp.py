"""LNP: the learned noise pattern of a real-image (SIDD-trained) denoiser, as an image, into a ResNet-50.

Liu et al., "Detecting Generated Images by Real Images", ECCV 2022 (Tangsenghenshou/Detecting-Generated-Images-by-
Real-Images; AIGCDetectBenchmark ``preprocessing/LNP``, ``data/process.py processing_LNP``). The denoiser is CycleISP's
RGB ``DenoiseNet`` trained on SIDD (``sidd_rgb.pth``, ``{'state_dict': sd}``), modified to return the negated tail
output (the noise, not the denoised image): 3x3 head to 64 channels, four recursive residual groups of eight dual
attention blocks (3x3 conv, PReLU shared by the whole network, 3x3 conv; spatial attention on the channel max and
mean, channel attention with reduction 16; 1x1 fusion; residual), a 3x3 conv and the PReLU, a 3x3 tail to RGB.
On the whole image in [0, 1] (no resize), its output is clamped to [0, 1], turned to 8 bits by skimage's
``img_as_ubyte`` (round half to even), multiplied by 255 in uint8 (so it wraps: 256 - v, 0 stays 0) and written as a
PNG through OpenCV without a BGR swap (read back by PIL with the channels reversed). The classifier is a torchvision
ResNet-50 with ``fc = Linear(2048, 1)`` (``{'model': sd}``), ImageNet mean/std, no resize or crop in the README's
``eval_all.py --no_resize --no_crop`` command.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sidbench.api import (DetectorSpec, IMAGENET_MEAN, IMAGENET_STD, NetworkDetector, Option, PixelInput, WeightsError,
                          hookimpl, strip_prefix)

if TYPE_CHECKING:
    import torch

PAPER = "Liu et al., Detecting Generated Images by Real Images, ECCV 2022"
LICENSE = ("no licence file in Tangsenghenshou/Detecting-Generated-Images-by-Real-Images or AIGCDetectBenchmark's "
           "weights; the denoiser is CycleISP's (swz30/CycleISP, research use)")
REPOSITORY = "https://github.com/Tangsenghenshou/Detecting-Generated-Images-by-Real-Images"
DENOISER_HINT = ("LNP needs the SIDD denoiser: give lnp[denoiser=PATH] with CycleISP's sidd_rgb.pth (swz30/CycleISP "
                 "Google Drive; also in AIGCDetectBenchmark's weights/preprocessing)")
VIEWS = ("native", "resize_crop")


class LNP(NetworkDetector):
    """SIDD denoiser noise image -> ResNet-50, one logit per image (``net.denoiser``, ``net.classifier``)."""

    def build_network(self) -> "torch.nn.Module":
        import torchvision
        from torch import nn

        net = nn.Module()
        net.denoiser = build_denoiser()
        net.classifier = torchvision.models.resnet50(weights=None, num_classes=1)
        return net

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        state = strip_prefix(state)
        if any(k.startswith("denoiser.") for k in state):
            return {f"net.{k}": v for k, v in state.items()}
        path = self.options.get("denoiser")
        if not path:
            raise WeightsError(f"{self.name}: {DENOISER_HINT}")
        if not Path(path).expanduser().is_file():
            raise WeightsError(f"denoiser file {path} does not exist; {DENOISER_HINT}")
        from sidbench.api.checkpoints import load_tensors

        out = {f"net.classifier.{k}": v for k, v in state.items()}
        out.update({f"net.denoiser.{k}": v for k, v in strip_prefix(load_tensors(path)[0]).items()})
        return out

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        self.require_weights("LNP.pth")
        x = noise_image(self.net.denoiser, features["pixels"])
        if self.options["classifier_view"] == "resize_crop":
            x = _resize_crop(x)
        mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self.net.classifier((x - mean) / std).squeeze(1)


def build_denoiser() -> "torch.nn.Module":
    """``DenoiseNet`` (CycleISP, as LNP modified it) under its module names, the one PReLU shared everywhere."""
    from torch import nn

    def conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, k, padding=k // 2)

    act = nn.PReLU(64)

    def dab() -> nn.Module:
        m = nn.Module()
        m.body = nn.Sequential(conv(64, 64), act, conv(64, 64))
        m.SA = nn.Module()
        m.SA.spatial = nn.Module()
        m.SA.spatial.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)
        m.CA = nn.Module()
        m.CA.conv_du = nn.Sequential(nn.Conv2d(64, 4, 1), nn.ReLU(), nn.Conv2d(4, 64, 1), nn.Sigmoid())
        m.conv1x1 = nn.Conv2d(128, 64, 1)
        return m

    def rrg() -> nn.Module:
        m = nn.Module()
        m.body = nn.Sequential(*(dab() for _ in range(8)), conv(64, 64))
        return m

    net = nn.Module()
    net.head = nn.Sequential(conv(3, 64))
    net.body = nn.Sequential(*(rrg() for _ in range(4)), conv(64, 64), act)
    net.tail = nn.Sequential(conv(64, 3))
    return net


def _dab(m: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    import torch

    r = m.body(x)
    pooled = torch.cat([r.amax(dim=1, keepdim=True), r.mean(dim=1, keepdim=True)], 1)
    sa = r * torch.sigmoid(m.SA.spatial.conv(pooled))
    ca = r * m.CA.conv_du(r.mean(dim=(2, 3), keepdim=True))
    return m.conv1x1(torch.cat([sa, ca], 1)) + x


def denoiser_forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """``DenoiseNet.forward``: minus the tail's output."""
    y = net.head(x)
    for group in list(net.body)[:4]:
        r = y
        for block in list(group.body)[:8]:
            r = _dab(block, r)
        y = group.body[8](r) + y
    y = net.body[5](net.body[4](y))
    return -net.tail(y)


def noise_image(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """[B, 3, H, W] in [0, 1]: the LNP image as the classifier reads it back from its PNG."""
    import torch

    v = torch.round(denoiser_forward(net, x).clamp(0, 1) * 255.0)  # img_as_ubyte
    v = torch.remainder(v * 255.0, 256.0)  # uint8 * 255 wraps modulo 256
    return v.flip(1) / 255.0  # written RGB-as-BGR by OpenCV, read as RGB by PIL


def _resize_crop(x: "torch.Tensor") -> "torch.Tensor":
    """AIGCDetectBenchmark's default test view: shorter side to 256 (PIL bilinear), centre crop 224."""
    import torch
    import torchvision.transforms.functional as TF

    out = []
    for img in x:
        pil = TF.to_pil_image(torch.round(img * 255.0).to(torch.uint8).cpu())
        out.append(TF.to_tensor(TF.center_crop(TF.resize(pil, 256), [224, 224])))
    return torch.stack(out).to(x.device)


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="lnp.aigcbench",
        factory=LNP,
        preprocess="native",
        # the denoiser keeps 64 full-resolution channels per block: fewer pixels per batch than the default
        pixels=PixelInput(image_size=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), max_batch_pixels=4 * 512 * 512),
        default=True,
        quickstart=False,
        description="LNP (SIDD denoiser noise pattern into a ResNet-50), AIGCDetectBenchmark's ProGAN checkpoint; "
                    "native size; official: lnp[denoiser=sidd_rgb.pth]@LNP.pth",
        options={"denoiser": "", "classifier_view": Option("native", choices=VIEWS, doc="the noise image as it is, or "
                                                           "resized (shorter side 256) and centre-cropped to 224")},
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={"LNP paper (ECCV 2022)": "not transcribed here (no verified copy offline); read them in the paper",
                   "AIGCDetectBenchmark LNP rows (16 test sets)": "on its project page (fdmas.github.io/AIGCDetect)"},
        notes="No NAME@official: the classifier LNP.pth is served only from BaiduNetdisk/ModelScope (AIGCDetectBenchmark) "
              "and the authors have not published theirs; give the file. Written from AIGCDetectBenchmark "
              "networks/denoising_rgb.py, data/process.py (processing_LNP) and the authors' test_sidd_rgb.py (the same "
              "uint8 * 255 wrap and OpenCV write). img_as_ubyte rounds half to even (checked against scikit-image 0.26). "
              "--set classifier_view=resize_crop applies AIGCDetectBenchmark's default test flags (shorter side 256, "
              "centre crop 224) to the LNP image. The denoiser runs on the full image: memory grows with its size.",
    )]
