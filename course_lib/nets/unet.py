r"""The image noise predictors: :class:`UNet` (:math:`\epsilon_\theta(x_t, t[, y])`, class-conditional with label
dropout) and Latent Diffusion's :class:`CaptionUNet` (:math:`\epsilon_\theta(z_t, t, \tau_\theta(y))`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..attention import SpatialTransformer
from .blocks import NUM_TIMESTEPS, ResBlock, TimeEmbedding, _check_image_input, _timesteps_for
from .caption import CaptionEncoder

__all__ = ["UNetConfig", "UNet", "CaptionUNetConfig", "CaptionUNet", "encoder_pass"]


@dataclass
class UNetConfig:
    in_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple = (1, 2)
    num_res_blocks: int = 2
    attention_at_lowest: bool = True   # self-attention in the middle block
    num_classes: int | None = None     # class embedding; index num_classes means "no label"
    groups: int = 8
    dropout: float = 0.0


class UNet(nn.Module):
    r"""Time-conditioned UNet :math:`\epsilon_\theta(x_t, t, y, c)`.

    forward(x (N,C,H,W), t (N,) or scalar, y (N,) class ids or None).
    With ``num_classes`` set, ``y=None`` (or entries equal to ``num_classes``) means unconditional:
    the same network serves conditional and unconditional sampling, hence classifier-free guidance.
    H and W must be divisible by 2^(len(channel_mults)-1).
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.time_mlp = TimeEmbedding(cfg.base_channels, emb_dim)
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
        # self-attention over the 8x8 map: the wrapper without projections, LayerNorms or feed-forward (see
        # SpatialTransformer for the extra GN(x) term this trained model has)
        self.mid_attn = (SpatialTransformer(ch[-1], None, heads=4, groups=cfg.groups, projections=False,
                                            layer_norm=False, feed_forward=False) if cfg.attention_at_lowest else None)
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

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The label that means "no label" (index ``num_classes``), one per sample: what label dropout trains and
        classifier-free guidance's unconditional branch passes."""
        if self.config.num_classes is None:
            raise ValueError("null_condition: expected a class-conditional UNet (config.num_classes), got None")
        return torch.full((n,), self.config.num_classes, dtype=torch.long, device=device)

    def forward(self, x, t, y=None):
        cfg = self.config
        _check_image_input(x, cfg.in_channels, levels=len(cfg.channel_mults))
        t = _timesteps_for(t, x)
        emb = self.time_mlp(t)
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
            h = self.mid_attn(h)
        h = self.mid2(h, emb)
        for blocks, up in zip(self.up, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for b in blocks:
                h = b(h, emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class CaptionUNetConfig:
    in_channels: int = 4               # latent channels (3 for a pixel-space model)
    base_channels: int = 32
    channel_mults: tuple = (1, 2)
    attention_levels: tuple = (True, True)  # a SpatialTransformer at each level (plus one in the middle)
    context_dim: int = 64              # width of the caption tokens tau_theta(y)
    num_heads: int = 4
    attention: str = "standard"        # "standard": Q from the image, K, V from the caption; "swapped": the reverse,
    #                                    the per-word outputs averaged onto every pixel; "swapped_scatter": the
    #                                    reverse, each word's output sent where it looked (A read column-wise)
    vocab_size: int = 20               # len(course_lib.data.VOCAB)
    caption_length: int = 11           # CAPTION_LENGTH
    caption_layers: int = 2
    groups: int = 8
    out_channels: int | None = None    # channels predicted (default in_channels); a super-resolution model sees
    #                                    the noisy image and the upsampled low-resolution one stacked, in = 2 x out
    level_embedding: bool = False      # a second sinusoidal embedding, of the augmentation level in [0, 1]
    #                                    (Imagen's noise-conditioning augmentation), added to the time embedding
    prediction: str = "eps"            # what the output is: the noise ("eps") or the velocity v ("v",
    #                                    course_lib.diffusion.v_target); samplers convert v with eps_fn_from_v


class CaptionUNet(nn.Module):
    r"""Latent Diffusion's denoiser :math:`\epsilon_\theta(z_t, t, \tau_\theta(y))`: a UNet whose levels end in
    :class:`course_lib.attention.SpatialTransformer` blocks that cross-attend to the caption tokens, trained jointly
    with its :class:`CaptionEncoder`. ``forward(z_t, t, tokens=None)``; ``tokens=None`` is the empty caption
    (unconditional). :meth:`transformers` lists the attention layers by name, for attention maps.
    """

    def __init__(self, config: CaptionUNetConfig):
        super().__init__()
        self.config = cfg = config
        routes = {"standard": None, "swapped": "mean", "swapped_scatter": "scatter"}  # SwappedCrossAttention's route
        if cfg.attention not in routes:
            raise ValueError(f"attention: expected one of {tuple(routes)}, got {cfg.attention!r}")
        if cfg.prediction not in ("eps", "v"):
            raise ValueError(f"prediction: expected 'eps' or 'v', got {cfg.prediction!r}")
        if len(cfg.attention_levels) != len(cfg.channel_mults):
            raise ValueError(f"attention_levels: expected one flag per level ({len(cfg.channel_mults)}), got "
                             f"{cfg.attention_levels}")
        swapped = routes[cfg.attention]
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.caption_encoder = CaptionEncoder(cfg.vocab_size, cfg.caption_length, cfg.context_dim, cfg.caption_layers,
                                              cfg.num_heads)
        self.time_mlp = TimeEmbedding(cfg.base_channels, emb_dim)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)

        def st(c, on=True):
            return SpatialTransformer(c, cfg.context_dim, cfg.num_heads, groups=cfg.groups, swapped=swapped) if on else None

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
        self.conv_out = nn.Conv2d(ch[0], cfg.out_channels or cfg.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.level_mlp = TimeEmbedding(cfg.base_channels, emb_dim) if cfg.level_embedding else None

    def transformers(self) -> dict:
        """{name: SpatialTransformer} in the order the forward pass meets them (name says level and resolution);
        the names are the ones an :class:`~course_lib.attention.AttentionRecorder` records under."""
        n = len(self.down)
        down = {f"down{i}": blk["attn"] for i, blk in enumerate(self.down) if "attn" in blk}
        up = {f"up{n - 1 - j}": blk["attn"] for j, blk in enumerate(self.up) if "attn" in blk}
        return {**down, "mid": self.mid_attn, **up}

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The empty caption (all ``<pad>``), one per sample: what caption dropout trains and classifier-free
        guidance's unconditional branch passes (``tokens=None`` means the same)."""
        return torch.zeros(n, self.config.caption_length, dtype=torch.long, device=device)

    def forward(self, x, t, tokens=None, recorder=None, down_residuals=None, mid_residual=None, level=None):
        """``recorder`` (:class:`course_lib.attention.AttentionRecorder`), if given, receives every cross-attention
        layer's weights of this call under the names of :meth:`transformers`.

        ``down_residuals`` (one tensor per level, shaped like that level's skip) and ``mid_residual`` (shaped like the
        middle block's output) are added to the skips and to the middle block, as diffusers'
        ``down_block_additional_residuals`` and ``mid_block_additional_residual``: where a
        :class:`course_lib.controlnet.ControlNet` speaks to this frozen network.

        ``level`` (one augmentation level in [0, 1] per sample) is required with ``config.level_embedding`` and
        refused without it."""
        cfg = self.config
        _check_image_input(x, cfg.in_channels, levels=len(cfg.channel_mults))
        if tokens is None:
            tokens = self.null_condition(x.shape[0], x.device)
        if tokens.shape[0] != x.shape[0]:
            raise ValueError(f"tokens: expected one caption per image ({x.shape[0]}), got {tuple(tokens.shape)}")
        context, mask = self.caption_encoder(tokens)
        record = self._record_fn(recorder)
        emb = self.time_mlp(_timesteps_for(t, x))
        if self.level_mlp is not None:
            if level is None:
                raise ValueError("level: this UNet is conditioned on an augmentation level (config.level_embedding); "
                                 "expected one level in [0, 1] per sample, got None")
            u = torch.as_tensor(level, dtype=torch.float32, device=x.device)
            u = u.expand(x.shape[0]) if u.ndim == 0 else u
            if u.shape != (x.shape[0],) or float(u.min()) < 0 or float(u.max()) > 1:
                raise ValueError(f"level: expected one augmentation level in [0, 1] per sample ({x.shape[0]},), got "
                                 f"{tuple(u.shape)} {u.flatten()[:4].tolist()}")
            emb = emb + self.level_mlp(u * (NUM_TIMESTEPS - 1))  # the time features, on the level scaled to 0..999
        elif level is not None:
            raise ValueError("level: this UNet has no level embedding (config.level_embedding is False), but a level "
                             "was given")
        skips, h = encoder_pass(self, self.conv_in(x), emb, context, mask, record)
        if down_residuals is not None:
            _check_residuals(down_residuals, skips, "down_residuals")
            skips = [s + r for s, r in zip(skips, down_residuals)]
        if mid_residual is not None:
            if not isinstance(mid_residual, torch.Tensor) or mid_residual.shape != h.shape:
                raise ValueError(f"mid_residual: expected shape {tuple(h.shape)} (the middle block's output), got "
                                 f"{tuple(getattr(mid_residual, 'shape', ())) or type(mid_residual).__name__}")
            h = h + mid_residual
        for blk in self.up:
            h = blk["res"](torch.cat([h, skips.pop()], dim=1), emb)
            if "attn" in blk:
                h = blk["attn"](h, context, mask, record(blk["attn"]))
            if "up" in blk:
                h = blk["up"](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))

    def _record_fn(self, recorder):
        """record(st) -> the recorder's slot for that layer (under :meth:`transformers`' names), or None."""
        if recorder is None:
            return lambda st: None
        names = {id(st): name for name, st in self.transformers().items()}  # one naming of the layers
        return lambda st: recorder.layer(names[id(st)])


def encoder_pass(net, h, emb, context, mask, record=lambda st: None):
    """The encoder half of a :class:`CaptionUNet` (its ``down`` levels and middle block) from the features
    ``h = conv_in(x)``: returns (the skips, one per level, taken before each downsampling; the middle block's
    output). ``net`` is the UNet itself or a :class:`course_lib.controlnet.ControlNet`, whose trainable copy has the
    same modules: one pass, two owners."""
    skips = []
    for blk in net.down:
        h = blk["res"](h, emb)
        if "attn" in blk:
            h = blk["attn"](h, context, mask, record(blk["attn"]))
        skips.append(h)
        if "down" in blk:
            h = blk["down"](h)
    h = net.mid2(net.mid_attn(net.mid1(h, emb), context, mask, record(net.mid_attn)), emb)
    return skips, h


def _check_residuals(residuals, targets, name: str) -> None:
    if not isinstance(residuals, (list, tuple)) or len(residuals) != len(targets):
        raise ValueError(f"{name}: expected {len(targets)} tensor(s), one per skip, got "
                         f"{type(residuals).__name__} of {len(residuals) if hasattr(residuals, '__len__') else '?'}")
    for i, (r, s) in enumerate(zip(residuals, targets)):
        if not isinstance(r, torch.Tensor) or r.shape != s.shape:
            raise ValueError(f"{name}[{i}]: expected shape {tuple(s.shape)} (that skip's), got "
                             f"{tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__}")
