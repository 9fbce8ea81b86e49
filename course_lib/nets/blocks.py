"""Pieces every network shares: the sinusoidal time embedding and its MLP, the residual block, and the input
checks of the image models. Attention (the one transformer block and its wrapper over a feature map) lives in
:mod:`course_lib.attention`."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["timestep_embedding", "TimeEmbedding", "ResBlock", "NUM_TIMESTEPS"]


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    r"""Transformer-style sinusoidal embedding of integer (or real) timesteps, shape (N, dim).

    .. math:: e(t)_{i} = \cos(t\,\omega_i),\ e(t)_{i + d/2} = \sin(t\,\omega_i),\quad \omega_i = P^{-2i/d}
    """
    if dim % 2:
        raise ValueError(f"dim: expected an even embedding size, got {dim}")
    t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t[None]
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


def _check_image_input(x: torch.Tensor, channels: int, name="x", levels: int = 1):
    """(N, channels, H, W), with H and W divisible by 2^(levels - 1) for a network that halves them levels - 1 times."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name}: expected a tensor of shape (N, {channels}, H, W), got {getattr(x, 'shape', type(x))}")
    factor = 2 ** (levels - 1)
    if x.shape[-1] % factor or x.shape[-2] % factor:
        raise ValueError(f"{name}: expected H and W divisible by {factor}, got {tuple(x.shape[-2:])}")


NUM_TIMESTEPS = 1000  # every course denoiser and noise-aware classifier is trained on t in [0, 999]


def _timesteps_for(t, x: torch.Tensor) -> torch.Tensor:
    """t as one value per sample; real t is allowed (the sinusoidal embedding is continuous) but only within the
    trained range [0, T - 1]: beyond it the embedding extrapolates to inputs the network never saw."""
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"t: expected a scalar or shape ({x.shape[0]},), got {tuple(t.shape)}")
    if t.numel() and (float(t.min()) < 0 or float(t.max()) > NUM_TIMESTEPS - 1):
        raise ValueError(f"t: expected timesteps in [0, {NUM_TIMESTEPS - 1}] (the trained range), got "
                         f"{t.min().item():g}..{t.max().item():g}")
    return t


class TimeEmbedding(nn.Sequential):
    r"""The time embedding every noise predictor and noise-aware classifier uses: the sinusoidal features of t
    (:func:`timestep_embedding`, ``freq_dim`` of them) through Linear -> SiLU -> Linear to ``emb_dim``.

    An ``nn.Sequential`` (indices 0 and 2 are the linear layers), so its parameters keep the names ``time_mlp.0`` and
    ``time_mlp.2`` that the shipped checkpoints were saved with."""

    def __init__(self, freq_dim: int, emb_dim: int):
        super().__init__(nn.Linear(freq_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.freq_dim = freq_dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return super().forward(timestep_embedding(t, self.freq_dim))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the projected embedding, twice; 1x1 conv on the skip if widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int | None, groups: int = 8, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out) if emb_dim else None
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None:
            h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h
