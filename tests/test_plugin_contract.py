"""The plugin contract cannot fail silently (issue 21 items 1-3, issue 20 case 11): augmentations are typed
and a string is refused where it is given; a fit that saw nothing is an error; `train` and `run --train` build
the same network; fitted values reach run.json; an edited plugin or a checkpoint rewritten in place is scored
again; a checkpoint brings back the options that shape its network; `--set NAME:` and config tables find
detectors given by alias, and a table for a detector not run is an error."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import make_folder
from sidbench.api import SidbenchError, WeightsError
from sidbench.cli import main

PLUGIN = textwrap.dedent('''
    from sidbench.api import Detector, DetectorSpec, Option, PixelInput, hookimpl

    SCALE = 1.0


    class HPCNN(Detector):
        """A conv of `channels` maps on the pixels, built (randomly initialised) in __init__."""

        def __init__(self, spec, backbone, **options):
            super().__init__(spec, backbone, **options)
            import torch

            c = self.options["channels"]
            self.net = torch.nn.Sequential(torch.nn.Conv2d(3, c, 3), torch.nn.AdaptiveAvgPool2d(1),
                                           torch.nn.Flatten(), torch.nn.Linear(c, 1))
            self.chosen = None

        def modules(self):
            return {"net": self.net}

        def score(self, features):
            return SCALE * self.options["gain"] * self.net(features["pixels"]).squeeze(-1)

        def fit(self, data, log=print):
            seen = 0
            for inputs, labels in data.batches("train", batch_size=4, augment=self.options["augment"]):
                seen += len(labels)
            self.chosen = 7  # "chosen on validation"
            return {"seen": seen}

        def extra_metadata(self):
            return {"chosen": self.chosen}

        def load_extra_metadata(self, extra):
            self.chosen = extra.get("chosen")


    class Lazy(HPCNN):
        def fit(self, data, log=print):
            return {"loss": 0.0}  # reads nothing


    @hookimpl
    def sidbench_detectors():
        common = dict(pixels=PixelInput(image_size=32), preprocess="center_crop", needs_fit=True)
        return [DetectorSpec(name="hpcnn.base", factory=HPCNN, default=True,
                             options={"channels": 8, "augment": None,
                                      "gain": Option(1.0, min=0.5, max=4, role="test", doc="logit gain")}, **common),
                DetectorSpec(name="lazy", factory=Lazy, options={"channels": 4, "augment": None, "gain": 1.0}, **common)]
''')


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "hpcnn.py").write_text(PLUGIN)
    data = make_folder(tmp_path / "data", splits=("a",), n=3, size=(40, 40))
    train = make_folder(tmp_path / "train", splits=("t",), n=3, size=(40, 40), seed=1)
    return tmp_path, plugins, data, train


def cli(*argv: str) -> int:
    return main([*argv, "--device", "cpu", "--no-progress"] if argv[0] in ("run", "train") else list(argv))


def run(setup, *extra: str, out: str = "out") -> Path:
    tmp, plugins, data, train = setup
    assert cli("run", "--plugins-dir", str(plugins), "--data", str(data), "--out", str(tmp / out), *extra) == 0
    return tmp / out


def test_an_augment_that_is_not_an_augment_is_refused_where_it_is_given(setup, capsys, tiny_backbone):
    tmp, plugins, _, train = setup
    code = cli("train", "hpcnn", "--plugins-dir", str(plugins), "--data", str(train), "--out", str(tmp / "c.safetensors"),
               "--set", "augment=flip", "-q")  # --quiet: no progress line before the error
    err = capsys.readouterr().err
    assert code != 0 and "data.batches('train'): augment='flip' is not an augmentation" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp / "c.safetensors").exists()
    from sidbench.api import Record
    from sidbench.engine.fitting import EngineFitData

    recs = [Record(str(p), int("1_fake" in str(p)), "t") for p in sorted(train.rglob("*.png"))]
    with pytest.raises(SidbenchError, match="data.features\\('train'\\): augment='flip'"):
        EngineFitData(recs, backbone=tiny_backbone).features("train", augment="flip")


def test_a_fit_that_saw_no_example_is_an_error(setup, capsys):
    tmp, plugins, _, train = setup
    code = cli("train", "lazy", "--plugins-dir", str(plugins), "--data", str(train), "--out", str(tmp / "l.safetensors"))
    assert code != 0 and "saw no training example" in capsys.readouterr().err and not (tmp / "l.safetensors").exists()


def test_train_and_run_build_the_same_network_and_run_json_has_the_fit(setup):
    tmp, plugins, _, train = setup
    from safetensors.torch import load_file

    trained = []
    for i in range(2):
        torch.manual_seed(100 + i)  # whatever the state before: the seed is set before the detector is built
        path = tmp / f"t{i}.safetensors"
        assert cli("train", "hpcnn", "--plugins-dir", str(plugins), "--data", str(train), "--out", str(path)) == 0
        trained.append(load_file(str(path)))
    out = run(setup, "--detectors", "hpcnn", "--train", str(train))
    ran = load_file(str(out / "checkpoints" / "hpcnn.base.safetensors"))
    for k in trained[0]:
        torch.testing.assert_close(trained[0][k], trained[1][k])
        torch.testing.assert_close(trained[0][k], ran[k])
    run_json = json.loads((out / "run.json").read_text())
    info = run_json["detectors"][0]
    assert info["fit"] == {"seen": 6} and info["fitted_values"] == {"chosen": 7}
    assert len(info["code"]["source_sha256"]) == 16
    [plugin] = [p for p in run_json["plugins"] if p["name"] == "hpcnn"]
    assert plugin["source"] == "plugins dir" and len(plugin["source_sha256"]) == 16


def test_an_edited_plugin_and_a_rewritten_checkpoint_are_scored_again(setup):
    tmp, plugins, _, train = setup
    ckpt = tmp / "h.safetensors"
    assert cli("train", "hpcnn", "--plugins-dir", str(plugins), "--data", str(train), "--out", str(ckpt)) == 0
    args = ("--detectors", f"hpcnn@{ckpt}")
    first = pd.read_csv(run(setup, *args) / "scores.csv")
    (plugins / "hpcnn.py").write_text(PLUGIN.replace("SCALE = 1.0", "SCALE = 2.0"))  # an edit: logits double
    second = pd.read_csv(run(setup, *args) / "scores.csv")
    torch.testing.assert_close(torch.tensor(second["logit"].values), 2 * torch.tensor(first["logit"].values))
    # a checkpoint rewritten in place with other weights (same path, same size)
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(ckpt), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["net.3.bias"] = tensors["net.3.bias"] + 1.0
    save_file(tensors, str(ckpt), metadata=meta)
    third = pd.read_csv(run(setup, *args) / "scores.csv")
    torch.testing.assert_close(torch.tensor(third["logit"].values), torch.tensor(second["logit"].values) + 2.0)
    info = json.loads((tmp / "out" / "run.json").read_text())["detectors"][0]
    assert info["code"]["source_sha256"] and info["weights"]["sha256"]


def test_a_network_option_comes_back_from_the_checkpoint(setup, capsys):
    tmp, plugins, data, train = setup
    ckpt = tmp / "c12.safetensors"
    assert cli("train", "hpcnn", "--plugins-dir", str(plugins), "--data", str(train), "--out", str(ckpt),
               "--set", "channels=12") == 0
    out = run(setup, "--detectors", f"hpcnn@{ckpt}")  # channels=12 not given again
    info = json.loads((out / "run.json").read_text())["detectors"][0]
    assert info["options"]["channels"] == 12 and info["options_from_checkpoint"] == {"channels": 12}
    # --set NAME:opt for a detector given by its family name with a checkpoint; a contradiction names both values
    code = cli("run", "--plugins-dir", str(plugins), "--data", str(data), "--out", str(tmp / "o2"),
               "--detectors", f"hpcnn@{ckpt}", "--set", "hpcnn:channels=3")
    err = capsys.readouterr().err
    assert code != 0 and "channels=3 contradicts" in err and "channels=12" in err and "not one of" not in err
    run(setup, "--detectors", f"hpcnn@{ckpt}", "--set", "hpcnn.base:channels=12", out="o3")
    # an official-format file (a bare state dict) of another width: the mismatch names the option
    from safetensors.torch import load_file

    import sidbench
    from sidbench.registry import load_plugins

    torch.save({k: v for k, v in load_file(str(ckpt)).items()}, tmp / "bare.pth")
    with pytest.raises(WeightsError, match="channels=8"):
        sidbench.load_detector(f"hpcnn@{tmp / 'bare.pth'}", plugins=load_plugins([str(plugins)]))


def test_a_config_table_for_a_detector_not_run_is_an_error(setup, capsys):
    tmp, plugins, data, _ = setup
    config = tmp / "c.toml"
    config.write_text('[detector_options."hpcnm"]\nchannels = 4\n')
    code = cli("run", "--plugins-dir", str(plugins), "--data", str(data), "--out", str(tmp / "o"),
               "--detectors", "lazy@x.safetensors", "--config", str(config))
    err = capsys.readouterr().err
    assert code != 0 and "[detector_options.\"hpcnm\"]" in err and "not one of the detectors run" in err
    # a table naming the family applies to the variant run
    from sidbench.run.config import RunConfig, options_for
    from sidbench.registry import load_plugins

    cfg = RunConfig(detectors=["hpcnn.base@x"], detector_options={"hpcnn": {"channels": 4}})
    assert options_for(cfg, "hpcnn.base@x", load_plugins([str(plugins)])) == {"channels": 4}


def test_a_test_time_option_overrides_the_checkpoint_and_a_bad_saved_value_is_refused(setup, capsys):
    tmp, plugins, _, train = setup
    import sidbench
    from safetensors import safe_open
    from safetensors.torch import save_file
    from sidbench.registry import load_plugins

    ckpt = tmp / "g.safetensors"
    assert cli("train", "hpcnn", "--plugins-dir", str(plugins), "--data", str(train), "--out", str(ckpt),
               "--set", "gain=2.0") == 0
    loaded = load_plugins([str(plugins)])
    assert sidbench.load_detector(f"hpcnn@{ckpt}", plugins=loaded).options["gain"] == 2.0  # restored
    assert sidbench.load_detector(f"hpcnn[gain=3.0]@{ckpt}", plugins=loaded).options["gain"] == 3.0  # role test
    with pytest.raises(SidbenchError, match="gain=0.1: expected 0.5..4"):
        sidbench.load_detector("hpcnn[gain=0.1]", plugins=loaded)
    with safe_open(str(ckpt), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    saved = json.loads(meta["sidbench"])
    saved["options"]["gain"] = 1e9  # hostile metadata: refused before anything is built
    save_file(tensors, str(tmp / "bad.safetensors"), metadata={"sidbench": json.dumps(saved)})
    with pytest.raises(WeightsError, match=r"gain=1000000000.0 in .*bad.safetensors: expected 0.5..4"):
        sidbench.load_detector(f"hpcnn@{tmp / 'bad.safetensors'}", plugins=loaded)
    assert cli("list", "detectors", "hpcnn", "--plugins-dir", str(plugins)) == 0
    listing = capsys.readouterr().out
    assert "0.5..4" in listing and "logit gain" in listing and "test" in listing


def test_a_default_that_fails_its_own_declaration_is_the_plugins_error(tmp_path):
    from sidbench.registry import load_plugins

    (tmp_path / "bad.py").write_text(PLUGIN.replace('Option(1.0, min=0.5', 'Option(0.1, min=0.5'))
    plugins = load_plugins([str(tmp_path)])
    [failure] = plugins.failed
    assert "gain" in failure.reason and "does not pass its declaration" in failure.reason


def test_loss_meter_sums_as_the_host_would():
    from sidbench.api import LossMeter

    gen = torch.Generator().manual_seed(0)
    losses, sizes = torch.rand(50, generator=gen), [int(n) for n in torch.randint(1, 64, (50,), generator=gen)]
    meter, total = LossMeter(), 0.0
    for loss, n in zip(losses, sizes):
        meter.add(n, loss=loss)
        meter.add(plain=loss)
        total += float(loss) * n
    sums = meter.totals()
    assert sums["loss"] == total and sums["plain"] == sum(float(x) for x in losses)  # bit for bit


def test_plugins_check_on_a_detector_without_fit_that_binds_its_backbone(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SIDBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["plugins", "check", "clip_zeroshot"]) == 0  # text embeddings: bound to clip-tiny first, as a run does
    out = capsys.readouterr().out
    assert "no fit needed" in out and "logits: identical" in out and "ok: it survives" in out
