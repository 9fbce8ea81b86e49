r"""Classifier guidance (Dhariwal & Nichol 2021) and classifier-free guidance (Ho & Salimans 2022).

The notes' equation: :math:`p_{\theta,\phi}(x_t \mid x_{t+1}, y) \propto p_\theta(x_t \mid x_{t+1})\,p_\phi(y \mid x_t)`.
A first-order Taylor expansion of :math:`\log p_\phi(y \mid x_t)` around the mean :math:`\mu` of the Gaussian
step turns the product into a Gaussian with the same covariance and a shifted mean (the paper's Algorithm 1):

.. math:: \mathcal N\big(\mu + s\,\Sigma\,\nabla_{x_t}\log p_\phi(y \mid x_t),\ \Sigma\big)

For DDIM, the score view gives Algorithm 2: replace the noise prediction by
:math:`\hat\epsilon = \epsilon_\theta(x_t) - \sqrt{1-\bar\alpha_t}\,s\,\nabla_{x_t}\log p_\phi(y \mid x_t)`.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ._checks import check_alpha_bar, check_coefficient, check_same_shape, check_tensor, check_timesteps
from .diffusion import ddim_sample, ddpm_posterior, predicted_x0

__all__ = ["guided_density", "classifier_log_prob_grad", "classifier_guided_mean", "classifier_guided_eps",
           "cfg_eps", "guided_ddpm_sample", "guided_ddim_sample", "cfg_eps_fn", "cfg_sample", "tile_for_batch"]


def check_scale(scale, name: str = "scale") -> float:
    """A guidance scale: a finite Python number (a tensor or a string is refused, NaN would give NaN samples)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"{name}: expected a float, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"{name}: expected a finite float, got {scale}")
    return float(scale)


def guided_density(log_p_theta: torch.Tensor, log_p_phi: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r"""Guided Diffusion eq. 2, the product the guided samplers approximate, on a set of points (a grid):

    .. math:: p_{\theta,\phi}(x_t \mid x_{t+1}, y) = Z\,p_\theta(x_t \mid x_{t+1})\,p_\phi(y \mid x_t)

    log_p_theta, log_p_phi: the two log densities at the same points (unnormalised is fine); returns the product
    normalised to sum to 1 over ``dim`` (the points): Z is found by the softmax.
    """
    check_tensor(log_p_theta, "log_p_theta")
    check_same_shape(log_p_phi, log_p_theta, "log_p_phi", "log_p_theta")
    return (log_p_theta + log_p_phi).softmax(dim)


def classifier_log_prob_grad(classifier, x_t: torch.Tensor, t, y: torch.Tensor) -> torch.Tensor:
    r""":math:`\nabla_{x_t}\log p_\phi(y \mid x_t, t)`, one gradient per sample, same shape as ``x_t``.

    classifier(x_t, t) returns logits (N, K); the gradient is of the *log-probability*
    (log_softmax), not of the logit. Summing over the batch before ``autograd.grad`` gives each
    sample its own gradient because the classifier treats samples independently (GroupNorm,
    no BatchNorm in training mode).
    """
    check_tensor(x_t, "x_t")
    y = torch.as_tensor(y, device=x_t.device)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise TypeError(f"y: expected integer class ids (a LongTensor), got {y.dtype}")
    if y.shape != (x_t.shape[0],):
        raise ValueError(f"y: expected one class per sample, shape ({x_t.shape[0]},), got {tuple(y.shape)}")
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        logits = classifier(x, t)
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(f"classifier: expected logits of shape (N, K), got {tuple(logits.shape)}")
        if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
            raise ValueError(f"y: expected class ids in [0, {logits.shape[1] - 1}], got {y.tolist()[:8]}")
        log_prob = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(log_prob, x)
    return grad


def classifier_guided_mean(mean: torch.Tensor, variance, grad_log_prob: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Algorithm 1's shifted mean :math:`\mu + s\,\Sigma\,\nabla_{x_t}\log p_\phi(y \mid x_t)` (diagonal :math:`\Sigma`).

    mean: :math:`\mu` (N, ...); variance: :math:`\Sigma` as a float, (N,) or broadcastable; grad_log_prob like mean.
    """
    check_tensor(mean, "mean")
    check_same_shape(grad_log_prob, mean, "grad_log_prob", "mean")
    variance = check_coefficient(variance, mean, "variance")
    if bool((variance < 0).any()):
        raise ValueError(f"variance: expected values >= 0, got {variance.min().item()}")
    scale = check_scale(scale)
    return mean + scale * variance * grad_log_prob


def classifier_guided_eps(eps: torch.Tensor, grad_log_prob: torch.Tensor, alpha_bar_t, scale: float) -> torch.Tensor:
    r"""Algorithm 2's :math:`\hat\epsilon = \epsilon_\theta(x_t) - \sqrt{1-\bar\alpha_t}\;s\,\nabla_{x_t}\log p_\phi(y \mid x_t)`.

    Since :math:`\epsilon^* = -\sqrt{1-\bar\alpha_t}\,\nabla\log p(x_t)`, this is the noise prediction of
    :math:`p(x_t)\,p(y \mid x_t)^s`: at s = 1 exactly the class-conditional model.
    """
    check_tensor(eps, "eps")
    check_same_shape(grad_log_prob, eps, "grad_log_prob", "eps")
    check_alpha_bar(alpha_bar_t, "alpha_bar_t")
    alpha_bar_t = check_coefficient(alpha_bar_t, eps, "alpha_bar_t")
    scale = check_scale(scale)
    return eps - (1 - alpha_bar_t).sqrt() * scale * grad_log_prob


def cfg_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    r"""Classifier-free guidance: :math:`\hat\epsilon = \epsilon_u + s\,(\epsilon_c - \epsilon_u)`.

    Convention: ``scale`` = 1 + w of Ho & Salimans (their :math:`(1+w)\epsilon_c - w\,\epsilon_u`), so
    scale 0 is unconditional sampling, scale 1 plain conditional sampling, scale > 1 guided. Implicitly
    :math:`\epsilon_c - \epsilon_u = -\sqrt{1-\bar\alpha_t}\,\nabla\log p(y \mid x_t)`: the classifier is the
    model's own Bayes rule.
    """
    check_tensor(eps_uncond, "eps_uncond")
    check_same_shape(eps_cond, eps_uncond, "eps_cond", "eps_uncond")
    scale = check_scale(scale)
    return eps_uncond + scale * (eps_cond - eps_uncond)


@torch.no_grad()
def guided_ddpm_sample(eps_fn, grad_fn, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps, y, scale: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Algorithm 1, guided ancestral sampling, along a decreasing sub-sequence (all T steps: DDPM itself).

    Each step: :math:`\mu, \Sigma` = DDPM's posterior at the predicted x0 (i.e. eta = 1);
    :math:`x_{prev} \sim \mathcal N(\mu + s\Sigma\,g,\ \Sigma)` with g = grad_fn(x_t, t, y) =
    :math:`\nabla_{x_t}\log p_\phi(y \mid x_t)`. The last step returns the predicted x0 (no noise).
    """
    check_tensor(x_T, "x_T")
    scale = check_scale(scale)
    ac = alphas_cumprod.to(x_T.device, torch.float64)
    tau = check_timesteps(timesteps, len(ac)).tolist()  # timesteps tau, S = len(tau) steps
    x, n = x_T, x_T.shape[0]
    for i, t in enumerate(tau):
        tt = torch.full((n,), t, dtype=torch.long, device=x.device)
        a_t = float(ac[t])
        x0 = predicted_x0(x, eps_fn(x, tt), a_t)
        if i + 1 == len(tau):
            return x0
        a_prev = float(ac[tau[i + 1]])
        mean, var = ddpm_posterior(x, x0, a_t, a_prev)
        if scale != 0:
            mean = classifier_guided_mean(mean, var, grad_fn(x, tt, y), scale)
        x = mean + var.sqrt() * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    return x


def guided_ddim_sample(eps_fn, grad_fn, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps, y, scale: float,
                       eta: float = 0.0, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """Algorithm 2: :func:`~course_lib.diffusion.ddim_sample` with the noise prediction replaced by
    :func:`classifier_guided_eps`. Scale 0 is exactly unguided sampling (the classifier is not even called)."""
    scale = check_scale(scale)
    if scale == 0:
        return ddim_sample(eps_fn, x_T, alphas_cumprod, timesteps, eta=eta, generator=generator, **kwargs)
    ac = alphas_cumprod.to(x_T.device)

    def guided(x, t):
        return classifier_guided_eps(eps_fn(x, t), grad_fn(x, t, y), ac[t], scale)

    return ddim_sample(guided, x_T, alphas_cumprod, timesteps, eta=eta, generator=generator, **kwargs)


def cfg_eps_fn(model, cond: torch.Tensor, scale: float, recorder=None):
    """The ``eps_fn(x_t, t)`` of classifier-free guidance, the one place it is batched: the unconditional and the
    conditional prediction of ``model(x, t, cond)`` in one batch of 2N (the unconditional half gets
    ``model.null_condition(n)``), combined by :func:`cfg_eps`. At scale 1 it is the conditional model alone.

    ``recorder`` (:class:`course_lib.attention.AttentionRecorder`) is passed to the model restricted to the
    conditional rows, so it records the attention of the conditional branch whatever the batch layout."""
    scale = check_scale(scale)
    n = cond.shape[0]
    null = model.null_condition(n, cond.device)

    def eps_fn(x, t):
        if scale == 1.0:  # (1 + w) eps_c - w eps_u with w = 0: one evaluation, not two
            return model(x, t, cond, **({} if recorder is None else {"recorder": recorder}))
        rec = {} if recorder is None else {"recorder": recorder.rows(slice(n, 2 * n))}  # rows of cond below
        eps_u, eps_c = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, cond]), **rec).chunk(2)
        return cfg_eps(eps_u, eps_c, scale)

    return eps_fn


def tile_for_batch(cond: torch.Tensor, rows: int, name: str = "cond") -> torch.Tensor:
    """A condition bound to a denoiser for N samples (a ControlNet's hint, a super-resolution model's low-resolution
    image), repeated to the ``rows`` of the batch it is called with: :func:`cfg_eps_fn` stacks [unconditional,
    conditional] into 2N rows, and both halves see the same condition, in the same order."""
    n = cond.shape[0]
    if rows % n:
        raise ValueError(f"x_t: expected a multiple of the {n} rows of the bound {name}, got {rows} rows")
    k = rows // n
    return cond.repeat(k, *([1] * (cond.ndim - 1))) if k > 1 else cond


def cfg_sample(model, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps, y, scale: float,
               eta: float = 0.0, generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """DDIM with classifier-free guidance (:func:`cfg_eps_fn`) for a label-dropout model ``model(x, t, y)``."""
    eps_fn = cfg_eps_fn(model, torch.as_tensor(y, device=x_T.device), scale)
    return ddim_sample(eps_fn, x_T, alphas_cumprod, timesteps, eta=eta, generator=generator, **kwargs)
