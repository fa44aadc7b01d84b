"""The evaluation engine: sources (backbones, pixel detectors' networks), batched and cached inputs,
the one scoring path (head padding, multi-crop averaging), and fitting through :class:`EngineFitData`."""
from __future__ import annotations

from .fitting import EngineFitData, fit_detector, view_rng
from .inputs import ExtractOptions, extract, iter_outputs
from .scoring import ScoreContext, head_logits, score_features, score_group, source_outputs
from .sources import BackboneSource, PixelSource, Source

__all__ = ["BackboneSource", "EngineFitData", "ExtractOptions", "PixelSource", "ScoreContext", "Source", "extract",
           "fit_detector", "head_logits", "iter_outputs", "score_features", "score_group", "source_outputs", "view_rng"]
