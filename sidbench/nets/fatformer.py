"""FatFormer's network in the key names of its released checkpoint (``{'model': CLIPModel.state_dict()}``).

Written from Michel-liu/FatFormer (``models/clip_models.py``, ``models/clip/model.py``, ``models/clip/clip.py``,
``main.py``; Liu et al., CVPR 2024). OpenAI's CLIP (QuickGELU, sequence-first ``nn.MultiheadAttention``
blocks) whose vision tower carries forgery-aware adapters on evenly spaced blocks (``num_vit_adapter`` of the
README's test command: 3 of 24, blocks 7, 15 and 23). An adapter reads the block's state after its attention
and adds, next to the MLP, ``0.1 x`` a 1x1-conv bottleneck of it plus ``freq_scale x`` a wavelet branch: the
patch-token grid through a one-level Haar DWT (``pytorch_wavelets``' ``DWTForward(J=1, wave='haar')``, whose
bands equal PyWavelets' ``dwt2``: LL, then LH, HL, HH), GroupNorm, attention across the four bands at each
position, attention across positions within each band, an FFN, and the inverse DWT back to the grid (zero for
the class token). The image's tokens after ``ln_post`` and the projection (all of them, ``return_full``)
condition the learnable context prompts ("X x n_ctx real." / "... fake.", their fixed token embeddings saved
as ``token_prefix``/``token_suffix``) through the patch-based enhancer; the text tower encodes both prompts per
image; the logits are CLIP's scaled cosine similarity of the class token with each prompt plus that of the
text-guided interactor's mean patch feature (patch tokens attending to the two prompt features). Two outputs,
``real`` = 0 and ``fake`` = 1 (ImageFolder's ``0_real``/``1_fake``; ``main.py`` reads ``softmax[:, 1]``).

The checkpoint loads strictly (``main.py``: ``load_state_dict(checkpoint['model'])``), so it holds the whole
CLIP as well: nothing else is fetched. ``CLIPModel`` registers the vision tower, the text transformer and
``logit_scale`` twice (``clip_model.*`` and ``image_encoder.*`` / ``text_encoder.*`` / ``logit_scale``); this
module shares them the same way, so every key of the file has its place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

HAAR = 1 / math.sqrt(2)


@dataclass(frozen=True)
class FatFormerConfig:
    """What shapes FatFormer (defaults: CLIP ViT-L/14 and the README's test command)."""

    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    patch_size: int = 14
    image_size: int = 224
    text_width: int = 768  # also CLIP's embedding size (ViT-L/14: 768)
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    num_vit_adapter: int = 3
    num_context: int = 8
    adapter_bottleneck: int = 64
    adapter_heads: int = 8
    dwt_groups: int = 128
    lga_heads: int = 12  # the enhancer's and the interactor's heads


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Haar(nn.Module):
    """``pytorch_wavelets``' one-level Haar DWT or its inverse (mode ``zero``, even sizes), with its filter
    buffers (``h*`` analysis filters stored reversed, ``g*`` synthesis filters), which the checkpoint holds."""

    def __init__(self, inverse: bool):
        super().__init__()
        lo, hi = torch.tensor([HAAR, HAAR]), torch.tensor([HAAR, -HAAR])
        self.inverse, prefix = inverse, "g" if inverse else "h"
        for name, f in (("0", lo), ("1", hi)):
            self.register_buffer(f"{prefix}{name}_col", f.view(1, 1, 2, 1).clone())
            self.register_buffer(f"{prefix}{name}_row", f.view(1, 1, 1, 2).clone())

    @staticmethod
    def _analyse(x: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = x.unflatten(dim, (x.shape[dim] // 2, 2))
        a, b = pairs.select(dim + 1, 0), pairs.select(dim + 1, 1)
        return k0[0] * a + k0[1] * b, k1[0] * a + k1[1] * b

    @staticmethod
    def _synthesise(lo: torch.Tensor, hi: torch.Tensor, g0: torch.Tensor, g1: torch.Tensor, dim: int) -> torch.Tensor:
        even, odd = g0[0] * lo + g1[0] * hi, g0[1] * lo + g1[1] * hi
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)

    def forward(self, x):
        if not self.inverse:  # [B, C, H, W] -> (LL, [[B, C, 3, H/2, W/2]] holding LH, HL, HH)
            lo_w, hi_w = self._analyse(x, self.h0_row.flatten(), self.h1_row.flatten(), 3)
            ll, lh = self._analyse(lo_w, self.h0_col.flatten(), self.h1_col.flatten(), 2)
            hl, hh = self._analyse(hi_w, self.h0_col.flatten(), self.h1_col.flatten(), 2)
            return ll, [torch.stack([lh, hl, hh], dim=2)]
        ll, (high,) = x
        g0c, g1c, g0r, g1r = (t.flatten() for t in (self.g0_col, self.g1_col, self.g0_row, self.g1_row))
        lo = self._synthesise(ll, high[:, :, 0], g0c, g1c, 2)
        hi = self._synthesise(high[:, :, 1], high[:, :, 2], g0c, g1c, 2)
        return self._synthesise(lo, hi, g0r, g1r, 3)


class ForgeryAwareAdapter(nn.Module):
    """``ForgeryAwareAdapterLayer``: image-domain bottleneck + wavelet-domain band/position attention."""

    def __init__(self, cfg: FatFormerConfig):
        super().__init__()
        d = cfg.vision_width
        self.first_conv_layer = nn.Conv1d(d, cfg.adapter_bottleneck, 1)
        self.second_conv_layer = nn.Conv1d(cfg.adapter_bottleneck, d, 1)
        self.freq_scale = nn.Parameter(torch.zeros(1))
        self.dwt_transform, self.idwt_transform = Haar(inverse=False), Haar(inverse=True)
        self.dwt_norm = nn.GroupNorm(cfg.dwt_groups, d)
        self.intra_band, self.norm_intra = nn.MultiheadAttention(d, cfg.adapter_heads), nn.LayerNorm(d)
        self.inter_band, self.norm_inter = nn.MultiheadAttention(d, cfg.adapter_heads), nn.LayerNorm(d)
        self.linear1, self.linear2, self.norm3 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), nn.LayerNorm(d)

    def bands(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 4, N, D]: attention across the 4 bands per position, then across positions per band, FFN."""
        b, c, n, d = x.shape
        seq = x.transpose(0, 1).flatten(1, 2)
        x = self.norm_intra(x + self.intra_band(seq, seq, seq)[0].reshape(c, b, n, d).transpose(0, 1))
        seq = x.flatten(0, 1).transpose(0, 1)
        x = self.norm_inter(x + self.inter_band(seq, seq, seq)[0].transpose(0, 1).reshape(b, c, n, d))
        return self.norm3(x + self.linear2(F.relu(self.linear1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nq, bs, d = x.shape
        side = int(math.sqrt(nq))
        grid = x[1:].transpose(0, 1).reshape(bs, side, side, d).permute(0, 3, 1, 2)
        low, (high,) = self.dwt_transform(grid)
        w = torch.cat([low[:, :, None], high], dim=2)  # B, D, 4, h, w
        h2, w2 = w.shape[-2:]
        w = self.bands(self.dwt_norm(w.flatten(-2)).permute(0, 2, 3, 1))
        w = w.reshape(bs, 4, h2, w2, d).permute(0, 4, 1, 2, 3)
        freq = self.idwt_transform((w[:, :, 0], [w[:, :, 1:]])).flatten(-2).permute(2, 0, 1)
        freq = torch.cat([torch.zeros_like(x[:1]), freq], dim=0)
        up = self.second_conv_layer(F.relu(self.first_conv_layer(x.permute(1, 2, 0)))).permute(2, 0, 1)
        return up * 0.1 + freq * self.freq_scale


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d: int, heads: int, mask: torch.Tensor | None = None, adapter: nn.Module | None = None):
        super().__init__()
        self.attn, self.ln_1, self.ln_2 = nn.MultiheadAttention(d, heads), nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(d, 4 * d))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * d, d))
        self.mask = mask
        self.forgery_aware_adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = None if self.mask is None else self.mask.to(device=x.device, dtype=x.dtype)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        out = x + self.mlp(self.ln_2(x))
        return out if self.forgery_aware_adapter is None else out + self.forgery_aware_adapter(x)


class Transformer(nn.Module):
    def __init__(self, blocks: list[ResidualAttentionBlock]):
        super().__init__()
        self.resblocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class VisionTower(nn.Module):
    """OpenAI CLIP's ``VisionTransformer`` with adapters; ``forward`` is ``return_full=True``: [B, 1 + N, E]."""

    def __init__(self, cfg: FatFormerConfig):
        super().__init__()
        w, n = cfg.vision_width, (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(n, w))
        self.ln_pre, self.ln_post = nn.LayerNorm(w), nn.LayerNorm(w)
        step = cfg.vision_layers // cfg.num_vit_adapter if cfg.num_vit_adapter else 0
        with_adapter = {(i + 1) * step - 1 for i in range(cfg.num_vit_adapter)}
        self.transformer = Transformer([
            ResidualAttentionBlock(w, cfg.vision_heads, None, ForgeryAwareAdapter(cfg) if i in with_adapter else None)
            for i in range(cfg.vision_layers)])
        self.proj = nn.Parameter(torch.zeros(w, cfg.text_width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype))
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x) @ self.proj


class Clip(nn.Module):
    """The parts of OpenAI's ``CLIP`` that the checkpoint holds (``token_embedding`` is unused at test time)."""

    def __init__(self, cfg: FatFormerConfig):
        super().__init__()
        self.visual = VisionTower(cfg)
        mask = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu_(1)
        self.transformer = Transformer([ResidualAttentionBlock(cfg.text_width, cfg.text_heads, mask)
                                        for _ in range(cfg.text_layers)])
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(cfg.context_length, cfg.text_width))
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.zeros(cfg.text_width, cfg.text_width))
        self.logit_scale = nn.Parameter(torch.zeros([]))


class Enhancer(nn.Module):
    """Cross-attention of queries over a memory (sequence-first), residual + LayerNorm, ReLU FFN + LayerNorm:
    the patch-based enhancer (prompts <- image tokens) and the text-guided interactor (patches <- prompts)."""

    def __init__(self, d: int, heads: int, attn_name: str):
        super().__init__()
        self.attn_name = attn_name
        setattr(self, attn_name, nn.MultiheadAttention(d, heads))
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.linear1, self.linear2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def attend(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(queries + getattr(self, self.attn_name)(queries, memory, memory)[0])
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class LanguageGuidedAlignment(Enhancer):
    def __init__(self, cfg: FatFormerConfig):
        super().__init__(cfg.text_width, cfg.lga_heads, "patch_basaed_enhancer")
        d, suffix = cfg.text_width, cfg.context_length - 1 - cfg.num_context
        self.ctx = nn.Parameter(torch.zeros(cfg.num_context, d))
        self.register_buffer("token_prefix", torch.zeros(2, 1, d))
        self.register_buffer("token_suffix", torch.zeros(2, suffix, d))

    def forward(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """[B, 1 + N, D] -> the two class prompts per image, [B, 2, context_length, D]."""
        b = image_tokens.shape[0]
        ctx = self.attend(self.ctx[:, None].repeat_interleave(b, dim=1), image_tokens.transpose(0, 1))
        n_cls = self.token_prefix.shape[0]
        ctx = ctx.transpose(0, 1)[:, None].expand(-1, n_cls, -1, -1)
        pre, suf = (t[None].expand(b, -1, -1, -1) for t in (self.token_prefix, self.token_suffix))
        return torch.cat([pre, ctx, suf], dim=2)


class TextEncoder(nn.Module):
    def __init__(self, clip: Clip):
        super().__init__()
        self.transformer, self.positional_embedding = clip.transformer, clip.positional_embedding
        self.ln_final, self.text_projection = clip.ln_final, clip.text_projection

    def forward(self, prompts: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """[P, L, D] prompt embeddings -> [P, E], read at each prompt's end-of-text position."""
        x = self.transformer((prompts + self.positional_embedding).permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


def eot_positions(num_context: int, classnames: tuple[str, ...] = ("real", "fake")) -> list[int]:
    """Where CLIP's tokenizer puts the end-of-text token of "X X ... X <class>." (the highest token id)."""
    import open_clip

    prompts = [" ".join(["X"] * num_context) + f" {name}." for name in classnames]
    return open_clip.tokenize(prompts).argmax(dim=-1).tolist()


class FatFormer(Enhancer):
    """``CLIPModel``: ImageNet-normalised 224 crops [B, 3, 224, 224] -> logits [B, 2] (real, fake). The
    text-guided interactor's layers sit at its top level (``text_guided_interactor``, ``norm1``, ``linear1``,
    ``linear2``, ``norm2``), as in ``CLIPModel``."""

    def __init__(self, cfg: FatFormerConfig = FatFormerConfig()):
        super().__init__(cfg.text_width, cfg.lga_heads, "text_guided_interactor")
        self.clip_model = Clip(cfg)
        self.language_guided_alignment = LanguageGuidedAlignment(cfg)
        self.image_encoder = self.clip_model.visual
        self.text_encoder = TextEncoder(self.clip_model)
        self.logit_scale = self.clip_model.logit_scale
        self.register_buffer("eot", torch.tensor(eot_positions(cfg.num_context)), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.image_encoder(image)  # B, 1 + N, E
        prompts = self.language_guided_alignment(tokens)  # B, 2, L, D
        b, n_cls = prompts.shape[:2]
        text = self.text_encoder(prompts.flatten(0, 1), self.eot.repeat(b)).reshape(b, n_cls, -1)
        scale = self.logit_scale.exp()
        text_n = text / text.norm(dim=-1, keepdim=True)
        cls = tokens[:, 0] / tokens[:, 0].norm(dim=-1, keepdim=True)
        logits = scale * torch.einsum("bd,bkd->bk", cls, text_n)
        patches = self.attend(tokens[:, 1:].transpose(0, 1), text.transpose(0, 1))
        aug = patches.transpose(0, 1).mean(dim=1)
        aug = aug / aug.norm(dim=-1, keepdim=True)
        return logits + scale * torch.einsum("bd,bkd->bk", aug, text_n)
