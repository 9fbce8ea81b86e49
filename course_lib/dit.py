r"""Notebook 09's measurements around the DiT network (:mod:`course_lib.nets.dit`): the scaling law's correlation and
the paper's own numbers to set beside ours.

DiT's claim (Peebles & Xie 2023, Fig. 8): across model sizes and patch sizes, sample quality follows the network's
forward compute. The course measures it as the Pearson correlation of FD with log Gflops,

.. math:: r = \frac{\sum_i (u_i - \bar u)(v_i - \bar v)}{\sqrt{\sum_i (u_i - \bar u)^2}\,\sqrt{\sum_i (v_i - \bar v)^2}},
          \qquad u_i = \log \mathrm{Gflops}_i,\ v_i = \mathrm{FD}_i

with the Fisher-z interval :math:`\tanh\big(\operatorname{artanh} r \pm z_{0.975}/\sqrt{n - 3}\big)`: at a handful
of models it is wide, and the notebook says so.
"""
from __future__ import annotations

import math

import torch

__all__ = ["PAPER_FID_GFLOPS", "PAPER_CONDITIONING_FID", "pearson", "pearson_interval", "sampling_gflops"]

# The paper's Table 4 (FID-50K at 400K steps, no guidance; Gflops in fvcore's count, one per multiply-add):
# (config, patch size) -> (Gflops, FID). From ../shared/paper-results.md section 8c.
PAPER_FID_GFLOPS = {
    ("S", 8): (0.36, 153.60), ("S", 4): (1.41, 100.41), ("S", 2): (6.06, 68.40),
    ("B", 8): (1.42, 122.74), ("B", 4): (5.56, 68.38), ("B", 2): (23.01, 43.47),
    ("L", 8): (5.01, 118.87), ("L", 4): (19.70, 45.64), ("L", 2): (80.71, 23.33),
    ("XL", 8): (7.39, 106.41), ("XL", 4): (29.05, 43.01), ("XL", 2): (118.64, 19.47),
}
# Its conditioning ablation (XL/2, FID-50K at 400K steps, no guidance): block -> (Gflops, FID).
PAPER_CONDITIONING_FID = {"in_context": (119.4, 35.24), "cross_attention": (137.6, 26.14), "adaln": (118.6, 25.21),
                          "adaln_zero": (118.6, 19.47)}


def _as_vector(values, name: str) -> torch.Tensor:
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if not torch.isfinite(v).all():
        raise ValueError(f"{name}: expected finite numbers, got {v.tolist()}")
    return v


def pearson(x, y) -> float:
    r"""Pearson's r of two equally long sequences (at least 2 values each, neither constant):
    :math:`r = \sum_i (u_i - \bar u)(v_i - \bar v) / \big(\lVert u - \bar u\rVert\,\lVert v - \bar v\rVert\big)`."""
    u, v = _as_vector(x, "x"), _as_vector(y, "y")
    if len(u) != len(v) or len(u) < 2:
        raise ValueError(f"x, y: expected two sequences of one length >= 2, got lengths {len(u)} and {len(v)}")
    du, dv = u - u.mean(), v - v.mean()
    norm = du.norm() * dv.norm()
    if norm == 0:
        raise ValueError("x, y: expected values that vary (a constant sequence has no correlation)")
    return float((du * dv).sum() / norm)


def pearson_interval(r: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""The Fisher-z interval of a correlation r measured on n pairs: :math:`\tanh(\operatorname{artanh} r \pm
    z/\sqrt{n-3})` (n >= 4; r strictly inside (-1, 1))."""
    if not isinstance(n, int) or n < 4:
        raise ValueError(f"n: expected at least 4 pairs (the interval's 1/sqrt(n - 3)), got {n!r}")
    if not -1 < r < 1:
        raise ValueError(f"r: expected a correlation strictly inside (-1, 1), got {r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.5 + confidence / 2)).item()
    half = z / math.sqrt(n - 3)
    return math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)


def sampling_gflops(model_gflops: float, steps: int, guidance: bool = False) -> float:
    """Gflops to sample one image: the network's forward Gflops times the steps, twice with classifier-free guidance
    (conditional and unconditional branch; the autoencoder's one decode is left out, the same for every model)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps: expected a positive number of sampling steps, got {steps!r}")
    if not model_gflops > 0:
        raise ValueError(f"model_gflops: expected a positive number, got {model_gflops}")
    return model_gflops * steps * (2 if guidance else 1)
