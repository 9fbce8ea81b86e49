r"""The noise predictor of the 2-D toy data: :class:`MLPDenoiser`, :math:`\epsilon_\theta(x_t, t[, y])` for points."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import TimeEmbedding, _timesteps_for

__all__ = ["MLPConfig", "MLPDenoiser"]


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
        self.time_mlp = TimeEmbedding(64, cfg.hidden)
        self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.hidden) if cfg.num_classes else None
        self.layers = nn.ModuleList([nn.Linear(cfg.hidden, cfg.hidden) for _ in range(cfg.num_layers)])
        self.out = nn.Linear(cfg.hidden, cfg.dim)

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The label that means "no label" (index ``num_classes``), as for :class:`UNet`."""
        if self.config.num_classes is None:
            raise ValueError("null_condition: expected a class-conditional MLP (config.num_classes), got None")
        return torch.full((n,), self.config.num_classes, dtype=torch.long, device=device)

    def forward(self, x, t, y=None):
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x: expected shape (N, {self.config.dim}), got {getattr(x, 'shape', type(x))}")
        t = _timesteps_for(t, x)
        if t.numel() > 1 and bool((t == t[0]).all()):
            # A sampler passes one timestep for the whole batch: embed it once and broadcast (a quarter of the
            # cost of a 256-point call, which a 1000-step slider demo pays 1000 times).
            t = t[:1]
        emb = self.time_mlp(t)
        if self.class_emb is not None:
            y = torch.full((x.shape[0],), self.config.num_classes, device=x.device) if y is None else y
            emb = emb + self.class_emb(y)
        h = self.inp(x)
        for layer in self.layers:
            h = layer(F.silu(h + emb))
        return self.out(F.silu(h))
