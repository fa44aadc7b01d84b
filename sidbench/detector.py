"""Compatibility alias: :class:`Detector` lives in :mod:`sidbench.api`, ``load_detector`` in :mod:`sidbench`."""
from .api.detector import Detector  # noqa: F401
from .api.names import parse_key_values, split_name, split_options  # noqa: F401


def load_detector(*args, **kwargs):
    """See :func:`sidbench.registry.lookup.load_detector`."""
    from .registry.lookup import load_detector as load

    return load(*args, **kwargs)
