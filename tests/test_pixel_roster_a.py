"""SAFE, LaDeDa, Tiny-LaDeDa, FreqNet and Fusing: official-format files (seeded random weights, official key
names and wrapping) load strictly and score as an independent forward written here from each official
network and test script (plain torch, PyWavelets, torchvision transforms); one run scores them all; each
published recipe trains."""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pywt
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from sidbench.api import WeightsError
from sidbench.cli import main

from conftest import make_folder
from test_pixel_detectors import STAGES, _bn, bn, npr_reference, official_shapes, random_state, stages, trainer_dump

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIZES = ((200, 300), (257, 263), (48, 64))  # (h, w): smaller than the crop, odd, tiny


def image(seed: int, size) -> Image.Image:
    rng = np.random.default_rng(seed)
    h, w = size
    base = np.kron(rng.uniform(0, 255, (h // 4 + 1, w // 4 + 1, 3)), np.ones((4, 4, 1)))[:h, :w]
    return Image.fromarray(np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8))


def normalise(img: Image.Image) -> torch.Tensor:
    return TF.normalize(TF.to_tensor(img), MEAN, STD)[None]


def detector_logits(name: str, path: Path, images: list, **options) -> list[float]:
    """The sidbench path: the detector loaded once, its protocol on each PIL image, then its network."""
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import load_detector

    det = load_detector(name, weights=str(path), **options)
    pre = make_preprocess(det.preprocess, det.pixel_input)
    out = []
    for img in images:
        x = pre(ImageInput(img, None, "x")) if getattr(pre, "wants_input", False) else pre(img)
        with torch.no_grad():
            out.append(float(det.score({"pixels": x[None]})[0]))
    return out


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-4, abs=1e-4)


# -- SAFE (models/resnet.py, data/datasets.py 'crop', scripts/eval.sh) ----------------------------------------
def safe_state(seed: int) -> dict:
    shapes = official_shapes(3, STAGES[:2], head="fc1", head_in=512)
    shapes["fc1.weight"], shapes["fc1.bias"] = (2, 512), (2,)
    return random_state(shapes, seed)


def safe_dump(sd: dict) -> dict:
    """utils.save_model: model, optimizer, epoch ('best' for checkpoint-best), scaler and the argparse args."""
    args = argparse.Namespace(model="SAFE", input_size=256, transform_mode="crop", blr=1e-2, resume="")
    return {"model": sd, "optimizer": trainer_dump(sd)["optimizer"], "epoch": "best",
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 0}, "args": args}


def safe_reference(sd: dict, img: Image.Image, crop: int = 256) -> float:
    x = T.ToTensor()(T.CenterCrop([crop, crop])(img))[None]  # eval transform: no resize, no normalisation
    hh = torch.from_numpy(pywt.dwt2(x.double().numpy(), "bior1.3", mode="symmetric")[1][2]).float()
    x = T.Resize([x.shape[-2], x.shape[-1]])(hh)  # _preprocess_dwt: Yh[0][:, :, 2] resized back
    y = F.max_pool2d(F.relu(bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=1))), 3, 2, 1)
    z = stages(sd, y, STAGES[:2]).mean(dim=(2, 3)) @ sd["fc1.weight"].T + sd["fc1.bias"]
    return float(z[0, 1] - z[0, 0])  # evaluate(): softmax(output)[:, 1] is P(fake)


def test_safe_checkpoint_with_its_args_loads_and_scores_as_the_official_code(tmp_path):
    sd = safe_state(1)
    path = tmp_path / "checkpoint-best.pth"
    torch.save(safe_dump(sd), path)
    full, small = image(10, SIZES[0]), [image(11 + i, size) for i, size in enumerate(SIZES[1:])]
    assert close(detector_logits("safe", path, [full])[0], safe_reference(sd, full))  # 256, zero-padded
    for img, got in zip(small, detector_logits("safe", path, small, image_size=64)):  # the same at crop 64
        assert close(got, safe_reference(sd, img, 64)), img.size


def test_safe_refuses_other_pickled_objects(tmp_path):
    from sidbench.registry import load_detector

    path = tmp_path / "checkpoint-best.pth"
    torch.save({**safe_dump(safe_state(2)), "when": datetime.date(2024, 8, 1)}, path)
    with pytest.raises(WeightsError, match="refused to load"):
        load_detector("safe", weights=str(path))


@pytest.mark.parametrize("size", [(3, 4), (9, 7), (64, 50)])
def test_safe_hh_band_is_pywavelets_bior13_symmetric(size):
    from sidbench.detectors.safe import dwt_hh

    x = torch.randn(2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(size[0]))
    want = pywt.dwt2(x.numpy(), "bior1.3", mode="symmetric")[1][2]
    np.testing.assert_allclose(dwt_hh(x).numpy(), want, atol=1e-12)


# -- LaDeDa / Tiny-LaDeDa (networks/LaDeDa.py, networks/Tiny_LaDeDa.py, test.py) --------------------------------
LADEDA9 = ((1, 3, 64, 2, 3), (2, 4, 128, 2, 3), (3, 6, 256, 2, 1), (4, 3, 512, 1, 1))  # layer, blocks, planes, stride, k


def ladeda_state(seed: int) -> dict:
    shapes = {"conv1.weight": (64, 3, 1, 1), "conv2.weight": (64, 64, 3, 3), **_bn("bn1", 64)}
    inplanes = 64
    for layer, blocks, p, _, k in LADEDA9:
        for b in range(blocks):
            pre, cin = f"layer{layer}.{b}", inplanes if b == 0 else 4 * p
            shapes |= {f"{pre}.conv1.weight": (p, cin, 1, 1), **_bn(f"{pre}.bn1", p),
                       f"{pre}.conv2.weight": (p, p, k if b == 0 else 1, k if b == 0 else 1), **_bn(f"{pre}.bn2", p),
                       f"{pre}.conv3.weight": (4 * p, p, 1, 1), **_bn(f"{pre}.bn3", 4 * p)}
            if b == 0:
                shapes |= {f"{pre}.downsample.0.weight": (4 * p, cin, 1, 1), **_bn(f"{pre}.downsample.1", 4 * p)}
        inplanes = 4 * p
    return random_state(shapes | {"fc.weight": (1, 2048), "fc.bias": (1,)}, seed)


def tiny_state(seed: int) -> dict:
    shapes = {"conv1.weight": (8, 3, 1, 1), "conv2.weight": (8, 8, 3, 3), **_bn("bn1", 8),
              "layer1.0.conv1.weight": (8, 8, 1, 1), **_bn("layer1.0.bn1", 8),
              "layer1.0.conv2.weight": (8, 8, 3, 3), **_bn("layer1.0.bn2", 8), "fc.weight": (1, 8), "fc.bias": (1,)}
    return random_state(shapes, seed)


def npr_input(x):
    top_left = x[:, :, ::2, ::2].repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return x - top_left


def ladeda_reference(sd: dict, x: torch.Tensor, tiny: bool, kind: str = "NPR") -> float:
    if kind == "NPR":
        x = npr_input(x)
    else:  # right_diag: a 3x3 kernel per channel, 'same' padding
        k = torch.tensor([[-2.0, -1, 0], [-1, 0, 1], [0, 1, 2]]).expand(3, 1, 3, 3)
        x = F.conv2d(x, k, groups=3, padding=1)
    x = F.relu(bn(sd, "bn1", F.conv2d(F.conv2d(x, sd["conv1.weight"]), sd["conv2.weight"])))
    for layer, blocks, _, stride, _ in (((1, 1, 8, 2, 3),) if tiny else LADEDA9):
        for b in range(blocks):
            pre, s = f"layer{layer}.{b}", stride if b == 0 else 1
            out = F.relu(bn(sd, f"{pre}.bn1", F.conv2d(x, sd[f"{pre}.conv1.weight"])))
            out = F.relu(bn(sd, f"{pre}.bn2", F.conv2d(out, sd[f"{pre}.conv2.weight"], stride=s)))
            if tiny:
                x = out
                continue
            out = bn(sd, f"{pre}.bn3", F.conv2d(out, sd[f"{pre}.conv3.weight"]))
            res = bn(sd, f"{pre}.downsample.1", F.conv2d(x, sd[f"{pre}.downsample.0.weight"], stride=s)) if b == 0 else x
            d = res.size(-1) - out.size(-1)
            x = F.relu(out + (res[:, :, :-d, :-d] if d else res))
    x = F.avg_pool2d(x, x.size(2), stride=1).flatten(1)  # nn.AvgPool2d(x.size()[2], stride=1)
    return float((x @ sd["fc.weight"].T + sd["fc.bias"])[0, 0])


@pytest.mark.parametrize("tiny", [False, True])
def test_ladeda_files_score_as_the_official_networks(tmp_path, tiny):
    """test.py: Resize((loadSize, loadSize)) bilinear on PIL, ImageNet mean/std (loadSize 40 here, 256 by default)."""
    sd = tiny_state(3) if tiny else ladeda_state(3)
    path = tmp_path / ("ForenSynth_Tiny_LaDeDa.pth" if tiny else "WildRF_LaDeDa.pth")
    torch.save(sd, path)  # save_networks: the bare state dict
    name = "tiny_ladeda" if tiny else "ladeda"
    images = [image(20 + i, size) for i, size in enumerate(SIZES)]
    for img, got in zip(images, detector_logits(name, path, images, image_size=40)):
        assert close(got, ladeda_reference(sd, normalise(img.resize((40, 40), Image.BILINEAR)), tiny)), img.size


def test_tiny_ladeda_wildrf_reads_the_right_diagonal_gradient(tmp_path):
    sd = tiny_state(4)
    torch.save(sd, tmp_path / "WildRF_Tiny_LaDeDa.pth")
    img = image(5, (70, 90))
    want = ladeda_reference(sd, normalise(img.resize((256, 256), Image.BILINEAR)), True, "right_diag")
    assert close(detector_logits("tiny_ladeda.wildrf", tmp_path / "WildRF_Tiny_LaDeDa.pth", [img])[0], want)


# -- FreqNet (networks/freqnet.py, test.py) -----------------------------------------------------------------------
FREQ_ROUNDS = ((1, 3, 64, 1), (2, 64, 64, 2), (3, 256, 256, 1), (4, 256, 256, 2))


def freqnet_state(seed: int) -> dict:
    shapes = {k: v for k, v in official_shapes(3, STAGES[:2], head="fc1", head_in=512).items()
              if not k.startswith(("conv1.", "bn1."))}
    for i, cin, cout, _ in FREQ_ROUNDS:
        shapes |= {f"weight{i}": (cout, cin, 1, 1), f"bias{i}": (cout,), f"realconv{i}.weight": (cout, cout, 1, 1),
                   f"imagconv{i}.weight": (cout, cout, 1, 1)}
    return random_state(shapes, seed)


def _hfreq_wh(x):
    x = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=[-2, -1])
    b, c, h, w = x.shape
    x[:, :, h // 2 - h // 4:h // 2 + h // 4, w // 2 - w // 4:w // 2 + w // 4] = 0.0
    return F.relu(torch.real(torch.fft.ifft2(torch.fft.ifftshift(x, dim=[-2, -1]), norm="ortho")))


def _hfreq_c(x):
    x = torch.fft.fftshift(torch.fft.fft(x, dim=1, norm="ortho"), dim=1)
    c = x.shape[1]
    x[:, c // 2 - c // 4:c // 2 + c // 4, :, :] = 0.0
    return F.relu(torch.real(torch.fft.ifft(torch.fft.ifftshift(x, dim=1), dim=1, norm="ortho")))


def _fcl(sd, x, i):
    x = torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=[-2, -1])
    x = torch.complex(F.conv2d(x.real, sd[f"realconv{i}.weight"]), F.conv2d(x.imag, sd[f"imagconv{i}.weight"]))
    return F.relu(torch.real(torch.fft.ifft2(torch.fft.ifftshift(x, dim=[-2, -1]), norm="ortho")))


def freqnet_reference(sd, x) -> float:
    for i, _, _, s in FREQ_ROUNDS[:2]:
        x = _fcl(sd, _hfreq_c(F.relu(F.conv2d(_hfreq_wh(x), sd[f"weight{i}"], sd[f"bias{i}"], stride=s))), i)
    x = stages(sd, F.max_pool2d(x, 3, 2, 1), STAGES[:1])
    for i, _, _, s in FREQ_ROUNDS[2:]:
        x = _fcl(sd, F.relu(F.conv2d(_hfreq_wh(x), sd[f"weight{i}"], sd[f"bias{i}"], stride=s)), i)
    x = stages(sd, x, STAGES[1:2]).mean(dim=(2, 3))
    return float((x @ sd["fc1.weight"].T + sd["fc1.bias"])[0, 0])


def test_freqnet_file_scores_as_the_official_network_under_both_test_protocols(tmp_path):
    """ForenSynths: Resize((loadSize, loadSize)) (40 here); GANGen-Detection: native size (odd sizes too)."""
    sd = freqnet_state(5)
    torch.save(sd, tmp_path / "4-classes-freqnet-v2.pth")
    path = tmp_path / "4-classes-freqnet-v2.pth"
    images = [image(30 + i, size) for i, size in enumerate(SIZES)]
    for img, got in zip(images, detector_logits("freqnet", path, images, image_size=40)):
        assert close(got, freqnet_reference(sd, normalise(img.resize((40, 40), Image.BILINEAR)))), img.size
    img = image(33, (45, 61))
    assert close(detector_logits("freqnet", path, [img], preprocess="native")[0], freqnet_reference(sd, normalise(img)))


# -- Fusing (networks/trainer.py Patch5Model, COOI, SA_layer; data/dataset_train.py; eval.py) --------------------
def fusing_state(seed: int) -> dict:
    shapes = {f"resnet.{k}": v for k, v in official_shapes(7).items()}
    shapes["resnet.fc.weight"], shapes["resnet.fc.bias"] = (1000, 2048), (1000,)
    for i in range(3):
        p = f"mha_list.{i}"
        shapes |= {f"{p}.mha.in_proj_weight": (384, 128), f"{p}.mha.in_proj_bias": (384,),
                   f"{p}.mha.out_proj.weight": (128, 128), f"{p}.mha.out_proj.bias": (128,),
                   f"{p}.ln1.weight": (128,), f"{p}.ln1.bias": (128,), f"{p}.fc1.weight": (128, 128),
                   f"{p}.fc1.bias": (128,), f"{p}.fc2.weight": (128, 128), f"{p}.fc2.bias": (128,),
                   f"{p}.ln2.weight": (128,), f"{p}.ln2.bias": (128,)}
    return random_state(shapes | {"fc1.weight": (128, 2048), "fc1.bias": (128,), "fc.weight": (1, 128),
                                  "fc.bias": (1,)}, seed)


def _resnet(sd, x):
    r = {k[len("resnet."):]: v for k, v in sd.items() if k.startswith("resnet.")}
    x = F.max_pool2d(F.relu(bn(r, "bn1", F.conv2d(x, r["conv1.weight"], stride=2, padding=3))), 3, 2, 1)
    fm = stages(r, x)
    return fm, fm.mean(dim=(2, 3))


def _cooi(fm, scale):
    """COOI.get_coordinates, step by step."""
    batch, _, fh, fw = fm.shape
    smin = torch.min(scale, 1, keepdim=True)[0].long()
    base = (scale - smin).long() // 2
    locs = []
    for win, num, patch in (((3, 3), 3, 224), ((2, 2), 3, 112)):
        ssum = torch.sum(F.avg_pool2d(fm, win, stride=1), dim=1, keepdim=True)
        _, _, sh, sw = ssum.shape
        for _ in range(num):
            vmax, flat = torch.max(ssum.view(batch, -1), dim=1)
            lmax = torch.stack((flat // sw, flat % sw), dim=1)
            ssum = ssum * (F.max_pool2d(ssum, (3, 3), stride=1, padding=(1, 1)) != vmax.view(-1, 1, 1, 1)).float()
            rate = torch.stack(((2 * lmax[:, 0] + fh - sh + 1) / (2 * fh), (2 * lmax[:, 1] + fw - sw + 1) / (2 * fw)), 1)
            centre = (base + smin * rate).long()
            tl = torch.stack((centre[:, 0] - patch // 2, centre[:, 1] - patch // 2), 1)
            br = torch.stack((centre[:, 0] + patch // 2 + patch % 2, centre[:, 1] + patch // 2 + patch % 2), 1)
            below = tl.clone()
            below[below > 0] = 0
            br, tl = br - below, tl - below
            over = br - scale.long()
            over[over < 0] = 0
            tl, br = tl - over, br - over
            tl[tl < 0] = 0
            locs.append(torch.cat((tl, br), 1))
    return torch.stack(locs, 1)


def _attention(sd, p, x):
    """nn.MultiheadAttention(128, 4) on [L, B, E], written out."""
    L, B, E = x.shape
    q, k, v = (x @ sd[f"{p}.in_proj_weight"].T + sd[f"{p}.in_proj_bias"]).chunk(3, dim=-1)
    heads = lambda t: t.reshape(L, B * 4, E // 4).transpose(0, 1)  # noqa: E731
    att = torch.softmax(heads(q) @ heads(k).transpose(1, 2) / (E // 4) ** 0.5, dim=-1) @ heads(v)
    return att.transpose(0, 1).reshape(L, B, E) @ sd[f"{p}.out_proj.weight"].T + sd[f"{p}.out_proj.bias"]


def fusing_reference(sd, img: Image.Image) -> float:
    w, h = img.size
    full = normalise(img)[0]
    crop = normalise(T.CenterCrop(224)(T.Resize(224)(img)))
    fm, whole = _resnet(sd, crop)
    lin = lambda name, t: t @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]  # noqa: E731
    locs = _cooi(fm, torch.tensor([[h, w]]))
    windows = []
    for t, l, b, r in locs[0].tolist():
        patch = full[:, t:b, l:r]
        windows.append(patch if patch.shape[-2:] == (224, 224) else
                       F.interpolate(patch[None], size=(224, 224), mode="bilinear", align_corners=True)[0])
    local = F.relu(lin("fc1", _resnet(sd, torch.stack(windows))[1])).view(1, 6, 128)
    x = torch.cat((local, F.relu(lin("fc1", whole)).view(1, 1, 128)), 1)
    for i in range(3):
        p = f"mha_list.{i}"
        s = x.transpose(1, 0)
        s = F.layer_norm(s + _attention(sd, f"{p}.mha", s), (128,), sd[f"{p}.ln1.weight"], sd[f"{p}.ln1.bias"])
        s = s.transpose(1, 0)
        s = s + lin(f"{p}.fc2", F.relu(lin(f"{p}.fc1", s)))
        x = F.layer_norm(s, (128,), sd[f"{p}.ln2.weight"], sd[f"{p}.ln2.bias"])
    return float(lin("fc", x[:, -1])[0, 0])


@pytest.mark.parametrize("size", [(230, 301), pytest.param((180, 150), marks=pytest.mark.slow)])
def test_fusing_file_scores_as_the_official_network(tmp_path, size):
    """A 4-GPU training dump ({'model': ...} of a DataParallel model, eval.py's commented-out case); boxes cut
    at 224 and resized from 112, or (an image under 224) all clamped and resized."""
    sd = fusing_state(6)
    torch.save(trainer_dump({f"module.{k}": v for k, v in sd.items()}), tmp_path / "PSM.pth")
    img = image(40 + size[0], size)
    assert close(detector_logits("fusing", tmp_path / "PSM.pth", [img])[0], fusing_reference(sd, img))


# -- one run, one leaderboard ----------------------------------------------------------------------------------
def test_the_five_and_npr_in_one_run_give_one_leaderboard(tmp_path):
    w = tmp_path / "weights"
    w.mkdir()
    files = {"safe": w / "checkpoint-best.pth", "ladeda": w / "WildRF_LaDeDa.pth",
             "tiny_ladeda": w / "ForenSynth_Tiny_LaDeDa.pth", "freqnet": w / "4-classes-freqnet-v2.pth",
             "fusing": w / "PSM.pth", "npr": w / "NPR.pth"}
    tiny, npr = tiny_state(7), random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 8)
    torch.save(safe_dump(safe_state(9)), files["safe"])
    torch.save(ladeda_state(10), files["ladeda"])
    torch.save(tiny, files["tiny_ladeda"])
    torch.save(freqnet_state(11), files["freqnet"])
    torch.save(trainer_dump(fusing_state(12)), files["fusing"])
    torch.save(trainer_dump({f"module.{k}": v for k, v in npr.items()}), files["npr"])
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(49, 70), seed=3)  # odd, non-square
    out = tmp_path / "out"
    dets = ",".join(f"{k}@{v}" for k, v in files.items())
    assert main(["run", "--data", str(data), "--detectors", dets, "--out", str(out), "--batch-size", "2",
                 "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    names = ["freqnet.progan4", "fusing.progan", "ladeda.forensynth", "npr.progan4", "safe.progan4",
             "tiny_ladeda.forensynth"]
    assert sorted(scores.detector.unique()) == names
    assert (scores.groupby("detector").path.nunique() == 2).all() and np.isfinite(scores.logit).all()
    board = (out / "leaderboard.md").read_text()
    assert all(n in board for n in names)
    for row in scores[scores.detector == "tiny_ladeda.forensynth"].itertuples():
        x = normalise(Image.open(row.path).convert("RGB").resize((256, 256), Image.BILINEAR))
        assert close(row.logit, ladeda_reference(tiny, x, True)), row.path
    for row in scores[scores.detector == "npr.progan4"].itertuples():
        x = normalise(Image.open(row.path).convert("RGB").resize((256, 256), Image.BILINEAR))
        assert close(row.logit, float(npr_reference(npr, x)[0])), row.path
    protocols = dict(zip(scores.detector, scores.protocol))
    assert protocols["fusing.progan"] == "fusing_psm" and protocols["safe.progan4"] == "center_crop"


# -- training ---------------------------------------------------------------------------------------------------
def fit_once(name: str, tmp_path: Path, **options):
    """Fit on a few generated images for a step or two: the loss is finite and the weights move."""
    from sidbench.api import Record
    from sidbench.engine.fitting import EngineFitData
    from sidbench.registry import load_detector

    root = make_folder(tmp_path / name, splits=("car", "horse"), n=1, size=(40, 40), seed=5)
    records = [Record(str(p), int("1_fake" in str(p)), "train") for p in sorted(root.rglob("*.png"))]
    det = load_detector(name, **options)
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in det.build_network().state_dict().items()}
    torch.manual_seed(0)
    data = EngineFitData(records, protocol=det.preprocess, pixels=det.pixel_input, device="cpu")
    logs: list[str] = []
    summary = det.fit(data, log=logs.append)
    assert np.isfinite(summary["loss"]) and summary["n_train"] == 4, (summary, logs)
    after = det.net.state_dict()
    moved = [k for k, v in start.items() if v.is_floating_point() and not torch.equal(v, after[k])]
    assert len(moved) > len(start) // 2, moved
    return det, logs


def test_safe_trains_with_its_recipe(tmp_path):
    det, logs = fit_once("safe", tmp_path, epochs=1, batch_size=2, crop_size=32, image_size=32)
    line = next(m for m in logs if m.startswith("epoch 1: loss"))
    assert "lr 0.0025" in line, logs  # step 2 of 2 in the warm-up epoch: lr / 2


def test_ladeda_and_freqnet_train_with_their_recipes(tmp_path):
    fit_once("ladeda", tmp_path, epochs=1, batch_size=2, load_size=40, crop_size=32, image_size=32, classes="all")
    fit_once("freqnet", tmp_path, epochs=1, batch_size=2, load_size=40, crop_size=32, image_size=32, classes="all")


def test_tiny_ladeda_is_not_trained_here(tmp_path):
    from sidbench.registry import load_detector

    assert not load_detector("tiny_ladeda").spec.needs_fit


@pytest.mark.slow
def test_fusing_trains_with_its_recipe(tmp_path):
    """ResNet-50 on seven 224 px views per image: slow on CPU."""
    fit_once("fusing", tmp_path, epochs=1, batch_size=4, pretrained=False)
