r"""Attention, as Latent Diffusion uses it: cross-attention, the transformer block, its spatial wrapper, and the
"swapped" layer of notebook 06's red question.

.. math:: Q = W_Q\,\varphi(z_t),\quad K = W_K\,\tau_\theta(y),\quad V = W_V\,\tau_\theta(y),\qquad
          \mathrm{Attention}(Q,K,V) = \mathrm{softmax}\!\Big(\frac{QK^\top}{\sqrt d}\Big) V

Submodules are named ``to_q``, ``to_k``, ``to_v`` and ``to_out`` as in the latent-diffusion
and diffusers code, so real checkpoints map onto them.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ._checks import check_positive_int

__all__ = ["CrossAttention", "TransformerBlock", "SpatialTransformer", "SwappedCrossAttention"]


def _check_inputs(x, context, mask, query_dim: int, context_dim: int):
    """Shapes checked here, at the layer's boundary, so a mistake names the argument instead of failing in F.linear."""
    for name, t in (("x", x), ("context", context)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if x.ndim != 3 or context.ndim != 3 or context.shape[0] != x.shape[0]:
        raise ValueError(f"x, context: expected (B, N, query_dim) and (B, M, context_dim) with the same B, got "
                         f"{tuple(x.shape)} and {tuple(context.shape)}")
    if x.shape[-1] != query_dim:
        raise ValueError(f"x: expected last dimension query_dim = {query_dim}, got shape {tuple(x.shape)}")
    if context.shape[-1] != context_dim:
        raise ValueError(f"context: expected last dimension context_dim = {context_dim}, got shape "
                         f"{tuple(context.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.shape != context.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"mask: expected a bool tensor of shape {tuple(context.shape[:2])} (True = attend), "
                             f"got {getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError(f"mask: expected at least one True entry per row (a query must attend to something), "
                             f"got an all-False row at batch index {int((~mask.any(dim=1)).nonzero()[0])}")


class CrossAttention(nn.Module):
    r"""Multi-head attention: queries from ``x``, keys and values from ``context`` (``x`` itself if None), LDM eq. 3:

    .. math:: Q = W_Q\,\varphi(z_t),\quad K = W_K\,\tau_\theta(y),\quad V = W_V\,\tau_\theta(y),\qquad
              \mathrm{softmax}\big(QK^\top/\sqrt d\big)\,V

    x:       (B, N, query_dim)    image tokens, e.g. a flattened feature map phi(z_t)
    context: (B, M, context_dim)  condition tokens tau(y); None gives self-attention
    mask:    (B, M) bool, True where a context token may be attended to
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 4, dim_head: int = 32):
        super().__init__()
        check_positive_int(heads, "heads")
        check_positive_int(dim_head, "dim_head")
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.query_dim, self.context_dim = query_dim, context_dim
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x, context=None, mask=None, return_attention: bool = False):
        """(B, N, query_dim) -> (B, N, query_dim); with ``return_attention`` also the weights (B, heads, N, M)."""
        context = x if context is None else context
        _check_inputs(x, context, mask, self.query_dim, self.context_dim)
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k = rearrange(self.to_k(context), "b m (h d) -> b h m d", h=self.heads)
        v = rearrange(self.to_v(context), "b m (h d) -> b h m d", h=self.heads)
        scores = torch.einsum("bhnd,bhmd->bhnm", q, k) * self.scale  # QK^T / sqrt(d)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], torch.finfo(scores.dtype).min)
        attn = scores.softmax(dim=-1)
        out = rearrange(torch.einsum("bhnm,bhmd->bhnd", attn, v), "b h n d -> b n (h d)")
        out = self.to_out(out)
        return (out, attn) if return_attention else out


class TransformerBlock(nn.Module):
    r"""Pre-norm transformer block of Latent Diffusion's UNet, on tokens (B, N, dim):

    x <- x + SelfAttn(LN x);   x <- x + CrossAttn(LN x, context);   x <- x + FF(LN x)

    The cross-attention's weights of the last call are kept in ``last_attention`` (B, heads, N, M) when
    ``store_attention`` is True, so a notebook can draw where each caption token looks. ``swapped=True`` uses
    :class:`SwappedCrossAttention` instead (its weights are (B, heads, M, N)).
    """

    def __init__(self, dim: int, context_dim: int | None, heads: int = 4, dim_head: int = 32, swapped: bool = False):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = CrossAttention(dim, None, heads, dim_head)
        cross = SwappedCrossAttention if swapped else CrossAttention
        self.cross_attn = cross(dim, context_dim, heads, dim_head) if context_dim else None
        self.ff = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.store_attention, self.last_attention = False, None

    def forward(self, x, context=None, mask=None):
        x = x + self.self_attn(self.norm1(x))
        if self.cross_attn is not None and context is not None:
            out, attn = self.cross_attn(self.norm2(x), context, mask=mask, return_attention=True)
            if self.store_attention:
                self.last_attention = attn.detach()
            x = x + out
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """A feature map (B, C, H, W) -> tokens (B, H*W, C) -> transformer blocks -> back, as a residual:
    GroupNorm, 1x1 projection in, blocks, 1x1 projection out (zero-initialised: the block starts as the identity)."""

    def __init__(self, channels: int, context_dim: int | None, heads: int = 4, depth: int = 1, groups: int = 8,
                 swapped: bool = False):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.blocks = nn.ModuleList(TransformerBlock(channels, context_dim, heads, channels // heads, swapped)
                                    for _ in range(depth))
        self.proj_out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, context=None, mask=None):
        h, w = x.shape[-2:]
        tokens = rearrange(self.proj_in(self.norm(x)), "b c h w -> b (h w) c")
        for block in self.blocks:
            tokens = block(tokens, context, mask)
        return x + self.proj_out(rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w))


class SwappedCrossAttention(nn.Module):
    r"""The notes' red question, built: queries from the caption, keys and values from the image,

    .. math:: Q = W_Q\,\tau_\theta(y),\quad K = W_K\,\varphi(z_t),\quad V = W_V\,\varphi(z_t)

    so :math:`\mathrm{softmax}(QK^\top/\sqrt d)V` has one row **per caption token** (B, M, .), not per pixel: each
    caption token gathers a weighted average of image values. To feed it back into a feature map (the smallest honest
    way): average over the caption's real tokens, project to the image's channels and add the same vector at every
    position. ``forward(x (B, N, query_dim), context (B, M, context_dim), mask)`` returns (B, N, query_dim) like
    :class:`CrossAttention` (and ``per_token`` (B, M, query_dim) with ``return_per_token=True``).
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        check_positive_int(heads, "heads")
        check_positive_int(dim_head, "dim_head")
        inner = heads * dim_head
        self.query_dim, self.context_dim = query_dim, context_dim
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(context_dim, inner, bias=False)  # queries from the caption
        self.to_k = nn.Linear(query_dim, inner, bias=False)    # keys and values from the image
        self.to_v = nn.Linear(query_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x, context, mask=None, return_attention: bool = False, return_per_token: bool = False):
        _check_inputs(x, context, mask, self.query_dim, self.context_dim)
        q = rearrange(self.to_q(context), "b m (h d) -> b h m d", h=self.heads)
        k = rearrange(self.to_k(x), "b n (h d) -> b h n d", h=self.heads)
        v = rearrange(self.to_v(x), "b n (h d) -> b h n d", h=self.heads)
        attn = (torch.einsum("bhmd,bhnd->bhmn", q, k) * self.scale).softmax(dim=-1)  # over pixels
        per_token = self.to_out(rearrange(torch.einsum("bhmn,bhnd->bhmd", attn, v), "b h m d -> b m (h d)"))
        if return_per_token:
            return per_token
        keep = torch.ones(per_token.shape[:2], dtype=per_token.dtype, device=x.device) if mask is None else mask.to(per_token.dtype)
        pooled = (per_token * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp_min(1)  # (B, query_dim)
        out = pooled[:, None, :].expand(-1, x.shape[1], -1)  # every pixel receives the same vector
        return (out, attn) if return_attention else out
