r"""Attention, as Latent Diffusion uses it (the foundation part; notebook 06 builds on it).

.. math:: Q = W_Q\,\varphi(z_t),\quad K = W_K\,\tau_\theta(y),\quad V = W_V\,\tau_\theta(y),\qquad
          \mathrm{Attention}(Q,K,V) = \mathrm{softmax}\!\Big(\frac{QK^\top}{\sqrt d}\Big) V

Submodules are named ``to_q``, ``to_k``, ``to_v`` and ``to_out`` as in the latent-diffusion
and diffusers code, so real checkpoints map onto them.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["CrossAttention"]


class CrossAttention(nn.Module):
    """Multi-head attention: queries from ``x``, keys and values from ``context`` (``x`` itself if None).

    x:       (B, N, query_dim)    image tokens, e.g. a flattened feature map phi(z_t)
    context: (B, M, context_dim)  condition tokens tau(y); None gives self-attention
    mask:    (B, M) bool, True where a context token may be attended to
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 4, dim_head: int = 32):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(self, x, context=None, mask=None, return_attention: bool = False):
        context = x if context is None else context
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
