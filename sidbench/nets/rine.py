"""RINE's trainable part (Koutlis & Papadopoulos, ECCV 2024; reference code mever-team/rine, Apache-2.0): the
projections, TIE (learned softmax weights over the CLIP blocks), the head, and the supervised contrastive loss
it trains with. ``detectors/rine.py`` is the detector around them."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def build_network(n_blocks: int, width: int, q: int, dim: int, tie: bool, seed: int = 0) -> "torch.nn.Module":
    """proj1 / alpha / proj2 / head with the reference's module positions (Dropout p=0.5 first).

    Seeded: ``alpha`` ~ N(0, 1) is drawn from ``torch.Generator().manual_seed(seed)`` and the
    Linear layers are initialised under ``torch.manual_seed(seed)``, so the same seed gives the same start.
    """
    import torch
    from torch import nn

    def stack(first_in: int, n: int) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Dropout(0.5)]
        for i in range(n):
            layers += [nn.Linear(first_in if i == 0 else dim, dim), nn.ReLU(), nn.Dropout(0.5)]
        return nn.Sequential(*layers)

    net = nn.Module()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net.proj1 = stack(width, q)
        net.proj2 = stack(dim, q)
        net.head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(0.5), nn.Linear(dim, 1))
    if tie:
        net.alpha = nn.Parameter(initial_alpha(n_blocks, dim, seed))
    return net


def initial_alpha(n_blocks: int, dim: int, seed: int) -> "torch.Tensor":
    """TIE's starting value A ~ N(0, 1) of shape [1, n_blocks, dim] for ``seed``."""
    import torch

    return torch.randn(1, n_blocks, dim, generator=torch.Generator().manual_seed(seed))


def embed(net: "torch.nn.Module", tokens: "torch.Tensor") -> "torch.Tensor":
    """z [B, d'] from block tokens [B, L, W]: proj1 per block, TIE (or mean) over blocks, proj2."""
    import torch

    g = net.proj1(tokens.float())
    if hasattr(net, "alpha"):
        z0 = (torch.softmax(net.alpha, dim=1) * g).sum(dim=1)
    else:
        z0 = g.mean(dim=1)
    return net.proj2(z0)


def supcon_loss(z: "torch.Tensor", labels: "torch.Tensor", temperature: float = 0.07,
                base_temperature: float = 0.07) -> "torch.Tensor":
    """Supervised contrastive loss (Khosla et al. 2020), one view per sample, all anchors.

    ``z`` must be L2-normalised. An anchor without positives contributes 0 (as in the reference
    repository's guard against 0/0).
    """
    import torch

    n = z.shape[0]
    logits = z @ z.t() / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    not_self = 1.0 - torch.eye(n, device=z.device)
    positives = (labels.view(-1, 1) == labels.view(1, -1)).float() * not_self
    log_prob = logits - torch.log((torch.exp(logits) * not_self).sum(1, keepdim=True))
    n_pos = positives.sum(1).clamp_min(1.0)
    mean_log_prob_pos = (positives * log_prob).sum(1) / n_pos
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()
