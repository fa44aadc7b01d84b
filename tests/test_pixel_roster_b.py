"""Gram-Net, PatchCraft, FreqDetect, LGrad and LNP against their official code.

Each test writes the official files (seeded random weights under the official key names, wrapped as the official
code saves them), loads them through sidbench, and compares the logits sidbench gives for images of several sizes
with a pipeline written here from the official test scripts: torchvision transforms on PIL images, numpy/cv2
where the official code uses them (its scipy DCT written out in numpy, as sidbench calls scipy), and forward passes in plain ``torch.nn.functional`` on the state dicts (no
sidbench network code). Tiny widths where the official file decides them (the StyleGAN discriminator).
"""
from __future__ import annotations

import io
import re
import math

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from sidbench.api import ImageInput, WeightsError

from conftest import make_folder
from test_pixel_detectors import STAGES, bn, cnndetection_reference, official_shapes, random_state

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
SIZES = ((40, 52), (33, 29), (64, 64))  # (height, width): non-square, odd, square


def images(seed: int, sizes=SIZES) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    out = []
    for h, w in sizes:
        base = rng.normal(128, 50, (h // 4 + 1, w // 4 + 1, 3))
        a = np.kron(base, np.ones((4, 4, 1)))[:h, :w] + rng.normal(0, 12, (h, w, 3))
        out.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
    return out


@pytest.fixture(scope="module")
def resnet50_state() -> dict[str, torch.Tensor]:
    """One seeded ResNet-50 (fc 2048 -> 1) state for the three detectors that classify with one."""
    return random_state(official_shapes(7), 7)


def sidbench_logits(name: str, weights, imgs, plugins, batched: bool = False, **options) -> torch.Tensor:
    """The detector's own protocol then its score, image by image, or as one batch (``batched``: equal sizes)."""
    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import load_detector

    det = load_detector(name, weights=str(weights), plugins=plugins, **options)
    prep = make_preprocess(det.preprocess, det.pixel_input)
    xs = [prep(ImageInput(img, None, "x.png")) if getattr(prep, "wants_input", False) else prep(img) for img in imgs]
    with torch.inference_mode():
        if batched:
            return det.score({"pixels": torch.stack(xs)})
        return torch.cat([det.score({"pixels": x[None]}) for x in xs])


def conv_bn_relu(sd, pre, x, stride=1, padding=1):
    return F.relu(bn(sd, f"{pre}.1", F.conv2d(x, sd[f"{pre}.0.weight"], stride=stride, padding=padding)))


# -- Gram-Net (networks/resnet_gram.py of SIDBench / AIGCDetectBenchmark) ---------------------------------------
GRAM_BRANCHES = (("conv_interi_0", "gi_fc1", "gi_fc2", 3), ("conv_inter0_0", "g0_fc1", "g0_fc2", 64),
                 ("conv_inter1_0", "g_fc1r", "g_fc2r", 64), ("conv_inter2_0", "g2_fc1", "g2_fc2", 64),
                 ("conv_inter3_0", "g3_fc1", "g3_fc2", 128), ("conv_inter4_0", "g4_fc1", "g4_fc2", 256))


def _bn_shapes(prefix, n):
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")} | \
        {f"{prefix}.num_batches_tracked": ()}


def gram_shapes() -> dict[str, tuple]:
    s = {"conv1.weight": (64, 3, 7, 7), **_bn_shapes("bn1", 64)}
    cin = 64
    for layer, p in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            pre = f"layer{layer}.{b}"
            s[f"{pre}.conv1.weight"] = (p, cin if b == 0 else p, 3, 3)
            s |= _bn_shapes(f"{pre}.bn1", p)
            s[f"{pre}.conv2.weight"] = (p, p, 3, 3)
            s |= _bn_shapes(f"{pre}.bn2", p)
            if b == 0 and layer > 1:
                s[f"{pre}.downsample.0.weight"] = (p, cin, 1, 1)
                s |= _bn_shapes(f"{pre}.downsample.1", p)
        cin = p
    s |= {"scale.scale": (1,), "fcnewr.0.weight": (512, 704), "fcnewr.0.bias": (512,), "fcnewr.3.weight": (1, 512),
          "fcnewr.3.bias": (1,)}
    for conv, fc1, fc2, c in GRAM_BRANCHES:
        s |= {f"{conv}.0.weight": (32, c, 3, 3), **_bn_shapes(f"{conv}.1", 32)}
        s |= {f"{fc1}.0.weight": (16, 1, 3, 3), **_bn_shapes(f"{fc1}.1", 16)}
        s |= {f"{fc2}.0.weight": (32, 16, 3, 3), **_bn_shapes(f"{fc2}.1", 32)}
    return s


def gram_reference(sd, img: Image.Image) -> float:
    x = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize(*IMAGENET)])(img)[None]  # SIDBench test.py
    x4 = F.relu(bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x5 = F.max_pool2d(x4, 3, 2, 1)
    feats, y = [], x5
    for layer in range(1, 5):
        for b in range(2):
            pre, stride = f"layer{layer}.{b}", 2 if (b == 0 and layer > 1) else 1
            out = F.relu(bn(sd, f"{pre}.bn1", F.conv2d(y, sd[f"{pre}.conv1.weight"], stride=stride, padding=1)))
            out = bn(sd, f"{pre}.bn2", F.conv2d(out, sd[f"{pre}.conv2.weight"], padding=1))
            short = bn(sd, f"{pre}.downsample.1", F.conv2d(y, sd[f"{pre}.downsample.0.weight"], stride=2)) \
                if f"{pre}.downsample.0.weight" in sd else y
            y = F.relu(out + short)
        feats.append(y)
    x6, x7, x8 = feats[:3]
    pooled = [y.mean(dim=(2, 3))]
    for (conv, fc1, fc2, _), inp in zip(GRAM_BRANCHES, (x, x4, x5, x6, x7, x8)):
        f = conv_bn_relu(sd, conv, inp)
        a, b_, c, d = f.shape
        f = f.view(a, b_, c * d)
        g = torch.bmm(f, f.transpose(1, 2)).unsqueeze(1).div(b_ * c * d)
        g = conv_bn_relu(sd, fc2, conv_bn_relu(sd, fc1, g, stride=2), stride=2)
        pooled.append(g.mean(dim=(2, 3)) * sd["scale.scale"])
    h = torch.cat(pooled, 1)
    h = F.relu(h @ sd["fcnewr.0.weight"].T + sd["fcnewr.0.bias"])
    return float((h @ sd["fcnewr.3.weight"].T + sd["fcnewr.3.bias"])[0, 0])


def test_gramnet_netc_dump_gives_the_official_logits(tmp_path, plugins):
    sd = random_state(gram_shapes(), 1)
    path = tmp_path / "Gram.pth"
    torch.save({"netC": {f"module.{k}": v for k, v in sd.items()}}, path)
    imgs = images(1, ((40, 52), (33, 29), (230, 250)))
    want = torch.tensor([gram_reference(sd, im) for im in imgs])
    torch.testing.assert_close(sidbench_logits("gramnet", path, imgs, plugins), want, rtol=1e-4, atol=1e-4)


# -- PatchCraft (SIDBench models/RPTC.py, dataset/process.py rptc_processing) -----------------------------------
def rptc_shapes() -> dict[str, tuple]:
    s = {"group1.hpf.weight": (30, 1, 5, 5), "group1_b.0.weight": (32, 90, 3, 3), "group1_b.0.bias": (32,),
         **_bn_shapes("group1_b.1", 32), "fc2.weight": (1, 32), "fc2.bias": (1,)}
    for g, convs in (("group2", 4), ("group3", 2), ("group4", 2), ("group5", 2)):
        for c in range(convs):
            s |= {f"{g}.{3 * c}.weight": (32, 32, 3, 3), f"{g}.{3 * c}.bias": (32,), **_bn_shapes(f"{g}.{3 * c + 1}", 32)}
    return s


def ed(img):
    r1, r2 = img[:, 0:-1, :], img[:, 1::, :]
    r3, r4 = img[:, :, 0:-1], img[:, :, 1::]
    r5, r6 = img[:, 0:-1, 0:-1], img[:, 1::, 1::]
    r7, r8 = img[:, 0:-1, 1::], img[:, 1::, 0:-1]
    return sum(torch.sum(torch.abs(a - b)).item() for a, b in ((r1, r2), (r3, r4), (r5, r6), (r7, r8)))


def rptc_input(img: Image.Image, crop=224, n=8) -> torch.Tensor:
    """rptc_processing with SIDBench's test defaults (cropSize 224, patchNum 3), crops drawn after manual_seed(0)."""
    torch.manual_seed(0)
    p = crop // n
    random_crop = T.RandomCrop(p)
    if min(img.size) < p:
        img = T.Resize((p, p))(img)
    img = T.ToTensor()(img)
    crops = sorted(((c, ed(c)) for c in (random_crop(img) for _ in range(n * n * 3))), key=lambda t: t[1])
    poor, rich = torch.zeros(3, crop, crop), torch.zeros(3, crop, crop)
    k = 0
    for i in range(n):
        for j in range(n):
            poor[:, i * p:(i + 1) * p, j * p:(j + 1) * p] = crops[k][0]
            rich[:, i * p:(i + 1) * p, j * p:(j + 1) * p] = crops[-1 - k][0]
            k += 1
    return torch.stack([poor, rich])[None]


def rptc_reference(sd, img: Image.Image) -> float:
    x = rptc_input(img)

    def group1(y):
        a, _, c, d = y.shape
        y = F.conv2d(y.reshape(-1, 1, c, d), sd["group1.hpf.weight"], padding=2).reshape(a, -1, c, d)
        y = F.conv2d(y, sd["group1_b.0.weight"], sd["group1_b.0.bias"], padding=1)
        return F.hardtanh(bn(sd, "group1_b.1", y), -5, 5)

    y = group1(x[:, 0]) - group1(x[:, 1])
    for g, convs, pool in (("group2", 4, True), ("group3", 2, True), ("group4", 2, True), ("group5", 2, False)):
        for c in range(convs):
            y = F.conv2d(y, sd[f"{g}.{3 * c}.weight"], sd[f"{g}.{3 * c}.bias"], padding=1)
            y = F.relu(bn(sd, f"{g}.{3 * c + 1}", y))
        if pool:
            y = F.avg_pool2d(y, 3, 2, 1)
    return float((y.mean(dim=(2, 3)) @ sd["fc2.weight"].T + sd["fc2.bias"])[0, 0])


def test_patchcraft_gives_the_official_logits(tmp_path, plugins):
    sd = random_state(rptc_shapes(), 2)
    path = tmp_path / "RPTC.pth"
    torch.save({"netC": sd}, path)
    imgs = images(2, ((40, 52), (33, 29), (20, 90)))  # the last one has a side below a patch: resized to a square patch
    want = torch.tensor([rptc_reference(sd, im) for im in imgs])
    torch.testing.assert_close(sidbench_logits("patchcraft", path, imgs, plugins), want, rtol=1e-4, atol=1e-4)


# -- FreqDetect (SIDBench freq_processing / dct2_wrapper, models/FreqDetect.py) ---------------------------------
def freqdetect_files(root, sd):
    """DCTAnalysis.pth ({'netC': ...} with module. keys) and the statistics saved with torch.save, as [3, 224, 224]."""
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(3, 224, 224, generator=g, dtype=torch.float64)
    var = 1 + torch.rand(3, 224, 224, generator=g, dtype=torch.float64)
    torch.save({"netC": {f"module.{k}": v for k, v in sd.items()}}, root / "DCTAnalysis.pth")
    torch.save(mean, root / "dct_mean.zip")
    torch.save(var, root / "dct_var.zip")
    return root / "DCTAnalysis.pth", mean, var


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: row k is sqrt(2/n) cos(pi (i + 1/2) k / n), row 0 scaled by 1/sqrt(2)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (i + 0.5) * k / n)
    m[0] /= np.sqrt(2.0)
    return m


def dct2(a: np.ndarray) -> np.ndarray:
    """dct2_wrapper's ``fftpack.dct(fftpack.dct(a, type=2, norm='ortho', axis=0), ..., axis=1)`` of an [H, W, C]
    array, as two matrix products in float64 (independent of the scipy call sidbench makes)."""
    return np.einsum("ki,ijc,lj->klc", dct_matrix(a.shape[0]), a.astype(np.float64), dct_matrix(a.shape[1]))


def test_freqdetect_gives_the_official_logits(tmp_path, plugins, resnet50_state):
    sd = resnet50_state
    path, mean, var = freqdetect_files(tmp_path, sd)
    m, v = mean.permute(1, 2, 0).numpy(), var.permute(1, 2, 0).numpy()
    imgs = images(3, ((40, 52), (230, 251)))
    want = []
    for im in imgs:
        a = np.array(T.CenterCrop(224)(im))
        a = (np.log(np.abs(dct2(a)) + 1e-12) - m) / np.sqrt(v)
        want.append(cnndetection_reference(sd, torch.from_numpy(a).permute(2, 0, 1).float()[None]))
    got = sidbench_logits("freqdetect", path, imgs, plugins, dct_mean=str(tmp_path / "dct_mean.zip"),
                          dct_var=str(tmp_path / "dct_var.zip"))
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-4, atol=1e-4)
    with pytest.raises(WeightsError, match="dct_mean=PATH"):
        sidbench_logits("freqdetect", path, imgs[:1], plugins)


def test_freqdetect_protocols_follow_both_suites(plugins):
    """dct_center_crop: SIDBench freq_processing (loadSize None); dct_resize_center_crop: AIGCDetectBenchmark
    processing_DCT (Resize(256) on the shorter side, CenterCrop(224)); both before the standardisation."""
    from sidbench.data.preprocess import make_preprocess
    from sidbench.registry import load_detector

    info = load_detector("freqdetect", plugins=plugins).pixel_input
    img = images(8, ((300, 260),))[0]
    for protocol, view in (("dct_center_crop", T.CenterCrop(224)),
                           ("dct_resize_center_crop", T.Compose([T.Resize(256), T.CenterCrop(224)]))):
        a = np.array(view(img))
        a = np.log(np.abs(dct2(a)) + 1e-12)
        got = make_preprocess(protocol, info)(ImageInput(img, None, "x.png"))
        torch.testing.assert_close(got, torch.from_numpy(a).permute(2, 0, 1).float())


# -- LGrad (gen_imggrad.py, models/stylegan_discriminator.py, eval_test8gan.py) ---------------------------------
def stylegan_d_state(seed: int, res=256, fmaps_base=512, fmaps_max=16) -> dict[str, torch.Tensor]:
    """A genforce StyleGANDiscriminator state dict (narrow: fmaps_base 512, fmaps_max 16)."""
    g = torch.Generator().manual_seed(seed)
    nf = lambda r: min(fmaps_base // r, fmaps_max)  # noqa: E731
    sd = {"lod": torch.zeros(())}
    final = int(math.log2(res))
    k = np.array([1.0, 2.0, 1.0], dtype=np.float32).reshape(1, -1)
    k = k.T.dot(k) / 16.0
    for rl in range(final, 1, -1):
        r, i = 2 ** rl, final - rl
        sd[f"input{i}.weight"] = torch.randn(nf(r), 3, 1, 1, generator=g)
        sd[f"input{i}.bias"] = 0.1 * torch.randn(nf(r), generator=g)
        if r != 4:
            sd[f"layer{2 * i}.weight"] = torch.randn(nf(r), nf(r), 3, 3, generator=g)
            sd[f"layer{2 * i}.bias"] = 0.1 * torch.randn(nf(r), generator=g)
            sd[f"layer{2 * i + 1}.blur.kernel"] = torch.from_numpy(np.tile(k[None, None], [nf(r), 1, 1, 1]))
            sd[f"layer{2 * i + 1}.weight"] = torch.randn(nf(r // 2), nf(r), 3, 3, generator=g)
            sd[f"layer{2 * i + 1}.bias"] = 0.1 * torch.randn(nf(r // 2), generator=g)
        else:
            sd[f"layer{2 * i}.weight"] = torch.randn(nf(r), nf(r) + 1, 3, 3, generator=g)
            sd[f"layer{2 * i}.bias"] = 0.1 * torch.randn(nf(r), generator=g)
            sd[f"layer{2 * i + 1}.weight"] = torch.randn(nf(r // 2), nf(r) * r * r, generator=g)
            sd[f"layer{2 * i + 1}.bias"] = 0.1 * torch.randn(nf(r // 2), generator=g)
            sd[f"layer{2 * i + 2}.weight"] = torch.randn(1, nf(r // 2), generator=g)
            sd[f"layer{2 * i + 2}.bias"] = 0.1 * torch.randn(1, generator=g)
    return sd


def stylegan_d(sd, image):
    """StyleGANDiscriminator.forward at lod 0 (fused_scale 'auto', minibatch-std group 4, use_wscale)."""
    final = int(math.log2(image.shape[-1]))

    def block(pre, x, mbstd=False, down=False, fused=False):
        if mbstd:
            ng = min(4, x.shape[0])
            y = x.view(ng, -1, 1, x.shape[1], x.shape[2], x.shape[3])
            y = y - torch.mean(y, dim=0, keepdim=True)
            y = torch.sqrt(torch.mean(y ** 2, dim=0) + 1e-8)
            y = torch.mean(torch.mean(y, dim=[2, 3, 4], keepdim=True), dim=2)
            x = torch.cat([x, y.repeat(ng, 1, x.shape[2], x.shape[3])], dim=1)
        if down:
            x = F.conv2d(x, sd[f"{pre}.blur.kernel"], stride=1, padding=1, groups=x.shape[1])
        w = sd[f"{pre}.weight"]
        w = w * (np.sqrt(2.0) / np.sqrt(w.shape[1] * w.shape[2] * w.shape[3]))
        if fused:
            w = F.pad(w, (1, 1, 1, 1, 0, 0, 0, 0), "constant", 0.0)
            w = (w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]) * 0.25
            x = F.conv2d(x, w, sd[f"{pre}.bias"], stride=2, padding=1)
        else:
            x = F.conv2d(x, w, sd[f"{pre}.bias"], stride=1, padding=1 if w.shape[-1] == 3 else 0)
            if down:
                x = F.avg_pool2d(x, 2, 2, 0)
        return F.leaky_relu(x, 0.2)

    def dense(pre, x, gain=np.sqrt(2.0), act=True):
        w = sd[f"{pre}.weight"]
        x = F.linear(x.view(x.shape[0], -1), w * (gain / np.sqrt(w.shape[1])), sd[f"{pre}.bias"])
        return F.leaky_relu(x, 0.2) if act else x

    x = block("input0", image)
    for rl in range(final, 1, -1):
        i = final - rl
        if 2 ** rl != 4:
            x = block(f"layer{2 * i + 1}", block(f"layer{2 * i}", x), down=True, fused=2 ** rl >= 128)
        else:
            x = dense(f"layer{2 * i + 1}", block(f"layer{2 * i}", x, mbstd=True))
    return dense(f"layer{2 * (final - 2) + 2}", x, gain=1.0, act=False)


def lgrad_reference(d_sd, c_sd, img: Image.Image) -> float:
    x = T.Compose([T.Resize((256, 256)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])(img)[None]
    x.requires_grad = True  # gen_imggrad.py, batch size 1
    grad = torch.autograd.grad(stylegan_d(d_sd, x).sum(), x)[0]
    a = grad[0].permute(1, 2, 0).numpy().copy()
    a -= a.min()
    if a.max() != 0:
        a /= a.max()
    a = a * 255.0
    ok, png = cv2.imencode(".png", a[..., ::-1])  # cv2.imwrite of the float image (converted to 8 bits)
    assert ok
    read = Image.open(io.BytesIO(png.tobytes())).convert("RGB")  # the classifier's ImageFolder
    y = T.Compose([T.ToTensor(), T.Normalize(*IMAGENET)])(read)[None]  # no resize, no crop
    return float(cnndetection_reference(c_sd, y)[0])


def test_lgrad_gives_the_official_logits(tmp_path, plugins, resnet50_state):
    d_sd, c_sd = stylegan_d_state(4), resnet50_state
    torch.save(d_sd, tmp_path / "karras2019stylegan-bedrooms-256x256_discriminator.pth")
    torch.save(c_sd, tmp_path / "LGrad-4class.pth")  # eval_test8gan.py loads a bare state dict
    imgs = images(4, ((40, 52), (33, 29)))
    want = torch.tensor([lgrad_reference(d_sd, c_sd, im) for im in imgs])
    got = sidbench_logits("lgrad", tmp_path / "LGrad-4class.pth", imgs, plugins, batched=True,
                          discriminator=str(tmp_path / "karras2019stylegan-bedrooms-256x256_discriminator.pth"))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(WeightsError, match=r"lgrad\[discriminator=PATH\]"):
        sidbench_logits("lgrad", tmp_path / "LGrad-4class.pth", imgs, plugins)


# -- LNP (AIGCDetectBenchmark processing_LNP / networks/denoising_rgb.py; test_sidd_rgb.py) ----------------------
def denoiser_state(seed: int) -> dict[str, torch.Tensor]:
    """DenoiseNet's state dict: the one PReLU appears under every name it is used by, with the same values."""
    g = torch.Generator().manual_seed(seed)
    prelu = 0.25 + 0.05 * torch.randn(64, generator=g)

    def conv(cout, cin, k, scale=1.0):
        return {"weight": torch.randn(cout, cin, k, k, generator=g) * scale * (2.0 / (cin * k * k)) ** 0.5,
                "bias": 0.02 * torch.randn(cout, generator=g)}

    sd = {}

    def put(pre, d):
        sd.update({f"{pre}.{k}": v for k, v in d.items()})

    put("head.0", conv(64, 3, 3))
    for r in range(4):
        for b in range(8):
            pre = f"body.{r}.body.{b}"
            put(f"{pre}.body.0", conv(64, 64, 3))
            sd[f"{pre}.body.1.weight"] = prelu
            put(f"{pre}.body.2", conv(64, 64, 3, 0.3))
            sd[f"{pre}.SA.spatial.conv.weight"] = torch.randn(1, 2, 3, 3, generator=g) * 0.3
            put(f"{pre}.CA.conv_du.0", conv(4, 64, 1))
            put(f"{pre}.CA.conv_du.2", conv(64, 4, 1))
            put(f"{pre}.conv1x1", conv(64, 128, 1, 0.3))
        put(f"body.{r}.body.8", conv(64, 64, 3, 0.3))
    put("body.4", conv(64, 64, 3))
    sd["body.5.weight"] = prelu
    put("tail.0", conv(3, 64, 3, 0.5))
    return sd


def denoise(sd, x):
    def c(pre, y, pad=1):
        return F.conv2d(y, sd[f"{pre}.weight"], sd[f"{pre}.bias"], padding=pad)

    y = c("head.0", x)
    for r in range(4):
        res = y
        for b in range(8):
            pre = f"body.{r}.body.{b}"
            t = c(f"{pre}.body.2", F.prelu(c(f"{pre}.body.0", res), sd[f"{pre}.body.1.weight"]))
            sa = t * torch.sigmoid(F.conv2d(torch.cat((torch.max(t, 1)[0].unsqueeze(1), torch.mean(t, 1).unsqueeze(1)), 1),
                                            sd[f"{pre}.SA.spatial.conv.weight"], padding=1))
            z = F.adaptive_avg_pool2d(t, 1)
            ca = t * torch.sigmoid(c(f"{pre}.CA.conv_du.2", F.relu(c(f"{pre}.CA.conv_du.0", z, 0)), 0))
            res = c(f"{pre}.conv1x1", torch.cat([sa, ca], 1), 0) + res
        y = c(f"body.{r}.body.8", res) + y
    y = F.prelu(c("body.4", y), sd["body.5.weight"])
    return -c("tail.0", y)


def lnp_reference(d_sd, c_sd, img: Image.Image, resize_crop: bool = False) -> float:
    a = torch.from_numpy(np.float32(np.array(img).astype(np.float32) / 255.0)).permute(2, 0, 1)[None]
    r = torch.clamp(denoise(d_sd, a), 0, 1).permute(0, 2, 3, 1).numpy()[0]
    u8 = np.clip(np.rint(np.multiply(r, 255, dtype=np.float32)), 0, 255).astype(np.uint8)  # skimage img_as_ubyte
    ok, png = cv2.imencode(".png", u8 * 255)  # uint8 arithmetic: wraps
    assert ok
    read = Image.open(io.BytesIO(png.tobytes())).convert("RGB")
    if resize_crop:  # eval_all.py without --no_resize / --no_crop: custom_resize(loadSize 256), CenterCrop(224)
        read = T.CenterCrop(224)(T.functional.resize(read, 256, interpolation=T.InterpolationMode.BILINEAR))
    y = T.Compose([T.ToTensor(), T.Normalize(*IMAGENET)])(read)[None]  # --no_resize --no_crop
    return float(cnndetection_reference(c_sd, y)[0])


def test_lnp_gives_the_official_logits(tmp_path, plugins, resnet50_state):
    d_sd, c_sd = denoiser_state(5), resnet50_state
    torch.save({"state_dict": {f"module.{k}": v for k, v in d_sd.items()}, "epoch": 80}, tmp_path / "sidd_rgb.pth")
    torch.save({"model": c_sd}, tmp_path / "LNP.pth")
    imgs = images(5, ((24, 30), (17, 23)))
    with torch.no_grad():
        want = torch.tensor([lnp_reference(d_sd, c_sd, im) for im in imgs])
    got = sidbench_logits("lnp", tmp_path / "LNP.pth", imgs, plugins, denoiser=str(tmp_path / "sidd_rgb.pth"))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        want = torch.tensor([lnp_reference(d_sd, c_sd, imgs[1], resize_crop=True)])
    got = sidbench_logits("lnp", tmp_path / "LNP.pth", imgs[1:], plugins, denoiser=str(tmp_path / "sidd_rgb.pth"),
                          classifier_view="resize_crop")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(WeightsError, match=r"lnp\[denoiser=PATH\]"):
        sidbench_logits("lnp", tmp_path / "LNP.pth", imgs, plugins)


# -- the five with NPR in one run -----------------------------------------------------------------------------
def test_the_five_and_npr_in_one_run_give_one_leaderboard(tmp_path, resnet50_state):
    from sidbench.cli import main

    w = tmp_path / "w"
    w.mkdir()
    torch.save({"netC": random_state(gram_shapes(), 11)}, w / "Gram.pth")
    torch.save({"netC": random_state(rptc_shapes(), 12)}, w / "RPTC.pth")
    freq, _, _ = freqdetect_files(w, resnet50_state)
    torch.save(stylegan_d_state(13), w / "D.pth")
    torch.save(resnet50_state, w / "LGrad.pth")
    torch.save({"state_dict": denoiser_state(14)}, w / "sidd_rgb.pth")
    torch.save({"model": resnet50_state}, w / "LNP.pth")
    npr = random_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 15)
    torch.save({"model": {f"module.{k}": v for k, v in npr.items()}}, w / "NPR.pth")
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(24, 28), seed=16)
    dets = (f"gramnet@{w / 'Gram.pth'},patchcraft@{w / 'RPTC.pth'},"
            f"freqdetect[dct_mean={w / 'dct_mean.zip'},dct_var={w / 'dct_var.zip'}]@{freq},"
            f"lgrad[discriminator={w / 'D.pth'}]@{w / 'LGrad.pth'},lnp[denoiser={w / 'sidd_rgb.pth'}]@{w / 'LNP.pth'},"
            f"npr@{w / 'NPR.pth'}")
    out = tmp_path / "out"
    assert main(["run", "--data", str(data), "--detectors", dets, "--out", str(out), "--batch-size", "2",
                 "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    family = scores.detector.str.replace(r"\[.*\]$", "", regex=True)  # labels carry the auxiliary files' options
    assert scores.groupby(family).path.nunique().to_dict() == dict.fromkeys(
        ("freqdetect.progan", "gramnet.progan", "lgrad.progan4", "lnp.aigcbench", "npr.progan4", "patchcraft.progan"), 2)
    assert np.isfinite(scores.logit).all()
    board = (out / "leaderboard.md").read_text()
    assert all(name in board for name in ("gramnet", "patchcraft", "freqdetect", "lgrad", "lnp", "npr"))
    protocols = dict(zip(family, scores.protocol))
    assert protocols["patchcraft.progan"] == "rich_poor_mosaics" and protocols["lgrad.progan4"] == "resize_square"
    assert (scores[family == "lgrad.progan4"].logit.abs() > 0).all()


def test_lgrad_trains_with_its_recipe_and_bundles_the_discriminator(tmp_path, capsys):
    from sidbench.api.checkpoints import load_tensors
    from sidbench.cli import main
    from sidbench.registry import load_detector

    torch.save(stylegan_d_state(21), tmp_path / "D.pth")
    root = make_folder(tmp_path / "progan", splits=("horse", "sheep"), n=1, size=(40, 40), seed=22)
    out = tmp_path / "lgrad.safetensors"
    args = ["train", "lgrad.progan1", "--data", str(root), "--out", str(out), "--no-progress", "--no-cache",
            "--set", f"discriminator={tmp_path / 'D.pth'}", "--set", "pretrained=false", "--set", "epochs=2",
            "--set", "decay_every=1", "--set", "batch_size=2", "--set", "crop_size=128"]
    assert main(args) == 0
    log = capsys.readouterr().err
    assert "train: classes horse (2 of 4 images)" in log
    lrs = re.findall(r"epoch \d: loss [\d.]+, lr ([\d.e-]+)(?: \(next ([\d.e-]+)\))?", log)
    assert [float(a) for a, _ in lrs] == pytest.approx([5e-4, 5e-4])  # the rate each epoch ran at
    assert lrs[1][1] and float(lrs[1][1]) == pytest.approx(5e-4 * 0.8)  # x0.8 at the end of 0-based epoch 1
    tensors, meta = load_tensors(out)
    assert meta["detector"] == "lgrad.progan1" and torch.equal(tensors["net.discriminator.input0.weight"],
                                                                stylegan_d_state(21)["input0.weight"])
    det = load_detector("lgrad.progan1", weights=str(out))  # the discriminator comes back from the file
    img = images(23, ((30, 30),))
    x = T.Compose([T.Resize((256, 256)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])(img[0])[None]
    with torch.inference_mode():
        assert torch.isfinite(det.score({"pixels": x})).all()


def test_auxiliary_files_with_pickled_objects_are_refused_with_a_conversion_command(tmp_path, plugins):
    import argparse

    from sidbench.registry import load_detector

    d = stylegan_d_state(31)
    torch.save({"state_dict": d, "args": argparse.Namespace(lr=1)}, tmp_path / "D.pth")
    with pytest.raises(WeightsError, match="convert it once to plain tensors") as err:
        load_detector("lgrad", discriminator=str(tmp_path / "D.pth"), plugins=plugins)
    assert "\n" not in str(err.value)
    torch.save(np.zeros((3, 224, 224)), tmp_path / "dct_mean.pth")
    det = load_detector("freqdetect", dct_mean=str(tmp_path / "dct_mean.pth"), dct_var=str(tmp_path / "dct_mean.pth"),
                        plugins=plugins)
    with pytest.raises(WeightsError, match="convert it once"):  # a numpy array pickled by torch.save
        det.convert_checkpoint({"conv1.weight": torch.zeros(1)})


def test_a_detector_without_a_training_recipe_needs_its_checkpoint(tmp_path, capsys):
    from sidbench.cli import main

    data = make_folder(tmp_path / "d", splits=("a",), n=1, size=(40, 40))
    assert main(["run", "--data", str(data), "--detectors", "patchcraft", "--out", str(tmp_path / "o"),
                 "--no-progress"]) != 0
    err = capsys.readouterr().err.strip()
    assert "patchcraft@RPTC.pth or patchcraft@official" in err and len(err.splitlines()) == 1
