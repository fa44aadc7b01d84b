"""AP and ROC-AUC rank by the logit: a float32 sigmoid saturates to exactly 1.0 above logit ~16.6, which ties
confident fakes with confident reals (the README's example: AP 92.8% by logit, 85.4% by float32 sigmoid)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from sidbench.results.metrics import binary_metrics


def example() -> tuple[np.ndarray, np.ndarray]:
    """1000 reals ~ N(5, 10) and 1000 fakes ~ N(25, 10) logits: a confident detector with a shifted threshold."""
    rng = np.random.default_rng(0)
    return np.r_[np.zeros(1000), np.ones(1000)].astype(int), np.r_[rng.normal(5, 10, 1000), rng.normal(25, 10, 1000)]


def test_ap_and_auc_rank_by_the_logit_not_a_float32_sigmoid():
    y, logit = example()
    p32 = torch.sigmoid(torch.tensor(logit, dtype=torch.float32)).double().numpy()  # the reference scripts' scores
    assert (p32 == 1.0).sum() > 800 and logit[p32 == 1.0].min() > 16.5  # saturated: ties among ~900 images
    m = binary_metrics(y, logit)
    assert m["ap"] == average_precision_score(y, logit) and m["auc"] == roc_auc_score(y, logit)
    assert round(m["ap"], 4) == 0.9278 and round(average_precision_score(y, p32), 4) == 0.8541
    assert round(m["auc"], 4) == 0.9246 and round(roc_auc_score(y, p32),4) == 0.8970
