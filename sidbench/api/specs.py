"""Plain metadata objects returned by plugin hooks.

Specs are cheap to build and hold no tensors: building a detector, a backbone
or opening a dataset happens later, through the spec's ``factory`` (a callable
or an ``"module:attribute"`` string imported on first use).
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple

if TYPE_CHECKING:
    from .backbone import BackboneFactory

Factory = "Callable[..., Any] | str"

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)*$")


def resolve_factory(factory: Callable[..., Any] | str) -> Callable[..., Any]:
    """Import ``"pkg.module:attr"`` lazily; callables pass through."""
    if callable(factory):
        return factory
    module, _, attr = factory.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def check_name(name: str, kind: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        from .errors import PluginError

        raise PluginError(
            f"invalid {kind} name {name!r}: use lowercase `family.variant` "
            "(letters, digits, '_' and '-'), e.g. 'rine.progan4'"
        )


class ImageInput(NamedTuple):
    """What a detector's own protocol (:class:`ProtocolSpec`) receives for one image: the decoded RGB image
    (after any perturbation or training augmentation), the file's bytes when ``image`` is exactly the file
    as read (no perturbation, no augmentation; None otherwise) and the file's path."""

    image: Any  # PIL.Image.Image
    data: bytes | None
    path: str


@dataclass(frozen=True)
class ProtocolSpec:
    """A preprocessing protocol a pixel detector brings with it (``PixelInput.protocols``), for what the
    built-in protocols cannot express: an OpenCV decode and resize, crops on a token grid, a JPEG-domain
    input read from the file's bytes.

    ``factory(info)`` (``info``: the detector's :class:`PixelInput`) returns a picklable callable
    ``(ImageInput) -> Tensor`` of shape [3, H, W] (or [views, 3, H, W] when ``views`` > 1: the engine
    averages the views' logits). ``variable_size``: tensors differ in size from image to image (equal
    sizes are batched together). ``reads_file``: it needs the file's bytes (``ImageInput.data``), so the
    engine reads the file again instead of serving a decoded copy. ``version`` enters every cache key:
    change it when the protocol's pixels change."""

    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    views: int = 1
    variable_size: bool = False
    reads_file: bool = False
    version: str = "1"


@dataclass(frozen=True)
class PixelInput:
    """How a pixel detector's own network sees an image (the protocol itself is ``DetectorSpec.preprocess``):
    crop or resize size, normalisation, and the precision it runs in on CUDA."""

    image_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    precision: str = "fp32"
    # native-resolution protocols batch equal sizes together; at most this many pixels per batch (memory bound)
    max_batch_pixels: int = 64 * 512 * 512
    # protocols of the detector's own (e.g. Effort's OpenCV resize), usable by name like the built-in ones
    protocols: tuple[ProtocolSpec, ...] = ()


@dataclass(frozen=True)
class OfficialWeights:
    """A published checkpoint of a detector, fetched by ``NAME@official``: where it is published, under which
    file name, its SHA-256 when known, and the repository (paper code) that released it. ``git_blob`` is the
    id a git tree lists for the file (SHA-1 of ``blob <size>\\0<bytes>``): a checksum known from the
    repository alone, checked like the SHA-256."""

    url: str
    filename: str
    sha256: str | None = None
    repository: str = ""
    note: str = ""
    git_blob: str | None = None
    md5: str | None = None  # where the authors publish an MD5 instead of a SHA-256
    member: str | None = None  # the url serves a zip: this member is the checkpoint (unpacked into the cache)
    revision: str | None = None  # the commit or revision the url is pinned to, where the host has one


@dataclass(frozen=True)
class DetectorSpec:
    """What a detector is, what it needs and where it came from (its paper and training data).

    ``factory(spec, backbone_info, **options)`` returns a :class:`sidbench.api.Detector`. A detector reads
    either named ``features`` of a frozen ``backbone``, or, with ``pixels`` set, the preprocessed image
    itself (``features`` is then ``("pixels",)``) and runs its own network on it.
    """

    name: str
    factory: Callable[..., Any] | str
    features: tuple[str, ...] = ()
    backbone: str = "ViT-L-14:openai"
    preprocess: str = "center_crop"
    pixels: PixelInput | None = None
    description: str = ""
    needs_fit: bool = False
    default: bool = False  # the variant that the bare family name selects
    options: Mapping[str, Any] = field(default_factory=dict)
    # the types an option accepts when its default's type is not all of them, e.g. {"blocks": (str, int, list)}
    # (see sidbench.api.options)
    option_types: Mapping[str, Any] = field(default_factory=dict)
    # option overrides the quickstart uses (e.g. fewer epochs on its 400 images); the published defaults stay in options
    quickstart_options: Mapping[str, Any] = field(default_factory=dict)
    quickstart: bool = True  # whether ``sidbench run`` with no arguments includes this family's default
    training_data: tuple[str, ...] = ()  # generators (or data sets) seen in training
    official_weights: OfficialWeights | None = None  # the published checkpoint (``NAME@official``)
    paper: str = ""
    license: str = ""
    # the detector's card (`sidbench list detectors NAME`, docs/detectors/): the numbers its paper reports on
    # sets sidbench reads (``{"GenImage, mean acc": "88.1"}``; anchors, not reproduced here) and what
    # sidbench does differently from the official code or where an ambiguity was settled (and from what)
    published: Mapping[str, str] = field(default_factory=dict)
    notes: str = ""
    repository: str = ""  # the official code this detector was written from
    origin: str = ""  # filled in by the plugin manager
    plugin_version: str = ""  # filled in by the plugin manager: the installed distribution's version, or sidbench's
    # the :class:`~sidbench.api.options.Option` declarations given in ``options`` (``options`` keeps the defaults)
    option_decls: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels is not None and not self.features:
            object.__setattr__(self, "features", ("pixels",))
        from .options import split_declarations

        defaults, declared = split_declarations(self.options)
        if declared:
            object.__setattr__(self, "options", defaults)
            object.__setattr__(self, "option_decls", {**dict(self.option_decls), **declared})

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def input(self) -> str:
        """``"pixels"`` (its own network on the image) or ``"features"`` (a head on backbone features)."""
        return "pixels" if self.pixels is not None else "features"


@dataclass(frozen=True)
class DatasetSpec:
    """A data layout: ``factory(**options)`` returns an object with ``matches(root)`` and
    ``records(root, **options)`` (see :class:`sidbench.data.layout.Layout`)."""

    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    priority: int = 0  # higher is tried first when a --data folder is recognised
    origin: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """A feature extractor: ``factory`` is a :class:`sidbench.api.BackboneFactory` (its ``build(name,
    weights=None, device='cpu')`` returns a :class:`sidbench.api.Backbone`; ``describe``/``identity`` answer
    without loading weights), a plain function ``build``, or a ``"module:attr"`` naming either. ``pattern``
    (a regex) lets one spec serve a family of names such as open_clip's ``ARCH:TAG``."""

    name: str
    factory: BackboneFactory | Callable[..., Any] | str
    description: str = ""
    pattern: str | None = None
    origin: str = ""


@dataclass(frozen=True)
class PerturbationSpec:
    """A named image perturbation: ``factory(value)`` returns a callable
    ``(PIL image, numpy Generator) -> PIL image``; ``values`` are the defaults."""

    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    values: tuple[Any, ...] = ()
    origin: str = ""
