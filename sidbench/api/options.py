"""Detector options, checked against their types before a detector is built.

An option's type is its default's (``DetectorSpec.options``): a bool takes only true/false, an int only
integers, a float any number, a string a string, a list a list; a ``None`` default takes anything. An
option that takes several kinds of value names them in ``DetectorSpec.option_types`` (e.g. RINE's
``blocks``: ``(str, int, list)`` for ``"all"``, ``-1`` or ``[0, 11, 23]``). Unknown options get
"did you mean". Values are checked wherever they come from: ``NAME[key=value]``, ``--set``, TOML files,
Python keyword arguments.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from .errors import SidbenchError

SPECIAL = {"preprocess": str}  # options every detector takes (the protocol override)
# Options that size memory, with the range a value must lie in wherever it comes from (a flag, a TOML file, a
# checkpoint's metadata): checked before anything is allocated from it. 4096 px is 8x the largest test crop
# any detector here uses; a batch of 4096 images of 224 px is 2.4 GB of pixels (a run's --batch-size is
# capped there too, with a message).
SIZE_LIMITS: dict[str, tuple[int, int]] = {
    "image_size": (1, 4096), "crop_size": (1, 4096), "load_size": (1, 4096), "batch_size": (1, 4096),
    "proj_dim": (1, 65536), "cache_size": (0, 10_000_000),
}
_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
          tuple: "a list", dict: "a table", type(None): "none"}


def option_types(default: Any) -> tuple[type, ...] | None:
    """The types an option with this default accepts (None: any)."""
    if default is None:
        return None
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, int):
        return (int,)
    if isinstance(default, float):
        return (int, float)
    if isinstance(default, (list, tuple)):
        return (list, tuple)
    return (type(default),)


def types_of(spec: Any) -> dict[str, tuple[type, ...] | None]:
    """Every option of ``spec`` and the types it accepts (declared, else from its default)."""
    declared = dict(getattr(spec, "option_types", {}) or {})
    out = {k: option_types(v) for k, v in spec.options.items()}
    for k, t in declared.items():
        out[k] = t if isinstance(t, tuple) else (t,)
    return out


def describe(types: tuple[type, ...] | None) -> str:
    """``(str, list)`` -> ``"a string or a list"``; None -> ``"any value"``."""
    if types is None:
        return "any value"
    names = list(dict.fromkeys(_NAMES.get(t, t.__name__) for t in types if not (t is int and float in types)))
    return " or ".join(names)


def accepts(types: tuple[type, ...] | None, value: Any) -> bool:
    if types is None:
        return True
    if isinstance(value, bool):  # a bool is an int to Python, never to a user
        return bool in types
    return isinstance(value, types)


def check_options(spec: Any, options: Mapping[str, Any]) -> None:
    """Raise a one-line :class:`SidbenchError` for an unknown option or a value of the wrong type."""
    types = {**types_of(spec), **{k: (t,) for k, t in SPECIAL.items()}}
    unknown = sorted(set(options) - set(types))
    if unknown:
        hints = [f"{k!r} (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, list(spec.options), n=1))
                 else repr(k) for k in unknown]
        raise SidbenchError(f"detector {spec.name!r} has no option {', '.join(hints)}; it takes "
                            f"{', '.join(sorted(spec.options)) or 'none'} (`sidbench list detectors {spec.name}`)")
    for key, value in options.items():
        if value is None and key in spec.options and spec.options[key] is None:
            continue  # an option off by default can be turned off explicitly
        if not accepts(types[key], value):
            default = spec.options.get(key)
            raise SidbenchError(f"detector {spec.name!r}: invalid option value {key}={value!r}: expected "
                                f"{describe(types[key])}, like the default {default!r}")
        if (problem := out_of_bounds(key, value)) is not None:
            raise SidbenchError(f"detector {spec.name!r}: invalid option value {key}={value!r}: {problem}")


def out_of_bounds(key: str, value: Any) -> str | None:
    """Why ``value`` is not a usable size for option ``key`` (:data:`SIZE_LIMITS`), or None when it is (or
    ``key`` sizes nothing)."""
    if key not in SIZE_LIMITS or value is None:
        return None
    lo, hi = SIZE_LIMITS[key]
    if isinstance(value, bool) or not isinstance(value, int):
        return f"a size must be an integer from {lo} to {hi}"
    if not lo <= value <= hi:
        return f"must be from {lo} to {hi}"
    return None
