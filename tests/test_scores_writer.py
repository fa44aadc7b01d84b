"""Score rows made off the scoring thread (issue 25, item 8): the scoring thread hands each chunk over raw (a
``ScoreBlock``) and the score log's writer formats it. The file must be byte for byte what the earlier
per-row path wrote (csv.writer of ``score_row`` tuples, rows owed per detector, split and image), for awkward
names too, and resume must know every row at once."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from sidbench.api.records import Record
from sidbench.data.images import FileState
from sidbench.data.perturb import NONE
from sidbench.engine.inputs import ExtractOptions
from sidbench.engine.loader import FileInfo
from sidbench.engine.scoring import ScoreContext, _Plan
from sidbench.results.resume import FileIndex, index_line
from sidbench.results.scores import SCORE_COLUMNS, done_rows, score_row
from sidbench.results.score_log import RowKeys, ScoreBlock, ScoreLog, ScoreRows, csv_cells

AWKWARD = ["plain", "with,comma", 'with "quotes"', "cr\rinside", "lf\ninside", "crlf\r\n", "", " lead space",
           "trail space ", "caf\u00e9 \u6f22\u5b57", "bad byte \udcff", "'single'", "semi;colon", "tab\there", "=1+2"]


def csv_text(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def test_csv_cells_are_what_csv_writer_writes():
    for a in AWKWARD:
        for b in ("x", "", "a,b"):
            assert csv_cells(a, b) + "\r\n" == csv_text([(a, b)])
        assert csv_cells(a, 3) + "\r\n" == csv_text([(a, 3)])
    assert csv_cells("") == ""  # inside a row (csv.writer writes a row of one empty cell as "")
    assert csv_cells(None, True, -1, 0.5) + "\r\n" == csv_text([(None, True, -1, 0.5)])


def test_a_block_s_text_is_csv_writer_of_its_rows():
    records = [Record(f"/d/{name}/{i}.png", i % 3 - 1, split=name, group=AWKWARD[-1 - i % 5], generator=AWKWARD[i % 7])
               for i, name in enumerate(AWKWARD)]
    records.append(Record("/d/label-is-bool.png", True, "s"))  # not an int: written as csv.writer writes it
    n = len(records)
    extremes = [1e300, -1e300, 0.0, -0.0, 1e-320, 33.3, -745.2, 710.0, -710.0, float(torch.tensor(5e-39))]
    noise = torch.randn(n, generator=torch.Generator().manual_seed(0))
    logits = [torch.linspace(-7, 7, n).tolist(), (extremes * n)[:n], noise.tolist()]
    shas = ["ab" * 32] * (n - 2) + ["", "odd,sha"]
    for names, pert, protocol in ((["det", "det,2", 'd"3'], "none", "center_crop"),
                                  (["a", "b", "c"], "jpeg 75", "x\ry")):
        for owed in ([None, None, None], [[0, 2, 5], None, []], [list(range(n)), [n - 1], [1]]):
            block = ScoreBlock(names, pert, protocol, records, None, shas, logits, owed)
            rows = [score_row(name, records[k], pert, protocol, lg[k], shas[k])  # detector by detector, owed rows
                    for name, lg, o in zip(names, logits, owed) for k in (range(n) if o is None else o)]
            assert block.rows() == rows
            assert block.text() == csv_text(rows)
            assert len(rows) == sum(n if o is None else len(o) for o in owed)
    # an image in several splits: its records share its logit and hash
    shared = [Record("/r/a.png", 0, "s1"), Record("/r/a.png", 0, "s2"), Record("/f/b.png", 1, "s1")]
    block = ScoreBlock(["d1", "d2"], "none", "p", shared, [0, 0, 1], ["h0", "h1"], [[0.5, -1.5], [2.0, 3.0]],
                       [None, [1, 2]])
    assert block.text() == csv_text([score_row("d1", shared[0], "none", "p", 0.5, "h0"),
                                     score_row("d1", shared[1], "none", "p", 0.5, "h0"),
                                     score_row("d1", shared[2], "none", "p", -1.5, "h1"),
                                     score_row("d2", shared[1], "none", "p", 2.0, "h0"),
                                     score_row("d2", shared[2], "none", "p", 3.0, "h1")])


def test_row_keys_behave_as_the_set_of_row_keys():
    keys = {("d", "none", "s", "/a"), ("d", "jpeg", "s", "/a"), ("e", "none", "t", "/b")}
    done = RowKeys(keys)
    assert set(done) == keys and len(done) == 3
    assert ("d", "none", "s", "/a") in done
    assert ("d", "none", "t", "/a") not in done and ("x", "none", "s", "/a") not in done
    done |= {("x", "none", "s", "/a")}
    assert ("x", "none", "s", "/a") in done and done.any("x", "none") and not done.any("x", "jpeg")
    done.pairs("y", "none").add(("s", "/c"))
    assert ("y", "none", "s", "/c") in done
    done.add_records("z", "none", [Record("/p", 0, "s"), Record("/q", 1, "t")])  # a chunk's rows, kept as records
    assert done.any("z", "none") and ("z", "none", "t", "/q") in done and ("z", "none", "s", "/q") not in done
    done.add_records("z", "jpeg", [Record("/p", 0, "s")])
    assert ("z", "jpeg", "s", "/p") in set(done) and len(done) == 8


@pytest.mark.parametrize("layout", ["aligned", "misaligned", "skips"])
def test_arrived_serves_each_chunk_s_outputs_in_order(layout):
    """Batches that are exactly one chunk are served whole; others are cut and joined per image as before."""
    from sidbench.engine.scoring import _Arrived

    spans = [range(0, 4), range(4, 8), range(8, 10)]
    feats = torch.arange(10.0)[:, None] * torch.ones(1, 3)
    batches = {"aligned": [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]],
               "misaligned": [[0, 1, 2], [3, 4, 5, 6, 7, 8], [9]],
               "skips": [[0, 1, 3], [2], [4, 6, 7, 5], [8, 9]]}[layout]
    skipped = {"skips": [2, 5]}.get(layout, [])
    arrived = _Arrived(spans)
    served = []
    for index in batches:
        kept = [i for i in index if i not in skipped]
        arrived.add(kept, {"f": feats[kept]}, [i for i in index if i in skipped])
        assert not (layout == "aligned" and arrived.where)  # whole chunks: no per-image entries
        while len(served) < len(spans) and arrived.has(spans[len(served)]):
            served.append(arrived.take(spans[len(served)]))
    assert len(served) == 3
    for span, (loaded, outs) in zip(spans, served):
        assert loaded == [i for i in span if i not in skipped]
        assert torch.equal(outs["f"], feats[loaded])
    assert not arrived.whole and not arrived.batches and not arrived.where


class _Head:
    """A feature detector whose logit is a fixed function of its feature (enough for the row bookkeeping)."""

    input, device, pixel_input, required_features = "features", "cpu", None, ("f",)

    def __init__(self, name: str, scale: float):
        self.name, self.scale = name, scale

    def score(self, feats):
        return feats["f"][:, 0] * self.scale + 0.125


def old_rows(group, pert, protocol, records_by_det, done, loaded, outs):
    """The per-row path this replaces: every image's records in turn, each row owed unless finished."""
    wanted = {d.name: {(r.split, r.path) for r in records_by_det.get(d.name, ())} for d in group}
    by_path: dict[str, list[Record]] = {}
    for recs in records_by_det.values():
        for r in recs:
            if r not in by_path.setdefault(r.path, []):
                by_path[r.path].append(r)
    rows, keys = [], []
    for det in group:
        logits = det.score(outs).float().tolist()
        for (img, info), logit in zip(loaded, logits):
            for r in by_path[img.path]:
                key = (det.name, pert, r.split, r.path)
                if (r.split, r.path) in wanted[det.name] and key not in done:
                    rows.append(score_row(det.name, r, pert, protocol, logit, info.sha256 if info else ""))
                    keys.append(key)
    done.update(keys)
    return rows


def _chunks(plan, by_det, records, already):
    """Drive ``plan`` chunk by chunk as score_group does; the old path's rows alongside."""
    expected, old_done = [], set(already)
    index_of = {r.path: i for i, r in enumerate(records)}
    for chunk in plan.pending_chunks():
        loaded = [(img, None if index_of[img.path] % 4 == 3 else
                   FileInfo(f"{index_of[img.path]:064x}", FileState(10 + index_of[img.path], 1, 2, 3)))
                  for img in chunk if index_of[img.path] % 5 != 4]  # every fifth image did not load
        if not loaded:
            continue
        outs = {"f": torch.tensor([[index_of[img.path] * 0.37 - 1.1] for img, _ in loaded])}
        expected += old_rows(plan.group, plan.pert.name, "center_crop", by_det, old_done, loaded, outs)
        plan.write_chunk("center_crop", loaded, outs)
    return expected, old_done


@pytest.mark.parametrize("case", ["fresh", "partly_done", "shared_reals"])
def test_rows_and_resume_keys_are_those_of_the_per_row_path(case, tmp_path):
    group = [_Head("rine", 1.0), _Head("univfd", -2.0), _Head("clip,svm", 0.5)]
    records = [Record(f"/data/{'1_fake' if i % 2 else '0_real'}/{i:03d}{' ,x' if i == 7 else ''}.png", i % 2, "gen")
               for i in range(23)]
    by_det = {d.name: records for d in group}
    already: set[tuple] = set()
    if case == "partly_done":
        already = {("rine", "none", "gen", r.path) for r in records[:9]} | {("univfd", "none", "gen", records[12].path)}
        by_det["clip,svm"] = records[3:17]
    if case == "shared_reals":  # Synthbuster: one real image in two splits; a detector reads one split only
        reals = [Record(r.path, 0, "other") for r in records if r.label == 0]
        by_det = {"rine": records + reals, "univfd": records, "clip,svm": reals}
        already = {("rine", "none", "other", reals[0].path)}
    log = ScoreLog(tmp_path / "scores.csv")
    log.done |= already
    ctx = ScoreContext(log, ExtractOptions(batch_size=4, workers=0, progress=False),
                       index=FileIndex(tmp_path / "index"))
    plan = _Plan(group, NONE, by_det, ctx)
    assert all(plan.fresh.values()) == (case == "fresh")
    expected, old_done = _chunks(plan, by_det, records, already)
    log.close()
    text = (tmp_path / "scores.csv").read_bytes().decode("utf-8", "surrogateescape")
    assert text == csv_text([SCORE_COLUMNS] + expected)
    assert expected and set(log.done) == old_done == done_rows(tmp_path / "scores.csv") | already
    index = FileIndex(tmp_path / "index").load()
    assert index[records[0].path][1] == f"{0:064x}" and records[3].path not in index and records[4].path not in index
    # the same detectors and perturbation planned again in this process: only the images that did not load are owed
    again = _Plan(group, NONE, by_det, ScoreContext(log, ctx.options))
    assert not any(again.fresh.values())
    for det in group:
        owed = [(r.split, r.path) for r in by_det[det.name] if again._owed(det, r)]
        assert owed == [(r.split, r.path) for r in by_det[det.name] if (det.name, "none", r.split, r.path) not in old_done]
        assert all(int(path[-7:-4]) % 5 == 4 for _, path in owed)


def test_in_memory_rows_equal_the_file_s(tmp_path):
    group = [_Head("a", 1.0), _Head("b", 3.0)]
    records = [Record(f"/x/{i}.png", i % 2, "s", generator=AWKWARD[i % len(AWKWARD)]) for i in range(10)]
    files = []
    for log in (ScoreRows(), ScoreLog(tmp_path / "scores.csv")):
        ctx = ScoreContext(log, ExtractOptions(batch_size=4, workers=0, progress=False))
        by_det = {"a": records, "b": records}
        _chunks(_Plan(group, NONE, by_det, ctx), by_det, records, set())
        log.close()
        files.append(log.rows if isinstance(log, ScoreRows) else None)
    text = (tmp_path / "scores.csv").read_bytes().decode("utf-8", "surrogateescape")
    assert text == csv_text([SCORE_COLUMNS] + files[0])


def test_index_lines_are_json():
    for path in ["/a/b.png", "", 'q"uote\\back\nline', "caf\u00e9", "bad \udcff"]:
        st = FileState(123, 2 ** 62 + 1, 0, 99)
        expected = json.dumps([path, "ab" * 32, 123, 2 ** 62 + 1, 0, 99]).encode() + b"\n"
        assert index_line(path, "ab" * 32, st) == expected


def test_a_write_error_of_the_writer_reaches_the_scoring_thread(tmp_path):
    log = ScoreLog(tmp_path / "scores.csv")

    def fail():
        raise OSError("disk full")

    log.after(fail)
    with pytest.raises(OSError, match="disk full"):
        log.close()
