"""CLS tokens read off a ViT's intermediate modules during its one forward pass, by forward hooks.

Shared by the open_clip (:mod:`.clip`) and timm (:mod:`.timm_vit`) backbones: each names the modules whose
outputs hold a feature (every block's second LayerNorm for ``cls_ln2``, every block for ``cls_blocks``, ...)
and :meth:`ClsCapture.run` returns the CLS token of each, stacked over blocks in the order they ran.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn

T = TypeVar("T")


def cls_token(output: "torch.Tensor", batch_first: bool) -> "torch.Tensor":
    """The CLS (first) token of a module's output: ``[B, N, W]`` (batch-first) or ``[N, B, W]`` -> ``[B, W]``;
    an output already pooled to ``[B, W]`` (a LayerNorm after pooling) passes unchanged."""
    if output.ndim == 2:
        return output
    return output[:, 0] if batch_first else output[0]


class ClsCapture:
    """Forward hooks that collect, while :meth:`run` is in progress, the CLS tokens of the watched modules for
    the features asked for (the others' hooks return at once)."""

    def __init__(self) -> None:
        self.stacked: dict[str, bool] = {}
        self._parts: dict[str, list] = {}

    def watch(self, name: str, modules: Iterable["nn.Module"], *, batch_first: bool = True, stack: bool = True) -> None:
        """Feature ``name`` is the CLS token of each module's output: ``[B, len(modules), W]`` with ``stack``
        (one per block, in the order they run), else the one module's ``[B, W]``."""
        modules = list(modules)
        if not stack and len(modules) != 1:
            raise ValueError(f"feature {name!r}: an unstacked feature reads exactly one module, got {len(modules)}")
        self.stacked[name] = stack
        for module in modules:
            module.register_forward_hook(self._hook(name, batch_first))

    def _hook(self, name: str, batch_first: bool) -> Callable:
        def hook(module: "nn.Module", args: tuple, output: "torch.Tensor") -> None:
            parts = self._parts.get(name)
            if parts is not None:
                parts.append(cls_token(output, batch_first))

        return hook

    def run(self, forward: Callable[[], T], names: Iterable[str], every: bool = False) -> tuple[T, dict[str, "torch.Tensor"]]:
        """``forward()``'s result and the watched features among ``names``. ``every`` captures all of them
        whatever is asked (a compiled tower: the hooks' choice is traced into its graph, so one graph then
        serves every set of names)."""
        import torch

        names = tuple(names)
        self._parts = {k: [] for k in self.stacked if every or k in names}
        try:
            result = forward()
            out = {k: torch.stack(v, dim=1) if self.stacked[k] else v[0] for k, v in self._parts.items() if k in names}
            return result, out
        finally:
            self._parts = {}
