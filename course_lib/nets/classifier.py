r"""The shapes classifier: :math:`p_\phi(y \mid x_t, t)` for classifier guidance (``time_conditional=True``) or the
clean classifier whose features ``course_lib.metrics`` measures and whose trunk is the course's LPIPS backbone."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import ResBlock, TimeEmbedding, _check_image_input, _timesteps_for

__all__ = ["ClassifierConfig", "Classifier"]


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
            self.time_mlp = TimeEmbedding(cfg.base_channels, emb_dim)
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
            emb = self.time_mlp(_timesteps_for(t, x))
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
