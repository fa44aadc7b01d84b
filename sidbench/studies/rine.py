"""RINE ablations (paper Table 6): the full model vs no TIE, no contrastive loss, the last block only,
and block outputs instead of the ln_2 tokens; same seed, data and epochs for every variant."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..api.errors import SidbenchError
from .runner import parse_list, wide

if TYPE_CHECKING:
    from .runner import Study

TITLE = "RINE ablations"
FLAGS = ("detector", "epochs", "variants")
DETECTOR = "rine.progan4"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "no_tie": ("no TIE (mean over blocks)", {"tie": False}),
    "no_contrastive": ("no contrastive loss", {"contrastive": False}),
    "last_block": ("last block only", {"blocks": "last"}),
    "block_outputs": ("block outputs (cls_blocks)", {"feature": "cls_blocks"}),
}


def validate(config: dict) -> tuple[list[str], list[int]]:
    """Variants and epochs, checked before any data is loaded."""
    variants = [v.strip() for v in (config.get("variants") or ",".join(VARIANTS)).split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SidbenchError(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    epochs = parse_list("epochs", config.get("epochs"), int)
    if len(epochs) > 1 or (epochs and epochs[0] < 1):
        raise SidbenchError(f"--epochs {config['epochs']}: the rine study takes one positive epoch count")
    return variants, epochs


def run(study: "Study") -> None:
    import pandas as pd

    name = study.config.get("detector") or DETECTOR
    variants, epochs = validate(study.config)
    options = {"epochs": epochs[0]} if epochs else {}
    backbone = study.backbone_name(name)
    dets = {v: study.detector(name, backbone, **{**options, **VARIANTS[v][1]}) for v in variants}
    if not all(type(d).__name__ == "Rine" for d in dets.values()):
        raise SidbenchError(f"--detector {name}: the rine study takes a RINE detector (rine.progan1/2/4, rine.ldm)")
    names = tuple(dict.fromkeys(d.required_features[0] for d in dets.values()))
    data = study.fit_data(backbone, "center_crop", names)
    test = study.test_features(backbone, names, "center_crop")
    long, info = [], {}
    for v, det in dets.items():
        summary = study.fit(det, data, VARIANTS[v][0])
        metrics = study.evaluate(det, test, f"{name} ({VARIANTS[v][0]})", backbone=backbone)
        long.append(metrics.assign(variant=VARIANTS[v][0]))
        info[v] = {"label": VARIANTS[v][0], "options": {k: det.options[k] for k in ("tie", "contrastive", "xi", "blocks",
                                                                                   "feature", "q", "proj_dim", "epochs")},
                   "trainable_parameters": det.n_trainable(),
                   "parameters": {k: list(t.shape) for k, t in det.net.named_parameters()}, "fit": summary}
        study.log(f"{VARIANTS[v][0]}: mean acc {metrics.iloc[-1]['acc']:.4f}, AP {metrics.iloc[-1]['ap']:.4f}")
    long = pd.concat(long, ignore_index=True)
    figures = {"plot.png": variant_plot(long, name, backbone)}
    full = dets.get("full")
    if full is not None:
        importance = full.block_importance()
        info["full"]["block_importance"] = importance
        figures["block_importance.png"] = importance_plot(importance, backbone)
        study.notes.append(f"TIE: learned block weights vs their initial values, correlation "
                           f"{importance['correlation']:.4f} (the released 2-class model: 0.999).")
    study.extra["variants"] = info
    study.extra["detector"] = name
    table = wide(long[["variant", "split", "acc", "ap"]], "variant")
    study.finish(table, long[["variant", *[c for c in long.columns if c != "variant"]]], figures,
                 f"{TITLE}: {name} on {backbone}, {dets[variants[0]].options['epochs']} epoch(s)")


def variant_plot(long: Any, name: str, backbone: str) -> Any:
    """Mean accuracy and AP over the test splits, one bar group per variant."""
    from ..reports.plots import bar_plot

    mean = long[long["split"] == "mean"].melt(id_vars="variant", value_vars=["acc", "ap"], var_name="metric")
    mean["metric"] = mean["metric"].map({"acc": "accuracy", "ap": "AP"})
    return bar_plot(mean, "variant", "value", "metric", title=f"{name} ablations on {backbone} (mean over test splits)",
                    xlabel="", ylabel="")


def importance_plot(importance: dict[str, Any], backbone: str) -> Any:
    """softmax(A) averaged over feature dimensions, per block: learned vs initial."""
    import pandas as pd

    from ..reports.plots import bar_plot

    rows = [{"block": b, "weights": kind, "value": w}
            for kind in ("learned", "initial") if importance.get(kind)
            for b, w in zip(importance["blocks"], importance[kind])]
    corr = importance.get("correlation")
    title = f"TIE block importance on {backbone}" + (f" (corr. learned vs initial A: {corr:.4f})" if corr is not None else "")
    return bar_plot(pd.DataFrame(rows), "block", "value", "weights", title=title, xlabel="block",
                    ylabel="mean softmax weight", percent=False, ylim=None)
