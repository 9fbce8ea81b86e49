r"""DDIM (Song, Meng & Ermon 2021) and DDPM as its eta = 1 case.

Notation: ``alpha_bar_t`` is DDPM's cumulative product :math:`\bar\alpha_t`; the DDIM paper
writes the same quantity :math:`\alpha_t`. All functions accept floats or tensors that
broadcast against ``x`` (a tensor of shape (N,) is read as one value per sample).

The scheduler keeps no state and knows nothing of the network: a sampler receives an
``eps_fn(x_t, t)`` and the ``alphas_cumprod`` table, as in diffusers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import (as_tensor, at_least, check_alpha_bar, check_alphas_cumprod, check_coef, check_coef_tensor,
                      check_coefficient, check_same_shape, check_sigma, check_sigma_coef, check_step_order, check_tensor,
                      check_timesteps)

__all__ = [
    "q_sample", "predicted_x0", "sigma_eta", "sigma_hat", "q_sigma_posterior", "ddpm_posterior", "DDIMTerms",
    "ddim_update", "ddim_step_terms", "ddim_step", "ddim_sample", "ddim_invert", "slerp", "diffusion_loss",
    "PREDICTIONS", "v_target", "eps_from_v", "eps_fn_from_v",
]


def q_sample(x0: torch.Tensor, alpha_bar_t, noise: torch.Tensor) -> torch.Tensor:
    r"""Forward marginal, DDIM eq. 1 (1):

    .. math:: x_t = \sqrt{\alpha_t}\,x_0 + \sqrt{1-\alpha_t}\,\epsilon,\qquad \epsilon \sim \mathcal N(0, I)

    x0:          clean data, any shape (N, ...)
    alpha_bar_t: :math:`\alpha_t` (DDPM's :math:`\bar\alpha_t`), float or (N,) or broadcastable
    noise:       :math:`\epsilon`, same shape as x0
    """
    check_tensor(x0, "x0", floating=True)
    check_same_shape(noise, x0, "noise", "x0")
    alpha_bar_t = check_coef_tensor(alpha_bar_t, x0, "alpha_bar_t")
    return alpha_bar_t.sqrt() * x0 + (1 - alpha_bar_t).sqrt() * noise


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    r"""The "predicted :math:`x_0`" of DDIM eq. 12 (4), eq. 1 (1) solved for :math:`x_0`:

    .. math:: f_\theta^{(t)}(x_t) = \frac{x_t - \sqrt{1-\alpha_t}\,\epsilon_\theta^{(t)}(x_t)}{\sqrt{\alpha_t}}
    """
    check_tensor(x_t, "x_t", floating=True)
    check_same_shape(eps, x_t, "eps", "x_t")
    alpha_bar_t = check_coef(alpha_bar_t, x_t, "alpha_bar_t")
    return (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5


PREDICTIONS = ("eps", "v")  # what a denoiser outputs: the noise, or Salimans & Ho's velocity v


def v_target(x0: torch.Tensor, noise: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    r"""The v-parameterisation's target (Salimans & Ho, *Progressive Distillation*, ICLR 2022, eq. 4 ff.):

    .. math:: v = \sqrt{\alpha_t}\,\epsilon - \sqrt{1-\alpha_t}\,x_0

    At high noise (:math:`\alpha_t \to 0`) v is :math:`-x_0`: a network predicting v predicts the image itself
    where an :math:`\epsilon`-predictor would have to reproduce its input to a precision of
    :math:`\sqrt{\alpha_t}` for :math:`\hat x_0` to mean anything. Shapes as :func:`q_sample`."""
    check_tensor(x0, "x0", floating=True)
    check_same_shape(noise, x0, "noise", "x0")
    alpha_bar_t = check_coef_tensor(alpha_bar_t, x0, "alpha_bar_t")
    return alpha_bar_t.sqrt() * noise - (1 - alpha_bar_t).sqrt() * x0


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    r"""The noise a v-prediction implies, from :math:`x_t = \sqrt{\alpha_t}x_0 + \sqrt{1-\alpha_t}\epsilon` and
    :func:`v_target`: :math:`\epsilon = \sqrt{1-\alpha_t}\,x_t + \sqrt{\alpha_t}\,v`. Every sampler of the course
    takes an eps function; this turns a v-predictor into one."""
    check_tensor(x_t, "x_t", floating=True)
    check_same_shape(v, x_t, "v", "x_t")
    alpha_bar_t = check_coef_tensor(alpha_bar_t, x_t, "alpha_bar_t")
    return (1 - alpha_bar_t).sqrt() * x_t + alpha_bar_t.sqrt() * v


def eps_fn_from_v(v_fn, alphas_cumprod: torch.Tensor):
    """An ``eps_fn(x_t, t)`` for the samplers from a ``v_fn(x_t, t)`` (a v-predicting model, guided or not:
    classifier-free guidance is linear and :func:`eps_from_v` affine with the same coefficients for both
    predictions, so guiding v and then converting equals converting and then guiding)."""
    ac = check_alphas_cumprod(alphas_cumprod)

    def eps_fn(x_t, t):
        return eps_from_v(x_t, v_fn(x_t, t), ac.to(x_t.device)[t].to(x_t.dtype))
    return eps_fn


def sigma_eta(alpha_bar_t, alpha_bar_prev, eta) -> torch.Tensor:
    r"""DDIM eq. 16: the noise scale that interpolates DDIM (eta = 0) and DDPM (eta = 1):

    .. math:: \sigma_t(\eta) = \eta\,\sqrt{\frac{1-\alpha_{t-1}}{1-\alpha_t}}\,\sqrt{1-\frac{\alpha_t}{\alpha_{t-1}}}
    """
    a_t = check_alpha_bar(alpha_bar_t, "alpha_bar_t")
    a_prev = check_alpha_bar(alpha_bar_prev, "alpha_bar_prev")
    check_step_order(a_t, a_prev)
    eta_t = as_tensor(eta, "eta")
    if bool(((eta_t < 0) | (eta_t > 1) | eta_t.isnan()).any()):
        bad = eta_t[(eta_t < 0) | (eta_t > 1) | eta_t.isnan()].flatten()[0].item()
        raise ValueError(f"eta: expected a value in [0, 1] (0 is DDIM, 1 is DDPM; beyond 1, sigma^2 would exceed "
                         f"1 - alpha_bar_prev and eq. 12 (4)'s direction term has no square root), got {bad}")
    # at alpha_bar_t = 1 both factors are 0/0; the limit is 0 (no noise at t = 0)
    ratio = torch.where(a_t < 1, (1 - a_prev) / (1 - a_t).clamp_min(1e-20), torch.zeros_like(a_t))
    return eta_t * ratio.clamp_min(0).sqrt() * (1 - a_t / a_prev).clamp_min(0).sqrt()


def sigma_hat(alpha_bar_t, alpha_bar_prev) -> torch.Tensor:
    r"""The DDIM paper's "larger variance" of Table 1, DDPM's other choice of variance (:math:`\sigma^2 = \beta`):

    .. math:: \hat\sigma_t = \sqrt{1 - \alpha_t/\alpha_{t-1}}

    It exceeds :math:`\sigma_t(1)` (and, on long jumps, :math:`\sqrt{1-\alpha_{t-1}}`), so the paper's sampler uses it
    for the noise alone and keeps the mean of :math:`\sigma_t(1)` (:func:`ddim_sample`, ``variance="sigma_hat"``).
    """
    a_t = check_alpha_bar(alpha_bar_t, "alpha_bar_t")
    a_prev = check_alpha_bar(alpha_bar_prev, "alpha_bar_prev")
    check_step_order(a_t, a_prev)
    return (1 - a_t / a_prev).clamp_min(0).sqrt()


def q_sigma_posterior(x_t, x0, alpha_bar_t, alpha_bar_prev, sigma):
    r"""Mean and variance of the non-Markovian posterior, DDIM eq. 7 (2):

    .. math:: q_\sigma(x_{t-1} \mid x_t, x_0) = \mathcal N\Big(\sqrt{\alpha_{t-1}}\,x_0
              + \sqrt{1-\alpha_{t-1}-\sigma_t^2}\cdot\frac{x_t - \sqrt{\alpha_t}\,x_0}{\sqrt{1-\alpha_t}},\ \sigma_t^2 I\Big)

    The fraction is the noise that takes x0 to x_t; for every sigma the family keeps the
    marginals q(x_t | x0) of eq. 1 (1). Requires sigma^2 <= 1 - alpha_{t-1}. Returns (mean, variance),
    the variance broadcast like sigma.
    """
    check_tensor(x_t, "x_t")
    check_same_shape(x0, x_t, "x0", "x_t")
    alpha_bar_t = check_coef_tensor(alpha_bar_t, x_t, "alpha_bar_t")
    alpha_bar_prev = check_coef_tensor(alpha_bar_prev, x_t, "alpha_bar_prev")
    check_step_order(alpha_bar_t, alpha_bar_prev)
    sigma = check_coefficient(sigma, x_t, "sigma")
    check_sigma(sigma, alpha_bar_prev)
    if bool((alpha_bar_t >= 1).any()):
        raise ValueError("alpha_bar_t: expected values < 1 (at alpha_bar_t = 1 there is no noise to remove)")
    eps = (x_t - alpha_bar_t.sqrt() * x0) / (1 - alpha_bar_t).sqrt()  # the noise that took x0 to x_t
    mean = alpha_bar_prev.sqrt() * x0 + (1 - alpha_bar_prev - sigma**2).clamp_min(0).sqrt() * eps
    return mean, sigma**2


def ddpm_posterior(x_t, x0, alpha_bar_t, alpha_bar_prev):
    r"""Mean and variance of DDPM's posterior (Ho et al. eq. 6-7), with :math:`\beta_t = 1 - \alpha_t/\alpha_{t-1}`:

    .. math:: \tilde\mu_t = \frac{\sqrt{\alpha_{t-1}}\,\beta_t}{1-\alpha_t}\,x_0
              + \frac{\sqrt{1-\beta_t}\,(1-\alpha_{t-1})}{1-\alpha_t}\,x_t,\qquad
              \tilde\beta_t = \frac{1-\alpha_{t-1}}{1-\alpha_t}\,\beta_t

    (alphas here are the cumulative products, DDIM's notation). q_sigma with sigma = sigma(eta=1) equals this.
    """
    check_tensor(x_t, "x_t")
    a_t = check_coef_tensor(alpha_bar_t, x_t, "alpha_bar_t")
    a_prev = check_coef_tensor(alpha_bar_prev, x_t, "alpha_bar_prev")
    if bool((a_t >= 1).any()):
        raise ValueError("alpha_bar_t: expected values < 1 (at alpha_bar_t = 1 there is no noise to remove)")
    beta = 1 - a_t / a_prev
    mean = a_prev.sqrt() * beta / (1 - a_t) * x0 + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t) * x_t
    return mean, (1 - a_prev) / (1 - a_t) * beta


@dataclass
class DDIMTerms:
    """The three terms of DDIM eq. 12 (4); ``x_prev = pred_x0_term + direction + noise``."""

    pred_x0: torch.Tensor        # f_theta(x_t), the predicted x0 itself
    pred_x0_term: torch.Tensor   # sqrt(alpha_{t-1}) * predicted x0
    direction: torch.Tensor      # sqrt(1 - alpha_{t-1} - sigma_t^2) * eps
    noise: torch.Tensor          # sigma_t * eps_t

    @property
    def x_prev(self) -> torch.Tensor:
        return self.pred_x0_term + self.direction + self.noise


def ddim_step_terms(x_t, eps, alpha_bar_t, alpha_bar_prev, eta=0.0, noise=None, clip_x0=None,
                    sigma=None) -> DDIMTerms:
    r"""One step of DDIM eq. 12 (4), split into its three named terms:

    .. math:: x_{t-1} = \underbrace{\sqrt{\alpha_{t-1}}\,f_\theta(x_t)}_{\text{predicted } x_0}
              + \underbrace{\sqrt{1-\alpha_{t-1}-\sigma_t^2}\;\epsilon_\theta^{(t)}(x_t)}_{\text{direction pointing to } x_t}
              + \underbrace{\sigma_t\,\epsilon_t}_{\text{random noise}}

    sigma defaults to :math:`\sigma_t(\eta)` (eq. 16); ``clip_x0=c`` clamps the predicted x0 to
    [-c, c] (off by default: the paper does not clip). ``noise`` is :math:`\epsilon_t`
    (drawn with ``torch.randn_like`` when needed and not given). A given ``sigma`` must satisfy
    eq. 7 (2)'s :math:`\sigma_t^2 \le 1 - \alpha_{t-1}`; x_t and eps must be finite.
    """
    check_tensor(x_t, "x_t", floating=True, finite=True)
    check_same_shape(eps, x_t, "eps", "x_t")
    check_tensor(eps, "eps", floating=True, finite=True)
    if clip_x0 is not None and not (isinstance(clip_x0, (int, float)) and not isinstance(clip_x0, bool)
                                    and clip_x0 > 0):
        raise ValueError(f"clip_x0: expected None or a positive number (x0 is clamped to [-c, c]), got {clip_x0!r}")
    if sigma is None:  # eq. 16
        sigma = sigma_eta(alpha_bar_t, alpha_bar_prev, eta)
    alpha_bar_t = check_coef_tensor(alpha_bar_t, x_t, "alpha_bar_t")
    alpha_bar_prev = check_coef_tensor(alpha_bar_prev, x_t, "alpha_bar_prev")
    check_step_order(alpha_bar_t, alpha_bar_prev)
    sigma = check_coefficient(sigma, x_t, "sigma")
    check_sigma(sigma, alpha_bar_prev)
    if noise is not None:
        check_same_shape(noise, x_t, "noise", "x_t")
    if noise is None:  # epsilon_t ~ N(0, I), drawn only when some sigma_t > 0
        noise = torch.randn_like(x_t) if bool((sigma > 0).any()) else torch.zeros_like(x_t)
    return ddim_update(x_t, eps, alpha_bar_t, alpha_bar_prev, sigma, noise, clip_x0)


def ddim_update(x_t, eps, alpha_bar_t, alpha_bar_prev, sigma, noise, clip_x0=None, noise_sigma=None,
                x0_fn=None) -> DDIMTerms:
    r"""DDIM eq. 12 (4), the one function that computes the update, in its three named terms:

    .. math:: x_{t-1} = \underbrace{\sqrt{\alpha_{t-1}}\,f_\theta(x_t)}_{\text{predicted } x_0}
              + \underbrace{\sqrt{1-\alpha_{t-1}-\sigma_t^2}\;\epsilon_\theta^{(t)}(x_t)}_{\text{direction pointing to } x_t}
              + \underbrace{\sigma_t\,\epsilon_t}_{\text{random noise}}

    :func:`ddim_step_terms` and :func:`ddim_step` (which choose sigma and draw the noise) and the samplers call it.
    alpha_bar_t, alpha_bar_prev, sigma: floats, or tensors of shape (N,) or (N, 1, ..., 1); noise: like x_t (or 0.0).
    ``noise_sigma`` (default ``sigma``) scales the random-noise term alone: the paper's "larger variance" sampler
    of Table 1 keeps the mean of :math:`\sigma_t(1)` and draws the noise with :math:`\hat\sigma_t` (App. D.3).
    ``x0_fn`` (x0 -> x0, e.g. :func:`course_lib.imagen.dynamic_threshold`) thresholds the predicted x0 like
    ``clip_x0``, eps again kept consistent with it.
    """
    check_same_shape(eps, x_t, "eps", "x_t")
    alpha_bar_t = check_coef(alpha_bar_t, x_t, "alpha_bar_t")
    alpha_bar_prev = check_coef(alpha_bar_prev, x_t, "alpha_bar_prev")
    sigma = check_sigma_coef(sigma, x_t)
    if noise_sigma is not None:
        noise_sigma = check_sigma_coef(noise_sigma, x_t)
    # 1. predicted x0, eq. 12 (4)'s first bracket: f_theta(x_t) = (x_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t)
    x0 = predicted_x0(x_t, eps, alpha_bar_t)
    if clip_x0 is not None or x0_fn is not None:  # not in the paper: clamp or threshold x0 (Imagen), and keep eps
        #                                           consistent with it (the direction from the new x0 to x_t)
        x0 = x0.clamp(-clip_x0, clip_x0) if clip_x0 is not None else x0
        x0 = x0_fn(x0) if x0_fn is not None else x0
        eps = (x_t - alpha_bar_t**0.5 * x0) / at_least(1 - alpha_bar_t, 1e-24) ** 0.5
    # 2. direction pointing to x_t: sqrt(1 - alpha_{t-1} - sigma_t^2) eps (clamped at 0 against rounding: eq. 7 (2)
    #    keeps sigma_t^2 <= 1 - alpha_{t-1})
    direction = at_least(1 - alpha_bar_prev - sigma**2, 0.0) ** 0.5 * eps
    # 3. random noise: sigma_t eps_t (sigma_hat_t eps_t for the larger-variance sampler)
    return DDIMTerms(x0, alpha_bar_prev**0.5 * x0, direction, (sigma if noise_sigma is None else noise_sigma) * noise)


def ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta=0.0, noise=None, clip_x0=None) -> torch.Tensor:
    """DDIM eq. 12 (4): x_{t-1} from x_t and the predicted noise (see :func:`ddim_step_terms`)."""
    return ddim_step_terms(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise, clip_x0).x_prev


@torch.no_grad()
def ddim_sample(eps_fn, x_T: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps, eta: float = 0.0,
                generator: torch.Generator | None = None, return_trajectory: bool = False,
                variance: str = "eta", clip_x0=None, progress: bool = False, threshold=None,
                percentile: float = 0.995, on_x0=None):
    r"""Run the generative process along the decreasing sub-sequence ``timesteps`` (:math:`\tau`), DDIM eq. 10 (3)
    with eq. 12 (4)'s update (:func:`ddim_update`) at every step:

    .. math:: p_\theta^{(t)}(x_{t-1} \mid x_t) = \begin{cases}
              \mathcal N\big(f_\theta^{(1)}(x_1),\ \sigma_1^2 I\big) & t = 1 \\
              q_\sigma\big(x_{t-1} \mid x_t,\ f_\theta^{(t)}(x_t)\big) & \text{otherwise}
              \end{cases}

    eps_fn(x_t, t): the noise prediction, called with a (N,) LongTensor of timesteps.
    After the last timestep the step goes to alpha_bar = 1, i.e. returns the predicted x0 plus
    nothing else (the t = 1 case, with sigma -> 0 there).
    variance: ``"eta"`` uses :math:`\sigma_t(\eta)`; ``"sigma_hat"`` is the paper's Table 1
    "larger variance" DDPM sampler: the mean of :math:`\sigma_t(1)` (DDPM's posterior mean) with the noise drawn at
    :math:`\hat\sigma_t = \sqrt{1 - \alpha_t/\alpha_{t-1}}` (App. D.3; ``eta`` is then unused).
    eta = 1 over all T timesteps is DDPM's ancestral sampler.
    threshold: ``None``, ``"static"`` or ``"dynamic"`` (at ``percentile``): Imagen's thresholding of the predicted
    x0 at every step (:mod:`course_lib.imagen`).
    on_x0: called as ``on_x0(step, x0_predicted, x0_used)`` at every step with the predicted x0 before and after
    thresholding (the same tensor without it): notebook 08's histograms watch the sampler through it. Without a
    threshold, watching re-derives eps from the unchanged x0: the samples agree to float round-off.
    """
    from .imagen import threshold_fn

    check_tensor(x_T, "x_T", floating=True)
    x0_fn = threshold_fn(threshold, percentile)
    if on_x0 is not None:
        if not callable(on_x0):
            raise TypeError(f"on_x0: expected a function (step, x0_predicted, x0_used), got {type(on_x0).__name__}")
        x0_fn = _watched(x0_fn, on_x0)
    ac = check_alphas_cumprod(alphas_cumprod).to(x_T.device, torch.float64)
    ts = check_timesteps(timesteps, len(ac))
    if variance not in ("eta", "sigma_hat"):
        raise ValueError(f"variance: expected 'eta' or 'sigma_hat', got {variance!r}")
    tau = ts.tolist()  # the timesteps tau_1 > ... > tau_S (steps S = len(tau))
    # Coefficients of every step, computed once as Python floats: the loop below is then a handful of
    # tensor operations per step (this matters for 1000-step samplers in slider demos).
    a_ts = ac[ts].tolist()
    a_prevs = a_ts[1:] + [1.0]  # after the last timestep: alpha_bar = 1, i.e. x0
    a_prev_t = torch.tensor(a_prevs, dtype=ac.dtype, device=ac.device)
    if variance == "sigma_hat":  # the eta = 1 mean, the larger noise
        sigmas = sigma_eta(ac[ts], a_prev_t, 1.0).tolist()
        noise_sigmas = sigma_hat(ac[ts], a_prev_t).tolist()
        noise_sigmas[-1] = 0.0  # the last step returns the predicted x0 (eq. 10 (3)'s t = 1 case), without noise
    else:
        sigmas = noise_sigmas = sigma_eta(ac[ts], a_prev_t, eta).tolist()
    x, traj, n = x_T, [x_T], x_T.shape[0]
    t_batches = [torch.full((n,), t, dtype=torch.long, device=x.device) for t in tau]
    iterator = range(len(tau))
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(iterator, desc="sampling", leave=False)
    for i in iterator:
        eps = eps_fn(x, t_batches[i])
        if i == 0:  # once per sampler: an (N, 1) prediction would broadcast silently over every coordinate
            check_same_shape(eps, x, "eps_fn", "x_t")
        noise = 0.0
        if noise_sigmas[i] > 0:  # drawn on the CPU from the generator: the same numbers on every device
            noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        x = ddim_update(x, eps, a_ts[i], a_prevs[i], sigmas[i], noise, clip_x0, noise_sigmas[i], x0_fn).x_prev
        if return_trajectory:
            traj.append(x)
    return (x, torch.stack(traj)) if return_trajectory else x


def _watched(x0_fn, on_x0):
    """``x0_fn`` (or the identity) reporting each call's input and output to ``on_x0`` with a step counter."""
    calls = [0]

    def watched(x0):
        used = x0_fn(x0) if x0_fn is not None else x0
        on_x0(calls[0], x0, used)
        calls[0] += 1
        return used
    return watched


@torch.no_grad()
def ddim_invert(eps_fn, x0: torch.Tensor, alphas_cumprod: torch.Tensor, timesteps, return_trajectory: bool = False):
    r"""Deterministic encoding :math:`x_0 \to x_T`: DDIM's ODE (eq. 14) integrated forwards in t.

    With :math:`\bar x = x/\sqrt{\alpha}` and :math:`\bar\sigma = \sqrt{(1-\alpha)/\alpha}`, eq. 14 is
    :math:`d\bar x = \epsilon_\theta\,d\bar\sigma`; each Euler step re-noises the predicted x0 with the
    predicted noise,

    .. math:: x_{t'} = \sqrt{\alpha_{t'}}\,f_\theta(x_t) + \sqrt{1-\alpha_{t'}}\,\epsilon_\theta(x_t, t),\qquad t' > t .

    ``timesteps`` is the same decreasing sequence :func:`ddim_sample` takes: the inversion visits it
    in reverse, so ``ddim_sample(eps_fn, ddim_invert(eps_fn, x0, ac, ts), ac, ts, eta=0)`` reconstructs
    x0 up to the discretisation error (the paper's Table 2). The first step, from x0, evaluates
    eps at the smallest timestep of the sequence.
    """
    check_tensor(x0, "x0", floating=True)
    ac = check_alphas_cumprod(alphas_cumprod).to(x0.device, torch.float64)
    ts = check_timesteps(timesteps, len(ac)).flip(0).tolist()  # increasing
    n = x0.shape[0]
    x, traj = x0, [x0]
    for i, t_next in enumerate(ts):
        t_cur = ts[i - 1] if i > 0 else ts[0]
        a_next = ac[t_next].float()
        eps = eps_fn(x, torch.full((n,), t_cur, dtype=torch.long, device=x.device))
        if i == 0:
            check_same_shape(eps, x, "eps_fn", "x_t")
        x0_hat = predicted_x0(x, eps, ac[ts[i - 1]].float()) if i > 0 else x
        x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
        if return_trajectory:
            traj.append(x)
    return (x, torch.stack(traj)) if return_trajectory else x


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha) -> torch.Tensor:
    r"""Spherical interpolation, per sample (DDIM section 5.3 interpolates x_T this way):

    .. math:: \mathrm{slerp}(z_0, z_1; \alpha) = \frac{\sin((1-\alpha)\theta)}{\sin\theta} z_0 + \frac{\sin(\alpha\theta)}{\sin\theta} z_1,
              \quad \theta = \arccos\frac{\langle z_0, z_1\rangle}{\|z_0\|\|z_1\|}

    Gaussian noise lives near a sphere; linear interpolation would shrink the norm in between.
    alpha: float or (N,) tensor in [0, 1]. Falls back to linear interpolation when z0 and z1 are parallel.
    """
    check_tensor(z0, "z0")
    check_same_shape(z1, z0, "z1", "z0")
    a = as_tensor(alpha, "alpha").to(z0)
    if bool(((a < 0) | (a > 1)).any()):
        raise ValueError(f"alpha: expected values in [0, 1], got {a.min().item()}..{a.max().item()}")
    flat0, flat1 = z0.flatten(1).double(), z1.flatten(1).double()
    for name, flat in (("z0", flat0), ("z1", flat1)):
        zero = flat.norm(dim=1) == 0
        if bool(zero.any()):
            raise ValueError(f"{name}: expected non-zero vectors (the angle theta needs a norm), got a zero vector "
                             f"at sample {int(zero.nonzero()[0])}")
    cos = (flat0 * flat1).sum(1) / (flat0.norm(dim=1) * flat1.norm(dim=1))
    theta = torch.arccos(cos.clamp(-1, 1))
    a = a.double().reshape(-1) if a.ndim else a.double().expand(z0.shape[0])
    sin = torch.sin(theta)
    parallel = sin.abs() < 1e-6
    w0 = torch.where(parallel, 1 - a, torch.sin((1 - a) * theta) / torch.where(parallel, 1.0, sin))
    w1 = torch.where(parallel, a, torch.sin(a * theta) / torch.where(parallel, 1.0, sin))
    out = w0[:, None] * flat0 + w1[:, None] * flat1
    return out.reshape(z0.shape).to(z0.dtype)


def diffusion_loss(model, x0: torch.Tensor, alphas_cumprod: torch.Tensor, cond=None, drop_prob: float = 0.0,
                   generator: torch.Generator | None = None, prediction: str = "eps") -> torch.Tensor:
    r"""DDPM's simple objective (Ho et al. eq. 14), which is also Latent Diffusion's :math:`L_{LDM}` (eq. 2 there)
    when ``x0`` are scaled latents and ``cond`` caption ids:

    .. math:: L = \mathbb E_{x_0, \epsilon, t}\,\big\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}\,x_0
              + \sqrt{1-\bar\alpha_t}\,\epsilon,\ t,\ c)\big\|^2,\qquad t \sim \mathcal U\{0, \dots, T-1\}

    ``model(x_t, t, cond)`` predicts eps; with ``cond``, a fraction ``drop_prob`` of the conditions is replaced by
    ``model.null_condition(n)`` (the model owns its null condition), which trains the unconditional model that
    classifier-free guidance needs. ``prediction="v"``: the model predicts :func:`v_target` instead of
    :math:`\epsilon`, and the loss is :math:`\|v - v_\theta\|^2` (the same t, noise and dropout).
    """
    check_tensor(x0, "x0", floating=True)
    check_alphas_cumprod(alphas_cumprod)
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
    n = x0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (n,), generator=generator).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    alpha_bar = alphas_cumprod.to(x0.device)[t]
    x_t = q_sample(x0, alpha_bar, noise)
    target = noise if prediction == "eps" else v_target(x0, noise, alpha_bar)
    if cond is None:
        return torch.nn.functional.mse_loss(model(x_t, t).float(), target)
    drop = (torch.rand(n, generator=generator) < drop_prob).to(x0.device)  # condition dropout
    null = model.null_condition(n, x0.device)
    cond = torch.where(drop.reshape(-1, *([1] * (cond.ndim - 1))), null, cond)
    return torch.nn.functional.mse_loss(model(x_t, t, cond).float(), target)
