"""What a detector takes back from a checkpoint besides its tensors: the options it was fitted with (validated,
never the test-time ones, a contradiction with the caller's in one line), metadata of the kinds sidbench
writes, and the shapes of tensors that were allocated empty before a fit (:meth:`sidbench.api.Detector.load`).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import SidbenchError, WeightsError
from .names import option_text
from .options import TEST_TIME_OPTIONS, check_options
from .specs import DetectorSpec

if TYPE_CHECKING:
    import torch


def checked_metadata(meta: Any, path: str) -> dict[str, Any]:
    """sidbench's checkpoint metadata, with every standard field of the kind it must be (else one line)."""
    kinds = {"detector": str, "options": dict, "backbone": str, "extra": dict}
    problem = None if isinstance(meta, dict) else f"metadata is of type {type(meta).__name__}, not a table"
    for key, kind in kinds.items():
        if problem is None and meta.get(key) is not None and not isinstance(meta[key], kind):
            problem = f"{key!r} is of type {type(meta[key]).__name__}, not {kind.__name__}"
    if problem:
        raise WeightsError(f"{path}: not a valid sidbench checkpoint ({problem})")
    return meta


def take_empty_shapes(module: "torch.nn.Module", state: dict[str, "torch.Tensor"]) -> None:
    """Re-allocate each empty parameter or buffer of ``module`` to the shape and dtype of its entry in ``state``
    (a parameter stays a parameter, with its ``requires_grad``); non-empty ones are left for the shape check."""
    import torch

    for key, value in state.items():
        owner_name, _, leaf = key.rpartition(".")
        try:
            owner = module.get_submodule(owner_name) if owner_name else module
        except AttributeError:
            continue  # an unexpected key: load_state_dict reports it
        table = owner._parameters if leaf in owner._parameters else owner._buffers
        current = table.get(leaf)
        if current is None or current.numel() or tuple(current.shape) == tuple(value.shape):
            continue
        fresh = torch.zeros(value.shape, dtype=value.dtype, device=current.device)
        table[leaf] = torch.nn.Parameter(fresh, requires_grad=current.requires_grad) if table is owner._parameters else fresh


def checkpoint_options(spec: DetectorSpec, saved: Any, path: str) -> dict[str, Any]:
    """The options a checkpoint's metadata restores: the spec's options it saved (not ``preprocess`` or
    ``precision``), validated like any other value (a bad one is a one-line :class:`WeightsError`)."""
    if not isinstance(saved, dict):
        return {}
    out = {k: v for k, v in saved.items() if k in spec.options and k not in TEST_TIME_OPTIONS}
    try:
        check_options(spec, out, where=str(path))
    except SidbenchError as exc:
        raise WeightsError(str(exc)) from None
    return out


def contradiction(name: str, key: str, given: Any, saved: Any, path: str) -> WeightsError:
    """'NAME: option k=2 contradicts FILE, which was fitted with k=3; ...' (one line)."""
    return WeightsError(
        f"{name}: option {key}={option_text(given)} contradicts {path}, which was fitted with {key}={option_text(saved)}; "
        "drop the option (the checkpoint's value is used) or attach a checkpoint fitted with it")


def same_value(a: Any, b: Any) -> bool:
    """Equal once both went through JSON (a checkpoint stores tuples as lists): how option values compare."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False
