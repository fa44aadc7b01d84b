"""The HTML report's error gallery: the most confident false positives and negatives at the row's threshold, as
bounded local thumbnails generated once, with P(fake), linked to the files."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
from PIL import Image


def _results(tmp_path):
    """A results folder of one detector on one split of 10 real and 10 fake images (some 600 px wide)."""
    from sidbench.results.metrics import metrics_table

    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    logits = {0: [-3, -2, -1, 0.5, 1.5, 2.5, -4, -5, -6, -7], 1: [3, 2, 1, -0.5, -1.5, 4, 5, 6, 7, 8]}
    rows = []
    for label, values in logits.items():
        for i, z in enumerate(values):
            path = images / f"{label}_{i}.png"
            Image.fromarray(rng.integers(0, 256, (300, 600, 3), dtype=np.uint8)).save(path)
            rows.append(dict(path=str(path), label=label, split="gan_a", generator="gan_a", group="gan",
                             detector="det", perturbation="none", logit=float(z), prob=1 / (1 + math.exp(-z)),
                             skipped=""))
    scores = pd.DataFrame(rows)
    out = tmp_path / "run"
    out.mkdir()
    scores.to_csv(out / "scores.csv", index=False)
    metrics_table(scores).to_csv(out / "metrics.csv", index=False)
    return out, images


def test_html_report_holds_the_error_gallery(tmp_path, capsys):
    from sidbench.cli import main

    out, images = _results(tmp_path)
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    page = (out / "report" / "index.html").read_text()
    assert "<h2>Error gallery</h2>" in page
    gallery = page.split("<h2>Error gallery</h2>")[1].split("<h2>")[0]
    # at threshold 0: false positives are the reals with logit > 0, the most confident first (2.5, 1.5, 0.5);
    # false negatives the fakes with logit <= 0, the lowest first (-1.5, -0.5)
    links = re.findall(r'href="file://([^"]+)"', gallery)
    assert [l.rsplit("/", 1)[1] for l in links] == ["0_5.png", "0_4.png", "0_3.png", "1_4.png", "1_3.png"]
    probs = re.findall(r"P\(fake\) (\d\.\d{3})</figcaption>", gallery)
    assert probs == [f"{1 / (1 + math.exp(-z)):.3f}" for z in (2.5, 1.5, 0.5, -1.5, -0.5)]
    thumbs = re.findall(r'<img src="(gallery/[0-9a-f]+\.jpg)"', gallery)
    assert len(thumbs) == 5
    for t in thumbs:  # local files, bounded in size
        with Image.open(out / "report" / t) as img:
            assert max(img.size) <= 128
    assert not re.search(r'(src|href)="(https?:)?//', page)  # offline: nothing from the network
    # generated once: a second report reuses the thumbnails untouched
    stamps = {t: (out / "report" / t).stat().st_mtime_ns for t in thumbs}
    assert main(["report", str(out)]) == 0
    assert {t: (out / "report" / t).stat().st_mtime_ns for t in thumbs} == stamps
