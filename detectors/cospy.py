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

Longer than most detectors because it is one family with two published variants (progan and sd-v1_4) that share
the release loader, the trained heads and the test protocol (plugins never import each other); the ResNet
stages come from :mod:`sidbench.nets.resnet`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Detector, DetectorSpec, ImageInput,
                          OfficialWeights, PixelInput, ProtocolSpec, SidbenchError, WeightsError, hookimpl, note)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Cheng et al., CO-SPY: Combining Semantic and Pixel Features to Detect Synthetic Images by AI, CVPR 2025 "
         "(arXiv 2503.18286)")
LICENSE = "MIT (Megum1/CO-SPY LICENSE; the CLIP ViT-L/14 weights are OpenAI's, MIT)"
REPOSITORY = "https://github.com/Megum1/CO-SPY"
COMMIT = "310d048387edaf11f236ed1c7180d0e1e823250f"
HF = "https://huggingface.co/ruojiruoli/Co-Spy-Pretrained-Weights/resolve/main/"
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
        state.update({f"art.{k}": v for k, v in self.artifact_state(_tensors(parts[FILES[1]])).items()})
        state.update({f"fusion.{k}": v for k, v in _tensors(parts[FILES[2]]).items()})
        _load_strict(self.head, state, f"{path} does not fit detector {self.name!r}")
        self.fitted, self.weights_path = True, str(path)
        return self.to(self.device).eval()

    def artifact_state(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """The artifact file's tensors that ``head.art`` holds (all of them for the progan variant)."""
        return state

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: CO-SPY's three-stage training (train.py) is not implemented in sidbench; "
                            f"attach the release: --detectors {self.name}@official (or @progan.zip)")


def _load_strict(module: "torch.nn.Module", state: dict[str, "torch.Tensor"], what: str) -> None:
    """``module.load_state_dict(state)`` (strict); a mismatch is a one-line :class:`WeightsError`, ``what`` then the
    first tensors torch names."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise WeightsError(f"{what}: {'; '.join(lines[1:4]) or lines[0]}") from None


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

    from sidbench.nets.resnet import bottleneck_stage

    enc = nn.Module()
    enc.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    enc.bn1 = nn.BatchNorm2d(64)
    enc.layer1 = bottleneck_stage(64, 64, 3, stride=1)
    enc.layer2 = bottleneck_stage(256, 128, 4, stride=2)
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


# -- the sd-v1_4 variant: SigLIP-SO400M-384 and an SD v1.4 VAE reconstruction residual -------------------------
SD_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
              act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
TINY_VAE = dict(SD_VAE, down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, sample_size=32)
VAE_PREFIX = "artifact_encoder.vae."


class CoSpySD(CoSpy):
    """The ``sd-v1_4`` CO-SPY (trained on DRCT-2M): SigLIP-SO400M-14-384 semantic probe, and a truncated ResNet on
    ``(x - VAE(x)) / 7 * 100`` at 224 px; fused like the progan variant. The SD v1.4 VAE comes from the release's
    ``artifact_weights.pth`` when it holds it (``artifact_encoder.vae.*``), else from diffusers' cache."""

    def __init__(self, spec: DetectorSpec, backbone: Any, /, **options: Any):
        Detector.__init__(self, spec, backbone, **options)
        self.clip = build_siglip(self.options["clip"])
        self.head = build_head(1152 if self.options["clip"] != "tiny" else 32)
        del self.head.art.artifact_encoder.fc1  # this variant's encoder has no fc1
        self.vae, self.vae_loaded = build_vae(self.options["vae"])

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"clip": self.clip, "head": self.head, "vae": self.vae}

    def artifact_state(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        vae = {k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
        if vae:
            _load_strict(self.vae, vae, f"the VAE in artifact_weights.pth does not fit {self.name!r}")
        elif not self.vae_loaded:
            raise WeightsError(f"{self.name}: artifact_weights.pth holds no VAE and the SD v1.4 VAE is not in "
                               "diffusers' cache (CompVis/stable-diffusion-v1-4, subfolder vae); fetch it once online")
        return {k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)}

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return forward_sd(self.clip, self.vae, self.head, features["pixels"])


def build_siglip(kind: str) -> "torch.nn.Module":
    """open_clip's ViT-SO400M-14-SigLIP-384 image tower (webli weights from its cache), or a tiny random twin."""
    import open_clip
    import timm
    import torch

    if kind == "tiny":
        state = torch.random.get_rng_state()
        torch.manual_seed(0)
        try:
            return timm.create_model("vit_so400m_patch14_siglip_384", pretrained=False, num_classes=0,
                                     global_pool="map", embed_dim=32, depth=2, num_heads=2).eval().requires_grad_(False)
        finally:
            torch.random.set_rng_state(state)
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    try:
        path = download_pretrained(get_pretrained_cfg("ViT-SO400M-14-SigLIP-384", "webli"))
        model = open_clip.create_model("ViT-SO400M-14-SigLIP-384", pretrained=path)
    except Exception as exc:  # noqa: BLE001 - hub and file errors come in many types
        raise WeightsError(f"cospy.sd14: SigLIP ViT-SO400M-14-SigLIP-384:webli weights could not be loaded "
                           f"({type(exc).__name__}); run once where the network is reachable so open_clip caches them") from None
    return model.visual.eval().requires_grad_(False)


def build_vae(kind: str) -> tuple["torch.nn.Module", bool]:
    """diffusers' AutoencoderKL with SD v1.4's configuration and whether its weights are loaded (from diffusers'
    cache; else the release must bring them), or a tiny random one (2 blocks of 8 and 16 channels) for tests."""
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise SidbenchError("cospy.sd14 needs diffusers for the SD v1.4 VAE: pip install 'sidbench[cospy]'") from None
    if kind not in ("tiny", "sd-v1-4"):
        raise SidbenchError(f"cospy.sd14: vae must be 'sd-v1-4' or 'tiny', got {kind!r}")
    if kind == "tiny":
        return AutoencoderKL(**TINY_VAE).eval().requires_grad_(False), False
    try:
        vae = AutoencoderKL.from_pretrained("CompVis/stable-diffusion-v1-4", subfolder="vae")
        return vae.eval().requires_grad_(False), True
    except Exception:  # noqa: BLE001 - not cached: the release's artifact file may carry it
        return AutoencoderKL(**SD_VAE).eval().requires_grad_(False), False


def forward_sd(clip: "torch.nn.Module", vae: "torch.nn.Module", head: "torch.nn.Module", x: "torch.Tensor") -> "torch.Tensor":
    """Logits [B] of the sd-v1_4 ``CoSpyFusionDetector.forward`` on [0, 1] crops [B, 3, 384, 384]."""
    import torch
    import torch.nn.functional as F
    import torchvision.transforms.functional as TF

    sem = head.sem.fc(clip(_normalise(x, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))))
    a = TF.resize(x, 224, antialias=False)  # art_transform: Resize(224, antialias=False); mean 0, std 1
    recon = vae.decode(vae.encode(a).latent_dist.mean).sample
    enc = head.art.artifact_encoder
    h = F.max_pool2d(F.relu(enc.bn1(enc.conv1((a - recon) / 7.0 * 100.0))), 3, 2, 1)
    art = head.art.fc(enc.layer2(enc.layer1(h)).mean(dim=(2, 3)))
    return head.fusion.fc(torch.cat([sem, art], dim=1)).squeeze(1)


# -- the protocols ---------------------------------------------------------------------------------------------
class ResizeCenterCrop:
    """CO-SPY's test transform without normalisation: ``Resize(load)`` on the PIL image (torchvision, bilinear),
    ``CenterCrop(size)``, ``ToTensor`` -> [3, size, size] in [0, 1] (progan: 256 / 224; sd-v1_4: 384 / 384)."""

    def __init__(self, info: PixelInput):
        self.size = int(info.image_size)
        self.load = 256 if self.size == 224 else self.size

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torchvision.transforms.functional as TF

        from sidbench.data.pil_decode import pil_convert_rgb

        img = TF.resize(pil_convert_rgb(item), self.load, interpolation=TF.InterpolationMode.BILINEAR)
        return TF.to_tensor(TF.center_crop(img, self.size))


PROTOCOL = ProtocolSpec("cospy_resize_crop", ResizeCenterCrop,
                        "CO-SPY's test transform: shorter side to 256 (PIL bilinear), centre crop 224 (sd-v1_4: 384 "
                        "and 384), [0, 1] (each branch normalises); decoded as PIL's convert('RGB')", reads_file=True)

NOTES = (
    f"Read from detectors/progan/*.py, evaluate.py and dataSets/dataset.py at commit {COMMIT[:7]}. The semantic "
    "branch's CLIP is open_clip's ViT-L-14 with OpenAI's weights and QuickGELU, the network of Hugging Face's "
    "openai/clip-vit-large-patch14 that the official code loads (get_image_features = ln_post(CLS) @ proj). "
    "CLIP runs inside this detector's pixel pass, not the shared backbone pass: CO-SPY reads it on its own "
    "Resize(256)+CenterCrop(224) crop (PIL bilinear), which no other CLIP detector's protocol produces (UnivFD "
    "and RINE read the native-resolution 224 centre crop), and a pixel detector cannot read the shared backbone "
    "pass yet. Runs in fp32. The sd-v1_4 variant is cospy.sd14. Training (train.py's three stages) is not "
    "implemented.")


SD_NOTES = (
    f"Read from detectors/sd-v1_4/*.py at commit {COMMIT[:7]}. Semantic branch: open_clip's "
    "ViT-SO400M-14-SigLIP-384 (webli) encode_image, unnormalised, on the 384-px crop normalised with mean = std = "
    "0.5. Artifact branch: the crop resized to 224 (tensor bilinear, antialias=False, as art_transform), SD v1.4's "
    "VAE (diffusers AutoencoderKL) encode -> latent mean -> decode, the residual x - recon scaled by 100/7 into "
    "the truncated ResNet (conv1 3x3/2, layer1, layer2, average pool, no 2/3 factor). The VAE is read from "
    "artifact_weights.pth when the release holds it (its save_weights stores the whole state dict), else from "
    "diffusers' cache of CompVis/stable-diffusion-v1-4. Needs the optional extra sidbench[cospy] (diffusers). "
    "Runs in fp32. Training is not implemented.")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="cospy.sd14",
        factory=CoSpySD,
        preprocess="cospy_resize_crop",
        pixels=PixelInput(image_size=384, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), protocols=(PROTOCOL,),
                          max_batch_pixels=16 * 384 * 384),
        needs_fit=True,
        quickstart=False,
        options={"clip": "SigLIP-SO400M-384", "vae": "sd-v1-4"},
        description="CO-SPY (SigLIP-SO400M-384 semantic probe + SD v1.4 VAE reconstruction residual CNN, fused), "
                    "trained on DRCT-2M (SD v1.4); official: cospy.sd14@official (sd-v1_4.zip); needs sidbench[cospy]",
        training_data=("stable-diffusion-1.4 (DRCT-2M)",),
        official_weights=OfficialWeights(
            url=HF + "sd-v1_4.zip", filename="sd-v1_4.zip", repository=REPOSITORY,
            note="Hugging Face ruojiruoli/Co-Spy-Pretrained-Weights (pretrained/download.sh); a zip of "
                 "semantic_weights.pth, artifact_weights.pth and fusion_weights.pth; no checksum published"),
        paper=PAPER,
        license=LICENSE.replace("CLIP ViT-L/14 weights are OpenAI's, MIT", "SigLIP weights are Google's, Apache-2.0; "
                                "the SD v1.4 VAE is under the CreativeML OpenRAIL-M licence"),
        repository=REPOSITORY,
        published={"Co-Spy-Bench (trained on DRCT-2M SD v1.4), MSCOCO captions, mean AP / acc over generators":
                   "99.40 / 92.24 (README, re-run of the released weights; paper Table 2)"},
        notes=SD_NOTES,
    ), DetectorSpec(
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
