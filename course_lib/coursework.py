"""Coursework: checks for the exercise cells, and the generator of student notebooks.

Instructor notebooks fence each solution with ``### BEGIN SOLUTION`` / ``### END SOLUTION``
(the nbgrader convention); ``python -m course_lib.coursework student`` writes copies in which
each fenced block becomes ``raise NotImplementedError("Exercise N.k: ...")``.

Each exercise is followed by a check cell, e.g. ``check_q_sample_at(q_sample_at)``. A check
runs the learner's function and the reference on random and edge-case inputs and prints one
deterministic line (``q_sample_at: 12/12 cases match``), or raises :class:`CourseworkError`
with a hint that names what differs: a known mistake it recognises (a sign flip, a missing
square root, an off-by-one timestep), a wrong shape, or the case and the size of the error.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .diffusion import ddim_step, predicted_x0, q_sample, sigma_eta
from .quantize import vq_losses
from .schedules import alphas_cumprod, cosine_betas, linear_betas

__all__ = ["CourseworkError", "check_function", "check_alphas_cumprod", "check_q_sample_at", "check_predicted_x0",
           "check_sigma_eta", "check_ddim_step", "check_classifier_guided_mean", "check_classifier_guided_eps",
           "check_cfg_eps", "check_straight_through", "check_vq_losses", "check_lfq_index",
           "check_normalize_channels", "check_lpips_distance", "check_adaptive_weight", "check_hinge_d_loss",
           "check_cross_attention", "check_latent_round_trip",
           "make_student_notebook",
           "main", "EXERCISES"]


class CourseworkError(AssertionError):
    """The learner's function disagrees with the reference; the message says how."""


@dataclass
class Case:
    label: str
    kwargs: dict


def _clone(kwargs: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _matches(a, b, atol, rtol) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def check_function(name: str, learner_fn, reference_fn, cases: list[Case], mistakes: dict | None = None,
                   atol: float = 1e-5, rtol: float = 1e-4, exercise: str = "", nan_hint: str = "") -> str:
    """Compare ``learner_fn`` with ``reference_fn`` on every case; print and return the verdict line.

    mistakes: {hint: wrong_fn}: when the learner's output matches a wrong_fn on a failing case,
    the error says that hint, so the learner learns *what* is wrong, not only *that* it is.
    """
    if not callable(learner_fn):
        raise TypeError(f"learner_fn: expected your function, got {type(learner_fn).__name__}")
    where = f" ({exercise})" if exercise else ""
    for i, case in enumerate(cases):
        expected = reference_fn(**_clone(case.kwargs))
        try:
            got = learner_fn(**_clone(case.kwargs))
        except NotImplementedError:
            raise CourseworkError(f"{name}{where}: not implemented yet - replace the `raise NotImplementedError` "
                                  f"line of the exercise cell with your code, run it, then run this check again") from None
        except Exception as exc:
            raise CourseworkError(f"{name}{where}: case {i + 1}/{len(cases)} ({case.label}) raised "
                                  f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(got, torch.Tensor):
            raise CourseworkError(f"{name}{where}: expected a torch.Tensor, got {type(got).__name__} "
                                  f"(case {case.label})")
        if got.shape != expected.shape:
            raise CourseworkError(f"{name}{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)} "
                                  f"(case {case.label}); check how the per-sample coefficient broadcasts")
        if _matches(got, expected, atol, rtol):
            continue
        bad = torch.isnan(got) & ~torch.isnan(expected)
        if bool(bad.any()):
            idx = tuple(int(j) for j in torch.nonzero(bad)[0])
            raise CourseworkError(f"{name}{where}: case {i + 1}/{len(cases)} ({case.label}): your output is NaN at "
                                  f"index {idx}, the reference is {expected[idx].item():.5g}. {nan_hint}".rstrip())
        for hint, wrong in (mistakes or {}).items():
            try:
                w = wrong(**_clone(case.kwargs))
            except Exception:
                continue
            if _matches(got, w, atol, rtol):
                raise CourseworkError(f"{name}{where}: case {case.label}: {hint}")
        diff = (got.double() - expected.double()).abs()
        where_max = tuple(int(j) for j in torch.nonzero(diff == diff.max())[0])
        raise CourseworkError(
            f"{name}{where}: case {i + 1}/{len(cases)} ({case.label}) differs: max |yours - reference| = "
            f"{diff.max().item():.3g} at index {where_max} (yours {got.double()[where_max].item():.5g}, "
            f"reference {expected.double()[where_max].item():.5g})")
    line = f"{name}: {len(cases)}/{len(cases)} cases match"
    print(line)
    return line


# -- Exercise 0.1: alphas_cumprod -------------------------------------------------------------------------------
def _alphas_cumprod_cases() -> list[Case]:
    return [
        Case("linear schedule, T=1000", {"betas": linear_betas(1000)}),
        Case("cosine schedule, T=1000", {"betas": cosine_betas(1000)}),
        Case("linear schedule, T=10", {"betas": linear_betas(10, 0.01, 0.2)}),
        Case("a single step (T=1)", {"betas": torch.tensor([0.3], dtype=torch.float64)}),
        Case("random betas", {"betas": torch.rand(50, generator=torch.Generator().manual_seed(1),
                                                   dtype=torch.float64) * 0.5 + 0.01}),
    ]


def check_alphas_cumprod(fn) -> str:
    """Exercise 0.1: ``fn(betas) -> alphas_cumprod``, abar_t = prod_{s<=t} (1 - beta_s)."""
    mistakes = {
        "you multiplied the betas, not (1 - beta): abar_t = prod (1 - beta_s)": lambda betas: torch.cumprod(betas, 0),
        "you summed instead of multiplying: abar_t is a cumulative *product*": lambda betas: torch.cumsum(1 - betas, 0),
        "off by one: abar_0 must already include beta_1, i.e. alphas_cumprod[0] = 1 - betas[0]":
            lambda betas: torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)[:-1]]),
        "you returned alpha_t = 1 - beta_t for each step alone; take the cumulative product":
            lambda betas: 1 - betas,
    }
    return check_function("alphas_cumprod", fn, alphas_cumprod, _alphas_cumprod_cases(), mistakes,
                          atol=1e-9, rtol=1e-7, exercise="Exercise 0.1")


# -- Exercise 0.2: q_sample at integer timesteps ----------------------------------------------------------------
def _q_sample_at_reference(x0, alphas_cumprod, t, noise):
    return q_sample(x0, alphas_cumprod[t].float(), noise)


def _q_sample_at_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    ac = alphas_cumprod(linear_betas(1000)).float()
    acc = alphas_cumprod(cosine_betas(1000)).float()
    cases = []
    for label, shape, t, table in [
        ("batch of 2-D points, random t", (64, 2), torch.randint(0, 1000, (64,), generator=g), ac),
        ("batch of images, random t", (8, 3, 16, 16), torch.randint(0, 1000, (8,), generator=g), ac),
        ("t = 0 (almost clean)", (16, 2), torch.zeros(16, dtype=torch.long), ac),
        ("t = T-1 (almost pure noise)", (16, 2), torch.full((16,), 999), ac),
        ("one sample", (1, 3, 8, 8), torch.tensor([500]), ac),
        ("cosine schedule", (32, 2), torch.randint(0, 1000, (32,), generator=g), acc),
        ("increasing t", (10, 2), torch.arange(0, 1000, 100), ac),
    ]:
        cases.append(Case(label, {"x0": torch.randn(shape, generator=g), "alphas_cumprod": table, "t": t,
                                  "noise": torch.randn(shape, generator=g)}))
    return cases


def _wrong_q(coef_x0, coef_eps, shift=0):
    def f(x0, alphas_cumprod, t, noise):
        a = alphas_cumprod[(t + shift).clamp(0, len(alphas_cumprod) - 1)].float()
        a = a.reshape(-1, *([1] * (x0.ndim - 1)))
        return coef_x0(a) * x0 + coef_eps(a) * noise
    return f


def check_q_sample_at(fn) -> str:
    """Exercise 0.2: ``fn(x0, alphas_cumprod, t, noise) -> x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``."""
    sq, one_minus = torch.sqrt, (lambda a: torch.sqrt(1 - a))
    mistakes = {
        "sign flip: the noise term is + sqrt(1 - abar_t) * noise": _wrong_q(sq, lambda a: -torch.sqrt(1 - a)),
        "missing square roots: the coefficients are sqrt(abar_t) and sqrt(1 - abar_t), not abar_t and 1 - abar_t":
            _wrong_q(lambda a: a, lambda a: 1 - a),
        "missing square root on the x0 coefficient: sqrt(abar_t) * x0": _wrong_q(lambda a: a, one_minus),
        "missing square root on the noise coefficient: sqrt(1 - abar_t) * noise": _wrong_q(sq, lambda a: 1 - a),
        "x0 and noise coefficients are swapped": _wrong_q(one_minus, sq),
        "off-by-one timestep: use alphas_cumprod[t] (the table is 0-indexed), not alphas_cumprod[t - 1]":
            _wrong_q(sq, one_minus, shift=-1),
        "off-by-one timestep: use alphas_cumprod[t], not alphas_cumprod[t + 1]": _wrong_q(sq, one_minus, shift=1),
    }
    return check_function("q_sample_at", fn, _q_sample_at_reference, _q_sample_at_cases(), mistakes,
                          exercise="Exercise 0.2")


# -- Notebook 01: the DDIM update -------------------------------------------------------------------------------
def _abar_pairs(g: torch.Generator):
    """(label, shape, abar_t, abar_prev) cases: floats, per-sample tensors shaped to broadcast, and edges."""
    ac = alphas_cumprod(linear_betas(1000)).float()
    t = torch.randint(1, 1000, (32,), generator=g)
    s = (t * torch.rand(32, generator=g)).long()  # an earlier timestep, as a sub-sequence jumps
    return [
        ("floats, mid-way", (16, 2), 0.3, 0.6),
        ("per-sample tensors (N, 1), 2-D points", (32, 2), ac[t][:, None], ac[s][:, None]),
        ("per-sample tensors (N, 1, 1, 1), images", (32, 3, 4, 4), ac[t].view(-1, 1, 1, 1), ac[s].view(-1, 1, 1, 1)),
        ("almost pure noise to almost clean", (8, 2), float(ac[999]), float(ac[0])),
        ("last step, to alpha_bar_prev = 1", (8, 2), 0.9, 1.0),
        ("one DDPM step", (8, 2), float(ac[500]), float(ac[499])),
    ]


def _predicted_x0_cases() -> list[Case]:
    g = torch.Generator().manual_seed(10)
    return [Case(label, {"x_t": torch.randn(shape, generator=g), "eps": torch.randn(shape, generator=g),
                         "alpha_bar_t": a_t})
            for label, shape, a_t, _ in _abar_pairs(g)]


def check_predicted_x0(fn) -> str:
    """Exercise 1.1: ``fn(x_t, eps, alpha_bar_t)`` = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    def wrong(num, den):
        return lambda x_t, eps, alpha_bar_t: num(x_t, eps, torch.as_tensor(alpha_bar_t)) / den(torch.as_tensor(alpha_bar_t))
    mistakes = {
        "sign flip: subtract the noise, x_t - sqrt(1 - abar_t) * eps":
            wrong(lambda x, e, a: x + (1 - a).sqrt() * e, torch.sqrt),
        "missing square root in the denominator: divide by sqrt(abar_t)":
            wrong(lambda x, e, a: x - (1 - a).sqrt() * e, lambda a: a),
        "missing square root on the noise coefficient: sqrt(1 - abar_t) * eps":
            wrong(lambda x, e, a: x - (1 - a) * e, torch.sqrt),
        "you forgot to divide by sqrt(abar_t)": wrong(lambda x, e, a: x - (1 - a).sqrt() * e, lambda a: 1.0),
        "the noise coefficient is sqrt(1 - abar_t), not sqrt(abar_t)":
            wrong(lambda x, e, a: x - a.sqrt() * e, torch.sqrt),
    }
    return check_function("predicted_x0", fn, predicted_x0, _predicted_x0_cases(), mistakes, exercise="Exercise 1.1")


def _sigma_cases() -> list[Case]:
    g = torch.Generator().manual_seed(11)
    cases = []
    for label, _, a_t, a_prev in _abar_pairs(g):
        for eta in (0.0, 0.5, 1.0):
            cases.append(Case(f"{label}, eta={eta}", {"alpha_bar_t": torch.as_tensor(a_t),
                                                       "alpha_bar_prev": torch.as_tensor(a_prev), "eta": eta}))
    return cases


def check_sigma_eta(fn) -> str:
    """Exercise 1.2: ``fn(alpha_bar_t, alpha_bar_prev, eta)`` = eta sqrt((1-abar_prev)/(1-abar_t)) sqrt(1 - abar_t/abar_prev)."""
    def wrong(f):
        return lambda alpha_bar_t, alpha_bar_prev, eta: f(alpha_bar_t, alpha_bar_prev, eta)
    mistakes = {
        "eta is missing: sigma_t(eta) scales linearly with eta": wrong(lambda a, p, e: ((1 - p) / (1 - a) * (1 - a / p)).sqrt()),
        "you returned the variance sigma^2; take the square root": wrong(lambda a, p, e: e * (1 - p) / (1 - a) * (1 - a / p)),
        "the first ratio is upside down: sqrt((1 - abar_prev) / (1 - abar_t))":
            wrong(lambda a, p, e: e * ((1 - a) / (1 - p) * (1 - a / p)).sqrt()),
        "the second factor is sqrt(1 - abar_t / abar_prev), not sqrt(1 - abar_prev / abar_t)":
            wrong(lambda a, p, e: e * ((1 - p) / (1 - a) * (1 - p / a).clamp_min(0)).sqrt()),
        "eta multiplies the standard deviation, not the variance (eta^2 under the root)":
            wrong(lambda a, p, e: (e * (1 - p) / (1 - a) * (1 - a / p)).sqrt()),
    }
    return check_function("sigma_eta", fn, sigma_eta, _sigma_cases(), mistakes, exercise="Exercise 1.2")


def _rounding_pairs(n: int = 8):
    """(abar_t, abar_prev) pairs of the linear schedule with the smallest float32 value of 1 - abar_prev - sigma_t^2
    at eta = 1: zero or barely positive in exact arithmetic, below zero after rounding on most machines (which pairs
    depends on the CPU's arithmetic, so they are found here rather than hard-coded)."""
    ac = alphas_cumprod(linear_betas(1000)).float()
    a = ac[1:, None].expand(-1, 1000).reshape(-1)
    p = ac[None, :].expand(999, -1).reshape(-1)
    keep = p > a
    a, p = a[keep], p[keep]
    room = 1 - p - sigma_eta(a, p, 1.0) ** 2
    idx = room.argsort()[:n]
    return a[idx][:, None], p[idx][:, None]


def _ddim_step_cases() -> list[Case]:
    g = torch.Generator().manual_seed(12)
    cases = []
    for label, shape, a_t, a_prev in _abar_pairs(g):
        for eta in (0.0, 1.0, 0.4):
            cases.append(Case(f"{label}, eta={eta}", {
                "x_t": torch.randn(shape, generator=g), "eps": torch.randn(shape, generator=g),
                "alpha_bar_t": a_t, "alpha_bar_prev": a_prev, "eta": eta, "noise": torch.randn(shape, generator=g)}))
    a_t, a_prev = _rounding_pairs()
    cases.append(Case("eta=1, big jumps where float32 rounds 1 - abar_prev - sigma^2 to about zero", {
        "x_t": torch.randn(8, 2, generator=g), "eps": torch.randn(8, 2, generator=g), "alpha_bar_t": a_t,
        "alpha_bar_prev": a_prev, "eta": 1.0, "noise": torch.randn(8, 2, generator=g)}))
    return cases


def _wrong_step(direction_room=None, noise_scale=None, x0_coef=None, sigma_fn=None, sign=1.0):
    def f(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise):
        a, p = torch.as_tensor(alpha_bar_t), torch.as_tensor(alpha_bar_prev)
        sig = (sigma_fn or sigma_eta)(a, p, eta)
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        room = direction_room(a, p, sig) if direction_room else (1 - p - sig**2)
        out = (x0_coef(a, p) if x0_coef else p.sqrt()) * x0 + sign * room.clamp_min(0).sqrt() * eps
        return out + (noise_scale(sig) if noise_scale else sig) * noise
    return f


def check_ddim_step(fn) -> str:
    """Exercise 1.3: ``fn(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise)`` = DDIM eq. (12), x_{t-1}."""
    mistakes = {
        "the direction term is sqrt(1 - abar_prev - sigma_t^2) * eps: you left out sigma_t^2":
            _wrong_step(direction_room=lambda a, p, s: 1 - p),
        "the direction uses abar_prev (where we go), not abar_t (where we are)":
            _wrong_step(direction_room=lambda a, p, s: 1 - a - s**2),
        "the random-noise term sigma_t * noise is missing": _wrong_step(noise_scale=lambda s: 0.0),
        "sign flip on the direction pointing to x_t": _wrong_step(sign=-1.0),
        "the predicted x0 is scaled by sqrt(abar_prev), not sqrt(abar_t)": _wrong_step(x0_coef=lambda a, p: a.sqrt()),
        "sigma_t is sigma_eta(abar_t, abar_prev, eta), not eta itself":
            _wrong_step(sigma_fn=lambda a, p, e: torch.as_tensor(float(e))),
        "the noise term is sigma_t * noise, not sigma_t^2 * noise": _wrong_step(noise_scale=lambda s: s**2),
    }
    nan_hint = ("With eta = 1 and a big jump, 1 - abar_prev - sigma_t^2 is zero in exact arithmetic but can come out "
                "slightly negative in float32: clamp it at 0 before the square root (`.clamp_min(0)`).")
    return check_function("ddim_step", fn, ddim_step, _ddim_step_cases(), mistakes, exercise="Exercise 1.3",
                          nan_hint=nan_hint)


# -- Notebook 02: guidance -----------------------------------------------------------------------------------------
def _guidance_cases(with_variance: bool) -> list[Case]:
    g = torch.Generator().manual_seed(13)
    cases = []
    for label, shape, a_t, _ in _abar_pairs(g):
        for scale in (0.0, 1.0, 3.5):
            kw = {"grad_log_prob": torch.randn(shape, generator=g), "scale": scale}
            if with_variance:
                kw.update(mean=torch.randn(shape, generator=g),
                          variance=torch.as_tensor(a_t) * 0.1 + 0.01 if torch.is_tensor(a_t) else 0.05)
            else:
                kw.update(eps=torch.randn(shape, generator=g), alpha_bar_t=a_t)
            cases.append(Case(f"{label}, scale={scale}", kw))
    return cases


def check_classifier_guided_mean(fn) -> str:
    """Exercise 2.1: ``fn(mean, variance, grad_log_prob, scale)`` = mean + scale * variance * grad_log_prob."""
    from .guidance import classifier_guided_mean

    w = lambda f: (lambda mean, variance, grad_log_prob, scale: f(mean, torch.as_tensor(variance), grad_log_prob, scale))  # noqa: E731
    mistakes = {
        "sign flip: guidance moves the mean *up* the log-probability, mu + s * Sigma * g": w(lambda m, v, g, s: m - s * v * g),
        "the shift is scaled by the variance Sigma: mu + s * Sigma * g": w(lambda m, v, g, s: m + s * g),
        "Sigma is the variance, not the standard deviation: mu + s * Sigma * g, not s * sqrt(Sigma) * g":
            w(lambda m, v, g, s: m + s * v.sqrt() * g),
        "the scale s is missing": w(lambda m, v, g, s: m + v * g),
        "the variance enters once, not squared": w(lambda m, v, g, s: m + s * v**2 * g),
    }
    return check_function("classifier_guided_mean", fn, classifier_guided_mean, _guidance_cases(True), mistakes,
                          exercise="Exercise 2.1")


def check_classifier_guided_eps(fn) -> str:
    """Exercise 2.2: ``fn(eps, grad_log_prob, alpha_bar_t, scale)`` = eps - sqrt(1 - abar_t) * scale * grad_log_prob."""
    from .guidance import classifier_guided_eps

    w = lambda f: (lambda eps, grad_log_prob, alpha_bar_t, scale: f(eps, grad_log_prob, torch.as_tensor(alpha_bar_t), scale))  # noqa: E731
    mistakes = {
        "sign flip: eps-hat = eps - sqrt(1 - abar_t) * s * g (eps points *away* from the data)":
            w(lambda e, g, a, s: e + (1 - a).sqrt() * s * g),
        "missing square root: sqrt(1 - abar_t), not 1 - abar_t": w(lambda e, g, a, s: e - (1 - a) * s * g),
        "the factor is sqrt(1 - abar_t), not sqrt(abar_t)": w(lambda e, g, a, s: e - a.sqrt() * s * g),
        "the factor sqrt(1 - abar_t) is missing": w(lambda e, g, a, s: e - s * g),
        "the scale s is missing": w(lambda e, g, a, s: e - (1 - a).sqrt() * g),
    }
    return check_function("classifier_guided_eps", fn, classifier_guided_eps, _guidance_cases(False), mistakes,
                          exercise="Exercise 2.2")


def _cfg_cases() -> list[Case]:
    g = torch.Generator().manual_seed(14)
    return [Case(f"{shape}, scale={s}", {"eps_uncond": torch.randn(shape, generator=g),
                                          "eps_cond": torch.randn(shape, generator=g), "scale": s})
            for shape in [(16, 2), (4, 3, 8, 8)] for s in (2.5, 0.0, 1.0, 7.5)]  # s = 0 cannot tell mistakes apart: not first


def check_cfg_eps(fn) -> str:
    """Exercise 2.3: ``fn(eps_uncond, eps_cond, scale)`` = eps_uncond + scale * (eps_cond - eps_uncond)."""
    from .guidance import cfg_eps

    mistakes = {
        "conditional and unconditional are swapped: start from eps_uncond and move towards eps_cond":
            lambda eps_uncond, eps_cond, scale: eps_cond + scale * (eps_uncond - eps_cond),
        "scale convention: here scale = 1 + w, so eps_u + s (eps_c - eps_u); you used eps_c + s (eps_c - eps_u)":
            lambda eps_uncond, eps_cond, scale: eps_cond + scale * (eps_cond - eps_uncond),
        "sign flip on the guidance direction": lambda eps_uncond, eps_cond, scale: eps_uncond - scale * (eps_cond - eps_uncond),
        "the scale is missing": lambda eps_uncond, eps_cond, scale: eps_cond,
    }
    return check_function("cfg_eps", fn, cfg_eps, _cfg_cases(), mistakes, exercise="Exercise 2.3")


# -- Notebook 03: quantization -------------------------------------------------------------------------------------
def check_straight_through(fn) -> str:
    """Exercise 3.1: ``fn(z_e, z_q)`` has the value of z_q, passes the gradient unchanged to z_e, none to z_q."""
    name, where = "straight_through", " (Exercise 3.1)"
    g = torch.Generator().manual_seed(15)
    shapes = [(8, 4), (2, 4, 4, 16), (1, 3)]
    for i, shape in enumerate(shapes):
        z_e = torch.randn(shape, generator=g, requires_grad=True)
        z_q = torch.randn(shape, generator=g, requires_grad=True)
        upstream = torch.randn(shape, generator=g)
        try:
            out = fn(z_e, z_q)
        except NotImplementedError:
            raise CourseworkError(f"{name}{where}: not implemented yet - replace the `raise NotImplementedError` "
                                  f"line of the exercise cell with your code, run it, then run this check again") from None
        if not isinstance(out, torch.Tensor) or out.shape != z_e.shape:
            raise CourseworkError(f"{name}{where}: expected a tensor of shape {tuple(shape)}, got "
                                  f"{getattr(out, 'shape', type(out).__name__)}")
        if not torch.allclose(out, z_q, atol=1e-6):
            hint = ("you returned z_e: the forward value must be z_q" if torch.allclose(out, z_e, atol=1e-6)
                    else "the forward value must equal z_q")
            raise CourseworkError(f"{name}{where}: case {i + 1} {tuple(shape)}: {hint}")
        if not out.requires_grad:
            raise CourseworkError(f"{name}{where}: case {i + 1}: the output has no gradient at all - "
                                  "z_e must receive the gradient (only (z_q - z_e) is detached)")
        out.backward(upstream)
        if z_e.grad is None or not torch.allclose(z_e.grad, upstream, atol=1e-6):
            raise CourseworkError(f"{name}{where}: case {i + 1}: the gradient reaching z_e must equal the gradient "
                                  "at the output (detach the difference z_q - z_e, not z_e)")
        if z_q.grad is not None and z_q.grad.abs().max() > 0:
            raise CourseworkError(f"{name}{where}: case {i + 1}: z_q must get no gradient from this path: detach "
                                  "(z_q - z_e) as a whole")
    line = f"{name}: {len(shapes)}/{len(shapes)} cases match (value and gradients)"
    print(line)
    return line


def _vq_loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(16)
    return [Case(f"shape {shape}, beta={b}", {"z_e": torch.randn(shape, generator=g),
                                               "z_q": torch.randn(shape, generator=g), "beta": b})
            for shape in [(16, 8), (2, 4, 4, 16)] for b in (0.25, 1.0, 2.0)]


def check_vq_losses(fn) -> str:
    """Exercise 3.2: ``fn(z_e, z_q, beta)`` -> (codebook term, commitment term), means over elements."""
    def reference(z_e, z_q, beta):
        return torch.stack(vq_losses(z_e, z_q, beta))

    def learner(z_e, z_q, beta):
        out = fn(z_e, z_q, beta)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError(f"expected a pair (codebook_term, commitment_term), got {type(out).__name__}")
        return torch.stack([torch.as_tensor(o, dtype=torch.float32).reshape(()) for o in out])

    mse = lambda a, b: ((a - b) ** 2).mean()  # noqa: E731
    mistakes = {
        "beta belongs on the commitment term (the second), not the codebook term (or the two are swapped)":
            lambda z_e, z_q, beta: torch.stack([beta * mse(z_e, z_q), mse(z_e, z_q)]),
        "beta is missing from the commitment term": lambda z_e, z_q, beta: torch.stack([mse(z_e, z_q), mse(z_e, z_q)]),
        "use the mean of the squared differences, not their sum":
            lambda z_e, z_q, beta: torch.stack([((z_e - z_q) ** 2).sum(), beta * ((z_e - z_q) ** 2).sum()]),
        "square the differences (an L2 loss), not their absolute value":
            lambda z_e, z_q, beta: torch.stack([(z_e - z_q).abs().mean(), beta * (z_e - z_q).abs().mean()]),
    }
    line = check_function("vq_losses", learner, reference, _vq_loss_cases(), mistakes, exercise="Exercise 3.2")
    # values can match while the stop-gradients are wrong: check which side each term trains
    z_e = torch.randn(8, 4, requires_grad=True)
    z_q = torch.randn(8, 4, requires_grad=True)
    codebook_term, commitment_term = fn(z_e, z_q, 0.25)
    g_e, g_q = torch.autograd.grad(codebook_term, [z_e, z_q], allow_unused=True)
    if g_e is not None and g_e.abs().max() > 0:
        raise CourseworkError("vq_losses (Exercise 3.2): the codebook term must not train the encoder: sg(z_e), "
                              "i.e. z_e.detach()")
    g_e, g_q = torch.autograd.grad(commitment_term, [z_e, z_q], allow_unused=True)
    if g_q is not None and g_q.abs().max() > 0:
        raise CourseworkError("vq_losses (Exercise 3.2): the commitment term must not train the codebook: sg(z_q), "
                              "i.e. z_q.detach()")
    return line


def check_lfq_index(fn) -> str:
    """Exercise 3.3: ``fn(q)`` = sum_i 2^i [q_i > 0] over the last axis (dimension 0 = lowest bit)."""
    from .quantize import lfq_codes, lfq_index

    g = torch.Generator().manual_seed(17)
    cases = [Case(f"all codes of d={d}", {"q": lfq_codes(d)}) for d in (1, 3, 6)]
    cases.append(Case("a (2, 4, 4, 10) grid of codes", {"q": torch.randint(0, 2, (2, 4, 4, 10), generator=g).float() * 2 - 1}))
    mistakes = {
        "bit order: dimension 0 is the lowest bit (weight 2^0), the last dimension the highest":
            lambda q: ((q > 0).long() * 2 ** torch.arange(q.shape[-1] - 1, -1, -1)).sum(-1),
        "the bit is [q_i > 0]: +1 -> 1, -1 -> 0 (you counted the -1s)": lambda q: ((q < 0).long() * 2 ** torch.arange(q.shape[-1])).sum(-1),
        "weights are powers of two, 2^i, not i": lambda q: ((q > 0).long() * torch.arange(q.shape[-1])).sum(-1),
    }
    return check_function("lfq_index", fn, lfq_index, cases, mistakes, exercise="Exercise 3.3")


# -- Notebook 04: LPIPS --------------------------------------------------------------------------------------------
def check_normalize_channels(fn) -> str:
    """Exercise 4.1: ``fn(f)`` = f / (||f||_2 over channels + 1e-10), f of shape (N, C, H, W)."""
    from .perceptual import normalize_channels

    g = torch.Generator().manual_seed(18)
    zero = torch.randn(2, 4, 3, 3, generator=g)
    zero[0, :, 1, 1] = 0
    cases = [Case("random features (2, 8, 5, 5)", {"f": torch.randn(2, 8, 5, 5, generator=g)}),
             Case("one channel", {"f": torch.randn(3, 1, 4, 4, generator=g)}),
             Case("a zero feature vector", {"f": zero}),
             Case("large values", {"f": 1e3 * torch.randn(1, 16, 2, 2, generator=g)})]
    mistakes = {
        "normalise over the channel axis (dim=1), not over all positions":
            lambda f: f / (f.pow(2).sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10),
        "divide by the L2 norm (square root of the sum of squares), not by the sum of squares":
            lambda f: f / (f.pow(2).sum(dim=1, keepdim=True) + 1e-10),
        "divide by the L2 norm, not the L1 norm": lambda f: f / (f.abs().sum(dim=1, keepdim=True) + 1e-10),
    }
    return check_function("normalize_channels", fn, normalize_channels, cases, mistakes, atol=1e-6,
                          exercise="Exercise 4.1",
                          nan_hint="A zero feature vector divides 0 by 0: add eps = 1e-10 to the norm.")


def check_lpips_distance(fn) -> str:
    """Exercise 4.2: ``fn(feats_x, feats_x0, weights)`` = sum_l mean_{h,w} sum_c w_lc (y_hat - y0_hat)^2, per image."""
    from .perceptual import lpips_distance, normalize_channels

    g = torch.Generator().manual_seed(19)

    def feats(n):
        return [torch.randn(n, c, s, s, generator=g) for c, s in ((4, 8), (6, 4), (8, 2))]

    cases = []
    for n in (1, 3):
        fx, fx0 = feats(n), feats(n)
        cases.append(Case(f"{n} image(s), unit weights", {"feats_x": fx, "feats_x0": fx0,
                                                         "weights": [torch.ones(f.shape[1]) for f in fx]}))
        cases.append(Case(f"{n} image(s), learned weights", {"feats_x": fx, "feats_x0": fx0,
                                                            "weights": [torch.rand(f.shape[1], generator=g) for f in fx]}))

    def reference(feats_x, feats_x0, weights):
        return lpips_distance(feats_x, feats_x0, weights)

    def wrong(normalize=True, reduce="mean", square_w=False):
        def f(feats_x, feats_x0, weights):
            total = 0
            for a, b, w in zip(feats_x, feats_x0, weights):
                if normalize:
                    a, b = normalize_channels(a), normalize_channels(b)
                w = w**2 if square_w else w
                layer = torch.einsum("nchw,c->nhw", (a - b) ** 2, w)
                total = total + (layer.mean((1, 2)) if reduce == "mean" else layer.sum((1, 2)))
            return total
        return f

    mistakes = {
        "normalise each layer's features over channels before taking differences": wrong(normalize=False),
        "average over positions (1 / (H_l W_l) sum_{h,w}), not sum": wrong(reduce="sum"),
        "the weights multiply the squared difference once (sum_c w_c d_c^2), not w_c^2": wrong(square_w=True),
    }
    return check_function("lpips_distance", fn, reference, cases, mistakes, exercise="Exercise 4.2")


# -- Exercises 5.1 and 5.2: VQGAN's adaptive weight and the hinge loss ----------------------------------------
def check_adaptive_weight(fn) -> str:
    """Exercise 5.1: ``fn(rec_loss, gan_loss, last_layer_weight, delta)`` = clamp(||grad rec|| / (||grad gan|| +
    delta), 0, 1e4), detached, gradients taken with respect to ``last_layer_weight`` only."""
    from torch import nn

    from .gan import adaptive_weight

    def losses(seed, gan_scale):
        torch.manual_seed(seed)
        dec = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6))
        z, target = torch.randn(5, 4), torch.randn(5, 6)
        out = dec(z)
        critic = nn.Linear(6, 1)
        return dec, (out - target).abs().mean(), -gan_scale * critic(out).mean()

    def wrap(f, check_detached=False):
        def run(seed, gan_scale, delta):
            dec, rec, gan = losses(seed, gan_scale)
            lam = f(rec, gan, dec[-1].weight, delta)
            if check_detached and isinstance(lam, torch.Tensor) and lam.requires_grad:
                raise CourseworkError("lambda still has a graph: detach it (.detach()), it weights the GAN term "
                                      "and must not itself be optimised")
            return lam
        return run

    def grads(rec, gan, w):
        return (torch.autograd.grad(rec, w, retain_graph=True)[0], torch.autograd.grad(gan, w, retain_graph=True)[0])

    def wrong(kind):
        def f(rec, gan, w, delta):
            gr, gg = grads(rec, gan, w)
            if kind == "swapped":
                return (gg.norm() / (gr.norm() + delta)).clamp(0, 1e4).detach()
            if kind == "no_delta":
                return (gr.norm() / gg.norm()).clamp(0, 1e4).detach()
            if kind == "no_clamp":
                return (gr.norm() / (gg.norm() + delta)).detach()
            if kind == "squared":
                return (gr.pow(2).sum() / (gg.pow(2).sum() + delta)).clamp(0, 1e4).detach()
        return f

    cases = [Case("a tiny decoder", {"seed": 0, "gan_scale": 1.0, "delta": 1e-6}),
             Case("GAN loss 100x larger", {"seed": 1, "gan_scale": 100.0, "delta": 1e-6}),
             Case("a large delta", {"seed": 2, "gan_scale": 1.0, "delta": 0.5}),
             Case("GAN gradient nearly zero (the clamp at 1e4)", {"seed": 3, "gan_scale": 1e-9, "delta": 1e-6})]
    mistakes = {
        "the ratio is upside down: ||grad L_rec|| goes on top, ||grad L_GAN|| + delta below": wrong("swapped"),
        "add delta to the denominator": wrong("no_delta"),
        "clamp lambda to [0, 1e4] (a vanishing GAN gradient must not blow it up)": wrong("no_clamp"),
        "use the norms (square roots), not the squared norms": wrong("squared"),
    }
    return check_function("adaptive_weight", wrap(fn, True), wrap(lambda r, g, w, d: adaptive_weight(r, g, w, d)),
                          cases, {k: wrap(v) for k, v in mistakes.items()}, rtol=1e-4, exercise="Exercise 5.1")


def check_hinge_d_loss(fn) -> str:
    """Exercise 5.2: ``fn(logits_real, logits_fake)`` = 0.5 (mean relu(1 - real) + mean relu(1 + fake))."""
    from .gan import hinge_d_loss

    g = torch.Generator().manual_seed(19)
    cases = [Case("random patch maps (4, 1, 6, 6)", {"logits_real": torch.randn(4, 1, 6, 6, generator=g),
                                                     "logits_fake": torch.randn(4, 1, 6, 6, generator=g)}),
             Case("a confident discriminator (margins met)", {"logits_real": torch.full((2, 1, 3, 3), 2.0),
                                                              "logits_fake": torch.full((2, 1, 3, 3), -3.0)}),
             Case("a fooled discriminator", {"logits_real": torch.full((2, 1, 3, 3), -2.0),
                                             "logits_fake": torch.full((2, 1, 3, 3), 1.5)}),
             Case("different sizes of real and fake maps", {"logits_real": 3 * torch.randn(3, 1, 4, 4, generator=g),
                                                            "logits_fake": 3 * torch.randn(5, 1, 2, 2, generator=g)})]
    relu = torch.nn.functional.relu
    mistakes = {
        "average the two terms: 0.5 * (real term + fake term)":
            lambda logits_real, logits_fake: relu(1 - logits_real).mean() + relu(1 + logits_fake).mean(),
        "real logits should be pushed above +1: max(0, 1 - D(x)), not max(0, 1 + D(x))":
            lambda logits_real, logits_fake: 0.5 * (relu(1 + logits_real).mean() + relu(1 + logits_fake).mean()),
        "fake logits should be pushed below -1: max(0, 1 + D(x_hat)), not max(0, 1 - D(x_hat))":
            lambda logits_real, logits_fake: 0.5 * (relu(1 - logits_real).mean() + relu(1 - logits_fake).mean()),
        "the hinge is max(0, .): without it a confident discriminator keeps being rewarded":
            lambda logits_real, logits_fake: 0.5 * ((1 - logits_real).mean() + (1 + logits_fake).mean()),
    }
    return check_function("hinge_d_loss", fn, hinge_d_loss, cases, mistakes, exercise="Exercise 5.2")


# -- Exercises 6.1 and 6.2: cross-attention, and the scaled latent ---------------------------------------------
def check_cross_attention(fn) -> str:
    """Exercise 6.1: ``fn(layer, x, context, mask)`` equals ``layer(x, context, mask=mask)`` for a
    :class:`course_lib.attention.CrossAttention`."""
    from einops import rearrange

    from .attention import CrossAttention

    def layer(seed, heads, dim_head):
        torch.manual_seed(seed)
        return CrossAttention(16, 12, heads, dim_head)

    g = torch.Generator().manual_seed(20)
    some = torch.ones(3, 5, dtype=torch.bool)
    some[0, 3:] = False
    some[2, 1:] = False

    def case(label, seed, heads, dim_head, mask):
        return Case(label, {"seed": seed, "heads": heads, "dim_head": dim_head, "x": torch.randn(3, 7, 16, generator=g),
                            "context": torch.randn(3, 5, 12, generator=g), "mask": mask})

    cases = [case("4 heads, nothing masked", 0, 4, 8, torch.ones(3, 5, dtype=torch.bool)),
             case("4 heads, padding masked", 1, 4, 8, some), case("1 head", 2, 1, 16, some),
             case("8 heads of width 2", 3, 8, 2, some)]

    def run(f):
        def g_(seed, heads, dim_head, x, context, mask):
            with torch.no_grad():
                return f(layer(seed, heads, dim_head), x, context, mask)
        return g_

    def wrong(scale="sqrt", axis=-1, use_mask=True, split=True):
        def f(lay, x, context, mask):
            h = lay.heads if split else 1
            q = rearrange(lay.to_q(x), "b n (h d) -> b h n d", h=h)
            k = rearrange(lay.to_k(context), "b m (h d) -> b h m d", h=h)
            v = rearrange(lay.to_v(context), "b m (h d) -> b h m d", h=h)
            d = q.shape[-1]
            s = q @ k.transpose(-1, -2) / {"sqrt": d ** 0.5, "d": d, "none": 1.0}[scale]
            if use_mask:
                s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
            return lay.to_out(rearrange(s.softmax(dim=axis) @ v, "b h n d -> b n (h d)"))
        return f

    mistakes = {
        "scale the scores by 1/sqrt(d) with d the width of one head": wrong(scale="none"),
        "divide by sqrt(d), not by d": wrong(scale="d"),
        "the softmax runs over the caption tokens (the last axis, keys), not over the image tokens": wrong(axis=-2),
        "masked caption tokens must get -inf before the softmax (mask[:, None, None, :])": wrong(use_mask=False),
        "split the width into heads (rearrange 'b n (h d) -> b h n d') before the dot products": wrong(split=False),
    }
    reference = run(lambda lay, x, context, mask: lay(x, context, mask=mask))
    return check_function("cross_attention", run(fn), reference, cases, {k: run(v) for k, v in mistakes.items()},
                          exercise="Exercise 6.1", nan_hint="A row whose every caption token is masked gives NaN; "
                                                            "here every row keeps at least one token, so check the mask's broadcasting.")


def check_latent_round_trip(encode_fn, decode_fn) -> str:
    """Exercise 6.2: ``encode_fn(autoencoder, scale, x)`` = scale * E(x) and ``decode_fn(autoencoder, scale, z)`` =
    G(quantize(z / scale)), on a small VQ autoencoder."""
    from .nets import VQVAE, VQVAEConfig

    def ae(seed):
        torch.manual_seed(seed)
        return VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=4, num_codes=16)).eval()

    g = torch.Generator().manual_seed(21)
    enc_cases = [Case(f"scale {s}", {"seed": i, "scale": s, "x": torch.rand(2, 3, 16, 16, generator=g) * 2 - 1})
                 for i, s in enumerate((1.0, 0.37, 4.2))]
    dec_cases = [Case(f"scale {s}", {"seed": i, "scale": s, "z": torch.randn(2, 4, 4, 4, generator=g)})
                 for i, s in enumerate((1.0, 0.37, 4.2))]

    def enc(f):
        def g_(seed, scale, x):
            with torch.no_grad():
                return f(ae(seed), scale, x)
        return g_

    def dec(f):
        def g_(seed, scale, z):
            with torch.no_grad():
                return f(ae(seed), scale, z)
        return g_

    def ref_decode(a, s, z):
        return a.decode(a.quantize(z / s)[0])

    line1 = check_function("encode", enc(encode_fn), enc(lambda a, s, x: s * a.encode(x)), enc_cases,
                           {"multiply by the scale s (it makes the latents unit-variance), do not divide":
                                enc(lambda a, s, x: a.encode(x) / s),
                            "encode returns s * E(x): the scale is missing": enc(lambda a, s, x: a.encode(x))},
                           exercise="Exercise 6.2")
    line2 = check_function("decode", dec(decode_fn), dec(ref_decode), dec_cases,
                           {"divide by s before quantizing: the decoder was trained on unscaled latents":
                                dec(lambda a, s, z: a.decode(a.quantize(z)[0])),
                            "quantize first (autoencoder.quantize), then decode": dec(lambda a, s, z: a.decode(z / s)),
                            "divide by s, do not multiply": dec(lambda a, s, z: a.decode(a.quantize(z * s)[0]))},
                           exercise="Exercise 6.2")
    return line1 + "; " + line2


EXERCISES = {"0.1": check_alphas_cumprod, "0.2": check_q_sample_at, "1.1": check_predicted_x0,
             "1.2": check_sigma_eta, "1.3": check_ddim_step, "2.1": check_classifier_guided_mean,
             "2.2": check_classifier_guided_eps, "2.3": check_cfg_eps, "3.1": check_straight_through,
             "3.2": check_vq_losses, "3.3": check_lfq_index, "4.1": check_normalize_channels,
             "4.2": check_lpips_distance, "5.1": check_adaptive_weight, "5.2": check_hinge_d_loss,
             "6.1": check_cross_attention, "6.2": check_latent_round_trip}


# -- student notebooks ------------------------------------------------------------------------------------------
_BEGIN, _END = "### BEGIN SOLUTION", "### END SOLUTION"
_EXERCISE_TITLE = re.compile(r"#\s*Exercise\s+(\d+\.\d+)\s*[:.\-\u2014]?\s*(.*)")


def strip_solutions(source: str, fallback_id: str) -> tuple[str, int]:
    """Replace every fenced solution in one cell's source; returns (new source, number replaced)."""
    lines = source.splitlines(keepends=True)
    title = next((m for m in map(_EXERCISE_TITLE.search, lines) if m), None)
    label = f"Exercise {title.group(1)}: {title.group(2).strip()}" if title else f"Exercise {fallback_id}"
    out, inside, count, indent = [], False, 0, ""
    for line in lines:
        stripped = line.strip()
        if stripped == _BEGIN:
            if inside:
                raise ValueError(f"{label}: nested '{_BEGIN}'")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            continue
        if stripped == _END:
            if not inside:
                raise ValueError(f"{label}: '{_END}' without '{_BEGIN}'")
            inside = False
            count += 1
            out.append(f"{indent}raise NotImplementedError({label!r})\n")
            continue
        if not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{label}: '{_BEGIN}' without '{_END}'")
    return "".join(out), count


def make_student_notebook(src: Path, dst: Path) -> int:
    """Write the student copy of one notebook; returns the number of exercises replaced."""
    nb = json.loads(Path(src).read_text())
    total = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if _BEGIN not in source:
            continue
        new, n = strip_solutions(source, f"{Path(src).stem}.{total + 1}")
        total += n
        cell["source"] = new.splitlines(keepends=True)
        cell["outputs"] = []  # the solution's outputs would give the answer away
        cell["execution_count"] = None
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return total


def main(argv=None):
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(prog="python -m course_lib.coursework")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write student copies of the notebooks, solutions removed")
    s.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    s.add_argument("--out", type=Path, default=root / "student", help="default: student/")
    a = p.parse_args(argv)
    nbs = a.notebooks or sorted((root / "notebooks").glob("*.ipynb"))
    for nb in nbs:
        n = make_student_notebook(nb, a.out / nb.name)
        print(f"{a.out / nb.name}: {n} exercise(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
