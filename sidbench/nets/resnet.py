"""ResNet-50 pieces in torchvision's key names: the stages that SAFE and FreqNet keep after stems of their own,
their initialisation, the one-logit ResNet-50 of CNNDetection and LGrad, and the ImageNet weights that recipes
starting from ``resnet50(pretrained=True)`` load."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch


def bottleneck_stage(inplanes: int, planes: int, blocks: int, stride: int = 1) -> "torch.nn.Sequential":
    """``blocks`` torchvision Bottlenecks (stride on the 3x3 conv), a 1x1 projection shortcut with BatchNorm on
    the first: ResNet's ``_make_layer`` where the channels change (every stage of SAFE and FreqNet)."""
    from torch import nn
    from torchvision.models.resnet import Bottleneck, conv1x1

    down = nn.Sequential(conv1x1(inplanes, planes * Bottleneck.expansion, stride), nn.BatchNorm2d(planes * 4))
    return nn.Sequential(Bottleneck(inplanes, planes, stride, down),
                         *(Bottleneck(planes * 4, planes) for _ in range(blocks - 1)))


def kaiming_init(net: "torch.nn.Module") -> "torch.nn.Module":
    """torchvision ResNet's initialisation: convs Kaiming normal (fan-out, ReLU), BatchNorm weight 1 and bias 0."""
    from torch import nn

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return net


def resnet50_binary(imagenet: "dict[str, torch.Tensor] | None" = None) -> "torch.nn.Module":
    """torchvision's ResNet-50 with ``fc = Linear(2048, 1)``; with ``imagenet``, the trunk from those weights and
    fc from N(0, 0.02) (bias: PyTorch's default), as CNNDetection's ``Trainer`` starts (CNNDetection, LGrad)."""
    import torch
    import torchvision

    from sidbench.api import WeightsError

    net = torchvision.models.resnet50(weights=None, num_classes=1)
    if imagenet is not None:
        missing, unexpected = net.load_state_dict({k: v for k, v in imagenet.items() if not k.startswith("fc.")},
                                                  strict=False)
        if unexpected or any(not k.startswith("fc.") for k in missing):
            raise WeightsError(f"the ImageNet weights do not fit a ResNet-50: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        torch.nn.init.normal_(net.fc.weight, 0.0, 0.02)
    return net


IMAGENET_RESNET50 = "https://download.pytorch.org/models/resnet50-0676ba61.pth"  # torchvision IMAGENET1K_V1


def imagenet_resnet50(pretrained: object, log: "Callable[[str], None]") -> "dict[str, torch.Tensor] | None":
    """The ImageNet ResNet-50 a recipe starts from (``resnet50(pretrained=True)``): ``true`` torchvision's
    IMAGENET1K_V1 (the weights once served as resnet50-19c8e357.pth), a path to such a state dict, or
    ``false`` for a random start (None)."""
    from pathlib import Path

    from sidbench.api import WeightsError
    from sidbench.api.checkpoints import load_tensors

    if pretrained in (False, None, "false", "none"):
        log("random initialisation (pretrained=false)")
        return None
    if isinstance(pretrained, str) and pretrained not in ("true", "imagenet"):
        return load_tensors(pretrained)[0]
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_RESNET50.rsplit("/", 1)[1]
    if cached.is_file():
        return load_tensors(cached)[0]
    try:
        return torch.hub.load_state_dict_from_url(IMAGENET_RESNET50, map_location="cpu", progress=False,
                                                  weights_only=True)
    except OSError as exc:  # URLError (offline), HTTP errors, a read-only cache folder
        raise WeightsError(
            f"ImageNet ResNet-50 weights are not cached at {cached} and could not be downloaded ({exc}); put "
            f"{IMAGENET_RESNET50} there, or pass --set pretrained=PATH (a ResNet-50 state dict) or "
            "--set pretrained=false (random initialisation)") from None
