"""The error gallery of the HTML report: per detector and split (clean images), the most confident false
positives (reals with the highest P(fake) above the row's threshold) and false negatives (fakes with the lowest
P(fake) at or below it), as thumbnails linked to the files: what a detector keys on, at a glance.

Thumbnails are bounded (:data:`THUMB` px), written once under ``<report>/gallery/`` (named by the file's path,
size and modification time, so a changed image gets a new one) and reused by later reports; everything is
local (no external assets).
"""
from __future__ import annotations

import hashlib
import html
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from .merge import Merged

THUMB = 128  # longest side of a thumbnail, in pixels
PER_KIND = 4  # false positives and false negatives shown per detector and split


def worst_errors(scores: "pd.DataFrame", threshold: float, k: int = PER_KIND) -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """(false positives, false negatives) of one detector on one split at ``threshold`` on the logit, the most
    confident first: reals by descending logit, fakes by ascending logit."""
    import numpy as np

    df = scores[np.isfinite(scores["logit"].astype(float))]
    called_fake = df["logit"].astype(float) > threshold
    fp = df[(df["label"] == 0) & called_fake].sort_values(["logit", "path"], ascending=[False, True], kind="stable")
    fn = df[(df["label"] == 1) & ~called_fake].sort_values(["logit", "path"], ascending=[True, True], kind="stable")
    return fp.head(k), fn.head(k)


def thumbnail(path: str, folder: Path) -> str | None:
    """The thumbnail of ``path`` in ``folder`` (made if missing), as a name relative to the report; None when
    the file cannot be read."""
    from PIL import Image

    from ..api.paths import check_replace, note_written, temporary_sibling

    try:
        st = os.stat(path)
    except OSError:
        return None
    name = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogateescape")).hexdigest()[:20]
    target = folder / f"{name}.jpg"
    if target.is_file():
        return f"{folder.name}/{target.name}"
    try:
        with Image.open(path) as img:
            img.thumbnail((THUMB, THUMB))
            small = img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    check_replace(target)
    tmp = temporary_sibling(target)
    try:
        small.save(tmp, format="JPEG", quality=85)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    note_written(target)
    return f"{folder.name}/{target.name}"


def _thresholds(metrics: "pd.DataFrame") -> dict[tuple[str, str], float]:
    """The honest (non-oracle) threshold of every detector x split of the clean images."""
    df = metrics[(metrics["perturbation"] == "none") & ~metrics["split"].str.startswith("mean:")]
    if "threshold_source" in df:
        df = df[df["threshold_source"].astype(str) != "oracle"]
    out = {}
    for det, split, t in zip(df["detector"], df["split"], df.get("threshold", [0.0] * len(df))):
        try:
            t = float(t)
        except (TypeError, ValueError):
            t = 0.0
        out[(det, split)] = 0.0 if math.isnan(t) else t
    return out


def _figure(row, thumb: str | None) -> str:
    logit = float(row.logit)
    p = 1 / (1 + math.exp(-logit)) if logit > -700 else 0.0
    try:
        href = html.escape(Path(str(row.path)).resolve().as_uri())
    except ValueError:  # a name a URI cannot hold
        href = html.escape(str(row.path))
    title = html.escape(str(row.path))
    img = (f'<img src="{html.escape(thumb)}" alt="{title}" loading="lazy">' if thumb
           else '<span class="missing">unreadable</span>')
    return (f'<figure class="err"><a href="{href}" title="{title}">{img}</a>'
            f"<figcaption>P(fake) {p:.3f}</figcaption></figure>")


def gallery_section(merged: "Merged", out: Path, k: int = PER_KIND) -> str:
    """The HTML of the error gallery (thumbnails written under ``out/gallery``)."""
    scores = merged.scores
    if "perturbation" in scores:
        scores = scores[scores["perturbation"] == "none"]
    if "skipped" in scores:
        scores = scores[scores["skipped"].fillna("").astype(str) == ""]
    thresholds = _thresholds(merged.metrics)
    folder = out / "gallery"
    parts = []
    for det, ddf in scores.groupby("detector", sort=True):
        rows = []
        for split, sdf in ddf.groupby("split", sort=True):
            t = thresholds.get((det, split), 0.0)
            fp, fn = worst_errors(sdf, t, k)
            cells = []
            for kind, df in (("false positives (reals called fake)", fp), ("false negatives (fakes called real)", fn)):
                figs = "".join(_figure(r, thumbnail(str(r.path), folder)) for r in df.itertuples()) or '<span class="muted">none</span>'
                cells.append(f'<td><div class="kind">{kind}</div><div class="errs">{figs}</div></td>')
            rows.append(f"<tr><th>{html.escape(str(split))}<br><span class='muted'>threshold P(fake) "
                        f"{1 / (1 + math.exp(-t)):.3f}</span></th>{''.join(cells)}</tr>")
        parts.append(f"<details><summary>{html.escape(str(det))}</summary><table class='gallery'>{''.join(rows)}"
                     "</table></details>")
    if not parts:
        return ""
    return (f'<p class="muted">Per detector and split (clean images): the {k} most confident false positives and '
            f"false negatives at the row's threshold, with P(fake); click a thumbnail for the file.</p>" + "".join(parts))
