r"""Toy low-dimensional data, with the exact answers a diffusion model tries to learn.

A Gaussian mixture stays a Gaussian mixture under the forward process
:math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon`: component k with
mean :math:`\mu_k` and std :math:`s` becomes

.. math:: q_t(x_t \mid y{=}k) = \mathcal N\big(\sqrt{\bar\alpha_t}\,\mu_k,\ v_t I\big),\qquad v_t = \bar\alpha_t s^2 + 1 - \bar\alpha_t .

So the noised density, its score, the optimal noise prediction (Tweedie)

.. math:: \epsilon^*(x_t, t) = \mathbb E[\epsilon \mid x_t] = -\sqrt{1-\bar\alpha_t}\,\nabla_{x_t}\log q_t(x_t)

and the class posterior :math:`p(y{=}k \mid x_t) \propto w_k\,\mathcal N(x_t; \sqrt{\bar\alpha_t}\mu_k, v_t I)`
are all closed-form: samplers and guidance can be studied with no model error at all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import as_tensor, check_alpha_bar, check_positive_int, check_tensor

__all__ = ["GaussianMixture", "ring_mixture", "grid_mixture", "swiss_roll", "two_moons"]


def _timestep_index(t, num_timesteps: int) -> torch.Tensor:
    """t as an index into alphas_cumprod: integers in [0, T - 1] (a negative t would wrap to the end of the table)."""
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"t: expected integer timesteps, got {t.dtype}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_timesteps):
        raise ValueError(f"t: expected timesteps in [0, {num_timesteps - 1}], got {int(t.min())}..{int(t.max())}")
    return t


@dataclass
class GaussianMixture:
    """A mixture of isotropic Gaussians with a shared std.

    means:   (K, D) component means :math:`\\mu_k`
    std:     shared standard deviation :math:`s` of every component
    weights: (K,) mixing weights :math:`w_k` (default uniform); normalised on creation
    """

    means: torch.Tensor
    std: float
    weights: torch.Tensor | None = None

    def __post_init__(self):
        self.means = check_tensor(as_tensor(self.means, "means"), "means", ndim=2).float()
        if not (isinstance(self.std, (int, float)) and self.std > 0):
            raise ValueError(f"std: expected a positive float, got {self.std!r}")
        self.std = float(self.std)
        k = self.means.shape[0]
        if self.weights is None:
            self.weights = torch.full((k,), 1.0 / k)
        else:
            w = as_tensor(self.weights, "weights").float()
            if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError(f"weights: expected {k} non-negative values with a positive sum, got {w.tolist()}")
            self.weights = w / w.sum()

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` points x0 ~ p_data and their component labels y; returns (x0 (n, D), y (n,))."""
        check_positive_int(n, "n")
        y = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        x = self.means[y] + self.std * torch.randn(n, self.dim, generator=generator)
        return x, y

    # -- the noised mixture -------------------------------------------------------------
    def _noised(self, x_t: torch.Tensor, alpha_bar):
        """log w_k N(x_t; sqrt(abar) mu_k, v_t I) for every (sample, component), with its pieces."""
        check_tensor(x_t, "x_t", ndim=2, last_dim=self.dim)
        a = check_alpha_bar(alpha_bar, "alpha_bar").to(x_t)
        n = x_t.shape[0]
        if a.numel() == 1:
            a = a.reshape(1, 1).expand(n, 1)
        elif a.shape == (n,):
            a = a[:, None]
        else:
            raise ValueError(f"alpha_bar: expected a float or one value per sample ({n},), got shape {tuple(a.shape)}")
        var = a * self.std**2 + (1 - a)  # v_t, (N, 1)
        diff = x_t[:, None, :] - a.sqrt()[:, :, None] * self.means.to(x_t)[None]  # x_t - sqrt(abar) mu_k, (N, K, D)
        log_joint = (
            -0.5 * (diff**2).sum(-1) / var
            - 0.5 * self.dim * torch.log(2 * math.pi * var)
            + self.weights.to(x_t).log()
        )  # (N, K)
        return log_joint, diff, var, a

    def log_prob(self, x_t: torch.Tensor, alpha_bar=1.0) -> torch.Tensor:
        r""":math:`\log q_t(x_t)` of the noised mixture (alpha_bar = 1 gives the data density). Shape (N,)."""
        log_joint, *_ = self._noised(x_t, alpha_bar)
        return torch.logsumexp(log_joint, dim=1)

    def class_posterior(self, x_t: torch.Tensor, alpha_bar=1.0, log: bool = False) -> torch.Tensor:
        r"""Exact :math:`p(y{=}k \mid x_t)` under the forward process, shape (N, K) (log-probabilities if ``log``)."""
        log_joint, *_ = self._noised(x_t, alpha_bar)
        logp = torch.log_softmax(log_joint, dim=1)
        return logp if log else logp.exp()

    def score(self, x_t: torch.Tensor, alpha_bar=1.0) -> torch.Tensor:
        r""":math:`\nabla_{x_t}\log q_t(x_t) = \sum_k p(k\mid x_t)\,(\sqrt{\bar\alpha_t}\mu_k - x_t)/v_t`, shape (N, D)."""
        return self._score(x_t, alpha_bar)[0]

    def _score(self, x_t, alpha_bar):
        log_joint, diff, var, a = self._noised(x_t, alpha_bar)
        resp = torch.softmax(log_joint, dim=1)  # p(k | x_t), (N, K)
        return -(resp[..., None] * diff).sum(1) / var, a

    def eps_star(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        r"""The exact noise prediction :math:`\epsilon^*(x_t) = -\sqrt{1-\bar\alpha_t}\,\nabla\log q_t(x_t)`, shape (N, D)."""
        score, a = self._score(x_t, alpha_bar)
        return -torch.sqrt(1 - a) * score

    def eps_fn(self, alphas_cumprod: torch.Tensor):
        """An ``eps_fn(x_t, t)`` for the samplers: the exact eps* at integer timestep(s) ``t``."""
        ac = alphas_cumprod.float()

        def eps(x_t, t):
            return self.eps_star(x_t, ac[_timestep_index(t, len(ac))].to(x_t))

        return eps

    def classifier_fn(self, alphas_cumprod: torch.Tensor):
        """A ``classifier(x_t, t) -> logits`` (the exact log p(y | x_t), up to a constant per sample):
        the perfect noise-aware classifier, for guidance with no learned error."""
        ac = alphas_cumprod.float()

        def classifier(x_t, t):
            return self.class_posterior(x_t, ac[_timestep_index(t, len(ac))].to(x_t), log=True)

        return classifier


def ring_mixture(num_modes: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """``num_modes`` equal Gaussians evenly spaced on a circle of ``radius`` (first mode at angle 0)."""
    check_positive_int(num_modes, "num_modes")
    angles = torch.arange(num_modes, dtype=torch.float64) * (2 * math.pi / num_modes)
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means.float(), std)


def grid_mixture(n: int = 3, spacing: float = 1.5, std: float = 0.1) -> GaussianMixture:
    """An n x n grid of equal Gaussians centred on the origin, ``spacing`` apart (row-major order)."""
    check_positive_int(n, "n")
    coords = (torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * spacing
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return GaussianMixture(torch.stack([xx.flatten(), yy.flatten()], dim=1), std)


def swiss_roll(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """2-D swiss roll scaled to roughly unit variance, shape (n, 2). No closed-form score: for learned models."""
    check_positive_int(n, "n")
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1) / 7.5
    return x + noise * torch.randn(n, 2, generator=generator)


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles, centred and scaled to roughly unit variance; returns (x (n,2), moon label (n,))."""
    check_positive_int(n, "n")
    y = torch.randint(0, 2, (n,), generator=generator)
    theta = math.pi * torch.rand(n, generator=generator)
    upper = torch.stack([theta.cos(), theta.sin()], dim=1)
    lower = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where(y[:, None] == 0, upper, lower)
    x = (x - torch.tensor([0.5, 0.25])) / torch.tensor([0.85, 0.5])
    return x + noise * torch.randn(n, 2, generator=generator), y
