"""Every metric against an independent computation written out here (not scikit-learn)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sidbench.results.metrics import binary_metrics, metrics_table


def hand_ap(y, s):
    """Average precision as the mean of precision at each positive's rank (ties broken as a group)."""
    y, s = np.asarray(y), np.asarray(s, float)
    total = 0.0
    for t in np.unique(s)[::-1]:
        at = s == t
        above = s >= t
        prec = y[above].sum() / above.sum()
        total += prec * y[at].sum()
    return total / y.sum()


def hand_auc(y, s):
    """Probability that a random fake outranks a random real (ties count one half)."""
    pos, neg = np.asarray(s)[np.asarray(y) == 1], np.asarray(s)[np.asarray(y) == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_match_hand_computation(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounded: ties on purpose
    m = binary_metrics(y, s)
    pred = s > 0
    tp, fp, fn = (pred & (y == 1)).sum(), (pred & (y == 0)).sum(), (~pred & (y == 1)).sum()
    assert m["n_real"] == (y == 0).sum() and m["n_fake"] == (y == 1).sum()
    assert m["acc"] == pytest.approx((pred == y).mean())
    assert m["real_acc"] == pytest.approx((~pred[y == 0]).mean())
    assert m["fake_acc"] == pytest.approx(pred[y == 1].mean())
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["ap"] == pytest.approx(hand_ap(y, s))
    assert m["auc"] == pytest.approx(hand_auc(y, s))


def test_threshold_is_half_probability():
    # logit 0 is P(fake) = 0.5 exactly: not above the threshold, so predicted real.
    m = binary_metrics([0, 1], [0.0, 0.0])
    assert m["real_acc"] == 1.0 and m["fake_acc"] == 0.0


def test_one_class_split_has_nan_ranking_metrics():
    m = binary_metrics([1, 1, 1], [0.3, -0.2, 2.0])
    assert math.isnan(m["ap"]) and math.isnan(m["auc"]) and math.isnan(m["real_acc"])
    assert m["fake_acc"] == pytest.approx(2 / 3)


def test_group_means_are_unweighted_over_splits():
    rows = []
    # split a: 2 images all right; split b: 8 images half right; both in group gan; c in diffusion
    for split, group, labels, logits in [
        ("a", "gan", [0, 1], [-1, 1]),
        ("b", "gan", [0, 0, 0, 0, 1, 1, 1, 1], [-1, -1, 1, 1, 1, 1, -1, -1]),
        ("c", "diffusion", [0, 1], [1, -1]),
    ]:
        for lab, lo in zip(labels, logits):
            rows.append(dict(detector="d", split=split, group=group, perturbation="none", label=lab, logit=lo))
    table = metrics_table(pd.DataFrame(rows)).set_index("split")
    assert table.loc["a", "acc"] == 1.0 and table.loc["b", "acc"] == 0.5 and table.loc["c", "acc"] == 0.0
    assert table.loc["mean:gan", "acc"] == pytest.approx(0.75)  # not 6/10 (pooled)
    assert table.loc["mean:diffusion", "acc"] == 0.0
    assert table.loc["mean:all", "acc"] == pytest.approx(0.5)  # mean of 1, .5, 0 (not of group means)
    assert table.loc["mean:all", "n_real"] == 6 and table.loc["mean:all", "n_fake"] == 6
    assert table.loc["mean:gan", "group"] == "gan"
