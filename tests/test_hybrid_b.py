"""SPAI against its official architecture and test script.

The test writes a checkpoint in the official format (``{'model': PatchBasedMFViT.state_dict(), 'epoch': ...}``
with seeded random weights under the official key names, the unused MFM parts included), loads it through
sidbench and compares the logits with a forward written here from ``spai/models/sid.py``,
``vision_transformer.py`` and ``filters.py`` (plain ``torch.nn.functional`` on the state dict) after the
official test view (PIL decode, albumentations' centred reflect-101 ``PadIfNeeded(224)``, pixels / 255), on
images smaller than one patch, non-square, and of four whole patches or more. Tiny widths and depths by default
(the 224-pixel patches and the 16-pixel ViT patches stay); the full size is slow.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import five_crop

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "proj_dim": 16, "attn_embed_dim": 24, "attn_heads": 2}
TINY_NAME = "[" + ",".join(f"{k}={v}" for k, v in TINY.items()) + "]"
FULL = {"embed_dim": 768, "depth": 12, "num_heads": 12, "proj_dim": 1024, "attn_embed_dim": 1536, "attn_heads": 12}
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


# -- the official key names and shapes -------------------------------------------------------------------------
def _ln(p: str, d: int) -> dict[str, tuple]:
    return {f"{p}.weight": (d,), f"{p}.bias": (d,)}


def _block(p: str, d: int) -> dict[str, tuple]:
    out = {**_ln(f"{p}.norm1", d), **_ln(f"{p}.norm2", d), f"{p}.attn.qkv.weight": (3 * d, d),
           f"{p}.attn.q_bias": (d,), f"{p}.attn.v_bias": (d,), f"{p}.attn.proj.weight": (d, d),
           f"{p}.attn.proj.bias": (d,), f"{p}.mlp.fc1.weight": (4 * d, d), f"{p}.mlp.fc1.bias": (4 * d,),
           f"{p}.mlp.fc2.weight": (d, 4 * d), f"{p}.mlp.fc2.bias": (d,)}
    return out


def _projector(p: str, i: int, o: int, input_norm: bool) -> dict[str, tuple]:
    out = {f"{p}.projector.1.weight": (o, i), f"{p}.projector.1.bias": (o,), f"{p}.projector.4.weight": (o, o),
           f"{p}.projector.4.bias": (o,), **_ln(f"{p}.norm2", o)}
    return {**(_ln(f"{p}.norm1", i) if input_norm else {}), **out}


def spai_shapes(embed_dim=768, depth=12, num_heads=12, proj_dim=1024, attn_embed_dim=1536, attn_heads=12):
    """Every tensor of ``PatchBasedMFViT(configs/spai.yaml).state_dict()``."""
    d, n, tokens, dim = embed_dim, depth, 197, 6 * depth + proj_dim
    v = "mfvit.vit."
    out = {f"{v}cls_token": (1, 1, d), f"{v}pos_embed": (1, tokens, d), f"{v}patch_embed.proj.weight": (d, 3, 16, 16),
           f"{v}patch_embed.proj.bias": (d,), **_ln(f"{v}fc_norm", d), f"{v}cls_pos_embed": (1, tokens, d),
           f"{v}actual_cls_token": (1, 1, d), **_block(f"{v}cls_blocks.0", d), f"{v}head.weight": (2, d * n),
           f"{v}head.bias": (2,)}
    for i in range(n):
        out.update(_block(f"{v}blocks.{i}", d))
        out.update(_ln(f"{v}intermediate_fc_norm.{i}", d))
        out.update(_projector(f"mfvit.features_processor.patch_projector.projectors.{i}", d, proj_dim, True))
    f = "mfvit.features_processor.original_features_processor."
    out.update({f"{f}alpha": (1, n, proj_dim), **_projector(f"{f}proj1", 2 * proj_dim, proj_dim, False),
                **_projector(f"{f}proj2", proj_dim, proj_dim, False)})
    out.update({"to_kv.weight": (2 * attn_embed_dim, dim),
                "patch_aggregator": (attn_heads, 1, attn_embed_dim // attn_heads),
                "to_out.0.weight": (dim, attn_embed_dim), **_ln("norm", dim),
                "cls_head.head.0.weight": (3 * dim, dim), "cls_head.head.0.bias": (3 * dim,),
                "cls_head.head.3.weight": (3 * dim, 3 * dim), "cls_head.head.3.bias": (3 * dim,),
                "cls_head.head.6.weight": (1, 3 * dim), "cls_head.head.6.bias": (1,)})
    return out


def official_mask(size: int = 224, radius: int = 16) -> torch.Tensor:
    """filters.generate_circular_mask: int64 ones inside the radius (saved as an nn.Parameter)."""
    vals = torch.arange(0, size // 2, dtype=torch.float)
    vals = torch.cat([vals.flip(dims=(0,)), vals])
    x = vals.unsqueeze(0).expand(size, -1)
    coords = torch.stack([x, x.t()], dim=2)
    return torch.where(torch.linalg.vector_norm(coords, dim=-1) < radius, 1, 0)


def random_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        if k.endswith(".weight") and len(shape) == 1:
            out[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2 and not k.endswith(("_token", "pos_embed", "alpha", "aggregator")):
            out[k] = torch.randn(shape, generator=g) / math.sqrt(int(np.prod(shape[1:])))
        else:
            out[k] = 0.3 * torch.randn(shape, generator=g)
    out["mfvit.frequencies_mask"] = official_mask()
    return out


def write_spai(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    """The shape of utils.save_checkpoint's dump (its pickled yacs config left out: sidbench refuses pickles)."""
    torch.save({"model": sd, "max_accuracy": 0.9, "epoch": 7}, path)
    return path


# -- the official forward, written from sid.py / vision_transformer.py / filters.py ---------------------------
def ref_vit(sd, x, depth, heads):
    p = "mfvit.vit."
    x = F.conv2d(x, sd[p + "patch_embed.proj.weight"], sd[p + "patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[p + "cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + sd[p + "pos_embed"]
    feats = []
    for i in range(depth):
        b = f"{p}blocks.{i}."
        B, N, C = x.shape
        h = F.layer_norm(x, (C,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
        bias = torch.cat([sd[b + "attn.q_bias"], torch.zeros_like(sd[b + "attn.v_bias"]), sd[b + "attn.v_bias"]])
        qkv = F.linear(h, sd[b + "attn.qkv.weight"], bias).reshape(B, N, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (C // heads) ** -0.5, qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(B, N, C), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        h = F.layer_norm(x, (C,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
        h = F.linear(F.gelu(F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])), sd[b + "mlp.fc2.weight"],
                     sd[b + "mlp.fc2.bias"])
        x = x + h
        feats.append(x[:, 1:])
    return torch.stack(feats, dim=1)


def ref_projector(sd, p, x, last_gelu=True, input_norm=True):
    if input_norm:
        x = F.layer_norm(x, (x.shape[-1],), sd[p + "norm1.weight"], sd[p + "norm1.bias"])
    x = F.gelu(F.linear(x, sd[p + "projector.1.weight"], sd[p + "projector.1.bias"]))
    x = F.linear(x, sd[p + "projector.4.weight"], sd[p + "projector.4.bias"])
    x = F.gelu(x) if last_gelu else x
    return F.layer_norm(x, (x.shape[-1],), sd[p + "norm2.weight"], sd[p + "norm2.bias"])


def ref_mfvit(sd, x, depth, heads):
    """MFViT.forward: frequency split, ImageNet normalisation, three ViT passes, the FRE."""
    spec = torch.fft.fftshift(torch.fft.fft2(x.float()))
    mask = sd["mfvit.frequencies_mask"]
    low = torch.fft.ifft2(torch.fft.ifftshift(spec * mask)).real.clamp(0, 1)
    high = torch.fft.ifft2(torch.fft.ifftshift(spec * (1 - mask))).real.clamp(0, 1)
    mean, std = (torch.tensor(t).view(1, 3, 1, 1) for t in IMAGENET)
    f = [ref_vit(sd, (t - mean) / std, depth, heads) for t in (x, low, high)]
    pp = "mfvit.features_processor.patch_projector.projectors."
    o, lo, hi = (torch.stack([ref_projector(sd, f"{pp}{i}.", t[:, i], last_gelu=False) for i in range(depth)], 1)
                 for t in f)
    sims = [F.cosine_similarity(a, b, dim=-1) for a, b in ((o, lo), (o, hi), (lo, hi))]
    stats = [s for sim in sims for s in (sim.mean(-1), sim.std(-1))]
    fp = "mfvit.features_processor.original_features_processor."
    g = ref_projector(sd, fp + "proj1.", torch.cat([o.mean(2), o.std(2)], -1), input_norm=False)
    g = ref_projector(sd, fp + "proj2.", (torch.softmax(sd[fp + "alpha"], 1) * g).sum(1), input_norm=False)
    return torch.cat(stats + [g], dim=1)


def official_view(img: Image.Image) -> torch.Tensor:
    """PadIfNeeded(224, 224) (centred, reflect-101 = numpy's 'reflect'), Normalize(0, 1) = / 255, ToTensorV2."""
    a = np.asarray(img.convert("RGB"))
    h, w = a.shape[:2]
    ph, pw = max(224 - h, 0), max(224 - w, 0)
    a = np.pad(a, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="reflect")
    return torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1)[None]


def spai_reference(sd, img: Image.Image, depth: int, heads: int, attn_heads: int) -> float:
    """PatchBasedMFViT.forward_arbitrary_resolution_batch on the official view of one image."""
    x = official_view(img)
    patches = x.unfold(2, 224, 224).unfold(3, 224, 224).permute(0, 2, 3, 1, 4, 5).contiguous()
    patches = patches.view(1, -1, 3, 224, 224)
    if patches.shape[1] < 4:
        patches = torch.stack(five_crop(x, [224, 224]), dim=1)
    feats = ref_mfvit(sd, patches[0], depth, heads)[None]  # 1 x L x dim
    kv = F.linear(feats, sd["to_kv.weight"]).chunk(2, dim=-1)
    k, v = (t.reshape(1, t.shape[1], attn_heads, -1).transpose(1, 2) for t in kv)
    agg = sd["patch_aggregator"][None]
    attn = (agg @ k.transpose(-1, -2) * agg.shape[-1] ** -0.5).softmax(-1)
    z = F.linear((attn @ v).transpose(1, 2).reshape(1, 1, -1), sd["to_out.0.weight"])[:, 0]
    z = F.layer_norm(z, (z.shape[-1],), sd["norm.weight"], sd["norm.bias"])
    z = F.relu(F.linear(z, sd["cls_head.head.0.weight"], sd["cls_head.head.0.bias"]))
    z = F.relu(F.linear(z, sd["cls_head.head.3.weight"], sd["cls_head.head.3.bias"]))
    return float(F.linear(z, sd["cls_head.head.6.weight"], sd["cls_head.head.6.bias"]))


class Config(dict):
    """Stands in for the yacs CfgNode that the official save_checkpoint pickles into the dump."""


# -- helpers ---------------------------------------------------------------------------------------------------
def image(seed: int, w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(0, 256, (h // 7 + 1, w // 7 + 1, 3)), np.ones((7, 7, 1)))[:h, :w]
    return Image.fromarray(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))


def detector_logit(det, img: Image.Image) -> float:
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess

    pre = make_preprocess(det.preprocess, det.pixel_input)
    x = pre(ImageInput(img, None, "x.png") if getattr(pre, "wants_input", False) else img)
    with torch.no_grad():
        return float(det.score({"pixels": x[None] if x.dim() == 3 else x}).mean())


def load(path: Path, plugins, options=TINY):
    from sidbench.registry import load_detector

    return load_detector("spai", weights=str(path), plugins=plugins, **options)


# (width, height): under one patch, non-square under four patches (five crops), odd with a 2x2 patch grid
SPAI_SIZES = ((120, 90), (500, 301), (470, 453))


# -- the tests -------------------------------------------------------------------------------------------------
def test_spai_official_file_gives_the_official_logits(tmp_path, plugins):
    sd = random_state(spai_shapes(**TINY), seed=1)
    det = load(write_spai(tmp_path / "spai.pth", sd), plugins)
    for w, h in SPAI_SIZES:
        img = image(w, w, h)
        assert detector_logit(det, img) == pytest.approx(spai_reference(sd, img, 2, 2, 2), abs=1e-4), (w, h)


def test_spai_patch_batch_bounds_memory_without_changing_logits(tmp_path, plugins):
    """Four patches of each of two images through the ViT one at a time, three at a time or all at once give the
    same logits; two images of one size batch together and keep their own patch attention."""
    from sidbench.api import ImageInput
    from sidbench.data.preprocess import make_preprocess

    det = load(write_spai(tmp_path / "spai.pth", random_state(spai_shapes(**TINY), seed=2)), plugins,
               {**TINY, "patch_batch": 1})
    pre = make_preprocess(det.preprocess, det.pixel_input)
    x = torch.stack([pre(ImageInput(image(s, 470, 453), None, "x.png")) for s in (3, 4)])
    got = []
    for step in (1, 3, 400):
        det.net.patch_batch = step
        with torch.no_grad():
            got.append(det.score({"pixels": x}))
    torch.testing.assert_close(got[0], got[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[0], got[2], rtol=1e-5, atol=1e-5)
    assert got[0].shape == (2,) and float((got[0][0] - got[0][1]).abs()) > 1e-6


def test_spai_view_pads_like_albumentations_and_refuses_small_inputs(tmp_path, plugins):
    from sidbench.api import ImageInput, SidbenchError
    from sidbench.data.preprocess import make_preprocess

    det = load(write_spai(tmp_path / "spai.pth", random_state(spai_shapes(**TINY), 3)), plugins)
    pre = make_preprocess(det.preprocess, det.pixel_input)
    for w, h in ((50, 30), (230, 100), (300, 260)):
        img = image(1, w, h)
        torch.testing.assert_close(pre(ImageInput(img, None, "x.png"))[None], official_view(img))
    with pytest.raises(SidbenchError, match="224"):
        det.score({"pixels": torch.zeros(1, 3, 100, 300)})


def test_spai_card(plugins):
    spec = plugins.detector("spai")
    assert spec.preprocess == "spai_native" and "Apache" in spec.license
    assert spec.official_weights.filename == "spai.pth" and "drive.google.com" in spec.official_weights.url
    assert spec.paper and spec.published and spec.notes and spec.repository.endswith("mever-team/spai")


def test_spai_refuses_the_released_dump_with_its_pickled_config_and_says_how_to_convert(tmp_path, plugins):
    from sidbench.api import WeightsError

    path = tmp_path / "spai.pth"
    torch.save({"model": random_state(spai_shapes(**TINY), 4), "config": Config(a=1)}, path)
    with pytest.raises(WeightsError, match="convert"):
        load(path, plugins)


@pytest.mark.slow
def test_spai_full_size_official_architecture(tmp_path, plugins):
    sd = random_state(spai_shapes(**FULL), seed=9)
    det = load(write_spai(tmp_path / "spai.pth", sd), plugins, options={})
    img = image(9, 500, 301)
    assert detector_logit(det, img) == pytest.approx(spai_reference(sd, img, 12, 12, 12), abs=1e-4)


# ===============================================================================================================
# FatFormer against models/clip_models.py, models/clip/model.py and the test transform of utils/dataset.py
# ===============================================================================================================
FF_TINY = {"vision_width": 32, "vision_layers": 2, "vision_heads": 2, "text_width": 16, "text_layers": 1,
           "text_heads": 2, "vocab_size": 64, "num_vit_adapter": 1, "num_context": 8, "adapter_heads": 2,
           "dwt_groups": 4, "lga_heads": 2}
FF_TINY_NAME = "[" + ",".join(f"{k}={v}" for k, v in FF_TINY.items()) + "]"
FF_FULL = {"vision_width": 1024, "vision_layers": 24, "vision_heads": 16, "text_width": 768, "text_layers": 12,
           "text_heads": 12, "vocab_size": 49408, "num_vit_adapter": 3, "num_context": 8, "adapter_heads": 8,
           "dwt_groups": 128, "lga_heads": 12}
HAAR_BUFFERS = {"dwt_transform": ("h0_col", "h1_col", "h0_row", "h1_row"),
                "idwt_transform": ("g0_col", "g1_col", "g0_row", "g1_row")}


def _mha(p: str, d: int) -> dict[str, tuple]:
    return {f"{p}.in_proj_weight": (3 * d, d), f"{p}.in_proj_bias": (3 * d,), f"{p}.out_proj.weight": (d, d),
            f"{p}.out_proj.bias": (d,)}


def _lin(p: str, o: int, i: int) -> dict[str, tuple]:
    return {f"{p}.weight": (o, i), f"{p}.bias": (o,)}


def _resblock(p: str, d: int) -> dict[str, tuple]:
    return {**_mha(f"{p}.attn", d), **_ln(f"{p}.ln_1", d), **_lin(f"{p}.mlp.c_fc", 4 * d, d),
            **_lin(f"{p}.mlp.c_proj", d, 4 * d), **_ln(f"{p}.ln_2", d)}


def _adapter(p: str, d: int, bottleneck: int = 64) -> dict[str, tuple]:
    out = {f"{p}.freq_scale": (1,), f"{p}.first_conv_layer.weight": (bottleneck, d, 1),
           f"{p}.first_conv_layer.bias": (bottleneck,), f"{p}.second_conv_layer.weight": (d, bottleneck, 1),
           f"{p}.second_conv_layer.bias": (d,), **_ln(f"{p}.dwt_norm", d), **_mha(f"{p}.intra_band", d),
           **_ln(f"{p}.norm_intra", d), **_mha(f"{p}.inter_band", d), **_ln(f"{p}.norm_inter", d),
           **_lin(f"{p}.linear1", 4 * d, d), **_lin(f"{p}.linear2", d, 4 * d), **_ln(f"{p}.norm3", d)}
    for module, names in HAAR_BUFFERS.items():
        out.update({f"{p}.{module}.{n}": (1, 1, 2, 1) if n.endswith("col") else (1, 1, 1, 2) for n in names})
    return out


def _interactor(p: str, attn: str, d: int) -> dict[str, tuple]:
    return {**_mha(f"{p}{attn}", d), **_ln(f"{p}norm1", d), **_lin(f"{p}linear1", 4 * d, d),
            **_lin(f"{p}linear2", d, 4 * d), **_ln(f"{p}norm2", d)}


def fatformer_shapes(vision_width=1024, vision_layers=24, text_width=768, text_layers=12, vocab_size=49408,
                     num_vit_adapter=3, num_context=8, **_) -> dict[str, tuple]:
    """Every tensor of ``CLIPModel(num_vit_adapter, num_context_embedding).state_dict()`` (ViT-L/14 at 224),
    the modules CLIPModel registers twice under both of their names."""
    w, d, step = vision_width, text_width, vision_layers // num_vit_adapter
    visual = {"class_embedding": (w,), "positional_embedding": (257, w), "proj": (w, d), "conv1.weight": (w, 3, 14, 14),
              **_ln("ln_pre", w), **_ln("ln_post", w)}
    for i in range(vision_layers):
        visual.update(_resblock(f"transformer.resblocks.{i}", w))
        if (i + 1) % step == 0:
            visual.update(_adapter(f"transformer.resblocks.{i}.forgery_aware_adapter", w))
    text = {}
    for i in range(text_layers):
        text.update(_resblock(f"resblocks.{i}", d))
    out = {f"clip_model.visual.{k}": v for k, v in visual.items()}
    out.update({f"image_encoder.{k}": v for k, v in visual.items()})
    out.update({f"clip_model.transformer.{k}": v for k, v in text.items()})
    out.update({f"text_encoder.transformer.{k}": v for k, v in text.items()})
    for p in ("clip_model.", "text_encoder."):
        out.update({f"{p}positional_embedding": (77, d), f"{p}text_projection": (d, d), **_ln(f"{p}ln_final", d)})
    out.update({"clip_model.token_embedding.weight": (vocab_size, d), "clip_model.logit_scale": (),
                "logit_scale": (), "language_guided_alignment.ctx": (num_context, d),
                "language_guided_alignment.token_prefix": (2, 1, d),
                "language_guided_alignment.token_suffix": (2, 77 - 1 - num_context, d),
                **_interactor("language_guided_alignment.", "patch_basaed_enhancer", d),
                **_interactor("", "text_guided_interactor", d)})
    return out


def fatformer_state(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """Seeded weights; the Haar buffers hold pytorch_wavelets' values; the shared modules' two names hold the same
    tensors (as a saved CLIPModel does)."""
    sd = random_state(shapes, seed)
    del sd["mfvit.frequencies_mask"]
    r = 0.5 ** 0.5
    for k in sd:
        if k.endswith(("h0_col", "h0_row", "g0_col", "g0_row")):
            sd[k] = torch.full(shapes[k], r)
        elif k.endswith(("h1_col", "h1_row", "g1_col", "g1_row")):
            sd[k] = torch.tensor([r, -r]).view(shapes[k])
        elif k.endswith("freq_scale"):
            sd[k] = torch.tensor([0.8])
    sd["clip_model.logit_scale"] = torch.tensor(math.log(1 / 0.07))
    for alias, base in (("image_encoder.", "clip_model.visual."), ("text_encoder.transformer.", "clip_model.transformer."),
                        ("text_encoder.", "clip_model."), ("logit_scale", "clip_model.logit_scale")):
        for k in list(sd):
            if k.startswith(alias) and not (alias == "text_encoder." and k.startswith("text_encoder.transformer.")):
                sd[k] = sd[base + k[len(alias):]].clone()
    return sd


def ref_mha(sd, p, q, k, v, heads, mask=None):
    """nn.MultiheadAttention's forward, sequence-first [L, N, E], written out."""
    w, b = sd[p + "in_proj_weight"], sd[p + "in_proj_bias"]
    e = q.shape[-1]
    q, k, v = (F.linear(t, w[i * e:(i + 1) * e], b[i * e:(i + 1) * e]) for i, t in enumerate((q, k, v)))
    lq, n = q.shape[:2]
    split = lambda t: t.reshape(t.shape[0], n * heads, e // heads).transpose(0, 1)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    att = q @ k.transpose(1, 2) / math.sqrt(e // heads)
    if mask is not None:
        att = att + mask
    out = (att.softmax(-1) @ v).transpose(0, 1).reshape(lq, n, e)
    return F.linear(out, sd[p + "out_proj.weight"], sd[p + "out_proj.bias"])


def ref_ln(sd, p, x):
    return F.layer_norm(x, (x.shape[-1],), sd[p + "weight"], sd[p + "bias"])


def ref_ffn_block(sd, p, x):
    """The ReLU FFN with residual and LayerNorm (``forward_FFN`` / ``forward_ffn``)."""
    return x + F.linear(F.relu(F.linear(x, sd[p + "linear1.weight"], sd[p + "linear1.bias"])), sd[p + "linear2.weight"],
                        sd[p + "linear2.bias"])


def ref_adapter(sd, p, x, heads, groups):
    """ForgeryAwareAdapterLayer.forward with the DWT/IDWT of PyWavelets (= pytorch_wavelets' haar, mode zero)."""
    import pywt

    nq, bs, md = x.shape
    s = int(math.sqrt(nq))
    grid = x[1:].transpose(0, 1).reshape(bs, s, s, md).permute(0, 3, 1, 2).double().numpy()
    ll, (lh, hl, hh) = pywt.dwt2(grid, "haar", mode="zero")
    dwt = torch.from_numpy(np.stack([ll, lh, hl, hh], axis=2)).float()  # bs, md, 4, h, w
    hh_, ww_ = dwt.shape[-2:]
    dwt = F.group_norm(dwt.flatten(-2), groups, sd[p + "dwt_norm.weight"], sd[p + "dwt_norm.bias"]).permute(0, 2, 3, 1)
    B, C, n = dwt.shape[:3]
    q = dwt.transpose(0, 1).flatten(1, 2)
    t = ref_mha(sd, p + "intra_band.", q, q, q, heads).reshape(C, B, n, md).transpose(0, 1)
    dwt = ref_ln(sd, p + "norm_intra.", dwt + t)
    q = dwt.flatten(0, 1).transpose(0, 1)
    t = ref_mha(sd, p + "inter_band.", q, q, q, heads).transpose(0, 1).reshape(B, C, n, md)
    dwt = ref_ln(sd, p + "norm_inter.", dwt + t)
    dwt = ref_ln(sd, p + "norm3.", ref_ffn_block(sd, p, dwt))
    f = dwt.reshape(bs, 4, hh_, ww_, md).permute(0, 4, 1, 2, 3).double().numpy()
    inv = torch.from_numpy(pywt.idwt2((f[:, :, 0], (f[:, :, 1], f[:, :, 2], f[:, :, 3])), "haar", mode="zero")).float()
    freq = torch.cat([torch.zeros_like(x[:1]), inv.flatten(-2).permute(2, 0, 1)], dim=0)
    down = F.relu(F.conv1d(x.permute(1, 2, 0), sd[p + "first_conv_layer.weight"], sd[p + "first_conv_layer.bias"]))
    up = F.conv1d(down, sd[p + "second_conv_layer.weight"], sd[p + "second_conv_layer.bias"]).permute(2, 0, 1)
    return up * 0.1 + freq * sd[p + "freq_scale"]


def ref_resblock(sd, p, x, heads, mask=None, adapter=None):
    h = ref_ln(sd, p + "ln_1.", x)
    x = x + ref_mha(sd, p + "attn.", h, h, h, heads, mask)
    h = F.linear(ref_ln(sd, p + "ln_2.", x), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])
    h = F.linear(h * torch.sigmoid(1.702 * h), sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    return x + h + (adapter(x) if adapter else 0)


def fatformer_reference(sd, img: Image.Image, o: dict) -> float:
    """utils/dataset.py's test transform, then CLIPModel.forward (its per-image loops kept): z[1] - z[0]."""
    from torchvision import transforms

    t = transforms.Compose([transforms.Resize((256, 256)), transforms.CenterCrop(224), transforms.ToTensor(),
                            transforms.Normalize(*IMAGENET)])
    x = t(img.convert("RGB"))[None]
    v = "clip_model.visual."
    x = F.conv2d(x, sd[v + "conv1.weight"], stride=14).reshape(1, o["vision_width"], -1).permute(0, 2, 1)
    x = torch.cat([sd[v + "class_embedding"] + torch.zeros(1, 1, x.shape[-1]), x], dim=1) + sd[v + "positional_embedding"]
    x = ref_ln(sd, v + "ln_pre.", x).permute(1, 0, 2)
    step = o["vision_layers"] // o["num_vit_adapter"]
    for i in range(o["vision_layers"]):
        p = f"{v}transformer.resblocks.{i}."
        ad = (lambda y, p=p: ref_adapter(sd, p + "forgery_aware_adapter.", y, o["adapter_heads"], o["dwt_groups"])) \
            if (i + 1) % step == 0 else None
        x = ref_resblock(sd, p, x, o["vision_heads"], adapter=ad)
    img_f = ref_ln(sd, v + "ln_post.", x.permute(1, 0, 2)) @ sd[v + "proj"]  # 1, 257, D
    # LanguageGuidedAlignment
    lg = "language_guided_alignment."
    tgt = sd[lg + "ctx"][:, None].repeat_interleave(1, dim=1)
    mem = img_f.transpose(0, 1)
    tgt = ref_ln(sd, lg + "norm1.", tgt + ref_mha(sd, lg + "patch_basaed_enhancer.", tgt, mem, mem, o["lga_heads"]))
    tgt = ref_ln(sd, lg + "norm2.", ref_ffn_block(sd, lg, tgt))
    ctx = tgt.transpose(0, 1)[0][None].expand(2, -1, -1)
    prompts = torch.cat([sd[lg + "token_prefix"], ctx, sd[lg + "token_suffix"]], dim=1)
    # CLIP's tokens of "X X ... X real." / "... fake.": <start>, one per X, the class word, ".", then <end>
    # (the highest id, where the text feature is read), written out rather than asked of open_clip's tokenizer
    eot = torch.tensor([o["num_context"] + 3] * 2)
    # TextEncoder
    mask = torch.empty(77, 77).fill_(float("-inf")).triu_(1)
    y = (prompts + sd["clip_model.positional_embedding"]).permute(1, 0, 2)
    for i in range(o["text_layers"]):
        y = ref_resblock(sd, f"clip_model.transformer.resblocks.{i}.", y, o["text_heads"], mask)
    y = ref_ln(sd, "clip_model.ln_final.", y.permute(1, 0, 2))
    text = y[torch.arange(2), eot] @ sd["clip_model.text_projection"]  # 2, D
    scale = sd["logit_scale"].exp()
    text_n = text / text.norm(dim=-1, keepdim=True)
    imf = img_f / img_f.norm(dim=-1, keepdim=True)
    logits = scale * imf[0, 0] @ text_n.t()
    tf = text[:, None]  # 2, 1, D
    q = img_f[:, 1:].transpose(0, 1)
    q = ref_ln(sd, "norm1.", q + ref_mha(sd, "text_guided_interactor.", q, tf, tf, o["lga_heads"]))
    q = ref_ln(sd, "norm2.", ref_ffn_block(sd, "", q))
    aug = q.transpose(0, 1).mean(dim=1)[0]
    aug = aug / aug.norm()
    z = logits + scale * aug @ text_n.t()
    return float(z[1] - z[0])


def load_ff(path: Path, plugins, options=FF_TINY):
    from sidbench.registry import load_detector

    return load_detector("fatformer", weights=str(path), plugins=plugins, **options)


FF_SIZES = ((120, 90), (333, 517), (256, 256), (1001, 301))


def test_fatformer_official_file_gives_the_official_logits(tmp_path, plugins):
    sd = fatformer_state(fatformer_shapes(**FF_TINY), seed=5)
    path = tmp_path / "fatformer_4class_ckpt.pth"
    torch.save({"model": sd}, path)
    det = load_ff(path, plugins)
    for w, h in FF_SIZES:
        img = image(w + h, w, h)
        assert detector_logit(det, img) == pytest.approx(fatformer_reference(sd, img, FF_TINY), abs=1e-4), (w, h)


def test_fatformer_card_and_protocol(plugins):
    spec = plugins.detector("fatformer")
    assert spec.preprocess == "fatformer_resize_crop" and "Apache" in spec.license
    assert next(p for p in spec.pixels.protocols if p.name == spec.preprocess).reads_file
    assert spec.official_weights.filename == "fatformer_4class_ckpt.pth"
    assert "drive.google.com" in spec.official_weights.url and spec.published and spec.notes and spec.paper
    assert spec.training_data == ("progan (car, cat, chair, horse)",)


@pytest.mark.slow
def test_fatformer_full_size_official_architecture(tmp_path, plugins):
    sd = fatformer_state(fatformer_shapes(**FF_FULL), seed=9)
    path = tmp_path / "fatformer_4class_ckpt.pth"
    torch.save({"model": sd}, path)
    det = load_ff(path, plugins, options={})
    img = image(9, 333, 517)
    assert detector_logit(det, img) == pytest.approx(fatformer_reference(sd, img, FF_FULL), abs=1e-4)


# ===============================================================================================================
# one run, one leaderboard
# ===============================================================================================================
def test_one_run_one_leaderboard_spai_fatformer_npr(tmp_path):
    """`sidbench run --detectors spai@F1,fatformer@F2,npr@F3`: every image scored by all three in one leaderboard,
    SPAI's and FatFormer's logits equal to their official forwards on the same files (an EXIF-rotated JPEG among
    them, which both official loaders decode unrotated; an odd-sized image over two SPAI patches)."""
    import pandas as pd

    from sidbench.cli import main

    from conftest import make_folder, write_image
    from test_fm_vit_detectors import write_rotated_jpeg
    from test_pixel_detectors import STAGES, official_shapes, trainer_dump
    from test_pixel_detectors import random_state as resnet_state

    w = tmp_path / "weights"
    w.mkdir()
    spai_sd = random_state(spai_shapes(**TINY), 41)
    ff_sd = fatformer_state(fatformer_shapes(**FF_TINY), 42)
    npr = resnet_state(official_shapes(3, STAGES[:2], head="fc1", head_in=512), 43)
    torch.save(trainer_dump({f"module.{k}": v for k, v in npr.items()}), w / "NPR.pth")
    torch.save({"model": ff_sd}, w / "fatformer_4class_ckpt.pth")
    write_spai(w / "spai.pth", spai_sd)
    data = make_folder(tmp_path / "data", splits=("gan",), n=1, size=(64, 64), seed=7)
    write_image(data / "gan" / "1_fake" / "odd.png", np.random.default_rng(3), (301, 517), fake=True)
    write_rotated_jpeg(data / "gan" / "0_real" / "rotated.jpg", 4, w=250, h=230)
    out = tmp_path / "out"
    dets = (f"spai{TINY_NAME}@{w / 'spai.pth'},fatformer{FF_TINY_NAME}@{w / 'fatformer_4class_ckpt.pth'},"
            f"npr@{w / 'NPR.pth'}")
    assert main(["run", "--data", str(data), "--detectors", dets, "--out", str(out), "--batch-size", "2",
                 "--no-progress"]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert scores.detector.nunique() == 3 and (scores.groupby("detector").path.nunique() == 4).all()
    board = (out / "leaderboard.md").read_text()
    refs = {"spai": lambda img: spai_reference(spai_sd, img, 2, 2, 2),
            "fatformer": lambda img: fatformer_reference(ff_sd, img, FF_TINY)}
    for row in scores.itertuples():
        family = row.detector.split("[")[0].split(".")[0]
        assert family in board
        if family in refs:  # NPR's logits against its official forward: tests/test_pixel_runs.py
            img = Image.open(row.path).convert("RGB")
            assert row.logit == pytest.approx(refs[family](img), abs=1e-4), (row.detector, row.path)
    assert dict(zip(scores.detector.str.split("[").str[0], scores.protocol)) == {
        "spai": "spai_native", "fatformer": "fatformer_resize_crop", "npr.progan4": "resize_square"}


def test_fatformer_deduplicated_copy_loads_and_a_file_without_clip_is_one_line(tmp_path, plugins):
    """A copy keeping one name per shared module (as safetensors' save_model writes it) gives the same logits; a
    file of the trained parts only is refused in one line naming what to attach."""
    from sidbench.api import WeightsError

    sd = fatformer_state(fatformer_shapes(**FF_TINY), seed=6)
    full, dedup = tmp_path / "full.pth", tmp_path / "dedup.pth"
    torch.save({"model": sd}, full)
    torch.save({"model": {k: v for k, v in sd.items() if not k.startswith(("image_encoder.", "text_encoder."))}}, dedup)
    img = image(2, 300, 200)
    assert detector_logit(load_ff(dedup, plugins), img) == pytest.approx(detector_logit(load_ff(full, plugins), img),
                                                                          abs=1e-6)
    part = tmp_path / "part.pth"
    torch.save({"model": {k: v for k, v in sd.items() if k.startswith(("language_guided", "text_guided"))}}, part)
    with pytest.raises(WeightsError, match="fatformer_4class_ckpt.pth") as err:
        load_ff(part, plugins)
    assert "\n" not in str(err.value)
