"""LaDeDa and Tiny-LaDeDa: a 9x9-receptive-field patch network whose patch scores are average-pooled.

Cavia, Horwitz, Reiss & Hoshen, "Real-Time Deepfake Detection in the Real-World", 2024
(barcavia/RealTime-DeepfakeDetection-in-the-RealWorld, Yissum Software Research License: research use only).
The official code does not run as published (``networks/LaDeDa.py`` has a non-default argument after a
default one; ``test.py`` always builds LaDeDa9), so the networks are written from the architecture it
defines: the NPR residual ``x - up(down(x))`` of the normalised image, ``conv1`` 1x1, ``conv2`` 3x3 (no
padding), ``bn1``, ReLU, four stages of Bottlenecks without padding whose 3x3 convs (the first block of
layer1 and layer2 only: LaDeDa9) set the 9x9 receptive field, strides (2, 2, 2, 1), the shortcut trimmed at
the bottom/right to the branch's size, average pooling over the whole patch grid and ``fc = Linear(2048, 1)``.
Tiny-LaDeDa keeps the stem and one block of two convs (1x1, then 3x3/2), ``fc = Linear(8, 1)``.
Test protocol of ``test.py`` (``loadSize`` 256, ``no_crop``): ``Resize((256, 256))`` on the PIL image
(bilinear), ImageNet mean/std.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, NetworkDetector, OfficialWeights, Option, PixelInput, Plateau, SidbenchError,
                          accuracy, bce_epoch, hookimpl, note, train_epochs)
from sidbench.data.augment import BlurJpegCrop

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = "Cavia et al., Real-Time Deepfake Detection in the Real-World, 2024 (arXiv 2406.09398)"
LICENSE = ("Yissum Software Research License (barcavia/RealTime-DeepfakeDetection-in-the-RealWorld): research "
           "use only, commercial use needs a Yissum licence")
REPOSITORY = "https://github.com/barcavia/RealTime-DeepfakeDetection-in-the-RealWorld"
COMMIT = "e734562bbb6763f5bb2951099e9dc9a38df5e7dd"
DRIVE_FOLDER = "https://drive.google.com/drive/folders/1KxNdnPRJJTuqxmzBPiGsg43tXzO8AN2d"
PREPROCESS = ("NPR", "right_diag", "left_diag", "x_grad", "y_grad", "raw")
# the 3x3 gradient kernels of the official ``preprocess`` (applied per channel, 'same' zero padding)
GRADIENT_KERNELS = {
    "x_grad": ((-1, 0, 1), (-2, 0, 2), (-1, 0, 1)),
    "y_grad": ((-1, -2, -1), (0, 0, 0), (1, 2, 1)),
    "left_diag": ((0, 1, 2), (-1, 0, 1), (-2, -1, 0)),
    "right_diag": ((-2, -1, 0), (-1, 0, 1), (0, 1, 2)),
}


class LaDeDa(NetworkDetector):
    """LaDeDa9, or Tiny-LaDeDa (the ``tiny_ladeda`` family), on 256x256 resized images, one logit per image (the mean of
    the patch features through ``fc``). Loads the published bare state dicts as they are (saved on cuda:0;
    read on the CPU)."""

    @property
    def tiny(self) -> bool:
        return self.spec.name.split(".")[0] == "tiny_ladeda"

    def build_network(self) -> "torch.nn.Module":
        return build_tiny() if self.tiny else build_ladeda9()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward(self.net, preprocess(features["pixels"], self.options["residual"])).squeeze(1)

    # -- training (LaDeDa; Tiny-LaDeDa is distilled from LaDeDa's patch scores, not trained here) ----------
    def augmentation(self) -> BlurJpegCrop:
        """LaDeDa's training view: both sides resized to ``load_size`` (bilinear), random ``crop_size`` crop, flip."""
        o = self.options
        return BlurJpegCrop(f"ladeda-train-l{o['load_size']}-c{o['crop_size']}", crop=int(o["crop_size"]),
                            resize=int(o["load_size"]), square=True, flip=True)

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """The README's recipe: from scratch (fc from N(0, 0.02)), Adam lr 2e-4, batch 32, BCE; after
        ``patience`` epochs without a validation gain the lr is multiplied by 0.9, until below 1e-6; the best
        validation epoch is kept. Without --val, ``epochs`` epochs at the initial lr."""
        import torch

        o = self.options
        if self.tiny:
            raise SidbenchError(f"{self.name} is distilled from LaDeDa's patch scores (train_Tiny_LaDeDa.py), which "
                                "sidbench does not run; attach a published file instead (tiny_ladeda@FILE)")
        data = data.with_classes(o["classes"], log)
        self.net = build_ladeda9().to(data.device)
        torch.nn.init.normal_(self.net.fc.weight, 0.0, 0.02)
        opt = torch.optim.Adam(self.net.parameters(), lr=float(o["lr"]), betas=(0.9, 0.999))

        def run_epoch(epoch: int) -> tuple[float, int]:
            batches = data.batches("train", batch_size=int(o["batch_size"]), augment=self.augmentation(),
                                   epoch=epoch, protocol="native")
            return bce_epoch(self.score, batches, opt, data.device)

        summary = train_epochs(data, self.name, epochs=int(o["max_epochs"] if data.has_val else o["epochs"]),
                               run_epoch=run_epoch, objects={"net": self.net, "optimizer": opt}, net=self.net,
                               validate=lambda: accuracy(*data.scores(self, "val")), keep="improved", log=log,
                               schedule=Plateau(opt, int(o["patience"]), min_lr=1e-6, divisor=1 / 0.9))
        self.eval()
        return summary


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> "torch.nn.Conv2d":
    from torch import nn

    return nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=0, bias=False)


def _block(inplanes: int, planes: int, stride: int, kernel: int, down: bool, tiny: bool = False) -> "torch.nn.Module":
    """One LaDeDa Bottleneck (no padding; conv3 and the shortcut only in LaDeDa, not in Tiny-LaDeDa)."""
    from torch import nn

    b = nn.Module()
    b.conv1, b.bn1 = _conv(inplanes, planes, 1), nn.BatchNorm2d(planes)
    b.conv2, b.bn2 = _conv(planes, planes, kernel, stride), nn.BatchNorm2d(planes)
    if not tiny:
        b.conv3, b.bn3 = _conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
        if down:
            b.downsample = nn.Sequential(_conv(inplanes, planes * 4, 1, stride), nn.BatchNorm2d(planes * 4))
    return b


def _init(net: "torch.nn.Module") -> "torch.nn.Module":
    """LaDeDa's initialisation: convs N(0, sqrt(2 / (k*k*out))), BatchNorm 1 and 0 (fc: PyTorch's default)."""
    import math

    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net


def build_ladeda9() -> "torch.nn.Module":
    """LaDeDa9 with the official key names: stages of (3, 4, 6, 3) blocks, strides (2, 2, 2, 1), a 3x3 conv in
    the first block of layer1 and layer2 only."""
    from torch import nn

    net = nn.Module()
    net.conv1, net.conv2 = _conv(3, 64, 1), _conv(64, 64, 3)
    net.bn1 = nn.BatchNorm2d(64, momentum=0.001)
    inplanes = 64
    for i, (planes, blocks, stride, k3) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), (2, 2, 2, 1), (1, 1, 0, 0))):
        first = _block(inplanes, planes, stride, 3 if k3 else 1, down=True)
        setattr(net, f"layer{i + 1}", nn.Sequential(first, *(_block(planes * 4, planes, 1, 1, False) for _ in range(blocks - 1))))
        inplanes = planes * 4
    net.fc = nn.Linear(2048, 1)
    return _init(net)


def build_tiny() -> "torch.nn.Module":
    """Tiny-LaDeDa with the official key names: the 8-channel stem, one block (1x1, then 3x3 stride 2) and
    ``fc = Linear(8, 1)`` (test.py's ``features_dim = 8``)."""
    from torch import nn

    net = nn.Module()
    net.conv1, net.conv2 = _conv(3, 8, 1), _conv(8, 8, 3)
    net.bn1 = nn.BatchNorm2d(8, momentum=0.001)
    net.layer1 = nn.Sequential(_block(8, 8, 2, 3, down=False, tiny=True))
    net.fc = nn.Linear(8, 1)
    return _init(net)


def preprocess(x: "torch.Tensor", kind: str) -> "torch.Tensor":
    """The official ``preprocess``: the NPR residual (nearest 1/2 down and up), a 3x3 gradient per channel, or raw."""
    import torch
    import torch.nn.functional as F

    if kind == "raw":
        return x
    if kind == "NPR":
        down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
        return x - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
    k = torch.tensor(GRADIENT_KERNELS[kind], dtype=x.dtype, device=x.device).expand(3, 1, 3, 3)
    return F.conv2d(x, k, groups=3, padding="same")


def _run_block(b: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    import torch.nn.functional as F

    out = F.relu(b.bn1(b.conv1(x)))
    out = F.relu(b.bn2(b.conv2(out)))
    if not hasattr(b, "conv3"):  # Tiny-LaDeDa: no expansion, no shortcut
        return out
    out = b.bn3(b.conv3(out))
    res = b.downsample(x) if hasattr(b, "downsample") else x
    diff = res.shape[-1] - out.shape[-1]
    if diff:  # the unpadded 3x3 conv loses a row/column the 1x1 shortcut keeps: trim at the bottom/right
        res = res[:, :, :-diff, :-diff]
    return F.relu(out + res)


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B, 1]: stem, stages, the mean of the patch-feature grid (the official square ``AvgPool2d`` on
    its square inputs), ``fc``."""
    import torch.nn.functional as F

    x = F.relu(net.bn1(net.conv2(net.conv1(x))))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        for block in getattr(net, name, ()):
            x = _run_block(block, x)
    return net.fc(x.mean(dim=(2, 3)))


def residual_option(default: str) -> Option:
    return Option(default, choices=PREPROCESS, doc="what the patches are read from: the NPR residual, a 3x3 gradient "
                  "per channel, or raw pixels")


OPTIONS = {"residual": residual_option("NPR"), "lr": 2e-4, "batch_size": 32, "load_size": 256, "crop_size": 224,
           "patience": 15, "max_epochs": 1000, "epochs": 10, "classes": "all", "image_size": 256}
OPTION_TYPES = {"classes": (str, list)}
FORENSYNTH = ("progan",)


def _ladeda(variant: str, data: tuple[str, ...], default: bool, note: str) -> DetectorSpec:
    return DetectorSpec(
        name=f"ladeda.{variant}", factory=LaDeDa, preprocess="resize_square", pixels=PixelInput(image_size=256),
        needs_fit=True, default=default, quickstart=False, options=OPTIONS, option_types=OPTION_TYPES,
        description=f"LaDeDa9 (9x9 patches, NPR residual, pooled) trained on {variant}; test.py protocol (256x256 "
                    f"resize); official: ladeda.{variant}@{variant}_LaDeDa.pth ({note})",
        training_data=data, paper=PAPER, license=LICENSE, repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=DRIVE_FOLDER, filename=f"{'ForenSynth' if variant == 'forensynth' else 'WildRF'}_LaDeDa.pth",
            repository=REPOSITORY,
            note="published in a Google Drive folder (weights/LaDeDa/download_weights.txt), not as a single-file "
                 "link: download it from the folder and attach it with @FILE; no checksum published"),
        published={"WildRF (train Reddit, test Reddit/Twitter/Facebook), mean AP": "93.7 (paper abstract; anchor)",
                   "ForenSynth + UFD (standard protocol), mAP": "around 99 (paper abstract; anchor)"},
        notes=NOTES,
    )


def _tiny(variant: str, residual: str, data: tuple[str, ...], default: bool, blob: str) -> DetectorSpec:
    filename = f"{'ForenSynth' if variant == 'forensynth' else 'WildRF'}_Tiny_LaDeDa.pth"
    return DetectorSpec(
        name=f"tiny_ladeda.{variant}", factory=LaDeDa, preprocess="resize_square", pixels=PixelInput(image_size=256),
        needs_fit=False, default=default, quickstart=False,
        options={"residual": residual_option(residual), "image_size": 256},
        description=f"Tiny-LaDeDa (4 convs, distilled from LaDeDa) trained on {variant}, input {residual}; "
                    f"official: tiny_ladeda.{variant}@official ({filename})",
        training_data=data, paper=PAPER, license=LICENSE, repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=f"{REPOSITORY}/raw/{COMMIT}/weights/Tiny_LaDeDa/{filename}", filename=filename, git_blob=blob,
            repository=REPOSITORY, revision=COMMIT,
            note=f"committed in the repository (weights/Tiny_LaDeDa/{filename}); no SHA-256 published"),
        published={"Tiny-LaDeDa vs LaDeDa": "375x fewer FLOPs, 10,000x fewer parameters, a minor accuracy drop "
                                            "(paper abstract; anchor)"},
        notes=NOTES + f" Tiny-LaDeDa's input is fixed per published file: {filename} was trained with the "
                      f"{residual!r} residual (its first BatchNorm's running variance, about "
                      f"{'0.02: the NPR residual' if residual == 'NPR' else '2-9: the 3x3 diagonal gradient'}, "
                      "says so; the code's default flag is right_diag, under which the ForenSynth file's logits "
                      "reach thousands). Not trainable here: it is distilled from LaDeDa's patch scores "
                      "(extract_patches.py, train_Tiny_LaDeDa.py).",
    )


NOTES = ("Read from networks/LaDeDa.py and networks/Tiny_LaDeDa.py (architecture, key names, initialisation), "
         "test.py, data/datasets.py and options/*.py (protocol: Resize((256, 256)) bilinear on PIL, no crop, "
         "ImageNet mean/std; fc replaced by Linear(features_dim, 1)), networks/trainer.py, train.py and "
         "earlystop.py (recipe). The official code does not run as published (syntax errors in the LaDeDa "
         "constructors; test.py always builds LaDeDa9), so the networks follow the architecture those files "
         "define. Pooling is the mean over the patch grid, equal to the official square AvgPool2d on square "
         "inputs; under another protocol (native_even) non-square images, which the official code cannot "
         "score, are averaged the same way. Validation during training runs the test protocol (no 224 crop).")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [
        _ladeda("forensynth", FORENSYNTH, True, "ProGAN, 20 classes"),
        _ladeda("wildrf", ("wildrf/reddit",), False, "WildRF Reddit"),
        _tiny("forensynth", "NPR", FORENSYNTH, True, "71c15cfeeec8cd8add63681d8ae32f23f07f1c8e"),
        _tiny("wildrf", "right_diag", ("wildrf/reddit",), False, "f859d0a45dea6eba0f2e350ffdb5df6d0db13731"),
    ]
