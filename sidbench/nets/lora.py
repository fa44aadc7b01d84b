"""LoRA factors merged into the base weights at load time: one plain ``nn.Linear`` per adapted layer.

A LoRA-adapted linear computes ``W x + b + scale * B (A x)`` with ``A`` [rank, in], ``B`` [out, rank] and
``scale = alpha / rank``; the merged layer's weight is ``W + scale * B @ A`` (bias unchanged), so the network
runs at the base model's cost and in its key names. The checkpoint's key layout is described by
:class:`LoraKeys` (the default is the wrapper DDA's ``models/lora.py`` writes: ``<layer>.original_layer.weight``,
``<layer>.lora.lora_A``, ``<layer>.lora.lora_B``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from sidbench.api import WeightsError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LoraKeys:
    """Key suffixes of one LoRA-wrapped linear layer in a checkpoint."""

    base: str = "original_layer"  # <layer>.<base>.weight / .bias: the frozen linear
    a: str = "lora.lora_A"  # [rank, in]
    b: str = "lora.lora_B"  # [out, rank]


def merge_lora(state: dict[str, "torch.Tensor"], scale: float, keys: LoraKeys = LoraKeys(),
               expected: Iterable[str] | None = None, rank: int | None = None) -> dict[str, "torch.Tensor"]:
    """``state`` with every LoRA-wrapped layer replaced by its merged ``<layer>.weight`` / ``<layer>.bias``.

    ``expected``: the layer names that must be wrapped (the targets the official code adapts); ``rank``: the
    rank the factors must have. A missing or stray factor, a wrong shape or rank is one-line WeightsError."""
    import torch

    layers = sorted({k[: -len(f".{keys.base}.weight")] for k in state if k.endswith(f".{keys.base}.weight")})
    if expected is not None and set(layers) != set(expected):
        missing, extra = sorted(set(expected) - set(layers)), sorted(set(layers) - set(expected))
        raise WeightsError(f"LoRA layers do not match the adapted targets: missing {missing[:3]}, unexpected "
                           f"{extra[:3]} ({len(missing)} missing, {len(extra)} unexpected)")
    out = dict(state)
    for layer in layers:
        w = out.pop(f"{layer}.{keys.base}.weight")
        a, b = out.pop(f"{layer}.{keys.a}", None), out.pop(f"{layer}.{keys.b}", None)
        if a is None or b is None:
            raise WeightsError(f"LoRA layer {layer!r} lacks its {keys.a if a is None else keys.b} factor")
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != w.shape[1] or b.shape[0] != w.shape[0] \
                or a.shape[0] != b.shape[1] or (rank is not None and a.shape[0] != rank):
            raise WeightsError(f"LoRA layer {layer!r}: factors A {tuple(a.shape)} and B {tuple(b.shape)} do not fit "
                               f"weight {tuple(w.shape)}" + (f" at rank {rank}" if rank is not None else ""))
        merged = w.double() + float(scale) * (b.double() @ a.double())
        out[f"{layer}.weight"] = merged.to(w.dtype)
        bias = out.pop(f"{layer}.{keys.base}.bias", None)
        if bias is not None:
            out[f"{layer}.bias"] = bias
    stray = [k for k in out if k.endswith(f".{keys.a}") or k.endswith(f".{keys.b}")]
    if stray:
        raise WeightsError(f"LoRA factor {stray[0]!r} has no base layer ({keys.base}.weight) to merge into")
    return out


def lora_targets(module: "torch.nn.Module", targets: Iterable[str]) -> list[str]:
    """Names of the ``nn.Linear`` layers of ``module`` whose name contains one of ``targets`` (how DDA's
    ``apply_lora_to_linear_layers`` picks the layers it wraps)."""
    from torch import nn

    targets = tuple(targets)
    return [name for name, m in module.named_modules()
            if isinstance(m, nn.Linear) and any(t in name for t in targets)]
