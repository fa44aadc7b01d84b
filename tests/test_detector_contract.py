"""The parts of the detector contract that docs/plugins.md promises: needs_fit as a class attribute, state
whose size depends on the data loading without overrides, options checked against their types."""
from __future__ import annotations

import textwrap

import pytest
import torch

from sidbench.api import BackboneInfo, Detector, DetectorSpec, SidbenchError, WeightsError
from sidbench.registry import load_plugins

INFO = BackboneInfo(name="fake", n_blocks=2, width=8, embed_dim=4)


class Bank(Detector):
    """Memory bank (buffer) + learnable prototypes (parameter), both sized by the data."""

    needs_fit = True

    def __init__(self, spec, backbone, **options):
        super().__init__(spec, backbone, **options)
        self.m = torch.nn.Module()
        self.m.register_buffer("keys", torch.zeros(0, backbone.width))
        self.m.register_buffer("labels", torch.zeros(0, dtype=torch.long))
        self.m.proto = torch.nn.Parameter(torch.zeros(0, backbone.width))
        self.m.fixed = torch.nn.Linear(backbone.width, 1)

    def modules(self):
        return {"m": self.m}

    def fill(self, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        self.m.keys = torch.randn(n, self.backbone_info.width, generator=g)
        self.m.labels = torch.arange(n) % 2
        self.m.proto = torch.nn.Parameter(torch.randn(3, self.backbone_info.width, generator=g))

    def score(self, features):
        x = features["cls_final"]
        return (x @ self.m.keys.T).max(1).values + (x @ self.m.proto.T).mean(1) + self.m.fixed(x)[:, 0]


SPEC = DetectorSpec(name="bank", factory=Bank, features=("cls_final",),
                    options={"k": 3, "lr": 0.1, "flag": False, "name": "x", "grid": [1, 2], "off": None, "mixed": "all"},
                    option_types={"mixed": (str, list)})


def test_data_dependent_state_loads_into_a_fresh_detector(tmp_path):
    det = Bank(SPEC, INFO)
    det.fill(7)
    path = det.save(str(tmp_path / "bank.safetensors"))
    fresh = Bank(SPEC, INFO).load(path)
    assert fresh.m.keys.shape == (7, 8) and fresh.m.labels.dtype == torch.long
    assert isinstance(fresh.m.proto, torch.nn.Parameter) and fresh.m.proto.requires_grad
    x = torch.randn(4, 8)
    torch.testing.assert_close(fresh.score({"cls_final": x}), det.score({"cls_final": x}))


def test_a_non_empty_tensor_of_another_shape_is_still_an_error(tmp_path):
    det = Bank(SPEC, INFO)
    det.fill(2)
    path = det.save(str(tmp_path / "bank.safetensors"))
    wider = Bank(SPEC, BackboneInfo(name="fake", n_blocks=2, width=16, embed_dim=4))
    with pytest.raises(WeightsError, match="fixed.weight"):
        wider.load(path)


def test_needs_fit_as_a_class_attribute(tmp_path, image_folder, capsys):
    from sidbench.cli import main

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "classfit.py").write_text(textwrap.dedent("""
        import torch
        from sidbench.api import Detector, DetectorSpec, hookimpl


        class ClassFit(Detector):
            needs_fit = True  # and not in the spec below

            def __init__(self, spec, backbone, **options):
                super().__init__(spec, backbone, **options)
                self.w = torch.nn.Linear(backbone.embed_dim, 1)

            def modules(self):
                return {"w": self.w}

            def score(self, features):
                return self.w(features["image_embed"])[:, 0]

            def fit(self, data, log=print):
                return {"n": len(data.features("train", ("image_embed",)))}


        @hookimpl
        def sidbench_detectors():
            return [DetectorSpec(name="classfit", factory=ClassFit, features=("image_embed",))]
    """))
    plugins = load_plugins([tmp_path / "p"])
    assert plugins.detector("classfit").needs_fit  # listed as needing a fit
    base = ["run", "--plugins-dir", str(tmp_path / "p"), "--data", str(image_folder), "--detectors", "classfit",
            "--backbone", "clip-tiny", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "o1")]) == 2
    assert "'classfit' must be fitted" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "o2"), "--train", str(image_folder)]) == 0
    assert "classfit: fitted in" in capsys.readouterr().err  # progress: on stderr


@pytest.mark.parametrize("options", [{"k": 4}, {"lr": 1}, {"lr": 0.5}, {"flag": True}, {"grid": []}, {"off": [1]},
                                     {"off": None}, {"mixed": "last"}, {"mixed": [0, 1]}, {"preprocess": "ten_crop"}])
def test_options_of_the_right_type_pass(options):
    assert Bank(SPEC, INFO, **options).options == {**SPEC.options, **options}


@pytest.mark.parametrize("options, message", [
    ({"k": 2.5}, "invalid option value k=2.5: expected an integer, like the default 3"),
    ({"k": True}, "expected an integer"),
    ({"lr": "fast"}, "invalid option value lr='fast': expected a number"),
    ({"flag": "yes"}, "expected true or false"),
    ({"grid": 3}, "expected a list"),
    ({"mixed": 1}, "expected a string or a list"),
    ({"kk": 1}, "has no option 'kk' (did you mean 'k'?)"),
])
def test_options_of_the_wrong_type_are_one_line_errors(options, message):
    with pytest.raises(SidbenchError) as info:
        Bank(SPEC, INFO, **options)
    assert message in str(info.value) and "\n" not in str(info.value)


