"""CLIP's vision tower in the key names of Hugging Face ``CLIPVisionModel`` (``embeddings.patch_embedding``,
``encoder.layers.N.self_attn.q_proj``, ``post_layernorm`` ...), of any size, with QuickGELU as OpenAI's CLIP
uses; the optional ``visual_projection`` of ``CLIPModel``; and the conversion of OpenAI ``clip`` package
weights (``visual.transformer.resblocks.N.attn.in_proj_weight`` ...) into these names.

Written from the forward of ``transformers``' ``CLIPVisionTransformer`` (pre-LayerNorm blocks, the
``pre_layrnorm`` after the embeddings, ``pooler_output`` = ``post_layernorm`` of the class token) and of
OpenAI's ``VisionTransformer`` (``ln_post(x[:, 0]) @ proj``), which compute the same function.
The architecture is built from a configuration, never fetched, so offline runs build it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class VisionConfig:
    """Shape of a CLIP ViT: the defaults are ViT-L/14 at 224 px (``openai/clip-vit-large-patch14``)."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp_ratio: int = 4
    projection_dim: int = 768  # CLIPModel.visual_projection's output (ViT-L/14: 768)
    eps: float = 1e-5

    @property
    def positions(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


VIT_L14 = VisionConfig()


def vision_config(width: int = 1024, layers: int = 24, heads: int = 16, patch_size: int = 14,
                  projection_dim: int = 768) -> VisionConfig:
    """A configuration from a detector's shape options (their defaults: ViT-L/14); tests use tiny ones."""
    return VisionConfig(width=int(width), layers=int(layers), heads=int(heads), patch_size=int(patch_size),
                        projection_dim=int(projection_dim))


def build_vision_transformer(cfg: VisionConfig = VIT_L14) -> "nn.Module":
    """``CLIPVisionTransformer`` (``CLIPVisionModel.vision_model``): call it on [B, 3, S, S] normalised pixels
    to get ``(last_hidden_state, pooler_output)``."""
    return _vision_transformer_class()(cfg)


def build_image_tower(cfg: VisionConfig = VIT_L14) -> "nn.Module":
    """``vision_model`` + ``visual_projection`` (no bias) of ``CLIPModel``: ``tower(x)`` is the unnormalised
    image embedding [B, projection_dim] (``CLIPModel.get_image_features``)."""
    from torch import nn

    class ImageTower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision_model = build_vision_transformer(cfg)
            self.visual_projection = nn.Linear(cfg.width, cfg.projection_dim, bias=False)

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.visual_projection(self.vision_model(x)[1])

    return ImageTower()


def _vision_transformer_class():
    import torch
    import torch.nn.functional as F
    from torch import nn

    class QuickGELU(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(1.702 * x)

    class Attention(nn.Module):
        def __init__(self, cfg: VisionConfig) -> None:
            super().__init__()
            self.heads = cfg.heads
            self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(cfg.width, cfg.width) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, w = x.shape

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(b, n, self.heads, w // self.heads).transpose(1, 2)

            out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
            return self.out_proj(out.transpose(1, 2).reshape(b, n, w))

    class MLP(nn.Module):
        def __init__(self, cfg: VisionConfig) -> None:
            super().__init__()
            self.fc1 = nn.Linear(cfg.width, cfg.width * cfg.mlp_ratio)
            self.activation_fn = QuickGELU()
            self.fc2 = nn.Linear(cfg.width * cfg.mlp_ratio, cfg.width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.activation_fn(self.fc1(x)))

    class EncoderLayer(nn.Module):
        def __init__(self, cfg: VisionConfig) -> None:
            super().__init__()
            self.self_attn = Attention(cfg)
            self.layer_norm1 = nn.LayerNorm(cfg.width, eps=cfg.eps)
            self.mlp = MLP(cfg)
            self.layer_norm2 = nn.LayerNorm(cfg.width, eps=cfg.eps)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.self_attn(self.layer_norm1(x))
            return x + self.mlp(self.layer_norm2(x))

    class Embeddings(nn.Module):
        def __init__(self, cfg: VisionConfig) -> None:
            super().__init__()
            self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
            self.patch_embedding = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
            self.position_embedding = nn.Embedding(cfg.positions, cfg.width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            patches = self.patch_embedding(x.to(self.patch_embedding.weight.dtype)).flatten(2).transpose(1, 2)
            cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
            tokens = torch.cat([cls, patches], dim=1)
            if tokens.shape[1] != self.position_embedding.num_embeddings:
                raise ValueError(f"CLIP vision tower built for {self.position_embedding.num_embeddings - 1} patches "
                                 f"got {tokens.shape[1] - 1} (input {tuple(x.shape[-2:])})")
            return tokens + self.position_embedding.weight[None]

    class Encoder(nn.Module):
        def __init__(self, cfg: VisionConfig) -> None:
            super().__init__()
            self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    class CLIPVisionTransformer(nn.Module):
        def __init__(self, cfg: VisionConfig) -> None:
            super().__init__()
            self.config = cfg
            self.embeddings = Embeddings(cfg)
            self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.eps)  # sic: Hugging Face's spelling
            self.encoder = Encoder(cfg)
            self.post_layernorm = nn.LayerNorm(cfg.width, eps=cfg.eps)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            hidden = self.encoder(self.pre_layrnorm(self.embeddings(x)))
            return hidden, self.post_layernorm(hidden[:, 0])

    return CLIPVisionTransformer


# Hugging Face's CLIP embeddings kept ``position_ids`` (an arange) as a saved buffer before transformers 4.31:
# files saved then carry it; it holds no weights.
POSITION_IDS = "embeddings.position_ids"


def drop_position_ids(state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """The state without ``...embeddings.position_ids`` entries (an index buffer of older transformers)."""
    return {k: v for k, v in state.items() if not k.endswith(POSITION_IDS)}


_OPENAI_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                 "attn.out_proj": "self_attn.out_proj"}
_OPENAI_TOP = {"class_embedding": "vision_model.embeddings.class_embedding",
               "positional_embedding": "vision_model.embeddings.position_embedding.weight",
               "conv1.weight": "vision_model.embeddings.patch_embedding.weight"}


def openai_visual_to_hf(visual: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """OpenAI ``clip`` package weights of ``model.visual`` (keys without the ``visual.`` prefix) in the names of
    :func:`build_image_tower` (``vision_model.*``, ``visual_projection.weight``): ``in_proj_*`` split into
    q/k/v, ``proj`` [width, dim] transposed into the projection's weight. A key it does not know is an error."""
    out: dict[str, "torch.Tensor"] = {}
    for key, value in visual.items():
        if key in _OPENAI_TOP:
            out[_OPENAI_TOP[key]] = value
        elif key == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif key.startswith(("ln_pre.", "ln_post.")):
            name = "pre_layrnorm" if key.startswith("ln_pre.") else "post_layernorm"
            out[f"vision_model.{name}.{key.split('.', 1)[1]}"] = value
        elif key.startswith("transformer.resblocks."):
            index, rest = key[len("transformer.resblocks."):].split(".", 1)
            out.update(_openai_block_entry(f"vision_model.encoder.layers.{index}", rest, value))
        else:
            raise KeyError(key)
    return out


def _openai_block_entry(prefix: str, rest: str, value: "torch.Tensor") -> dict[str, "torch.Tensor"]:
    if rest.startswith("attn.in_proj_"):
        kind = rest.rsplit("_", 1)[1]  # weight | bias
        q, k, v = value.chunk(3, dim=0)
        return {f"{prefix}.self_attn.{p}_proj.{kind}": t.contiguous() for p, t in zip("qkv", (q, k, v))}
    module, leaf = rest.rsplit(".", 1)
    if module not in _OPENAI_BLOCK:
        raise KeyError(rest)
    return {f"{prefix}.{_OPENAI_BLOCK[module]}.{leaf}": value}
