"""Compatibility alias: the specs live in :mod:`sidbench.api.specs` (import them from :mod:`sidbench.api`)."""
from .api.specs import *  # noqa: F401,F403
from .api.specs import BackboneSpec, DatasetSpec, DetectorSpec, PerturbationSpec, PixelInput, resolve_factory  # noqa: F401
