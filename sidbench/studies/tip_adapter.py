"""Tip-Adapter: accuracy vs cache size (shots per class) and vs alpha (0 = zero-shot CLIP).

Cache-size sweep: each point is the published fit (alpha and beta searched on the validation split).
Alpha sweep: one cache of ``--alpha-shots`` per class; alpha fixed at each grid value, beta searched on
the validation split over Tip-Adapter's beta grid (``--beta B`` fixes it instead).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..api.errors import SidbenchError
from .runner import parse_list

if TYPE_CHECKING:
    import torch

    from .runner import Study

TITLE = "Tip-Adapter: cache size and alpha"
FLAGS = ("shots", "alphas", "alpha_shots", "beta")
SHOTS = (1, 2, 4, 8, 16, 64, 256, 500)
ALPHAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
ALPHA_SHOTS = 16


def run(study: "Study") -> None:
    import pandas as pd

    from ..api.fitting import few_shot

    shots, alphas, alpha_shots, beta = _grid(study.config)
    available = min(sum(r.label == c for r in study.data.train) for c in (0, 1))
    if available < 1:
        raise SidbenchError("study tip_adapter: the training data needs real and fake images")
    capped = list(dict.fromkeys(min(k, available) for k in shots))
    alpha_k = min(alpha_shots, available)
    if capped != list(shots):
        study.notes.append(f"Shots capped at {available} per class (what the training data has).")
    backbone = study.backbone_name("tip_adapter")
    largest = max(*capped, alpha_k)
    train = few_shot(study.data.train, largest, study.seed)
    data = study.fit_data(backbone, study.protocol("tip_adapter"), ("image_embed",), train=train)
    test = study.test_features(backbone, ("image_embed",), study.protocol("tip_adapter"))
    rows = []
    for k in capped:
        det = study.detector("tip_adapter", backbone, shots=k)
        summary = study.fit(det, data, f"{k} shots")
        rows.append(_row(study, det, test, "cache size", k, k, summary.get("val_acc"), f"tip_adapter[shots={k}]"))
    det = study.detector("tip_adapter", backbone, shots=alpha_k, search=False)
    study.fit(det, data, f"alpha sweep cache ({alpha_k} shots)")
    val = det.validation_features(data) if data.has_val else None
    if val is None and beta is None:
        study.notes.append("No validation split: beta kept at its initial value in the alpha sweep.")
    for a in alphas:
        det.alpha = a
        det.beta = beta if beta is not None or val is None else search_beta(det, *val, a)
        rows.append(_row(study, det, test, "alpha", a, alpha_k, _val_acc(det, val),
                         f"tip_adapter[shots={alpha_k},alpha={a:g}]"))
    study.extra["beta"] = "searched on validation" if beta is None else beta
    long = pd.concat(rows, ignore_index=True)
    table = long[long["split"] == "mean"][["sweep", "value", "shots", "cache", "alpha", "beta", "val_acc", "acc", "ap"]]
    table = table.rename(columns={"val_acc": "val acc", "acc": "mean acc", "ap": "mean AP"}).reset_index(drop=True)
    study.finish(table, long, {"plot.png": plot(table, backbone)}, f"{TITLE} ({backbone})")


def validate(cfg: dict[str, Any]) -> None:
    """Check the grids before any data is loaded."""
    _grid(cfg)


def _grid(cfg: dict[str, Any]) -> tuple[list[int], list[float], int, float | None]:
    shots = parse_list("shots", cfg.get("shots"), int, SHOTS)
    alphas = parse_list("alphas", cfg.get("alphas"), float, ALPHAS)
    alpha_shots = parse_list("alpha-shots", cfg.get("alpha_shots"), int, [ALPHA_SHOTS])
    if min(shots) < 1 or len(alpha_shots) != 1 or alpha_shots[0] < 1:
        raise SidbenchError("--shots/--alpha-shots: give positive numbers of images per class")
    if min(alphas) < 0:
        raise SidbenchError(f"--alphas {cfg.get('alphas')}: alpha is a non-negative weight")
    beta = cfg.get("beta") or "search"
    if beta != "search":
        beta = parse_list("beta", beta, float)
        if len(beta) != 1 or beta[0] <= 0:
            raise SidbenchError(f"--beta {cfg.get('beta')}: give 'search' or one positive number")
        beta = beta[0]
    return shots, alphas, alpha_shots[0], None if beta == "search" else beta


def search_beta(det: Any, f: "torch.Tensor", y: "torch.Tensor", alpha: float) -> float:
    """The beta of Tip-Adapter's grid with the best validation accuracy at this fixed alpha (first best wins)."""
    import torch

    betas = det.beta_grid()
    best, best_acc = betas[0], -1.0
    with torch.no_grad():
        for b in betas:
            acc = float((det.logits(f, alpha, b).argmax(-1) == y.long()).float().mean())
            if acc > best_acc:
                best, best_acc = b, acc
    return best


def _val_acc(det: Any, val: Any) -> float | None:
    import torch

    if val is None:
        return None
    with torch.no_grad():
        return float((det.logits(val[0]).argmax(-1) == val[1].long()).float().mean())


def _row(study: "Study", det: Any, test: Any, sweep: str, value: float, shots: int, val_acc: float | None,
         name: str) -> Any:
    metrics = study.evaluate(det, test, name)
    cache = det.cache_size
    return metrics.assign(sweep=sweep, value=value, shots=shots, cache=cache, alpha=det.alpha, beta=det.beta,
                          val_acc=val_acc)


def plot(table: Any, backbone: str) -> Any:
    """Two panels: mean test accuracy vs cache size (N*K), and vs alpha."""
    from ..reports.plots import line_plot, new_figure

    fig, (left, right) = new_figure(10.0, 4.0, 1, 2)
    size = table[table["sweep"] == "cache size"].assign(metric="accuracy")
    line_plot(size.astype({"cache": float}), "cache", "mean acc", title=f"vs cache size ({backbone})",
              xlabel="cache size N*K (log scale)", ylabel="mean test accuracy", ax=left)
    left.set_xscale("log", base=2)
    alpha = table[table["sweep"] == "alpha"]
    shots = int(alpha["shots"].iloc[0]) if len(alpha) else 0
    line_plot(alpha.astype({"alpha": float}), "alpha", "mean acc", title=f"vs alpha ({shots} shots/class; 0 = zero-shot)",
              xlabel="alpha", ylabel="mean test accuracy", ax=right)
    return fig
