"""Tip-Adapter-F: accuracy vs fine-tuning epochs (each point a fresh fit whose cosine schedule spans
its epochs; the epoch kept and alpha, beta are picked on the validation split, as published)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.errors import SidbenchError
from .runner import parse_list

if TYPE_CHECKING:
    from .runner import Study

TITLE = "Tip-Adapter-F: fine-tuning epochs"
FLAGS = ("epochs",)
EPOCHS = (5, 10, 20, 50, 100)


def validate(config: dict) -> list[int]:
    """The epoch grid, checked before any data is loaded."""
    epochs = parse_list("epochs", config.get("epochs"), int, EPOCHS)
    if min(epochs) < 0:
        raise SidbenchError(f"--epochs {config.get('epochs')}: give non-negative epoch counts (0 = Tip-Adapter)")
    return epochs


def run(study: "Study") -> None:
    import pandas as pd

    from ..reports.plots import line_plot
    from ..api.fitting import few_shot

    epochs = validate(study.config)
    backbone = study.backbone_name("tip_adapter_f")
    dets = {e: study.detector("tip_adapter_f", backbone, epochs=e) for e in epochs}
    shots = next(iter(dets.values())).options["shots"]
    data = study.fit_data(backbone, study.protocol("tip_adapter_f"), ("image_embed",),
                          train=few_shot(study.data.train, shots, study.seed))
    test = study.test_features(backbone, ("image_embed",), study.protocol("tip_adapter_f"))
    rows = []
    for e, det in dets.items():
        summary = study.fit(det, data, f"{e} epochs")
        rows.append(study.evaluate(det, test, f"tip_adapter_f[epochs={e}]").assign(epochs=e, epoch_kept=summary.get("epoch"),
                                                     cache=det.cache_size, alpha=det.alpha,
                                                     beta=det.beta, val_acc=summary.get("val_acc")))
    long = pd.concat(rows, ignore_index=True)
    table = long[long["split"] == "mean"][["epochs", "epoch_kept", "cache", "alpha", "beta", "val_acc", "acc", "ap"]]
    table = table.rename(columns={"epoch_kept": "epoch kept", "val_acc": "val acc", "acc": "mean acc",
                                  "ap": "mean AP"}).reset_index(drop=True)
    fig = line_plot(table.astype({"epochs": float}), "epochs", "mean acc", xlabel="fine-tuning epochs",
                    ylabel="mean test accuracy", title=f"Tip-Adapter-F on {backbone}: cache {table['cache'].iloc[0]}")
    study.finish(table, long, {"plot.png": fig}, f"{TITLE} ({backbone}, {shots} shots per class)")
