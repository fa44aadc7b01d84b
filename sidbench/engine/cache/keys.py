"""Cache keys: what an entry's key hashes, and nothing else.

A feature entry's key is the SHA-256 of the cache ``FORMAT``, everything but the image that determines the
feature (:class:`CacheContext`: source identity, numerics, protocol, perturbation, augmented view), the
SHA-256 of the image file's bytes, the record key where the perturbation or view is seeded from it, and the
feature name; a text embedding's key hashes the prompt instead (:func:`text_key`). Every string here is part
of the on-disk format: changing one orphans every stored entry, so bump ``FORMAT`` when the meaning of a
cached feature changes and never otherwise.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from ...api.records import Record

FORMAT = 2  # bump when anything that shapes cached features changes meaning (2: blur into uint8, torchvision RRC fallback)


def text_key(identity: str, numerics: str, prompt: str) -> str:
    """The entry key of one prompt's text embedding (cached like image features, so warm runs need no backbone)."""
    return hashlib.sha256(json.dumps([FORMAT, "text", identity, numerics, prompt]).encode()).hexdigest()


@dataclass(frozen=True)
class CacheContext:
    """Everything but the image that determines a feature: hashed into every entry key."""

    backbone: str  # source identity: a backbone's (architecture + weights), or a pixel detector's (name + weights)
    numerics: str  # e.g. "cpu-fp32-eager-b64"
    protocol: str  # e.g. "center_crop|224|mean|std"
    perturbation: str = "none"
    view: str = ""  # augmented view identity "augment|view|seed"; "" for the plain view

    @property
    def per_record(self) -> bool:
        """Perturbations and augmentations are seeded from the record key, so it is part of the key."""
        return self.perturbation != "none" or bool(self.view)

    @functools.cached_property
    def digest(self) -> str:
        text = json.dumps([FORMAT, self.backbone, self.numerics, self.protocol, self.perturbation, self.view])
        return hashlib.sha256(text.encode()).hexdigest()


def feature_keys(context: CacheContext, content: str, record: "Record", names: Iterable[str]) -> dict[str, str]:
    """Feature name -> entry key for an image whose bytes hash to ``content`` (the record's key counts only when
    the context seeds something from it)."""
    base = f"{context.digest}|{content}|{record.key if context.per_record else ''}"
    return {n: hashlib.sha256(f"{base}|{n}".encode()).hexdigest() for n in names}
