"""Turning run options into records: user folders, or the generated quickstart."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..api.errors import DataError
from ..api.names import spec_name
from ..data.layout import resolve_records
from .config import RunConfig, RunData


def records_of(paths: list[str] | str | None, plugins: Any, dataset: str | None = None, role: str = "test", *,
               flag: str = "--data", **options: Any) -> list:
    """The records of every path in ``role`` (test, train or val); a split name in two paths is refused
    (``flag`` names their option in errors)."""
    if not paths:
        return []
    from ..data.trees import reading_roots

    paths = [paths] if isinstance(paths, str) else paths
    out, root_of = [], {}
    with reading_roots(paths):  # a layout split over two roots (UFD's test/ and diffusion_datasets/) reads as one
        for p in paths:
            recs = resolve_records(p, plugins, dataset, role, flag=flag, **options)
            for split in sorted({r.split for r in recs}):
                if root_of.setdefault(split, p) != p:
                    raise DataError(f"split {split!r} is in both {root_of[split]} and {p}: two data folders would "
                                    "merge into one split; rename one of the folders or run them separately")
            out += recs
    return out


def run_data(cfg: RunConfig, plugins: Any) -> RunData:
    test = records_of(cfg.data, plugins, cfg.dataset)
    name = "-".join(Path(p).resolve().name for p in cfg.data)[:60] or "run"
    return RunData(test, *fit_records(cfg, plugins), name=name)


def fit_records(cfg: RunConfig, plugins: Any) -> tuple[list, list]:
    """The ``--train`` and ``--val`` records, each read in its role (a GenImage or WildRF root gives its train/ or val/)."""
    return records_of(cfg.train, plugins, role="train", flag="--train"), records_of(cfg.val, plugins, role="val", flag="--val")


def suite_run_data(cfg: RunConfig, plugins: Any) -> tuple[RunConfig, RunData]:
    """A named benchmark (``--suite``) over the ``--data`` roots: its records, plan and perturbations."""
    from .suites import suite_data

    test, plan, perturb = suite_data(cfg.suite, cfg.data, plugins, cfg.perturb)
    cfg = dataclasses.replace(cfg, perturb=perturb)
    name = f"{cfg.suite}-" + "-".join(Path(p).resolve().name for p in cfg.data)[:60]
    return cfg, RunData(test, *fit_records(cfg, plugins), name=name, plan=plan)


QUICKSTART_PERTURB = "jpeg:75"  # the test splits again after JPEG compression
# Native centre crop for every feature detector: one backbone pass serves all of them, and the 256 -> 224 resize
# of the resize protocol would erase the quickstart's pixel-level traces (as it does on real benchmarks). Pixel
# detectors read their own protocol (their quickstart_options may set one).
QUICKSTART_PROTOCOL = "center_crop"


def quickstart_data(cfg: RunConfig, plugins: Any) -> tuple[RunConfig, RunData]:
    """The quickstart: every built-in family's default detector (feature detectors on clip-tiny), fitted on the
    generated train split."""
    from ..data.quickstart import QuickstartLayout, ensure_quickstart

    root = ensure_quickstart(progress=cfg.progress)
    layout = QuickstartLayout()
    detectors = cfg.detectors or default_detectors(plugins)
    from .config import check_detector_options, options_for

    check_detector_options(dataclasses.replace(cfg, detectors=detectors), plugins)
    options = {n: quickstart_options(plugins.detector(spec_name(n)), options_for(cfg, n, plugins)) for n in detectors}
    cfg = dataclasses.replace(cfg, detectors=detectors, detector_options=options, backbone=cfg.backbone or "clip-tiny",
                              perturb=cfg.perturb or QUICKSTART_PERTURB)
    data = RunData(
        test=layout.records(root, split="test"),
        train=layout.records(root, split="train"),
        val=layout.records(root, split="val"),
        name="quickstart",
    )
    return cfg, data


def quickstart_options(spec: Any, given: dict[str, Any]) -> dict[str, Any]:
    """A detector's quickstart options: the centre crop for feature detectors, its ``quickstart_options``, then
    what the user gave (``--protocol`` still overrides the protocol of every detector)."""
    base = {"preprocess": QUICKSTART_PROTOCOL} if spec.pixels is None else {}
    return {**base, **dict(spec.quickstart_options), **given}


def default_detectors(plugins: Any, kind: str | None = None, builtin_only: bool = True,
                      quickstart_only: bool = True) -> list[str]:
    """One detector per family: its default variant; by default of the built-in families whose default takes
    part in the quickstart. ``kind``: only detectors whose input is ``"features"`` or ``"pixels"``."""
    families: dict[str, Any] = {}
    for spec in sorted(plugins.detectors.values(), key=lambda s: s.name):
        if builtin_only and "/detectors/" not in spec.origin.replace("\\", "/"):
            continue
        if kind is not None and spec.input != kind:
            continue
        if spec.default or spec.family not in families:
            families[spec.family] = spec
    return sorted(s.name for s in families.values() if s.quickstart or not quickstart_only)


def check_names(cfg: RunConfig, plugins: Any) -> None:
    """Unknown detector, backbone, dataset, suite or perturbation names fail here, in one line, before any data
    is read and before torch is imported (a typo answers in well under a second)."""
    from ..data.perturb import parse_perturbations

    for name in cfg.detectors:
        plugins.detector(spec_name(name))
    if cfg.backbone:
        from ..registry.lookup import check_backbone_name

        check_backbone_name(cfg.backbone, plugins)
    if cfg.dataset:
        plugins.dataset(cfg.dataset)
    if cfg.suite:
        from .suites import get_suite

        get_suite(cfg.suite)
    parse_perturbations(cfg.perturb, plugins)
