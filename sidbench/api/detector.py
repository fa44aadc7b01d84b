"""The detector contract: named backbone features (or pixels) in, one logit per image out (higher = more fake)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable

from .checkpoints import load_tensors, non_finite_tensor, save_tensors, strip_prefix
from .errors import FitRequiredError, SidbenchError, WeightsError
from .log import note
from .names import option_text, split_options
from .options import check_options, names_with_role, role_of
from .restore import checked_metadata, checkpoint_options, contradiction, jsonable, same_value, take_empty_shapes
from .specs import DetectorSpec, PixelInput

if TYPE_CHECKING:
    import torch

    from .backbone import Backbone, BackboneInfo
    from .fitting import FitData


class Detector:
    """Base class of every detector.

    Subclasses set up their torch modules in ``__init__`` (importing torch there, so that
    listing plugins stays fast), return them from :meth:`modules`, and implement
    :meth:`score`. Fittable detectors implement :meth:`fit`. A feature detector's ``score`` gets
    the named backbone features; a pixel detector's (``spec.pixels`` set) gets ``{"pixels": x}``,
    the preprocessed images [B, 3, H, W], and runs its own network (``backbone`` is then None).
    """

    needs_fit: bool = False  # a class that must be fitted says so here or in its spec (either is enough)

    def __init__(self, spec: DetectorSpec, backbone: "BackboneInfo | None", /, **options: Any):
        check_options(spec, options)  # unknown names and values of the wrong type: one line each
        self.spec = spec
        self.backbone_info = backbone
        self.options: dict[str, Any] = {**spec.options, **options}
        self.needs_fit = bool(spec.needs_fit or type(self).needs_fit)
        self.fitted = not self.needs_fit
        self.device = "cpu"
        self.weights_path: str | None = None
        self.display_name: str | None = None  # the name shown, e.g. "rine.progan4[tie=false]" (bracket options)
        self.trained_on: list[str] | None = None  # generators of the data it was fitted on in this run (None: published)
        self.checkpoint_shapes: dict[str, tuple[int, ...]] = {}  # of the file being loaded, for load_extra_metadata
        self.explicit_options: dict[str, Any] = dict(options)  # what the caller set; checked against a checkpoint's
        self.options_from_checkpoint: dict[str, Any] = {}  # options a loaded checkpoint brought (run.json)
        self.checkpoint_backbone: str | None = None  # the backbone a loaded sidbench checkpoint was fitted on
        self.training: dict[str, Any] | None = None  # what it was fitted on: generators, splits, roots, counts
        self.fit_summary: dict[str, Any] | None = None  # what fit() returned (run.json), or the checkpoint's
        self.checkpoint_code: dict[str, Any] | None = None  # the code identity a loaded sidbench checkpoint was saved by
        self.fitted_in_run = False  # fitted (or reloaded from its results folder) by the command running it

    # -- what the harness reads ---------------------------------------------------
    @property
    def name(self) -> str:
        return self.display_name or self.spec.name

    @property
    def label(self) -> str | None:
        """Deprecated alias of :attr:`display_name` (in sidbench a label is real or fake)."""
        warnings.warn("Detector.label is deprecated; use Detector.display_name", DeprecationWarning, stacklevel=2)
        return self.display_name

    @label.setter
    def label(self, value: str | None) -> None:
        warnings.warn("Detector.label is deprecated; use Detector.display_name", DeprecationWarning, stacklevel=2)
        self.display_name = value

    @property
    def required_features(self) -> tuple[str, ...]:
        return tuple(self.spec.features)

    @property
    def preprocess(self) -> str:
        return self.options.get("preprocess") or self.spec.preprocess

    @property
    def input(self) -> str:
        """``"pixels"`` or ``"features"`` (see :attr:`sidbench.api.DetectorSpec.input`)."""
        return self.spec.input

    @property
    def pixel_input(self) -> "PixelInput | None":
        """How the engine preprocesses for a pixel detector: the spec's :class:`~sidbench.api.PixelInput`, with
        its ``image_size`` taken from the ``image_size`` option when the detector has one (None: a feature detector)."""
        pixels = self.spec.pixels
        if pixels is not None and "image_size" in self.options and self.options["image_size"] != pixels.image_size:
            import dataclasses

            return dataclasses.replace(pixels, image_size=int(self.options["image_size"]))
        return pixels

    def modules(self) -> dict[str, "torch.nn.Module"]:
        """The torch modules holding this detector's parameters and buffers."""
        return {}

    def bind(self, backbone: "Backbone") -> None:
        """Called once with the live backbone before scoring (e.g. to embed text prompts)."""

    def score(self, features: dict[str, "torch.Tensor"]) -> "torch.Tensor":
        """Logits [B] for a batch of features (eval mode, no dropout)."""
        raise NotImplementedError

    def fit(self, data: "FitData", log: Callable[[str], None] = note) -> dict[str, Any]:
        """Fit on training data (features served by ``data``); return a summary for the log. ``log(message)``
        reports progress (default :func:`~sidbench.api.note`, the ``sidbench`` logger; never ``print``)."""
        raise SidbenchError(f"detector {self.name!r} has nothing to fit")

    # -- state --------------------------------------------------------------------
    def to(self, device: str) -> "Detector":
        self.device = str(device)
        for m in self.modules().values():
            m.to(device)
        return self

    def eval(self) -> "Detector":
        for m in self.modules().values():
            m.eval()
        return self

    def train(self) -> "Detector":
        for m in self.modules().values():
            m.train()
        return self

    def state_dict(self) -> dict[str, "torch.Tensor"]:
        out = {}
        for prefix, module in self.modules().items():
            for k, v in module.state_dict().items():
                out[f"{prefix}.{k}"] = v
        return out

    def load_state_dict(self, state: dict[str, "torch.Tensor"]) -> None:
        """Load tensors saved by :meth:`state_dict`. A parameter or buffer that is empty (a 0 in its shape:
        state whose size depends on the training data, allocated empty before the fit) first takes the shape
        and dtype it has in ``state``; every other tensor must match in shape."""
        for prefix, module in self.modules().items():
            sub = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
            take_empty_shapes(module, sub)
            try:
                module.load_state_dict(sub)
            except RuntimeError as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                detail = "; ".join(lines[1:4]) or lines[0]  # torch lists the mismatching tensors after its header
                own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
                sizes = {d for k, v in sub.items() if k in own and own[k] != tuple(v.shape) for d in own[k]}
                raise WeightsError(f"checkpoint does not fit detector {self.name!r}: {detail}{self.shape_hint(sizes)}") from None

    def shape_hint(self, sizes: set[int] = frozenset()) -> str:  # type: ignore[assignment]
        """'; the options that shape its network are channels=8: ...' for a size mismatch: the options declared
        with role "network", else the integer options whose value is a size of a mismatching tensor."""
        names = names_with_role(self.spec, "network")
        names = names or [k for k, v in self.options.items() if k in self.spec.options and isinstance(v, int)
                          and not isinstance(v, bool) and v in sizes]
        if not names:
            return ("; if an option shapes its network, declare it Option(..., role='network') so a checkpoint "
                    "brings it back")
        now = ", ".join(f"{k}={option_text(self.options[k])}" for k in names)
        return (f"; the options that shape its network are {now}: give the values the checkpoint was trained with, "
                f"e.g. {self.spec.name}[{names[0]}=...]@FILE")

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        """Translate an official checkpoint's keys to this detector's; sidbench's own pass through."""
        return state

    def save(self, path: str) -> str:
        """Save as safetensors with the spec name, options, backbone, fitted values, the fit's summary and the
        code identity in the metadata."""
        from .code import code_identity

        meta = {
            "detector": self.name,
            "options": {k: v for k, v in self.options.items() if jsonable(v)},
            "backbone": self.backbone_info.name if self.backbone_info is not None else None,
            "extra": self.extra_metadata(),
            "code": code_identity(self),
        }
        if self.fit_summary is not None and jsonable(self.fit_summary):
            meta["fit"] = self.fit_summary
        if self.training is not None and jsonable(self.training):
            meta["training"] = self.training  # what it saw: a later NAME@ckpt marks those generators as seen
        return str(save_tensors(path, self.state_dict(), meta))

    def extra_metadata(self) -> dict[str, Any]:
        """Non-tensor state (e.g. chosen hyper-parameters) to keep in a saved checkpoint."""
        return {}

    def load_extra_metadata(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`extra_metadata` saved."""

    def restore_options(self, saved: dict[str, Any], path: str) -> None:
        """Adopt the options a sidbench checkpoint was fitted with (so ``det@ckpt`` scores as it was fitted);
        an option the caller set that contradicts the checkpoint is an error naming both, unless its role is
        ``"test"`` (how it is fed or scored at test time: the caller's value wins; ``preprocess`` and
        ``precision`` are never the checkpoint's to fix). Saved values are validated like any other."""
        adopted = {}
        for key, value in checkpoint_options(self.spec, saved, path).items():
            if same_value(self.options[key], value):
                continue
            if key in self.explicit_options:
                if role_of(self.spec, key) == "test":
                    continue
                raise contradiction(self.name, key, self.explicit_options[key], value, path)
            adopted[key] = value
        if adopted:
            self.options.update(adopted)
            self.options_from_checkpoint = {**self.options_from_checkpoint, **adopted}
            self.configure(adopted)

    def configure(self, changed: dict[str, Any]) -> None:
        """Rebuild what depends on options after a checkpoint changed some (``changed``); e.g. RINE's network
        shapes. (``sidbench.load_detector`` passes a checkpoint's options to the factory before the network is
        built, so this runs only when :meth:`load` is called on a detector built with other options.)"""

    # -- identity -----------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What fixes this detector's scores besides its input: its name, options, code (a hash of its
        module source and its plugin's version) and weights (the checkpoint's content hash, or a digest of the
        fitted state). It keys the logit cache and the resume check, and run.json records it."""
        from .code import code_identity

        out = {"name": self.name, "code": code_identity(self),
               "options": {k: v for k, v in sorted(self.options.items()) if k != "precision" and jsonable(v)}}
        if self.weights_path:
            from pathlib import Path

            from .checkpoints import file_sha256

            out["weights"] = "sha256:" + file_sha256(Path(self.weights_path))
        return out

    def load(self, path: str) -> "Detector":
        """Load a checkpoint: weights must be finite, metadata well-formed and consistent with the tensors."""
        tensors, meta = load_tensors(path)
        bad = non_finite_tensor(tensors)
        if bad is not None:
            raise WeightsError(f"{path}: tensor {bad!r} holds NaN or Inf values; detector {self.name!r} refuses "
                               "such weights (re-fit the detector or fetch the checkpoint again)")
        self.checkpoint_shapes = {k: tuple(v.shape) for k, v in tensors.items()}
        if meta:
            meta = checked_metadata(meta, path)
            if meta.get("detector") and split_options(meta["detector"])[0] != self.spec.name:
                raise WeightsError(
                    f"{path} was saved by detector {meta['detector']!r}, not {self.name!r}; "
                    f"use --detectors {meta['detector']}@{path}"
                )
            self.restore_options(meta.get("options") or {}, path)
            self.checkpoint_code = meta.get("code") if isinstance(meta.get("code"), dict) else None
            if isinstance(meta.get("fit"), dict):
                self.fit_summary = meta["fit"]
            training = meta.get("training")
            if isinstance(training, dict) and isinstance(training.get("generators"), list):
                self.training = training
                self.trained_on = [str(g) for g in training["generators"]]
            try:
                self.load_extra_metadata(meta.get("extra") or {})
            except (TypeError, ValueError, KeyError, IndexError, OverflowError) as exc:
                raise WeightsError(f"{path}: metadata of the wrong kind for detector {self.name!r} "
                                   f"({type(exc).__name__}: {exc})") from exc
            if self.input == "pixels":
                self._adopt_input(meta.get("options") or {})
            self.load_state_dict(tensors)
        else:
            self.load_state_dict(self.convert_checkpoint(tensors))
        self.fitted = True
        self.weights_path = str(path)
        return self.to(self.device).eval()

    def metadata_size(self, extra: dict[str, Any], key: str, tensor: str, dim: int = 0) -> int:
        """``extra[key]``, a size the checkpoint's metadata declares, checked against the tensor it describes
        before anything is allocated from it (a 144-byte file must not make us allocate terabytes)."""
        shape = self.checkpoint_shapes.get(tensor)
        actual = shape[dim] if shape is not None and len(shape) > dim else 0
        value = extra.get(key, actual)
        if not isinstance(value, int) or isinstance(value, bool) or value != actual:
            raise WeightsError(f"checkpoint metadata of detector {self.name!r}: {key} = {value!r} does not match "
                               f"tensor {tensor!r} ({actual} along dimension {dim}); the file is damaged or not this detector's")
        return value

    def _adopt_input(self, saved: dict[str, Any]) -> None:
        """A pixel detector fitted under another protocol scores under it again, unless the caller chose one
        (a network trained on 64 px crops is not meant for 256 px resizes); its ``image_size`` comes back
        through :meth:`restore_options` like any fitted option."""
        if saved.get("preprocess") and "preprocess" not in self.explicit_options and not self.options.get("preprocess"):
            self.options["preprocess"] = saved["preprocess"]


class NetworkDetector(Detector):
    """A detector whose parameters are one torch module, ``self.net`` from :meth:`build_network` (a pixel
    detector's CNN, say). Its official checkpoint is that module's state dict, perhaps inside a training dump
    (``{'model': ...}``) and with DataParallel's ``module.`` prefix; both are unwrapped when it loads."""

    def __init__(self, spec: DetectorSpec, backbone: "BackboneInfo | None", /, **options: Any):
        super().__init__(spec, backbone, **options)
        self.net = self.build_network()

    def build_network(self) -> "torch.nn.Module":
        """The network with its official module names (torch imported inside, as everywhere in plugins)."""
        raise NotImplementedError

    def modules(self) -> dict[str, "torch.nn.Module"]:
        return {"net": self.net}

    def convert_checkpoint(self, state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
        return {f"net.{k}": v for k, v in strip_prefix(state).items()}

    def configure(self, changed: dict[str, Any]) -> None:
        """A checkpoint changed an option that shapes the network: build the network again from the options."""
        if any(role_of(self.spec, k) == "network" for k in changed):
            self.net = self.build_network()

    def require_weights(self, filename: str) -> None:
        """Refuse to score without a checkpoint (random weights) a network sidbench has no training recipe for;
        the message suggests ``FAMILY@filename`` (and ``FAMILY@official`` where the spec has official weights)."""
        if self.weights_path is None:
            family = self.spec.name.split(".")[0]
            also = "" if self.spec.official_weights is None else f" or {family}@official"
            raise FitRequiredError(f"{self.name} has no training recipe in sidbench: attach its checkpoint, e.g. "
                                   f"--detectors {family}@{filename}{also}")
