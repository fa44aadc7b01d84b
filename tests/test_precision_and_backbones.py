"""--precision on every command that runs a backbone, its record in run.json; CLIP+SVM on its published
backbone next to the shared OpenAI pass; --weights only where it names one backbone."""
from __future__ import annotations

import json

import pytest

from sidbench.api import SidbenchError


@pytest.mark.parametrize("command", [["run"], ["train", "univfd", "--data", "d", "--out", "o"], ["ablate", "rine"]])
def test_precision_flag_on_run_train_ablate(command):
    from sidbench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([*command, "--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        parser.parse_args([*command, "--precision", "fp8"])


def test_precision_toml_key_is_checked():
    from sidbench.run.config import config_from

    assert config_from({"precision": "fp32"}).precision == "fp32"
    with pytest.raises(SidbenchError, match="precision must be one of fp32, fp16, bf16"):
        config_from({"precision": "fp8"}, "run.toml")


def test_run_json_records_precision_and_activation(tmp_path, image_folder, capsys):
    from sidbench.cli import main

    out = tmp_path / "out"
    assert main(["run", "--data", str(image_folder), "--detectors", "clip_zeroshot", "--backbone", "clip-tiny",
                 "--precision", "bf16", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["precision"] == "bf16"  # asked for
    backbone = info["backbones"]["clip-tiny"]
    assert backbone["precision"] == "fp32" and backbone["activation"] == "gelu"  # what ran on the CPU
    assert "--precision bf16 applies to CUDA devices; cpu runs fp32" in capsys.readouterr().err


def test_numerics_key_holds_the_precision():
    from sidbench.engine.sources import numerics

    assert numerics("cuda", "fp16", False, 64) != numerics("cuda", "bf16", False, 64) != numerics("cuda", "fp32", False, 64)


def test_clip_svm_on_its_published_backbone_and_the_openai_variant(plugins):
    from sidbench.registry import load_detector
    from sidbench.run.config import RunConfig
    from sidbench.run.inputs import default_detectors
    from sidbench.run.orchestrate import SourcePool

    assert plugins.detector("clip_svm").backbone == "ViT-L-14:commonpool_xl_s13b_b90k"
    assert plugins.detector("clip_svm.openai").backbone == "ViT-L-14:openai"
    assert "clip_svm" in default_detectors(plugins) and "clip_svm.openai" not in default_detectors(plugins)
    dets = {n: load_detector(n, plugins=plugins) for n in ("clip_svm", "clip_svm.openai", "rine.progan4")}
    cfg = RunConfig()
    assert SourcePool.key(dets["clip_svm.openai"], cfg) == SourcePool.key(dets["rine.progan4"], cfg)  # one pass
    assert SourcePool.key(dets["clip_svm"], cfg) != SourcePool.key(dets["rine.progan4"], cfg)  # one pass more
    tiny = RunConfig(backbone="clip-tiny")  # the quickstart: everything on one backbone
    assert len({SourcePool.key(d, tiny) for d in dets.values()}) == 1


def test_weights_must_name_their_backbone_when_there_are_two(plugins, tmp_path):
    from sidbench.run.config import RunConfig
    from sidbench.run.orchestrate import build_detectors

    cfg = RunConfig(detectors=["clip_svm", "rine.progan4"], weights=str(tmp_path / "w.pt"))
    with pytest.raises(SidbenchError, match="read 2 backbones .*name the one these weights belong to with --backbone"):
        build_detectors(cfg, plugins)
    assert len(build_detectors(RunConfig(detectors=["clip_svm.openai", "rine.progan4"], weights="w.pt"), plugins)) == 2
