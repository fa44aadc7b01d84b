"""open_clip weights: where they come from (open_clip's cache, the network, or a local file) and what a local
CLIP checkpoint says about itself, read without loading its tensors: is it a TorchScript archive (OpenAI's
``clip.load`` format), does it carry the extra entries of OpenAI's checkpoints, is it in the key layout
OpenAI's CLIP uses (which open_clip's non-custom-text models share)?

The activation a CLIP was trained with is not stored in its weights, so these facts decide whether a
bare ``ARCH --weights PATH`` can be built safely (see :func:`sidbench.backbones.clip.resolve_open_clip`).
"""
from __future__ import annotations

import contextlib
import functools
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..api.errors import WeightsError

# Entries of OpenAI's checkpoints (its TorchScript archive's state_dict()) that are not weights.
OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")
# Keys of the layout of openai/CLIP's model.py: a ViT image tower under ``visual.`` and the text
# transformer at the top level. open_clip's CustomTextCLIP models put the text tower under ``text.``.
OPENAI_LAYOUT_KEYS = ("visual.class_embedding", "visual.proj", "token_embedding.weight", "text_projection")


@dataclass(frozen=True)
class CheckpointFacts:
    """What :func:`inspect_checkpoint` found."""

    torchscript: bool = False
    openai_extras: bool = False  # input_resolution / context_length / vocab_size entries
    openai_layout: bool = False  # OpenAI's key layout (also open_clip's legacy CLIP layout)


def inspect_checkpoint(path: Path) -> CheckpointFacts:
    """The facts of ``path`` (remembered per path, size and mtime, so an identity check stays cheap)."""
    stat = path.stat()
    return _inspect(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _inspect(path: str, size: int, mtime: int) -> CheckpointFacts:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return CheckpointFacts(torchscript=True)
    keys = _keys(Path(path))
    keys = {k.removeprefix("module.") for k in keys}
    return CheckpointFacts(openai_extras=any(k in keys for k in OPENAI_EXTRAS),
                           openai_layout=all(k in keys for k in OPENAI_LAYOUT_KEYS))


def _keys(path: Path) -> set[str]:
    """The tensor names of a safetensors or torch checkpoint (memory-mapped: no tensor data is read)."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return set(f.keys())
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type for corrupt files
            raise WeightsError(f"--weights {path}: not a readable safetensors file ({exc})") from None
    if path.suffix.lower() in (".npz", ".npy"):
        return set()  # big_vision (SigLIP) weights: open_clip's own converter, never OpenAI's layout
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling, zip and truncation errors: one line for the user
        raise WeightsError(f"--weights {path}: not a readable weights-only PyTorch checkpoint "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return set(obj) if isinstance(obj, dict) else set()


def file_activation(arch: str, tag: str, path: Path, quick: bool) -> bool:
    """Whether local weights run with QuickGELU; refuses files that are OpenAI's but would run with GELU."""
    import open_clip

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


def load_local(model, path: Path, arch: str) -> None:
    """Load ``path`` with open_clip's own (weights-only) loader; OpenAI's non-weight entries are dropped."""
    import open_clip

    result = open_clip.load_checkpoint(model, str(path), strict=False)
    missing = list(getattr(result, "missing_keys", []))
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if k.removeprefix("module.") not in OPENAI_EXTRAS]
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
        raise WeightsError(f"--weights {path} does not fit {arch} ({'; '.join(parts)}); "
                           "name the architecture the file was trained with in --backbone")


@contextlib.contextmanager
def quiet_random_init():
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


def how_to_provide(arch: str, tag: str) -> str:
    """The end of a missing-weights message: how to make ``ARCH:TAG``'s weights available."""
    return (
        f"run once where the network is reachable so open_clip caches it (Hugging Face cache), "
        f"or download the {arch} {tag or ''} checkpoint and pass --backbone {arch}{':' + tag if tag else ''} --weights PATH"
    )


def require_weights_reachable(arch: str, tag: str) -> None:
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
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}; {how_to_provide(arch, tag)}"
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
