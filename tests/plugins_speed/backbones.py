"""Test backbones (clip-tiny's network under other names): ``count-tiny`` appends the SHA-256 of every image
it encodes to the file ``$SIDBENCH_TEST_COUNT_LOG`` (padding rows excluded); ``fragile-tiny`` cannot be built
while ``SIDBENCH_TEST_FRAGILE`` is set (its shapes and identity stay known without building it)."""
from __future__ import annotations

import dataclasses
import hashlib
import os

from sidbench.api import BackboneSpec, hookimpl

COUNT_ENV = "SIDBENCH_TEST_COUNT_LOG"
FRAGILE_ENV = "SIDBENCH_TEST_FRAGILE"


def _tiny(name: str, device: str):
    from sidbench.backbones.clip import build_tiny

    bb = build_tiny(device=device)
    bb.info = dataclasses.replace(bb.info, name=name)
    bb.identity = _identity(name)
    return bb


def _identity(name: str, weights: str | None = None) -> str:
    return f"{name}:seed0-test"


def _describe(name: str):
    from sidbench.backbones.clip import describe_tiny

    return dataclasses.replace(describe_tiny(), name=name)


def build_counting(name: str, weights: str | None = None, device: str = "cpu"):
    bb = _tiny(name, device)
    real = bb._forward

    def forward(images, names):
        # padding rows are zeros before normalisation, so constant per channel after it: not counted
        digests = [hashlib.sha256(row.detach().cpu().numpy().tobytes()).hexdigest() for row in images
                   if (row.flatten(1) != row.flatten(1)[:, :1]).any()]
        with open(os.environ[COUNT_ENV], "a") as f:
            f.write("".join(d + "\n" for d in digests))
        return real(images, names)

    bb._forward = forward
    return bb


def build_fragile(name: str, weights: str | None = None, device: str = "cpu"):
    if os.environ.get(FRAGILE_ENV):
        raise RuntimeError(f"{name} must not be built in this test ({FRAGILE_ENV} is set)")
    return _tiny(name, device)


for _factory in (build_counting, build_fragile):
    _factory.describe = _describe  # type: ignore[attr-defined]
    _factory.identity = _identity  # type: ignore[attr-defined]


@hookimpl
def sidbench_backbones():
    return [
        BackboneSpec("count-tiny", build_counting, description="clip-tiny that records every image it encodes (tests)"),
        BackboneSpec("fragile-tiny", build_fragile, description=f"clip-tiny that fails to build while {FRAGILE_ENV} is set"),
    ]
