r"""The denoiser notebook 10's learner builds: the smallest caption UNet that still has every part of Latent
Diffusion's :math:`\epsilon_\theta(z_t, t, \tau_\theta(y))`, made of the library's blocks only.

    z_t (4, 8, 8) --conv_in--> ResBlock + cross-attention (8x8) ------------------- skip --+
                               down (stride 2) -> ResBlock + cross-attention (4x4)          |
                               up (nearest x2, conv) -> concat skip -> ResBlock + cross-attention (8x8) --> conv_out

Every ResBlock adds the time embedding (:class:`course_lib.nets.TimeEmbedding`); every
:class:`course_lib.attention.SpatialTransformer` cross-attends to the caption tokens of the
:class:`course_lib.nets.CaptionEncoder`, trained jointly. ``conv_out`` starts at zero (the first prediction is 0,
the loss starts at E[eps^2] = 1). Notebook 06's :class:`course_lib.nets.CaptionUNet` is the same design with more
levels and widths (and the hooks ControlNet needs).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..attention import SpatialTransformer
from .blocks import ResBlock, TimeEmbedding, _check_image_input, _timesteps_for
from .caption import CaptionEncoder

__all__ = ["MiniUNetConfig", "MiniUNet"]


@dataclass
class MiniUNetConfig:
    in_channels: int = 4        # the autoencoder's latent channels
    channels: int = 32          # width at the latent's resolution; twice this one level down
    context_dim: int = 32       # width of the caption tokens tau_theta(y)
    num_heads: int = 4
    vocab_size: int = 20        # len(course_lib.data.VOCAB)
    caption_length: int = 11    # CAPTION_LENGTH
    caption_layers: int = 1
    groups: int = 8


class MiniUNet(nn.Module):
    """``forward(z_t, t, tokens=None)`` -> predicted noise, shaped like z_t; ``tokens=None`` is the empty caption."""

    def __init__(self, config: MiniUNetConfig):
        super().__init__()
        self.config = cfg = config
        c, emb_dim = cfg.channels, 4 * cfg.channels
        self.caption_encoder = CaptionEncoder(cfg.vocab_size, cfg.caption_length, cfg.context_dim, cfg.caption_layers,
                                              cfg.num_heads)
        self.time_mlp = TimeEmbedding(c, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.res_in = ResBlock(c, c, emb_dim, cfg.groups)
        self.attn_in = SpatialTransformer(c, cfg.context_dim, cfg.num_heads, groups=cfg.groups)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.res_mid = ResBlock(2 * c, 2 * c, emb_dim, cfg.groups)
        self.attn_mid = SpatialTransformer(2 * c, cfg.context_dim, cfg.num_heads, groups=cfg.groups)
        self.up = nn.Conv2d(2 * c, c, 3, padding=1)
        self.res_out = ResBlock(2 * c, c, emb_dim, cfg.groups)  # the upsampled features and the skip, concatenated
        self.attn_out = SpatialTransformer(c, cfg.context_dim, cfg.num_heads, groups=cfg.groups)
        self.norm_out = nn.GroupNorm(cfg.groups, c)
        self.conv_out = nn.Conv2d(c, cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The empty caption (all ``<pad>``): what caption dropout trains and guidance's unconditional branch uses."""
        return torch.zeros(n, self.config.caption_length, dtype=torch.long, device=device)

    def forward(self, z_t: torch.Tensor, t, tokens: torch.Tensor | None = None) -> torch.Tensor:
        _check_image_input(z_t, self.config.in_channels, "z_t", levels=2)
        if tokens is None:
            tokens = self.null_condition(z_t.shape[0], z_t.device)
        if tokens.shape[0] != z_t.shape[0]:
            raise ValueError(f"tokens: expected one caption per latent ({z_t.shape[0]}), got {tuple(tokens.shape)}")
        emb = self.time_mlp(_timesteps_for(t, z_t))       # the time embedding, added inside every ResBlock
        context, mask = self.caption_encoder(tokens)      # tau_theta(y): (B, L+1, context_dim) and its key mask
        h = self.conv_in(z_t)
        skip = h = self.attn_in(self.res_in(h, emb), context, mask)                 # 8x8: Q from pixels, K, V from words
        h = self.attn_mid(self.res_mid(self.down(h), emb), context, mask)          # 4x4
        h = self.up(F.interpolate(h, scale_factor=2, mode="nearest"))              # back to 8x8
        h = self.attn_out(self.res_out(torch.cat([h, skip], dim=1), emb), context, mask)
        return self.conv_out(F.silu(self.norm_out(h)))
