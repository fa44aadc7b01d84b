"""Effort's SVD-residual linear layers (Yan et al., ICML 2025), merged into plain ``nn.Linear`` weights.

Effort splits each attention projection's weight by SVD into a frozen principal part ``weight_main``
(the top r singular directions) and a trained residual ``U_residual diag(S_residual) V_residual``; its
``SVDResidualLinear.forward`` computes ``F.linear(x, weight_main + U_residual @ diag(S_residual) @
V_residual, bias)``, or ``weight_main`` alone when no residual was set. Its files also carry ``U_r``,
``S_r`` and ``V_r`` (the principal factors, used only by training losses): recognised, never required,
and not used. Merging once at load time gives the same function with no extra cost per image.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

RESIDUAL = ("U_residual", "S_residual", "V_residual")
PRINCIPAL = ("U_r", "S_r", "V_r")  # unused by the forward


def merge_svd_residual(state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """``state`` with each SVD-residual layer (``P.weight_main`` [+ ``P.U_residual``, ``P.S_residual``,
    ``P.V_residual``]) replaced by ``P.weight``; ``P.bias`` and every other entry pass through. Raises
    ``KeyError`` for a residual factor without its ``weight_main`` or a residual with a factor missing,
    ``ValueError`` for factors whose shapes do not compose."""
    layers = {k[: -len("weight_main")] for k in state if k.endswith(".weight_main")}
    out: dict[str, "torch.Tensor"] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        prefix += "."
        if leaf in RESIDUAL + PRINCIPAL + ("weight_main",):
            if prefix not in layers:
                raise KeyError(f"{key} has no {prefix}weight_main beside it")
            continue
        out[key] = value
    for prefix in sorted(layers):
        out[prefix + "weight"] = merged_weight(state, prefix)
    return out


def merged_weight(state: dict[str, "torch.Tensor"], prefix: str) -> "torch.Tensor":
    """``weight_main + U_residual @ diag(S_residual) @ V_residual`` of one layer (summed in float64, returned
    in ``weight_main``'s dtype), or ``weight_main`` when the layer has no residual."""
    main = state[prefix + "weight_main"]
    present = [name for name in RESIDUAL if prefix + name in state]
    if not present:
        return main
    if len(present) != len(RESIDUAL):
        missing = sorted(set(RESIDUAL) - set(present))
        raise KeyError(f"{prefix}: residual factor(s) {', '.join(missing)} missing")
    u, s, v = (state[prefix + name].double() for name in RESIDUAL)
    if u.dim() != 2 or v.dim() != 2 or s.dim() != 1 or u.shape[1] != s.shape[0] or v.shape[0] != s.shape[0] \
            or (u.shape[0], v.shape[1]) != tuple(main.shape):
        raise ValueError(f"{prefix}: residual factors of shapes {tuple(u.shape)}, {tuple(s.shape)}, {tuple(v.shape)} "
                         f"do not make a {tuple(main.shape)} weight")
    return (main.double() + (u * s[None, :]) @ v).to(main.dtype)
