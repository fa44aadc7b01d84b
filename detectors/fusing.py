"""Fusing (PSM): a ResNet-50 global embedding fused by self-attention with the embeddings of local patches
that the global feature map selects.

Ju, Jia, Ke, Xue, Nagano & Lyu, "Fusing Global and Local Features for Generalized AI-Synthesized Image
Detection", ICIP 2022 (littlejuyan/FusingGlobalandLocal, CC BY-NC-SA 4.0). Read from its
``networks/trainer.py`` (``Patch5Model``, ``COOI``, ``SA_layer``), ``networks/resnet.py``,
``data/dataset_train.py`` and ``eval.py``: the image resized (shorter side 224, bilinear) and centre-cropped to
224 goes through ResNet-50 (``fc1`` 2048 -> 128, ReLU: the global token); its layer4 map scores windows
(3x3 and 2x2 average pools summed over channels), three of each size are picked with 3x3 non-maximum
suppression and mapped to 224 and 112 px boxes on the *native-size* image, cut out (resized to 224,
bilinear, corners aligned, when not 224 already), embedded by the same ResNet-50 and ``fc1``; the six local
tokens and the global one pass three self-attention layers (128 wide, 4 heads) and ``fc`` (128 -> 1) reads
the global token. The authors published no weights; ``fusing@official`` is SIDBench's copy
(``fusing/PSM.pth`` in the Hugging Face bundle ``dkarageo/sidbench``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image

from sidbench.api import (DetectorSpec, IMAGENET_MEAN, IMAGENET_STD, NetworkDetector, OfficialWeights, PixelInput,
                          Plateau, ProtocolSpec, accuracy, bce_epoch, hookimpl, note, train_epochs)
from sidbench.data.perturb import JPEG, Blur

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData, ImageInput

PAPER = ("Ju et al., Fusing Global and Local Features for Generalized AI-Synthesized Image Detection, ICIP 2022 "
         "(arXiv 2203.13964)")
LICENSE = "CC BY-NC-SA 4.0 (littlejuyan/FusingGlobalandLocal); the weights: SIDBench's bundle, see its model card"
REPOSITORY = "https://github.com/littlejuyan/FusingGlobalandLocal"
HF_BUNDLE = "https://huggingface.co/dkarageo/sidbench"
CROP = 224
# (window of the layer4 map, how many picked, box side on the native image) as COOI's lists give them
WINDOWS = ((3, 3, 224), (2, 3, 112))


class PackedInput:
    """The two views Fusing reads, packed in one tensor [3, 224 + H, 224 + W]: the 224 px resize-and-crop at
    the top left, the native image at the bottom right (both ImageNet-normalised), zeros elsewhere; the
    network unpacks them and reads H and W from the shape."""

    def __init__(self, info: PixelInput):
        self.mean, self.std = tuple(info.mean), tuple(info.std)

    def __call__(self, item: "ImageInput") -> "torch.Tensor":
        import torch
        import torchvision.transforms.functional as TF

        from sidbench.data.images import check_short_side_resize

        img = item.image.convert("RGB")
        w, h = img.size
        check_short_side_resize(w, h, CROP)
        crop = TF.center_crop(TF.resize(img, CROP, interpolation=TF.InterpolationMode.BILINEAR), CROP)
        out = torch.zeros(3, CROP + h, CROP + w)
        out[:, :CROP, :CROP] = TF.normalize(TF.to_tensor(crop), self.mean, self.std)
        out[:, CROP:, CROP:] = TF.normalize(TF.to_tensor(img), self.mean, self.std)
        return out


PROTOCOL = ProtocolSpec("fusing_psm", PackedInput, "Fusing's eval.py input: the native image and its resize to 224 "
                        "(shorter side, bilinear) centre-cropped to 224, packed in one tensor", variable_size=True)


class Fusing(NetworkDetector):
    """PSM on the packed input of :class:`PackedInput`, one logit per image. Loads ``{'model': sd}`` dumps
    (with or without DataParallel's ``module.``) and bare state dicts."""

    def build_network(self) -> "torch.nn.Module":
        return build_network()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward(self.net, features["pixels"]).squeeze(1)

    def augmentation(self) -> "FusingAugment":
        o = self.options
        return FusingAugment(float(o["blur_prob"]), tuple(o["blur_sigma"]), float(o["jpeg_prob"]), tuple(o["jpeg_quality"]))

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """train.sh's recipe: ImageNet ResNet-50, Adam lr 5e-5, batch 128, BCE, blur/JPEG (p 0.1) and flip on the
        native images; after ``patience`` epochs without a validation gain the lr is halved; the best epoch
        is kept (eval_config's model_epoch_best). Training ends when the lr would fall under 1e-6 (the official
        loop goes on at 1e-6), or after ``epochs`` epochs without --val."""
        import torch

        from sidbench.nets.resnet import imagenet_resnet50

        o = self.options
        self.net = build_network(imagenet_resnet50(o["pretrained"], log)).to(data.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=float(o["lr"]), betas=(0.9, 0.999))

        def run_epoch(epoch: int) -> tuple[float, int]:
            batches = data.batches("train", batch_size=int(o["batch_size"]), augment=self.augmentation(),
                                   epoch=epoch, protocol=PROTOCOL.name)
            return bce_epoch(self.score, batches, opt, data.device)

        summary = train_epochs(data, self.name, epochs=int(o["max_epochs"] if data.has_val else o["epochs"]),
                               run_epoch=run_epoch, objects={"net": self.net, "optimizer": opt}, net=self.net,
                               validate=lambda: accuracy(*data.scores(self, "val")), keep="improved", log=log,
                               schedule=Plateau(opt, int(o["patience"]), delta=0.0001, min_lr=1e-6, divisor=2.0,
                                                restart_delta=0.00005))
        self.eval()
        return summary


@dataclass(frozen=True)
class FusingAugment:
    """Fusing's training view (``data_augment`` then a flip; no resize, no crop): Gaussian blur with
    probability ``blur_prob`` (sigma ~ U[blur_sigma]), JPEG with probability ``jpeg_prob`` (quality ~
    U{jpeg_quality}; Pillow's encoder for both of train.sh's cv2/pil choices), horizontal flip (p 0.5)."""

    blur_prob: float = 0.1
    blur_sigma: tuple = (0.0, 3.0)
    jpeg_prob: float = 0.1
    jpeg_quality: tuple = (30, 100)
    name: str = "fusing-train"

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        img = img.convert("RGB")
        if rng.random() < self.blur_prob:
            img = Blur(float(rng.uniform(*self.blur_sigma)))(img, rng)
        if rng.random() < self.jpeg_prob:
            img = JPEG(int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))(img, rng)
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else img


def _attention_layer() -> "torch.nn.Module":
    from torch import nn

    layer = nn.Module()
    layer.mha = nn.MultiheadAttention(128, 4)
    layer.ln1, layer.ln2 = nn.LayerNorm(128), nn.LayerNorm(128)
    layer.fc1, layer.fc2 = nn.Linear(128, 128), nn.Linear(128, 128)
    return layer


def build_network(imagenet: "dict[str, torch.Tensor] | None" = None) -> "torch.nn.Module":
    """``Patch5Model`` with its key names: ``resnet`` (torchvision ResNet-50, its unused 1000-way ``fc``
    kept), ``mha_list`` (three attention layers), ``fc1`` (2048 -> 128) and ``fc`` (128 -> 1)."""
    import torchvision
    from torch import nn

    net = nn.Module()
    net.resnet = torchvision.models.resnet50(weights=None)
    if imagenet is not None:
        net.resnet.load_state_dict(imagenet)
    net.mha_list = nn.Sequential(*(_attention_layer() for _ in range(3)))
    net.fc1 = nn.Linear(2048, 128)
    net.fc = nn.Linear(128, 1)
    return net


def _trunk(resnet: "torch.nn.Module", x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """(layer4 map, pooled embedding) of the ResNet-50."""
    r = resnet
    fm = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    return fm, r.avgpool(fm).flatten(1)


def boxes(fm: "torch.Tensor", size: "torch.Tensor") -> "torch.Tensor":
    """COOI's boxes [B, 6, 4] (top, left, bottom, right) on the native images of ``size`` [B, 2] (H, W): the
    best windows of the layer4 map by summed activation, with 3x3 suppression, mapped to the image and shifted
    inside it."""
    import torch
    import torch.nn.functional as F

    b, _, fh, fw = fm.shape
    smin = size.min(dim=1, keepdim=True).values
    base = (size - smin) // 2
    out = []
    for window, count, side in WINDOWS:
        score = F.avg_pool2d(fm, window, stride=1).sum(dim=1, keepdim=True)
        sh, sw = score.shape[-2:]
        for _ in range(count):
            value, flat = score.view(b, -1).max(dim=1)
            row, col = flat // sw, flat % sw
            peak = F.max_pool2d(score, 3, stride=1, padding=1)
            score = score * (peak != value.view(-1, 1, 1, 1)).float()
            rate = torch.stack(((2 * row + fh - sh + 1) / (2 * fh), (2 * col + fw - sw + 1) / (2 * fw)), dim=1)
            centre = (base + smin * rate).long()
            top_left, bottom_right = centre - side // 2, centre + side // 2 + side % 2
            under = top_left.clamp(max=0)
            top_left, bottom_right = top_left - under, bottom_right - under
            over = (bottom_right - size).clamp(min=0)
            top_left, bottom_right = (top_left - over).clamp(min=0), bottom_right - over
            out.append(torch.cat((top_left, bottom_right), dim=1))
    return torch.stack(out, dim=1)


def _windows(images: "torch.Tensor", box: "torch.Tensor") -> "torch.Tensor":
    """The boxed patches [B * 6, 3, 224, 224], each resized to 224 (bilinear, corners aligned) unless it is."""
    import torch
    import torch.nn.functional as F

    out = []
    for img, img_boxes in zip(images, box.tolist()):
        for t, left, bottom, right in img_boxes:
            patch = img[:, t:bottom, left:right]
            if patch.shape[-2:] != (CROP, CROP):
                patch = F.interpolate(patch[None], size=(CROP, CROP), mode="bilinear", align_corners=True)[0]
            out.append(patch)
    return torch.stack(out)


def _attend(layer: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """``SA_layer``: self-attention with a residual and LayerNorm, then a residual two-layer MLP and LayerNorm."""
    import torch.nn.functional as F

    seq = x.transpose(0, 1)
    seq = layer.ln1(seq + layer.mha(seq, seq, seq, need_weights=False)[0]).transpose(0, 1)
    return layer.ln2(seq + layer.fc2(F.relu(layer.fc1(seq))))


def forward(net: "torch.nn.Module", packed: "torch.Tensor") -> "torch.Tensor":
    """Logits [B, 1] of ``Patch5Model.forward`` on packed inputs (see :class:`PackedInput`)."""
    import torch
    import torch.nn.functional as F

    crop, images = packed[:, :, :CROP, :CROP], packed[:, :, CROP:, CROP:]
    size = torch.tensor(images.shape[-2:], device=packed.device).expand(len(packed), 2)
    fm, whole = _trunk(net.resnet, crop)
    tokens = [F.relu(net.fc1(whole)).view(-1, 1, 128)]
    with torch.no_grad():
        box = boxes(fm.detach(), size)
    _, local = _trunk(net.resnet, _windows(images, box).detach())
    tokens.insert(0, F.relu(net.fc1(local)).view(len(packed), -1, 128))
    x = torch.cat(tokens, dim=1)
    for layer in net.mha_list:
        x = _attend(layer, x)
    return net.fc(x[:, -1])


OPTIONS = {"pretrained": True, "lr": 5e-5, "batch_size": 128, "blur_prob": 0.1, "blur_sigma": [0.0, 3.0],
           "jpeg_prob": 0.1, "jpeg_quality": [30, 100], "patience": 10, "max_epochs": 10000, "epochs": 10}
OPTION_TYPES = {"pretrained": (bool, str)}


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="fusing.progan",
        factory=Fusing,
        preprocess=PROTOCOL.name,
        pixels=PixelInput(image_size=CROP, mean=IMAGENET_MEAN, std=IMAGENET_STD, protocols=(PROTOCOL,),
                          max_batch_pixels=16 * 512 * 512),
        needs_fit=True,
        default=True,
        quickstart=False,
        description="Fusing / PSM (ResNet-50 global + 6 attention-selected local patches, self-attention fusion) on "
                    "ProGAN; eval.py protocol (native image + 224 resize-crop); official: fusing@official "
                    "(SIDBench's PSM.pth)",
        options=OPTIONS,
        option_types=OPTION_TYPES,
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=f"{HF_BUNDLE}/resolve/main/fusing/PSM.pth", filename="PSM.pth", repository=HF_BUNDLE,
            note="the authors published no weights; SIDBench (mever-team/sidbench, models/models.py: "
                 "weights/fusing/PSM.pth, trained on ProGAN) hosts this file in its Hugging Face bundle; "
                 "revision not pinned yet (no commit id could be read offline), no checksum published"),
        published={"test set of 19 generators (CNNDetection's sets, StyleGAN3, Taming Transformers, ...)":
                   "per-generator acc / AUC / AP in the paper's tables (not reproduced here); SIDBench's own "
                   "table reports this file on its benchmark"},
        notes="Read from networks/trainer.py (Patch5Model, COOI, SA_layer), networks/resnet.py (torchvision "
              "ResNet-50 layout, an unused 1000-way fc kept in the checkpoint), data/dataset_train.py and "
              "data/__init__.py (the two views, the scale), eval.py (no_resize: native size; {'model': sd} "
              "loaded strictly), train.sh, train.py and earlystop.py (recipe); SIDBench's models/PSM.py and "
              "dataset/process.py run the same network and views. The two views travel packed in one tensor "
              "(protocol fusing_psm); images of one size are batched together. Training draws JPEG with "
              "Pillow only (train.sh mixes cv2 and Pillow) and ends when the halved lr would fall under 1e-6.",
    )]
