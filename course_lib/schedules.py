r"""Noise schedules and sampling sub-sequences.

DDPM fixes variances :math:`\beta_1..\beta_T`. Everything the samplers need is the
cumulative product

.. math::  \bar\alpha_t = \prod_{s=1}^{t} (1 - \beta_s),

which the DDIM paper simply writes :math:`\alpha_t`. Arrays here are 0-indexed:
``alphas_cumprod[t]`` belongs to timestep ``t`` in ``0..T-1`` (the reference code's
convention), so ``alphas_cumprod[0] = 1 - beta_1``.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_positive_int, check_range

__all__ = [
    "linear_betas",
    "cosine_betas",
    "alphas_cumprod",
    "make_alphas_cumprod",
    "timestep_subsequence",
    "SUBSEQUENCE_KINDS",
]


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    r"""DDPM's linear schedule: :math:`\beta_t` evenly spaced from ``beta_start`` to ``beta_end``.

    Ho et al. (2020) use T = 1000, beta from 1e-4 to 0.02. Returned in float64 so that the
    cumulative product over 1000 steps keeps its digits; cast where you use it.
    """
    check_positive_int(num_timesteps, "num_timesteps")
    check_range(beta_start, "beta_start", 0.0, 1.0, low_open=True, high_open=True)
    check_range(beta_end, "beta_end", 0.0, 1.0, low_open=True, high_open=True)
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    r"""Nichol & Dhariwal's cosine schedule.

    .. math:: \bar\alpha(t) = \frac{f(t)}{f(0)},\quad f(t) = \cos^2\!\Big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\Big),
              \quad \beta_t = \min\Big(1 - \frac{\bar\alpha(t)}{\bar\alpha(t-1)},\ \text{max\_beta}\Big)

    ``s`` = 0.008 keeps :math:`\beta_1` from being vanishingly small; ``max_beta`` = 0.999
    stops the last step from being a pure-noise singularity (both as in the paper).
    """
    check_positive_int(num_timesteps, "num_timesteps")
    check_range(s, "s", 0.0, 1.0, high_open=True)
    check_range(max_beta, "max_beta", 0.0, 1.0, low_open=True)

    def f(t):
        return math.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f(i + 1) / f(i), max_beta) for i in range(num_timesteps)]
    return torch.tensor(betas, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    r""":math:`\bar\alpha_t = \prod_{s \le t}(1 - \beta_s)`, one value per timestep (float64)."""
    if not isinstance(betas, torch.Tensor) or betas.ndim != 1:
        raise ValueError(f"betas: expected a 1-D tensor, got {getattr(betas, 'shape', type(betas).__name__)}")
    if betas.numel() == 0:
        raise ValueError("betas: expected at least one value, got an empty tensor")
    if bool(((betas <= 0) | (betas >= 1) | betas.isnan()).any()):
        raise ValueError(f"betas: expected every value in (0, 1), got min {betas.min().item()} max {betas.max().item()}")
    return torch.cumprod(1.0 - betas.double(), dim=0)


def make_alphas_cumprod(schedule: str = "linear", num_timesteps: int = 1000) -> torch.Tensor:
    """``alphas_cumprod`` of a named schedule (``"linear"`` or ``"cosine"``), float32."""
    if schedule == "linear":
        betas = linear_betas(num_timesteps)
    elif schedule == "cosine":
        betas = cosine_betas(num_timesteps)
    else:
        raise ValueError(f"schedule: expected 'linear' or 'cosine', got {schedule!r}")
    return alphas_cumprod(betas).float()


SUBSEQUENCE_KINDS = ("uniform", "quadratic", "trailing")


def timestep_subsequence(num_timesteps: int, num_steps: int, kind: str = "uniform") -> torch.Tensor:
    r"""The sub-sequence :math:`\tau` of timesteps a fast sampler visits, in sampling order (decreasing).

    - ``"uniform"`` (DDIM paper, App. D.2): :math:`\tau_i = \lfloor c\,i \rfloor`, c = T / S, i = 0..S-1;
      the first step lands on 0, the last visited is near T - T/S.
    - ``"quadratic"`` (DDIM paper, used for CIFAR10): :math:`\tau_i = \lfloor c\,i^2 \rfloor` with
      c chosen so the largest is about 0.8 T; more steps near t = 0 where detail forms.
    - ``"trailing"`` (Lin et al. 2024, "Common diffusion noise schedules are flawed"): counts back from
      the last timestep T - 1 in strides of T / S, so sampling starts at the noisiest step.

    Returns a strictly decreasing ``LongTensor`` of length ``num_steps`` with values in [0, T-1].
    """
    check_positive_int(num_timesteps, "num_timesteps")
    check_positive_int(num_steps, "num_steps")
    if num_steps > num_timesteps:
        raise ValueError(f"num_steps: expected at most num_timesteps={num_timesteps}, got {num_steps}")
    if kind == "uniform":
        c = num_timesteps / num_steps
        seq = [int(math.floor(c * i)) for i in range(num_steps)]
    elif kind == "quadratic":
        c = (0.8 * num_timesteps) / max(num_steps - 1, 1) ** 2
        seq = [int(math.floor(c * i * i)) for i in range(num_steps)]
        # At small T/S the squares collide near 0; push duplicates up by one so every step is used.
        for i in range(1, num_steps):
            seq[i] = max(seq[i], seq[i - 1] + 1)
        if seq[-1] > num_timesteps - 1:  # only possible when S is close to T: fall back to uniform
            c = num_timesteps / num_steps
            seq = [int(math.floor(c * i)) for i in range(num_steps)]
    elif kind == "trailing":
        c = num_timesteps / num_steps
        seq = sorted({int(round(num_timesteps - c * i)) - 1 for i in range(num_steps)})
    else:
        raise ValueError(f"kind: expected one of {SUBSEQUENCE_KINDS}, got {kind!r}")
    return torch.tensor(seq[::-1], dtype=torch.long)
