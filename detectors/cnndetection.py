"""CNNDetection: a ResNet-50 trained on ProGAN images with blur and JPEG augmentation.

Wang, Wang, Zhang, Owens & Efros, "CNN-generated images are surprisingly easy to spot... for now",
CVPR 2020 (PeterWang512/CNNDetection, CC BY-NC-SA 4.0). The network is torchvision's ResNet-50 with
``fc = Linear(2048, 1)``; the released ``blur_jpg_prob0.5.pth`` / ``blur_jpg_prob0.1.pth`` are training
dumps ``{'model': state_dict, 'optimizer': ..., 'total_steps': ...}`` and load as they are
(``--detectors cnndetection@blur_jpg_prob0.5.pth``). Test protocol of its ``eval.py``: no resize,
centre crop 224 (zero padding below), ImageNet mean/std.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, NetworkDetector, OfficialWeights, Option, PixelInput, Plateau, SidbenchError,
                          accuracy, bce_epoch, hookimpl, note, train_epochs)
from sidbench.data.augment import BlurJpegCrop
from sidbench.nets.resnet import imagenet_resnet50, resnet50_binary

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Wang et al., CNN-generated images are surprisingly easy to spot... for now, CVPR 2020 "
         "(arXiv 1912.11035)")
LICENSE = "CC BY-NC-SA 4.0 (PeterWang512/CNNDetection)"
REPOSITORY = "https://github.com/PeterWang512/CNNDetection"
# the 20 LSUN classes of CNNDetection's ProGAN training set (all of them are used)
TRAINING_DATA = ("progan",)


class CNNDetection(NetworkDetector):
    """ResNet-50 on the preprocessed pixels, one logit per image (P(fake) = sigmoid); the official ``model``
    state dict has torchvision's ResNet-50 key names."""

    def build_network(self) -> "torch.nn.Module":
        return resnet50_binary()

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return self.net(features["pixels"]).squeeze(1)

    # -- training -----------------------------------------------------------------------------------
    def augmentations(self) -> tuple[BlurJpegCrop, BlurJpegCrop]:
        """(training view, validation view) of CNNDetection's ``data/datasets.py``: shorter side to
        ``load_size``, blur and JPEG with their probabilities, crop (random / centre), flip (training only).
        Validation keeps the probabilities with sigma and quality fixed at the middle of their ranges."""
        o = self.options
        lo, hi = (float(v) for v in o["blur_sigma"])
        qlo, qhi = (int(v) for v in o["jpeg_quality"])
        common = dict(crop=int(o["image_size"]), resize=int(o["load_size"]), blur_prob=float(o["blur_prob"]),
                      jpeg_prob=float(o["jpeg_prob"]))
        tag = f"b{o['blur_prob']:g}s{lo:g}-{hi:g}j{o['jpeg_prob']:g}q{qlo}-{qhi}l{o['load_size']}c{o['image_size']}"
        train = BlurJpegCrop(f"cnndetection-train-{tag}", blur_sigma=(lo, hi), jpeg_quality=(qlo, qhi), **common)
        mid, qmid = (lo + hi) / 2, int((qlo + qhi) / 2)
        val = BlurJpegCrop(f"cnndetection-val-{tag}", blur_sigma=(mid, mid), jpeg_quality=(qmid, qmid),
                           random_crop=False, flip=False, **common)
        return train, val

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """The published recipe: ImageNet init, Adam lr 1e-4, BCE, blur+JPEG views, early stopping on validation."""
        import torch

        o = self.options
        data = data.with_classes(o["classes"], log)
        if not data.has_val and int(o["max_epochs"]) == int(self.spec.options["max_epochs"]):
            raise SidbenchError(f"{self.name} trains until validation accuracy stops improving: give --val PATH, "
                                "or --set max_epochs=N to train N epochs without validation")
        self.net = resnet50_binary(imagenet_resnet50(o["pretrained"], log)).to(data.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=float(o["lr"]), betas=(0.9, 0.999))
        train_view, val_view = self.augmentations()

        def run_epoch(epoch: int) -> tuple[float, int]:
            batches = data.batches("train", batch_size=int(o["batch_size"]), augment=train_view, epoch=epoch,
                                   protocol="native")
            return bce_epoch(self.score, batches, opt, data.device)

        # lr / 10 after `patience` flat epochs, restarted; the weights of the last improving epoch are kept
        # (CNNDetection saves model_epoch_best.pth then; the last one saved is released)
        summary = train_epochs(data, self.name, epochs=int(o["max_epochs"]), run_epoch=run_epoch,
                               objects={"net": self.net, "optimizer": opt}, net=self.net, keep="improved", log=log,
                               validate=lambda: accuracy(*data.scores(self, "val", augment=val_view)),
                               schedule=Plateau(opt, int(o["patience"]), min_lr=float(o["min_lr"])))
        self.eval()
        return summary


def _spec(variant: str, prob: float, filename: str, url: str, default: bool) -> DetectorSpec:
    return DetectorSpec(
        name=f"cnndetection.{variant}",
        factory=CNNDetection,
        preprocess="center_crop",
        pixels=PixelInput(image_size=224),
        needs_fit=True,
        default=default,
        quickstart=False,  # ImageNet init cannot be fetched offline, and a ResNet-50 is slow to train on 2 cores
        description=f"CNNDetection ResNet-50, ProGAN blur+JPEG p={prob:g}; official: cnndetection.{variant}@{filename}",
        options={
            "pretrained": Option(True, type=(bool, str), doc="ImageNet init (true), random (false), or a ResNet-50 state dict's path"),
            "lr": Option(1e-4, min=0, max=10, doc="Adam learning rate"),
            "batch_size": Option(64, min=1, max=4096, doc="training batch size"),
            "load_size": Option(256, min=1, max=4096, doc="training images resized to this shorter side"),
            "image_size": Option(224, min=1, max=4096, doc="crop size (training and test)"),
            "blur_prob": Option(prob, min=0, max=1, doc="probability of a Gaussian blur in training"),
            "blur_sigma": Option([0.0, 3.0], items=(int, float), min=0, max=50, doc="blur sigma range"),
            "jpeg_prob": Option(prob, min=0, max=1, doc="probability of a JPEG re-compression in training"),
            "jpeg_quality": Option([30, 100], items=int, min=1, max=100, doc="JPEG quality range"),
            "patience": Option(5, min=1, doc="epochs without validation gain before lr / 10"),
            "min_lr": Option(1e-6, min=0, doc="training ends when lr falls below this"),
            "max_epochs": Option(10000, min=1, doc="epoch cap"),
            "classes": Option("all", type=(str, list), doc="'all' or the ProGAN class folders"),
        },
        training_data=TRAINING_DATA,
        official_weights=OfficialWeights(url=url, filename=filename, repository=REPOSITORY,
                                         note="Dropbox link of weights/download_weights.sh; no checksum published"),
        paper=PAPER,
        license=LICENSE,
    )


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [
        _spec("prob05", 0.5, "blur_jpg_prob0.5.pth",
              "https://www.dropbox.com/s/2g2jagq2jn1fd0i/blur_jpg_prob0.5.pth?dl=1", default=True),
        _spec("prob01", 0.1, "blur_jpg_prob0.1.pth",
              "https://www.dropbox.com/s/h7tkpcgiwuftb6g/blur_jpg_prob0.1.pth?dl=1", default=False),
    ]
