"""The DINOv2 vision transformer in the key names of ``torch.hub.load('facebookresearch/dinov2', 'dinov2_vit*14')``.

Written from facebookresearch/dinov2 (``dinov2/models/vision_transformer.py``, ``dinov2/layers``,
``dinov2/hub/backbones.py``): pre-norm blocks with LayerScale (``ls1.gamma``, ``ls2.gamma``), LayerNorm eps
1e-6, exact GELU, a class token, optional register tokens inserted after it, a ``mask_token`` parameter (unused
at test time but part of every state dict) and a 37x37 position embedding for the 518-pixel pre-training size.

Other input sizes resize the position embedding *the DINOv2 way* (:meth:`DinoVisionTransformer.interpolate_pos_encoding`):
bicubic with a scale factor of ``(tokens + 0.1) / 37`` per side and no antialiasing. timm's resampling of the
same weights (bicubic to an exact size, antialiased) gives different embeddings, so detectors trained on the
hub model (DDA) run this module, not timm's.

Detector plugins import this module inside functions (it imports torch at the top).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DinoV2Config:
    """What shapes a DINOv2 ViT (defaults: ``dinov2_vitl14``, the hub's ViT-L/14 without registers)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 14
    img_size: int = 518  # the position embedding's size: (img_size / patch_size) ** 2 patch positions
    mlp_ratio: float = 4.0
    num_register_tokens: int = 0
    interpolate_offset: float = 0.1
    interpolate_antialias: bool = False


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(head_dim)) v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2's ``DinoVisionTransformer`` at test time (no masking, no drop path, ``block_chunks=0``)."""

    def __init__(self, config: DinoV2Config = DinoV2Config()):
        super().__init__()
        c = self.config = config
        self.patch_size = c.patch_size
        grid = c.img_size // c.patch_size
        self.patch_embed = PatchEmbed(c.patch_size, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, c.embed_dim))
        self.register_tokens = (nn.Parameter(torch.zeros(1, c.num_register_tokens, c.embed_dim))
                                if c.num_register_tokens else None)
        self.mask_token = nn.Parameter(torch.zeros(1, c.embed_dim))
        self.blocks = nn.ModuleList(Block(c.embed_dim, c.num_heads, c.mlp_ratio) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        self.head = nn.Identity()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def interpolate_pos_encoding(self, n_tokens: int, height: int, width: int) -> torch.Tensor:
        """The position embedding for an input of ``height`` x ``width`` pixels (``n_tokens`` patches + class)."""
        n = self.pos_embed.shape[1] - 1
        if n_tokens - 1 == n and height == width:
            return self.pos_embed
        pos = self.pos_embed.float()
        side = int(math.sqrt(n))
        rows, cols = height // self.patch_size, width // self.patch_size
        off = self.config.interpolate_offset
        kwargs = ({"scale_factor": ((rows + off) / side, (cols + off) / side)} if off else {"size": (rows, cols)})
        grid = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, mode="bicubic", antialias=self.config.interpolate_antialias, **kwargs)
        if tuple(grid.shape[-2:]) != (rows, cols):
            raise ValueError(f"position embedding resized to {tuple(grid.shape[-2:])}, expected {(rows, cols)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat((pos[:, :1], grid), dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1], height, width).to(x.dtype)
        if self.register_tokens is not None:
            x = torch.cat((x[:, :1], self.register_tokens.expand(x.shape[0], -1, -1), x[:, 1:]), dim=1)
        return x

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.prepare_tokens(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        r = self.config.num_register_tokens
        return {"x_norm_clstoken": x[:, 0], "x_norm_regtokens": x[:, 1:r + 1], "x_norm_patchtokens": x[:, r + 1:]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The normalised class token [B, embed_dim] (the hub model's ``forward`` with its Identity head)."""
        return self.forward_features(x)["x_norm_clstoken"]
