"""Detector options: declared once per detector, validated here (and only here) wherever a value comes from.

An option is either a plain default in ``DetectorSpec.options`` (its type is the default's: a bool takes
only true/false, an int only integers, a float any number, a string a string, a list a list; a ``None``
default takes anything; ``DetectorSpec.option_types`` may widen it) or an :class:`Option` declaration with
its type, bounds or choices, a one-line doc, and its role:

- ``"network"``: it shapes the network (a width, a depth); a checkpoint's value is restored *before* the
  network is built, and a caller's different value is an error naming both;
- ``"fit"``: it is used (or chosen) by the fit; a checkpoint's value is restored and a contradiction is an
  error naming both (the default for plain options);
- ``"test"``: how the detector is fed or scored at test time; the caller's value overrides a checkpoint's.

Values are checked by :func:`check_options` wherever they come from: ``NAME[key=value]``, ``--set``, TOML
files, Python keyword arguments and checkpoint metadata. ``sidbench list detectors NAME`` prints every
option with its type, default, bounds and doc (:func:`option_rows`).
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
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
ROLES = ("network", "fit", "test")
# Options that say how a detector is fed at test time, not what was fitted: role "test" whatever their
# declaration, and never taken from a checkpoint.
TEST_TIME_OPTIONS = ("preprocess", "precision")
_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
          tuple: "a list", dict: "a table", type(None): "none"}


@dataclass(frozen=True)
class Option:
    """A declared detector option, usable as a value of ``DetectorSpec.options``::

        options={"channels": Option(8, min=1, max=1024, role="network", doc="feature maps of the first conv"),
                 "keep": Option("last", choices=("last", "best"), doc="which epoch's weights to keep")}

    ``type``: a type or a tuple of types (default: the default's, as for plain options; a ``None`` default
    then takes anything); ``choices``: the values allowed; ``min``/``max``: inclusive bounds of a number
    (of each element of a list); ``role``: ``"network"``, ``"fit"`` or ``"test"`` (see the module doc)."""

    default: Any
    type: Any = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    doc: str = ""
    role: str = "fit"
    items: Any = None  # a list option: the type (or types) of its elements

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise SidbenchError(f"Option role {self.role!r}: use one of {', '.join(ROLES)}")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    @property
    def types(self) -> tuple[type, ...] | None:
        """The types a value may have (None: any)."""
        if self.type is not None:
            return tuple(self.type) if isinstance(self.type, (tuple, list)) else (self.type,)
        return option_types(self.default)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (None: it is)."""
        if value is None and (self.default is None or (self.types is not None and type(None) in self.types)):
            return None  # an option off by default can be turned off explicitly
        if not accepts(self.types, value):
            return f"expected {describe(self.types)}"
        if self.choices is not None and not any(_equal(value, c) for c in self.choices):
            return f"use one of {', '.join(_text(c) for c in self.choices)}"
        if self.items is not None and isinstance(value, (list, tuple)):
            kinds = tuple(self.items) if isinstance(self.items, (tuple, list)) else (self.items,)
            if not all(accepts(kinds, v) for v in value):
                return f"expected a list of {describe(kinds).replace('an integer', 'integers').replace('a number', 'numbers').replace('a string', 'strings')}"
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if (self.min is not None and item < self.min) or (self.max is not None and item > self.max):
                return f"expected {self.bounds()}"
        return None

    def bounds(self) -> str:
        """``"1..1024"``, ``">= 1"``, ``"<= 0.5"`` or ``""``."""
        if self.min is not None and self.max is not None:
            return f"{_num(self.min)}..{_num(self.max)}"
        if self.min is not None:
            return f">= {_num(self.min)}"
        return f"<= {_num(self.max)}" if self.max is not None else ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else str(x)


def _text(value: Any) -> str:
    from .names import option_text

    return option_text(value)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return a == b


def split_declarations(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Option]]:
    """``DetectorSpec.options`` as written -> (plain defaults, the :class:`Option` declarations among them)."""
    defaults, declared = {}, {}
    for key, value in options.items():
        if isinstance(value, Option):
            defaults[key], declared[key] = value.default, value
        else:
            defaults[key] = value
    return defaults, declared


def declarations(spec: Any) -> dict[str, Option]:
    """Every option of ``spec`` as an :class:`Option` (plain defaults become ``Option(default)`` with
    ``option_types`` applied)."""
    declared = dict(getattr(spec, "option_decls", {}) or {})
    widened = dict(getattr(spec, "option_types", {}) or {})
    out = {}
    for key, default in spec.options.items():
        opt = declared.get(key) or Option(default)
        if key in widened and opt.type is None:
            t = widened[key]
            opt = dataclasses.replace(opt, type=t if isinstance(t, tuple) else (t,))
        out[key] = opt
    return out


def role_of(spec: Any, key: str) -> str:
    """An option's role (``"test"`` for the protocol override ``preprocess`` and for ``precision``)."""
    if key in TEST_TIME_OPTIONS:
        return "test"
    opt = declarations(spec).get(key)
    return opt.role if opt is not None else "fit"


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
    return {k: o.types for k, o in declarations(spec).items()}


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


def check_options(spec: Any, options: Mapping[str, Any], where: str = "") -> None:
    """Raise a one-line :class:`SidbenchError` for an unknown option or a value its declaration refuses
    (type, choices, bounds); ``where`` names the source when it is not the caller (e.g. a checkpoint)."""
    decls = declarations(spec)
    unknown = sorted(set(options) - set(decls) - set(SPECIAL))
    if unknown:
        hints = [f"{k!r} (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(k, list(spec.options), n=1))
                 else repr(k) for k in unknown]
        raise SidbenchError(f"detector {spec.name!r} has no option {', '.join(hints)}; it takes "
                            f"{', '.join(sorted(spec.options)) or 'none'} (`sidbench list detectors {spec.name}`)")
    for key, value in options.items():
        opt = decls.get(key) or Option(None, SPECIAL[key])
        problem = opt.problem(value) or out_of_bounds(key, value)  # a declaration's bounds, then SIZE_LIMITS
        if problem:
            like = f", like the default {opt.default!r}" if problem.startswith("expected a") else ""
            doc = f" ({key}: {opt.doc})" if opt.doc else ""
            raise SidbenchError(f"detector {spec.name!r}: invalid option value {key}={value!r}"
                                f"{f' in {where}' if where else ''}: {problem}{like}{doc}")


def option_rows(spec: Any) -> list[tuple[str, ...]]:
    """(option, default, type, bounds or choices, role, quickstart, doc) per option, for ``sidbench list``."""
    quick = getattr(spec, "quickstart_options", {}) or {}
    rows = []
    for key, opt in declarations(spec).items():
        limits = ", ".join(_text(c) for c in opt.choices) if opt.choices is not None else opt.bounds()
        rows.append((key, _text(opt.default), describe(opt.types), limits, opt.role,
                     _text(quick[key]) if key in quick else "", opt.doc))
    return rows


def names_with_role(spec: Any, role: str) -> list[str]:
    """The options of ``spec`` whose role (:func:`role_of`) is ``role``, in declaration order."""
    return [k for k, o in declarations(spec).items() if ("test" if k in TEST_TIME_OPTIONS else o.role) == role]


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
