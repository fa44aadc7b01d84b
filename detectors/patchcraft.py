"""PatchCraft (RPTC): the contrast between a mosaic of the poorest-texture patches and one of the richest, through
30 fixed SRM high-pass filters into a small CNN.

Zhong et al., "PatchCraft: Exploring Texture Patch for Efficient AI-generated Image Detection" (first titled "Rich
and Poor Texture Contrast: A Simple yet Effective Approach for AI-generated Image Detection", arXiv 2311.12397).
The authors released test code and weights late, on ModelScope only (AIGCDetectBenchmark#20); the readable code is
SIDBench's ``models/RPTC.py`` and ``rptc_processing``, which this follows. Test protocol: ``3 * 8 * 8`` random
square crops of side ``S/8`` (S = 224 in SIDBench's test.py; an image with a side below that is first resized to a
square patch), ranked by their texture richness (sum of absolute differences to the pixel below, right, and the two
diagonals); the 64 poorest tiled row-major into one SxS mosaic, the 64 richest (richest first) into another; pixels
in [0, 1], no normalisation. Network: each channel of each mosaic through the 30 SRM filters (a 5x5 conv, 1 -> 30,
the filters stored in the checkpoint as ``group1.hpf.weight``), 90 channels -> 3x3 conv 32, BN, Hardtanh(+-5)
(``group1_b``, shared); the poor minus the rich features through four conv groups (32 channels, BN, ReLU,
3x3/2 average pools), global average pool, ``fc2 = Linear(32, 1)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sidbench.api import DetectorSpec, NetworkDetector, OfficialWeights, PixelInput, ProtocolSpec, hookimpl

if TYPE_CHECKING:
    import torch

    from sidbench.api import ImageInput

PAPER = ("Zhong et al., PatchCraft: Exploring Texture Patch for Efficient AI-generated Image Detection "
         "(arXiv 2311.12397; first titled Rich and Poor Texture Contrast)")
LICENSE = "no licence stated for the released test code or weights (ModelScope); SIDBench code: Apache-2.0"
REPOSITORY = "https://github.com/mever-team/sidbench"
HF = "https://huggingface.co/dkarageo/sidbench/resolve/main/"
GRID = 8  # 2 ** patchNum, patchNum = 3
CONV_GROUPS = {"group2": (4, True), "group3": (2, True), "group4": (2, True), "group5": (2, False)}  # (convs, pool)


def texture_richness(patch: "torch.Tensor") -> float:
    """``ED``: summed absolute differences to the neighbour below, right, below-right and below-left."""
    import torch

    s = torch.sum(torch.abs(patch[:, :-1, :] - patch[:, 1:, :])).item()
    s += torch.sum(torch.abs(patch[:, :, :-1] - patch[:, :, 1:])).item()
    s += torch.sum(torch.abs(patch[:, :-1, :-1] - patch[:, 1:, 1:])).item()
    s += torch.sum(torch.abs(patch[:, :-1, 1:] - patch[:, 1:, :-1])).item()
    return s


class RichPoorMosaics:
    """[3, S, 2S]: the poor-texture mosaic (left) beside the rich-texture one (right), pixels in [0, 1]. The
    random crop positions come from a generator seeded with ``seed`` for every image (deterministic scores)."""

    def __init__(self, info: Any, seed: int = 0):
        self.size, self.seed = int(info.image_size), seed

    def __call__(self, item: "ImageInput") -> "torch.Tensor":
        import torch
        import torchvision.transforms.functional as TF

        s, n = self.size, GRID
        p = s // n
        img = item.image
        if min(img.size) < p:
            img = TF.resize(img, [p, p])
        x = TF.to_tensor(img)
        gen = torch.Generator().manual_seed(self.seed)
        h, w = x.shape[-2:]
        crops = []
        for _ in range(n * n * 3):  # RandomCrop's draws: the row, then the column
            i = int(torch.randint(0, h - p + 1, (1,), generator=gen).item())
            j = int(torch.randint(0, w - p + 1, (1,), generator=gen).item())
            c = x[:, i:i + p, j:j + p]
            crops.append((c, texture_richness(c)))
        crops.sort(key=lambda t: t[1])  # stable, as sorted() in the official code
        out = torch.zeros(3, s, 2 * s)
        for k in range(n * n):
            r, q = divmod(k, n)
            out[:, r * p:(r + 1) * p, q * p:(q + 1) * p] = crops[k][0]
            out[:, r * p:(r + 1) * p, s + q * p:s + (q + 1) * p] = crops[-1 - k][0]
        return out


class PatchCraft(NetworkDetector):
    """The RPTC network on the two mosaics, one logit per image."""

    def build_network(self) -> "torch.nn.Module":
        return build_network()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        self.require_weights("RPTC.pth")
        x = features["pixels"]
        s = x.shape[-2]
        return forward(self.net, x[..., :s], x[..., s:2 * s])


def build_network() -> "torch.nn.Module":
    """``Net`` of RPTC.py under its module names (``group1.hpf``, ``group1_b``, ``group2..5``, ``fc2``)."""
    import torch
    from torch import nn

    net = nn.Module()
    net.group1 = nn.Module()
    net.group1.hpf = nn.Conv2d(1, 30, kernel_size=5, padding=2, bias=False)
    net.group1.hpf.weight.requires_grad_(False)  # fixed SRM filters, read from the checkpoint
    net.group1_b = nn.Sequential(nn.Conv2d(90, 32, 3, padding=1), nn.BatchNorm2d(32), nn.Hardtanh(-5.0, 5.0))
    for name, (convs, pool) in CONV_GROUPS.items():
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()]
        if pool:
            layers.append(nn.AvgPool2d(kernel_size=3, padding=1, stride=2))
        setattr(net, name, nn.Sequential(*layers))
    net.fc2 = nn.Linear(32, 1)
    with torch.no_grad():
        net.group1.hpf.weight.zero_()
    return net


def _filtered(net: "torch.nn.Module", mosaic: "torch.Tensor") -> "torch.Tensor":
    b, c, h, w = mosaic.shape
    y = net.group1.hpf(mosaic.reshape(b * c, 1, h, w)).reshape(b, c * 30, h, w)  # per channel: its 30 responses
    return net.group1_b(y)


def forward(net: "torch.nn.Module", poor: "torch.Tensor", rich: "torch.Tensor") -> "torch.Tensor":
    """Logits [B] of ``Net.forward`` (its TLU truncation is defined but never applied)."""
    y = _filtered(net, poor) - _filtered(net, rich)
    for name in CONV_GROUPS:
        y = getattr(net, name)(y)
    return net.fc2(y.mean(dim=(2, 3))).squeeze(1)


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="patchcraft.progan",
        factory=PatchCraft,
        preprocess="rich_poor_mosaics",
        pixels=PixelInput(image_size=224, protocols=(ProtocolSpec(
            "rich_poor_mosaics", RichPoorMosaics, "PatchCraft: 192 random S/8 crops ranked by texture; the 64 "
            "poorest and the 64 richest as two SxS mosaics side by side (seeded, deterministic)"),)),
        default=True,
        quickstart=False,
        description="PatchCraft / RPTC (rich vs poor texture mosaics, 30 SRM filters, small CNN), ProGAN-trained; "
                    "SIDBench's protocol (S = 224, 28 px patches); official: patchcraft@RPTC.pth",
        options={"image_size": 224},
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=HF + "rptc/RPTC.pth", filename="RPTC.pth", repository="https://huggingface.co/dkarageo/sidbench",
            note="SIDBench's weight bundle (the authors publish on ModelScope only); Hugging Face revision not "
                 "pinned yet, no checksum published"),
        published={"PatchCraft paper (arXiv 2311.12397), ProGAN-trained, 17 generators": "not transcribed here (no "
                   "verified copy offline); read them in the paper",
                   "SIDBench (MMM 2024) PatchCraft rows": "in the paper's tables"},
        notes="Written from SIDBench models/RPTC.py and dataset/process.py (rptc_processing, ED); the authors' "
              "ModelScope code could not be read here. The crops are random in the official code (torch's global "
              "generator); sidbench draws them from a generator seeded per image, so scores are deterministic but "
              "not the draw of any particular official run. The two mosaics travel side by side in one [3, S, 2S] "
              "tensor. --set image_size=256 gives 32 px patches (the paper's 256 crop). Loads {'netC': sd} (module. "
              "stripped) and bare state dicts strictly; the SRM filters come from the checkpoint.",
    )]
