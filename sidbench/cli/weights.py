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

    from ..api.escape import one_line
    from ..registry.weights import checksums, host, official_path, recorded_sha256
    from . import load_plugins_from

    specs = [s for s in load_plugins_from(args).detectors.values() if s.official_weights is not None]
    rows = []
    for s in specs:
        ow, path = s.official_weights, official_path(s)
        fetched = "yes" if path.is_file() else "no"
        checked = ", ".join(checksums(ow)) or ("none published (SHA-256 recorded)" if recorded_sha256(path)
                                               else "none published (content checked)")
        source = host(ow.url) + (f" (zip member {ow.member})" if ow.member else "")
        rows.append((s.name, fetched, source, checked, (ow.revision or "-")[:12], short_licence(s.license), ow.url))
    for row in rows:
        print(row[0])
    if rows:
        print()
        print(tabulate([[one_line(c) for c in row] for row in rows],
                       headers=["name", "fetched", "host", "checksum", "revision", "licence", "url"], tablefmt="simple"))
    return 0


def short_licence(text: str) -> str:
    """The licence's name, without the explanation that follows it (``"Apache-2.0 (...)"`` -> ``"Apache-2.0"``)."""
    head = (text or "not stated").split(":", 1)[0].split(" (", 1)[0].strip()
    return head if len(head) <= 40 else head[:39] + "..."


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
