"""CO-SPY: a frozen-CLIP semantic probe and an NPR-style artifact CNN, fused by a calibrated 2 -> 1 linear layer.

Cheng et al., "CO-SPY: Combining Semantic and Pixel Features to Detect Synthetic Images by AI", CVPR 2025
(Megum1/CO-SPY, MIT). Read from ``detectors/progan/{semantic,artifact,fusion,base}.py``, ``evaluate.py`` and
``pretrained/download.sh`` at commit 310d048 (the ``progan`` variant, trained on CNNDet's ProGAN set):

- test transform (``CoSpyFusionDetector``): ``Resize(256)`` (shorter side, PIL bilinear) then ``CenterCrop(224)``
  and ``ToTensor``; each branch normalises the [0, 1] crop itself (CLIP statistics for the semantic branch,
  ImageNet's for the artifact branch);
- semantic branch: Hugging Face ``openai/clip-vit-large-patch14`` ``get_image_features`` (the projected,
  unnormalised 768-d embedding: OpenAI's ViT-L/14, QuickGELU) then ``fc`` Linear(768, 1);
- artifact branch: NPR's residual ``x - up(down(x))`` (nearest, factor 1/2), ``conv1`` 3x3/2 on it times 2/3,
  BN, ReLU, max-pool, ResNet-50's layer1 and layer2, average pool (512-d) then ``fc`` Linear(512, 1)
  (``artifact_encoder.fc1`` is stored but unused);
- fusion: ``fc`` Linear(2, 1) on [semantic logit, artifact logit]; ``predict`` is its sigmoid.

The release (``progan.zip`` on Hugging Face) holds three files: ``semantic_weights.pth`` (``fc.*`` only),
``artifact_weights.pth`` (``artifact_encoder.*`` and ``fc.*``) and ``fusion_weights.pth`` (``fc.*``);
``cospy.progan@progan.zip`` (or the unzipped folder) loads all three strictly. CLIP comes from open_clip's
``ViT-L-14-quickgelu`` with the ``openai`` weights (cached offline, one-line error when missing).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (Detector, DetectorSpec, ImageInput, OfficialWeights, PixelInput, ProtocolSpec,
                          SidbenchError, WeightsError, hookimpl)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Cheng et al., CO-SPY: Combining Semantic and Pixel Features to Detect Synthetic Images by AI, CVPR 2025 "
         "(arXiv 2503.18286)")
LICENSE = "MIT (Megum1/CO-SPY LICENSE; the CLIP ViT-L/14 weights are OpenAI's, MIT)"
REPOSITORY = "https://github.com/Megum1/CO-SPY"
COMMIT = "310d048387edaf11f236ed1c7180d0e1e823250f"
HF = "https://huggingface.co/ruojiruoli/Co-Spy-Pretrained-Weights/resolve/main/"
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FILES = ("semantic_weights.pth", "artifact_weights.pth", "fusion_weights.pth")
# clip: "ViT-L-14" (OpenAI's weights through open_clip's cache) or "tiny" (a random 2-block tower, seed 0: tests)
OPTIONS = {"clip": "ViT-L-14"}


class CoSpy(Detector):
    """The ``progan`` CO-SPY fusion detector on the [0, 1] 224-px crop; one logit (the fusion layer's output)."""

    def __init__(self, spec: DetectorSpec, backbone: Any, /, **options: Any):
        super().__init__(spec, backbone, **options)
        self.clip = build_clip(self.options["clip"])
        self.head = build_head(self.clip.output_dim)

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"clip": self.clip, "head": self.head}

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward(self.clip, self.head, features["pixels"])

    def load(self, path: str) -> "CoSpy":
        """The release's three files, from ``progan.zip`` or its unzipped folder, into the heads (strict)."""
        parts = _release_files(Path(path).expanduser())
        state = {f"sem.{k}": v for k, v in _tensors(parts[FILES[0]]).items()}
        state.update({f"art.{k}": v for k, v in _tensors(parts[FILES[1]]).items()})
        state.update({f"fusion.{k}": v for k, v in _tensors(parts[FILES[2]]).items()})
        try:
            self.head.load_state_dict(state)
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise WeightsError(f"{path} does not fit detector {self.name!r}: {'; '.join(lines[1:4]) or lines[0]}") from None
        self.fitted, self.weights_path = True, str(path)
        return self.to(self.device).eval()

    def fit(self, data: "FitData", log: Callable[[str], None] = print) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: CO-SPY's three-stage training (train.py) is not implemented in sidbench; "
                            f"attach the release: --detectors {self.name}@official (or @progan.zip)")


def _release_files(path: Path) -> dict[str, Any]:
    """``{file name: bytes or path}`` of the three release files in a folder or a zip (any folder inside)."""
    import zipfile

    if path.is_dir():
        found = {f: path / f for f in FILES if (path / f).is_file()}
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = {Path(n).name: n for n in z.namelist() if not n.startswith("__MACOSX")}
            found = {f: z.read(members[f]) for f in FILES if f in members}
    else:
        raise WeightsError(f"{path}: give CO-SPY's progan.zip or the folder unzipped from it (it must hold "
                           f"{', '.join(FILES)})")
    missing = [f for f in FILES if f not in found]
    if missing:
        raise WeightsError(f"{path}: missing {', '.join(missing)}; CO-SPY's release holds {', '.join(FILES)}")
    return found


def _tensors(source: Any) -> dict[str, "torch.Tensor"]:
    """A state dict from a path or bytes, with ``torch.load(weights_only=True)`` (never a free unpickle)."""
    import io

    import torch

    try:
        obj = torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location="cpu",
                         weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling, zip and truncation errors
        raise WeightsError(f"a CO-SPY weights file is not a plain tensor checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("a CO-SPY weights file is not a state dict of tensors")
    return obj


# -- the networks -------------------------------------------------------------------------------------------
def build_clip(kind: str) -> "torch.nn.Module":
    """OpenAI's CLIP image tower (QuickGELU) through open_clip: ViT-L/14 with the ``openai`` weights, or a tiny
    random one (2 blocks, width 128, patch 32, 32-d output) from seed 0."""
    import open_clip
    import torch

    if kind == "tiny":
        from open_clip.model import QuickGELU
        from open_clip.transformer import VisionTransformer

        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            tower = VisionTransformer(image_size=224, patch_size=32, width=128, layers=2, heads=2, mlp_ratio=4.0,
                                      output_dim=32, act_layer=QuickGELU)
        finally:
            torch.random.set_rng_state(state)
        return tower.eval().requires_grad_(False)
    if kind != "ViT-L-14":
        raise SidbenchError(f"cospy: clip must be 'ViT-L-14' or 'tiny', got {kind!r}")
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    try:
        path = download_pretrained(get_pretrained_cfg("ViT-L-14", "openai"))
        model = open_clip.create_model("ViT-L-14-quickgelu", pretrained=path)
    except Exception as exc:  # noqa: BLE001 - hub and file errors come in many types
        offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE"))
        raise WeightsError(f"cospy: CLIP ViT-L-14:openai weights could not be loaded{' (offline)' if offline else ''} "
                           f"({type(exc).__name__}); run once where the network is reachable so open_clip caches "
                           "them") from None
    return model.visual.eval().requires_grad_(False)


def build_head(clip_dim: int) -> "torch.nn.Module":
    """CO-SPY's trained parts, one submodule per release file with that file's key names: ``sem`` (``fc``),
    ``art`` (``artifact_encoder.*`` and ``fc``) and ``fusion`` (``fc``)."""
    from torch import nn
    from torchvision.models.resnet import Bottleneck, conv1x1

    def layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = nn.Sequential(conv1x1(inplanes, planes * 4, stride), nn.BatchNorm2d(planes * 4))
        return nn.Sequential(Bottleneck(inplanes, planes, stride, down),
                             *(Bottleneck(planes * 4, planes) for _ in range(blocks - 1)))

    enc = nn.Module()
    enc.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    enc.bn1 = nn.BatchNorm2d(64)
    enc.layer1 = layer(64, 64, 3, 1)
    enc.layer2 = layer(256, 128, 4, 2)
    enc.fc1 = nn.Linear(512, 1)  # stored in the release, unused by the forward
    head = nn.Module()
    head.sem, head.art, head.fusion = nn.Module(), nn.Module(), nn.Module()
    head.sem.fc = nn.Linear(clip_dim, 1)
    head.art.artifact_encoder = enc
    head.art.fc = nn.Linear(512, 1)
    head.fusion.fc = nn.Linear(2, 1)
    return head


def _normalise(x: "torch.Tensor", mean: tuple, std: tuple) -> "torch.Tensor":
    import torch

    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def forward(clip: "torch.nn.Module", head: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B] of ``CoSpyFusionDetector.forward`` on [0, 1] crops [B, 3, 224, 224]."""
    import torch
    import torch.nn.functional as F

    sem = head.sem.fc(clip(_normalise(x, CLIP_MEAN, CLIP_STD)))
    a = _normalise(x, IMAGENET_MEAN, IMAGENET_STD)
    down = F.interpolate(a, scale_factor=0.5, mode="nearest", recompute_scale_factor=True)
    residual = a - F.interpolate(down, scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
    enc = head.art.artifact_encoder
    h = F.max_pool2d(F.relu(enc.bn1(enc.conv1(residual * 2.0 / 3.0))), 3, 2, 1)
    art = head.art.fc(enc.layer2(enc.layer1(h)).mean(dim=(2, 3)))
    return head.fusion.fc(torch.cat([sem, art], dim=1)).squeeze(1)


# -- the protocol ---------------------------------------------------------------------------------------------
class ResizeCenterCrop:
    """CO-SPY's test transform without normalisation: ``Resize(256)`` on the PIL image (torchvision, bilinear),
    ``CenterCrop(224)``, ``ToTensor`` -> [3, 224, 224] in [0, 1]."""

    def __init__(self, info: PixelInput):
        self.size = int(info.image_size)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torchvision.transforms.functional as TF

        from sidbench.data.pil_decode import pil_convert_rgb

        img = TF.resize(pil_convert_rgb(item), 256, interpolation=TF.InterpolationMode.BILINEAR)
        return TF.to_tensor(TF.center_crop(img, self.size))


PROTOCOL = ProtocolSpec("cospy_resize_crop", ResizeCenterCrop,
                        "CO-SPY's test transform: shorter side to 256 (PIL bilinear), centre crop 224, [0, 1] (each "
                        "branch normalises); decoded as PIL's convert('RGB')", reads_file=True)

NOTES = (
    f"Read from detectors/progan/*.py, evaluate.py and dataSets/dataset.py at commit {COMMIT[:7]}. The semantic "
    "branch's CLIP is open_clip's ViT-L-14 with OpenAI's weights and QuickGELU, the network of Hugging Face's "
    "openai/clip-vit-large-patch14 that the official code loads (get_image_features = ln_post(CLS) @ proj). "
    "CLIP runs inside this detector's pixel pass, not the shared backbone pass: CO-SPY reads it on its own "
    "Resize(256)+CenterCrop(224) crop, which no other CLIP detector's protocol produces. Runs in fp32. "
    "Only the progan variant is implemented; the sd-v1_4 variant (SigLIP-SO400M-384 + an SD v1.4 VAE "
    "reconstruction residual) is not yet. Training (train.py's three stages) is not implemented.")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="cospy.progan",
        factory=CoSpy,
        preprocess="cospy_resize_crop",
        pixels=PixelInput(image_size=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), protocols=(PROTOCOL,)),
        default=True,
        needs_fit=True,
        quickstart=False,
        options=OPTIONS,
        description="CO-SPY (CLIP ViT-L/14 semantic probe + NPR-style artifact CNN, fused), trained on ProGAN; "
                    "official: cospy.progan@official (progan.zip: three weight files)",
        training_data=("progan",),
        official_weights=OfficialWeights(
            url=HF + "progan.zip", filename="progan.zip", repository=REPOSITORY,
            note="Hugging Face ruojiruoli/Co-Spy-Pretrained-Weights (pretrained/download.sh); a zip of "
                 "semantic_weights.pth, artifact_weights.pth and fusion_weights.pth; no checksum published"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={"AIGCDetectBenchmark (trained on ProGAN), mean AP / acc": "95.21 / 90.58 (README, re-run of "
                   "the released weights; paper Table 8)"},
        notes=NOTES,
    )]
