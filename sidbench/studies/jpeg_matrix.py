"""Train at JPEG quality A, test at quality B (the 40/65/90 table of the AID-challenge report):
training and validation features come from JPEG-A versions of the images, test features from JPEG-B."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..api.errors import SidbenchError
from .runner import parse_list

if TYPE_CHECKING:
    from .runner import Study

TITLE = "JPEG train x test quality"
FLAGS = ("detector", "qualities")
DETECTOR = "clip_svm"
QUALITIES = (40, 65, 90)


def validate(config: dict) -> list[int]:
    """The quality grid, checked before any data is loaded."""
    qualities = parse_list("qualities", config.get("qualities"), int, QUALITIES)
    if not all(1 <= q <= 100 for q in qualities):
        raise SidbenchError(f"--qualities {config.get('qualities')}: JPEG qualities are 1..100")
    return qualities


def run(study: "Study") -> None:
    import pandas as pd

    from ..data.perturb import parse_perturbations

    name = study.config.get("detector") or DETECTOR
    qualities = validate(study.config)
    perts = dict(zip(qualities, parse_perturbations("jpeg:" + ",".join(map(str, qualities)), study.plugins, False)))
    backbone = study.backbone_name(name)
    probe = study.detector(name, backbone)
    if not probe.needs_fit:
        raise SidbenchError(f"--detector {name}: the jpeg_matrix study fits the detector at each quality; "
                            f"{name} has nothing to fit (try clip_svm, univfd or rine.progan4)")
    names, protocol = probe.required_features, probe.preprocess
    rows = []
    for qa in qualities:
        det = study.detector(name, backbone)
        study.fit(det, study.fit_data(backbone, protocol, names, perturbation=perts[qa]), f"train q{qa}")
        det.bind(study.backbone(backbone))
        for qb in qualities:
            metrics = study.evaluate(det, study.test_features(backbone, names, protocol, perts[qb]),
                                     f"{name} (train q{qa})", perts[qb].name, backbone)
            rows.append(metrics.assign(train_quality=qa, test_quality=qb))
    long = pd.concat(rows, ignore_index=True)
    mean = long[long["split"] == "mean"]
    table = mean.pivot(index="train_quality", columns="test_quality", values="acc").reindex(index=qualities,
                                                                                             columns=qualities)
    table = table.rename(columns=lambda q: f"test q{q}").reset_index().rename(columns={"train_quality": "train quality"})
    table["train quality"] = [f"q{q}" for q in table["train quality"]]
    study.extra["detector"] = name
    fig = heatmap(table.set_index("train quality"), f"{name} on {backbone}: mean accuracy over test splits")
    study.finish(table, long, {"plot.png": fig}, f"{TITLE}: {name} on {backbone} (accuracy, rows train, columns test)",
                 percent=[c for c in table.columns if c.startswith("test q")])


def heatmap(matrix: Any, title: str) -> Any:
    """An annotated accuracy matrix (rows: train quality, columns: test quality)."""
    import numpy as np

    from ..reports.plots import new_figure

    values = matrix.to_numpy(dtype=float)
    fig, ax = new_figure(1.6 + 1.1 * values.shape[1], 1.4 + 0.8 * values.shape[0])
    im = ax.imshow(values, cmap="viridis", vmin=0.5 if np.nanmin(values) >= 0.5 else 0.0, vmax=1.0)
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", color="white" if v < 0.8 else "black")
    ax.set_xticks(range(values.shape[1]), list(matrix.columns))
    ax.set_yticks(range(values.shape[0]), list(matrix.index))
    ax.set_xlabel("test JPEG quality")
    ax.set_ylabel("train JPEG quality")
    ax.set_title(title, fontsize="medium")
    fig.colorbar(im, ax=ax, label="accuracy")
    return fig
