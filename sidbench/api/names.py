"""The detector-name grammar, in one place: ``family.variant[key=value,...]@CHECKPOINT``."""
from __future__ import annotations

import json
import re
from typing import Any, Iterable

from .errors import SidbenchError

_OPTION_SPLIT = re.compile(r",(?![^\[]*\])")  # commas inside [..] or a JSON list do not separate


def split_name(name: str) -> tuple[str, str | None]:
    """``"rine.progan2@/path/ckpt.pth"`` -> ``("rine.progan2", "/path/ckpt.pth")``."""
    base, sep, weights = name.partition("@")
    return base.strip(), (weights.strip() or None) if sep else None


def split_options(base: str) -> tuple[str, dict[str, Any]]:
    """``"rine.progan4[tie=false,blocks=last]"`` -> ``("rine.progan4", {"tie": False, "blocks": "last"})``.

    Values are JSON when they parse (``false``, ``2``, ``[30,100]``), else strings.
    """
    m = re.fullmatch(r"\s*([^\[\]]+?)\s*\[(.*)\]\s*", base)
    if not m:
        if "[" in base or "]" in base:
            raise SidbenchError(f"detector {base!r}: write options as NAME[key=value,key=value]")
        return base.strip(), {}
    items = filter(None, (i.strip() for i in _OPTION_SPLIT.split(m.group(2))))
    return m.group(1), parse_key_values(items, f"detector {base!r}")


def spec_name(name: str) -> str:
    """The bare spec or family name of ``family.variant[...]@CKPT``."""
    return split_options(split_name(name)[0])[0]


def split_list(text: str) -> list[str]:
    """``"a,b[x=1,y=2],c"`` -> ``["a", "b[x=1,y=2]", "c"]`` (the ``--detectors`` list)."""
    return [d.strip() for d in _OPTION_SPLIT.split(text) if d.strip()]


def parse_key_values(items: Iterable[str], where: str) -> dict[str, Any]:
    """``["epochs=2", "tie=false"]`` -> ``{"epochs": 2, "tie": False}``: JSON values when they parse, else strings."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SidbenchError(f"{where}: option {item!r} is not key=value")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value.strip()
    return options


def option_text(value: Any) -> str:
    """How an option value is written in a name: strings bare, everything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)


def label(name: str, options: dict[str, Any]) -> str:
    """``label("rine.progan4", {"tie": False})`` -> ``"rine.progan4[tie=false]"`` (the name shown in results)."""
    if not options:
        return name
    return name + "[" + ",".join(f"{k}={option_text(v)}" for k, v in options.items()) + "]"
