"""Compatibility alias: the error family lives in :mod:`sidbench.api.errors`."""
from .api.errors import *  # noqa: F401,F403
from .api.errors import (DataError, FitRequiredError, PluginError, SidbenchError, UnknownNameError,  # noqa: F401
                         WeightsError)
