"""AIDE: a frozen ConvNeXt-XXL (semantics) plus two ResNet-50s on SRM noise of DCT-selected patches (artifacts).

Yan et al., "A Sanity Check for AI-generated Image Detection", ICLR 2025 (shilinyan99/AIDE, MIT licence).

Read from ``models/AIDE.py``, ``data/dct.py`` and ``data/datasets.py`` (``TestDataset``) at commit 6725b71:

- the image, as ``ToTensor`` gives it ([0, 1]), is cut into 32x32 windows at stride 16 (``nn.Unfold``, no
  padding); each window's 2-D DCT (orthonormal DCT-II matrix ``D``: ``D @ w @ D.T``) is graded by
  ``sum_i 2**i * mean over band i of log(|dct| + 1)``, the six bands being the anti-diagonals
  ``64 i / 6 <= u + v <= 64 (i + 1) / 6`` (a band's mean: its sum over the three channels divided by its cell
  count); the two lowest-graded windows (``argsort`` positions 0 and 1) and the two highest (the last two) are
  kept, each as its inverse-DCT reconstruction (the all-pass "level" filter);
- each kept window and the whole image are resized to 256x256 by torchvision's tensor ``Resize`` (bilinear,
  without antialiasing: what torchvision 0.15 did, which AIDE pins) and normalised with ImageNet's statistics;
- the four windows go through 30 fixed SRM high-pass filters (5x5, summed over RGB) into two ResNet-50s with a
  30-channel stem (``model_min`` on the two lowest, ``model_max`` on the two highest), the four pooled
  2048-vectors averaged; the whole image, renormalised to CLIP's statistics, goes through open_clip's
  ConvNeXt-XXLarge trunk with the head's LayerNorm but no pooling, then average pooling and
  ``convnext_proj`` (3072 -> 256); ``fc`` (Linear 2304 -> 1024, GELU, Linear 1024 -> 2) fuses both;
  ``softmax(...)[:, 1]`` is P(fake) in ``engine_finetune.evaluate``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (CLIP_MEAN, CLIP_STD, DetectorSpec, IMAGENET_MEAN, IMAGENET_STD, ImageInput, NetworkDetector,
                          OfficialWeights, PixelInput, ProtocolSpec, SidbenchError, hookimpl, note)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = "Yan et al., A Sanity Check for AI-generated Image Detection, ICLR 2025 (arXiv 2406.19435)"
LICENSE = "MIT (shilinyan99/AIDE LICENSE; the ConvNeXt-XXL trunk inside the checkpoint is LAION's, MIT via open_clip)"
REPOSITORY = "https://github.com/shilinyan99/AIDE"
COMMIT = "6725b710d5c437ab2f59792908ce0377dfc907de"
DRIVE = "https://drive.google.com/drive/folders/1qx76UFvDpgCxaPLBCmsA2WY-SSzeJrd4"
SIZE, WINDOW, STRIDE, BANDS = 256, 32, 16, 6
FAKE = 1  # engine_finetune.evaluate: softmax(output)[:, 1] is the fake score
# ConvNeXt-XXLarge (open_clip ``convnext_xxlarge`` = timm's, LayerNorm eps 1e-5) and ResNet-50; tests shrink them
# image_size: the side every view is resized to (256; tests shrink it, the ConvNeXt then sees a smaller map)
OPTIONS = {"convnext_depths": [3, 4, 30, 3], "convnext_dims": [384, 768, 1536, 3072], "resnet_layers": [3, 4, 6, 3],
           "image_size": SIZE}
OPTION_TYPES = {"convnext_depths": list, "convnext_dims": list, "resnet_layers": list}


class AIDE(NetworkDetector):
    """AIDE's ``AIDE_Model`` on the five 256x256 views of :class:`AideViews` (stacked along channels, [B, 15,
    256, 256]); one logit ``z[fake] - z[real]``. Loads the official ``{'model': sd}`` training dump strictly."""

    def build_network(self) -> "torch.nn.Module":
        o = self.options
        return build_network([int(v) for v in o["convnext_depths"]], [int(v) for v in o["convnext_dims"]],
                             [int(v) for v in o["resnet_layers"]])

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        z = forward(self.net, features["pixels"])
        return z[:, FAKE] - z[:, 1 - FAKE]

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: training AIDE (main_finetune.py) is not implemented in sidbench; attach "
                            f"the released weights: --detectors {self.name}@CHECKPOINT (from {DRIVE})")


# -- the network ----------------------------------------------------------------------------------------------
def build_network(convnext_depths: list[int], convnext_dims: list[int], resnet_layers: list[int]) -> "torch.nn.Module":
    """``AIDE_Model`` with its module names: ``hpf.hpf`` (30 SRM filters), ``model_min`` / ``model_max``
    (30-channel ResNet-50s with their unused 1000-way ``fc``), ``fc`` (fc1, fc2), ``openclip_convnext_xxl``
    (timm's ConvNeXt trunk as open_clip builds it: no classifier, head LayerNorm kept) and ``convnext_proj.0``."""
    import timm
    from torch import nn

    net = nn.Module()
    net.hpf = nn.Module()
    net.hpf.hpf = nn.Conv2d(3, 30, kernel_size=5, padding=2, bias=False)
    net.model_min = _resnet(resnet_layers)
    net.model_max = _resnet(resnet_layers)
    net.fc = nn.Module()
    net.fc.fc1 = nn.Linear(2048 + 256, 1024)
    net.fc.fc2 = nn.Linear(1024, 2)
    trunk = timm.create_model("convnext_xxlarge", pretrained=False, num_classes=0, depths=convnext_depths,
                              dims=convnext_dims, norm_eps=1e-5)
    trunk.head.global_pool = nn.Identity()  # as AIDE_Model: the head's LayerNorm on the 8x8 map, pooled after
    trunk.head.flatten = nn.Identity()
    net.openclip_convnext_xxl = trunk
    net.convnext_proj = nn.Sequential(nn.Linear(convnext_dims[-1], 256))
    return net


def _resnet(layers: list[int]) -> "torch.nn.Module":
    """torchvision's ResNet-50 layout (Bottleneck, stride on the 3x3) with AIDE's 30-channel 7x7 stem."""
    from torch import nn
    from torchvision.models.resnet import Bottleneck, ResNet

    net = ResNet(Bottleneck, layers, num_classes=1000)
    net.conv1 = nn.Conv2d(30, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def _resnet_features(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return net.avgpool(x).flatten(1)


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """The two logits [B, 2] of ``AIDE_Model.forward`` on the views [B, 15, 256, 256] (minmin, maxmax, minmin1,
    maxmax1, whole image; each ImageNet-normalised)."""
    import torch
    import torch.nn.functional as F

    views = x.unflatten(1, (5, 3))
    hpf = [net.hpf.hpf(views[:, i]) for i in range(4)]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(3, 1, 1)
    cmean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(3, 1, 1)
    cstd = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(3, 1, 1)
    tokens = views[:, 4] * (std / cstd) + (mean - cmean) / cstd  # AIDE's renormalisation, term for term
    semantic = net.openclip_convnext_xxl(tokens).mean(dim=(2, 3))
    x0 = net.convnext_proj(semantic)
    x1 = (_resnet_features(net.model_min, hpf[0]) + _resnet_features(net.model_max, hpf[1])
          + _resnet_features(net.model_min, hpf[2]) + _resnet_features(net.model_max, hpf[3])) / 4
    h = torch.cat([x0, x1], dim=1)
    return net.fc.fc2(F.gelu(net.fc.fc1(h)))


# -- the protocol: DCT-graded windows -------------------------------------------------------------------------
def dct_matrix(n: int) -> "torch.Tensor":
    """The orthonormal DCT-II matrix (row i: frequency i), built in float64 and cast as ``DCT_mat`` is."""
    import numpy as np
    import torch

    i, j = np.arange(n)[:, None], np.arange(n)[None, :]
    scale = np.where(i == 0, np.sqrt(1.0 / n), np.sqrt(2.0 / n))
    return torch.tensor(scale * np.cos((j + 0.5) * np.pi * i / n)).float()


def band_masks(n: int = WINDOW, bands: int = BANDS) -> "torch.Tensor":
    """[bands, n, n]: cell (u, v) is in band i when ``2n i / bands <= u + v <= 2n (i + 1) / bands``."""
    import torch

    s = torch.arange(n)[:, None] + torch.arange(n)[None, :]
    return torch.stack([((s >= 2.0 * n / bands * i) & (s <= 2.0 * n / bands * (i + 1))).float() for i in range(bands)])


def select_windows(x: "torch.Tensor", chunk: int = 8192) -> list["torch.Tensor"]:
    """AIDE's ``DCT_base_Rec_Module``: the windows [3, 32, 32] of lowest, highest, second-lowest and
    second-highest grade (the order ``TestDataset`` stacks them in), each inverse-DCT reconstructed."""
    import torch
    import torch.nn.functional as F

    d = dct_matrix(WINDOW)
    masks = band_masks()
    counts = masks.sum(dim=(1, 2))
    c = x.shape[0]
    windows = F.unfold(x[None], kernel_size=WINDOW, stride=STRIDE)[0]
    windows = windows.transpose(0, 1).reshape(-1, c, WINDOW, WINDOW)
    grades = []
    for part in windows.split(chunk):  # bounded memory on large images; each window's grade is its own
        logs = torch.log(torch.abs(d @ part @ d.T) + 1)
        grade = torch.zeros(part.shape[0])
        for i in range(BANDS):  # the official order of operations: a near tie must break the same way
            grade += 2 ** i * torch.sum(logs * masks[i] / counts[i], dim=[1, 2, 3])
        grades.append(grade)
    order = torch.sort(torch.cat(grades))[1]
    picks = (order[0], order[-1], order[min(1, len(order) - 1)], order[-2 if len(order) > 1 else -1])
    return [d.T @ (d @ windows[int(i)] @ d.T) @ d for i in picks]


class AideViews:
    """AIDE's test views as one tensor [15, 256, 256]: the four selected windows then the whole image, each
    resized to 256x256 (bilinear, no antialiasing) and ImageNet-normalised. Images under 32 px a side, on which
    the official grading fails, are skipped with that reason."""

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = int(info.image_size), tuple(info.mean), tuple(info.std)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torch
        import torchvision.transforms.functional as TF

        from sidbench.data.images import UnreadableImage
        from sidbench.data.pil_decode import pil_convert_rgb

        img = pil_convert_rgb(item)
        if min(img.size) < WINDOW:
            raise UnreadableImage(f"smaller than AIDE's {WINDOW}x{WINDOW} DCT window ({img.size[0]}x{img.size[1]}); "
                                  "the official patch grading cannot run on it")
        x = TF.to_tensor(img)
        views = [*select_windows(x), x]
        out = [TF.normalize(TF.resize(v, [self.size, self.size], antialias=False), self.mean, self.std) for v in views]
        return torch.cat(out)


PROTOCOL = ProtocolSpec(
    "aide_dct", AideViews,
    "AIDE's TestDataset: 2 lowest- and 2 highest-graded 32-px DCT windows (stride 16) and the whole image, each "
    "resized to 256x256 (bilinear, no antialias), ImageNet-normalised; decoded as PIL's convert('RGB')",
    variable_size=False, reads_file=True)

NOTES = (
    f"Read from models/AIDE.py, data/dct.py, data/datasets.py and engine_finetune.py at commit {COMMIT[:7]}. "
    "The official checkpoint is the training dump {'model': state_dict, 'optimizer': ..., 'epoch', 'scaler', "
    "'args'}: sidbench reads only 'model' and loads it strictly (the ConvNeXt-XXL trunk under "
    "openclip_convnext_xxl., the 30 SRM filters under hpf.hpf, both ResNets with their unused fc, fc and "
    "convnext_proj). A dump holding the argparse 'args' object is refused by weights_only loading with a one-line "
    "conversion command (torch.save({'model': ckpt['model']}, ...)). The whole-image resize is torchvision's "
    "tensor resize WITHOUT antialiasing, as AIDE's pinned torchvision 0.15 ran it (0.17+ antialiases by default, "
    "which moves logits by about 0.18). The windows are graded in chunks of 8192 (same values; bounded memory). "
    "Images under 32 px a side are skipped with a reason (the official grading crashes on them). The ConvNeXt "
    "branch runs inside AIDE's own pixel path (not the shared backbone pass): no other detector reads ConvNeXt-XXL "
    "under this 256-px non-antialiased resize, so sharing would save nothing. Runs in fp32. Training "
    "(main_finetune.py) is not implemented.")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    common = dict(
        factory=AIDE, preprocess="aide_dct", needs_fit=True, quickstart=False, options=OPTIONS,
        option_types=OPTION_TYPES, paper=PAPER, license=LICENSE, repository=REPOSITORY, notes=NOTES,
        pixels=PixelInput(image_size=SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD, max_batch_pixels=32 * 5 * SIZE * SIZE,
                          protocols=(PROTOCOL,)))
    published = {"AIGCDetectBenchmark (trained on ProGAN), mean acc / AP": "92.77 / 96.89 (paper's AIGCDetectBenchmark table; transcribed, not re-checked)",
                 "GenImage (trained on SD v1.4), mean acc": "86.88 (paper's GenImage table; transcribed, not re-checked)"}
    return [
        DetectorSpec(
            name="aide.progan", default=True,
            description="AIDE (frozen ConvNeXt-XXL + two SRM ResNet-50s on DCT-selected 32-px windows), trained on "
                        "ProGAN (CNNSpot set); official: aide.progan@CHECKPOINT from the authors' Google Drive",
            training_data=("progan",), published=published,
            official_weights=OfficialWeights(
                url=DRIVE, filename="progan_train.pth", repository=REPOSITORY,
                note="a Google Drive folder (the README's Model Zoo link), no per-file link or checksum published; "
                     "download the ProGAN checkpoint by hand and attach it as aide.progan@FILE"),
            **common),
        DetectorSpec(
            name="aide.sd14",
            description="AIDE trained on GenImage SD v1.4; official: aide.sd14@CHECKPOINT from the authors' Google Drive",
            training_data=("stable-diffusion-1.4 (GenImage)",), published=published,
            official_weights=OfficialWeights(
                url=DRIVE, filename="sd14_train.pth", repository=REPOSITORY,
                note="a Google Drive folder (the README's Model Zoo link), no per-file link or checksum published; "
                     "download the SD v1.4 checkpoint by hand and attach it as aide.sd14@FILE"),
            **common),
    ]
