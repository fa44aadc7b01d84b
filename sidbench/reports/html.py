"""The offline HTML report: one ``index.html`` with inline CSS and PNG figures in ``figures/`` next to it
(relative links, no scripts, no network), so the folder can be zipped, mailed or opened from disk."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..api.paths import write_atomic
from .figures import FigureFile
from ..results.leaderboard import DAGGER, Leaderboard, split_columns
from .tables import to_html

if TYPE_CHECKING:
    from .runs import Merged

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:1180px;margin:24px auto;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.8em}
.muted{color:#666} .note{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:10px 0 18px;font-size:.88em}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #e4e4e4;padding:4px 9px;text-align:right;white-space:nowrap}
thead th{border-bottom:2px solid #999;background:#f6f6f6} tbody th{text-align:left;font-weight:500}
tbody tr:hover{background:#fafaf0} .best{color:#0b5d1e} .seen{color:#b35900}
.ci{display:block;font-size:.78em;color:#777} .scroll{overflow-x:auto}
figure{margin:14px 0 26px} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555} td.mark{text-align:center;color:#b35900;font-weight:600}
details{margin:6px 0} summary{cursor:pointer;font-weight:600;margin:8px 0} .mean{background:#f7f7fb} pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:.82em}
"""


def _runs_section(merged: "Merged") -> str:
    rows = []
    for run in merged.runs:
        info, env = run.info, run.info.get("environment", {})
        counts = info.get("counts", {})
        backbones = ", ".join(info.get("backbones", {})) or "-"
        dets = ", ".join(sorted({v for (r, _), v in merged.rename.items() if r == run.name}))
        commit = (env.get("git_commit") or "")[:10] or "-"
        rows.append(f"<tr><th>{html.escape(run.name)}</th><td>{html.escape(str(info.get('name', '-')))}</td>"
                    f"<td>{counts.get('test', '-')}</td><td>{counts.get('skipped', '-')}</td>"
                    f"<td>{html.escape(backbones)}</td><td style='text-align:left'>{html.escape(dets)}</td>"
                    f"<td>{html.escape(str(env.get('sidbench', '-')))} ({html.escape(commit)})</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("run", "data", "images", "skipped", "backbone", "detectors", "sidbench"))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _training_section(merged: "Merged") -> str:
    splits = [s for s in split_columns(merged.metrics) if not s.startswith("mean:")]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ["detector", "trained on", *splits])
    rows = []
    for det in merged.detectors:
        seen = merged.training_data.get(det, set())
        marks = "".join(f'<td class="mark">{"✓" if merged.seen_in_training(det, s) else ""}</td>' for s in splits)
        rows.append(f"<tr><th>{html.escape(det)}</th><td style='text-align:left'>"
                    f"{html.escape(', '.join(sorted(seen)) or 'not declared')}</td>{marks}</tr>")
    return (f'<p class="note">✓ = a generator of this split is in the detector\'s declared training data '
            f'(<code>run.json</code> &rarr; detectors[].training_data); such cells carry {DAGGER} in the tables.</p>'
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _figures_section(figures: Sequence[FigureFile], section: str) -> str:
    parts = []
    for f in figures:
        if f.section == section:
            cap = html.escape(f.title + (f": {f.caption}" if f.caption else ""))
            parts.append(f'<figure><img src="{html.escape(f.path)}" alt="{html.escape(f.title)}">'
                         f"<figcaption>{cap}</figcaption></figure>")
    return "".join(parts)


def render_html(merged: "Merged", boards: Sequence[Leaderboard], figures: Sequence[FigureFile],
                n_boot: int = 0) -> str:
    """The whole page as a string."""
    ci = (f"Below each value: the bootstrap 95% interval ({n_boot} resamples of the images of each split, "
          "stratified by label; means resample every split).") if n_boot else "No bootstrap intervals (use --bootstrap N)."
    title = "sidbench report: " + ", ".join(r.name for r in merged.runs)
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="muted">Accuracy at threshold 0.5 on P(fake); AP and ROC-AUC rank by the logit; '
            f"means are unweighted over splits. Best per column in <b class='best'>bold</b>; "
            f"<span class='seen'>{DAGGER}</span> = split generator seen in training. {html.escape(ci)}</p>",
            "<h2>Runs</h2>", _runs_section(merged), "<h2>Leaderboard (clean images)</h2>"]
    body += [f'<div class="scroll">{to_html(b)}</div>' for b in boards if b.perturbation == "none"]
    for section in dict.fromkeys(f.section for f in figures):
        body += [f"<h2>{html.escape(section)}</h2>", _figures_section(figures, section)]
    perturbed = [f'<div class="scroll">{to_html(b)}</div>' for b in boards if b.perturbation != "none"]
    if perturbed:
        body += ["<h2>Leaderboards under perturbations</h2>",
                 f"<details><summary>{len(perturbed)} tables</summary>{''.join(perturbed)}</details>"]
    body += ["<h2>Training data</h2>", _training_section(merged)]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html(merged: "Merged", boards: Sequence[Leaderboard], figures: Sequence[FigureFile], out: Path,
               n_boot: int = 0) -> Path:
    """Write ``out/index.html`` (the figures are already under ``out/figures``)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    write_atomic(path, render_html(merged, boards, figures, n_boot))
    return path
