"""Results folders against a careless or hostile user (#20): a planted link never leads a write outside the
folder, a legacy folder is adopted by content only, a kill between a rename and the manifest update is
recoverable, temporary files do not survive --overwrite, a folder without config.json is adopted only with
the same options, pasted hints are shell-safe, CSVs read back, terminals see no raw escapes, and --out
never lies inside --data. Numbers in brackets are the issue's case ids."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_folder, write_image
from sidbench.cli import main
from test_results_folder import PROBES, one_line_error, run_args


class Killed(BaseException):
    """Stands for a SIGKILL at a chosen point: nothing after it runs (the run's own clean-up keeps what scored)."""


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(tmp_path / "data", splits=("s",), n=2)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- (1) links ------------------------------------------------------------------------------------------------

LINKED = (".sidbench-lock", "scores.csv", ".sidbench-hashes", ".sidbench-results", "metrics.csv")  # the appended,
# truncated and locked files, and one atomically replaced (config.json, run.json, leaderboard.md, skipped.csv alike)


def test_a_planted_link_in_a_results_folder_never_changes_the_file_it_points_to(tmp_path, data, capsys):
    """[1] the lock was opened with O_CREAT and no O_NOFOLLOW (notes.txt became the lock's JSON), a resume cut
    the last line of the file scores.csv pointed to, and the hash index and manifest were appended to."""
    done = tmp_path / "done"
    assert main(run_args(data, done)) == 0
    write_image(data / "s" / "1_fake" / "new.png", np.random.default_rng(5), fake=True)  # work for the resume
    for name in LINKED:
        out = Path(shutil.copytree(done, tmp_path / f"out{name}"))
        notes = tmp_path / f"notes{name}.txt"
        notes.write_bytes(b"years of work, no newline at the end")
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(notes)
        capsys.readouterr()
        code = main(run_args(data, out))
        err = capsys.readouterr().err
        assert notes.read_bytes() == b"years of work, no newline at the end", name
        assert "Traceback" not in err, name
        if code != 0:
            assert code == 2 and len([ln for ln in err.splitlines() if ln.startswith("sidbench: error:")]) == 1, err


def test_a_lock_link_in_a_new_folder_is_refused_in_one_line(tmp_path, data, capsys):
    out = tmp_path / "out"
    out.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    (out / ".sidbench-lock").symlink_to(notes)
    err = one_line_error(capsys, run_args(data, out))
    assert "symbolic link" in err and notes.read_text() == "keep"


def test_a_linked_sub_folder_never_takes_a_write_outside(tmp_path, data, capsys):
    """[1] with out/checkpoints a link to another folder, the fitted checkpoint was written there."""
    train = make_folder(tmp_path / "train", splits=("t",), n=2, seed=1)
    out = tmp_path / "out"
    fit = [*[a if a != "slowprobe" else "meanprobe" for a in run_args(data, out)], "--train", str(train)]
    assert main(fit) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_bytes(b"the user's own model")
    shutil.rmtree(out / "checkpoints")
    (out / "checkpoints").symlink_to(elsewhere)
    err = one_line_error(capsys, [*fit, "--overwrite"])
    assert "symbolic link" in err
    assert snapshot(elsewhere) == {"model.safetensors": b"the user's own model"}


def test_a_link_at_the_temporary_name_is_never_written_through(tmp_path):
    """The temporary file of an atomic write has a guessable name (.NAME.<pid>.tmp)."""
    from sidbench.api.paths import temporary_sibling, write_atomic

    notes = tmp_path / "notes.txt"
    notes.write_text("keep")
    target = tmp_path / "out" / "metrics.csv"
    target.parent.mkdir()
    temporary_sibling(target).symlink_to(notes)
    write_atomic(target, "a,b\n")
    assert notes.read_text() == "keep" and target.read_text() == "a,b\n"
    assert not os.path.lexists(temporary_sibling(target))


# -- (2) legacy folders ---------------------------------------------------------------------------------------

def test_a_copied_config_does_not_make_a_folder_sidbench_s(tmp_path, data, capsys):
    """[2] a folder holding a copied config.json was adopted as a legacy results folder; --overwrite then deleted
    the user's report/thesis.tex and checkpoints/my.safetensors."""
    done = tmp_path / "done"
    assert main(run_args(data, done)) == 0
    mine = tmp_path / "mine"
    (mine / "report").mkdir(parents=True)
    (mine / "checkpoints").mkdir()
    shutil.copy(done / "config.json", mine / "config.json")
    (mine / "report" / "thesis.tex").write_text("\\chapter{one}")
    shutil.copy(next((done).glob("*.csv")), mine / "checkpoints" / "my.safetensors")
    before = snapshot(mine)
    err = one_line_error(capsys, run_args(data, mine, "--overwrite"))
    assert "not a sidbench results folder" in err and "nothing was deleted" in err
    assert snapshot(mine) == before


def test_a_legacy_folder_is_adopted_by_content_and_overwrite_keeps_user_files(tmp_path, data, capsys):
    """A folder of a sidbench without the manifest: its own files go, the user's stay (named like sidbench's)."""
    train = make_folder(tmp_path / "train", splits=("t",), n=2, seed=1)
    fit = [a if a != "slowprobe" else "meanprobe" for a in run_args(data, None)]
    out = tmp_path / "out"
    assert main([*fit, "--out", str(out), "--train", str(train)]) == 0
    (out / ".sidbench-results").unlink()  # as an older sidbench left it
    (out / "report" / "figures").mkdir(parents=True)  # an older sidbench's report, beside the user's thesis
    (out / "report" / "index.html").write_text('<!DOCTYPE html>\n<html><head><title>sidbench report: out</title>'
                                               '</head><body><img src="figures/bars_acc.png"></body></html>\n')
    (out / "report" / "figures" / "bars_acc.png").write_bytes(b"\x89PNG")
    (out / "report" / "thesis.tex").write_text("\\chapter{one}")
    (out / "checkpoints" / "my.safetensors").write_bytes((out / "checkpoints" / "meanprobe.safetensors").read_bytes())
    (out / "checkpoints" / "notes.confusion.csv").write_text("mine\n")
    capsys.readouterr()
    assert main([*fit, "--out", str(out), "--train", str(train), "--overwrite"]) == 0
    assert (out / "report" / "thesis.tex").read_text() == "\\chapter{one}"
    assert (out / "checkpoints" / "my.safetensors").exists() and (out / "checkpoints" / "notes.confusion.csv").exists()
    assert "kept 3" in capsys.readouterr().err  # the older report's index.html and figures were sidbench's
    assert not (out / "report" / "index.html").exists() and not (out / "report" / "figures").exists()


# -- (8) (32) a kill between the rename and the manifest, temporary files ---------------------------------------

def _kill_after_replace(monkeypatch, name: str) -> None:
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if Path(dst).name == name:
            raise Killed

    monkeypatch.setattr(os, "replace", replace)


def test_a_kill_right_after_a_rename_is_resumed_and_overwrite_finishes(tmp_path, data, capsys, monkeypatch):
    """[8] every later run failed with 'leaderboard.md is in the way', and --overwrite deleted the scores first
    and then failed the same way."""
    out = tmp_path / "out"
    _kill_after_replace(monkeypatch, "leaderboard.md")
    with pytest.raises(Killed):
        main(run_args(data, out))
    monkeypatch.undo()
    assert main(run_args(data, out)) == 0
    _kill_after_replace(monkeypatch, "leaderboard.md")
    with pytest.raises(Killed):
        main(run_args(data, out, "--perturb", "jpeg:50", "--overwrite"))
    monkeypatch.undo()
    assert main(run_args(data, out, "--perturb", "jpeg:50", "--overwrite")) == 0
    assert "jpeg50" in (out / "scores.csv").read_text()


def test_a_checkpoint_renamed_before_the_kill_is_loaded_not_fitted_again(tmp_path, data, capsys, monkeypatch):
    """[8] a checkpoint in that window was fitted again on every resume, then refused as 'in the way'."""
    train = make_folder(tmp_path / "train", splits=("t",), n=2, seed=1)
    fit = [*[a if a != "slowprobe" else "meanprobe" for a in run_args(data, tmp_path / "out")], "--train", str(train)]
    _kill_after_replace(monkeypatch, "meanprobe.safetensors")
    with pytest.raises(Killed):
        main(fit)
    monkeypatch.undo()
    capsys.readouterr()
    assert main(fit) == 0
    assert "loaded the checkpoint fitted by the earlier run" in capsys.readouterr().err


def test_a_hash_index_an_older_sidbench_left_unlisted_is_adopted_by_content(tmp_path, data):
    """The index was listed only after its first write (older sidbench): such a file is not "in the way" now."""
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    manifest = out / ".sidbench-results"
    manifest.write_bytes(b"".join(ln + b"\n" for ln in manifest.read_bytes().splitlines() if ln != b".sidbench-hashes"))
    write_image(data / "s" / "1_fake" / "new.png", np.random.default_rng(5), fake=True)
    assert main(run_args(data, out)) == 0
    assert b".sidbench-hashes" in manifest.read_bytes().splitlines()


def test_temporary_files_of_a_killed_run_are_ignored_and_overwrite_removes_them(tmp_path, data, capsys):
    """[32] a SIGKILL while scores.csv was finalised left .scores.csv.<pid>.tmp, which --overwrite kept."""
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    stale = [out / ".scores.csv.4242.tmp", out / ".metrics.csv.77.tmp"]
    for p in stale:
        p.write_text("detector,split\nhalf")
    assert main(run_args(data, out)) == 0  # ignored by a resume
    capsys.readouterr()
    assert main(run_args(data, out, "--overwrite")) == 0
    assert not any(p.exists() for p in stale)
    assert "kept" not in capsys.readouterr().err


# -- (12) a folder without config.json -----------------------------------------------------------------------

def test_a_folder_without_config_is_adopted_only_with_the_same_options(tmp_path, data, capsys):
    """[12] a finished folder whose config.json was deleted was adopted by a run with other options; the old
    scores stayed and config.json was rewritten to claim the new options."""
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    (out / "config.json").unlink()
    before = (out / "scores.csv").read_bytes()
    err = one_line_error(capsys, run_args(data, out, "--seed", "7"))
    assert "do not match this run" in err and "seed" in err
    assert not (out / "config.json").exists() and (out / "scores.csv").read_bytes() == before
    (out / "run.json").unlink()
    assert "no run.json records" in one_line_error(capsys, run_args(data, out))
    assert main(run_args(data, out, "--overwrite")) == 0


# -- (6) shell hints -----------------------------------------------------------------------------------------

def test_the_conversion_hint_quotes_the_file_name(tmp_path):
    """[6] a refused checkpoint named x$(touch PWNED).pth got a 'convert it once' command with the name unquoted."""
    import torch

    from sidbench.api.checkpoints import load_tensors
    from sidbench.api.errors import WeightsError

    class Net(torch.nn.Module):  # a pickled module: refused by weights_only loading
        pass

    bad = tmp_path / "x$(touch PWNED).pth"
    net = torch.nn.Linear(2, 1)
    torch.save({"model": net.state_dict(), "opts": {"x": slice(1, 2)}}, bad)
    with pytest.raises(WeightsError) as err:
        load_tensors(bad)
    hint = str(err.value).split("convert it once to plain tensors: ", 1)[1]
    command = hint.rsplit(" (then use", 1)[0]
    res = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()
    converted = torch.load(tmp_path / "x$(touch PWNED).tensors.pth", weights_only=True)
    assert torch.equal(converted["weight"], net.weight)


# -- (13) (14) names in CSVs and terminals --------------------------------------------------------------------

def test_csv_text_quotes_carriage_returns_and_reads_back():
    import io

    import pandas as pd

    from sidbench.results.scores import read_scores, to_csv

    df = pd.DataFrame({"detector": ["d", "d"], "split": ["s\r", "s"], "path": ["/a\rb.png", '/q"uote\n.png'],
                       "label": [0, 1], "logit": [0.5, -1.25]})
    back = read_scores(io.BytesIO(to_csv(df).encode()))
    assert back["path"].tolist() == df["path"].tolist() and back["split"].tolist() == ["s\r", "s"]
    assert back["logit"].tolist() == [0.5, -1.25]


def test_a_carriage_return_in_a_file_name_survives_run_resume_and_report(tmp_path, data, capsys):
    """[13] scores.csv parsed into junk, every resume scored again, then the report crashed."""
    from sidbench.results.scores import read_scores

    odd = write_image(data / "s" / "1_fake" / "a\rb.png", np.random.default_rng(3), fake=True)
    out = tmp_path / "out"
    assert main(run_args(data, out)) == 0
    scores = (out / "scores.csv").read_bytes()
    assert str(odd) in set(read_scores(out / "scores.csv")["path"])
    assert len(read_scores(out / "scores.csv")) == 5
    capsys.readouterr()
    assert main(run_args(data, out)) == 0
    assert "dropped" not in capsys.readouterr().err and (out / "scores.csv").read_bytes() == scores
    assert main(["report", str(out), "--format", "md"]) == 0


def test_sidbench_score_escapes_names_in_its_table(tmp_path, capsys):
    """[14] `sidbench score DIR` printed the raw terminal escapes of file names."""
    folder = tmp_path / "imgs"
    write_image(folder / "\x1b[2Jred\x07.png", np.random.default_rng(0))
    (folder / "\x1b]0;title\x07.png").write_bytes(b"not an image")
    assert main(["score", str(folder), "--detectors", "slowprobe", "--backbone", "clip-tiny", "--plugins-dir", PROBES,
                 "--no-progress", "--no-cache"]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out and "\x07" not in captured.out and "\x1b" not in captured.err
    assert "\\x1b[2Jred\\x07.png" in captured.out


# -- (18) --out inside --data -----------------------------------------------------------------------------------

def test_out_inside_the_data_folder_is_refused(tmp_path, data, capsys):
    """[18] the next run scored the report's own figures as fakes."""
    out = data / "s" / "1_fake" / "results"
    err = one_line_error(capsys, run_args(data, out))
    assert "inside the data folder" in err and not out.exists()
    assert "inside the data folder" in one_line_error(capsys, run_args(data, data))
