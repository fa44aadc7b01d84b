"""Malformed checkpoints and non-finite numbers (#16.7, #16.9): metadata is checked against the tensors before
anything is allocated, metadata of the wrong kind is one line, NaN/Inf weights or logits are refused naming the
detector, and metrics never crash on a NaN."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from conftest import make_folder
from sidbench.api.checkpoints import save_tensors
from test_results_folder import one_line_error


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(tmp_path / "data", splits=("s",), n=2)


def run_with(data: Path, tmp_path: Path, detector: str) -> list[str]:
    return ["run", "--data", str(data), "--detectors", detector, "--backbone", "clip-tiny", "--batch-size", "2",
            "--no-progress", "--no-cache", "--out", str(tmp_path / "out")]


def checkpoint(tmp_path: Path, name: str, meta: dict, edit=None) -> str:
    """A checkpoint of detector ``name`` on clip-tiny as sidbench saves it, with ``meta`` merged into its metadata."""
    from sidbench import load_detector

    det = load_detector(name, backbone="clip-tiny")
    state = det.state_dict()
    if edit is not None:
        edit(state)
    base = {"detector": det.name, "options": {}, "backbone": "clip-tiny", "extra": det.extra_metadata()}
    path = tmp_path / f"{name}.safetensors"
    save_tensors(path, state, {**base, **meta})
    return str(path)


def test_metadata_sizes_are_checked_against_the_tensors_before_allocating(tmp_path, data, capsys):
    """#16.7: cache_size=1e12 in a tiny file made Tip-Adapter allocate 128 TB (and any size under the RAM, for real)."""
    for size in (1e12, 10**9, 3):
        path = checkpoint(tmp_path, "tip_adapter", {"extra": {"alpha": 1.0, "beta": 1.0, "cache_size": size}})
        err = one_line_error(capsys, run_with(data, tmp_path, f"tip_adapter@{path}"))
        assert "cache_size" in err and "does not match tensor 'cache.keys'" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("meta, message", [
    ({"extra": []}, "'extra' is of type list, not dict"),
    ({"detector": 5}, "'detector' is of type int, not str"),
    ({"extra": {"alpha": "abc", "cache_size": 0}}, "metadata of the wrong kind for detector 'tip_adapter'"),
    ({"extra": {"alpha": [1], "cache_size": 0}}, "metadata of the wrong kind for detector 'tip_adapter'"),
    ({"extra": {"alpha": math.nan, "cache_size": 0}}, "are not finite numbers"),
])
def test_metadata_of_the_wrong_kind_is_one_line(tmp_path, data, capsys, meta, message):
    path = checkpoint(tmp_path, "tip_adapter", meta)
    assert message in one_line_error(capsys, run_with(data, tmp_path, f"tip_adapter@{path}"))


def test_nan_weights_are_refused_naming_the_detector(tmp_path, data, capsys):
    """#16.7: NaN weights wrote NaN rows, then every metrics step crashed."""
    def poison(state):
        next(v for k, v in state.items() if k.endswith("weight"))[0, 0] = math.nan

    path = checkpoint(tmp_path, "univfd", {}, edit=poison)
    err = one_line_error(capsys, run_with(data, tmp_path, f"univfd@{path}"))
    assert "NaN or Inf" in err and "detector 'univfd.progan'" in err


NAN_PLUGIN = '''
from sidbench.api import Detector, DetectorSpec, hookimpl

class NanProbe(Detector):
    def score(self, features):
        return features["image_embed"].sum(-1) * float("nan")

@hookimpl
def sidbench_detectors():
    return [DetectorSpec("nanprobe", NanProbe, ("image_embed",), backbone="clip-tiny")]
'''


def test_nan_logits_are_refused_naming_the_detector(tmp_path, data, capsys):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nanprobe.py").write_text(NAN_PLUGIN)
    argv = [*run_with(data, tmp_path, "nanprobe"), "--plugins-dir", str(tmp_path / "plugins")]
    err = one_line_error(capsys, argv)
    assert "detector 'nanprobe' produced" in err and "NaN or Inf logit" in err
    assert not (tmp_path / "out").exists()  # no NaN row was written (and the run that scored nothing cleaned up)


def test_metrics_never_crash_on_nan(caplog):
    import pandas as pd

    from sidbench.results.metrics import metrics_table

    scores = pd.DataFrame({"detector": ["d"] * 4, "split": ["s"] * 4, "group": ["g"] * 4, "perturbation": ["none"] * 4,
                           "label": [0, 0, 1, 1], "logit": [-1.0, math.nan, 2.0, math.inf], "protocol": ["p"] * 4})
    with caplog.at_level(logging.WARNING, logger="sidbench"):
        table = metrics_table(scores)
    row = table[table["split"] == "s"].iloc[0]
    assert (row["n_real"], row["n_fake"], row["acc"], row["ap"]) == (1, 1, 1.0, 1.0)
    assert "2 score row(s) with a NaN, Inf or missing logit" in caplog.text


def test_nan_in_a_fitted_checkpoint_file_is_a_weights_error(tmp_path):
    """The Python API refuses it too (not only the CLI)."""
    from sidbench import load_detector
    from sidbench.api import WeightsError

    def poison(state):
        next(iter(v for v in state.values() if v.is_floating_point()))[..., 0] = math.inf

    path = checkpoint(tmp_path, "univfd", {}, edit=poison)
    with pytest.raises(WeightsError, match="holds NaN or Inf values"):
        load_detector("univfd", weights=path, backbone="clip-tiny")
