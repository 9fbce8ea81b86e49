r"""Attention, the one implementation every network of the course uses: cross-attention (self-attention when the
context is the input itself, causal for the GPT prior), the one transformer block, the one wrapper that runs it over
the pixels of a feature map, the recorder that brings attention maps back, and the "swapped" layer of notebook 06's
red question.

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

__all__ = ["CrossAttention", "TransformerBlock", "SpatialTransformer", "AttentionRecorder", "SwappedCrossAttention"]


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

    ``causal=True`` (self-attention only) lets position i attend to positions j <= i: the GPT prior's
    :math:`p(s_i \mid s_{<i})`. ``qkv_bias`` adds biases to the three projections (the GPT prior was trained with them,
    Latent Diffusion's layers without).
    """

    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 4, dim_head: int = 32,
                 causal: bool = False, qkv_bias: bool = False):
        super().__init__()
        check_positive_int(heads, "heads")
        check_positive_int(dim_head, "dim_head")
        if causal and context_dim is not None:
            raise ValueError(f"causal: expected self-attention (context_dim=None) for a causal layer, got "
                             f"context_dim={context_dim}")
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.query_dim, self.context_dim = query_dim, context_dim
        self.heads, self.scale, self.causal = heads, dim_head**-0.5, causal
        self.to_q = nn.Linear(query_dim, inner, bias=qkv_bias)
        self.to_k = nn.Linear(context_dim, inner, bias=qkv_bias)
        self.to_v = nn.Linear(context_dim, inner, bias=qkv_bias)
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
        if self.causal:  # softmax weight 0 on every later token: the upper triangle is masked
            later = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(later, float("-inf"))
        attn = scores.softmax(dim=-1)
        out = rearrange(torch.einsum("bhnm,bhmd->bhnd", attn, v), "b h n d -> b n (h d)")
        out = self.to_out(out)
        return (out, attn) if return_attention else out


class TransformerBlock(nn.Module):
    r"""The course's one transformer block, pre-norm, on tokens (B, N, dim):

    .. math:: x \leftarrow x + \mathrm{SelfAttn}(\mathrm{LN}_1\,x)

    .. math:: x \leftarrow x + \mathrm{CrossAttn}(\mathrm{LN}_2\,x,\ \text{context})\quad\text{(with a context)}

    .. math:: x \leftarrow x + \mathrm{FF}(\mathrm{LN}_3\,x),\qquad \mathrm{FF} = W_2\,\mathrm{GELU}(W_1 \cdot)

    Latent Diffusion's UNet (cross-attention to the caption), its caption encoder :math:`\tau_\theta` (no
    cross-attention; ``self_mask`` hides ``<pad>``) and the GPT prior (``causal=True``) all use it; the names
    ``norm1/2/3``, ``self_attn``, ``cross_attn`` and ``ff`` are diffusers' ``BasicTransformerBlock``'s.
    ``swapped="mean"`` or ``"scatter"`` uses :class:`SwappedCrossAttention` with that route back to the pixels
    (weights (B, heads, M, N)). ``record``, if given, is called
    with the cross-attention weights (B, heads, N, M) of this call (see :class:`AttentionRecorder`).

    ``layer_norm=False, feed_forward=False`` leaves only :math:`x + \mathrm{SelfAttn}(x)`: the middle block of
    notebook 01's pixel UNet, which was trained so (see :class:`SpatialTransformer`).
    """

    def __init__(self, dim: int, context_dim: int | None = None, heads: int = 4, dim_head: int | None = None,
                 swapped: str | None = None, causal: bool = False, qkv_bias: bool = False, layer_norm: bool = True,
                 feed_forward: bool = True):
        super().__init__()
        dim_head = dim // heads if dim_head is None else dim_head
        norm = (lambda: nn.LayerNorm(dim)) if layer_norm else nn.Identity
        self.norm1, self.self_attn = norm(), CrossAttention(dim, None, heads, dim_head, causal, qkv_bias)
        if context_dim:
            self.norm2 = norm()
            self.cross_attn = (CrossAttention(dim, context_dim, heads, dim_head) if swapped is None else
                               SwappedCrossAttention(dim, context_dim, heads, dim_head, route=swapped))
        else:
            self.norm2 = self.cross_attn = None
        if feed_forward:
            self.norm3, self.ff = norm(), nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        else:
            self.norm3 = self.ff = None

    def forward(self, x, context=None, mask=None, self_mask=None, record=None):
        """x (B, N, dim); context (B, M, context_dim) and its key mask (B, M); self_mask (B, N) for x's own keys."""
        x = x + self.self_attn(self.norm1(x), mask=self_mask)
        if self.cross_attn is not None and context is not None:
            out, attn = self.cross_attn(self.norm2(x), context, mask=mask, return_attention=True)
            if record is not None:
                record(attn.detach())
            x = x + out
        return x if self.ff is None else x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    r"""The one wrapper that runs transformer blocks over the pixels of a feature map, as a residual:

    .. math:: x \leftarrow x + \mathrm{proj_{out}}\big(\mathrm{blocks}(\mathrm{proj_{in}}(\mathrm{GN}\,x))\big)

    with the map (B, C, H, W) read as H*W tokens (B, H*W, C) in raster order and put back after the blocks.
    Latent Diffusion's form has 1x1 projections, the second one zero-initialised (the block starts as the identity).

    ``projections=False`` with a block of ``layer_norm=False, feed_forward=False`` is the self-attention middle
    block of notebook 01's pixel UNet: :math:`x + \mathrm{GN}\,x + \mathrm{SelfAttn}(\mathrm{GN}\,x)`. The
    :math:`\mathrm{GN}\,x` term (a token-space residual inside the map-space one) is how the shipped
    ``shapes_ddpm16`` was trained; DDPM's own block has :math:`x + \mathrm{proj}(\mathrm{Attn}(\mathrm{GN}\,x))`.
    """

    def __init__(self, channels: int, context_dim: int | None, heads: int = 4, depth: int = 1, groups: int = 8,
                 swapped: str | None = None, projections: bool = True, layer_norm: bool = True,
                 feed_forward: bool = True):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.proj_in = nn.Conv2d(channels, channels, 1) if projections else nn.Identity()
        self.blocks = nn.ModuleList(TransformerBlock(channels, context_dim, heads, channels // heads, swapped,
                                                     layer_norm=layer_norm, feed_forward=feed_forward)
                                    for _ in range(depth))
        self.proj_out = nn.Conv2d(channels, channels, 1) if projections else nn.Identity()
        if projections:
            nn.init.zeros_(self.proj_out.weight)
            nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, context=None, mask=None, record=None):
        h, w = x.shape[-2:]
        tokens = rearrange(self.proj_in(self.norm(x)), "b c h w -> b (h w) c")
        for block in self.blocks:
            tokens = block(tokens, context, mask, record=record)
        return x + self.proj_out(rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w))


class AttentionRecorder:
    """Collects cross-attention weights, passed into a forward pass (``CaptionUNet(..., recorder=r)``) rather than
    read back from module state: ``r.maps[name]`` is the list of weights (B, heads, N, M) that layer ``name`` produced,
    one entry per call, in call order.

    ``r.rows(sl)`` is a view that keeps only the batch rows ``sl`` of every record, for a caller that batches
    several branches together: classifier-free guidance records its conditional half this way
    (:func:`course_lib.guidance.cfg_eps_fn`), so no reader has to know the batch layout.
    """

    def __init__(self, maps: dict | None = None, keep: slice = slice(None)):
        self.maps = {} if maps is None else maps
        self.keep = keep

    def rows(self, keep: slice) -> "AttentionRecorder":
        return AttentionRecorder(self.maps, keep)

    def __call__(self, name: str, weights: torch.Tensor) -> None:
        self.maps.setdefault(name, []).append(weights[self.keep])

    def layer(self, name: str):
        """The ``record`` callable one layer gets: ``record(weights)`` stores under ``name``."""
        return lambda weights: self(name, weights)


class SwappedCrossAttention(nn.Module):
    r"""The notes' red question, built: queries from the caption, keys and values from the image,

    .. math:: Q = W_Q\,\tau_\theta(y),\quad K = W_K\,\varphi(z_t),\quad V = W_V\,\varphi(z_t),\qquad
              A = \mathrm{softmax}_n\!\Big(\frac{QK^\top}{\sqrt d}\Big)\ (M \times N),\qquad u = W_O\,A V

    so the output :math:`u` has one row **per caption token** (B, M, .), not per pixel: each caption token gathers a
    weighted average of image values. Two routes back to a feature map (B, N, query_dim), averaged over the
    caption's :math:`M'` real tokens:

    - ``route="mean"`` (``shapes_ldm32_swapped``): the same vector at every pixel,
      :math:`o_n = \frac{1}{M'}\sum_m u_m` — a global signal, like a class embedding;
    - ``route="scatter"`` (``shapes_ldm32_swapped_scatter``): the attention matrix read column-wise, word
      :math:`m` sending :math:`u_m` to pixel :math:`n` in proportion to how much it looked there,
      :math:`o_n = \frac{1}{M'}\sum_m N A_{mn}\, u_m` (:math:`N A_{mn}` averages 1 over the pixels, so with
      uniform attention the two routes agree) — per pixel, and it says where each word looked.

    ``forward(x (B, N, query_dim), context (B, M, context_dim), mask)`` returns (B, N, query_dim) like
    :class:`CrossAttention` (and ``per_token`` :math:`u` (B, M, query_dim) with ``return_per_token=True``).
    """

    ROUTES = ("mean", "scatter")

    def __init__(self, query_dim: int, context_dim: int, heads: int = 4, dim_head: int = 32, route: str = "mean"):
        super().__init__()
        if route not in self.ROUTES:
            raise ValueError(f"route: expected one of {self.ROUTES}, got {route!r}")
        self.route = route
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
        real = keep.sum(1).clamp_min(1)[:, None, None]  # M', the caption's real tokens
        if self.route == "mean":
            pooled = torch.einsum("bm,bmc->bc", keep, per_token)[:, None, :] / real  # (B, 1, query_dim)
            out = pooled.expand(-1, x.shape[1], -1)  # every pixel receives the same vector
        else:
            # o_n = (1/M') sum_m N A_mn u_m, A averaged over heads: each word's vector goes where it looked
            weights = attn.mean(1) * x.shape[1] * keep[..., None]  # (B, M, N); pad tokens send nothing
            out = torch.einsum("bmn,bmc->bnc", weights, per_token) / real
        return (out, attn) if return_attention else out
