"""The one check of detector option types, by the kind of each option's default (replaceable by typed options).

TOML files, ``--set KEY=VALUE`` and ``NAME[key=value]`` all hand over values that may be of the wrong kind
(``max_epochs = "abc"``); a detector would only fail on them deep inside a fit. Options whose default is a
boolean take only booleans, integer defaults take integers, float defaults take numbers; options whose
default is a string, list or None may legitimately take several kinds (``blocks=last`` or ``[0, 11]``),
so the detector checks those itself.
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import SidbenchError


def option_type_error(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` is of the wrong kind for an option whose default is ``default`` (None: fine)."""
    if isinstance(default, bool):
        ok, need = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, need = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, need = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    else:
        return None
    return None if ok else f"{name} must be {need} (like its default {default!r}), got {value!r}"


def check_option_types(detector: str, defaults: Mapping[str, Any], options: Mapping[str, Any]) -> None:
    """Raise one line for the first option in ``options`` whose value is of the wrong kind."""
    for name, value in options.items():
        if name in defaults:
            problem = option_type_error(name, value, defaults[name])
            if problem:
                raise SidbenchError(f"detector {detector!r}: invalid option value ({problem})")
