"""RINE: official checkpoint vs a hand-written forward, parameter counts, training, ablations, CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sidbench
from sidbench.api import WeightsError

from conftest import make_folder

TINY = "clip-tiny"


@pytest.fixture
def one_thread():
    """Tiny MLP steps are dominated by thread hand-offs on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def hand_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """RINE's eval forward written out with plain matmuls from the raw checkpoint tensors."""
    def lin(v, key):
        return v @ sd[f"{key}.weight"].T + sd[f"{key}.bias"]

    g = x
    for key in sorted((k[:-7] for k in sd if k.startswith("proj1.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1])):
        g = torch.relu(lin(g, key))
    w = torch.exp(sd["alpha"]) / torch.exp(sd["alpha"]).sum(dim=1, keepdim=True)  # softmax over the block axis
    z = (w * g).sum(dim=1)
    for key in sorted((k[:-7] for k in sd if k.startswith("proj2.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1])):
        z = torch.relu(lin(z, key))
    h = torch.relu(lin(torch.relu(lin(z, "head.0")), "head.3"))
    return lin(h, "head.6")[:, 0]


def test_official_2class_checkpoint_matches_hand_computation(reference_dir):
    path = reference_dir / "rine_2class_trainable.pth"
    sd = {k: v.double() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
    det = sidbench.load_detector("rine.progan2", weights=str(path))
    x = torch.randn(5, 24, 1024, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        got = det.score({"cls_ln2": x})
    want = hand_forward(sd, x.double()).float()
    assert got.shape == (5,)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert want.std() > 0.1  # the check is not vacuous: logits differ per input


def test_official_checkpoint_through_cli_name(reference_dir):
    path = reference_dir / "rine_2class_trainable.pth"
    det = sidbench.load_detector(f"rine.progan2@{path}")
    assert det.fitted and det.weights_path == str(path)
    assert det.block_importance()["initial"] is None  # an official file does not record its start


@pytest.mark.parametrize("name,options,count", [
    ("rine.progan1", {}, 10_521_601),
    ("rine.progan2", {}, 283_009),
    ("rine.progan4", {}, 6_323_201),
    ("rine.ldm", {}, 10_521_601),
    ("rine.progan2", {"q": 2, "proj_dim": 1024}, 6_323_201),
])
def test_parameter_counts_match_the_paper_formula(name, options, count):
    det = sidbench.load_detector(name, backbone="ViT-L-14:openai", **options)
    q, d = det.options["q"], det.options["proj_dim"]
    assert 24 * d + (1024 * d + d) + (2 * q + 1) * (d * d + d) + d + 1 == count
    assert det.n_trainable() == count
    assert det.required_features == ("cls_ln2",) and det.preprocess == "center_crop"


def test_wrong_shape_checkpoint_is_a_one_line_weights_error(reference_dir):
    with pytest.raises(WeightsError) as err:
        sidbench.load_detector("rine.progan4", weights=str(reference_dir / "rine_2class_trainable.pth"))
    msg = str(err.value)
    assert "\n" not in msg and "rine.progan4" in msg and "q=4, d'=128" in msg and "rine.progan2" in msg


def supcon_by_hand(z: torch.Tensor, y: torch.Tensor, t: float = 0.07) -> torch.Tensor:
    """Khosla et al. (2020) eq. 2 with one view, looping over anchors."""
    total = 0.0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        denom = sum(torch.exp(z[i] @ z[a] / t) for a in others)
        pos = [p for p in others if y[p] == y[i]]
        if pos:
            total = total - sum(torch.log(torch.exp(z[i] @ z[p] / t) / denom) for p in pos) / len(pos)
    return total / len(z)


def test_contrastive_switch_changes_only_the_loss_term():
    x, y = torch.randn(6, 4, 64), torch.tensor([0.0, 1, 1, 0, 1, 0])
    on = sidbench.load_detector("rine.progan2", backbone=TINY).train()
    off = sidbench.load_detector("rine.progan2", backbone=TINY, contrastive=False).train()
    assert on.state_dict().keys() == off.state_dict().keys()
    for det in (on, off):
        det.net.eval()  # no dropout: compare the loss terms exactly
    t_on, t_off = on.loss_terms({"cls_ln2": x}, y), off.loss_terms({"cls_ln2": x}, y)
    z = F.normalize(on.embed({"cls_ln2": x}), dim=1)
    logits = on.score({"cls_ln2": x})
    bce = -(y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)).sum()
    torch.testing.assert_close(t_on["bce"], bce)
    torch.testing.assert_close(t_on["supcon"], supcon_by_hand(z, y), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(t_on["total"], bce + 0.2 * supcon_by_hand(z, y), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(t_off["total"], t_off["bce"])
    torch.testing.assert_close(t_off["bce"], bce)  # same seeded start: same network, same BCE


def test_tie_switch_removes_only_alpha_and_averages_blocks():
    tie = sidbench.load_detector("rine.progan2", backbone=TINY)
    mean = sidbench.load_detector("rine.progan2", backbone=TINY, tie=False)
    assert set(tie.state_dict()) - set(mean.state_dict()) == {"rine.alpha"}
    assert set(mean.state_dict()) <= set(tie.state_dict())
    assert tie.n_trainable() - mean.n_trainable() == 4 * 128
    x = torch.randn(3, 4, 64)
    net = mean.net
    with torch.no_grad():
        g = net.proj1(x)
        want = net.head(net.proj2(g.mean(dim=1))).squeeze(-1)
        torch.testing.assert_close(mean.score({"cls_ln2": x}), want)
    with pytest.raises(sidbench.SidbenchError, match="tie=False"):
        mean.block_importance()


def test_last_block_switch_uses_only_the_last_block():
    det = sidbench.load_detector("rine.progan2", backbone=TINY, blocks="last")
    assert det.net.alpha.shape == (1, 1, 128)
    assert det.n_trainable() == sidbench.load_detector("rine.progan2", backbone=TINY).n_trainable() - 3 * 128
    x = torch.randn(3, 4, 64)
    y = x.clone()
    y[:, :3] = torch.randn(3, 3, 64)  # earlier blocks change, the last does not
    with torch.no_grad():
        torch.testing.assert_close(det.score({"cls_ln2": x}), det.score({"cls_ln2": y}))
        net = det.net
        want = net.head(net.proj2(net.proj1(x[:, 3]))).squeeze(-1)  # softmax over one block is 1
        torch.testing.assert_close(det.score({"cls_ln2": x}), want)


def test_feature_switch_follows_required_features():
    det = sidbench.load_detector("rine.progan4", backbone=TINY, feature="cls_blocks")
    assert det.required_features == ("cls_blocks",)
    base = sidbench.load_detector("rine.progan4", backbone=TINY)
    assert {k: v.shape for k, v in det.state_dict().items()} == {k: v.shape for k, v in base.state_dict().items()}
    with pytest.raises(sidbench.SidbenchError, match="feature"):
        sidbench.load_detector("rine.progan4", backbone=TINY, feature="cls_final")


def test_block_importance_and_save_load_round_trip(tmp_path):
    det = sidbench.load_detector("rine.progan2", backbone=TINY)
    with torch.no_grad():
        det.net.alpha.add_(torch.linspace(0, 1, 4).view(1, 4, 1))  # "training" moved the later blocks up
    imp = det.block_importance()
    start = torch.randn(1, 4, 128, generator=torch.Generator().manual_seed(0))
    want_initial = (torch.exp(start) / torch.exp(start).sum(1, keepdim=True)).mean(2)[0]
    torch.testing.assert_close(torch.tensor(imp["initial"]), want_initial)
    assert imp["blocks"] == [0, 1, 2, 3] and imp["learned"][3] > imp["initial"][3]
    assert sum(imp["learned"]) == pytest.approx(1.0)
    path = det.save(str(tmp_path / "rine.safetensors"))
    back = sidbench.load_detector("rine.progan2", weights=path, backbone=TINY)
    x = torch.randn(4, 4, 64)
    with torch.no_grad():
        torch.testing.assert_close(back.score({"cls_ln2": x}), det.score({"cls_ln2": x}), rtol=0, atol=0)
    assert back.block_importance() == imp
    with pytest.raises(WeightsError, match="rine.progan2"):
        sidbench.load_detector("rine.progan4", weights=path, backbone=TINY)


def test_augment_draws_only_the_reference_jpeg_qualities(monkeypatch):
    from PIL import Image

    from sidbench.detectors.rine import RineAugment

    seen = []
    orig = Image.Image.save

    def spy(self, fp, format=None, **kw):
        seen.append(kw.get("quality"))
        return orig(self, fp, format=format, **kw)

    monkeypatch.setattr(Image.Image, "save", spy)
    aug = RineAugment(crop=32, blur_prob=0.0, jpeg_prob=1.0)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 40, 3), dtype=np.uint8))
    outs = [aug(img, np.random.default_rng(i)) for i in range(20)]
    assert set(seen) == {30, 100}
    assert all(o.size == (32, 32) for o in outs)  # padded (height 20 < 32), cropped, no resize
    a, b = aug(img, np.random.default_rng(5)), aug(img, np.random.default_rng(5))
    assert np.array_equal(np.asarray(a), np.asarray(b))


def _records(root: Path, split: str | None = None) -> list:
    from sidbench.data.layout import resolve_records
    from sidbench.registry import load_plugins

    recs = resolve_records(str(root), load_plugins(), None)
    return [r for r in recs if split is None or r.split == split]


def _fit_data(backbone, train, val=None):
    from sidbench.engine import ExtractOptions
    from sidbench.engine import EngineFitData

    return EngineFitData(backbone=backbone, train=train, val=val, seed=0, options=ExtractOptions(progress=False))


def test_training_lowers_the_loss_and_beats_chance(tmp_path, tiny_backbone, one_thread):
    from sidbench.engine import ExtractOptions, extract

    root = make_folder(tmp_path / "d", splits=("train", "test"), n=12, size=(224, 224))
    det = sidbench.load_detector("rine.progan4", backbone=TINY, q=1, proj_dim=256, epochs=30, batch_size=8,
                                 augment=False, lr_milestones=[])
    train = extract(tiny_backbone, _records(root, "train"), ("cls_ln2",), options=ExtractOptions(progress=False))
    test = extract(tiny_backbone, _records(root, "test"), ("cls_ln2",), options=ExtractOptions(progress=False))

    def bce(features, labels):
        with torch.no_grad():
            p = torch.sigmoid(det.score(features).double())
        return float(-(labels * torch.log(p) + (1 - labels) * torch.log(1 - p)).mean())

    before = bce(train.features, train.labels)  # fit starts from the same seeded network
    lines: list[str] = []
    summary = det.fit(_fit_data(tiny_backbone, _records(root, "train")), log=lines.append)
    assert bce(train.features, train.labels) < before - 0.1, (before, det.history[-1])
    with torch.no_grad():
        logits = det.score(test.features).numpy()
    acc = float(((logits > 0) == test.labels.numpy().astype(bool)).mean())
    assert acc >= 0.75, acc
    assert any("training on cached features" in m for m in lines)
    assert "no validation split: keeping the last epoch (30)" in lines
    assert summary["epochs"] == 30 and len(det.history) == 30


def test_cached_feature_and_pixel_training_give_the_same_model(tmp_path, tiny_backbone, one_thread):
    root = make_folder(tmp_path / "d", splits=("a",), n=4, size=(64, 80))
    opts = dict(q=1, proj_dim=32, epochs=2, batch_size=3, blur_prob=0.5, jpeg_prob=0.5)
    models, logs = [], []
    for path in ("features", "pixels"):
        det = sidbench.load_detector("rine.progan2", backbone=TINY, train_on=path, **opts)
        lines: list[str] = []
        det.fit(_fit_data(tiny_backbone, _records(root)), log=lines.append)
        models.append(det.state_dict())
        logs.append(lines)
    assert any("cached features" in m for m in logs[0]) and any("training on pixels" in m for m in logs[1])
    init = sidbench.load_detector("rine.progan2", backbone=TINY, **opts).state_dict()
    for key in models[0]:
        # same seeded views and order; only the backbone's batch composition differs (float rounding)
        torch.testing.assert_close(models[0][key], models[1][key], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(models[0][k], init[k]) for k in init)  # training did move the weights


def test_cli_train_selects_the_variant_classes_and_saves(tmp_path, capsys):
    from sidbench.cli import main

    data = make_folder(tmp_path / "train", splits=("chair", "horse", "cat"), n=3)
    val = make_folder(tmp_path / "val", splits=("chair", "horse"), n=2, seed=1)
    out = tmp_path / "rine2.safetensors"
    rc = main(["train", "rine.progan2", "--data", str(data), "--val", str(val), "--out", str(out),
               "--backbone", TINY, "--no-progress", "--set", "epochs=2", "--set", "batch_size=4"])
    text = capsys.readouterr().err
    assert rc == 0, text
    assert "train: classes chair,horse (12 of 18 images)" in text
    assert "kept epoch" in text and "best on the validation split" in text
    det = sidbench.load_detector("rine.progan2", weights=str(out), backbone=TINY)
    assert [h["epoch"] for h in det.history] == [1, 2] and det.history[0]["n"] == 12
    assert det.block_importance()["initial"] is not None


def test_run_fits_rine_on_unknown_classes_and_records_ten_crop(tmp_path, capsys, tiny_backbone):
    import torchvision.transforms.functional as TF

    from sidbench.cli import main
    from sidbench.data.images import read_image

    train = make_folder(tmp_path / "train", splits=("gan_a", "diff_a"), n=3)
    test = make_folder(tmp_path / "test", splits=("gan_b",), n=2, size=(240, 256), seed=2)
    out = tmp_path / "out"
    rc = main(["run", "--data", str(test), "--train", str(train), "--detectors", "rine", "--backbone", TINY,
               "--protocol", "ten_crop", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().err
    assert rc == 0, text
    assert "no class folders named car,cat,chair,horse" in text and "using all 12 images" in text
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert {r["protocol"] for r in rows} == {"ten_crop"} and {r["detector"] for r in rows} == {"rine.progan4"}
    run = json.loads((out / "run.json").read_text())
    assert run["detectors"][0]["preprocess"] == "ten_crop"
    det = sidbench.load_detector("rine.progan4", weights=str(out / "checkpoints" / "rine.progan4.safetensors"),
                                 backbone=TINY)
    info = tiny_backbone.info
    for row in rows[:2]:
        crops = TF.ten_crop(read_image(row["path"]), 224)
        x = torch.stack([TF.normalize(TF.to_tensor(c), info.mean, info.std) for c in crops])
        with torch.no_grad():
            want = det.score(tiny_backbone.features(x, ["cls_ln2"])).mean()
        assert float(row["logit"]) == pytest.approx(float(want), abs=1e-4)
    assert sidbench.load_detector("rine", backbone=TINY, preprocess="ten_crop").preprocess == "ten_crop"


def test_bracket_options_name_ablations_in_one_run(tmp_path, capsys):
    from sidbench.cli import main
    from sidbench.api import split_options

    assert split_options("rine.progan4[tie=false, blocks=last,jpeg_qualities=[30,100]]") == (
        "rine.progan4", {"tie": False, "blocks": "last", "jpeg_qualities": [30, 100]})
    det = sidbench.load_detector("rine[tie=false,contrastive=false]", backbone=TINY)
    assert det.name == "rine.progan4[tie=false,contrastive=false]" and det.spec.name == "rine.progan4"
    assert not det.tie and det.xi == 0.0
    with pytest.raises(sidbench.SidbenchError, match="no option"):
        sidbench.load_detector("rine.progan2[tye=false]", backbone=TINY)

    train = make_folder(tmp_path / "train", splits=("x",), n=3)
    test = make_folder(tmp_path / "test", splits=("y",), n=2, seed=3)
    out = tmp_path / "out"
    rc = main(["run", "--data", str(test), "--train", str(train), "--backbone", TINY, "--out", str(out),
               "--no-progress", "--detectors", "rine.progan2,rine.progan2[tie=false,blocks=last]"])
    assert rc == 0, capsys.readouterr()
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert {r["detector"] for r in rows} == {"rine.progan2", "rine.progan2[tie=false,blocks=last]"}
    ablated = out / "checkpoints" / "rine.progan2[tie=false,blocks=last].safetensors"
    back = sidbench.load_detector("rine.progan2[tie=false,blocks=last]", weights=str(ablated), backbone=TINY)
    assert back.block_index == [3] and "rine.alpha" not in back.state_dict()


def test_a_saved_ablation_loads_under_the_plain_name(tmp_path):
    det = sidbench.load_detector("rine.progan2", backbone=TINY, tie=False, blocks="last")
    path = det.save(str(tmp_path / "ablation.safetensors"))
    back = sidbench.load_detector("rine.progan2", weights=path, backbone=TINY)
    assert back.name == "rine.progan2[tie=false,blocks=last]"
    assert back.block_index == [3] and not back.tie
    x = torch.randn(2, 4, 64)
    with torch.no_grad():
        torch.testing.assert_close(back.score({"cls_ln2": x}), det.score({"cls_ln2": x}), rtol=0, atol=0)
    with pytest.raises(WeightsError, match=r"option q=2 contradicts .*fitted with q=4"):  # explicit: an error, not a swap
        sidbench.load_detector("rine.progan2", weights=path, backbone=TINY, q=2)
    with pytest.raises(WeightsError, match=r"q=2.*unexpected rine.proj1.10.*the file holds q=4"):  # official: shapes tell
        sidbench.load_detector("rine.progan2", backbone=TINY, q=2).load_state_dict(
            {k: v for k, v in sidbench.load_detector("rine.progan2", backbone=TINY).state_dict().items()})


def test_learning_rate_falls_from_epoch_6_and_11_as_the_reference(tmp_path, tiny_backbone, one_thread):
    """The reference sets lr0 / 10**n at the start of 1-based epoch e when e is in [6, 11]."""
    root = make_folder(tmp_path / "d", splits=("train",), n=2, size=(224, 224))
    det = sidbench.load_detector("rine.progan2", backbone=TINY, q=1, proj_dim=8, epochs=12, augment=False)
    assert det.options["lr_milestones"] == [6, 11]
    det.fit(_fit_data(tiny_backbone, _records(root, "train")), log=lambda m: None)
    assert [h["lr"] for h in det.history] == pytest.approx([1e-3] * 5 + [1e-4] * 5 + [1e-5] * 2, rel=1e-12)
    with pytest.raises(sidbench.api.SidbenchError, match="1-based epoch"):
        sidbench.load_detector("rine.progan2", backbone=TINY, lr_milestones=[0])
