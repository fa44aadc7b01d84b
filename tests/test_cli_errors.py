"""User errors end in one line (exit 2), never a traceback; a results folder is never mixed between runs."""
from __future__ import annotations

import pytest

from sidbench.cli import main


def one_line_error(capsys, argv) -> str:
    capsys.readouterr()  # what earlier commands said on stderr (their progress) is not this error
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("extra, message", [
    (["--perturb", "jpeg:abc"], "values must be numbers"),
    (["--perturb", "jpeg:,"], "give a value"),
    (["--batch-size", "0"], "batch-size must be an integer >= 1"),
    (["--device", "foo"], "--device foo: not a device"),
    (["--detectors", "clip_svm[C=abc]"], "invalid option value"),
    (["--detectors", "clip_zeroshot", "--protocol", "center_crop", "--perturb", "nope:1"], "unknown perturbation 'nope'"),
])
def test_run_errors_are_one_line(capsys, image_folder, tmp_path, extra, message):
    argv = ["run", "--data", str(image_folder), "--backbone", "clip-tiny", "--out", str(tmp_path / "o"),
            "--no-progress", *(["--detectors", "clip_zeroshot"] if "--detectors" not in extra else []), *extra]
    assert message in one_line_error(capsys, argv)


def test_a_results_folder_resumes_only_its_own_run(capsys, image_folder, tmp_path):
    out = str(tmp_path / "o")
    base = ["run", "--data", str(image_folder), "--backbone", "clip-tiny", "--out", out, "--no-progress"]
    assert main([*base, "--detectors", "clip_zeroshot"]) == 0
    err = one_line_error(capsys, [*base, "--detectors", "clip_zeroshot", "--perturb", "jpeg:50"])
    assert "another configuration (differs in: perturb)" in err and "--overwrite" in err
    assert main([*base, "--detectors", "clip_zeroshot", "--perturb", "jpeg:50", "--overwrite"]) == 0


def test_two_data_folders_with_the_same_split_name_are_refused(capsys, tmp_path):
    from conftest import make_folder

    a, b = make_folder(tmp_path / "a", splits=("s",), n=2), make_folder(tmp_path / "b", splits=("s",), n=2)
    err = one_line_error(capsys, ["run", "--data", str(a), "--data", str(b), "--detectors", "clip_zeroshot",
                                  "--backbone", "clip-tiny", "--out", str(tmp_path / "o")])
    assert "split 's' is in both" in err


def test_corrupt_safetensors_is_a_weights_error(tmp_path):
    from sidbench.api.checkpoints import load_tensors
    from sidbench.api import WeightsError

    (tmp_path / "x.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_tensors(tmp_path / "x.safetensors")


def test_list_names_are_reusable(capsys):
    assert main(["list", "detectors", "--names"]) == 0
    names = capsys.readouterr().out.split()
    assert "rine.progan4" in names and "(default)" not in names
