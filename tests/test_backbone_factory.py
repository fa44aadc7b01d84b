"""The backbone factory protocol (BackboneFactory; a plain function is wrapped) and the shared CLS-capture hooks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sidbench.api import BackboneFactory, PluginError, SidbenchError
from sidbench.api.backbone import FunctionFactory, as_backbone_factory
from sidbench.backbones.capture import ClsCapture, cls_token
from sidbench.registry import load_plugins
from sidbench.registry.lookup import (backbone_activation, backbone_factory, backbone_identity, build_backbone,
                                      check_backbone_name, describe_backbone)

PLUGIN = '''
import dataclasses
from sidbench.api import BackboneFactory, BackboneSpec, SidbenchError, hookimpl

BUILT = []


def _tiny(name):
    from sidbench.backbones.clip import build_tiny, describe_tiny

    BUILT.append(name)
    bb = build_tiny()
    bb.info, bb.identity = dataclasses.replace(describe_tiny(), name=name), name + "-v1"
    return bb


def plain(name, weights=None, device="cpu"):
    return _tiny(name)


class Declared(BackboneFactory):
    def build(self, name, weights=None, device="cpu"):
        return _tiny(name)

    def describe(self, name):
        from sidbench.backbones.clip import describe_tiny

        return dataclasses.replace(describe_tiny(), name=name)

    def identity(self, name, weights=None):
        return f"{name}|{weights}"

    def activation(self, name, weights=None):
        return "gelu"

    def check(self, name):
        if name.endswith("-bad"):
            raise SidbenchError(f"backbone {name}: no such variant")


@hookimpl
def sidbench_backbones():
    return [BackboneSpec("plain-fn", plain), BackboneSpec("declared", Declared()), BackboneSpec("declared-bad", Declared()),
            BackboneSpec("not-a-backbone", lambda name, weights=None, device="cpu": 42),
            BackboneSpec("not-callable", 42)]
'''


@pytest.fixture
def loaded(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "bbfactories.py").write_text(PLUGIN)
    plugins = load_plugins([tmp_path / "p"])
    return plugins, plugins.backbone("plain-fn").factory.__globals__["BUILT"]


def test_a_plain_function_is_wrapped_and_built_once_to_describe_it(loaded):
    plugins, built = loaded
    assert isinstance(backbone_factory("plain-fn", plugins), FunctionFactory)
    assert backbone_identity("plain-fn", plugins=plugins) is None
    assert backbone_activation("plain-fn", plugins=plugins) is None
    check_backbone_name("plain-fn", plugins)
    assert built == []
    assert describe_backbone("plain-fn", plugins).name == "plain-fn"
    assert built == ["plain-fn"]


def test_a_declared_factory_answers_without_building(loaded):
    plugins, built = loaded
    assert describe_backbone("declared", plugins).name == "declared"
    assert describe_backbone("declared", plugins).n_blocks == 4
    assert backbone_identity("declared", "w.bin", plugins) == "declared|w.bin"
    assert backbone_activation("declared", plugins=plugins) == "gelu"
    with pytest.raises(SidbenchError, match="no such variant"):
        check_backbone_name("declared-bad", plugins)
    assert built == []
    assert build_backbone("declared", plugins=plugins).identity == "declared-v1"
    assert built == ["declared"]


def test_wrong_factories_fail_in_one_line(loaded):
    plugins, _ = loaded
    with pytest.raises(SidbenchError, match=r"returned int, not a sidbench.api.Backbone") as err:
        build_backbone("not-a-backbone", plugins=plugins)
    assert "\n" not in str(err.value) and "bbfactories.py" in str(err.value)
    with pytest.raises(PluginError, match="neither a BackboneFactory nor a function") as err:
        describe_backbone("not-callable", plugins)
    assert "\n" not in str(err.value)


def test_every_builtin_backbone_declares_its_shapes_and_identity(plugins):
    for spec in plugins.backbones.values():
        name = {"open_clip": "ViT-B-32:openai", "timm": "timm:vit_small_patch14_dinov2.lvd142m"}.get(spec.name, spec.name)
        factory = backbone_factory(name, plugins)
        assert factory.describe(name) is not None, spec.name  # answered without building the backbone
        assert factory.identity(name) is not None, spec.name
    assert backbone_activation("ViT-B-32:openai", plugins=plugins) == "quick_gelu"
    assert backbone_activation("clip-tiny", plugins=plugins) == "gelu"


def test_as_backbone_factory_accepts_instances_subclasses_and_functions():
    class Mine(BackboneFactory):
        pass

    mine = Mine()
    assert as_backbone_factory(mine) is mine
    assert isinstance(as_backbone_factory(Mine), Mine)
    assert isinstance(as_backbone_factory(print), FunctionFactory)
    with pytest.raises(NotImplementedError):
        mine.build("x")


def test_cls_token_layouts():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)  # [B=2, N=3, W=4]
    assert torch.equal(cls_token(x, batch_first=True), x[:, 0])
    assert torch.equal(cls_token(x.transpose(0, 1), batch_first=False), x[:, 0])  # [N, B, W]
    assert torch.equal(cls_token(x[:, 0], batch_first=True), x[:, 0])  # already pooled


class _Tower(nn.Module):
    """Blocks that add their index to every token (sequence-first), then a final norm on [B, N, W]."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Identity() for _ in range(n))
        self.final = nn.Identity()

    def forward(self, x):  # x: [B, N, W]
        h = x.transpose(0, 1)
        for i, block in enumerate(self.blocks):
            h = block(h + i)
        return self.final(h.transpose(0, 1))


def test_capture_stacks_per_block_cls_in_order_only_while_running():
    tower, x = _Tower(3), torch.randint(-9, 9, (2, 5, 4)).float()  # integers: sums are exact
    capture = ClsCapture()
    capture.watch("cls_blocks", tower.blocks, batch_first=False)
    capture.watch("cls_final", [tower.final], stack=False)
    out, feats = capture.run(lambda: tower(x), ("cls_blocks",))
    cumulative = torch.stack([x[:, 0] + sum(range(i + 1)) for i in range(3)], 1)
    assert set(feats) == {"cls_blocks"} and torch.equal(feats["cls_blocks"], cumulative)
    _, feats = capture.run(lambda: tower(x), ("cls_final",), every=True)
    assert set(feats) == {"cls_final"} and torch.equal(feats["cls_final"], out[:, 0])
    tower(x)  # outside run: nothing is kept
    assert capture._parts == {}
    with pytest.raises(ValueError, match="exactly one module"):
        capture.watch("x", tower.blocks, stack=False)
