"""open_clip CLIP backbones: real weights by ``ARCH:TAG`` or a local file, and the offline ``clip-tiny``."""
from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..api.backbone import CLIP_MEAN, CLIP_STD, Backbone, BackboneInfo
from ..api.checkpoints import file_sha256
from ..api.errors import SidbenchError, WeightsError

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
        blocks = visual.transformer.resblocks
        # open_clip >= 2.24 runs blocks batch-first; older versions sequence-first (NLD vs LND).
        self._batch_first = getattr(visual.transformer, "batch_first", False)
        self._captured: dict[str, list] = {}
        for block in blocks:
            block.ln_2.register_forward_hook(self._hook("cls_ln2"))
            block.register_forward_hook(self._hook("cls_blocks"))
        visual.ln_post.register_forward_hook(self._hook("cls_final"))

    def _hook(self, key: str):
        def hook(module, args, output):
            if key not in self._captured:
                return
            if output.ndim == 2:  # final LN applied after pooling: already [B, W]
                cls = output
            else:
                cls = output[:, 0] if self._batch_first or key == "cls_final" else output[0]
            self._captured[key].append(cls)

        return hook

    def _forward(self, images: "torch.Tensor", names: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
        import torch

        # A compiled tower captures every feature whatever is asked for: the hooks' choice is traced into the
        # graph, so one graph serves every feature set (no recompilation per set of names)
        self._captured = {k: [] for k in ("cls_ln2", "cls_blocks", "cls_final") if k in names or self.compiled}
        try:
            embed = self.model.visual(images)
            out = {}
            for key, parts in self._captured.items():
                if key in names:
                    out[key] = parts[0] if key == "cls_final" else torch.stack(parts, dim=1)
            if "image_embed" in names:
                out["image_embed"] = embed
            return out
        finally:
            self._captured = {}

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
    activation it needs, or it is refused (see :func:`_file_activation`)."""
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
        quick = _file_activation(arch, tag, path, quick)
        base = f"{arch}:{tag}" if tag else arch
        identity = f"{base}@sha256:{file_sha256(path)[:16]}"
    elif not tag:
        raise WeightsError(f"backbone {name!r} names no weights: use ARCH:TAG (e.g. ViT-L-14:openai) or --weights PATH")
    else:
        path, identity = None, f"{arch}:{tag}"
    return OpenClipPlan(arch, tag, path, quick, f"{identity}|{QUICK_GELU if quick else GELU}")


def _file_activation(arch: str, tag: str, path: Path, quick: bool) -> bool:
    """Whether local weights run with QuickGELU; refuses files that are OpenAI's but would run with GELU."""
    import open_clip

    from .clip_weights import inspect_checkpoint

    facts = inspect_checkpoint(path)
    if facts.torchscript:
        raise WeightsError(
            f"--weights {path} is a TorchScript archive (OpenAI's clip.load format), which sidbench does not load "
            f"(it holds code, not only tensors); convert it once: python -c \"import torch; torch.save(torch.jit.load("
            f"'{path}', map_location='cpu').state_dict(), 'clip-openai.pt')\" and pass --backbone {arch}:openai "
            "--weights clip-openai.pt")
    if facts.openai_extras and tag and not quick:
        raise WeightsError(
            f"--weights {path} is an OpenAI CLIP checkpoint (it has OpenAI's input_resolution/context_length/"
            f"vocab_size entries), trained with QuickGELU, but {arch}{':' + tag if tag else ''} builds GELU; "
            f"use --backbone {arch}:openai --weights {path}")
    if tag or quick or facts.openai_extras:
        return quick or facts.openai_extras
    if facts.openai_layout and "openai" in open_clip.list_pretrained_tags_by_model(arch):
        raise WeightsError(
            f"--weights {path} is in OpenAI's CLIP key layout, which does not record the activation it was trained "
            f"with (OpenAI: QuickGELU; most LAION models: GELU); say which: --backbone {arch}:openai (QuickGELU, "
            f"OpenAI's preprocessing), {arch}-quickgelu, or {arch}:TAG of the GELU model the file comes from "
            f"(`sidbench list backbones`)")
    return False


def open_clip_identity(name: str, weights: str | None = None) -> str:
    """What a built ``ARCH[:TAG]`` backbone reports as its identity, known without loading it:
    architecture, weights (tag, or the file's SHA-256) and activation, e.g. ``ViT-L-14:openai|quick_gelu``."""
    return resolve_open_clip(name, weights).identity


def open_clip_activation(name: str, weights: str | None = None) -> str:
    """``quick_gelu`` or ``gelu``: what the weights were trained with (run.json records it)."""
    return resolve_open_clip(name, weights).activation


def build_open_clip(name: str, weights: str | None = None, device: str = "cpu") -> ClipBackbone:
    """``ARCH:TAG`` through open_clip's pretrained registry, or ``ARCH[:TAG]`` + ``weights=PATH``; built
    with the activation its weights were trained with."""
    import open_clip

    plan = resolve_open_clip(name, weights)
    info = describe_open_clip(name)
    if plan.tag == RANDOM_TAG:
        return build_random(plan, info, device)
    if plan.path is None:
        _require_weights_reachable(plan.arch, plan.tag)
    try:
        with _quiet_random_init():  # with --weights the random start is overwritten right after
            model = open_clip.create_model(plan.arch, pretrained=None if plan.path else plan.tag,
                                           force_quick_gelu=plan.quick_gelu, device="cpu")
        if plan.path is not None:
            _load_local(model, plan)
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - open_clip raises many types; the user needs one line
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise WeightsError(f"could not load {name} weights ({first}); {_how_to_provide(plan.arch, plan.tag)}") from exc
    _check_activation(model, plan)
    return ClipBackbone(model, open_clip.get_tokenizer(plan.arch), info, plan.identity, plan.activation).to(device)


def _check_activation(model, plan: OpenClipPlan) -> None:
    """The built MLPs use the planned activation (a guard against open_clip changing how it is chosen)."""
    act = type(model.visual.transformer.resblocks[0].mlp.gelu).__name__
    if (act == "QuickGELU") != plan.quick_gelu:
        raise SidbenchError(f"open_clip built {plan.arch} with {act}, but its weights need {plan.activation}; "
                            "please report this (open_clip version mismatch)")


@contextlib.contextmanager
def _quiet_random_init():
    """Hide open_clip's 'Model initialized randomly' warning while a model is made to load local weights into."""
    import logging

    class Quiet(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "initialized randomly" not in record.getMessage()

    quiet, root = Quiet(), logging.getLogger()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def _load_local(model, plan: OpenClipPlan) -> None:
    """Load ``plan.path`` with open_clip's own (weights-only) loader; OpenAI's non-weight entries are dropped."""
    import open_clip

    from .clip_weights import OPENAI_EXTRAS

    result = open_clip.load_checkpoint(model, str(plan.path), strict=False)
    missing = list(getattr(result, "missing_keys", []))
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if k.removeprefix("module.") not in OPENAI_EXTRAS]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
        raise WeightsError(f"--weights {plan.path} does not fit {plan.arch} ({'; '.join(parts)}); "
                           "name the architecture the file was trained with in --backbone")


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


def _how_to_provide(arch: str, tag: str) -> str:
    return (
        f"run once where the network is reachable so open_clip caches it (Hugging Face cache), "
        f"or download the {arch} {tag or ''} checkpoint and pass --backbone {arch}{':' + tag if tag else ''} --weights PATH"
    )


def _require_weights_reachable(arch: str, tag: str) -> None:
    """Fail within seconds when the weights are neither cached nor downloadable."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise WeightsError(
            f"open_clip has no pretrained tag {tag!r} for {arch}; known: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}"
        )
    if _weights_cached(cfg):
        return
    offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "SIDBENCH_OFFLINE"))
    if offline or not _online(cfg):
        raise WeightsError(
            f"{arch}:{tag} weights are not cached here and the network is unreachable"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}; {_how_to_provide(arch, tag)}"
        )


def _weights_cached(cfg: dict) -> bool:
    hub = cfg.get("hf_hub")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return False
        parts = hub.rstrip("/").split("/")
        repo_id, folder = "/".join(parts[:2]), "/".join(parts[2:])
        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo_id, f"{folder}/{fname}" if folder else fname)
            if isinstance(found, str):
                return True
    url = cfg.get("url")
    if url and not hub:  # with an hf_hub entry open_clip reads the Hugging Face cache only
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clip"
        if (cache / os.path.basename(url)).is_file():
            return True
    return False


def _online(cfg: dict, timeout: float = 3.0) -> bool:
    host = "huggingface.co"
    url = cfg.get("url") or ""
    if url and not cfg.get("hf_hub"):
        host = url.split("/")[2]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# What the registry reads without building a model: shapes, and the identity of the weights.
build_tiny.describe = describe_tiny  # type: ignore[attr-defined]
build_tiny.identity = lambda name, weights=None: TINY_IDENTITY  # type: ignore[attr-defined]
build_open_clip.describe = describe_open_clip  # type: ignore[attr-defined]
build_open_clip.identity = open_clip_identity  # type: ignore[attr-defined]
build_open_clip.activation = open_clip_activation  # type: ignore[attr-defined]
build_open_clip.check = check_open_clip_name  # type: ignore[attr-defined]
build_tiny.activation = lambda name, weights=None: GELU  # type: ignore[attr-defined]
