"""What run.json says: the one builder of a results folder's run.json (``sidbench run`` and ``sidbench ablate``
alike: the RunConfig, each detector, the plugins, backbones, counts, seed, timings and environment, plus the
caller's own fields such as a study's), and each detector's entry (identity, weights or fitted checkpoint, code
hash, fit summary, training data, fitted values)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .build import SourcePool
from .config import RunConfig
from .fit import checkpoint_path

if TYPE_CHECKING:
    from ..api.detector import Detector
    from ..registry.plugins import Plugins


def run_json(cfg: RunConfig, name: str, detectors: Sequence[dict[str, Any]], *, plugins: "Plugins",
             backbones: dict[str, Any], counts: dict[str, Any], timings: dict[str, float],
             **extra: Any) -> dict[str, Any]:
    """run.json of a results folder: ``detectors`` are entries from :func:`describe_detector`; ``extra`` are the
    caller's own keys (a run's perturbations and operating points, a study's ``study``)."""
    from ..results.folder import environment

    return {"name": name,
            "config": {**dataclasses.asdict(cfg), "numerics": cfg.numerics()},  # what cfg.identity() holds, and more
            "detectors": list(detectors),
            "plugins": plugin_versions(plugins),
            "backbones": backbones,
            **extra,
            "counts": counts,
            "seed": cfg.seed,
            "timings_s": timings,
            "environment": environment()}


def write_run_record(out: Path, cfg: RunConfig, name: str, detectors: Sequence[dict[str, Any]], **fields: Any) -> None:
    """Write ``out/run.json`` from :func:`run_json` (the one writer of run.json)."""
    from ..results.folder import write_run_json

    write_run_json(out / "run.json", run_json(cfg, name, detectors, **fields))


def detector_info(det: "Detector", cfg: RunConfig, pool: SourcePool, out: Path | None = None) -> dict[str, Any]:
    """The run.json entry of a detector of ``sidbench run``: its backbone as the run read it, a pixel
    detector's precision, and the checkpoint this run (or its interrupted start) fitted in ``out``."""
    backbone = None if det.input == "pixels" else SourcePool.key(det, cfg)
    source = pool.pixels.get(det.name) if det.input == "pixels" else None
    fitted = checkpoint_path(out, det) if out is not None and getattr(det, "fitted_in_run", False) else None
    return describe_detector(det, backbone, precision=source.precision if source is not None else None,
                             checkpoint=fitted if fitted is not None and fitted.is_file() else None)


def describe_detector(det: "Detector", backbone: str | None, *, name: str | None = None, precision: str | None = None,
                      checkpoint: Path | None = None) -> dict[str, Any]:
    """A detector's run.json entry, shown as ``name`` (default its own): what it is, what it read, the weights
    or fitted ``checkpoint`` behind it (with their SHA-256), its code hash, fit summary and training data."""
    from ..api.checkpoints import file_sha256
    from ..api.code import code_identity

    s = det.spec
    info = {"name": name or det.name, "spec": s.name, "origin": s.origin, "input": det.input, "backbone": backbone,
            "features": list(det.required_features), "preprocess": det.preprocess,
            "options": {k: v for k, v in det.options.items() if _plain(v)},
            "training_data": list(det.trained_on if det.trained_on is not None else s.training_data),
            "published_training_data": list(s.training_data), "paper": s.paper, "license": s.license}
    if det.input == "pixels":
        info["precision"] = precision
    if det.weights_path:
        info["weights"] = {"path": det.weights_path, "sha256": file_sha256(Path(det.weights_path))}
        info["options_from_checkpoint"] = {k: v for k, v in det.options_from_checkpoint.items() if _plain(v)}
    if checkpoint is not None:  # fitted by this run (or its interrupted start): from the first run
        info["checkpoint"] = {"path": str(checkpoint), "sha256": file_sha256(checkpoint, remember=False)}
    info["code"] = code_identity(det)  # the plugin's version and a hash of its module source
    if det.fit_summary is not None:
        info["fit"] = det.fit_summary
    if det.training is not None:
        info["training"] = det.training
    fitted = fitted_values(det)
    if fitted:
        info["fitted_values"] = fitted
    return info


def plugin_versions(plugins: "Plugins") -> list[dict[str, Any]]:
    """Every loaded plugin: name, where it came from, its version, and a hash of its file when it is one."""
    from ..api.code import file_digest

    out = []
    for p in plugins.loaded:
        digest = file_digest(p.origin) if p.source in ("builtin", "plugins dir") else None
        out.append({"name": p.name, "source": p.source, "version": p.version, "origin": p.origin,
                    "source_sha256": digest[:16] if digest else None})
    return out


def fitted_values(det: "Detector") -> dict[str, Any]:
    """What a fit chose besides tensors (``extra_metadata``: a k picked on validation, a threshold), for
    run.json; a long value (a per-epoch history, a vector) is named with its size (it is in the checkpoint)."""
    import json

    if not det.fitted or not det.needs_fit:
        return {}
    try:
        extra = det.extra_metadata() or {}
    except Exception:  # noqa: BLE001 - provenance must not fail a finished run
        return {}
    out: dict[str, Any] = {}
    for key, value in extra.items():
        text = json.dumps(value, default=str)
        out[key] = value if len(text) <= 500 else f"({len(text)} characters of JSON, in the checkpoint's metadata)"
    return out


def _plain(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, tuple))
