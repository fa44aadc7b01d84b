"""FreqNet: high-frequency representations and frequency-space convolutions around two ResNet-50 stages.

Tan et al., "Frequency-Aware Deepfake Detection: Improving Generalizability through Frequency Space Domain
Learning", AAAI 2024 (chuangchuangtan/FreqNet-DeepfakeDetection; no licence file). Read from its
``networks/freqnet.py``: an FFT high-pass over height/width (``hfreqWH``: the centred middle half of the
shifted spectrum zeroed, inverse, real part, ReLU), a 1x1 conv given as raw ``weight``/``bias`` parameters,
an FFT high-pass over channels (``hfreqC``), a frequency-space layer (``realconv``/``imagconv`` 1x1 convs on
the real and imaginary parts of the shifted 2-D spectrum), twice (the second conv with stride 2), max-pool,
ResNet-50's layer1, two more high-pass/conv/frequency-space rounds (the second with stride 2), layer2,
global average pool and ``fc1 = Linear(512, 1)``. The released ``4-classes-freqnet-v2.pth`` (the README
calls it ``4-classes-freqnet.pth``) is a bare state dict loaded strictly by ``test.py``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, NetworkDetector, OfficialWeights, PixelInput, StepDecay, accuracy, bce_epoch,
                          hookimpl, note, train_epochs)
from sidbench.data.augment import BlurJpegCrop

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Tan et al., Frequency-Aware Deepfake Detection: Improving Generalizability through Frequency Space "
         "Domain Learning, AAAI 2024 (arXiv 2403.07240)")
LICENSE = "no licence file in chuangchuangtan/FreqNet-DeepfakeDetection (all rights reserved by default)"
REPOSITORY = "https://github.com/chuangchuangtan/FreqNet-DeepfakeDetection"
COMMIT = "2c6bd020cda1c0001e7a7d30ebd2dd5c55b5a8b6"  # the authors' last commit read here ("update README.md")
FILENAME = "4-classes-freqnet-v2.pth"
# (raw 1x1 conv: in, out, stride; whether a channel high-pass follows) for the four rounds, in forward order
ROUNDS = ((3, 64, 1, True), (64, 64, 2, True), (256, 256, 1, False), (256, 256, 2, False))


class FreqNet(NetworkDetector):
    """FreqNet on the preprocessed pixels, one logit per image."""

    def build_network(self) -> "torch.nn.Module":
        return build_network()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward(self.net, features["pixels"]).squeeze(1)

    def augmentation(self) -> BlurJpegCrop:
        """FreqNet's training view: both sides resized to ``load_size`` (bilinear), random ``crop_size`` crop, flip."""
        o = self.options
        return BlurJpegCrop(f"freqnet-train-l{o['load_size']}-c{o['crop_size']}", crop=int(o["crop_size"]),
                            resize=int(o["load_size"]), square=True, flip=True)

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """The README's recipe: from scratch, Adam lr 1e-3 (beta1 0.9), batch 32, BCE, lr x 0.8 at the end of
        every 10th epoch, 85 epochs; the last epoch is kept (validation accuracy is logged)."""
        import torch

        o = self.options
        data = data.with_classes(o["classes"], log)
        self.net = build_network().to(data.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=float(o["lr"]), betas=(0.9, 0.999))

        def run_epoch(epoch: int) -> tuple[float, int]:
            batches = data.batches("train", batch_size=int(o["batch_size"]), augment=self.augmentation(),
                                   epoch=epoch, protocol="native")
            return bce_epoch(self.score, batches, opt, data.device)

        summary = train_epochs(data, self.name, epochs=int(o["epochs"]), run_epoch=run_epoch, net=self.net,
                               objects={"net": self.net, "optimizer": opt}, log=log,
                               validate=lambda: accuracy(*data.scores(self, "val")),
                               schedule=StepDecay(opt, int(o["decay_every"]), float(o["lr_decay"])))
        self.eval()
        return summary


def build_network() -> "torch.nn.Module":
    """FreqNet's parameters under their official names (``weight1..4``, ``bias1..4``, ``realconv1..4``,
    ``imagconv1..4``, ``layer1``, ``layer2``, ``fc1``); the raw weights start from N(0, 1) as there."""
    import torch
    from torch import nn

    from sidbench.nets.resnet import bottleneck_stage, kaiming_init

    net = nn.Module()
    for i, (cin, cout, _, _) in enumerate(ROUNDS, start=1):
        setattr(net, f"weight{i}", nn.Parameter(torch.randn(cout, cin, 1, 1)))
        setattr(net, f"bias{i}", nn.Parameter(torch.randn(cout)))
        setattr(net, f"realconv{i}", nn.Conv2d(cout, cout, kernel_size=1, bias=False))
        setattr(net, f"imagconv{i}", nn.Conv2d(cout, cout, kernel_size=1, bias=False))
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    net.layer1 = bottleneck_stage(64, 64, 3)
    net.layer2 = bottleneck_stage(256, 128, 4, stride=2)
    net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    net.fc1 = nn.Linear(512, 1)
    return kaiming_init(net)


def high_pass_hw(x: "torch.Tensor", scale: int = 4) -> "torch.Tensor":
    """``hfreqWH``: zero the centred ``2 * (n // scale)`` low frequencies of the shifted 2-D spectrum per side,
    back to space (real part), ReLU."""
    import torch
    import torch.nn.functional as F

    f = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    h, w = f.shape[-2:]
    f[:, :, h // 2 - h // scale:h // 2 + h // scale, w // 2 - w // scale:w // 2 + w // scale] = 0.0
    return F.relu(torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1)), norm="ortho").real)


def high_pass_c(x: "torch.Tensor", scale: int = 4) -> "torch.Tensor":
    """``hfreqC``: the same high-pass along the channel axis (1-D FFT over channels)."""
    import torch
    import torch.nn.functional as F

    f = torch.fft.fftshift(torch.fft.fft(x, dim=1, norm="ortho"), dim=1)
    c = f.shape[1]
    f[:, c // 2 - c // scale:c // 2 + c // scale] = 0.0
    return F.relu(torch.fft.ifft(torch.fft.ifftshift(f, dim=1), dim=1, norm="ortho").real)


def frequency_conv(x: "torch.Tensor", real: "torch.nn.Module", imag: "torch.nn.Module") -> "torch.Tensor":
    """The frequency-space layer: 1x1 convs on the real and imaginary parts of the shifted spectrum, back, ReLU."""
    import torch
    import torch.nn.functional as F

    f = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))
    f = torch.complex(real(f.real), imag(f.imag))
    return F.relu(torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1)), norm="ortho").real)


def _round(net: "torch.nn.Module", x: "torch.Tensor", i: int) -> "torch.Tensor":
    import torch.nn.functional as F

    _, _, stride, channel_pass = ROUNDS[i - 1]
    x = F.relu(F.conv2d(high_pass_hw(x), getattr(net, f"weight{i}"), getattr(net, f"bias{i}"), stride=stride))
    if channel_pass:
        x = high_pass_c(x)
    return frequency_conv(x, getattr(net, f"realconv{i}"), getattr(net, f"imagconv{i}"))


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B, 1] of FreqNet's ``forward``."""
    x = net.maxpool(_round(net, _round(net, x, 1), 2))
    x = _round(net, _round(net, net.layer1(x), 3), 4)
    return net.fc1(net.avgpool(net.layer2(x)).flatten(1))


OPTIONS = {"epochs": 85, "lr": 1e-3, "batch_size": 32, "lr_decay": 0.8, "decay_every": 10, "load_size": 256,
           "crop_size": 224, "image_size": 256, "classes": ["car", "cat", "chair", "horse"]}
OPTION_TYPES = {"classes": (str, list)}


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="freqnet.progan4",
        factory=FreqNet,
        preprocess="resize_square",
        pixels=PixelInput(image_size=256),
        needs_fit=True,
        default=True,
        quickstart=False,
        description="FreqNet (FFT high-pass + frequency-space convs, ResNet-50 stages 1-2) on ProGAN "
                    "car/cat/chair/horse; test.py's ForenSynths protocol (256x256 resize; --protocol native for "
                    f"its GANGen-Detection one); official: freqnet@{FILENAME}",
        options=OPTIONS,
        option_types=OPTION_TYPES,
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=f"{REPOSITORY}/raw/{COMMIT}/{FILENAME}", filename=FILENAME, repository=REPOSITORY, revision=COMMIT,
            git_blob="3c6208db34138cea16da831bdecf03bbb568b630",
            note="committed in the repository root (the README's test command names it 4-classes-freqnet.pth); "
                 "no SHA-256 published"),
        published={"17 GANs (ForenSynths + GANGen-Detection), mean acc vs. the previous best":
                   "+9.8 points with fewer parameters (abstract; anchor, not reproduced here)"},
        notes="Read from networks/freqnet.py (network, key names, initialisation), test.py, validate.py and "
              "data/datasets.py (protocols: ForenSynths no_resize=False/no_crop=True, i.e. Resize((256, 256)) "
              "bilinear on PIL, no crop; GANGen-Detection native size; ImageNet mean/std), train.py, "
              "networks/trainer.py and the README (recipe). Written from the commit of 2024-03-15 (the last by "
              "the authors that sidbench could read). The official network allocates its raw weights on CUDA; "
              "here they follow the detector's device. Runs in fp32 (FFTs) on every device.",
    )]
