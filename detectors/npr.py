"""NPR: Neighbouring Pixel Relationships, the residual of a nearest 2x down/up-sampling, into a short ResNet.

Tan et al., "Rethinking the Up-Sampling Operations in CNN-based Generative Network for Generalizable
Deepfake Detection", CVPR 2024 (chuangchuangtan/NPR-DeepfakeDetection; no licence file). The network of its
``networks/resnet.py``: ``NPR = x - up(down(x, 1/2))`` (legacy ``nearest``, on the normalised image), then
``conv1(NPR * 2/3)`` - a 3x3/2 stem - BN, ReLU, max-pool, ResNet-50's layer1 and layer2 only, global average
pool and ``fc1 = Linear(512, 1)``. Both released checkpoints load as published: ``NPR.pth`` (a training dump
``{'model': ...}`` of a DataParallel model, keys under ``module.``) and ``model_epoch_last_3090.pth`` (a bare
state dict).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DataError, DetectorSpec, ImageInput, NetworkDetector, OfficialWeights, Option, PixelInput,
                          ProtocolSpec, StepDecay, accuracy, bce_epoch, hookimpl, note, train_epochs)
from sidbench.data.augment import BlurJpegCrop
from sidbench.nets.resnet import bottleneck_stage, kaiming_init

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Tan et al., Rethinking the Up-Sampling Operations in CNN-based Generative Network for Generalizable "
         "Deepfake Detection, CVPR 2024 (arXiv 2312.10461)")
LICENSE = "no licence file in chuangchuangtan/NPR-DeepfakeDetection (all rights reserved by default)"
REPOSITORY = "https://github.com/chuangchuangtan/NPR-DeepfakeDetection"
# the commit the released files are read at (both are plain git blobs there, ids checked on download)
REVISION = "73cde1ced21291bfb504a2add2b53fbe99c4f433"
RAW = f"https://raw.githubusercontent.com/chuangchuangtan/NPR-DeepfakeDetection/{REVISION}/"
# the README's "Pretrained checkpoint" of its GenImage section (trained on SD v1.4, seed 70): a Drive folder
GENIMAGE_FOLDER = "https://drive.google.com/drive/folders/1_mD17F94xMbJqEAsWRW1gVsZ5db6YamI?usp=sharing"
KEEP = ("last", "best")


class NPR(NetworkDetector):
    """The NPR network on the preprocessed pixels (even height and width), one logit per image. Loads
    ``NPR.pth`` (``module.`` keys inside ``model``) and bare state dicts (``model_epoch_last_3090.pth``)."""

    def build_network(self) -> "torch.nn.Module":
        return build_network()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        x = features["pixels"]
        if x.shape[-2] % 2 or x.shape[-1] % 2:
            raise DataError(f"{self.name} needs even image sizes (got {x.shape[-2]}x{x.shape[-1]} under protocol "
                            f"{self.preprocess!r}): use --protocol native_even, which drops the odd last row/column "
                            "as NPR's README does")
        return forward(self.net, x)

    # -- training -----------------------------------------------------------------------------------
    def augmentation(self) -> BlurJpegCrop:
        """NPR's training view: both sides resized to ``load_size`` (bilinear), random ``crop_size`` crop, flip."""
        o = self.options
        resize = None if o["load_size"] is None else int(o["load_size"])
        return BlurJpegCrop(f"npr-train-l{resize}-c{o['crop_size']}-f{int(bool(o['flip']))}", crop=int(o["crop_size"]),
                            resize=resize, square=True, flip=bool(o["flip"]))

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """The published recipe: from scratch, Adam lr 2e-4, batch 32, BCE, lr x 0.9 after every 10th epoch,
        50 epochs, the last epoch kept (validation accuracy is logged; ``keep=best`` selects on it instead)."""
        import torch

        o = self.options
        data = data.with_classes(o["classes"], log)
        self.net = build_network().to(data.device)
        opt = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=float(o["lr"]),
                               betas=(0.9, 0.999))
        view = self.augmentation()

        def run_epoch(epoch: int) -> tuple[float, int]:
            batches = data.batches("train", batch_size=int(o["batch_size"]), augment=view, epoch=epoch,
                                   protocol="native")
            return bce_epoch(self.score, batches, opt, data.device)

        summary = train_epochs(data, self.name, epochs=int(o["epochs"]), run_epoch=run_epoch,
                               objects={"net": self.net, "optimizer": opt}, net=self.net, keep=o["keep"], log=log,
                               validate=lambda: accuracy(*data.scores(self, "val")),
                               schedule=StepDecay(opt, int(o["decay_every"]), float(o["lr_decay"])))  # after epochs 10, 20, ...
        self.eval()
        return summary


def build_network() -> "torch.nn.Module":
    """conv1 (3x3/2) / bn1 / layer1 / layer2 / fc1 with NPR's key names and initialisation (convs Kaiming
    normal, fan-out; BatchNorm 1 and 0; fc1 PyTorch's default)."""
    from torch import nn

    net = nn.Module()
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    net.bn1 = nn.BatchNorm2d(64)
    net.relu = nn.ReLU(inplace=True)
    net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    net.layer1 = bottleneck_stage(64, 64, 3, stride=1)
    net.layer2 = bottleneck_stage(256, 128, 4, stride=2)
    net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    net.fc1 = nn.Linear(512, 1)
    return kaiming_init(net)


def npr_residual(x: "torch.Tensor") -> "torch.Tensor":
    """``x - up(down(x))``: nearest down-sampling by 1/2 and back, as NPR's ``interpolate(img, 0.5)``."""
    import torch.nn.functional as F

    down = F.interpolate(x, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    return x - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)


def forward(net: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B] of NPR's ``ResNet.forward``."""
    x = net.conv1(npr_residual(x) * 2.0 / 3.0)
    x = net.maxpool(net.relu(net.bn1(x)))
    x = net.layer2(net.layer1(x))
    return net.fc1(net.avgpool(x).flatten(1)).squeeze(1)


class TileCenterCrop:
    """NPR's GenImage test view (README, "GenImage" section): an image smaller than the crop on a side is
    tiled ("translate and duplicate") until both sides reach it, then torchvision's centre crop, ImageNet
    normalisation. Picklable (a DataLoader worker builds it once)."""

    def __init__(self, info: PixelInput):
        self.size, self.mean, self.std = int(info.image_size), list(info.mean), list(info.std)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import math

        import torchvision.transforms.functional as TF
        from PIL import Image

        img, size = item.image, self.size
        w, h = img.size
        if min(w, h) < size:
            tiled = Image.new("RGB", (w * math.ceil(size / w), h * math.ceil(size / h)))
            for x in range(0, tiled.size[0], w):
                for y in range(0, tiled.size[1], h):
                    tiled.paste(img, (x, y))
            img = tiled
        return TF.normalize(TF.to_tensor(TF.center_crop(img, [size, size])), self.mean, self.std)


TILE_CROP = ProtocolSpec("tile_center_crop", TileCenterCrop,
                         "NPR's GenImage test view: tile an image smaller than the crop, then centre crop")

OPTIONS = {
    "epochs": Option(50, min=1, max=100000, doc="training epochs"),
    "lr": Option(2e-4, min=0, max=10, doc="Adam learning rate"),
    "batch_size": Option(32, min=1, max=4096, doc="training batch size"),
    "lr_decay": Option(0.9, min=0, max=1, doc="lr multiplied by this every decay_every epochs"),
    "decay_every": Option(10, min=1, doc="epochs between lr decays"),
    "load_size": Option(256, type=(int, type(None)), min=1, max=4096,
                        doc="training images resized to this square first (None: as they are)"),
    "crop_size": Option(224, min=1, max=4096, doc="training crop"),
    "image_size": Option(256, min=1, max=4096, doc="test resize / crop size"),
    "flip": Option(True, doc="random horizontal flip in training"),
    "classes": Option(["car", "cat", "chair", "horse"], type=(str, list), doc="'all' or the ProGAN class folders"),
    "keep": Option("last", choices=KEEP, doc="the last epoch's weights, or the best on validation"),
}


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    common = dict(factory=NPR, needs_fit=True, training_data=("progan",), paper=PAPER, license=LICENSE)
    return [
        DetectorSpec(
            name="npr.progan4",
            preprocess="resize_square",
            pixels=PixelInput(image_size=256),
            default=True,
            description="NPR (up-sampling residual, short ResNet) on ProGAN car/cat/chair/horse; test.py protocol "
                        "(256x256 resize); official: npr@NPR.pth",
            options=OPTIONS,
            # 400 images of 256 px on 2 cores: 32 px crops, no resize (the quickstart traces are pixel-level)
            quickstart_options={"preprocess": "center_crop", "image_size": 32, "crop_size": 32, "load_size": None,
                                "epochs": 3, "batch_size": 16, "lr": 2e-3, "keep": "best"},
            official_weights=OfficialWeights(url=RAW + "NPR.pth", filename="NPR.pth", repository=REPOSITORY,
                                             git_blob="2430d34a6d6a1143d46d4276a05536770b1a2a97", revision=REVISION,
                                             note="the README's NPR.pth, read at a pinned commit; no SHA-256 published"),
            **common,
        ),
        DetectorSpec(
            name="npr.aigcbench",
            preprocess="native_even",
            pixels=PixelInput(image_size=256),
            description="NPR, the ProGAN 4-class checkpoint of the AIGCDetectBenchmark table: native size, odd "
                        "last row/column dropped; official: npr.aigcbench@model_epoch_last_3090.pth",
            options=OPTIONS,
            official_weights=OfficialWeights(url=RAW + "model_epoch_last_3090.pth", filename="model_epoch_last_3090.pth",
                                             repository=REPOSITORY, git_blob="f3efe21a3cb98da75b50451c3891ad0d2fa9fb2b",
                                             revision=REVISION,
                                             note="the AIGCDetectBenchmark checkpoint, read at a pinned commit; no "
                                                  "SHA-256 published"),
            **common,
        ),
        DetectorSpec(
            name="npr.genimage_sdv14",
            preprocess="tile_center_crop",
            pixels=PixelInput(image_size=224, protocols=(TILE_CROP,)),
            description="NPR trained on GenImage's SD v1.4 split (README's GenImage recipe, seed 70); its test view: "
                        "tile images under 224 px, centre crop 224; official: a Google Drive folder (fetched by hand)",
            options={**OPTIONS, "image_size": 224, "load_size": None, "classes": "all", "epochs": 1},
            official_weights=OfficialWeights(url=GENIMAGE_FOLDER, filename="model_genimage_sdv14.pth",
                                             repository=REPOSITORY,
                                             note="the README's GenImage 'Pretrained checkpoint': a Google Drive "
                                                  "folder, no checksum published; download its checkpoint by hand"),
            **{**common, "training_data": ("stable_diffusion_v_1_4",)},
        ),
    ]
