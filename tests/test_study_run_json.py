"""A study's run.json is written by the writer `sidbench run` uses: the RunConfig built of the study's flags,
each variant's detector entry (code hash, fit summary, training data) and the study's own fields under "study";
a study builds each detector from the seeded random state (as a run does); and a study folder of an older
sidbench (its own run.json schema) is still adopted and reported."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sidbench.cli import main

from conftest import make_folder

SIZE = (224, 224)
RUN_KEYS = {"name", "config", "detectors", "plugins", "backbones", "perturbations", "counts", "seed", "timings_s",
            "environment"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("study-json")
    return {"train": str(make_folder(root / "train", ("a",), n=4, size=SIZE, seed=1)),
            "val": str(make_folder(root / "val", ("a",), n=2, size=SIZE, seed=2)),
            "data": str(make_folder(root / "test", ("x",), n=2, size=SIZE, seed=3))}


def ablate(folders: dict, out: Path, torch_state: int) -> dict:
    """jpeg_matrix fitting UnivFD (whose head's bias comes from the random state it is built in) at one quality,
    after the global random state was set to ``torch_state``."""
    torch.manual_seed(torch_state)
    argv = ["ablate", "jpeg_matrix", "--detector", "univfd", "--qualities", "90", "--set", "max_epochs=1",
            "--set", "augment=false", "--data", folders["data"], "--train", folders["train"], "--val", folders["val"],
            "--out", str(out), "--no-progress", "--device", "cpu", "--backbone", "clip-tiny", "--seed", "3"]
    assert main(argv) == 0
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def study(folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    ablate(folders, out, torch_state=1)
    return out


def test_a_study_run_json_is_a_run_json_with_the_study_under_its_own_key(study):
    from sidbench.results.manifest import RUN_JSON_KEYS

    info = json.loads((study / "run.json").read_text())
    assert RUN_KEYS | {"study"} == set(info) and RUN_JSON_KEYS <= set(info)
    config = info["config"]  # a RunConfig, as `sidbench run` records it
    assert config["seed"] == info["seed"] == 3 and config["backbone"] == "clip-tiny" and config["numerics"] == "cpu-fp32"
    assert config["detectors"] == ["univfd"] and config["out"] == str(study)
    assert config["detector_options"] == {"univfd": {"max_epochs": 1, "augment": False}}
    assert info["perturbations"] == ["jpeg90"]
    [det] = info["detectors"]
    assert det["name"] == "univfd (train q90)" and det["spec"].startswith("univfd") and det["backbone"] == "clip-tiny"
    assert len(det["code"]["source_sha256"]) == 16 and isinstance(det["fit"], dict)
    assert det["training"]["n_real"] == det["training"]["n_fake"] == 4 and det["training"]["splits"] == ["a"]
    assert det["options"]["max_epochs"] == 1
    assert "sidbench.detectors.univfd" in {p["name"] for p in info["plugins"]}
    assert info["study"]["name"] == "jpeg_matrix" and info["study"]["command"].startswith("sidbench ablate jpeg_matrix")
    assert info["study"]["data"]["test"]["images"] == info["counts"]["test"] == 4


def test_study_detectors_are_built_from_the_seeded_random_state(study, folders, tmp_path):
    ablate(folders, tmp_path / "again", torch_state=2)
    assert (tmp_path / "again" / "scores.csv").read_text() == (study / "scores.csv").read_text()


def test_an_older_study_folder_is_adopted_and_reported(study, tmp_path, capsys):
    from sidbench.api.paths import RESULTS_MANIFEST
    from sidbench.results import manifest
    from sidbench.results.folder import ResultsFolder

    old = tmp_path / "old"
    shutil.copytree(study, old)
    (old / RESULTS_MANIFEST).unlink()  # written before results folders had a manifest
    (old / "config.json").unlink(missing_ok=True)
    (old / "run.json").write_text(json.dumps({  # the run.json schema of an older `sidbench ablate`
        "name": "ablate-jpeg_matrix", "study": "jpeg_matrix",
        "detectors": [{"name": "univfd (train q90)", "spec": "univfd", "input": "features", "backbone": "clip-tiny",
                       "preprocess": "resize_center_crop", "training_data": ["a"], "options": {"max_epochs": 1}}],
        "backbones": {}, "counts": {"test": 4, "train": 8, "val": 4}, "seed": 0, "timings_s": {}, "environment": {}}))
    assert manifest.is_legacy_results(old)
    ResultsFolder.open(old).release()
    listed = {p.name for p in manifest.listed_files(old)}
    assert {"run.json", "study.json", "scores.csv", "metrics.csv"} <= listed and "table.md" not in listed
    capsys.readouterr()
    assert main(["report", str(old), "--format", "csv"]) == 0
    assert "univfd (train q90)" in capsys.readouterr().out
