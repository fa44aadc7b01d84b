"""RunConfig: everything that defines a run, one object for ``run``, ``train``, ``ablate`` and ``score``
(also readable from a TOML file with the same keys); RunData: the records it evaluates and fits on."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..api.errors import SidbenchError
from ..api.records import Record


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
        from ..api.backbone import PRECISIONS

        if self.precision is not None and self.precision not in PRECISIONS:
            raise SidbenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.detector_options, dict):
            raise SidbenchError(f"detector_options must be a table of tables, got {self.detector_options!r}")

    def identity(self) -> dict[str, Any]:
        """What fixes the results (not where they go, how fast or with which progress bars)."""
        skip = ("out", "progress", "workers", "device", "no_cache")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:8]


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


def config_from(values: dict[str, Any], source: str | None = None) -> RunConfig:
    """A RunConfig from TOML-style values (``source`` names the file for errors); ``detectors`` may be
    one comma-separated string, ``data`` one path."""
    from ..api.names import split_list

    unknown = set(values) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise SidbenchError(f"--config {source}: unknown key(s) {sorted(unknown)}" if source
                            else f"unknown run setting(s) {sorted(unknown)}")
    values = dict(values)
    if isinstance(values.get("detectors"), str):
        values["detectors"] = split_list(values["detectors"])
    if isinstance(values.get("data"), str):
        values["data"] = [values["data"]]
    return RunConfig(**values)
