"""open_clip CLIP backbones: real weights by ``ARCH:TAG`` or a local file, and the offline ``clip-tiny``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..api.backbone import CLIP_MEAN, CLIP_STD, Backbone, BackboneFactory, BackboneInfo, FunctionFactory
from ..api.checkpoints import file_sha256
from ..api.errors import SidbenchError, WeightsError
from .capture import ClsCapture
from .clip_weights import (file_activation, how_to_provide, load_local, quiet_random_init,
                           require_weights_reachable)

if TYPE_CHECKING:
    import torch

TINY_NAME = "clip-tiny"
TINY_SEED = 0
QUICK_GELU, GELU = "quick_gelu", "gelu"  # x * sigmoid(1.702 x) (OpenAI's CLIP), or nn.GELU
RANDOM_TAG = "random"  # ``ViT-L-14:random``: real architecture, random weights (benchmarks only)
# A CLIP-shaped network small enough for tests and the CPU quickstart.
TINY_CFG = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=224, layers=4, width=64, head_width=16, patch_size=16, mlp_ratio=4.0),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2),
)


class ClipBackbone(Backbone):
    """Wraps an open_clip ``CLIP`` model; forward hooks collect every feature in one visual pass."""

    def __init__(self, model, tokenizer, info: BackboneInfo, identity: str, activation: str = GELU):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.info = info
        self.identity = identity
        self.activation = activation
        visual = model.visual
        blocks = list(visual.transformer.resblocks)
        # open_clip >= 2.24 runs blocks batch-first; older versions sequence-first (NLD vs LND). ln_post runs
        # batch-first in both (or after pooling, on [B, W]).
        batch_first = getattr(visual.transformer, "batch_first", False)
        self.capture = ClsCapture()
        self.capture.watch("cls_ln2", [b.ln_2 for b in blocks], batch_first=batch_first)
        self.capture.watch("cls_blocks", blocks, batch_first=batch_first)
        self.capture.watch("cls_final", [visual.ln_post], stack=False)

    def _forward(self, images: "torch.Tensor", names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
        # A compiled tower captures every feature whatever is asked for (one graph for every set of names)
        embed, out = self.capture.run(lambda: self.model.visual(images), names, every=self.compiled)
        if "image_embed" in names:
            out["image_embed"] = embed
        return out

    def _move(self, device: str) -> None:
        import torch

        self.model.to(device)
        if str(device).startswith("cuda"):  # the patch-embedding convolution runs faster channels-last
            self.model.visual.conv1.to(memory_format=torch.channels_last)

    def _compile(self) -> None:
        import torch

        # The forward hooks on the blocks are traced into the compiled graph (they only append tensors).
        self.model.visual = torch.compile(self.model.visual, dynamic=False)

    def text_embed(self, prompts: list[str]) -> "torch.Tensor":
        import torch

        tokens = self.tokenizer(list(prompts)).to(self.device)
        with torch.inference_mode():
            return self.model.encode_text(tokens).float()


def build_tiny(name: str = TINY_NAME, weights: str | None = None, device: str = "cpu") -> ClipBackbone:
    """``clip-tiny``: 4 blocks of width 64, built offline from a fixed seed (same feature names as ViT-L/14)."""
    import open_clip
    import torch
    from open_clip.model import CLIP

    if weights:
        raise WeightsError("clip-tiny is built from a fixed seed and takes no --weights; drop the flag")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(TINY_SEED)
        model = CLIP(**TINY_CFG)
    finally:
        torch.random.set_rng_state(state)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the BPE vocabulary ships with open_clip
    return ClipBackbone(model, tokenizer, describe_tiny(), identity=TINY_IDENTITY, activation=GELU).to(device)


TINY_IDENTITY = f"{TINY_NAME}:seed{TINY_SEED}-v1"


def describe_tiny(name: str = TINY_NAME) -> BackboneInfo:
    v = TINY_CFG["vision_cfg"]
    return BackboneInfo(TINY_NAME, v["layers"], v["width"], TINY_CFG["embed_dim"], v["image_size"])


def describe_open_clip(name: str) -> BackboneInfo:
    """Shapes of ``ARCH[:TAG]`` from open_clip's architecture config, normalisation from the tag's
    pretrained config (no weights loaded)."""
    import open_clip

    arch, _, tag = name.partition(":")
    v = _model_config(arch, name)["vision_cfg"]
    size = v.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    pretrained = (open_clip.get_pretrained_cfg(arch, tag) or {}) if tag and tag != RANDOM_TAG else {}
    mean, std = tuple(pretrained.get("mean", CLIP_MEAN)), tuple(pretrained.get("std", CLIP_STD))
    return BackboneInfo(name, v["layers"], v["width"], _model_config(arch, name)["embed_dim"], size, mean, std)


def check_open_clip_name(name: str) -> None:
    """An ``ARCH[:TAG]`` whose ARCH open_clip has no config for fails here in one line, read from open_clip's
    packaged config files without importing it (so before torch is)."""
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    configs = [p for f in folders for p in Path(f, "model_configs").glob("*.json")]
    if not configs:  # cannot tell without importing open_clip: building the backbone will say
        return
    archs = sorted(p.stem for p in configs)
    if name.partition(":")[0] not in archs:
        from ..api.errors import UnknownNameError

        raise UnknownNameError("backbone", name, [f"{a}:openai" for a in archs])


def _model_config(arch: str, name: str) -> dict:
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        from ..api.errors import UnknownNameError

        raise UnknownNameError("backbone", name, [f"{a}:openai" for a in open_clip.list_models()])
    return cfg


@dataclass(frozen=True)
class OpenClipPlan:
    """``ARCH[:TAG]`` (with ``--weights PATH``) resolved without building the model: which weights,
    which activation, and the identity that keys the feature cache."""

    arch: str
    tag: str  # "" when none
    path: Path | None  # a local weights file, or None for the tag's download
    quick_gelu: bool
    identity: str

    @property
    def activation(self) -> str:
        return QUICK_GELU if self.quick_gelu else GELU


def resolve_open_clip(name: str, weights: str | None = None) -> OpenClipPlan:
    """The activation follows the weights: a tag whose open_clip pretrained config says ``quick_gelu``
    (every ``openai`` tag) gets QuickGELU, as does a ``-quickgelu`` architecture; ``ARCH:TAG --weights PATH``
    is that tag's architecture with these weights; a bare ``ARCH --weights PATH`` must show which
    activation it needs, or it is refused (see :func:`.clip_weights.file_activation`)."""
    import open_clip

    arch, _, tag = name.partition(":")
    quick = bool(_model_config(arch, name).get("quick_gelu", False))
    if tag == RANDOM_TAG:
        if weights:
            raise WeightsError(f"{name} means random weights; drop --weights, or name the weights' tag ({arch}:TAG)")
        act = QUICK_GELU if quick else GELU
        return OpenClipPlan(arch, tag, None, quick, f"{arch}:random-seed{TINY_SEED}|{act} "
                                                    "(RANDOM WEIGHTS: for benchmarking speed, scores are meaningless)")
    if tag:
        pretrained = open_clip.get_pretrained_cfg(arch, tag)
        if not pretrained:
            raise WeightsError(f"open_clip has no pretrained tag {tag!r} for {arch}; known: "
                               f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}")
        quick = quick or bool(pretrained.get("quick_gelu", False))
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {weights}: no such file; give the path of an open_clip checkpoint for {arch}")
        quick = file_activation(arch, tag, path, quick)
        base = f"{arch}:{tag}" if tag else arch
        identity = f"{base}@sha256:{file_sha256(path)[:16]}"
    elif not tag:
        raise WeightsError(f"backbone {name!r} names no weights: use ARCH:TAG (e.g. ViT-L-14:openai) or --weights PATH")
    else:
        path, identity = None, f"{arch}:{tag}"
    return OpenClipPlan(arch, tag, path, quick, f"{identity}|{QUICK_GELU if quick else GELU}")


def build_open_clip(name: str, weights: str | None = None, device: str = "cpu") -> ClipBackbone:
    """``ARCH:TAG`` through open_clip's pretrained registry, or ``ARCH[:TAG]`` + ``weights=PATH``; built
    with the activation its weights were trained with."""
    import open_clip

    plan = resolve_open_clip(name, weights)
    info = describe_open_clip(name)
    if plan.tag == RANDOM_TAG:
        return build_random(plan, info, device)
    if plan.path is None:
        require_weights_reachable(plan.arch, plan.tag)
    try:
        with quiet_random_init():  # with --weights the random start is overwritten right after
            model = open_clip.create_model(plan.arch, pretrained=None if plan.path else plan.tag,
                                           force_quick_gelu=plan.quick_gelu, device="cpu")
        if plan.path is not None:
            load_local(model, plan.path, plan.arch)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - open_clip raises many types; the user needs one line
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise WeightsError(f"could not load {name} weights ({first}); {how_to_provide(plan.arch, plan.tag)}") from exc
    _check_activation(model, plan)
    return ClipBackbone(model, open_clip.get_tokenizer(plan.arch), info, plan.identity, plan.activation).to(device)


def _check_activation(model, plan: OpenClipPlan) -> None:
    """The built MLPs use the planned activation (a guard against open_clip changing how it is chosen)."""
    act = type(model.visual.transformer.resblocks[0].mlp.gelu).__name__
    if (act == "QuickGELU") != plan.quick_gelu:
        raise SidbenchError(f"open_clip built {plan.arch} with {act}, but its weights need {plan.activation}; "
                            "please report this (open_clip version mismatch)")


def build_random(plan: OpenClipPlan, info: BackboneInfo, device: str) -> ClipBackbone:
    """``ARCH:random``: the open_clip architecture with seeded random weights, for speed benchmarks only."""
    import open_clip
    import torch

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(TINY_SEED)
        model = open_clip.create_model(plan.arch, pretrained=None, device="cpu")
    finally:
        torch.random.set_rng_state(state)
    return ClipBackbone(model, open_clip.get_tokenizer(plan.arch), info, plan.identity, plan.activation).to(device)


# clip-tiny: shapes, identity and activation are constants
TINY_CLIP_FACTORY = FunctionFactory(build_tiny, describe=describe_tiny,
                                    identity=lambda name, weights=None: TINY_IDENTITY,
                                    activation=lambda name, weights=None: GELU)


class OpenClipFactory(BackboneFactory):
    """Any open_clip ``ARCH:TAG`` (or ``ARCH[:TAG]`` with a weights file, or ``ARCH:random``): shapes from its
    config, identity and activation from :func:`resolve_open_clip`, all without loading weights."""

    def build(self, name: str, weights: str | None = None, device: str = "cpu") -> ClipBackbone:
        return build_open_clip(name, weights, device)

    def describe(self, name: str) -> BackboneInfo:
        return describe_open_clip(name)

    def check(self, name: str) -> None:
        check_open_clip_name(name)

    def identity(self, name: str, weights: str | None = None) -> str:
        """Architecture, weights (tag, or the file's SHA-256) and activation, e.g. ``ViT-L-14:openai|quick_gelu``."""
        return resolve_open_clip(name, weights).identity

    def activation(self, name: str, weights: str | None = None) -> str:
        """``quick_gelu`` or ``gelu``: what the weights were trained with (run.json records it)."""
        return resolve_open_clip(name, weights).activation
