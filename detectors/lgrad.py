"""LGrad: the gradient of a pretrained StyleGAN discriminator with respect to the image, as an image, into a ResNet-50.

Tan et al., "Learning on Gradients: Generalized Artifacts Representation for GAN-Generated Images Detection",
CVPR 2023 (chuangchuangtan/LGrad). Its PyTorch ``img2gad_pytorch/gen_imggrad.py``: the image resized to 256x256
(bilinear), scaled to [-1, 1], through the StyleGAN discriminator of ``karras2019stylegan-bedrooms-256x256`` (the
genforce PyTorch conversion, ``karras2019stylegan-bedrooms-256x256_discriminator.pth``; batch size 1 in its
``transform_img2grad.sh``, so the minibatch-standard-deviation channel is the constant ``sqrt(1e-8)``), the gradient
of the summed output with respect to the input, min-max scaled to [0, 255] over the whole image, written as an 8-bit
PNG (``cv2.imwrite`` rounds; ``[..., ::-1]`` keeps RGB order) and classified by CNNDetection's ``eval_test8gan.py``:
no resize, no crop, ImageNet mean/std, torchvision ResNet-50 with ``fc = Linear(2048, 1)``.

sidbench runs all of it in one batched pass per image batch (forward and backward through the discriminator, the
8-bit quantisation in torch), no files written. The discriminator is part of the detector: ``net.discriminator``
(loaded from ``lgrad[discriminator=PATH]`` with an official classifier file, or bundled in a sidbench checkpoint).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidbench.api import (DetectorSpec, IMAGENET_MEAN, IMAGENET_STD, NetworkDetector, OfficialWeights, Option,
                          PixelInput, SidbenchError, StepDecay, WeightsError, accuracy, bce_epoch, hookimpl, note,
                          strip_prefix, train_epochs)
from sidbench.nets.resnet import imagenet_resnet50, resnet50_binary

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Tan et al., Learning on Gradients: Generalized Artifacts Representation for GAN-Generated Images Detection, "
         "CVPR 2023")
LICENSE = ("no licence file in chuangchuangtan/LGrad; the discriminator is NVIDIA's StyleGAN (CC BY-NC 4.0) "
           "converted by genforce")
REPOSITORY = "https://github.com/chuangchuangtan/LGrad"
HF = "https://huggingface.co/dkarageo/sidbench/resolve/main/"
DISCRIMINATOR_URL = ("https://lid-1302259812.cos.ap-nanjing.myqcloud.com/tmp/"
                     "karras2019stylegan-bedrooms-256x256_discriminator.pth")
D_HINT = (f"LGrad needs the StyleGAN discriminator: give lgrad[discriminator=PATH] with {DISCRIMINATOR_URL} (LGrad's "
          "README; SIDBench re-hosts it as preprocessing/karras2019stylegan-bedrooms-256x256_discriminator.pth)")
CHANNELS = ("rgb", "bgr")
MBSTD_EPS = 1e-8


class LGrad(NetworkDetector):
    """Discriminator gradient image -> ResNet-50, one logit per image. ``net.discriminator`` follows the shapes of
    the discriminator file (any resolution and width of genforce's StyleGAN discriminator); ``net.classifier`` is
    the official classifier file."""

    def build_network(self) -> "torch.nn.Module":
        from torch import nn

        net = nn.Module()
        path = self.options.get("discriminator")
        state = load_discriminator(path) if path else None
        net.discriminator = build_discriminator(discriminator_shapes(state))
        if state is not None:
            net.discriminator.load_state_dict(state)
        net.classifier = resnet50_binary()
        return net

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None:
        """The discriminator takes the shapes of the one in ``state`` (any width/resolution of genforce's), then
        everything loads strictly."""
        d = {k[len("net.discriminator."):]: v for k, v in state.items() if k.startswith("net.discriminator.")}
        if "input0.weight" in d:
            self.net.discriminator = build_discriminator(discriminator_shapes(d)).to(self.device)
        super().load_state_dict(state)

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        state = strip_prefix(state)
        if any(k.startswith("discriminator.") for k in state):  # both parts in one file
            return {f"net.{k}": v for k, v in state.items()}
        if not self.options.get("discriminator"):
            raise WeightsError(f"{self.name}: {D_HINT}")
        out = {f"net.classifier.{k}": v for k, v in state.items()}
        out.update({f"net.discriminator.{k}": v for k, v in load_discriminator(self.options["discriminator"]).items()})
        return out

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return self.classify(gradient_image(self.net.discriminator, features["pixels"]))

    def classify(self, g: "torch.Tensor") -> "torch.Tensor":
        """Logits of the classifier on gradient images in [0, 1] (ImageNet mean/std, as ``eval_test8gan.py``)."""
        if self.options["grad_channels"] == "bgr":
            g = g.flip(1)
        mean = g.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = g.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return self.net.classifier((g - mean) / std).squeeze(1)

    # -- training -----------------------------------------------------------------------------------
    def fit(self, data: "FitData", log: Any = note) -> dict[str, Any]:
        """LGrad's ``train-detector.sh`` (CNNDetection's trainer on the gradient images): ImageNet ResNet-50 with
        ``fc`` from N(0, 0.02), Adam lr 5e-4 (betas 0.9, 0.999), batch 16, BCE, random 224 crop and horizontal
        flip of each 256x256 gradient image, no blur or JPEG, lr x 0.8 after every 10th epoch, 100 epochs, the
        last one kept (validation accuracy is logged). The discriminator stays frozen."""
        import torch

        o = self.options
        if not o.get("discriminator"):
            raise SidbenchError(f"{self.name} trains on discriminator gradients: {D_HINT}")
        data = data.with_classes(o["classes"], log)
        self.net.discriminator.to(data.device).eval().requires_grad_(False)
        self.net.classifier = resnet50_binary(imagenet_resnet50(o["pretrained"], log)).to(data.device)
        opt = torch.optim.Adam(self.net.classifier.parameters(), lr=float(o["lr"]), betas=(0.9, 0.999))
        classifier = self.net.classifier

        def run_epoch(epoch: int) -> tuple[float, int]:
            rng = torch.Generator().manual_seed(data.seed * 1000 + epoch)
            batches = data.batches("train", batch_size=int(o["batch_size"]), epoch=epoch, protocol=self.preprocess)
            return bce_epoch(lambda f: self.classify(self.train_view(f["pixels"], rng)), batches, opt, data.device)

        def validate() -> float:
            return accuracy(*data.scores(self, "val"))  # data.scores runs it in eval mode

        # adjust_learning_rate at the end of epochs 10, 20, ...
        summary = train_epochs(data, self.name, epochs=int(o["epochs"]), run_epoch=run_epoch, validate=validate,
                               objects={"classifier": classifier, "optimizer": opt}, net=classifier, log=log,
                               schedule=StepDecay(opt, int(o["decay_every"]), float(o["lr_decay"])))
        self.eval()
        return summary

    def train_view(self, x: "torch.Tensor", rng: "torch.Generator") -> "torch.Tensor":
        """The gradient images of a batch, each randomly cropped to ``crop_size`` and flipped with probability 1/2
        (``RandomCrop`` then ``RandomHorizontalFlip`` of the trainer's dataset)."""
        import torch

        g, c = gradient_image(self.net.discriminator, x), int(self.options["crop_size"])
        views = []
        for img in g:
            i = int(torch.randint(0, img.shape[-2] - c + 1, (1,), generator=rng))
            j = int(torch.randint(0, img.shape[-1] - c + 1, (1,), generator=rng))
            v = img[:, i:i + c, j:j + c]
            views.append(v.flip(-1) if self.options["flip"] and float(torch.rand(1, generator=rng)) < 0.5 else v)
        return torch.stack(views)


def load_discriminator(path: str) -> dict[str, "torch.Tensor"]:
    from sidbench.api.checkpoints import load_tensors

    if not Path(path).expanduser().is_file():
        raise WeightsError(f"discriminator file {path} does not exist; {D_HINT}")
    state = strip_prefix(load_tensors(path)[0])
    if "input0.weight" not in state or "lod" not in state:
        raise WeightsError(f"{path}: not a genforce StyleGAN discriminator state dict (no input0.weight / lod); {D_HINT}")
    if float(state["lod"]) != 0.0:
        raise WeightsError(f"{path}: discriminator saved at level of detail {float(state['lod'])}; LGrad uses lod 0")
    return state


def discriminator_shapes(state: "dict[str, torch.Tensor] | None") -> list[int]:
    """Feature maps per resolution, highest first ([nf(R), ..., nf(4), nf(2)]); None: the official 256 px one
    (fmaps_base 16384, fmaps_max 512)."""
    if state is None:
        return [min(16384 // 2 ** r, 512) for r in range(8, 0, -1)]
    n = sum(1 for k in state if k.startswith("input") and k.endswith(".weight"))
    widths = [int(state[f"input{i}.weight"].shape[0]) for i in range(n)]
    return widths + [int(state[f"layer{2 * n - 1}.weight"].shape[0])]


def build_discriminator(widths: list[int]) -> "torch.nn.Module":
    """genforce's ``StyleGANDiscriminator`` parameters and buffers under their names (label_size 0, minibatch-std
    on the 4x4 block); blur kernels as the [1, 2, 1] outer product / 16. Run by :func:`discriminator_forward`."""
    import torch
    from torch import nn

    n = len(widths) - 1  # resolutions R .. 4
    d = nn.Module()
    d.register_buffer("lod", torch.zeros(()))
    blur = torch.tensor([1.0, 2.0, 1.0])
    blur = (blur[:, None] * blur[None, :]) / 16.0
    for i in range(n):
        cin = widths[i]
        setattr(d, f"input{i}", _wscaled(cin, 3, 1))
        if i < n - 1:
            setattr(d, f"layer{2 * i}", _wscaled(cin, cin, 3))
            down = _wscaled(widths[i + 1], cin, 3)
            down.blur = nn.Module()
            down.blur.register_buffer("kernel", blur.expand(cin, 1, 3, 3).clone())
            setattr(d, f"layer{2 * i + 1}", down)
        else:
            setattr(d, f"layer{2 * i}", _wscaled(cin, cin + 1, 3))
            setattr(d, f"layer{2 * i + 1}", _wscaled(widths[i + 1], cin * 16))
    setattr(d, f"layer{2 * n}", _wscaled(1, widths[n]))
    return d


def _wscaled(cout: int, cin: int, k: int | None = None) -> "torch.nn.Module":
    import torch
    from torch import nn

    m = nn.Module()
    m.weight = nn.Parameter(torch.randn(cout, cin, k, k) if k else torch.randn(cout, cin))
    m.bias = nn.Parameter(torch.zeros(cout))
    return m


def discriminator_forward(d: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """[B, 1]: ``StyleGANDiscriminator.forward`` at lod 0, each image on its own (a minibatch of one, as LGrad ran
    it: the minibatch-std channel is sqrt(eps) and carries no gradient)."""
    import torch
    import torch.nn.functional as F

    n = sum(1 for name, _ in d.named_children() if name.startswith("input"))
    res = x.shape[-1]
    x = _conv(d.input0, x, math.sqrt(2.0), padding=0)
    for i in range(n):
        a, b = getattr(d, f"layer{2 * i}"), getattr(d, f"layer{2 * i + 1}")
        if i < n - 1:
            x = _conv(a, x, math.sqrt(2.0), padding=1)
            x = F.conv2d(x, b.blur.kernel, padding=1, groups=x.shape[1])
            if res >= 128:  # fused_scale 'auto': a strided 4x4 conv of the 4-tap averaged kernel
                w = F.pad(b.weight * _gain(b.weight, math.sqrt(2.0)), (1, 1, 1, 1))
                w = (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) * 0.25
                x = F.leaky_relu(F.conv2d(x, w, b.bias, stride=2, padding=1), 0.2)
            else:
                x = F.leaky_relu(F.avg_pool2d(F.conv2d(x, b.weight * _gain(b.weight, math.sqrt(2.0)), b.bias,
                                                       padding=1), 2), 0.2)
            res //= 2
        else:
            std = torch.sqrt(x.new_zeros(()) + MBSTD_EPS).expand(x.shape[0], 1, *x.shape[2:])
            x = _conv(a, torch.cat([x, std], 1), math.sqrt(2.0), padding=1)
            x = F.leaky_relu(F.linear(x.flatten(1), b.weight * _gain(b.weight, math.sqrt(2.0)), b.bias), 0.2)
    last = getattr(d, f"layer{2 * n}")
    return F.linear(x, last.weight * _gain(last.weight, 1.0), last.bias)


def _gain(weight: "torch.Tensor", gain: float) -> float:
    """Equalised learning rate: gain / sqrt(fan_in)."""
    fan_in = int(weight.shape[1]) * (int(weight.shape[2]) * int(weight.shape[3]) if weight.dim() == 4 else 1)
    return gain / math.sqrt(fan_in)


def _conv(m: "torch.nn.Module", x: "torch.Tensor", gain: float, padding: int) -> "torch.Tensor":
    import torch.nn.functional as F

    return F.leaky_relu(F.conv2d(x, m.weight * _gain(m.weight, gain), m.bias, padding=padding), 0.2)


def gradient_image(d: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """[B, 3, H, W] in [0, 1]: d(sum D(x))/dx per image, min-max scaled to [0, 255], rounded to 8 bits as the PNG
    that LGrad writes and reads back, divided by 255."""
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        inp = x.detach().clone().float().requires_grad_(True)
        (grad,) = torch.autograd.grad(discriminator_forward(d, inp).sum(), inp)
    g = grad.detach()
    lo = g.amin(dim=(1, 2, 3), keepdim=True)
    g = g - lo
    hi = g.amax(dim=(1, 2, 3), keepdim=True)
    g = g / torch.where(hi != 0, hi, torch.ones_like(hi)) * 255.0  # an all-zero gradient stays zero
    return torch.round(g).clamp(0, 255) / 255.0


OPTIONS = {"discriminator": "", "grad_channels": Option("rgb", choices=CHANNELS, doc="channel order of the gradient "
                                                         "image into the classifier (bgr: as the suites feed it)"),
           "epochs": 100, "lr": 5e-4, "batch_size": 16, "lr_decay": 0.8,
           "decay_every": 10, "crop_size": 224, "flip": True, "pretrained": True}
OPTION_TYPES = {"classes": (str, list), "pretrained": (bool, str)}


def _spec(name: str, filename: str, classes: list[str], default: bool) -> DetectorSpec:
    return DetectorSpec(
        name=f"lgrad.{name}",
        factory=LGrad,
        preprocess="resize_square",
        pixels=PixelInput(image_size=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        default=default,
        quickstart=False,
        description=f"LGrad (StyleGAN-discriminator gradients into a ResNet-50), ProGAN {'/'.join(classes)}; gen_imggrad.py "
                    f"protocol (256x256 resize); official: lgrad.{name}[discriminator=D.pth]@{filename}",
        options={**OPTIONS, "classes": classes},
        option_types=OPTION_TYPES,
        needs_fit=True,
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=HF + "lgrad/" + filename, filename=filename, repository="https://huggingface.co/dkarageo/sidbench",
            note="the authors' Google Drive file (folder 17-MAyCpMqyn4b_DFP2LekrmIgRovwoix) as re-hosted in SIDBench's "
                 "weight bundle; Hugging Face revision not pinned yet, no checksum published; the discriminator is "
                 f"a separate download: {DISCRIMINATOR_URL}"),
        published={"LGrad paper (CVPR 2023), 1/2/4-class ProGAN training, acc/AP on the 8 GANs of eval_test8gan.py":
                   "not transcribed here (no verified copy offline); read them in the paper's tables",
                   "SIDBench and AIGCDetectBenchmark LGrad rows": "in their papers / project page (channel-swapped "
                   "gradients: grad_channels=bgr)"},
        notes="Written from LGrad img2gad_pytorch/gen_imggrad.py, models/stylegan_discriminator.py and "
              "CNNDetection/eval_test8gan.py. The discriminator is genforce's conversion (a plain state dict: it "
              "loads with weights_only=True; the TensorFlow .pkl needs genforce's converter and TensorFlow, run once "
              "by the user). SIDBench centre-crops 256 instead of resizing (--protocol center_crop) and, like "
              "AIGCDetectBenchmark, PNG-encodes the gradient without swapping to BGR, so its classifier sees the "
              "channels reversed: --set grad_channels=bgr reproduces the suites. cv2's rounding of the float image "
              "to 8 bits is reproduced (round half to even).",
    )


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [_spec("progan4", "LGrad-4class-Trainon-Progan_car_cat_chair_horse.pth", ["car", "cat", "chair", "horse"], True),
            _spec("progan2", "LGrad-2class-Trainon-Progan_chair_horse.pth", ["chair", "horse"], False),
            _spec("progan1", "LGrad-1class-Trainon-Progan_horse.pth", ["horse"], False)]
