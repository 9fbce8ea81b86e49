"""Checks of notebook 02: classifier guidance and classifier-free guidance."""
from __future__ import annotations

import functools

import torch

from .core import Case, CourseworkError, Verdict, announce, check_function, check_number, check_prediction
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




# -- Exercises 2.0 and 2.5: what the scale does, and the two algorithms side by side --------------------------------
SHARPENING_CHOICES = {"a": "wider than at s = 1", "b": "about as wide as at s = 1", "c": "clearly tighter than at s = 1"}


def check_sharpening_prediction(prediction, spread_s1: float, spread_s10: float, data_std: float) -> Verdict:
    """Exercise 2.0 (predict, then run): with the exact classifier on the ring, how wide is the cloud of samples in
    the asked-for mode at guidance scale 10 compared with scale 1? ``spread_*`` are the experiment cell's measured
    standard deviations (of the samples that landed in the mode), ``data_std`` the mode's own."""
    for name, v in (("spread_s1", spread_s1), ("spread_s10", spread_s10), ("data_std", data_std)):
        if not isinstance(v, float) or not v > 0:
            raise CourseworkError(f"guidance scale (Exercise 2.0): {name}: expected a positive number from the "
                                  f"experiment cell, got {v!r}; run the experiment cell first")
    ratio = spread_s10 / spread_s1
    outcome = "a" if ratio > 1.2 else "c" if ratio < 0.8 else "b"
    return check_prediction(
        "guidance scale", "Exercise 2.0", prediction, SHARPENING_CHOICES, outcome,
        f"spread {spread_s1:.3f} at s = 1 and {spread_s10:.3f} at s = 10 (the mode's own std is {data_std:.2f})",
        "A scale s samples from p(x) p(y | x)^s, up to normalisation: raising the classifier to a power makes it more "
        "confident, so the mass gathers where p(y | x) is largest, the part of the mode farthest from its neighbours. "
        "Guidance trades diversity for fidelity, the paper's Table 4 trend (recall falls as s grows).")


@functools.lru_cache(maxsize=None)
def algorithm_accuracies() -> dict:
    """Exercise 2.4's measurement: on ring_mixture(8, 2.0, 0.3) with its exact classifier and eps*, 400 points from
    one x_T, class 3, scale 1: the fraction landing in mode 3 with Algorithm 1 (guided ancestral, 50 and 1000
    steps; noise seed 1) and Algorithm 2 (guided DDIM eps-hat, eta = 0, 50 steps)."""
    from ..data import ring_mixture
    from ..guidance import classifier_log_prob_grad, guided_ddim_sample, guided_ddpm_sample
    from ..schedules import make_alphas_cumprod, timestep_subsequence

    ac, ring = make_alphas_cumprod(), ring_mixture(8, 2.0, 0.3)
    eps, clf = ring.eps_fn(ac), ring.classifier_fn(ac)
    grad = lambda x, t, y: classifier_log_prob_grad(clf, x, t, y)  # noqa: E731
    x_T = torch.randn(400, 2, generator=torch.Generator().manual_seed(0))
    y = torch.full((400,), 3)

    def accuracy(x):
        return float((ring.class_posterior(x).argmax(1) == 3).double().mean())

    out = {}
    for S in (50, 1000):
        x = guided_ddpm_sample(eps, grad, x_T, ac, timestep_subsequence(1000, S), y, 1.0,
                               generator=torch.Generator().manual_seed(1))
        out[f"alg1_S{S}"] = accuracy(x)
    out["alg2_S50"] = accuracy(guided_ddim_sample(eps, grad, x_T, ac, timestep_subsequence(1000, 50), y, 1.0))
    return out


def check_algorithms_experiment(alg1_accuracy, alg2_accuracy) -> Verdict:
    """Exercise 2.4 (experiment): accuracy of Algorithm 1 and of Algorithm 2 at the same 50 steps and scale 1."""
    name, exercise = "algorithms 1 and 2", "Exercise 2.4"
    acc = algorithm_accuracies()
    hint = ("Use the cell's x_T, class 3, scale 1.0, timestep_subsequence(1000, 50), the exact classifier's gradient, "
            "and for Algorithm 1 generator=torch.Generator().manual_seed(1); accuracy = the fraction whose most likely "
            "mode (ring.class_posterior) is 3.")
    a1 = check_number(name, exercise, "alg1_accuracy", alg1_accuracy, acc["alg1_S50"], 0.02, hint)
    a2 = check_number(name, exercise, "alg2_accuracy", alg2_accuracy, acc["alg2_S50"], 0.02, hint)
    return announce(
        f"{name}: right - Algorithm 1 {a1:.3f}, Algorithm 2 {a2:.3f} at 50 steps (Algorithm 1 with all 1000 steps: "
        f"{acc['alg1_S1000']:.3f}; at 400 points a fraction has a standard error of about 0.015). Algorithm 1 "
        "shifts each step's mean by s * Sigma * g, a Taylor step valid for one "
        "small DDPM step: over a 20-step jump it under-guides. Algorithm 2 puts the gradient into eps-hat, i.e. into "
        "the predicted x0, which DDIM then carries across the whole jump.")
