"""Checks of notebook 02: classifier guidance and classifier-free guidance."""
from __future__ import annotations

import torch

from .core import Case, CourseworkError, Verdict, check_function
from .diffusion import _abar_pairs


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


def check_classifier_guided_mean(fn) -> Verdict:
    """Exercise 2.1: ``fn(mean, variance, grad_log_prob, scale)`` = mean + scale * variance * grad_log_prob."""
    from ..guidance import classifier_guided_mean

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
                          exercise="Exercise 2.1", replaces=[classifier_guided_mean])


def check_classifier_guided_eps(fn) -> Verdict:
    """Exercise 2.2: ``fn(eps, grad_log_prob, alpha_bar_t, scale)`` = eps - sqrt(1 - abar_t) * scale * grad_log_prob."""
    from ..guidance import classifier_guided_eps

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
                          exercise="Exercise 2.2", replaces=[classifier_guided_eps])


def _cfg_cases() -> list[Case]:
    g = torch.Generator().manual_seed(14)
    return [Case(f"{shape}, scale={s}", {"eps_uncond": torch.randn(shape, generator=g),
                                          "eps_cond": torch.randn(shape, generator=g), "scale": s})
            for shape in [(16, 2), (4, 3, 8, 8)] for s in (2.5, 0.0, 1.0, 7.5)]  # s = 0 cannot tell mistakes apart: not first


def check_cfg_eps(fn) -> Verdict:
    """Exercise 2.3: ``fn(eps_uncond, eps_cond, scale)`` = eps_uncond + scale * (eps_cond - eps_uncond)."""
    from ..guidance import cfg_eps

    mistakes = {
        "conditional and unconditional are swapped: start from eps_uncond and move towards eps_cond":
            lambda eps_uncond, eps_cond, scale: eps_cond + scale * (eps_uncond - eps_cond),
        "scale convention: here scale = 1 + w, so eps_u + s (eps_c - eps_u); you used eps_c + s (eps_c - eps_u)":
            lambda eps_uncond, eps_cond, scale: eps_cond + scale * (eps_cond - eps_uncond),
        "sign flip on the guidance direction": lambda eps_uncond, eps_cond, scale: eps_uncond - scale * (eps_cond - eps_uncond),
        "the scale is missing": lambda eps_uncond, eps_cond, scale: eps_cond,
    }
    return check_function("cfg_eps", fn, cfg_eps, _cfg_cases(), mistakes, exercise="Exercise 2.3", replaces=[cfg_eps])


