"""The hooks a sidbench plugin can implement. Each returns a list of specs."""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("sidbench")
hookimpl = pluggy.HookimplMarker("sidbench")


@hookspec
def sidbench_detectors() -> list:
    """Return :class:`sidbench.api.DetectorSpec` objects for the detectors this plugin adds."""


@hookspec
def sidbench_datasets() -> list:
    """Return :class:`sidbench.api.DatasetSpec` objects for the data layouts this plugin adds."""


@hookspec
def sidbench_backbones() -> list:
    """Return :class:`sidbench.api.BackboneSpec` objects for the feature extractors this plugin adds."""


@hookspec
def sidbench_perturbations() -> list:
    """Return :class:`sidbench.api.PerturbationSpec` objects for the perturbations this plugin adds."""
