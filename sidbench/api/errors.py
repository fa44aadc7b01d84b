"""Errors a user can fix: one sentence saying what, where and how to fix it."""
from __future__ import annotations

import difflib
from typing import Iterable


class SidbenchError(Exception):
    """Base of every error the CLI turns into a one-line message (exit code 2)."""

    exit_code = 2


class PluginError(SidbenchError):
    """A plugin could not be loaded or declared something invalid."""


class UnknownNameError(SidbenchError, KeyError):
    """A detector, dataset, backbone or perturbation name that is not registered."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name = kind, name
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        msg = f"unknown {kind} {name!r}.{hint} Run `sidbench list {kind}s` to see them all."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class WeightsError(SidbenchError):
    """Weights or a checkpoint are missing, unsafe or of the wrong shape."""


class DataError(SidbenchError):
    """A data folder is missing or has no usable layout."""


class FitRequiredError(SidbenchError):
    """A detector that must be fitted was given neither a checkpoint nor training data."""
