"""AIDE against its official code: model (models/AIDE.py), patch grading (data/dct.py) and test transforms
(data/datasets.py TestDataset), written here in plain torch on the state dict of an official-format checkpoint
({'model': sd} with the official key names and seeded random weights). Tiny widths and depths by default."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from test_pixel_detectors import bn, official_shapes, random_state, stages

# views of 64 px instead of 256 keep the four ResNet passes cheap; the official code path is the same
TINY = {"convnext_depths": [1, 1, 2, 1], "convnext_dims": [8, 16, 32, 48], "resnet_layers": [1, 1, 1, 1],
        "image_size": 64}
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IN_MEAN, IN_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


# -- the official checkpoint's keys ---------------------------------------------------------------------------
def resnet_stages(layers):
    return tuple((i + 1, n, p) for i, (n, p) in enumerate(zip(layers, (64, 128, 256, 512))))


def aide_shapes(convnext_depths=(3, 4, 30, 3), convnext_dims=(384, 768, 1536, 3072), resnet_layers=(3, 4, 6, 3),
                image_size=256):
    """AIDE_Model.state_dict(): hpf, model_min / model_max (30-channel ResNet-50, fc 1000), fc, the open_clip
    ConvNeXt trunk (timm names, classifier removed, head LayerNorm kept) and convnext_proj."""
    out = {"hpf.hpf.weight": (30, 3, 5, 5)}
    for branch in ("model_min", "model_max"):
        res = official_shapes(7, resnet_stages(resnet_layers), head="fc", head_in=2048)
        res["conv1.weight"] = (64, 30, 7, 7)
        res["fc.weight"], res["fc.bias"] = (1000, 2048), (1000,)
        out.update({f"{branch}.{k}": v for k, v in res.items()})
    out.update({"fc.fc1.weight": (1024, 2304), "fc.fc1.bias": (1024,), "fc.fc2.weight": (2, 1024), "fc.fc2.bias": (2,)})
    p, d = "openclip_convnext_xxl.", convnext_dims
    out.update({f"{p}stem.0.weight": (d[0], 3, 4, 4), f"{p}stem.0.bias": (d[0],), f"{p}stem.1.weight": (d[0],),
                f"{p}stem.1.bias": (d[0],)})
    for i, depth in enumerate(convnext_depths):
        s = f"{p}stages.{i}."
        if i:
            out.update({f"{s}downsample.0.weight": (d[i - 1],), f"{s}downsample.0.bias": (d[i - 1],),
                        f"{s}downsample.1.weight": (d[i], d[i - 1], 2, 2), f"{s}downsample.1.bias": (d[i],)})
        for j in range(depth):
            b = f"{s}blocks.{j}."
            out.update({f"{b}gamma": (d[i],), f"{b}conv_dw.weight": (d[i], 1, 7, 7), f"{b}conv_dw.bias": (d[i],),
                        f"{b}norm.weight": (d[i],), f"{b}norm.bias": (d[i],), f"{b}mlp.fc1.weight": (4 * d[i], d[i]),
                        f"{b}mlp.fc1.bias": (4 * d[i],), f"{b}mlp.fc2.weight": (d[i], 4 * d[i]),
                        f"{b}mlp.fc2.bias": (d[i],)})
    out.update({f"{p}head.norm.weight": (d[-1],), f"{p}head.norm.bias": (d[-1],),
                "convnext_proj.0.weight": (256, d[-1]), "convnext_proj.0.bias": (256,)})
    return out


def write_aide(path: Path, sd) -> Path:
    """main_finetune's save_model dump, less the argparse object (which weights_only loading refuses)."""
    torch.save({"model": sd, "epoch": 4, "scaler": {"scale": 65536.0}}, path)
    return path


# -- the official test transforms and forward, in plain torch -------------------------------------------------
def dct_mat(size):
    return [[(np.sqrt(1. / size) if i == 0 else np.sqrt(2. / size)) * np.cos((j + 0.5) * np.pi * i / size)
             for j in range(size)] for i in range(size)]


def band(start, end, size):
    return torch.tensor([[0. if i + j > end or i + j < start else 1. for j in range(size)] for i in range(size)])


def official_windows(x):
    """DCT_base_Rec_Module.forward (window 32, stride 16, grade_N 6, the all-pass level filter)."""
    ws = 32
    D = torch.tensor(dct_mat(ws)).float()
    DT = torch.transpose(torch.tensor(dct_mat(ws)).float(), 0, 1)
    C = x.shape[0]
    unf = torch.nn.Unfold(kernel_size=(ws, ws), stride=16)(x.unsqueeze(0)).squeeze(0)
    L = unf.shape[1]
    unf = unf.transpose(0, 1).reshape(L, C, ws, ws)
    x_dct = D @ unf @ DT
    level = DT @ (x_dct * band(0, ws * 2, ws)) @ D
    grade = torch.zeros(L)
    w = 1
    for i in range(6):
        filt = band(ws * 2. / 6 * i, ws * 2. / 6 * (i + 1), ws)
        _x = torch.log(torch.abs(x_dct) + 1) * filt / torch.sum(filt)
        grade += w * torch.sum(_x, dim=[1, 2, 3])
        w *= 2
    _, idx = torch.sort(grade)
    mx = torch.flip(idx, dims=[0])
    picks = [idx[0], mx[0], idx[1] if L > 1 else idx[0], mx[1] if L > 1 else mx[0]]
    fold = torch.nn.Fold(output_size=(ws, ws), kernel_size=(ws, ws), stride=ws)
    return [fold(torch.index_select(level, 0, i).reshape(1, C * ws * ws).transpose(0, 1)) for i in picks]


def official_views(img: Image.Image, size: int = 256) -> torch.Tensor:
    """TestDataset.__getitem__: [5, 3, 256, 256] (minmin, maxmax, minmin1, maxmax1, whole image)."""
    x = transforms.ToTensor()(img)
    t = transforms.Compose([transforms.Resize([size, size], antialias=False), transforms.Normalize(IN_MEAN, IN_STD)])
    return torch.stack([t(v) for v in (*official_windows(x), x)])


def ln2d(x, sd, p):
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), sd[p + ".weight"], sd[p + ".bias"], 1e-5).permute(0, 3, 1, 2)


def convnext_trunk(sd, x, depths):
    p = "openclip_convnext_xxl."
    x = ln2d(F.conv2d(x, sd[p + "stem.0.weight"], sd[p + "stem.0.bias"], stride=4), sd, p + "stem.1")
    for i, depth in enumerate(depths):
        s = f"{p}stages.{i}."
        if i:
            x = F.conv2d(ln2d(x, sd, s + "downsample.0"), sd[s + "downsample.1.weight"], sd[s + "downsample.1.bias"],
                         stride=2)
        for j in range(depth):
            b = f"{s}blocks.{j}."
            y = F.conv2d(x, sd[b + "conv_dw.weight"], sd[b + "conv_dw.bias"], padding=3, groups=x.shape[1])
            y = F.layer_norm(y.permute(0, 2, 3, 1), (x.shape[1],), sd[b + "norm.weight"], sd[b + "norm.bias"], 1e-5)
            y = F.linear(F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])), sd[b + "mlp.fc2.weight"],
                         sd[b + "mlp.fc2.bias"])
            x = x + (y * sd[b + "gamma"]).permute(0, 3, 1, 2)
    return ln2d(x, sd, p + "head.norm")  # head: global_pool and flatten replaced by Identity


def resnet_feature(sd, branch, x, layers):
    r = {k[len(branch) + 1:]: v for k, v in sd.items() if k.startswith(branch + ".")}
    x = F.relu(bn(r, "bn1", F.conv2d(x, r["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    return stages(r, x, resnet_stages(layers)).mean(dim=(2, 3))


def aide_reference(sd, img: Image.Image, depths=TINY["convnext_depths"], layers=TINY["resnet_layers"],
                   size=TINY["image_size"]) -> float:
    x = official_views(img, size)[None]
    hp = [F.conv2d(x[:, i], sd["hpf.hpf.weight"], padding=2) for i in range(4)]
    tokens = x[:, 4]
    cm, cs = torch.tensor(CLIP_MEAN).view(3, 1, 1), torch.tensor(CLIP_STD).view(3, 1, 1)
    dm, ds = torch.tensor(IN_MEAN).view(3, 1, 1), torch.tensor(IN_STD).view(3, 1, 1)
    feats = convnext_trunk(sd, tokens * (ds / cs) + (dm - cm) / cs, depths)
    x0 = F.linear(feats.mean(dim=(2, 3)), sd["convnext_proj.0.weight"], sd["convnext_proj.0.bias"])
    x1 = (resnet_feature(sd, "model_min", hp[0], layers) + resnet_feature(sd, "model_max", hp[1], layers)
          + resnet_feature(sd, "model_min", hp[2], layers) + resnet_feature(sd, "model_max", hp[3], layers)) / 4
    h = F.gelu(F.linear(torch.cat([x0, x1], 1), sd["fc.fc1.weight"], sd["fc.fc1.bias"]))
    z = F.linear(h, sd["fc.fc2.weight"], sd["fc.fc2.bias"])[0]
    return float(z[1] - z[0])


def image(seed: int, w: int, h: int) -> Image.Image:
    """Blocky noise with a smooth corner, so the windows' grades spread and one window is clearly flattest."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (h // 5 + 1, w // 5 + 1, 3)), np.ones((5, 5, 1)))[:h, :w]
    noisy = base + rng.normal(0, 25, (h, w, 3))
    noisy[: h // 2, : w // 2] = 120 + 0.2 * noisy[: h // 2, : w // 2]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def detector_logit(det, img: Image.Image) -> float:
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess

    pre = make_preprocess(det.preprocess, det.pixel_input)
    x = pre(ImageInput(img, None, "x.png") if getattr(pre, "wants_input", False) else img)
    with torch.no_grad():
        return float(det.score({"pixels": x[None]})[0])


# sizes (width, height): odd and non-square near the 32-px floor, over 256, tall and thin (32x32: the selection test)
AIDE_SIZES = ((47, 33), (301, 203), (64, 400))


def test_aide_official_file_gives_the_official_logits(tmp_path, plugins):
    from sidbench.registry import load_detector

    sd = random_state(aide_shapes(**TINY), seed=5)
    det = load_detector("aide", weights=str(write_aide(tmp_path / "progan_train.pth", sd)), plugins=plugins, **TINY)
    assert det.preprocess == "aide_dct"
    for i, (w, h) in enumerate(AIDE_SIZES):
        img = image(i, w, h)
        assert detector_logit(det, img) == pytest.approx(aide_reference(sd, img), abs=1e-4), (w, h)


def test_aide_selects_the_official_windows_in_the_official_order():
    from sidbench.detectors.aide import select_windows

    for i, (w, h) in enumerate(((32, 32), (48, 32), (129, 77), (500, 333))):
        x = transforms.ToTensor()(image(10 + i, w, h))
        ours, ref = select_windows(x), official_windows(x)
        for a, b in zip(ours, ref):
            assert torch.allclose(a, b, atol=1e-5), (w, h)
    # the flattest window of an image with a smooth corner lies in that corner, the busiest outside it
    x = transforms.ToTensor()(image(3, 128, 128))
    lowest, highest = select_windows(x)[:2]
    assert lowest.std() < 0.1 < highest.std()


def test_aide_views_resize_without_antialias(plugins):
    from sidbench.api import ImageInput
    from sidbench.detectors.aide import AideViews

    img = image(1, 601, 389)
    views = AideViews(plugins.detector("aide").pixels)(ImageInput(img, None, "x.png"))
    assert views.shape == (15, 256, 256)
    assert torch.allclose(views, official_views(img).flatten(0, 1), atol=1e-5)
    x = transforms.ToTensor()(img)
    aa = transforms.Normalize(IN_MEAN, IN_STD)(transforms.Resize([256, 256], antialias=True)(x))
    assert (views[12:] - aa).abs().max() > 0.05  # torchvision >= 0.17's default would differ


def test_aide_refuses_images_under_one_window_with_a_reason(plugins):
    from sidbench.api import ImageInput
    from sidbench.data.images import UnreadableImage
    from sidbench.detectors.aide import AideViews

    with pytest.raises(UnreadableImage, match="32x32"):
        AideViews(plugins.detector("aide").pixels)(ImageInput(image(0, 31, 200), None, "x.png"))


def test_aide_loads_strictly_and_refuses_pickled_args(tmp_path, plugins):
    import argparse

    from sidbench.api import WeightsError
    from sidbench.registry import load_detector

    sd = random_state(aide_shapes(**TINY), seed=6)
    missing = dict(sd)
    del missing["model_max.fc.weight"]
    with pytest.raises(WeightsError, match="model_max.fc.weight"):
        load_detector("aide", weights=str(write_aide(tmp_path / "a.pth", missing)), plugins=plugins, **TINY)
    torch.save({"model": sd, "args": argparse.Namespace(model="AIDE")}, tmp_path / "b.pth")
    with pytest.raises(WeightsError, match="convert"):
        load_detector("aide", weights=str(tmp_path / "b.pth"), plugins=plugins, **TINY)


def test_aide_tiny_network_has_the_official_keys():
    from sidbench.detectors.aide import build_network

    net = build_network(TINY["convnext_depths"], TINY["convnext_dims"], TINY["resnet_layers"])
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == aide_shapes(**TINY)


def test_aide_card(plugins):
    for name in ("aide.progan", "aide.sd14"):
        spec = plugins.detector(name)
        assert spec.paper and "MIT" in spec.license and spec.repository.endswith("shilinyan99/AIDE")
        assert spec.published and "antialias" in spec.notes and spec.official_weights.url.startswith("https://drive")
    assert plugins.detector("aide").name == "aide.progan"


def test_one_run_scores_aide_cospy_and_a_probe_in_one_leaderboard(tmp_path):
    """`sidbench run --detectors aide@F,cospy@Z,probe[backbone=dinov2-tiny] --train T`: every image scored by
    each (AIDE skips the one under 32 px, with its reason), AIDE's and CO-SPY's logits equal to their official
    forwards on the same files."""
    import pandas as pd

    from sidbench.cli import main

    from conftest import make_folder

    w = tmp_path / "progan_train.pth"
    sd = random_state(aide_shapes(**TINY), seed=7)
    write_aide(w, sd)
    release = cospy_release(13)
    z = write_cospy_zip(tmp_path / "progan.zip", release)
    data = tmp_path / "data" / "gan"
    for label, sizes in (("0_real", ((40, 36), (70, 50))), ("1_fake", ((33, 90), (20, 20)))):
        (data / label).mkdir(parents=True)
        for k, (ww, hh) in enumerate(sizes):
            image(20 + k + len(label), ww, hh).save(data / label / f"{k}.png")
    train = make_folder(tmp_path / "train", splits=("gan",), n=3, seed=8)
    out = tmp_path / "out"
    tiny = [a for k, v in {**TINY, "clip": "tiny"}.items() for a in ("--set", f"{k}={v}".replace(" ", ""))]
    assert main(["run", "--data", str(tmp_path / "data"), "--detectors", f"aide@{w},cospy@{z},probe[backbone=dinov2-tiny]",
                 "--train", str(train), "--out", str(out), "--no-progress", "--batch-size", "2", *tiny]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert scores.groupby("detector").path.nunique().to_dict() == {
        "aide.progan": 3, "cospy.progan": 4, "probe.linear[backbone=dinov2-tiny]": 4}
    assert dict(zip(scores.detector, scores.protocol))["aide.progan"] == "aide_dct"
    det = None
    for row in scores.itertuples():
        img = Image.open(row.path).convert("RGB")
        if row.detector == "aide.progan":
            assert row.logit == pytest.approx(aide_reference(sd, img), abs=1e-4)
        elif row.detector == "cospy.progan":
            if det is None:
                from sidbench.registry import load_detector

                det = load_detector("cospy", weights=str(z), clip="tiny")
            clip_state = det.clip.state_dict()
            assert row.logit == pytest.approx(cospy_reference(release, clip_state, img), abs=1e-4)
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped.path.str.endswith("1.png").all() and skipped.reason.str.contains("32x32").all()
    assert "probe" in (out / "leaderboard.md").read_text()


@pytest.mark.slow
def test_aide_full_size_network_has_the_official_keys():
    from sidbench.detectors.aide import OPTIONS, build_network

    net = build_network(OPTIONS["convnext_depths"], OPTIONS["convnext_dims"], OPTIONS["resnet_layers"])
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == aide_shapes()


@pytest.mark.slow
def test_cospy_full_size_clip_is_openais_vit_l14():
    """The tower open_clip builds for ViT-L-14-quickgelu has OpenAI's ViT-L/14 visual keys and shapes (the
    network of openai/clip-vit-large-patch14) and a 768-d output for the semantic fc."""
    import open_clip

    from openai_clip import openai_state_dict
    from sidbench.detectors.cospy import build_head

    tower = open_clip.create_model("ViT-L-14-quickgelu").visual
    ours = {k: tuple(v.shape) for k, v in tower.state_dict().items()}
    theirs = {k[len("visual."):]: tuple(v.shape) for k, v in openai_state_dict("ViT-L-14").items() if k.startswith("visual.")}
    assert ours == theirs and tower.output_dim == 768
    assert build_head(768).sem.fc.in_features == 768


# -- CO-SPY (progan) --------------------------------------------------------------------------------------------
def cospy_release(seed: int, clip_dim: int = 32) -> dict[str, dict[str, torch.Tensor]]:
    """The three files of progan.zip: semantic and fusion heads (fc only), the whole artifact detector."""
    from test_pixel_detectors import STAGES

    art = random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), seed)
    art = {f"artifact_encoder.{k}": v for k, v in art.items()}
    g = torch.Generator().manual_seed(seed + 1)
    art.update({"fc.weight": torch.randn(1, 512, generator=g) * 0.1, "fc.bias": torch.randn(1, generator=g)})
    return {"semantic_weights.pth": {"fc.weight": torch.randn(1, clip_dim, generator=g) * 0.3,
                                     "fc.bias": torch.randn(1, generator=g)},
            "artifact_weights.pth": art,
            "fusion_weights.pth": {"fc.weight": torch.randn(1, 2, generator=g), "fc.bias": torch.randn(1, generator=g)}}


def write_cospy_zip(path: Path, release) -> Path:
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        for name, sd in release.items():
            buf = io.BytesIO()
            torch.save(sd, buf)
            z.writestr(f"progan/{name}", buf.getvalue())
        z.writestr("__MACOSX/progan/._fusion_weights.pth", b"\x00\x05")
    return path


def cospy_reference(release, clip_state, img: Image.Image) -> float:
    """CoSpyFusionDetector.forward on its test_transform, with OpenAI's CLIP written out (tests/openai_clip.py)."""
    from openai_clip import openai_image_features
    from test_pixel_detectors import STAGES

    x = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])(img)[None]
    sem_in = transforms.Normalize(CLIP_MEAN, CLIP_STD)(x)
    art_in = transforms.Normalize(IN_MEAN, IN_STD)(x)
    s, a, f = (release[n] for n in ("semantic_weights.pth", "artifact_weights.pth", "fusion_weights.pth"))
    emb = openai_image_features({f"visual.{k}": v for k, v in clip_state.items()}, sem_in)["image_embed"]
    pred_sem = F.linear(emb, s["fc.weight"], s["fc.bias"])
    up = F.interpolate(F.interpolate(art_in, scale_factor=0.5, mode="nearest", recompute_scale_factor=True),
                       scale_factor=2.0, mode="nearest", recompute_scale_factor=True)
    enc = {k[len("artifact_encoder."):]: v for k, v in a.items() if k.startswith("artifact_encoder.")}
    h = F.relu(bn(enc, "bn1", F.conv2d((art_in - up) * 2.0 / 3.0, enc["conv1.weight"], stride=2, padding=1)))
    h = stages(enc, F.max_pool2d(h, 3, 2, 1), STAGES[:2]).mean(dim=(2, 3))
    pred_art = F.linear(h, a["fc.weight"], a["fc.bias"])
    return float(F.linear(torch.cat([pred_sem, pred_art], 1), f["fc.weight"], f["fc.bias"])[0, 0])


COSPY_SIZES = ((224, 224), (300, 200), (101, 333), (1023, 517))


def test_cospy_progan_release_gives_the_official_logits(tmp_path, plugins):
    from sidbench.registry import load_detector

    release = cospy_release(11)
    det = load_detector("cospy.progan", weights=str(write_cospy_zip(tmp_path / "progan.zip", release)),
                        plugins=plugins, clip="tiny")
    clip_state = {k: v.clone() for k, v in det.clip.state_dict().items()}
    assert det.preprocess == "cospy_resize_crop"
    for i, (w, h) in enumerate(COSPY_SIZES):
        img = image(30 + i, w, h)
        assert detector_logit(det, img) == pytest.approx(cospy_reference(release, clip_state, img), abs=1e-4), (w, h)


def test_cospy_loads_the_unzipped_folder_strictly(tmp_path, plugins):
    from sidbench.api import WeightsError
    from sidbench.registry import load_detector

    release = cospy_release(12)
    folder = tmp_path / "progan"
    folder.mkdir()
    for name, sd in release.items():
        torch.save(sd, folder / name)
    det = load_detector("cospy", weights=str(folder), plugins=plugins, clip="tiny")
    assert torch.equal(det.head.fusion.fc.weight, release["fusion_weights.pth"]["fc.weight"])
    (folder / "fusion_weights.pth").unlink()
    with pytest.raises(WeightsError, match="missing fusion_weights.pth"):
        load_detector("cospy", weights=str(folder), plugins=plugins, clip="tiny")
    release["artifact_weights.pth"].pop("artifact_encoder.fc1.weight")
    with pytest.raises(WeightsError, match="artifact_encoder.fc1.weight"):
        load_detector("cospy", weights=str(write_cospy_zip(tmp_path / "p.zip", release)), plugins=plugins, clip="tiny")


def test_cospy_card_and_offline_clip_error(plugins, monkeypatch, tmp_path):
    from sidbench.api import WeightsError
    from sidbench.registry import load_detector

    spec = plugins.detector("cospy")
    assert spec.name == "cospy.progan" and "MIT" in spec.license and spec.published and spec.notes
    assert spec.official_weights.url.startswith("https://huggingface.co/ruojiruoli/") and spec.official_weights.filename == "progan.zip"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsError) as err:
        load_detector("cospy", plugins=plugins)
    assert "\n" not in str(err.value) and "ViT-L-14:openai" in str(err.value)


# -- CO-SPY (sd-v1_4): SigLIP-SO400M-384 + SD v1.4 VAE residual -------------------------------------------------
def siglip_reference(sd, x, heads=2):
    """timm's vit_so400m_patch14_siglip_384 as open_clip's encode_image runs it: no CLS token, pre-norm blocks
    (exact GELU, LayerNorm eps 1e-6), final norm, then the attention-pool head (one latent query, its MLP)."""
    def ln(t, p):
        return F.layer_norm(t, (t.shape[-1],), sd[p + ".weight"], sd[p + ".bias"], 1e-6)

    def lin(t, p):
        return F.linear(t, sd[p + ".weight"], sd[p + ".bias"])

    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=14).flatten(2).transpose(1, 2)
    t = t + sd["pos_embed"]
    b, n, d = t.shape
    hd = d // heads
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        q, k, v = lin(ln(t, p + "norm1"), p + "attn.qkv").reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5, -1) @ v
        t = t + lin(a.transpose(1, 2).reshape(b, n, d), p + "attn.proj")
        t = t + lin(F.gelu(lin(ln(t, p + "norm2"), p + "mlp.fc1")), p + "mlp.fc2")
    t = ln(t, "norm")
    q = lin(sd["attn_pool.latent"], "attn_pool.q").reshape(1, 1, heads, hd).transpose(1, 2)
    k, v = lin(t, "attn_pool.kv").reshape(b, n, 2, heads, hd).permute(2, 0, 3, 1, 4)
    o = (torch.softmax(q @ k.transpose(-1, -2) / hd ** 0.5, -1) @ v).transpose(1, 2).reshape(b, 1, d)
    o = lin(o, "attn_pool.proj")
    o = o + lin(F.gelu(lin(ln(o, "attn_pool.norm"), "attn_pool.mlp.fc1")), "attn_pool.mlp.fc2")
    return o[:, 0]


def cospy_sd_release(seed: int):
    """sd-v1_4.zip's files: the artifact detector's whole state dict (its VAE included: BaseDetector.save_weights)."""
    from diffusers import AutoencoderKL

    from sidbench.detectors.cospy import TINY_VAE
    from test_pixel_detectors import STAGES

    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE).state_dict()
    shapes = official_shapes(3, STAGES[:2], head="fc1", head_in=512)
    art = {f"artifact_encoder.{k}": v for k, v in random_state(shapes, seed).items() if not k.startswith("fc1")}
    art.update({f"artifact_encoder.vae.{k}": v for k, v in vae.items()})
    g = torch.Generator().manual_seed(seed + 1)
    art.update({"fc.weight": torch.randn(1, 512, generator=g) * 0.1, "fc.bias": torch.randn(1, generator=g)})
    return {"semantic_weights.pth": {"fc.weight": torch.randn(1, 32, generator=g) * 0.3, "fc.bias": torch.randn(1, generator=g)},
            "artifact_weights.pth": art,
            "fusion_weights.pth": {"fc.weight": torch.randn(1, 2, generator=g), "fc.bias": torch.randn(1, generator=g)}}


def cospy_sd_reference(release, siglip_state, img: Image.Image) -> float:
    """The sd-v1_4 CoSpyFusionDetector.forward on its test_transform; the VAE is diffusers' (what it calls)."""
    from diffusers import AutoencoderKL

    from sidbench.detectors.cospy import TINY_VAE
    from test_pixel_detectors import STAGES

    x = transforms.Compose([transforms.Resize(384), transforms.CenterCrop(384), transforms.ToTensor()])(img)[None]
    s, a, f = (release[n] for n in ("semantic_weights.pth", "artifact_weights.pth", "fusion_weights.pth"))
    pred_sem = F.linear(siglip_reference(siglip_state, transforms.Normalize([0.5] * 3, [0.5] * 3)(x)), s["fc.weight"], s["fc.bias"])
    xa = transforms.Normalize([0.0] * 3, [1.0] * 3)(transforms.Resize(224, antialias=False)(x))
    vae = AutoencoderKL(**TINY_VAE).eval()
    vae.load_state_dict({k[len("artifact_encoder.vae."):]: v for k, v in a.items() if k.startswith("artifact_encoder.vae.")})
    with torch.no_grad():
        recon = vae.decode(vae.encode(xa).latent_dist.mean).sample
    enc = {k[len("artifact_encoder."):]: v for k, v in a.items() if k.startswith("artifact_encoder.")}
    h = F.relu(bn(enc, "bn1", F.conv2d((xa - recon) / 7. * 100., enc["conv1.weight"], stride=2, padding=1)))
    h = stages(enc, F.max_pool2d(h, 3, 2, 1), STAGES[:2]).mean(dim=(2, 3))
    pred_art = F.linear(h, a["fc.weight"], a["fc.bias"])
    return float(F.linear(torch.cat([pred_sem, pred_art], 1), f["fc.weight"], f["fc.bias"])[0, 0])


def test_cospy_sd14_release_gives_the_official_logits(tmp_path, plugins):
    pytest.importorskip("diffusers")
    from sidbench.registry import load_detector

    release = cospy_sd_release(21)
    det = load_detector("cospy.sd14", weights=str(write_cospy_zip(tmp_path / "sd-v1_4.zip", release)),
                        plugins=plugins, clip="tiny", vae="tiny")
    siglip_state = {k: v.clone() for k, v in det.clip.state_dict().items()}
    for i, (w, h) in enumerate(((500, 401), (130, 201))):
        img = image(40 + i, w, h)
        assert detector_logit(det, img) == pytest.approx(cospy_sd_reference(release, siglip_state, img), abs=1e-4), (w, h)
    release["artifact_weights.pth"] = {k: v for k, v in release["artifact_weights.pth"].items() if ".vae." not in k}
    from sidbench.api import WeightsError

    with pytest.raises(WeightsError, match="holds no VAE"):
        load_detector("cospy.sd14", weights=str(write_cospy_zip(tmp_path / "b.zip", release)), plugins=plugins,
                      clip="tiny", vae="tiny")
