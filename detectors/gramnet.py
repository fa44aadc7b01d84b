"""Gram-Net: a ResNet-18 whose stem and stages also feed Gram-matrix texture branches into the classifier.

Liu, Qi & Torr, "Global Texture Enhancement for Fake Face Detection in the Wild", CVPR 2020
(liuzhengzhe/Global_Texture_Enhancement_for_Fake_Face_Detection_in_the-Wild). The suites run a ProGAN-trained
Gram-Net (AIGCDetectBenchmark trained it; SIDBench re-hosts it as ``gramnet/Gram.pth``), with the network of
their identical ``networks/resnet_gram.py``: torchvision's ResNet-18 trunk (``conv1`` 7x7/2, ``bn1``, max-pool,
``layer1..4``, global average pool, 512 features) and six texture branches, one on the input image and one
each on the stem output before and after the max-pool and on ``layer1..3``: a 3x3 conv to 32 channels, BN,
ReLU, the 32x32 Gram matrix divided by ``C*H*W``, two 3x3/2 convs (1->16->32) with BN and ReLU, global
average pool, times one shared learned ``scale``; ``fcnewr`` = Linear(704, 512), ReLU, Dropout, Linear(512, 1).
The checkpoint is a training dump ``{'netC': state_dict}`` (``module.`` keys possible); both load as published.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from sidbench.api import DetectorSpec, NetworkDetector, OfficialWeights, PixelInput, hookimpl

if TYPE_CHECKING:
    import torch

PAPER = ("Liu, Qi & Torr, Global Texture Enhancement for Fake Face Detection in the Wild, CVPR 2020 "
         "(arXiv 2002.00133)")
LICENSE = ("no licence file in liuzhengzhe/Global_Texture_Enhancement_for_Fake_Face_Detection_in_the-Wild; "
           "the ProGAN checkpoint is AIGCDetectBenchmark's, re-hosted by SIDBench (Apache-2.0 code)")
REPOSITORY = "https://github.com/liuzhengzhe/Global_Texture_Enhancement_for_Fake_Face_Detection_in_the-Wild"
HF = "https://huggingface.co/dkarageo/sidbench/resolve/main/"
# (branch conv name, Gram head names, channels in): the input image, the stem before and after the max-pool,
# layer1, layer2, layer3 - in the order their features are concatenated after the trunk's 512
BRANCHES = (("conv_interi_0", "gi_fc1", "gi_fc2", 3), ("conv_inter0_0", "g0_fc1", "g0_fc2", 64),
            ("conv_inter1_0", "g_fc1r", "g_fc2r", 64), ("conv_inter2_0", "g2_fc1", "g2_fc2", 64),
            ("conv_inter3_0", "g3_fc1", "g3_fc2", 128), ("conv_inter4_0", "g4_fc1", "g4_fc2", 256))


class GramNet(NetworkDetector):
    """Gram-Net on the preprocessed pixels (ImageNet-normalised), one logit per image."""

    def build_network(self) -> "torch.nn.Module":
        return build_network()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        self.require_weights("Gram.pth")
        return forward(self.net, features["pixels"])


def _conv_bn_relu(cin: int, cout: int, stride: int) -> "torch.nn.Sequential":
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


def build_network() -> "torch.nn.Module":
    """The modules of ``resnet_gram.resnet18`` under their official names (a container; :func:`forward` runs it)."""
    import torch
    import torchvision
    from torch import nn

    trunk = torchvision.models.resnet18(weights=None)
    net = nn.Module()
    for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
        setattr(net, name, getattr(trunk, name))
    scale = nn.Module()
    scale.scale = nn.Parameter(torch.ones(1))  # ScaleLayer(init_value=1)
    net.scale = scale
    net.fcnewr = nn.Sequential(nn.Linear(704, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 1))
    for conv, fc1, fc2, cin in BRANCHES:
        setattr(net, conv, _conv_bn_relu(cin, 32, 1))
        setattr(net, fc1, _conv_bn_relu(1, 16, 2))
        setattr(net, fc2, _conv_bn_relu(16, 32, 2))
    return net


def gram(x: "torch.Tensor") -> "torch.Tensor":
    """[B, 1, C, C]: the channels' Gram matrix over positions, divided by C*H*W (``GramMatrix``)."""
    b, c, h, w = x.shape
    f = x.reshape(b, c, h * w)
    return (f @ f.transpose(1, 2)).unsqueeze(1) / (c * h * w)


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B] of ``resnet_gram.ResNet.forward``."""
    import torch

    stem = net.relu(net.bn1(net.conv1(x)))
    pooled = net.maxpool(stem)
    l1 = net.layer1(pooled)
    l2 = net.layer2(l1)
    l3 = net.layer3(l2)
    feats = [net.avgpool(net.layer4(l3)).flatten(1)]
    for (conv, fc1, fc2, _), inp in zip(BRANCHES, (x, stem, pooled, l1, l2, l3)):
        g = getattr(net, fc2)(getattr(net, fc1)(gram(getattr(net, conv)(inp))))
        feats.append(net.avgpool(g).flatten(1) * net.scale.scale)
    return net.fcnewr(torch.cat(feats, 1)).squeeze(1)


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="gramnet.progan",
        factory=GramNet,
        preprocess="center_crop",
        pixels=PixelInput(image_size=224),
        default=True,
        quickstart=False,
        description="Gram-Net (ResNet-18 + Gram-matrix texture branches), ProGAN-trained as in SIDBench and "
                    "AIGCDetectBenchmark; SIDBench's test.py protocol (centre crop 224, no resize); "
                    "official: gramnet@Gram.pth",
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=HF + "gramnet/Gram.pth", filename="Gram.pth", repository="https://huggingface.co/dkarageo/sidbench",
            note="SIDBench's weight bundle (the authors published no ProGAN checkpoint; AIGCDetectBenchmark trained "
                 "it and serves it on Baidu/ModelScope only); Hugging Face revision not pinned yet, no checksum "
                 "published"),
        published={"SIDBench (Schinas & Papadopoulos, MMM 2024), GramNet rows": "not transcribed here (no verified "
                   "copy offline); read them in the paper's tables",
                   "AIGCDetectBenchmark Gram-Net rows (16 test sets)": "on its project page (fdmas.github.io/AIGCDetect)"},
        notes="Network of resnet_gram.py in SIDBench and AIGCDetectBenchmark (identical files); the authors' repository "
              "trains on faces and publishes no ProGAN weights. Default protocol: SIDBench test.py (--loadSize None, "
              "--cropSize 224: centre crop 224, zero padding below 224, ImageNet mean/std). AIGCDetectBenchmark's "
              "README evaluates with --no_resize --no_crop: --protocol native. Loads {'netC': sd} dumps (module. "
              "prefix stripped) and bare state dicts, strictly.",
    )]
