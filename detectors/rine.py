"""RINE: intermediate CLIP encoder blocks, weighted per feature dimension (TIE), then a small MLP.

Koutlis & Papadopoulos, "Leveraging Representations from Intermediate Encoder-blocks for Synthetic
Image Detection", ECCV 2024 (reference code mever-team/rine, Apache-2.0). The frozen backbone emits
``cls_ln2`` [B, L, W] (the CLS token at every block's second LayerNorm); this file holds the detector
around the trainable part (``sidbench.nets.rine``: projections, TIE, head, SupCon), its training (BCE +
xi * SupCon on cached augmented views of ``sidbench.data.augment.RineAugment``) and its ablations. It
stays a little over 350 lines: the four published variants' options, files and checkpoint checks belong here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from sidbench.data.augment import RineAugment
from sidbench.nets.rine import build_network, embed, initial_alpha, supcon_loss  # noqa: F401 - importable from here
from sidbench.api.names import label
from sidbench.api import (Detector, DetectorSpec, LossMeter, Milestones, OfficialWeights, Option, SidbenchError,
                          WeightsError, hookimpl, note, train_epochs)

if TYPE_CHECKING:
    import torch

    from sidbench.api import FitData

PAPER = ("Koutlis & Papadopoulos, Leveraging Representations from Intermediate Encoder-blocks "
         "for Synthetic Image Detection, ECCV 2024 (arXiv 2402.19091)")
PROGAN_CLASSES = ("airplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                  "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                  "train", "tvmonitor")
FEATURES = ("cls_ln2", "cls_blocks")
TRAIN_ON = ("features", "pixels")
ARCHITECTURE = ("q", "proj_dim", "tie", "blocks", "feature")  # options that change the network's shapes or inputs


# -- the detector -----------------------------------------------------------------------------------
class Rine(Detector):
    """RINE's trainable part on top of ``cls_ln2`` (or ``cls_blocks``) of any CLIP ViT backbone."""

    def __init__(self, spec: DetectorSpec, backbone: Any, **options: Any):
        super().__init__(spec, backbone, **options)
        self.history: list[dict[str, Any]] = []
        self._configure()

    def _configure(self) -> None:
        """Check the options and build the (seed 0) network they describe."""
        o, name = self.options, self.spec.name
        self.feature = o["feature"]  # types, choices and bounds: checked by the Option declarations
        self.block_index = _block_index(o["blocks"], self.backbone_info.n_blocks, name)
        self.net = self._build(seed=0)
        self._initial_alpha = self.net.alpha.detach().clone() if self.tie else None

    @property
    def tie(self) -> bool:
        return bool(self.options["tie"])

    @property
    def xi(self) -> float:
        """Weight of the contrastive term: 0 when ``contrastive=False``."""
        return float(self.options["xi"]) if self.options["contrastive"] else 0.0

    @property
    def required_features(self) -> tuple[str, ...]:
        return (self.feature,)

    def _build(self, seed: int) -> "torch.nn.Module":
        o, info = self.options, self.backbone_info
        return build_network(len(self.block_index), info.width, o["q"], o["proj_dim"], self.tie, seed).to(self.device)

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"rine": self.net}

    def n_trainable(self) -> int:
        """Number of trainable parameters (10,521,601 for q=4, d'=1024 on ViT-L/14)."""
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    # -- scoring ------------------------------------------------------------------------------------
    def tokens(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """The block tokens this configuration uses: [B, L', W] on the detector's device."""
        import torch

        x = features[self.feature]
        info = self.backbone_info
        if x.ndim != 3 or tuple(x.shape[1:]) != (info.n_blocks, info.width):
            raise SidbenchError(
                f"{self.name}: expected {self.feature} of shape [B, {info.n_blocks}, {info.width}] "
                f"(backbone {info.name}), got {list(x.shape)}; build the detector with the backbone that made the features"
            )
        x = x.to(self.device, torch.float32)
        return x if len(self.block_index) == info.n_blocks else x[:, self.block_index]

    def embed(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """z [B, d'] (before the head; the contrastive loss sees it L2-normalised)."""
        return embed(self.net, self.tokens(features))

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        return self.net.head(self.embed(features)).squeeze(-1)

    def loss_terms(self, features: dict[str, "torch.Tensor"], labels: "torch.Tensor") -> dict[str, "torch.Tensor"]:
        """BCE (sum over the batch), SupCon on normalised z, and their sum bce + xi * supcon."""
        import torch
        import torch.nn.functional as F

        z = self.embed(features)
        labels = labels.to(z.device, torch.float32)
        bce = F.binary_cross_entropy_with_logits(self.net.head(z).squeeze(-1), labels, reduction="sum")
        if self.xi == 0.0:
            return {"bce": bce, "supcon": torch.zeros((), device=z.device), "total": bce}
        con = supcon_loss(F.normalize(z, dim=1), labels, self.options["temperature"], self.options["temperature"])
        return {"bce": bce, "supcon": con, "total": bce + self.xi * con}

    # -- block importance ---------------------------------------------------------------------------
    def block_importance(self) -> dict[str, Any]:
        """Per used block, softmax(A) over blocks averaged over feature dims: learned and initial value."""
        import torch

        if not self.tie:
            raise SidbenchError(f"{self.name}: tie=False has no learned block weights (plain mean over blocks)")

        def per_block(alpha: "torch.Tensor") -> list[float]:
            return torch.softmax(alpha.detach().float().cpu(), dim=1).mean(dim=2).squeeze(0).tolist()

        learned, init = self.net.alpha, self._initial_alpha
        out: dict[str, Any] = {"blocks": list(self.block_index), "learned": per_block(learned),
                               "initial": per_block(init) if init is not None else None, "correlation": None}
        if init is not None:
            a, b = learned.detach().cpu().flatten().double(), init.flatten().double()
            out["correlation"] = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        return out

    # -- checkpoints --------------------------------------------------------------------------------
    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """The official ``alpha``, ``proj1.*``, ``proj2.*``, ``head.*`` keys (also under ``module.``)."""
        state = {k.removeprefix("module."): v for k, v in state.items()}
        if not any(k.startswith("rine.") for k in state):
            state = {f"rine.{k}": v for k, v in state.items()}
        self._initial_alpha = None  # an official file does not say where training started
        return state

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None:
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in state.items()}
        missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = [f"{k} {list(got[k])} (expected {list(expected[k])})" for k in expected if k in got and got[k] != expected[k]]
        if missing or unexpected or wrong:
            parts = ([f"wrong shape: {', '.join(wrong[:3])}"] if wrong else []) + \
                    ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                    ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
            raise WeightsError(f"checkpoint does not fit {self.name} ({self.describe()}): {'; '.join(parts)}"
                               f"{_hint(state)}")
        super().load_state_dict({k: v.float() for k, v in state.items()})

    def describe(self) -> str:
        o, info = self.options, self.backbone_info
        return (f"q={o['q']}, d'={o['proj_dim']}, tie={self.tie}, {len(self.block_index)} of {info.n_blocks} "
                f"blocks of width {info.width} from {info.name}")

    def extra_metadata(self) -> dict[str, Any]:
        init = self._initial_alpha
        return {"architecture": {k: self.options[k] for k in ARCHITECTURE},
                "initial_alpha": None if init is None else [[[float(f"{v:.9g}") for v in row] for row in init[0].tolist()]],
                "history": self.history}

    def configure(self, changed: dict[str, Any]) -> None:
        """A checkpoint's options were adopted: rebuild the network; a changed architecture shows in the name.
        Sizes are checked against the file's tensors before a network of that size is built."""
        if "proj_dim" in changed:
            self.metadata_size({"proj_dim": changed["proj_dim"]}, "proj_dim", "rine.head.0.weight", 1)
        layers = sum(1 for k in self.checkpoint_shapes if k.startswith("rine.proj1.") and k.endswith(".weight"))
        if "q" in changed and changed["q"] != layers:
            raise WeightsError(f"{self.name}: checkpoint metadata says q={changed['q']!r}, its tensors hold {layers} layers")
        self._configure()
        arch = {k: v for k, v in changed.items() if k in ARCHITECTURE}
        if arch and not self.display_name:
            self.display_name = label(self.spec.name, arch)

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        import torch

        init = extra.get("initial_alpha")
        self._initial_alpha = torch.tensor(init, dtype=torch.float32) if init is not None else None
        self.history = list(extra.get("history") or [])

    # -- training -----------------------------------------------------------------------------------
    def augment(self) -> RineAugment | None:
        """The reference augmentation from the options (None with ``augment=False``)."""
        o = self.options
        if not o["augment"]:
            return None
        q = o["jpeg_qualities"]
        if not (q == "uniform" or (isinstance(q, (list, tuple)) and q and all(isinstance(v, int) for v in q))):
            raise SidbenchError(f"{self.name}: jpeg_qualities must be a list of qualities in 1..100 or 'uniform', got {q!r}")
        return RineAugment(self.backbone_info.image_size, float(o["blur_prob"]), tuple(o["blur_sigma"]),
                           float(o["jpeg_prob"]), q if isinstance(q, str) else tuple(q), bool(o["flip"]))

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """Train from a fresh seeded start: BCE + xi * SupCon, Adam, one augmented view per image per epoch."""
        import torch

        o, seed = self.options, data.seed
        data = data.with_classes(o["classes"], log)
        self.net = self._build(seed)
        self._initial_alpha = self.net.alpha.detach().cpu().clone() if self.tie else None
        aug = self.augment()
        log(f"{self.describe()}; {self.n_trainable():,} trainable parameters; xi={self.xi:g}; "
            f"augmentation {aug.name if aug else 'off'}")
        log("training on cached features: the frozen backbone runs once per image per epoch (one augmented "
            "view each), then every optimiser step reuses them" if o["train_on"] == "features" else
            "training on pixels: the backbone runs inside the training loop on every batch (slow path)")
        opt = torch.optim.Adam(self.net.parameters(), lr=float(o["lr"]))
        order = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout
        batches = self._feature_batches if o["train_on"] == "features" else self._pixel_batches
        history: list[dict[str, Any]] = []
        summary = train_epochs(data, self.name, epochs=int(o["epochs"]), objects={"net": self.net, "optimizer": opt,
                               "order": order}, run_epoch=lambda epoch: self._train_epoch(batches(data, aug, epoch, order), opt),
                               validate=lambda: self._validate(data), keep="best", net=self.net, history=history,
                               schedule=Milestones(opt, float(o["lr"]), o["lr_milestones"]), log=log)
        self.history = [{k: v if k == "epoch" else round(v, 6) for k, v in h.items()} for h in history]
        self.eval()
        return {"train_on": o["train_on"], **summary}

    def _feature_batches(self, data: "FitData", aug: RineAugment | None, epoch: int, order: "torch.Generator"):
        """Shuffled batches of this epoch's cached view: (features, labels)."""
        import torch

        fs = data.features("train", (self.feature,), augment=aug, view=epoch, protocol="center_crop")
        x, y = fs.features[self.feature], fs.labels
        perm = torch.randperm(len(fs), generator=order)
        for i in range(0, len(perm), self.options["batch_size"]):
            idx = perm[i:i + self.options["batch_size"]]
            yield {self.feature: x[idx]}, y[idx]

    def _pixel_batches(self, data: "FitData", aug: RineAugment | None, epoch: int, order: "torch.Generator"):
        """The same seeded views in the same order, but the backbone runs on each batch (unreadable images dropped)."""
        yield from data.batches("train", (self.feature,), batch_size=self.options["batch_size"], augment=aug,
                                epoch=epoch, protocol="center_crop", generator=order)

    def _train_epoch(self, batches, opt) -> dict[str, float]:
        n, meter = 0, LossMeter()
        for feats, labels in batches:
            terms = self.loss_terms(feats, labels)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            opt.step()
            n += len(labels)
            meter.add(total=terms["total"], bce=terms["bce"])
            meter.add(len(labels), supcon=terms["supcon"])
        sums = meter.totals()  # read once per epoch: no host sync per step
        return {"n": n, **{k: sums.get(t, 0.0) / max(n, 1) for k, t in (("loss", "total"), ("bce", "bce"), ("supcon", "supcon"))}}

    def _validate(self, data: "FitData") -> dict[str, float]:
        """Accuracy at P(fake) = 0.5 and average precision on the validation split (its eval protocol)."""
        from sklearn.metrics import average_precision_score

        logits, y = data.scores(self, "val")
        acc = float(((logits > 0).astype(int) == y).mean())
        ap = float(average_precision_score(y, logits)) if 0 < y.sum() < len(y) else float("nan")
        return {"val_acc": acc, "val_ap": ap}


def _block_index(blocks: Any, n_blocks: int, name: str) -> list[int]:
    """``all``, ``last`` or a list of block indices (negative counts from the end)."""
    if blocks == "all":
        return list(range(n_blocks))
    if blocks == "last":
        return [n_blocks - 1]
    if isinstance(blocks, int) and not isinstance(blocks, bool):
        blocks = [blocks]
    if isinstance(blocks, (list, tuple)) and blocks and all(isinstance(b, int) and -n_blocks <= b < n_blocks for b in blocks):
        return sorted({b % n_blocks for b in blocks})
    raise SidbenchError(f"{name}: option blocks={blocks!r}: use 'all', 'last' or a list of block indices "
                        f"in 0..{n_blocks - 1}")


def _hint(state: dict[str, "torch.Tensor"]) -> str:
    """'; the file looks like rine.progan2 (q=4, d'=128 ...)' when its shapes say so."""
    state = {k.removeprefix("rine."): v for k, v in state.items()}
    if "proj1.1.weight" not in state:
        return ""
    dim, width = state["proj1.1.weight"].shape
    q = sum(1 for k in state if k.startswith("proj2.") and k.endswith(".weight"))
    blocks = f", {state['alpha'].shape[1]} blocks" if "alpha" in state else ", no TIE"
    match = [v for v, c in VARIANTS.items() if (c["q"], c["proj_dim"]) == (q, dim)]
    return (f"; the file holds q={q}, d'={dim}, width {width}{blocks}"
            + (f" (like {' / '.join('rine.' + m for m in match)})" if match else ""))


# -- registry -------------------------------------------------------------------------------------
COMMON_OPTIONS: dict[str, Any] = {
    "lr": Option(1e-3, min=0, max=10, doc="Adam learning rate"),
    "lr_milestones": Option([6, 11], items=int, min=1, doc="1-based epoch numbers from which lr / 10"),
    "batch_size": Option(128, min=1, max=4096, doc="training batch size"),
    "temperature": Option(0.07, min=1e-6, doc="SupCon temperature"),
    "tie": Option(True, role="network", doc="learned softmax weights over blocks (False: plain mean)"),
    "contrastive": Option(True, doc="add xi * SupCon to the BCE loss"),
    "blocks": Option("all", type=(str, int, list), role="network",
                     doc="'all', 'last', a block index or a list of indices (negative from the end)"),
    "feature": Option("cls_ln2", choices=FEATURES, role="network", doc="which CLS tokens the head reads"),
    "augment": Option(True, doc="the reference blur/JPEG/crop/flip augmentation (False: one plain view)"),
    "blur_prob": Option(0.5, min=0, max=1, doc="probability of a Gaussian blur"),
    "blur_sigma": Option([0.0, 3.0], items=(int, float), min=0, max=50, doc="blur sigma range"),
    "jpeg_prob": Option(0.5, min=0, max=1, doc="probability of a JPEG re-compression"),
    "jpeg_qualities": Option([30, 100], type=(str, list), min=1, max=100,
                             doc="a list of qualities in 1..100 (each drawn alike) or 'uniform'"),
    "flip": Option(True, doc="random horizontal flip"),
    "train_on": Option("features", choices=TRAIN_ON, doc="cached features, or pixels through the backbone"),
}


def variant_options(cfg: dict[str, Any]) -> dict[str, Any]:
    """A variant's published values as declared options."""
    return {
        "q": Option(cfg["q"], min=1, max=64, role="network", doc="projection layers"),
        "proj_dim": Option(cfg["proj_dim"], min=1, max=65536, role="network", doc="projection width d'"),
        "xi": Option(cfg["xi"], min=0, doc="weight of the SupCon loss"),
        "epochs": Option(cfg["epochs"], min=1, max=100000, doc="training epochs"),
        "classes": Option(cfg["classes"], type=(str, list), doc="'all' or the ProGAN class folders trained on"),
    }


VARIANTS: dict[str, dict[str, Any]] = {
    "progan1": {"q": 4, "proj_dim": 1024, "xi": 0.1, "epochs": 1, "classes": ["horse"]},
    "progan2": {"q": 4, "proj_dim": 128, "xi": 0.2, "epochs": 1, "classes": ["chair", "horse"]},
    "progan4": {"q": 2, "proj_dim": 1024, "xi": 0.2, "epochs": 1, "classes": ["car", "cat", "chair", "horse"]},
    "ldm": {"q": 4, "proj_dim": 1024, "xi": 0.4, "epochs": 5, "classes": "all"},
}
TRAINED_ON = {
    "progan1": "ProGAN horse", "progan2": "ProGAN chair, horse", "progan4": "ProGAN car, cat, chair, horse",
    "ldm": "latent-diffusion training set (grip-unina DMimageDetection)",
}

# The released checkpoints (trainable parts), in the repository's ckpt/ folder at this commit. The git blob ids are
# those of its tree; the SHA-256 is known for the 2-class file (checked against a copy of it).
RINE_REPO, RINE_COMMIT = "https://github.com/mever-team/rine", "9b7fd5857cc205d0412be6aeee0d7611b95bd620"
OFFICIAL_FILES = {
    "progan1": ("model_1class_trainable.pth", None, "802e8dce29925de10a8f4bfd96c4b627d0c0cdfe"),
    "progan2": ("model_2class_trainable.pth", "680d301b6d191da85b9dabcebf42cd3df20c5c669fa8320c498f835d02bf5ccb",
                "b8418b5884fd1fc1dba79bea91f41ab2341673d8"),
    "progan4": ("model_4class_trainable.pth", None, "bf5cd4053b5eaf64a0bd52cdb6bd0dbd9a8bc457"),
    "ldm": ("model_ldm_trainable.pth", None, "6b225b2aeae4f52e99a7fb675d8bcb736aea4a2e"),
}


def official_weights(variant: str) -> OfficialWeights:
    filename, sha256, blob = OFFICIAL_FILES[variant]
    return OfficialWeights(url=f"https://raw.githubusercontent.com/mever-team/rine/{RINE_COMMIT}/ckpt/{filename}",
                           filename=filename, sha256=sha256, git_blob=blob, repository=RINE_REPO,
                           note=f"ckpt/{filename} of mever-team/rine at {RINE_COMMIT[:7]}")


# The quickstart has 400 training images, not ProGAN's 72k: more epochs on one shared (unaugmented)
# view, so the fit reuses the centre-crop features the other detectors extract anyway.
QUICKSTART_OPTIONS = {"epochs": 30, "augment": False, "lr_milestones": []}

@hookimpl
def sidbench_detectors() -> list[DetectorSpec]:
    specs = []
    for variant, cfg in VARIANTS.items():
        specs.append(DetectorSpec(
            name=f"rine.{variant}",
            factory=Rine,
            features=("cls_ln2",),
            backbone="ViT-L-14:openai",
            preprocess="center_crop",
            description=(f"RINE trained on {TRAINED_ON[variant]}: q={cfg['q']}, d'={cfg['proj_dim']}, "
                         f"xi={cfg['xi']}, {cfg['epochs']} epoch(s); TIE over all CLIP blocks' ln_2 CLS tokens"),
            needs_fit=True,
            default=variant == "progan4",
            options={**COMMON_OPTIONS, **variant_options(cfg)},
            training_data=("ldm",) if variant == "ldm" else ("progan",),
            paper=PAPER,
            license="Apache-2.0",
            quickstart_options=QUICKSTART_OPTIONS,
            official_weights=official_weights(variant),
        ))
    return specs
