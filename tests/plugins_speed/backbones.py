"""Test backbones (clip-tiny's network under other names): ``count-tiny`` appends the SHA-256 of every image
it encodes to the file ``$SIDBENCH_TEST_COUNT_LOG`` (padding rows excluded); ``fragile-tiny`` cannot be built
while ``SIDBENCH_TEST_FRAGILE`` is set (its shapes and identity stay known without building it)."""
from __future__ import annotations

import dataclasses
import hashlib
import os

from sidbench.api import BackboneFactory, BackboneSpec, hookimpl

COUNT_ENV = "SIDBENCH_TEST_COUNT_LOG"
FRAGILE_ENV = "SIDBENCH_TEST_FRAGILE"


class TinyTwin(BackboneFactory):
    """clip-tiny's shapes and a test identity under the spec's name, known without building."""

    def describe(self, name: str):
        from sidbench.backbones.clip import describe_tiny

        return dataclasses.replace(describe_tiny(), name=name)

    def identity(self, name: str, weights: str | None = None) -> str:
        return f"{name}:seed0-test"

    def tiny(self, name: str, device: str):
        from sidbench.backbones.clip import build_tiny

        bb = build_tiny(device=device)
        bb.info, bb.identity = self.describe(name), self.identity(name)
        return bb


class Counting(TinyTwin):
    def build(self, name: str, weights: str | None = None, device: str = "cpu"):
        bb = self.tiny(name, device)
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


class Fragile(TinyTwin):
    def build(self, name: str, weights: str | None = None, device: str = "cpu"):
        if os.environ.get(FRAGILE_ENV):
            raise RuntimeError(f"{name} must not be built in this test ({FRAGILE_ENV} is set)")
        return self.tiny(name, device)


@hookimpl
def sidbench_backbones():
    return [
        BackboneSpec("count-tiny", Counting(), description="clip-tiny that records every image it encodes (tests)"),
        BackboneSpec("fragile-tiny", Fragile(), description=f"clip-tiny that fails to build while {FRAGILE_ENV} is set"),
    ]
