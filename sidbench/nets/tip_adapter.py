"""Tip-Adapter's arithmetic (Zhang et al., ECCV 2022; gaopengcuhk/Tip-Adapter): the text classifier from prompt
lists, the zero-shot and cache logits, and the reference's alpha/beta grid search. ``detectors/tip_adapter.py``
holds the detectors (CLIP zero-shot, Tip-Adapter, Tip-Adapter-F) built on them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

    from sidbench.api import Backbone

ZERO_SHOT_SCALE = 100.0  # the fixed CLIP logit scale of the zero-shot term


def text_classifier(backbone: "Backbone", prompts: dict[str, Any]) -> "torch.Tensor":
    """W_c [2, E]: per class, embed each template, L2-normalise, average, L2-normalise again."""
    import torch.nn.functional as F
    import torch

    rows = []
    for cls in ("real", "fake"):
        emb = F.normalize(backbone.text_embed(list(prompts[cls])), dim=-1)
        rows.append(F.normalize(emb.mean(0), dim=-1))
    return torch.stack(rows)


def zero_shot_logits(f: "torch.Tensor", weights: "torch.Tensor") -> "torch.Tensor":
    """100 * f W_c^T for L2-normalised image features f [B, E] -> [B, 2]."""
    return ZERO_SHOT_SCALE * f @ weights.t()


def binary_score(logits: "torch.Tensor") -> "torch.Tensor":
    """The harness's one logit per image: logit_fake - logit_real."""
    return logits[:, 1] - logits[:, 0]


def cache_logits(affinity: "torch.Tensor", values: "torch.Tensor", beta: float) -> "torch.Tensor":
    """exp(-beta (1 - f F^T)) L for affinities f F^T [B, NK] and one-hot values L [NK, 2]."""
    return (-beta * (1.0 - affinity)).exp() @ values


def tip_logits(f: "torch.Tensor", weights: "torch.Tensor", affinity: "torch.Tensor", values: "torch.Tensor",
               alpha: float, beta: float) -> "torch.Tensor":
    """100 f W_c^T + alpha exp(-beta (1 - f F^T)) L  -> [B, 2]."""
    return zero_shot_logits(f, weights) + alpha * cache_logits(affinity, values, beta)


def search_grid(scale: Sequence[float], steps: Sequence[int]) -> tuple[list[float], list[float]]:
    """The reference grid: beta over [0.1, scale[0]) in steps[0] steps, alpha over [0.1, scale[1]) in steps[1]."""
    betas = [i * (scale[0] - 0.1) / steps[0] + 0.1 for i in range(steps[0])]
    alphas = [i * (scale[1] - 0.1) / steps[1] + 0.1 for i in range(steps[1])]
    return betas, alphas


def search_hp(f: "torch.Tensor", labels: "torch.Tensor", weights: "torch.Tensor", affinity: "torch.Tensor",
              values: "torch.Tensor", scale: Sequence[float], steps: Sequence[int]) -> tuple[float, float, float]:
    """(alpha, beta, accuracy) with the best accuracy on (f, labels); the first best in grid order wins."""
    import torch

    betas, alphas = search_grid(scale, steps)
    zero_shot, y = zero_shot_logits(f, weights), labels.long()
    alpha_t = torch.tensor(alphas, dtype=f.dtype, device=f.device)
    best = (-1.0, 0.0, 0.0)
    for beta in betas:
        cache = cache_logits(affinity, values, beta)
        logits = zero_shot[None] + alpha_t[:, None, None] * cache[None]  # [alphas, B, 2]
        acc = (logits.argmax(-1) == y[None]).float().mean(-1)
        i = int(acc.argmax())
        if float(acc[i]) > best[0]:
            best = (float(acc[i]), alphas[i], beta)
    return best[1], best[2], best[0]
