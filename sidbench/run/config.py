"""RunConfig: everything that defines a run, one object for ``run``, ``train``, ``ablate`` and ``score``
(also readable from a TOML file with the same keys); RunData: the records it evaluates and fits on."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..api.errors import SidbenchError
from ..api.records import Record

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Everything that defines a run (also readable from a TOML file with the same keys)."""

    data: list[str] = field(default_factory=list)
    dataset: str | None = None
    detectors: list[str] = field(default_factory=list)
    detector_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per name in `detectors`
    backbone: str | None = None
    weights: str | None = None
    perturb: str | None = None
    protocol: str | None = None
    device: str | None = None
    precision: str | None = None  # fp32 | fp16 | bf16 on CUDA (default fp16); CPU always fp32
    batch_size: int = 64
    workers: int | None = None
    out: str | None = None
    train: str | None = None
    val: str | None = None
    seed: int = 0
    progress: bool = True
    suite: str | None = None  # a named benchmark (sidbench.run.suites), e.g. "paper"
    no_cache: bool = False  # do not read or write the feature cache
    compile: bool = False  # torch.compile the backbone (GPU runs)
    threshold: str = "fixed"  # fixed | val | oracle | val-fpr:X (sidbench.results.operating)
    calibrate: str | None = None  # temperature | platt, fitted on the validation split per detector
    fpr_targets: list[float] = field(default_factory=list)  # TPR columns at these FPRs besides 1% and 5%
    ap_from: str = "logit"  # what AP/AUC rank: logit, or sigmoid32 (the reference scripts' float32 P(fake))
    decode: str = "auto"  # where JPEGs are decoded: auto (device on CUDA), cpu (Pillow), device (torchvision)

    def __post_init__(self) -> None:
        """Values of the wrong kind fail here with one line (TOML files are not type-checked)."""
        for name, low in (("batch_size", 1), ("seed", None), ("workers", 0)):
            v = getattr(self, name)
            if v is None and name == "workers":
                continue
            if not isinstance(v, int) or isinstance(v, bool) or (low is not None and v < low):
                need = f"an integer >= {low}" if low is not None else "an integer"
                raise SidbenchError(f"{name.replace('_', '-')} must be {need}, got {v!r}")
        for name in ("data", "detectors"):
            v = getattr(self, name)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise SidbenchError(f"{name} must be a list of strings, got {v!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "str | None" and v is not None and not isinstance(v, str):
                raise SidbenchError(f"{f.name} must be a string, got {v!r}")
            if f.type == "bool" and not isinstance(v, bool):
                raise SidbenchError(f"{f.name} must be true or false, got {v!r}")
        self._check_operating_points()
        from ..api.backbone import PRECISIONS

        from ..engine.decode import DECODES

        if self.decode not in DECODES:
            raise SidbenchError(f"decode must be one of {', '.join(DECODES)}, got {self.decode!r}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SidbenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.detector_options, dict) or not all(isinstance(v, dict) for v in self.detector_options.values()):
            raise SidbenchError(f"detector_options must be a table of tables, got {self.detector_options!r}")
        self.workers = capped_workers(self.workers)
        self.batch_size = capped_batch_size(self.batch_size)

    def _check_operating_points(self) -> None:
        from ..results.operating import CALIBRATIONS, fpr_targets, parse_threshold

        if not isinstance(self.threshold, str):
            raise SidbenchError(f"threshold must be a string, got {self.threshold!r}")
        parse_threshold(self.threshold)
        if self.calibrate is not None and self.calibrate not in CALIBRATIONS:
            raise SidbenchError(f"--calibrate {self.calibrate}: choose {' or '.join(CALIBRATIONS)}")
        if not isinstance(self.fpr_targets, list):
            raise SidbenchError(f"fpr_targets must be a list of fractions, got {self.fpr_targets!r}")
        fpr_targets(self.fpr_targets)
        from ..results.metrics import AP_FROM

        if self.ap_from not in AP_FROM:
            raise SidbenchError(f"--ap-from {self.ap_from}: choose {' or '.join(map(str, AP_FROM))}")

    def identity(self) -> dict[str, Any]:
        """What fixes the scores (not where they go, how fast or with which progress bars; nor the
        threshold, calibration and FPR targets, which only change the metrics computed from the scores)."""
        skip = ("out", "progress", "workers", "device", "no_cache", "threshold", "calibrate", "fpr_targets", "ap_from",
                "decode")
        ident = {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}
        ident["numerics"] = self.numerics()  # a resume on another device kind, precision or decode never mixes rows
        return ident

    def numerics(self) -> str:
        """The device kind and the backbones' effective precision, e.g. ``cuda-fp16``, ``cpu-fp32`` (which
        GPU of a kind does not change the numbers; the CPU always runs fp32), and ``+jpeg@cuda`` when JPEGs
        are decoded on the device (:mod:`sidbench.engine.decode`: its pixels may differ from Pillow's)."""
        device = pick_device(self.device)
        kind = device.split(":")[0]
        text = f"{kind}-{'fp32' if kind == 'cpu' else self.precision or 'fp16'}"
        from ..engine.decode import decode_variant

        variant = decode_variant(self.decode_mode(), device)
        return f"{text}+{variant}" if variant else text

    def decode_mode(self) -> str:
        """``cpu`` or ``device``: where this run decodes JPEGs (``auto``: on the device when it is CUDA)."""
        from ..engine.decode import resolve_decode

        return resolve_decode(self.decode, pick_device(self.device))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]


def capped_batch_size(batch_size: int) -> int:
    """``batch_size`` at most :data:`MAX_BATCH_SIZE` (the bound detector options have too): a batch is
    allocated whole, so ``batch_size = 100000000`` would ask for terabytes; says so once when it caps."""
    from ..api.options import SIZE_LIMITS

    most = SIZE_LIMITS["batch_size"][1]
    if batch_size > most:
        log.warning(f"batch-size {batch_size} is more than the {most} images a batch may hold; using {most}")
        return most
    return batch_size


def capped_workers(workers: int | None) -> int | None:
    """``workers`` at most the CPU count: more loader processes only cost memory (``workers = 100000``
    would exhaust it); says so once when it caps."""
    from ..engine.loader import cpu_count

    cpus = cpu_count()
    if workers is not None and workers > cpus:
        log.warning(f"workers = {workers} is more than the {cpus} CPU(s) here; using {cpus}")
        return cpus
    return workers


@dataclass
class RunData:
    """Records to evaluate, and optionally to fit on."""

    test: list[Record]
    train: list[Record] = field(default_factory=list)
    val: list[Record] = field(default_factory=list)
    name: str = "run"
    # Which records each detector scores under which protocol and perturbations (a suite's
    # per-dataset rules, see sidbench.run.suites.ScorePlan); None: every record, every perturbation,
    # each detector's own protocol.
    plan: Any = None


def pick_device(device: str | None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise SidbenchError(f"--device {device}: not a device; use cpu, cuda or cuda:N") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SidbenchError("--device cuda: no CUDA device is visible to PyTorch; use --device cpu")
    return device


def read_toml(path: str) -> dict[str, Any]:
    """A TOML file as a dict; unreadable or invalid files are one-line errors."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SidbenchError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SidbenchError(f"--config {path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1 if isinstance(exc.object, bytes) else "?"
        raise SidbenchError(f"--config {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); "
                            "TOML files are UTF-8: save it as UTF-8") from None


def config_from(values: dict[str, Any], source: str | None = None) -> RunConfig:
    """A RunConfig from TOML-style values (``source`` names the file for errors); ``detectors`` may be
    one comma-separated string, ``data`` one path."""
    import difflib

    from ..api.names import split_list

    known = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = [f"{k!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(k, known, n=1)) else repr(k)
                 for k in unknown]
        where = f"--config {source}: unknown key(s)" if source else "unknown run setting(s)"
        raise SidbenchError(f"{where} {', '.join(hints)}; the keys are those of `sidbench run --help` "
                            f"with _ for - ({', '.join(known)})")
    values = dict(values)
    if isinstance(values.get("detectors"), str):
        values["detectors"] = split_list(values["detectors"])
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return RunConfig(**values)


def with_settings(cfg: RunConfig, items: list[str], plugins: Any, detectors: list[str] | None = None) -> RunConfig:
    """``--set KEY=VALUE`` (the grammar of ``sidbench train``) as detector options: each setting goes to every
    detector in ``detectors`` (default ``cfg.detectors``) that takes that option; ``--set NAME:KEY=VALUE`` to
    the detectors ``NAME`` names (as written in ``--detectors``, without its checkpoint, its spec name, an alias
    of it or its family). Settings override the config file's ``[detector_options.NAME]``."""
    from ..api.names import parse_key_values, spec_name

    if not items:
        return cfg
    names = list(detectors if detectors is not None else cfg.detectors)
    options = {n: dict(o) for n, o in cfg.detector_options.items()}
    for key, value in parse_key_values(items, "--set").items():
        target, sep, option = key.rpartition(":")
        chosen = [n for n in names if name_matches(target, n, plugins)] if sep else names
        if sep and not chosen:
            raise SidbenchError(f"--set {key}=...: {target!r} is not one of the detectors run ({', '.join(names)})"
                                f"{_did_you_mean(target, names)}")
        takers = [n for n in chosen if option in plugins.detector(spec_name(n)).options or option == "preprocess"]
        if not takers:
            raise SidbenchError(f"--set {key}=...: none of {', '.join(chosen) or 'the detectors'} has an option "
                                f"{option!r}; see `sidbench list detectors NAME` for a detector's options")
        for n in takers:
            options.setdefault(n, {})[option] = value
    return dataclasses.replace(cfg, detector_options=options)


def name_matches(key: str, entry: str, plugins: Any) -> int:
    """How specifically ``key`` (a ``--set NAME:`` or ``[detector_options."NAME"]`` name) names the
    ``--detectors`` entry ``entry``: 4 as written, 3 without its checkpoint, 2 its spec name or an alias of it,
    1 its family; 0 not at all."""
    from ..api.errors import UnknownNameError
    from ..api.names import spec_name, split_name

    if key == entry:
        return 4
    if key == split_name(entry)[0]:
        return 3
    try:
        spec = plugins.detector(spec_name(entry))
    except (UnknownNameError, SidbenchError):
        return 0
    if key == spec.name or key == spec_name(entry):
        return 2
    try:
        if plugins.detector(key).name == spec.name:
            return 2
    except (UnknownNameError, SidbenchError):
        pass
    return 1 if key == spec.family else 0


def options_for(cfg: RunConfig, entry: str, plugins: Any) -> dict[str, Any]:
    """The ``detector_options`` that apply to the ``--detectors`` entry ``entry`` (the family's, then the spec's,
    then the entry's own, each overriding the one before)."""
    found = [(name_matches(k, entry, plugins), k) for k in cfg.detector_options]
    out: dict[str, Any] = {}
    for _, k in sorted(m for m in found if m[0]):
        out.update(cfg.detector_options[k])
    return out


def check_detector_options(cfg: RunConfig, plugins: Any) -> None:
    """A ``[detector_options."NAME"]`` table that names no detector of the run is an error (did you mean)."""
    for key in cfg.detector_options:
        if not any(name_matches(key, n, plugins) for n in cfg.detectors):
            raise SidbenchError(f"[detector_options.\"{key}\"]: {key!r} is not one of the detectors run "
                                f"({', '.join(cfg.detectors) or 'none'}){_did_you_mean(key, cfg.detectors)}")


def _did_you_mean(name: str, names: list[str]) -> str:
    import difflib

    from ..api.names import spec_name

    pool = list(dict.fromkeys([*names, *(spec_name(n) for n in names)]))
    close = difflib.get_close_matches(name, pool, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
