r"""ControlNet (Zhang, Rao & Agrawala, ICCV 2023): a trainable copy of a frozen denoiser's encoder, joined to it by
zero convolutions. For one locked block :math:`\mathcal F(\cdot;\Theta)` the paper's eq. 2 is

.. math:: y_c = \mathcal F(x;\Theta) + \mathcal Z\big(\mathcal F(x + \mathcal Z(c;\Theta_{z1});\Theta_c);\Theta_{z2}\big)

with :math:`\Theta_c` the trainable copy (initialised from :math:`\Theta`), :math:`\mathcal Z` a 1x1 convolution whose
weight and bias start at 0 (:func:`zero_conv`) and :math:`c` the condition brought to the latent grid by
:class:`HintEncoder`. Here the locked network is notebook 06's :class:`~course_lib.nets.CaptionUNet`: the copy is its
encoder (the ``down`` levels and the middle block), the :math:`\mathcal Z(\cdot;\Theta_{z2})` outputs go to its skips
and to its middle block (``down_residuals``, ``mid_residual``), as Stable Diffusion's ControlNet feeds its 12 skips
and middle block. At initialisation every :math:`\mathcal Z` outputs 0, so :math:`y_c = y`: training starts from the
frozen model exactly, and no random noise reaches it.

Composition and scales live in :class:`course_lib.controlnet.ControlledUNet`; this file is the network alone.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .._checks import check_tensor
from .blocks import _check_image_input, _timesteps_for
from .unet import CaptionUNet, CaptionUNetConfig, encoder_pass

__all__ = ["zero_conv", "HintEncoder", "ControlNetConfig", "ControlNet", "VARIANTS", "CONNECTOR_INITS"]

VARIANTS = ("copy", "lite")              # the paper's trainable copy; ControlNet-lite (one conv per block, Fig. 8)
CONNECTOR_INITS = ("zero", "gaussian")   # the paper's connectors; its ablation (Gaussian-initialised 1x1 convs)


def zero_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    r""":math:`\mathcal Z(\cdot;\Theta_z)`: a 1x1 convolution whose weight and bias are 0, so its output is 0 whatever
    comes in, while its weight's gradient :math:`\partial L/\partial W = \sum \partial L/\partial y \cdot x^\top` is not
    (its input x is not 0): the first step moves W, and only then does a gradient reach what lies behind it."""
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _gaussian_(conv: nn.Conv2d) -> nn.Conv2d:
    """The ablation's connector: weights N(0, 1/fan_in) (variance-preserving), bias 0: an ordinary layer, so the
    trainable copy's output reaches the frozen network from the first step."""
    nn.init.normal_(conv.weight, std=1.0 / math.sqrt(conv.weight[0].numel()))
    nn.init.zeros_(conv.bias)
    return conv


class HintEncoder(nn.Module):
    r"""The paper's small network :math:`c_f = \mathcal E(c_i)` that brings the control image to the latent grid
    (there 512x512 -> 64x64 with 4x4 stride-2 convolutions of 16, 32, 64, 128 channels), here 32x32 -> 8x8: a 3x3
    convolution to ``channels[0]``, then one 4x4 stride-2 convolution per halving, SiLU between, and the zero
    convolution :math:`\mathcal Z(\cdot;\Theta_{z1})` to the width of the features it is added to.

    forward(hint (B, hint_channels, S, S)) -> (B, out_channels, S / 2^downsamples, S / 2^downsamples).
    """

    def __init__(self, hint_channels: int, out_channels: int, downsamples: int = 2, base_channels: int = 16):
        super().__init__()
        chans = [base_channels * 2 ** i for i in range(downsamples + 1)]  # 16, 32, 64
        layers = [nn.Conv2d(hint_channels, chans[0], 3, padding=1), nn.SiLU()]
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.zero_conv = zero_conv(chans[-1], out_channels)  # Z(c; Theta_z1)
        self.hint_channels, self.downsamples = hint_channels, downsamples

    def forward(self, hint: torch.Tensor) -> torch.Tensor:
        return self.zero_conv(self.net(hint))


@dataclass
class ControlNetConfig:
    base: dict = field(default_factory=lambda: asdict(CaptionUNetConfig()))  # the locked CaptionUNet's config
    hint_channels: int = 1        # channels of the control image (1: a mask or an edge map)
    hint_size: int = 32           # its side in pixels (the image's, not the latent's)
    hint_downsamples: int = 2     # halvings from the hint to the latent grid (32 -> 8 for f = 4 latents)
    variant: str = "copy"         # "copy": the paper's trainable copy; "lite": one conv per block
    connector_init: str = "zero"  # "zero": the paper's; "gaussian": its ablation


class ControlNet(nn.Module):
    r"""The trainable half of :math:`y_c`: ``ControlNet(base, hint_channels)`` copies ``base``'s encoder and middle
    block (its weights, not fresh ones: :math:`\Theta_c \leftarrow \Theta`), adds :math:`\mathcal Z(c;\Theta_{z1})`
    to the copy's input features and puts one :math:`\mathcal Z(\cdot;\Theta_{z2})` on every skip output and on the
    middle block.

    ``forward(x_t, t, hint, context=None)`` -> ``(down_residuals, mid_residual)``, shaped like ``base``'s skips
    and middle block: what :meth:`CaptionUNet.forward` adds (diffusers' ``down_block_res_samples``,
    ``mid_block_res_sample``). ``context`` is the base's own condition, the caption ids (None = empty caption);
    the copy reads it through a locked copy of the base's caption encoder (Stable Diffusion's ControlNet reads the
    same frozen text embeddings as the UNet), kept here so that a ControlNet file loads on its own.

    ``variant="lite"`` is the paper's ControlNet-lite: no copy, one 3x3 convolution per block on
    :math:`x + \mathcal Z(c)` (no time, no caption), then the same zero convolutions. ``connector_init="gaussian"``
    is the ablation in which every :math:`\mathcal Z` starts as an ordinary Gaussian-initialised 1x1 convolution.
    """

    def __init__(self, base: CaptionUNet, hint_channels: int = 1, hint_size: int = 32, hint_downsamples: int = 2,
                 variant: str = "copy", connector_init: str = "zero"):
        super().__init__()
        if not isinstance(base, CaptionUNet):
            raise TypeError(f"base: expected the frozen CaptionUNet to control (e.g. checkpoints.load('shapes_ldm32')), "
                            f"got {type(base).__name__}")
        if isinstance(hint_channels, bool) or not isinstance(hint_channels, int) or hint_channels < 1:
            raise ValueError(f"hint_channels: expected a positive int, got {hint_channels!r}")
        if variant not in VARIANTS:
            raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
        if connector_init not in CONNECTOR_INITS:
            raise ValueError(f"connector_init: expected one of {CONNECTOR_INITS}, got {connector_init!r}")
        bcfg = base.config
        levels = len(bcfg.channel_mults)
        self.config = ControlNetConfig(asdict(bcfg), hint_channels, hint_size, hint_downsamples, variant,
                                       connector_init)
        ch = [bcfg.base_channels * m for m in bcfg.channel_mults]
        if isinstance(hint_downsamples, bool) or not isinstance(hint_downsamples, int) or hint_downsamples < 0:
            raise ValueError(f"hint_downsamples: expected an int >= 0 (log2 of image side / latent side), got "
                             f"{hint_downsamples!r}")
        self.hint_encoder = HintEncoder(hint_channels, ch[0], hint_downsamples)
        if variant == "copy":
            # Theta_c <- Theta: the copy starts as the locked encoder, and trains (the base may be frozen already)
            for name in ("time_mlp", "conv_in", "down", "mid1", "mid_attn", "mid2"):
                setattr(self, name, copy.deepcopy(getattr(base, name)).requires_grad_(True))
            # the base's caption encoder, locked: the copy reads the same caption tokens as the base
            self.caption_encoder = copy.deepcopy(base.caption_encoder).requires_grad_(False)
        else:
            self.conv_in = nn.Conv2d(bcfg.in_channels, ch[0], 3, padding=1)
            self.lite_blocks = nn.ModuleList(
                [nn.Conv2d(ch[max(i - 1, 0)], c, 3, stride=2 if i > 0 else 1, padding=1) for i, c in enumerate(ch)])
            self.lite_mid = nn.Conv2d(ch[-1], ch[-1], 3, padding=1)
        # Z(.; Theta_z2): one per skip, one for the middle block (diffusers: controlnet_down_blocks, controlnet_mid_block)
        self.controlnet_down_blocks = nn.ModuleList([zero_conv(c, c) for c in ch])
        self.controlnet_mid_block = zero_conv(ch[-1], ch[-1])
        if connector_init == "gaussian":
            for conv in (self.hint_encoder.zero_conv, *self.controlnet_down_blocks, self.controlnet_mid_block):
                _gaussian_(conv)
        self._levels = levels

    @classmethod
    def from_config(cls, config: ControlNetConfig) -> "ControlNet":
        """The architecture of a saved ControlNet (weights to be loaded): a fresh base of the recorded config."""
        base = CaptionUNet(CaptionUNetConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                for k, v in config.base.items()}))
        return cls(base, config.hint_channels, config.hint_size, config.hint_downsamples, config.variant,
                   config.connector_init)

    def connectors(self) -> dict:
        """{name: conv} of every connector Z, in the order the forward pass meets them: the hint's Z(c; Theta_z1),
        then one Z(.; Theta_z2) per skip and the middle block's."""
        return {"hint": self.hint_encoder.zero_conv,
                **{f"down{i}": z for i, z in enumerate(self.controlnet_down_blocks)}, "mid": self.controlnet_mid_block}

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The empty caption, as the base's: ``context=None`` means the same."""
        return torch.zeros(n, self.config.base["caption_length"], dtype=torch.long, device=device)

    def check_hint(self, hint, n: int) -> torch.Tensor:
        cfg = self.config
        check_tensor(hint, "hint", floating=True)
        want = (n, cfg.hint_channels, cfg.hint_size, cfg.hint_size)
        if tuple(hint.shape) != want:
            raise ValueError(f"hint: expected shape {want} (one {cfg.hint_channels}-channel {cfg.hint_size}x"
                             f"{cfg.hint_size} control image per sample, e.g. a mask in [0, 1]), got {tuple(hint.shape)}")
        return hint

    def forward(self, x_t, t, hint, context=None):
        base = self.config.base
        _check_image_input(x_t, base["in_channels"], levels=self._levels)
        hint = self.check_hint(hint, x_t.shape[0])
        c = self.hint_encoder(hint)                           # Z(c; Theta_z1), on the latent grid
        if c.shape[-2:] != x_t.shape[-2:]:
            raise ValueError(f"hint: its {self.config.hint_size}x{self.config.hint_size} grid halved "
                             f"{self.config.hint_downsamples} times is {tuple(c.shape[-2:])}, but x_t is "
                             f"{tuple(x_t.shape[-2:])}; expected hint_downsamples = log2(hint side / x_t side)")
        h = self.conv_in(x_t) + c                             # x + Z(c; Theta_z1) (after the first conv, as the
        #                                                       reference code adds it)
        if self.config.variant == "copy":
            tokens = self.null_condition(x_t.shape[0], x_t.device) if context is None else context
            if tokens.shape[0] != x_t.shape[0]:
                raise ValueError(f"context: expected one caption per sample ({x_t.shape[0]}), got {tuple(tokens.shape)}")
            ctx, mask = self.caption_encoder(tokens)
            emb = self.time_mlp(_timesteps_for(t, x_t))
            skips, mid = encoder_pass(self, h, emb, ctx, mask)  # F(x + Z(c); Theta_c)
        else:
            skips = []
            for conv in self.lite_blocks:                       # one conv per block: no time, no caption
                h = torch.nn.functional.silu(conv(h))
                skips.append(h)
            mid = torch.nn.functional.silu(self.lite_mid(h))
        down = [z(s) for z, s in zip(self.controlnet_down_blocks, skips)]  # Z(.; Theta_z2) on every skip
        return down, self.controlnet_mid_block(mid)                        # ... and on the middle block
