"""Compatibility alias: the hook specifications live in :mod:`sidbench.api.hookspecs`."""
from .api.hookspecs import *  # noqa: F401,F403
from .api.hookspecs import hookimpl, hookspec  # noqa: F401
