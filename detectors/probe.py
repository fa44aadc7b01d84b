"""A linear probe on any frozen backbone's final feature (the AI-GenBench protocol for foundation backbones).

Pellegrini et al., "AI-GenBench: A New Ongoing Benchmark for AI-Generated Image Detection" (2025, arXiv)
evaluates frozen DINOv2, CLIP and RN50-CLIP features with a linear head. ``probe[backbone=NAME]`` reads the
``feature`` (default ``image_embed``: every backbone emits it; ``cls_final`` or ``pooled`` where the backbone
has them) of backbone NAME (``dinov2-l``, ``dinov2-l-reg``, ``siglip-so400m``, ``convnext-xxl``,
``ViT-L-14:openai``, ...), and fits an L2-regularised logistic regression (scikit-learn, lbfgs) on the training
features, standardised with the training mean and deviation, which are folded into the saved linear layer.
Several probes on one backbone share its pass; probes on different backbones run in the same leaderboard.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.api import Detector, DetectorSpec, SidbenchError, hookimpl, note

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

FEATURES = ("image_embed", "cls_final", "pooled")
PAPER = ("Pellegrini et al., AI-GenBench: A New Ongoing Benchmark for AI-Generated Image Detection, 2025 (arXiv), "
         "linear-probe protocol")


class Probe(Detector):
    """``Linear(D, 1)`` on one named backbone feature; fitted by logistic regression, saved as safetensors."""

    def __init__(self, spec: DetectorSpec, backbone: Any, /, **options: Any):
        super().__init__(spec, backbone, **options)
        import torch

        feature = self.options["feature"]
        if feature not in FEATURES:
            raise SidbenchError(f"{spec.name}: feature must be one of {', '.join(FEATURES)}, got {feature!r}")
        try:
            dim = backbone.feature_shape(feature)[-1]
        except KeyError:
            raise SidbenchError(f"{spec.name}: backbone {backbone.name!r} has no feature {feature!r}; use "
                                "feature=image_embed (every backbone emits it)") from None
        self.fc = torch.nn.Linear(dim, 1)

    @property
    def required_features(self) -> tuple[str, ...]:
        return (self.options["feature"],)

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"fc": self.fc}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        """A checkpoint fitted on another backbone brings it (``options_from_checkpoint``): size the head to it."""
        import torch

        shape = self.checkpoint_shapes.get("fc.weight")
        if "backbone" in self.options_from_checkpoint and shape and tuple(shape) != tuple(self.fc.weight.shape):
            self.fc = torch.nn.Linear(int(shape[1]), 1)

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        x = features[self.options["feature"]].to(self.fc.weight.dtype)
        return self.fc(x).squeeze(-1)

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """Logistic regression with inverse regularisation ``C`` on standardised features; the scaling is folded
        into the linear layer, so the saved head reads raw features."""
        import numpy as np
        import torch
        from sklearn.linear_model import LogisticRegression

        name = self.options["feature"]
        train = data.features("train", (name,))
        x, y = train.features[name].double().cpu().numpy(), train.labels.cpu().numpy()
        if len(set(y.tolist())) < 2:
            raise SidbenchError(f"{self.name}: the training data hold one class only; a probe needs real and fake images")
        mean, std = x.mean(0), x.std(0) + 1e-6
        z = (x - mean) / std
        clf = LogisticRegression(C=float(self.options["C"]), max_iter=int(self.options["max_iter"]))
        clf.fit(z, y)
        w = clf.coef_[0] / std
        b = clf.intercept_[0] - float(np.dot(w, mean))
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(w).float()[None])
            self.fc.bias.fill_(float(b))
        summary: dict[str, Any] = {"n_train": len(y), "train_acc": round(float(clf.score(z, y)), 4)}
        if data.has_val:
            val = data.features("val", (name,))
            with torch.no_grad():
                pred = self.score({name: val.features[name].to(self.device)}).cpu() > 0
            summary["val_acc"] = round(float((pred.float() == val.labels.cpu()).float().mean()), 4)
        log(f"{self.name}: {summary}")
        self.eval()
        return summary


OPTIONS = {"backbone": None, "feature": "image_embed", "C": 1.0, "max_iter": 1000}
OPTION_TYPES = {"backbone": (str, type(None)), "C": (float, int)}


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    return [DetectorSpec(
        name="probe.linear",
        factory=Probe,
        features=("image_embed",),
        backbone="dinov2-l",
        preprocess="center_crop",
        needs_fit=True,
        default=True,
        quickstart=False,
        options=OPTIONS,
        option_types=OPTION_TYPES,
        description="linear probe (logistic regression) on a frozen backbone's final feature; "
                    "probe[backbone=NAME] (dinov2-l by default; siglip-so400m, convnext-xxl, ViT-L-14:openai, ...)",
        paper=PAPER,
        license="sidbench's own head (the backbone's weights keep their own licence: DINOv2 Apache-2.0, SigLIP "
                "Apache-2.0, LAION ConvNeXt MIT, OpenAI CLIP MIT)",
        repository="",  # no official code read for this head: it is sidbench's own
        published={"AI-GenBench": "see the paper's linear-probe tables (not reproduced here: the split differs)"},
        notes="A head fitted by sidbench (`sidbench train probe --data T` or `--train T` in a run); no official "
              "weights; no AI-GenBench code was read (the protocol is the paper's description). The backbone's center crop at its own resolution (224 px; ConvNeXt-XXL 256 px) and "
              "normalisation. Logistic regression (lbfgs, C=1, standardised features) instead of AI-GenBench's "
              "SGD-trained head: the same decision-function family, fitted to convergence.",
    )]
