"""``sidbench list``: registered detectors, datasets, perturbations, backbones and protocols."""
from __future__ import annotations

import argparse

KINDS = ("detectors", "datasets", "perturbations", "backbones", "protocols")


def register(sub, common) -> None:
    p = sub.add_parser("list", parents=[common], help="list detectors, datasets, perturbations, backbones",
                       description="One name per line first, then a table of details.")
    p.add_argument("kind", nargs="?", choices=KINDS, default="detectors")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="with `detectors`: everything about one detector (options and defaults, input, protocol, "
                        "paper, training data, published weights)")
    p.add_argument("--names", action="store_true", help="names only")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from . import load_plugins_from

    if args.name:
        if args.kind != "detectors":
            from ..api.errors import SidbenchError

            raise SidbenchError(f"`sidbench list {args.kind} NAME`: details by name exist for detectors only")
        print(detector_details(load_plugins_from(args).detector(args.name)), end="")
        return 0
    if args.kind == "protocols":
        from ..data.preprocess import PROTOCOLS

        rows = [(k, v) for k, v in PROTOCOLS.items()]
        plugins = load_plugins_from(args)
        rows += [(p.name, f"{p.description} (detector {s.name})") for s in plugins.detectors.values()
                 if s.pixels is not None for p in s.pixels.protocols]
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
            from ..data.preprocess import variable_size

            size = "" if variable_size(s.preprocess, s.pixels) else f" {s.pixels.image_size}"
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


def detector_details(s) -> str:
    """Everything a user needs to run one detector, and every option with its default and type."""
    from tabulate import tabulate

    from ..api.options import option_rows
    from ..registry.weights import checksums, official_path

    if s.input == "pixels":
        px = s.pixels
        source = f"pixels: its own network on {px.image_size} px images, mean {px.mean}, std {px.std}, {px.precision} on CUDA"
    else:
        source = f"features {', '.join(s.features)} of backbone {s.backbone} (any backbone emitting them: --backbone)"
    if s.needs_fit:
        fit = f"needs fitting: --train PATH (and --val PATH), or a checkpoint {s.name}@CHECKPOINT"
        fit += f" or {s.name}@official" if s.official_weights else ""
    else:
        fit = "no fitting needed"
    lines = [f"{s.name}{' (the default of family ' + s.family + ')' if s.default else ''}", f"  {s.description}", "",
             f"input:         {source}", f"protocol:      {s.preprocess}", f"fit:           {fit}",
             f"trained on:    {', '.join(s.training_data) or 'not declared'}", f"paper:         {s.paper or '-'}",
             f"license:       {s.license or '-'}"]
    if s.official_weights:
        ow = s.official_weights
        here = "fetched" if official_path(s).is_file() else "not fetched yet"
        lines.append(f"official:      {ow.url} ({here}; `sidbench weights fetch {s.name}`)")
        details = [f"zip member {ow.member}" if ow.member else "", f"revision {ow.revision}" if ow.revision else "",
                   f"checked by {', '.join(checksums(ow)) or 'loading it (no checksum published)'}"]
        lines.append(f"               {'; '.join(d for d in details if d)}")
    lines.append(f"origin:        {s.origin}")
    lines += [f"code:          {s.repository}"] if s.repository else []
    if s.input == "pixels" and s.pixels.protocols:
        lines += [f"own protocols: {', '.join(f'{p.name} ({p.description})' for p in s.pixels.protocols)}"]
    lines += [f"published:     {k}: {v}" for k, v in s.published.items()]
    lines += [f"notes:         {s.notes}"] if s.notes else []
    rows = option_rows(s)
    lines += ["", f"options ({s.name}[key=value], --set key=value, or [detector_options.\"{s.name}\"] in a --config file;",
              "role: network = shapes the network (a checkpoint brings it back), fit = used by the fit, "
              "test = may be changed on a checkpoint):"]
    headers = ["option", "default", "type", "bounds", "role", "quickstart", "doc"]
    table = tabulate(rows, headers=headers, tablefmt="simple") if rows else "  none"
    return "\n".join(lines) + "\n" + table + "\n"


def _text(value) -> str:
    from ..api.names import option_text

    return option_text(value)
