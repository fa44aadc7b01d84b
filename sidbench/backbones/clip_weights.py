"""What a local CLIP checkpoint says about itself, read without loading its tensors: is it a TorchScript
archive (OpenAI's ``clip.load`` format), does it carry the extra entries of OpenAI's checkpoints, is
it in the key layout OpenAI's CLIP uses (which open_clip's non-custom-text models share)?

The activation a CLIP was trained with is not stored in its weights, so these facts decide whether a
bare ``ARCH --weights PATH`` can be built safely (see :func:`sidbench.backbones.clip.resolve_open_clip`).
"""
from __future__ import annotations

import functools
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
