"""What ``sidbench datasets check`` measures: counts, formats, sizes and JPEG quality per split and class,
and the differences between a split's reals and fakes that a detector could learn instead of the content
(GenImage's reals are ImageNet JPEGs at quality ~96, its fakes PNG), with the JPEG-aligned protocol that
removes the compression difference: the same JPEG quality applied to reals and fakes alike."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

# libjpeg's standard luminance table (ITU-T T.81 Annex K): JPEG quality is estimated against it.
_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
         14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
         49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
ALIGN_QUALITY = 96  # ImageNet's usual quality, UnbiasedGenImage's ("Fake or JPEG?", arXiv:2403.17608) choice
QUALITY_GAP = 5  # median JPEG qualities this far apart are a confound


@dataclass(frozen=True)
class FileInfo:
    format: str = ""
    size: tuple[int, int] = (0, 0)
    quality: int | None = None  # estimated JPEG quality
    error: str = ""


@dataclass
class CheckReport:
    """The per split and class table, the per split confounds, warnings, unreadable files and the suggestion."""

    rows: list[list] = field(default_factory=list)
    confounds: list[list] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)
    opened: int = 0
    align: dict[int, list[str]] = field(default_factory=dict)  # JPEG quality -> splits it would align

    ROW_HEADERS = ("split", "class", "files", "opened", "formats", "common size", "sizes (w x h)", "JPEG q", "unreadable")
    CONFOUND_HEADERS = ("split", "format (real / fake)", "size (real / fake)", "JPEG q (real / fake)", "confounds")


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
    import io

    from PIL import Image

    from .images import UnreadableImage, read_file, read_image

    try:
        data, _ = read_file(path)  # one read: the decode and the header come from the same bytes
        img = read_image(path, data=data)
    except UnreadableImage as exc:
        return FileInfo(error=exc.reason)
    try:
        with Image.open(io.BytesIO(data)) as im:
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
    if rq is not None and fq is not None and abs(rq - fq) >= QUALITY_GAP:
        out.append(f"split {split}: reals are JPEG quality ~{rq} and fakes ~{fq}: "
                   "a detector can learn the compression instead of the content")
    return out


def align_quality(real: dict, fake: dict) -> int | None:
    """The JPEG quality that gives reals and fakes the same compression, or None when they already share it:
    the compressed side's quality when only one side is JPEG, the lower one when both are."""
    rj, fj = "JPEG" in real["formats"], "JPEG" in fake["formats"]
    rq, fq = real["quality"], fake["quality"]
    if rj and fj:
        return min(rq, fq) if rq is not None and fq is not None and abs(rq - fq) >= QUALITY_GAP else None
    if rj != fj and (real["formats"] and fake["formats"]):
        return (rq if rj else fq) or ALIGN_QUALITY
    return None


def confound_row(split: str, real: dict, fake: dict) -> list:
    """One split's formats, sizes and qualities side by side, and which of them differ."""
    fmt = lambda s: "/".join(sorted(s["formats"])) or "-"  # noqa: E731
    size = lambda s: _wh(s["sizes"]) if s["sizes"] else "-"  # noqa: E731
    q = lambda s: "-" if s["quality"] is None else str(s["quality"])  # noqa: E731
    found = []
    if real["formats"] and fake["formats"] and not set(real["formats"]) & set(fake["formats"]):
        found.append("format")
    if real["sizes"] and fake["sizes"] and not set(real["sizes"]) & set(fake["sizes"]):
        found.append("size")
    if align_quality(real, fake) is not None and "format" not in found:
        found.append("compression")
    return [split, f"{fmt(real)} / {fmt(fake)}", f"{size(real)} / {size(fake)}", f"{q(real)} / {q(fake)}",
            ", ".join(found) or "none"]


def _wh(sizes: Counter) -> str:
    (w, h), _ = sizes.most_common(1)[0]
    return f"{w}x{h}"


def check(records: Sequence, n: int) -> CheckReport:
    """Open up to ``n`` files per split and class (each distinct file once) and compare reals with fakes."""
    by: dict[tuple[str, int], list] = {}
    for r in records:
        by.setdefault((r.split, r.label), []).append(r)
    cache: dict[str, FileInfo] = {}  # Synthbuster's and DRCT's reals appear in every split: open them once
    stats, report = {}, CheckReport()
    for (split, label), recs in sorted(by.items()):
        picked = sample(recs, n)
        for r in picked:
            if r.path not in cache:
                cache[r.path] = inspect(r.path)
            if cache[r.path].error:
                report.bad[r.path] = cache[r.path].error
        s = stats[split, label] = summarise([cache[r.path] for r in picked])
        total = max(1, sum(s["formats"].values()))
        fmts = ", ".join(f"{f} {100 * c / total:.0f}%" for f, c in s["formats"].most_common())
        ws, hs = [w for w, _ in s["sizes"]] or [0], [h for _, h in s["sizes"]] or [0]
        report.rows.append([split, "fake" if label else "real", len(recs), len(picked), fmts or "-",
                            _wh(s["sizes"]) if s["sizes"] else "-", f"{min(ws)}-{max(ws)} x {min(hs)}-{max(hs)}",
                            "-" if s["quality"] is None else s["quality"], len(s["bad"])])
    for split in sorted({k[0] for k in by}):
        if (split, 0) in stats and (split, 1) in stats:
            real, fake = stats[split, 0], stats[split, 1]
            report.warnings += bias_warnings(split, real, fake)
            report.confounds.append(confound_row(split, real, fake))
            q = align_quality(real, fake)
            if q is not None:
                report.align.setdefault(q, []).append(split)
        else:
            report.warnings.append(f"split {split}: has only {'fakes' if (split, 1) in stats else 'reals'}: "
                                   "AP and AUC are undefined")
    report.opened = len(cache)
    return report


def suggestion(report: CheckReport, data: str) -> str | None:
    """The JPEG-aligned protocol for the splits whose reals and fakes differ in compression, or None."""
    if not report.align:
        return None
    splits = sorted(s for ss in report.align.values() for s in ss)
    qualities = ",".join(str(q) for q in sorted(report.align))
    return (f"reals and fakes differ in compression in {len(splits)} split(s) ({', '.join(splits)}); score them "
            f"JPEG-aligned, the same JPEG quality applied to reals and fakes alike, and compare the jpeg rows: "
            f"sidbench run --data {data} --perturb jpeg:{qualities}")
