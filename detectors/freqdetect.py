"""FreqDetect: a ResNet-50 on the log-magnitude DCT spectrum of the image, as SIDBench and AIGCDetectBenchmark run it.

Frank et al., "Leveraging Frequency Analysis for Deep Fake Image Recognition", ICML 2020 (RUB-SysSec/GANDCTAnalysis,
TensorFlow). The suites' PyTorch version (SIDBench ``FreqDetect``, AIGCDetectBenchmark ``FreDect``): centre crop
224 of the image as uint8, a 2-D type-II orthonormal DCT per channel (``scipy.fftpack.dct`` along rows, then
columns), ``log(|.| + 1e-12)``, standardised with the per-coefficient mean and variance of the training set
(``dct_mean`` / ``dct_var``, [3, 224, 224] float64 tensors) and fed, without ImageNet normalisation, to a
torchvision ResNet-50 with ``fc = Linear(2048, 1)``. The checkpoint ``DCTAnalysis.pth`` is ``{'netC': sd}``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidbench.api import (DetectorSpec, NetworkDetector, OfficialWeights, PixelInput, ProtocolSpec,
                          WeightsError, hookimpl, strip_prefix)

if TYPE_CHECKING:
    import torch

    from sidbench.api import ImageInput

PAPER = "Frank et al., Leveraging Frequency Analysis for Deep Fake Image Recognition, ICML 2020 (arXiv 2003.08685)"
LICENSE = ("GANDCTAnalysis: no licence file; the PyTorch ResNet-50 checkpoint is AIGCDetectBenchmark's, re-hosted by "
           "SIDBench (Apache-2.0 code)")
REPOSITORY = "https://github.com/RUB-SysSec/GANDCTAnalysis"
HF = "https://huggingface.co/dkarageo/sidbench/resolve/main/"
AIGC_RAW = "https://github.com/Ekko-zn/AIGCDetectBenchmark/raw/main/weights/auxiliary/"
STATS_HINT = (f"give the training-set DCT statistics: freqdetect[dct_mean=PATH,dct_var=PATH] ({HF}freqdetect/dct_mean.zip "
              f"and dct_var.zip, or {AIGC_RAW}dct_mean and dct_var, git blobs 07534168 and 66be0521)")


class DctLogSpectrum:
    """The suites' ``dct2_wrapper`` before its standardisation: [3, S, S] float32 ``log(|DCT2(crop)| + 1e-12)`` of the
    uint8 crop (centre crop S, zero-padded below; with ``resize``, shorter side to ``resize`` first)."""

    def __init__(self, info: Any, resize: int | None = None):
        self.size, self.resize = int(info.image_size), resize

    def __call__(self, item: "ImageInput") -> "torch.Tensor":
        import numpy as np
        import torch
        import torchvision.transforms.functional as TF
        from scipy import fftpack

        img = item.image
        if self.resize is not None:
            img = TF.resize(img, self.resize)  # transforms.Resize(loadSize): shorter side, bilinear
        a = np.asarray(TF.center_crop(img, [self.size, self.size]))
        a = fftpack.dct(fftpack.dct(a, type=2, norm="ortho", axis=0), type=2, norm="ortho", axis=1)
        return torch.from_numpy(np.log(np.abs(a) + 1e-12)).permute(2, 0, 1).float()


class DctAigc(DctLogSpectrum):
    def __init__(self, info: Any):
        super().__init__(info, resize=256)


class FreqDetect(NetworkDetector):
    """ResNet-50 on the standardised DCT log-spectrum; the statistics are buffers of the network (``net.dct_mean``,
    ``net.dct_var``), filled from the ``dct_mean``/``dct_var`` files with an official checkpoint and saved with it."""

    def build_network(self) -> "torch.nn.Module":
        import torch
        import torchvision

        net = torchvision.models.resnet50(weights=None, num_classes=1)
        s = int(self.pixel_input.image_size)
        net.register_buffer("dct_mean", torch.zeros(3, s, s, dtype=torch.float64))
        net.register_buffer("dct_var", torch.ones(3, s, s, dtype=torch.float64))
        return net

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        state = {f"net.{k}": v for k, v in strip_prefix(state).items()}
        if "net.dct_mean" not in state:
            for key in ("dct_mean", "dct_var"):
                if not self.options.get(key):
                    raise WeightsError(f"{self.name}: the checkpoint holds no DCT statistics; {STATS_HINT}")
                state[f"net.{key}"] = load_statistic(self.options[key], key)
        return state

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        self.require_weights("DCTAnalysis.pth")
        import torch

        x = features["pixels"]
        net = self.net
        z = (x.double() - net.dct_mean) / torch.sqrt(net.dct_var)  # float64, as the numpy code computes it
        return net(z.to(x.dtype)).squeeze(1)


def load_statistic(path: str, name: str) -> "torch.Tensor":
    """A [3, H, W] tensor saved with ``torch.save`` (SIDBench's ``dct_mean.zip``, AIGCDetectBenchmark's
    ``dct_mean``), read with ``weights_only=True``; or a one-tensor safetensors file."""
    import torch

    from sidbench.api.checkpoints import load_tensors

    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"{name} file {p} does not exist; {STATS_HINT}")
    if p.suffix.lower() == ".safetensors":
        tensors = list(load_tensors(p)[0].values())
        obj = tensors[0] if len(tensors) == 1 else None
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an unsafe pickle or a damaged file: one line either way
            out = p.with_suffix(".tensor.pth")
            raise WeightsError(
                f"{p}: refused, not a tensor file readable with weights_only=True ({type(exc).__name__}); if you trust "
                f"its source, convert it once: python -c \"import torch; t = torch.load('{p}', weights_only=False); "
                f"torch.save(torch.as_tensor(t), '{out}')\" and use {out}") from None
    if not isinstance(obj, torch.Tensor) or obj.dim() != 3 or obj.shape[0] != 3:
        raise WeightsError(f"{p}: expected one [3, H, W] tensor of DCT statistics ({name}); {STATS_HINT}")
    return obj.double()


PROTOCOLS = (
    ProtocolSpec("dct_center_crop", DctLogSpectrum,
                 "SIDBench test.py: centre crop (no resize), log |DCT-II| of the uint8 crop"),
    ProtocolSpec("dct_resize_center_crop", DctAigc,
                 "AIGCDetectBenchmark processing_DCT: shorter side to 256 (bilinear), centre crop, log |DCT-II|"),
)


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="freqdetect.progan",
        factory=FreqDetect,
        preprocess="dct_center_crop",
        pixels=PixelInput(image_size=224, protocols=PROTOCOLS),
        default=True,
        quickstart=False,
        description="FreqDetect (ResNet-50 on the DCT log-spectrum), ProGAN-trained, as SIDBench runs it; "
                    "official: freqdetect[dct_mean=dct_mean.zip,dct_var=dct_var.zip]@DCTAnalysis.pth",
        options={"dct_mean": "", "dct_var": ""},
        training_data=("progan",),
        paper=PAPER,
        license=LICENSE,
        repository=REPOSITORY,
        official_weights=OfficialWeights(
            url=HF + "freqdetect/DCTAnalysis.pth", filename="DCTAnalysis.pth",
            repository="https://huggingface.co/dkarageo/sidbench",
            note="SIDBench's weight bundle (a ResNet-50 the suites trained on ProGAN; the authors' own models are "
                 "TensorFlow); Hugging Face revision not pinned yet, no checksum published; the statistics "
                 "dct_mean.zip / dct_var.zip sit beside it and are given as options"),
        published={"SIDBench (Schinas & Papadopoulos, MMM 2024), FreqDetect rows": "not transcribed here (no verified "
                   "copy offline); read them in the paper's tables",
                   "AIGCDetectBenchmark FreDect rows (16 test sets)": "on its project page (fdmas.github.io/AIGCDetect)"},
        notes="Written from SIDBench dataset/process.py (freq_processing, dct2_wrapper) and models/FreqDetect.py, and "
              "AIGCDetectBenchmark data/process.py (processing_DCT, which always resizes the shorter side to 256 "
              "first: --protocol dct_resize_center_crop). The log-spectrum is computed in float64 as numpy does and "
              "handed over as float32; the standardisation runs in float64 inside the detector, with the statistics "
              "kept as network buffers (saved with a sidbench checkpoint, so later loads need no options).",
    )]
