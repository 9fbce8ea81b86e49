r"""The course's networks: small enough to train on a CPU in minutes, readable in one sitting.

- :class:`UNet`: the noise predictor :math:`\epsilon_\theta(x_t, t[, y][, \tau(y)])` for images.
- :class:`MLPDenoiser`: the same for 2-D points.
- :class:`Classifier`: a shapes classifier; with ``time_conditional=True`` it is the noise-aware
  classifier :math:`p_\phi(y \mid x_t, t)` of classifier guidance, without it the clean
  classifier whose features ``course_lib.metrics`` uses.

Each model takes one config dataclass (as in nanoGPT), so a checkpoint stores its config
as plain JSON and :mod:`course_lib.checkpoints` can rebuild it.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, fields

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .attention import CrossAttention

__all__ = [
    "timestep_embedding", "UNetConfig", "UNet", "MLPConfig", "MLPDenoiser", "ClassifierConfig", "Classifier",
    "MODELS", "build_model",
]


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


def _check_image_input(x: torch.Tensor, channels: int, name="x"):
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{name}: expected a tensor of shape (N, {channels}, H, W), got {getattr(x, 'shape', type(x))}")


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


class AttentionBlock(nn.Module):
    """Self-attention over the pixels of a feature map, then (if ``context_dim``) cross-attention to a context."""

    def __init__(self, channels: int, context_dim: int | None = None, heads: int = 4, groups: int = 8):
        super().__init__()
        dim_head = channels // heads
        self.norm = nn.GroupNorm(groups, channels)
        self.self_attn = CrossAttention(channels, None, heads, dim_head)
        self.cross_attn = None
        if context_dim:
            self.norm_cross = nn.LayerNorm(channels)
            self.cross_attn = CrossAttention(channels, context_dim, heads, dim_head)

    def forward(self, x, context=None, context_mask=None):
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")
        tokens = tokens + self.self_attn(tokens)
        if self.cross_attn is not None and context is not None:
            tokens = tokens + self.cross_attn(self.norm_cross(tokens), context, mask=context_mask)
        return x + rearrange(tokens, "b (h w) c -> b c h w", h=h, w=w)


@dataclass
class UNetConfig:
    in_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple = (1, 2)
    num_res_blocks: int = 2
    attention_at_lowest: bool = True   # self-attention in the middle block
    num_classes: int | None = None     # class embedding; index num_classes means "no label"
    context_dim: int | None = None     # cross-attention to context tokens in the middle block
    groups: int = 8
    dropout: float = 0.0


class UNet(nn.Module):
    r"""Time-conditioned UNet :math:`\epsilon_\theta(x_t, t, y, c)`.

    forward(x (N,C,H,W), t (N,) or scalar, y (N,) class ids or None, context (N,M,context_dim) or None).
    With ``num_classes`` set, ``y=None`` (or entries equal to ``num_classes``) means unconditional:
    the same network serves conditional and unconditional sampling, hence classifier-free guidance.
    H and W must be divisible by 2^(len(channel_mults)-1).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        block = lambda a, b: ResBlock(a, b, emb_dim, cfg.groups, cfg.dropout)  # noqa: E731

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            self.down.append(nn.ModuleList([block(prev if j == 0 else c, c) for j in range(cfg.num_res_blocks)]))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(ch) - 1 else nn.Identity())
            prev = c
        self.mid1 = block(ch[-1], ch[-1])
        use_attn = cfg.attention_at_lowest or cfg.context_dim
        self.mid_attn = AttentionBlock(ch[-1], cfg.context_dim, groups=cfg.groups) if use_attn else None
        self.mid2 = block(ch[-1], ch[-1])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        prev = ch[-1]
        for i in reversed(range(len(ch))):
            c = ch[i]
            self.up.append(nn.ModuleList([block(prev + c if j == 0 else c, c) for j in range(cfg.num_res_blocks)]))
            self.upsample.append(nn.Conv2d(c, ch[i - 1], 3, padding=1) if i > 0 else nn.Identity())
            prev = ch[i - 1] if i > 0 else c
        self.norm_out = nn.GroupNorm(cfg.groups, ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # start as "predict zero noise": stabler first steps
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, t, y=None, context=None, context_mask=None):
        cfg = self.config
        _check_image_input(x, cfg.in_channels)
        factor = 2 ** (len(cfg.channel_mults) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"x: expected H and W divisible by {factor}, got {tuple(x.shape[-2:])}")
        t = _timesteps_for(t, x)
        emb = self.time_mlp(timestep_embedding(t, cfg.base_channels))
        if self.class_emb is not None:
            if y is None:
                y = torch.full((x.shape[0],), cfg.num_classes, device=x.device, dtype=torch.long)
            y = torch.as_tensor(y, device=x.device)
            if y.is_floating_point() or y.dtype == torch.bool:
                raise TypeError(f"y: expected integer class ids (a LongTensor), got {y.dtype}")
            if y.shape != (x.shape[0],) or int(y.min()) < 0 or int(y.max()) > cfg.num_classes:
                raise ValueError(f"y: expected shape ({x.shape[0]},) with ids in [0, {cfg.num_classes}] "
                                 f"({cfg.num_classes} = no label), got {tuple(y.shape)} {y.tolist()[:8]}")
            emb = emb + self.class_emb(y)
        elif y is not None:
            raise ValueError("y: this UNet has no class embedding (config.num_classes is None), but y was given")
        h = self.conv_in(x)
        skips = []
        for blocks, down in zip(self.down, self.downsample):
            for b in blocks:
                h = b(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h, context, context_mask)
        h = self.mid2(h, emb)
        for blocks, up in zip(self.up, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for b in blocks:
                h = b(h, emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class MLPConfig:
    dim: int = 2
    hidden: int = 128
    num_layers: int = 3
    num_classes: int | None = None


class MLPDenoiser(nn.Module):
    """:math:`\\epsilon_\\theta(x_t, t[, y])` for points: an MLP with the time embedding added to every hidden layer."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = cfg = config
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.time_mlp = nn.Sequential(nn.Linear(64, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden))
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.hidden) if cfg.num_classes else None
        self.layers = nn.ModuleList([nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.num_layers)])
        self.out = nn.Linear(cfg.hidden, cfg.dim)

    def forward(self, x, t, y=None):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x: expected shape (N, {self.config.dim}), got {getattr(x, 'shape', type(x))}")
        t = _timesteps_for(t, x)
        if t.numel() > 1 and bool((t == t[0]).all()):
            # A sampler passes one timestep for the whole batch: embed it once and broadcast (a quarter of the
            # cost of a 256-point call, which a 1000-step slider demo pays 1000 times).
            t = t[:1]
        emb = self.time_mlp(timestep_embedding(t, 64))
        if self.class_emb is not None:
            y = torch.full((x.shape[0],), self.config.num_classes, device=x.device) if y is None else y
            emb = emb + self.class_emb(y)
        h = self.inp(x)
        for layer in self.layers:
            h = layer(F.silu(h + emb))
        return self.out(F.silu(h))


@dataclass
class ClassifierConfig:
    in_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple = (1, 2, 2)
    num_classes: int = 4
    time_conditional: bool = True
    groups: int = 8
    attribute_heads: tuple = ()  # sizes of extra heads trained jointly (e.g. colour, row, column, size)


class Classifier(nn.Module):
    r"""Shapes classifier: logits of :math:`p_\phi(y \mid x_t, t)` (noise-aware) or :math:`p(y \mid x)` (clean).

    A UNet encoder (residual blocks, stride-2 downsampling), global average pooling and a
    linear head. :meth:`features` returns the pooled features (the metrics' feature space).
    """

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = cfg = config
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels if cfg.time_conditional else None
        if emb_dim:
            self.time_mlp = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        self.blocks, self.downsample = nn.ModuleList(), nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            self.blocks.append(ResBlock(prev, c, emb_dim, cfg.groups))
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < len(ch) - 1 else nn.Identity())
            prev = c
        self.norm_out = nn.GroupNorm(cfg.groups, ch[-1])
        self.head = nn.Linear(ch[-1], cfg.num_classes)
        # Extra heads make the pooled features encode every attribute, not only the class,
        # which is what a feature space for Frechet distance and precision/recall needs.
        self.attribute_head = nn.Linear(ch[-1], sum(cfg.attribute_heads)) if cfg.attribute_heads else None

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def features(self, x, t=None):
        cfg = self.config
        _check_image_input(x, cfg.in_channels)
        emb = None
        if cfg.time_conditional:
            if t is None:
                raise ValueError("t: this classifier is noise-aware (time_conditional=True) and needs timesteps t")
            emb = self.time_mlp(timestep_embedding(_timesteps_for(t, x), cfg.base_channels))
        h = self.conv_in(x)
        for block, down in zip(self.blocks, self.downsample):
            h = down(block(h, emb))
        return F.silu(self.norm_out(h)).mean(dim=(2, 3))

    def forward(self, x, t=None):
        return self.head(self.features(x, t))

    def attribute_logits(self, x, t=None) -> list[torch.Tensor]:
        """Logits of every head: [class, *attribute_heads], each (N, size)."""
        f = self.features(x, t)
        out = [self.head(f)]
        if self.attribute_head is not None:
            out += list(self.attribute_head(f).split(list(self.config.attribute_heads), dim=1))
        return out


MODELS = {
    "UNet": (UNet, UNetConfig),
    "MLPDenoiser": (MLPDenoiser, MLPConfig),
    "Classifier": (Classifier, ClassifierConfig),
}


def build_model(kind: str, config: dict) -> nn.Module:
    """Rebuild a model from its class name and plain-JSON config (lists become tuples)."""
    if kind not in MODELS:
        raise ValueError(f"kind: expected one of {sorted(MODELS)}, got {kind!r}")
    cls, cfg_cls = MODELS[kind]
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        hints = "; ".join(f"{k!r} (did you mean {c[0]!r}?)" if c else repr(k) for k, c in close.items())
        raise TypeError(f"config: expected fields of {cfg_cls.__name__} {sorted(known)}, got unknown {hints}")
    cfg = cfg_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return cls(cfg)


@dataclass
class VQVAEConfig:
    in_channels: int = 3
    channels: tuple = (32, 64)        # one stride-2 downsampling per entry: 16x16 -> 4x4 with two
    latent_dim: int = 16              # D; for LFQ the number of bits, so num_codes = 2 ** latent_dim
    num_codes: int = 256              # K
    quantizer: str = "vq"             # "vq" (nearest code) or "lfq" (lookup-free, MAGVIT-v2)
    beta: float = 0.25
    ema: bool = False
    restart_dead_codes: bool = False
    entropy_weight: float = 0.1       # LFQ's entropy penalty (0: off)
    groups: int = 8


class VQVAE(nn.Module):
    r"""x -> encoder -> z_e -> quantizer -> z_q -> decoder -> x_hat (the notes' VQ-VAE pipeline).

    :meth:`training_loss` returns :math:`\|x-\hat x\|^2` + codebook + commitment terms (+ LFQ's entropy penalty)
    and a dict of the parts. Latent grids are (B, D, h, w); the quantizer sees vectors on the last axis.
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        from .quantize import VectorQuantizer

        self.config = cfg = config
        if cfg.quantizer not in ("vq", "lfq"):
            raise ValueError(f"quantizer: expected 'vq' or 'lfq', got {cfg.quantizer!r}")
        if cfg.quantizer == "lfq" and cfg.num_codes != 2**cfg.latent_dim:
            raise ValueError(f"num_codes: LFQ's codebook is {{-1, 1}}^D, so expected 2**latent_dim = "
                             f"{2 ** cfg.latent_dim}, got {cfg.num_codes}")
        ch = list(cfg.channels)
        enc = [nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)]
        prev = ch[0]
        for c in ch:
            enc += [ResBlock(prev, c, None, cfg.groups), nn.Conv2d(c, c, 4, stride=2, padding=1)]
            prev = c
        enc += [nn.GroupNorm(cfg.groups, prev), nn.SiLU(), nn.Conv2d(prev, cfg.latent_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(cfg.latent_dim, ch[-1], 3, padding=1)]
        prev = ch[-1]
        for c in reversed(ch):
            dec += [ResBlock(prev, c, None, cfg.groups), nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(c, c, 3, padding=1)]
            prev = c
        dec += [nn.GroupNorm(cfg.groups, prev), nn.SiLU(), nn.Conv2d(prev, cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.quantizer = (VectorQuantizer(cfg.num_codes, cfg.latent_dim, cfg.beta, cfg.ema,
                                          restart_dead_codes=cfg.restart_dead_codes) if cfg.quantizer == "vq" else None)

    def encode(self, x):
        _check_image_input(x, self.config.in_channels)
        return self.encoder(x)

    def quantize(self, z_e):
        """(z_q straight-through (B, D, h, w), indices (B, h, w), {loss parts})."""
        from .quantize import lfq_entropy_loss, lfq_quantize, vq_losses

        z = z_e.permute(0, 2, 3, 1)
        if self.quantizer is not None:
            out = self.quantizer(z)
            parts = {"codebook": out.codebook_loss, "commitment": out.commitment_loss}
            z_q, idx = out.z_q, out.indices
        else:
            z_q, idx = lfq_quantize(z)
            _, commitment = vq_losses(z, z_q.detach(), self.config.beta)
            parts = {"commitment": commitment}
            if self.config.entropy_weight > 0:
                ent, _ = lfq_entropy_loss(z)
                parts["entropy"] = self.config.entropy_weight * ent
        return z_q.permute(0, 3, 1, 2), idx, parts

    def decode(self, z_q):
        return self.decoder(z_q)

    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last convolution: VQGAN's :math:`G_L`, where the adaptive weight compares gradients."""
        return self.decoder[-1].weight

    def codes_to_latents(self, indices):
        """(B, h, w) code ids -> (B, D, h, w) quantized latents."""
        from .quantize import lfq_codes

        book = self.quantizer.codebook if self.quantizer is not None else lfq_codes(self.config.latent_dim).to(indices.device)
        return F.embedding(indices, book).permute(0, 3, 1, 2)

    def forward(self, x):
        z_q, _, _ = self.quantize(self.encode(x))
        return self.decode(z_q)

    def training_loss(self, x):
        z_e = self.encode(x)
        z_q, idx, parts = self.quantize(z_e)
        x_hat = self.decode(z_q)
        parts = {"reconstruction": F.mse_loss(x_hat, x), **parts}
        return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}, idx


MODELS["VQVAE"] = (VQVAE, VQVAEConfig)


# -- stage two of VQGAN: an autoregressive prior over code indices -----------------------------------------------
@dataclass
class GPTConfig:
    vocab_size: int = 256      # number of codes K
    block_size: int = 64       # sequence length h*w (raster order)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position i attends to positions <= i only."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd: expected a multiple of n_head={cfg.n_head}, got {cfg.n_embd}")
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x):
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.n_head)
        # is_causal masks the upper triangle: softmax weight 0 on every later token
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class GPTBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.n_embd), nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPTPrior(nn.Module):
    r"""VQGAN's stage two: :math:`p(s) = \prod_i p(s_i \mid s_{<i})` over the code indices s of an image in raster
    order, a small decoder-only transformer (as nanoGPT). A start token (id ``vocab_size``) precedes the sequence,
    so the first code has a distribution too: ``forward(idx)`` with idx (B, n) codes returns (B, n, K) logits where
    position i predicts code i from codes < i.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, cfg.n_embd)  # + start token
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
        nn.init.normal_(self.pos_emb, std=0.02)
        self.blocks = nn.ModuleList(GPTBlock(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if idx.ndim != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"idx: expected (B, n) integer code ids, got {tuple(idx.shape)} {idx.dtype}")
        if idx.shape[1] > cfg.block_size:
            raise ValueError(f"idx: expected at most block_size={cfg.block_size} codes, got {idx.shape[1]}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= cfg.vocab_size):
            raise ValueError(f"idx: expected code ids in [0, {cfg.vocab_size}), got [{int(idx.min())}, {int(idx.max())}]")
        start = torch.full((idx.shape[0], 1), cfg.vocab_size, dtype=torch.long, device=idx.device)
        tokens = torch.cat([start, idx.long()], dim=1)[:, : idx.shape[1]]  # shift right: position i sees < i
        x = self.tok_emb(tokens) + self.pos_emb[:, : tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per code (nats), the stage-two training loss."""
        logits = self.forward(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), idx.reshape(-1).long())

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None, generator=None,
               length: int | None = None) -> torch.Tensor:
        r"""Draw n code sequences one code at a time from :math:`\text{softmax}(\text{logits}/T)` restricted to the
        ``top_k`` most likely codes. Returns (n, length) ids (default length: block_size)."""
        cfg = self.config
        length = cfg.block_size if length is None else length
        if temperature <= 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        if top_k is not None and not 1 <= top_k <= cfg.vocab_size:
            raise ValueError(f"top_k: expected None or an integer in [1, {cfg.vocab_size}], got {top_k}")
        device = self.head.weight.device
        idx = torch.zeros(n, 0, dtype=torch.long, device=device)
        for i in range(length):
            # recomputing the prefix each step (no KV cache) keeps this readable; 64 steps of a 4-layer net are cheap
            padded = torch.cat([idx, torch.zeros(n, 1, dtype=torch.long, device=device)], dim=1)
            logits = self.forward(padded)[:, i].float() / temperature
            if top_k is not None:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = logits.softmax(-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


MODELS["GPTPrior"] = (GPTPrior, GPTConfig)


# -- Latent Diffusion (notebook 06): a caption encoder and a UNet that attends to it --------------------------------
@dataclass
class CaptionUNetConfig:
    in_channels: int = 4               # latent channels (3 for a pixel-space model)
    base_channels: int = 32
    channel_mults: tuple = (1, 2)
    attention_levels: tuple = (True, True)  # a SpatialTransformer at each level (plus one in the middle)
    context_dim: int = 64              # width of the caption tokens tau_theta(y)
    heads: int = 4
    attention: str = "standard"        # "standard": Q from the image, K, V from the caption; "swapped": the reverse
    vocab_size: int = 20               # len(course_lib.data.VOCAB)
    caption_length: int = 11           # CAPTION_LENGTH
    caption_layers: int = 2
    groups: int = 8


class CaptionEncoder(nn.Module):
    r""":math:`\tau_\theta`: caption token ids (B, L) -> tokens (B, L+1, dim) and a key mask (B, L+1).

    Token embeddings plus learned positions, then pre-norm self-attention layers that ignore ``<pad>`` (id 0).
    Position 0 is a learned start token that is always attendable, so the empty caption (all ``<pad>``), which
    classifier-free guidance uses as "no condition", still gives well-defined attention.
    """

    def __init__(self, vocab_size: int, length: int, dim: int, layers: int = 2, heads: int = 4):
        super().__init__()
        self.length = length
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_emb = nn.Parameter(torch.zeros(1, length + 1, dim))
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.start, std=0.02)
        self.layers = nn.ModuleList(nn.ModuleList([nn.LayerNorm(dim), CrossAttention(dim, None, heads, dim // heads),
                                                   nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(),
                                                                                    nn.Linear(4 * dim, dim))])
                                    for _ in range(layers))
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor):
        if tokens.ndim != 2 or tokens.shape[1] != self.length or tokens.dtype != torch.long:
            raise ValueError(f"tokens: expected (B, {self.length}) long caption ids, got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.tok_emb.num_embeddings:
            raise ValueError(f"tokens: expected ids in [0, {self.tok_emb.num_embeddings}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        b = tokens.shape[0]
        x = torch.cat([self.start.expand(b, -1, -1), self.tok_emb(tokens)], dim=1) + self.pos_emb
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=tokens.device), tokens != 0], dim=1)
        for ln1, attn, ln2, ff in self.layers:
            x = x + attn(ln1(x), mask=mask)
            x = x + ff(ln2(x))
        return self.norm_out(x), mask


class CaptionUNet(nn.Module):
    r"""Latent Diffusion's denoiser :math:`\epsilon_\theta(z_t, t, \tau_\theta(y))`: a UNet whose levels end in
    :class:`course_lib.attention.SpatialTransformer` blocks that cross-attend to the caption tokens, trained jointly
    with its :class:`CaptionEncoder`. ``forward(z_t, t, tokens=None)``; ``tokens=None`` is the empty caption
    (unconditional). :meth:`transformers` lists the attention layers by name, for attention maps.
    """

    def __init__(self, config: CaptionUNetConfig):
        super().__init__()
        from .attention import SpatialTransformer

        self.config = cfg = config
        if cfg.attention not in ("standard", "swapped"):
            raise ValueError(f"attention: expected 'standard' or 'swapped', got {cfg.attention!r}")
        if len(cfg.attention_levels) != len(cfg.channel_mults):
            raise ValueError(f"attention_levels: expected one flag per level ({len(cfg.channel_mults)}), got "
                             f"{cfg.attention_levels}")
        swapped = cfg.attention == "swapped"
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.caption_encoder = CaptionEncoder(cfg.vocab_size, cfg.caption_length, cfg.context_dim, cfg.caption_layers,
                                              cfg.heads)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        def st(c, on=True):
            return SpatialTransformer(c, cfg.context_dim, cfg.heads, groups=cfg.groups, swapped=swapped) if on else None

        self.down = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            self.down.append(nn.ModuleDict({
                "res": ResBlock(prev, c, emb_dim, cfg.groups),
                **({"attn": st(c)} if cfg.attention_levels[i] else {}),
                **({"down": nn.Conv2d(c, c, 3, stride=2, padding=1)} if i < len(ch) - 1 else {})}))
            prev = c
        self.mid1, self.mid_attn, self.mid2 = (ResBlock(ch[-1], ch[-1], emb_dim, cfg.groups), st(ch[-1]),
                                               ResBlock(ch[-1], ch[-1], emb_dim, cfg.groups))
        self.up = nn.ModuleList()
        for i in reversed(range(len(ch))):
            self.up.append(nn.ModuleDict({
                "res": ResBlock(prev + ch[i], ch[i], emb_dim, cfg.groups),
                **({"attn": st(ch[i])} if cfg.attention_levels[i] else {}),
                **({"up": nn.Conv2d(ch[i], ch[i - 1], 3, padding=1)} if i > 0 else {})}))
            prev = ch[i - 1] if i > 0 else ch[i]
        self.norm_out = nn.GroupNorm(cfg.groups, ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def transformers(self) -> dict:
        """{name: SpatialTransformer} in the order the forward pass meets them (name says level and resolution)."""
        out = {}
        n = len(self.down)
        for i, blk in enumerate(self.down):
            if "attn" in blk:
                out[f"down{i}"] = blk["attn"]
        out["mid"] = self.mid_attn
        for j, blk in enumerate(self.up):
            if "attn" in blk:
                out[f"up{n - 1 - j}"] = blk["attn"]
        return out

    def forward(self, x, t, tokens=None):
        cfg = self.config
        _check_image_input(x, cfg.in_channels)
        factor = 2 ** (len(cfg.channel_mults) - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"x: expected H and W divisible by {factor}, got {tuple(x.shape[-2:])}")
        if tokens is None:
            tokens = torch.zeros(x.shape[0], cfg.caption_length, dtype=torch.long, device=x.device)
        if tokens.shape[0] != x.shape[0]:
            raise ValueError(f"tokens: expected one caption per image ({x.shape[0]}), got {tuple(tokens.shape)}")
        context, mask = self.caption_encoder(tokens)
        emb = self.time_mlp(timestep_embedding(_timesteps_for(t, x), cfg.base_channels))
        h = self.conv_in(x)
        skips = []
        for blk in self.down:
            h = blk["res"](h, emb)
            if "attn" in blk:
                h = blk["attn"](h, context, mask)
            skips.append(h)
            if "down" in blk:
                h = blk["down"](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), context, mask), emb)
        for blk in self.up:
            h = blk["res"](torch.cat([h, skips.pop()], dim=1), emb)
            if "attn" in blk:
                h = blk["attn"](h, context, mask)
            if "up" in blk:
                h = blk["up"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


MODELS["CaptionUNet"] = (CaptionUNet, CaptionUNetConfig)
