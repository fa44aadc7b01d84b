"""FatFormer: CLIP ViT-L/14 with forgery-aware (image + wavelet) adapters and language-guided alignment.

Liu, Tan, Tan, Wei, Wang & Zhao, "Forgery-aware Adaptive Transformer for Generalizable Synthetic Image
Detection", CVPR 2024 (Michel-liu/FatFormer; Apache-2.0). The network is :mod:`sidbench.nets.fatformer` (the
official ``CLIPModel`` with ``--num_vit_adapter 3 --num_context_embedding 8``, the README's test command). The
test view of ``utils/dataset.py`` (``test``): ImageFolder's ``Image.open(f).convert('RGB')``, torchvision
``Resize((256, 256))`` (bilinear, both sides, aspect ratio not kept), ``CenterCrop(224)``, ``ToTensor``,
ImageNet mean/std; fp32 (``clip.load(device='cpu')`` turns the model to fp32 before it moves to the GPU).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import (DetectorSpec, ImageInput, NetworkDetector, OfficialWeights, PixelInput, ProtocolSpec,
                          SidbenchError, WeightsError, hookimpl, note, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Liu et al., Forgery-aware Adaptive Transformer for Generalizable Synthetic Image Detection, CVPR 2024 "
         "(arXiv 2312.16649)")
LICENSE = "Apache-2.0 (Michel-liu/FatFormer LICENSE; the checkpoint is released with the code)"
REPOSITORY = "https://github.com/Michel-liu/FatFormer"
WEIGHTS = "https://drive.google.com/file/d/1Q_Kgq4ygDf8XEHgAf-SgDN6Ru_IOTLkj/view?usp=sharing"
FAKE, REAL = 1, 0  # ImageFolder's 0_real / 1_fake; main.py reads softmax(dim=1)[:, 1]
RESIZE, CROP = 256, 224
# CLIPModel registers these modules under two names each (state_dict holds both; a deduplicating tool keeps one)
TWINS = (("image_encoder.", "clip_model.visual."), ("text_encoder.transformer.", "clip_model.transformer."),
         ("text_encoder.positional_embedding", "clip_model.positional_embedding"),
         ("text_encoder.text_projection", "clip_model.text_projection"), ("text_encoder.ln_final.", "clip_model.ln_final."),
         ("logit_scale", "clip_model.logit_scale"))
# shape the network (tests use tiny ones); defaults: CLIP ViT-L/14 and the README's test command
OPTIONS = {"vision_width": 1024, "vision_layers": 24, "vision_heads": 16, "text_width": 768, "text_layers": 12,
           "text_heads": 12, "vocab_size": 49408, "num_vit_adapter": 3, "num_context": 8, "adapter_heads": 8,
           "dwt_groups": 128, "lga_heads": 12}


class FatFormer(NetworkDetector):
    """FatFormer's ``CLIPModel`` on the 224 crop; logit = z[fake] - z[real]. Loads the released checkpoint
    (``{'model': CLIPModel.state_dict()}``, the whole CLIP included) strictly, as ``main.py --eval`` does."""

    def build_network(self) -> "torch.nn.Module":
        from sidbench.nets.fatformer import FatFormer as Net
        from sidbench.nets.fatformer import FatFormerConfig

        o = self.options
        n, layers = int(o["num_vit_adapter"]), int(o["vision_layers"])
        if n < 0 or (n and layers % n):
            raise SidbenchError(f"{self.name}: num_vit_adapter must divide vision_layers ({o['vision_layers']}), "
                                f"got {o['num_vit_adapter']!r}")
        return Net(FatFormerConfig(**{k: int(v) for k, v in o.items() if k in OPTIONS}))

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """The released file as it is; a copy that kept one name of each shared module gets the other filled in;
        a file without the CLIP weights (which the official eval also needs from it) is refused in one line."""
        state = dict(strip_prefix(state))
        if state and not any(k.startswith(("clip_model.visual.", "image_encoder.")) for k in state):
            raise WeightsError(f"{self.name}: the checkpoint holds {len(state)} tensors but not the CLIP ViT-L/14 "
                               "weights (clip_model.visual.*) that FatFormer's main.py --eval loads from the same file "
                               "strictly; attach the released fatformer_4class_ckpt.pth (fatformer@official)")
        for a, b in TWINS:
            for src, dst in ((a, b), (b, a)):
                for k in [k for k in state if k.startswith(src)]:
                    state.setdefault(dst + k[len(src):], state[k])
        return super().convert_checkpoint(state)

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        x = features["pixels"]
        if tuple(x.shape[-2:]) != (CROP, CROP):
            raise SidbenchError(f"{self.name} needs {CROP}x{CROP} inputs (got {x.shape[-2]}x{x.shape[-1]} under "
                                f"protocol {self.preprocess!r}); use its own protocol fatformer_resize_crop")
        z = self.net(x.float())
        return z[:, FAKE] - z[:, REAL]

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        raise SidbenchError(f"{self.name}: FatFormer's repository publishes inference code only; attach the released "
                            f"checkpoint: --detectors {self.name}@official (or @fatformer_4class_ckpt.pth)")


class ResizeCrop:
    """FatFormer's test view: plain-PIL decode, Resize((256, 256)) bilinear, CenterCrop(224), ImageNet norm."""

    def __init__(self, info: PixelInput):
        self.mean, self.std = tuple(info.mean), tuple(info.std)

    def __call__(self, item: ImageInput) -> "torch.Tensor":
        import torchvision.transforms.functional as TF
        from torchvision.transforms import InterpolationMode

        from sidbench.data.pil_decode import pil_convert_rgb

        img = TF.resize(pil_convert_rgb(item), [RESIZE, RESIZE], interpolation=InterpolationMode.BILINEAR)
        return TF.normalize(TF.to_tensor(TF.center_crop(img, [CROP, CROP])), self.mean, self.std)


PROTOCOL = ProtocolSpec(
    "fatformer_resize_crop", ResizeCrop,
    "FatFormer's test transform: both sides resized to 256 (bilinear, PIL), centre crop 224, ImageNet mean/std; "
    "decoded as PIL's convert('RGB') (no EXIF rotation)", reads_file=True)

NOTES = (
    "Read from models/clip_models.py, models/clip/model.py, models/clip/clip.py, utils/dataset.py and main.py at "
    "commit febc24c. The official eval loads checkpoint['model'] strictly into the whole CLIPModel, so the released "
    "file carries the CLIP ViT-L/14 weights too (nothing is fetched from OpenAI or open_clip); the duplicate entries "
    "CLIPModel's state dict holds (clip_model.visual = image_encoder, clip_model.transformer = "
    "text_encoder.transformer, logit_scale) load into shared modules (a copy that kept one name of each loads too; "
    "a file without the CLIP weights is refused in one line). The Haar DWT of pytorch_wavelets (an extra "
    "dependency of the official code) is written here in plain torch from its filter buffers (checked equal to "
    "pytorch_wavelets and to PyWavelets' dwt2/idwt2 on even grids). Logit = z[fake] - z[real] of the two outputs "
    "(index 1 = fake, ImageFolder's 1_fake). The official loop scores batches of 32; sidbench's batch size does not "
    "change a logit. fp32 as the official code runs. The README names no file: fatformer_4class_ckpt.pth is the name "
    "the Drive file is commonly saved under (the 4-class ProGAN model of the README's tables); no checksum is "
    "published.")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="fatformer",
        factory=FatFormer,
        preprocess="fatformer_resize_crop",
        pixels=PixelInput(image_size=CROP, protocols=(PROTOCOL,)),
        default=True,
        needs_fit=True,  # scores only with weights attached (fit explains why it does not train)
        quickstart=False,  # the weights cannot be fetched offline
        options=OPTIONS,
        description="FatFormer (CLIP ViT-L/14 + forgery-aware image/wavelet adapters + language-guided alignment), "
                    "ProGAN 4-class; 256 resize + 224 centre crop; official: fatformer@official (Apache-2.0)",
        training_data=("progan (car, cat, chair, horse)",),
        official_weights=OfficialWeights(
            url=WEIGHTS, filename="fatformer_4class_ckpt.pth", repository=REPOSITORY,
            note="the README's Model Zoo Google Drive link (also Baidu and OneDrive); no checksum or revision "
                 "published"),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        published={
            "GANs (8 CNNDetection sets), mean acc / AP": "98.4 / 99.7 (README, 4-class)",
            "DMs (10 DIRE/UFD sets), mean acc / AP": "95.0 / 98.8 (README, 4-class)",
            "ProGAN acc / AP": "99.9 / 100.0",
            "Guided acc / AP": "76.1 / 92.0",
        },
        notes=NOTES,
    )]
