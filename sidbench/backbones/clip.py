"""open_clip CLIP backbones: real weights by ``ARCH:TAG`` or a local file, and the offline ``clip-tiny``."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from ..api.backbone import Backbone, BackboneInfo
from ..api.checkpoints import file_sha256
from ..api.errors import WeightsError

if TYPE_CHECKING:
    import torch

TINY_NAME = "clip-tiny"
TINY_SEED = 0
RANDOM_TAG = "random"  # ``ViT-L-14:random``: real architecture, random weights (benchmarks only)
# A CLIP-shaped network small enough for tests and the CPU quickstart.
TINY_CFG = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=224, layers=4, width=64, head_width=16, patch_size=16, mlp_ratio=4.0),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=4, layers=2),
)


class ClipBackbone(Backbone):
    """Wraps an open_clip ``CLIP`` model; forward hooks collect every feature in one visual pass."""

    def __init__(self, model, tokenizer, info: BackboneInfo, identity: str):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.info = info
        self.identity = identity
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

        self._captured = {k: [] for k in ("cls_ln2", "cls_blocks", "cls_final") if k in names}
        try:
            embed = self.model.visual(images)
            out = {}
            for key, parts in self._captured.items():
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
    return ClipBackbone(model, tokenizer, describe_tiny(), identity=TINY_IDENTITY).to(device)


TINY_IDENTITY = f"{TINY_NAME}:seed{TINY_SEED}-v1"


def describe_tiny(name: str = TINY_NAME) -> BackboneInfo:
    v = TINY_CFG["vision_cfg"]
    return BackboneInfo(TINY_NAME, v["layers"], v["width"], TINY_CFG["embed_dim"], v["image_size"])


def describe_open_clip(name: str) -> BackboneInfo:
    """Shapes of ``ARCH[:TAG]`` from open_clip's architecture config (no weights loaded)."""
    import open_clip

    arch = name.split(":", 1)[0]
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        from ..api.errors import UnknownNameError

        raise UnknownNameError("backbone", name, [f"{a}:openai" for a in open_clip.list_models()])
    v = cfg["vision_cfg"]
    size = v.get("image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    return BackboneInfo(name, v["layers"], v["width"], cfg["embed_dim"], size)


def open_clip_identity(name: str, weights: str | None = None) -> str:
    """What a built ``ARCH[:TAG]`` backbone reports as its identity, known without loading it."""
    arch, _, tag = name.partition(":")
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {weights}: no such file; give the path of an open_clip checkpoint for {arch}")
        return f"{arch}@sha256:{file_sha256(path)[:16]}"
    if tag == RANDOM_TAG:
        return f"{arch}:random-seed{TINY_SEED} (RANDOM WEIGHTS: for benchmarking speed, scores are meaningless)"
    if not tag:
        raise WeightsError(f"backbone {name!r} names no weights: use ARCH:TAG (e.g. ViT-L-14:openai) or --weights PATH")
    return f"{arch}:{tag}"


def build_open_clip(name: str, weights: str | None = None, device: str = "cpu") -> ClipBackbone:
    """``ARCH:TAG`` through open_clip's pretrained registry, or ``ARCH`` + ``weights=PATH``."""
    import open_clip

    arch, _, tag = name.partition(":")
    info = describe_open_clip(name)
    identity = open_clip_identity(name, weights)
    if weights:
        pretrained = str(Path(weights).expanduser())
    elif tag == RANDOM_TAG:
        return build_random(arch, info, device)
    else:
        _require_weights_reachable(arch, tag)
        pretrained = tag
    try:
        model = open_clip.create_model(arch, pretrained=pretrained, device="cpu")
    except Exception as exc:  # noqa: BLE001 - open_clip raises many types; the user needs one line
        raise WeightsError(f"could not load {name} weights ({exc}); {_how_to_provide(arch, tag)}") from exc
    tokenizer = open_clip.get_tokenizer(arch)
    return ClipBackbone(model, tokenizer, info, identity).to(device)


def build_random(arch: str, info: BackboneInfo, device: str) -> ClipBackbone:
    """``ARCH:random``: the open_clip architecture with seeded random weights, for speed benchmarks only."""
    import open_clip
    import torch

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(TINY_SEED)
        model = open_clip.create_model(arch, pretrained=None, device="cpu")
    finally:
        torch.random.set_rng_state(state)
    return ClipBackbone(model, open_clip.get_tokenizer(arch), info, open_clip_identity(f"{arch}:{RANDOM_TAG}")).to(device)


def _how_to_provide(arch: str, tag: str) -> str:
    return (
        f"run once where the network is reachable so open_clip caches it (HF cache or ~/.cache/clip), "
        f"or download the {arch} {tag or ''} checkpoint and pass --weights PATH"
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
    if url:
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
