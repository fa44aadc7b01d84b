"""A checkpoint brings its options: ``det@ckpt`` scores with the options it was fitted with, run.json says
so, and an explicit option that contradicts the checkpoint is a one-line error naming both."""
from __future__ import annotations

import json
import textwrap

import pytest
import torch

from sidbench.api import WeightsError
from sidbench.registry import load_detector

PLUGIN = textwrap.dedent('''
    from sidbench.api import Detector, DetectorSpec, hookimpl


    class ScaledProbe(Detector):
        """logit = k * (w . image_embed + b): k matters when scoring, lr only when fitting."""

        def __init__(self, spec, backbone, **options):
            super().__init__(spec, backbone, **options)
            import torch

            self.head = torch.nn.Linear(backbone.embed_dim, 1)

        def modules(self):
            return {"head": self.head}

        def score(self, features):
            return self.options["k"] * self.head(features["image_embed"].float()).squeeze(-1)


    @hookimpl
    def sidbench_detectors():
        return [DetectorSpec(name="scaled_probe", factory=ScaledProbe, features=("image_embed",), needs_fit=True,
                             preprocess="center_crop", options={"k": 1, "lr": 0.1}, description="test plugin")]
''')


@pytest.fixture
def probe(tmp_path, plugins):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "scaled_probe.py").write_text(PLUGIN)
    plugins.load_dir(str(folder))
    det = load_detector("scaled_probe", backbone="clip-tiny", plugins=plugins, k=3)
    return det, det.save(str(tmp_path / "probe.safetensors")), folder


def test_saved_options_are_restored(probe, plugins):
    det, path, _ = probe
    again = load_detector(f"scaled_probe@{path}", backbone="clip-tiny", plugins=plugins)
    assert again.options["k"] == 3 and again.options_from_checkpoint == {"k": 3}
    x = {"image_embed": torch.randn(4, 32, generator=torch.Generator().manual_seed(0))}
    torch.testing.assert_close(again.score(x), det.score(x))
    # an explicit option equal to the checkpoint's, and a test-time protocol, are fine
    same = load_detector("scaled_probe", weights=path, backbone="clip-tiny", plugins=plugins, k=3, preprocess="ten_crop")
    assert same.options_from_checkpoint == {} and same.preprocess == "ten_crop"


def test_contradicting_option_is_a_one_line_error(probe, plugins):
    _, path, _ = probe
    with pytest.raises(WeightsError) as info:
        load_detector(f"scaled_probe[k=2]@{path}", backbone="clip-tiny", plugins=plugins)
    msg = str(info.value)
    assert "k=2" in msg and "k=3" in msg and path in msg and "\n" not in msg
    with pytest.raises(WeightsError, match="k=1 contradicts"):  # the default, but given explicitly
        load_detector("scaled_probe", weights=path, backbone="clip-tiny", plugins=plugins, k=1)


def test_run_json_records_the_checkpoint_options(probe, tmp_path, image_folder):
    from sidbench.cli import main

    _, path, folder = probe
    out = tmp_path / "out"
    assert main(["run", "--data", str(image_folder), "--detectors", f"scaled_probe@{path}", "--backbone", "clip-tiny",
                 "--plugins-dir", str(folder), "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    info = json.loads((out / "run.json").read_text())["detectors"][0]
    assert info["options"]["k"] == 3 and info["options_from_checkpoint"] == {"k": 3}


def test_rine_architecture_from_the_checkpoint_and_its_contradiction(tmp_path):
    det = load_detector("rine.progan4", backbone="clip-tiny", tie=False, proj_dim=64)
    path = det.save(str(tmp_path / "rine.safetensors"))
    plain = load_detector("rine.progan4", weights=path, backbone="clip-tiny")
    assert plain.name == "rine.progan4[tie=false,proj_dim=64]" and not plain.tie and plain.options["proj_dim"] == 64
    with pytest.raises(WeightsError, match="tie=true contradicts .* tie=false"):
        load_detector("rine.progan4[tie=true]", weights=path, backbone="clip-tiny")


def test_bracket_options_show_in_the_display_name_and_label_is_a_deprecated_alias(probe, plugins):
    det = load_detector("scaled_probe[k=2]", backbone="clip-tiny", plugins=plugins)
    assert det.display_name == "scaled_probe[k=2]" == det.name
    with pytest.warns(DeprecationWarning, match="display_name"):
        assert det.label == "scaled_probe[k=2]"
    with pytest.warns(DeprecationWarning, match="display_name"):
        det.label = "other"
    assert det.name == "other"
