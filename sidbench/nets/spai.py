"""SPAI's network in the key names of its released checkpoint (``{'model': PatchBasedMFViT.state_dict(), ...}``).

Written from mever-team/spai (``spai/models/sid.py``, ``vision_transformer.py``, ``filters.py``, ``utils.py``
and ``configs/spai.yaml``; Karageorgiou et al., CVPR 2025). The image (pixels in [0, 1], no normalisation) is
cut into non-overlapping 224x224 patches (stride 224, the remainder dropped); an image with fewer than
``minimum_patches`` whole patches uses torchvision's five 224 crops instead. Each patch is split by a centred
circular mask (radius 16) of its shifted 2-D DFT into a low- and a high-frequency image (each clamped to
[0, 1]); the patch and both filtered images are ImageNet-normalised and go through the frozen MFM ViT-B/16
(qkv with q/v biases only, LayerNorm eps 1e-6, no layer scale), whose patch tokens of every block are kept.
Per block, a projector (LayerNorm, two linears with GELU between, LayerNorm) maps the tokens; the cosine
similarities original/low, original/high and low/high give a mean and a (unbiased) std over the tokens
(6 x blocks values), and the original image's projected tokens go through the feature-importance projector
(mean and std over tokens, a projector, softmax-weighted sum over blocks, a projector). That vector per patch
is pooled over the image's patches by the spectral context attention (one learnable query per head), then
LayerNorm and a three-layer MLP give the one logit.

The released state dict also holds ViT parts the SPAI forward never uses (MFM's ``head``, ``fc_norm``,
``intermediate_fc_norm``, ``cls_pos_embed``, ``actual_cls_token``, ``cls_blocks``): they are built so the file
loads strictly. Patches go through the ViT in chunks of at most ``patch_batch`` (the official
``MODEL.FEATURE_EXTRACTION_BATCH``), which bounds memory for any image size without changing a logit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sidbench.api import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class SpaiConfig:
    """What shapes SPAI (defaults: ``configs/spai.yaml``, the released model)."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    vit_patch: int = 16
    img_patch: int = 224
    proj_dim: int = 1024
    attn_embed_dim: int = 1536
    attn_heads: int = 12
    head_ratio: int = 3
    masking_radius: int = 16
    minimum_patches: int = 4
    vit_classes: int = 2  # MFM's unused ViT head (MODEL.NUM_CLASSES)


class Attention(nn.Module):
    """MFM/BEiT attention: one qkv matrix, a bias for q and v only (k has none)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        q, k, v = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class MfmViT(nn.Module):
    """The MFM ViT-B/16 with SPAI's ``return_features``: the patch tokens of every block, [B, depth, L, D]."""

    def __init__(self, cfg: SpaiConfig):
        super().__init__()
        d, tokens = cfg.embed_dim, (cfg.img_patch // cfg.vit_patch) ** 2 + 1
        self.patch_embed = PatchEmbed(cfg.vit_patch, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, d))
        self.blocks = nn.ModuleList(Block(d, cfg.num_heads) for _ in range(cfg.depth))
        # unused by SPAI's forward, present in the released state dict
        self.fc_norm = nn.LayerNorm(d, eps=1e-6)
        self.cls_pos_embed = nn.Parameter(torch.zeros(1, tokens, d))
        self.actual_cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_blocks = nn.ModuleList([Block(d, cfg.num_heads)])
        self.intermediate_fc_norm = nn.ModuleList(nn.LayerNorm(d, eps=1e-6) for _ in range(cfg.depth))
        self.head = nn.Linear(d * cfg.depth, cfg.vit_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        out = []
        for blk in self.blocks:
            x = blk(x)
            out.append(x[:, 1:])
        return torch.stack(out, dim=1)


class Projector(nn.Module):
    """LayerNorm (optional), Dropout, then per layer Linear + GELU (the last one's activation configurable) +
    Dropout, LayerNorm: module indices 1 and 4 of ``projector`` hold the two linears."""

    def __init__(self, in_dim: int, dim: int, last_gelu: bool = True, input_norm: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim) if input_norm else nn.Identity()
        self.projector = nn.Sequential(nn.Dropout(), nn.Linear(in_dim, dim), nn.GELU(), nn.Dropout(),
                                       nn.Linear(dim, dim), nn.GELU() if last_gelu else nn.Identity(), nn.Dropout())
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.projector(self.norm1(x)))


class FeatureSpecificProjector(nn.Module):
    def __init__(self, n: int, in_dim: int, dim: int):
        super().__init__()
        self.projectors = nn.ModuleList(Projector(in_dim, dim, last_gelu=False) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([p(x[:, i]) for i, p in enumerate(self.projectors)], dim=1)


class FeatureImportanceProjector(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1, n, dim))
        self.proj1 = Projector(2 * dim, dim, input_norm=False)
        self.proj2 = Projector(dim, dim, input_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj1(torch.cat([x.mean(dim=2), x.std(dim=2)], dim=-1))
        return self.proj2((torch.softmax(self.alpha, dim=1) * x).sum(dim=1))


class FrequencyRestorationEstimator(nn.Module):
    """Spectral reconstruction similarity (6 statistics per block) and the original image's feature vector."""

    def __init__(self, cfg: SpaiConfig):
        super().__init__()
        self.patch_projector = FeatureSpecificProjector(cfg.depth, cfg.embed_dim, cfg.proj_dim)
        self.original_features_processor = FeatureImportanceProjector(cfg.depth, cfg.proj_dim)

    def forward(self, orig: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        orig, low, high = self.patch_projector(orig), self.patch_projector(low), self.patch_projector(high)
        stats = []
        for a, b in ((orig, low), (orig, high), (low, high)):
            sim = F.cosine_similarity(a, b, dim=-1)
            stats += [sim.mean(dim=-1), sim.std(dim=-1)]
        return torch.cat(stats + [self.original_features_processor(orig)], dim=1)


def circular_mask(size: int, radius: int) -> torch.Tensor:
    """1 inside a centred circle of the shifted spectrum (SPAI's coordinates: 0 at the two centre bins)."""
    half = torch.arange(size // 2, dtype=torch.float)
    axis = torch.cat([half.flip(0), half])
    r = torch.sqrt(axis[None, :] ** 2 + axis[:, None] ** 2)
    return torch.where(r < radius, 1, 0)


def split_frequencies(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Low- and high-pass images of ``x`` under ``mask`` on the centred spectrum, clamped to [0, 1]."""
    spec = torch.fft.fftshift(torch.fft.fft2(x.float()))
    low = torch.fft.ifft2(torch.fft.ifftshift(spec * mask)).real
    high = torch.fft.ifft2(torch.fft.ifftshift(spec * (1 - mask))).real
    return low.clamp(0, 1).to(x.dtype), high.clamp(0, 1).to(x.dtype)


class MFViT(nn.Module):
    """One 224 patch -> SPAI's per-patch vector (6 x depth + proj_dim values)."""

    def __init__(self, cfg: SpaiConfig):
        super().__init__()
        self.vit = MfmViT(cfg)
        self.features_processor = FrequencyRestorationEstimator(cfg)
        self.register_buffer("frequencies_mask", circular_mask(cfg.img_patch, cfg.masking_radius))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = split_frequencies(x, self.frequencies_mask)
        orig, low, high = (self.vit((t - self.mean) / self.std) for t in (x, low, high))  # three passes, as MFViT
        return self.features_processor(orig, low, high)


class Spai(nn.Module):
    """``PatchBasedMFViT``: pixels in [0, 1], [B, 3, H, W] with H, W >= 224 -> logits [B]."""

    def __init__(self, cfg: SpaiConfig = SpaiConfig(), patch_batch: int = 400):
        super().__init__()
        self.cfg, self.patch_batch = cfg, int(patch_batch)
        dim = 6 * cfg.depth + cfg.proj_dim
        self.mfvit = MFViT(cfg)
        self.heads = cfg.attn_heads
        self.to_kv = nn.Linear(dim, 2 * cfg.attn_embed_dim, bias=False)
        self.patch_aggregator = nn.Parameter(torch.zeros(cfg.attn_heads, 1, cfg.attn_embed_dim // cfg.attn_heads))
        self.to_out = nn.Sequential(nn.Linear(cfg.attn_embed_dim, dim, bias=False), nn.Dropout())
        self.norm = nn.LayerNorm(dim)
        self.cls_head = nn.Module()
        r = cfg.head_ratio
        self.cls_head.head = nn.Sequential(nn.Linear(dim, dim * r), nn.ReLU(), nn.Dropout(), nn.Linear(dim * r, dim * r),
                                           nn.ReLU(), nn.Dropout(), nn.Linear(dim * r, 1))

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, 3, P, P]: the whole P-grid, or the five crops when it holds under ``minimum_patches``."""
        from torchvision.transforms.functional import five_crop

        p = self.cfg.img_patch
        if (x.shape[-2] // p) * (x.shape[-1] // p) < self.cfg.minimum_patches:
            return torch.stack(five_crop(x, [p, p]), dim=1)
        grid = x.unfold(2, p, p).unfold(3, p, p)  # B, C, rows, cols, P, P
        return grid.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], -1, 3, p, p)

    def spectral_context_attention(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, dim] -> [B, dim]: cross-attention of one learnable query per head over the patches."""
        b, n, _ = x.shape
        k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_kv(x).chunk(2, dim=-1))
        q = self.patch_aggregator.expand(b, -1, -1, -1)
        attn = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)
        return self.to_out((attn @ v).transpose(1, 2).reshape(b, 1, -1)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patches(x)
        b, n = patches.shape[:2]
        flat = patches.reshape(b * n, *patches.shape[2:])
        step = self.patch_batch
        feats = torch.cat([self.mfvit(flat[i:i + step]) for i in range(0, b * n, step)])
        x = self.spectral_context_attention(feats.reshape(b, n, -1))
        return self.cls_head.head(self.norm(x)).squeeze(1)
