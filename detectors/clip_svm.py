"""CLIP + linear SVM: scikit-learn's SVM on the L2-normalised CLS token after CLIP's final LayerNorm.

Cozzolino et al., "Raising the Bar of AI-generated Image Detection with CLIP", CVPRW 2024
(grip-unina/ClipBased-SyntheticImageDetection). The score is the SVM's signed distance
(``decision_function``, > 0 = fake). The fitted SVM is stored as plain tensors (coefficients,
intercepts) in the safetensors checkpoint: no pickle.

Binary mode uses ``LinearSVC`` (liblinear): it scales linearly in the number of images, so the
same code fits a handful or thousands of shots per class. ``attribution=True`` fits a one-vs-one
``SVC(kernel="linear")`` over generator labels ("real" for reals); the binary score is then the
largest signed distance, over fake generators g, of the g-vs-real SVM (positive = g).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from sidbench.api import DataError, Detector, DetectorSpec, OfficialWeights, WeightsError, hookimpl, note, strip_prefix

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sidbench.api import FitData, Record

SVM_PAPER = "Cozzolino et al., Raising the Bar of AI-generated Image Detection with CLIP, CVPRW 2024"
REAL = "real"


def class_of(rec: "Record") -> str:
    """The attribution label: "real", or the generator that made a fake."""
    return REAL if rec.label == 0 else (rec.generator or rec.split or "fake")


def ovo_pairs(n: int) -> list[tuple[int, int]]:
    """scikit-learn's one-vs-one pair order; a positive decision of pair (i, j) votes for class i."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


class ClipSVM(Detector):
    """A linear SVM on normalised ``cls_final``; scores are signed distances to the hyperplane."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        import torch

        self.classes: list[str] = [REAL, "fake"]
        self.C: float = float(self.options["C"])
        self.confusion_rows, self.confusion_split = list(self.classes), "val"
        self._svm = torch.nn.Module()
        self._allocate(1 if not self.options["attribution"] else 0)

    def _allocate(self, pairs: int) -> None:
        import torch

        width, n = self.backbone_info.width, len(self.classes)
        self._svm.register_buffer("coef", torch.zeros(pairs, width))
        self._svm.register_buffer("intercept", torch.zeros(pairs))
        if self.options["attribution"]:
            self._svm.register_buffer("confusion", torch.zeros(0, n, dtype=torch.long))

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"svm": self._svm}

    # -- scoring -------------------------------------------------------------------
    def decision(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """The SVM's decision_function: [B] (binary) or [B, pairs] (one-vs-one)."""
        import torch.nn.functional as F

        x = F.normalize(features["cls_final"].float(), dim=-1)
        d = x @ self._svm.coef.t() + self._svm.intercept
        return d[:, 0] if not self.options["attribution"] else d

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        d = self.decision(features)
        if not self.options["attribution"]:
            return d
        return (d @ self._fake_vs_real().to(d)).max(dim=1).values

    def _fake_vs_real(self) -> "torch.Tensor":
        """[pairs, fakes]: picks each fake-vs-real pair, signed so that positive = that fake generator."""
        import torch

        r = self.classes.index(REAL)
        fakes = [c for c in range(len(self.classes)) if c != r]
        sel = torch.zeros(len(ovo_pairs(len(self.classes))), len(fakes))
        for k, (i, j) in enumerate(ovo_pairs(len(self.classes))):
            if r in (i, j):
                g = j if i == r else i
                sel[k, fakes.index(g)] = 1.0 if g == i else -1.0
        return sel

    # -- fitting -------------------------------------------------------------------
    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """Fit on (a seeded few-shot subsample of) the training split; pick C on validation if asked."""
        from sidbench.api import few_shot

        o, attribution = self.options, self.options["attribution"]
        key = class_of if attribution else (lambda r: r.label)
        train = few_shot(data.records("train"), o["shots"], data.seed, key)
        fit_data = data.subset(train)
        x, y = self._xy(fit_data.features("train", ("cls_final",)), attribution)
        val = self._xy(data.features("val", ("cls_final",)), attribution) if data.has_val else None
        if len(set(y)) < 2:
            raise DataError(f"{self.name}: the training images hold one class only ({y[0]!r}); need real and fake")
        grid = [float(c) for c in (o["c_grid"] or [o["C"]])]
        if len(grid) > 1 and val is None:
            log(f"no validation split: C grid {grid} not searched, using C={o['C']}")
            grid = [float(o["C"])]
        best = None
        for c in grid:
            svm = self._sklearn(c, data.seed).fit(x, y)
            bacc = _balanced_accuracy(val[1], svm.predict(val[0])) if val is not None else float("nan")
            if len(grid) > 1:
                log(f"C={c:g}: validation balanced accuracy {bacc:.4f}")
            if best is None or bacc > best[0]:
                best = (bacc, c, svm)
        bacc, self.C, svm = best
        self._take(svm, val if val is not None else (x, y), "val" if val is not None else "train")
        return {"C": self.C, "n_train": len(y), "classes": len(self.classes), "val_balanced_acc": bacc}

    def _xy(self, fs, attribution: bool) -> tuple["np.ndarray", "np.ndarray"]:
        import numpy as np
        import torch.nn.functional as F

        x = F.normalize(fs.features["cls_final"].float(), dim=-1).double().numpy()
        y = np.array([class_of(r) for r in fs.records]) if attribution else np.array([r.label for r in fs.records])
        return x, y

    def _sklearn(self, c: float, seed: int):
        if self.options["attribution"]:
            from sklearn.svm import SVC

            return SVC(kernel="linear", C=c, decision_function_shape="ovo")
        from sklearn.svm import LinearSVC

        return LinearSVC(C=c, dual="auto", max_iter=self.options["max_iter"], random_state=seed)

    def _take(self, svm, eval_xy, eval_split: str) -> None:
        """Copy the fitted SVM into tensors (and, for attribution, the confusion matrix on ``eval_split``)."""
        import numpy as np
        import torch

        self.classes = [str(c) for c in svm.classes_] if self.options["attribution"] else [REAL, "fake"]
        coef, intercept = svm.coef_, svm.intercept_
        if self.options["attribution"] and len(self.classes) == 2:
            coef, intercept = -coef, -intercept  # scikit-learn's binary SVC is positive for classes_[1]; ovo for i
        self._allocate(len(intercept))
        self._svm.coef = torch.tensor(np.array(coef), dtype=torch.float32).reshape(len(intercept), -1)
        self._svm.intercept = torch.tensor(np.array(intercept), dtype=torch.float32)
        if self.options["attribution"]:
            from sklearn.metrics import confusion_matrix

            self.confusion_rows = sorted(set(self.classes) | set(eval_xy[1].tolist()))
            cm = confusion_matrix(eval_xy[1], svm.predict(eval_xy[0]), labels=self.confusion_rows)
            keep = [self.confusion_rows.index(c) for c in self.classes]  # predictions are always fitted classes
            self._svm.confusion = torch.as_tensor(cm[:, keep], dtype=torch.long)
            self.confusion_split = eval_split
        self._svm.to(self.device)

    # -- state ---------------------------------------------------------------------
    def extra_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"classes": self.classes, "C": self.C}
        if self.options["attribution"]:
            meta.update(confusion_rows=self.confusion_rows, confusion_split=self.confusion_split)
        return meta

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        self.classes = list(extra.get("classes") or self.classes)
        self.C = float(extra.get("C", self.C))
        self.confusion_rows = list(extra.get("confusion_rows") or self.classes)
        self.confusion_split = extra.get("confusion_split", "val")
        n = len(self.classes)
        self._allocate(self.metadata_size({"pairs": n * (n - 1) // 2 if self.options["attribution"] else 1},
                                          "pairs", "svm.coef"))  # the classes must match the file's SVMs
        if self.options["attribution"]:
            import torch

            self._svm.confusion = torch.zeros(len(self.confusion_rows), n, dtype=torch.long)

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """GRIP's published linear detector (``clipdet_latent10k_plus/weights.pth``): the ``fc`` ChannelLinear
        of its OpenClipLinear (``fc.weight`` [1, W], ``fc.bias`` [1], perhaps under ``module.``), applied to the
        L2-normalised pre-projection CLS token, which is this detector's binary decision function."""
        state = strip_prefix(state)
        if set(state) != {"fc.weight", "fc.bias"}:
            raise WeightsError(f"{self.name}: expected GRIP's linear detector (tensors fc.weight and fc.bias) or a "
                               f"sidbench checkpoint, found {', '.join(sorted(state)[:4]) or 'no tensors'}")
        if self.options["attribution"]:
            raise WeightsError(f"{self.name}: GRIP's published detector is binary; drop attribution=true to load it")
        weight, bias = state["fc.weight"], state["fc.bias"]
        if weight.dim() != 2 or weight.shape[0] != 1 or bias.numel() != 1:
            raise WeightsError(f"{self.name}: fc.weight {tuple(weight.shape)} / fc.bias {tuple(bias.shape)} is not one "
                               "linear output")
        return {"svm.coef": weight.float(), "svm.intercept": bias.float().reshape(1)}

    def save(self, path: str) -> str:
        """The checkpoint, plus ``<name>.confusion.csv`` next to it in attribution mode."""
        out = super().save(path)
        if self.options["attribution"]:
            self.write_confusion(Path(out).with_suffix(".confusion.csv"))
        return out

    def write_confusion(self, path: Path) -> Path:
        """Rows: true class; columns: predicted class; counts on the split named in the first cell."""
        import io

        from sidbench.api.paths import write_atomic

        text = io.StringIO()
        w = csv.writer(text)
        w.writerow([f"true \\ predicted ({self.confusion_split})", *self.classes])
        for name, row in zip(self.confusion_rows, self._svm.confusion.tolist()):
            w.writerow([name, *row])
        write_atomic(path, text.getvalue())  # generator names may be any bytes; listed in the results manifest
        return path


def _balanced_accuracy(y_true: Sequence, y_pred: Sequence) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y_true, y_pred))


# The LAION CommonPool XL ViT-L/14 of Cozzolino et al. (their ``clipL14commonpool``, GELU, fp32): the
# published backbone. ``clip_svm.openai`` shares the OpenAI pass of the other CLIP detectors instead.
COMMONPOOL = "ViT-L-14:commonpool_xl_s13b_b90k"
OPENAI = "ViT-L-14:openai"
GRIP_REPOSITORY = "https://github.com/grip-unina/ClipBased-SyntheticImageDetection"
GRIP_REVISION = "c76ef7f5e158c5aba9e55b8b94ab0079720d281e"
# the repository's default detector (main.py --models): a linear layer trained on latent-diffusion images
# ("latent10k_plus"), on CommonPool ViT-L/14's L2-normalised pre-projection CLS token (``proj = None``)
PUBLISHED = OfficialWeights(
    url=(f"https://media.githubusercontent.com/media/grip-unina/ClipBased-SyntheticImageDetection/{GRIP_REVISION}/"
         "weights/clipdet_latent10k_plus/weights.pth"),
    filename="clipdet_latent10k_plus.pth", sha256="1c9c9f48a47d975bde67e9924983aa4e4ccda96a15e7e983b6305f0c56d9ee18",
    revision=GRIP_REVISION, repository=GRIP_REPOSITORY,
    note="weights/clipdet_latent10k_plus/weights.pth (Git LFS; SHA-256 from its pointer): {'model': {fc.weight, "
         "fc.bias}} of a linear layer (arch opencliplinearnext_clipL14commonpool, Clip224 resize + crop)")


@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    common = dict(
        factory=ClipSVM,
        features=("cls_final",),
        preprocess="resize_center_crop",
        needs_fit=True,
        options={"C": 1.0, "c_grid": None, "shots": None, "attribution": False, "max_iter": 10000},
        # clip-tiny's normalised features are close together: search C on the quickstart's validation split
        quickstart_options={"c_grid": [0.1, 1.0, 10.0, 100.0, 1000.0]},
        training_data=(),
        paper=SVM_PAPER,
        license="scikit-learn (BSD-3); method: grip-unina (research)",
    )
    return [
        DetectorSpec(name="clip_svm", backbone=COMMONPOOL, default=True,
                     description="linear SVM on normalised CLIP cls_final (decision_function) of the published "
                                 "LAION CommonPool XL ViT-L/14; attribution=True: one-vs-one; clip_svm@official: "
                                 "GRIP's published linear detector clipdet_latent10k_plus",
                     official_weights=PUBLISHED, **{**common, "license": "Apache-2.0 (grip-unina/ClipBased-"
                                                    "SyntheticImageDetection: code and the clipdet weights)"}),
        DetectorSpec(name="clip_svm.openai", backbone=OPENAI,
                     description="clip_svm on OpenAI's ViT-L/14, sharing one backbone pass with the other CLIP "
                                 "detectors", **common),
    ]
