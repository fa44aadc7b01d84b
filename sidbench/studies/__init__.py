"""Ablation studies (``sidbench ablate STUDY``): one module per study, a shared runner.

Each study module defines ``TITLE``, ``FLAGS`` (the study-specific command-line flags it takes)
and ``run(study)``; nothing heavy is imported until a study runs.
"""
from __future__ import annotations

import importlib
from types import ModuleType

STUDIES: dict[str, str] = {
    "rine": "RINE ablations: TIE, contrastive loss, blocks, block features",
    "tip_adapter": "Tip-Adapter: accuracy vs cache size (shots per class) and vs alpha",
    "tip_adapter_f": "Tip-Adapter-F: accuracy vs fine-tuning epochs",
    "jpeg_matrix": "train at JPEG quality A, test at quality B (accuracy matrix)",
    "backbone": "the same detector(s) on several backbones (e.g. CLIP vs DINOv2)",
}


def study_module(name: str) -> ModuleType:
    """The module of study ``name``; an unknown name is a one-line error with close matches."""
    from ..api.errors import SidbenchError

    if name not in STUDIES:
        import difflib

        close = difflib.get_close_matches(name, list(STUDIES), n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise SidbenchError(f"unknown study {name!r}{hint} Studies: {', '.join(STUDIES)}")
    return importlib.import_module(f"{__name__}.{name}")
