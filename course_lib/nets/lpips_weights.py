r"""LPIPS' learned part, :math:`w_l`: one non-negative weight per channel of each tapped layer (``lin`` in the paper),
shipped as a model of its own so the weights the course's ``LPIPS(net="shapes")`` uses carry a sha256 in the
manifest and a recipe that rebuilds them (``./course train shapes_lpips_lin``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LPIPSWeightsConfig", "LPIPSWeights"]


@dataclass
class LPIPSWeightsConfig:
    channels: tuple = (32, 64, 64)   # the tapped layers' widths (ShapesTrunk of shapes_classifier16)


class LPIPSWeights(nn.Module):
    r""":math:`w_l \in \mathbb R^{C_l}_{\ge 0}` for each layer l, initialised to 1 (the unweighted distance).
    ``forward()`` returns the list :class:`course_lib.perceptual.LPIPS` takes in ``set_weights``."""

    def __init__(self, config: LPIPSWeightsConfig):
        super().__init__()
        self.config = config
        self.weights = nn.ParameterList(nn.Parameter(torch.ones(c)) for c in config.channels)

    def forward(self) -> list[torch.Tensor]:
        return [w.detach() for w in self.weights]
