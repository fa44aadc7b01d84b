"""``sidbench list``: registered detectors, datasets, perturbations, backbones and protocols."""
from __future__ import annotations

import argparse

KINDS = ("detectors", "datasets", "perturbations", "backbones", "protocols")


def register(sub, common) -> None:
    p = sub.add_parser("list", parents=[common], help="list detectors, datasets, perturbations, backbones",
                       description="One name per line first, then a table of details.")
    p.add_argument("kind", nargs="?", choices=KINDS, default="detectors")
    p.add_argument("--names", action="store_true", help="names only")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from . import load_plugins_from

    if args.kind == "protocols":
        from ..data.preprocess import PROTOCOLS

        rows = [(k, v) for k, v in PROTOCOLS.items()]
    else:
        plugins = load_plugins_from(args)
        rows = [_row(args.kind, s) for s in getattr(plugins, args.kind).values()]
    for row in rows:
        print(row[0].split(" ")[0])  # the bare name, reusable as --detectors NAME
    if not args.names and rows:
        print()
        print(tabulate(rows, headers=_headers(args.kind), tablefmt="simple", maxcolwidths=48))
    return 0


def _headers(kind: str) -> list[str]:
    return {
        "detectors": ["name", "input", "backbone", "features", "protocol", "fit", "trained on", "origin"],
        "datasets": ["name", "description", "origin"],
        "perturbations": ["name", "defaults", "description"],
        "backbones": ["name", "description"],
        "protocols": ["name", "description"],
    }[kind]


def _row(kind: str, s) -> tuple:
    if kind == "detectors":
        fit = "needs fit" if s.needs_fit else "-"
        name = s.name + (" (default)" if s.default else "")
        if s.input == "pixels":  # its own network: no backbone; the protocol's size is its own
            from ..data.preprocess import VARIABLE_SIZE

            size = "" if s.preprocess in VARIABLE_SIZE else f" {s.pixels.image_size}"
            backbone, protocol = "- (own network)", s.preprocess + size
        else:
            backbone, protocol = s.backbone, s.preprocess
        return (name, s.input, backbone, ",".join(s.features), protocol, fit, ", ".join(s.training_data) or "-",
                _short(s.origin))
    if kind == "datasets":
        return (s.name, s.description, _short(s.origin))
    if kind == "perturbations":
        return (s.name, ",".join(str(v) for v in s.values), s.description)
    return (s.name, s.description)


def _short(origin: str) -> str:
    parts = origin.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else origin
