"""``sidbench weights list|fetch``: the published checkpoints sidbench can fetch by name (``NAME@official``)."""
from __future__ import annotations

import argparse


def register(sub, common) -> None:
    p = sub.add_parser("weights", parents=[common], help="published checkpoints: list them, fetch them (NAME@official)",
                       description="Detectors whose paper published a checkpoint load it with NAME@official: it is "
                                   "downloaded once into $SIDBENCH_CACHE/weights/NAME/ and checked against its "
                                   "published SHA-256 or git blob id.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", parents=[common], help="every detector with a published checkpoint, and whether it is here")
    ls.set_defaults(func=list_main)
    fetch = actions.add_parser("fetch", parents=[common], help="download published checkpoints now (e.g. before going offline)")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="detector spec or family names, e.g. rine.progan2 univfd")
    fetch.set_defaults(func=fetch_main)


def list_main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ..registry.weights import official_path
    from . import load_plugins_from

    specs = [s for s in load_plugins_from(args).detectors.values() if s.official_weights is not None]
    rows = []
    for s in specs:
        ow, path = s.official_weights, official_path(s)
        checked = "sha256" if ow.sha256 else "git blob" if ow.git_blob else "none (hash recorded)"
        rows.append((s.name, "yes" if path.is_file() else "no", checked, ow.url))
    for row in rows:
        print(row[0])
    if rows:
        print()
        print(tabulate(rows, headers=["name", "fetched", "checked by", "url"], tablefmt="simple"))
    return 0


def fetch_main(args: argparse.Namespace) -> int:
    from ..api.checkpoints import file_sha256
    from ..registry.weights import fetch_official
    from . import load_plugins_from

    plugins = load_plugins_from(args)
    for name in args.names:
        spec = plugins.detector(name)
        path = fetch_official(spec)
        print(f"{spec.name}: {path} (sha256 {file_sha256(path)})")
    return 0
