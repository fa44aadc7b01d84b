"""``sidbench datasets check PATH``: counts, formats and sizes per split and class, and warnings
when reals and fakes differ in a way a detector could learn instead of the content."""
from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

# libjpeg's standard luminance table (ITU-T T.81 Annex K): JPEG quality is estimated against it.
_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def register(sub, common) -> None:
    p = sub.add_parser("datasets", parents=[common], help="inspect data folders (`datasets check PATH`)",
                       description="Inspect benchmark folders before running detectors on them.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = actions.add_parser("check", parents=[common], help="counts, formats, sizes, unreadable files, format bias",
                           description="Per split and class: image counts, file formats, sizes and JPEG quality; "
                                       "warns when reals and fakes differ in format, resolution or JPEG quality "
                                       "(a detector could learn that instead of the content); lists unreadable files.")
    c.add_argument("path", metavar="PATH", help="a data folder (any layout `sidbench run --data` accepts)")
    c.add_argument("--dataset", metavar="NAME", help="force a dataset layout (see `sidbench list datasets`)")
    c.add_argument("--sample", type=int, default=200, metavar="N",
                   help="open N files per split and class (evenly spaced; default 200; 0 = all)")
    c.set_defaults(func=main)


@dataclass(frozen=True)
class FileInfo:
    format: str = ""
    size: tuple[int, int] = (0, 0)
    quality: int | None = None  # estimated JPEG quality
    error: str = ""


def jpeg_quality(tables: dict) -> int | None:
    """The libjpeg quality whose scaled luminance table is closest to ``tables[0]``."""
    if not tables or 0 not in tables:
        return None
    luma = list(tables[0])

    def distance(q: int) -> int:
        scale = 5000 // q if q < 50 else 200 - 2 * q
        return sum(abs(min(255, max(1, (t * scale + 50) // 100)) - v) for t, v in zip(sorted(_LUMA), sorted(luma)))

    return min(range(1, 101), key=distance)


def inspect(path: str) -> FileInfo:
    """Format, size and JPEG quality from the header; a full decode with ``read_image`` finds bad files."""
    from PIL import Image

    from ..data.images import UnreadableImage, read_image

    try:
        img = read_image(path)
    except UnreadableImage as exc:
        return FileInfo(error=exc.reason)
    try:
        with Image.open(path) as im:
            q = jpeg_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else None
            return FileInfo(im.format or "?", img.size, q)
    except Exception as exc:  # noqa: BLE001
        return FileInfo(error=f"{type(exc).__name__}: {exc}")


def sample(records: Sequence, n: int) -> list:
    if n <= 0 or len(records) <= n:
        return list(records)
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def summarise(infos: list[FileInfo]) -> dict[str, Any]:
    ok = [i for i in infos if not i.error]
    fmts = Counter(i.format for i in ok)
    sizes = Counter(i.size for i in ok)
    qs = sorted(i.quality for i in ok if i.quality is not None)
    return {"formats": fmts, "sizes": sizes, "quality": qs[len(qs) // 2] if qs else None,
            "bad": [i for i in infos if i.error]}


def bias_warnings(split: str, real: dict, fake: dict) -> list[str]:
    """Differences between reals and fakes of one split that do not depend on the content."""
    out = []
    rf, ff = set(real["formats"]), set(fake["formats"])
    if rf and ff and not rf & ff:
        out.append(f"split {split}: reals are {'/'.join(sorted(rf))} and fakes are {'/'.join(sorted(ff))}: "
                   "a detector can learn the file format instead of the content")
    rs, fs = set(real["sizes"]), set(fake["sizes"])
    if rs and fs and not rs & fs:
        out.append(f"split {split}: reals and fakes share no resolution (reals mostly {_wh(real['sizes'])}, "
                   f"fakes mostly {_wh(fake['sizes'])}): a detector can learn the size or the resampling")
    rq, fq = real["quality"], fake["quality"]
    if rq is not None and fq is not None and abs(rq - fq) >= 5:
        out.append(f"split {split}: reals are JPEG quality ~{rq} and fakes ~{fq}: "
                   "a detector can learn the compression instead of the content")
    return out


def _wh(sizes: Counter) -> str:
    (w, h), _ = sizes.most_common(1)[0]
    return f"{w}x{h}"


def check(records: Sequence, n: int) -> tuple[list[list], list[str], dict[str, str], int]:
    """Table rows per split and class, warnings, unreadable files (path -> reason), files opened."""
    by: dict[tuple[str, int], list] = {}
    for r in records:
        by.setdefault((r.split, r.label), []).append(r)
    cache: dict[str, FileInfo] = {}  # Synthbuster's reals appear in every split: open them once
    stats, rows, bad = {}, [], {}
    for (split, label), recs in sorted(by.items()):
        picked = sample(recs, n)
        for r in picked:
            if r.path not in cache:
                cache[r.path] = inspect(r.path)
            if cache[r.path].error:
                bad[r.path] = cache[r.path].error
        s = stats[split, label] = summarise([cache[r.path] for r in picked])
        total = max(1, sum(s["formats"].values()))
        fmts = ", ".join(f"{f} {100 * c / total:.0f}%" for f, c in s["formats"].most_common())
        ws, hs = [w for w, _ in s["sizes"]] or [0], [h for _, h in s["sizes"]] or [0]
        rows.append([split, "fake" if label else "real", len(recs), len(picked), fmts or "-",
                     _wh(s["sizes"]) if s["sizes"] else "-", f"{min(ws)}-{max(ws)} x {min(hs)}-{max(hs)}",
                     "-" if s["quality"] is None else s["quality"], len(s["bad"])])
    warnings = []
    for split in sorted({k[0] for k in by}):
        if (split, 0) in stats and (split, 1) in stats:
            warnings += bias_warnings(split, stats[split, 0], stats[split, 1])
        else:
            warnings.append(f"split {split}: has only {'fakes' if (split, 1) in stats else 'reals'}: AP and AUC are undefined")
    return rows, warnings, bad, len(cache)


def main(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from ..api.escape import one_line, terminal_safe
    from ..data.layout import resolve_records
    from . import load_plugins_from

    records = resolve_records(args.path, load_plugins_from(args), args.dataset)
    rows, warnings, bad, opened = check(records, args.sample)
    print(terminal_safe(tabulate(rows, headers=["split", "class", "files", "opened", "formats", "common size",
                                                "sizes (w x h)", "JPEG q", "unreadable"], tablefmt="github")))
    limit = "" if args.sample <= 0 else f" (at most {args.sample} per split and class; --sample 0 opens all)"
    print(f"\n{len(records)} records; opened {opened} distinct files{limit}")
    for path, reason in sorted(bad.items()):
        print(f"UNREADABLE: {one_line(path)}: {one_line(reason)}")
    for w in warnings:
        print(f"WARNING: {one_line(w)}")
    return 0
