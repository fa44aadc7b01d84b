"""``sidbench plugins check NAME``: does a detector survive train -> checkpoint -> run?

On a few generated images (clip-tiny for feature detectors) the detector is built from the seed, fitted if it
needs fitting, saved, loaded back by name from its checkpoint alone (``NAME@FILE``, no options given) and both
copies score the same images through the engine. Reported: any logit difference, any option that did not come
back, and any state the checkpoint does not hold (an attribute the fit set that ``extra_metadata`` does not
save, a tensor outside ``modules()``).
"""
from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..api.restore import same_value
from ..api.log import note

if TYPE_CHECKING:
    from ..api.detector import Detector
    from ..api.records import Record
    from ..registry.plugins import Plugins

TOLERANCE = 1e-4  # largest |logit difference| accepted between the fitted detector and its reloaded copy
# attributes every detector has (the base class's bookkeeping), never "undeclared state"
BOOKKEEPING = {"spec", "backbone_info", "options", "needs_fit", "fitted", "device", "weights_path", "display_name",
               "trained_on", "checkpoint_shapes", "explicit_options", "options_from_checkpoint", "fit_summary",
               "checkpoint_code", "fitted_in_run", "checkpoint_backbone", "training"}


@dataclass
class CheckReport:
    name: str
    fitted: bool
    images: int
    max_logit_difference: float
    options_lost: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    undeclared_state: dict[str, str] = field(default_factory=dict)
    checkpoint: str = ""

    @property
    def ok(self) -> bool:
        return self.max_logit_difference <= TOLERANCE and not self.options_lost and not self.undeclared_state

    def lines(self) -> list[str]:
        out = [f"{self.name}: {'fitted on' if self.fitted else 'no fit needed;'} generated images, saved to "
               f"{self.checkpoint}, reloaded from it alone, both scored on {self.images} images"]
        diff = self.max_logit_difference
        out.append(f"  logits: {'identical' if diff == 0 else f'max |difference| {diff:.3g}'}"
                   f"{'' if diff <= TOLERANCE else f' (over {TOLERANCE:g}): the reloaded detector scores differently'}")
        for key, (before, after) in self.options_lost.items():
            out.append(f"  option {key}: {before!r} when fitted, {after!r} after reloading (declare it in "
                       "DetectorSpec.options and read it from self.options)")
        for key, why in self.undeclared_state.items():
            out.append(f"  undeclared state self.{key}: {why}")
        out.append("  ok: it survives train -> checkpoint -> run" if self.ok else "  FAILED")
        return out


def generated_records(root: Path, n: int = 6, size: int = 96, seed: int = 0) -> dict[str, list["Record"]]:
    """``n`` real and ``n`` fake images per split (train, val) under ``root``: random textures, the fakes with
    a period-2 checkerboard (something a detector can learn)."""
    import numpy as np
    from PIL import Image

    from ..api.records import Record

    rng = np.random.default_rng(seed)
    out: dict[str, list[Record]] = {}
    for split in ("train", "val"):
        out[split] = []
        for label in (0, 1):
            for i in range(n):
                base = rng.normal(128, 40, (size // 8 + 1, size // 8 + 1, 3))
                img = np.kron(base, np.ones((8, 8, 1)))[:size, :size] + rng.normal(0, 8, (size, size, 3))
                if label:
                    yy, xx = np.mgrid[:size, :size]
                    img += 24.0 * (((yy + xx) % 2) * 2 - 1)[..., None]
                path = root / split / ("1_fake" if label else "0_real") / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
                out[split].append(Record(str(path), label, split, "check", "check" if label else ""))
    return out


def check_detector(name: str, plugins: "Plugins", *, options: dict[str, Any] | None = None,
                   backbone: str = "clip-tiny", seed: int = 0, workdir: str | Path | None = None,
                   log: Callable[[str], None] = note) -> CheckReport:
    """Fit (if needed), save, reload and score ``name`` on generated images; see the module docstring."""
    from ..engine.fitting import fit_detector
    from ..registry.lookup import load_detector
    from .build import load_seeded

    with tempfile.TemporaryDirectory(prefix="sidbench-check-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        records = generated_records(root / "images", seed=seed)
        det = load_seeded(name, seed, plugins, backbone, **(options or {}))
        data = _fit_data(det, records, plugins, backbone, seed)
        if det.needs_fit:
            fit_detector(det, data, seed, log=lambda m: log(f"  fit: {m}"))
        ckpt = root / f"{det.spec.name}.safetensors"
        det.save(str(ckpt))
        again = load_detector(f"{det.spec.name}@{ckpt}", backbone=backbone, plugins=plugins)
        again_data = _fit_data(again, records, plugins, backbone, seed)
        for d, dd in ((det, data), (again, again_data)):  # as a run binds each feature detector to its backbone
            if d.input == "features":
                d.bind(dd.backbone)
        before = data.scores(det, "val")[0]
        after = again_data.scores(again, "val")[0]
        diff = float(abs(before - after).max()) if len(before) == len(after) and len(before) else math.inf
        lost = {k: (v, again.options.get(k)) for k, v in det.options.items()
                if k != "preprocess" and not same_value(v, again.options.get(k))}
        return CheckReport(det.name, det.needs_fit, len(before), diff, lost, undeclared_state(det, again),
                           str(ckpt) if workdir is not None else "a temporary file")


def _fit_data(det: "Detector", records: dict[str, list["Record"]], plugins: "Plugins", backbone: str, seed: int):
    from ..engine.fitting import EngineFitData
    from ..engine.inputs import ExtractOptions
    from ..engine.scoring import source_outputs
    from ..engine.sources import BackboneSource

    common = dict(protocol=det.preprocess, seed=seed, options=ExtractOptions(8, 0, False), device="cpu")
    if det.input == "pixels":
        return EngineFitData(records["train"], records["val"], pixels=det.pixel_input, **common)
    source = BackboneSource(backbone, plugins, device="cpu")
    return EngineFitData(records["train"], records["val"], backbone=source, names=source_outputs(det), **common)


def undeclared_state(fitted: "Detector", reloaded: "Detector") -> dict[str, str]:
    """Attributes of the fitted detector that its reloaded copy lacks or holds otherwise: plain values the
    fit set (save them in ``extra_metadata``) and tensors or modules outside ``modules()``."""
    import torch

    held = {id(m) for m in fitted.modules().values()}
    held |= {id(p) for m in fitted.modules().values() for p in [*m.parameters(), *m.buffers(), *m.modules()]}
    out = {}
    for key, value in vars(fitted).items():
        if key in BOOKKEEPING or key.startswith("__"):
            continue
        other = getattr(reloaded, key, _MISSING)
        if isinstance(value, (torch.Tensor, torch.nn.Module)):
            if id(value) in held:
                continue
            if isinstance(value, torch.nn.Module):
                same = isinstance(other, torch.nn.Module) and _same_tensors(value.state_dict(), other.state_dict())
            else:
                same = isinstance(other, torch.Tensor) and _same_tensors({"t": value}, {"t": other})
            if not same:
                out[key] = (f"a {type(value).__name__} outside modules(): not in the checkpoint (return it from "
                            "modules(), or register it as a buffer of a module there)")
        elif _plain(value) and not same_value(value, other):
            out[key] = (f"{_short(value)} after the fit, {'missing' if other is _MISSING else _short(other)} "
                        "after reloading (save it in extra_metadata and restore it in load_extra_metadata)")
    return out


_MISSING = object()


def _plain(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return isinstance(v, (str, int, float, bool, type(None)))


def _same_tensors(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
