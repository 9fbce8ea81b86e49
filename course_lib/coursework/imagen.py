"""Checks of notebook 08: dynamic thresholding, Imagen's guidance convention, static clipping at a large guidance
weight (predict, then run) and how far noise-conditioning augmentation lets the super-resolution model drift."""
from __future__ import annotations

import functools

import torch

from .core import Case, CourseworkError, NotStarted, Verdict, announce, check_choice, check_function, \
    check_number, check_prediction


# -- Exercise 8.1: dynamic thresholding ---------------------------------------------------------------------------
def check_dynamic_threshold(fn) -> Verdict:
    """Exercise 8.1: ``fn(x0, percentile)`` equals :func:`course_lib.imagen.dynamic_threshold`: per sample, s = the
    percentile of |x0| over its pixels and channels (``torch.quantile``), s = max(s, 1), clip to [-s, s], divide
    by s."""
    from ..imagen import dynamic_threshold, dynamic_threshold_s, threshold_fn

    g = torch.Generator().manual_seed(80)
    mixed = torch.randn(3, 3, 8, 8, generator=g) * torch.tensor([0.3, 2.5, 6.0]).view(3, 1, 1, 1)
    cases = [Case("predictions far outside [-1, 1], p = 0.995",
                  {"x0": 3 * torch.randn(4, 3, 16, 16, generator=g), "percentile": 0.995}),
             Case("one sample inside [-1, 1], two outside", {"x0": mixed, "percentile": 0.995}),
             Case("p = 0.9, latent-shaped", {"x0": 2 * torch.randn(2, 4, 8, 8, generator=g), "percentile": 0.9}),
             Case("p = 1.0: s is the maximum", {"x0": 1.5 * torch.randn(3, 1, 5, 7, generator=g), "percentile": 1.0}),
             Case("everything inside: unchanged", {"x0": 0.2 * torch.randn(2, 3, 4, 4, generator=g),
                                                   "percentile": 0.995})]

    def per_sample(x0, percentile, absolute=True, floor=True, clip=True, divide=True, batch=False):
        v = x0.abs() if absolute else x0
        if batch:
            s = torch.quantile(v.flatten().float(), percentile).expand(x0.shape[0])
        else:
            s = torch.quantile(v.flatten(1).float(), percentile, dim=1)
        s = (s.clamp_min(1.0) if floor else s).view(-1, *([1] * (x0.ndim - 1)))
        out = torch.maximum(torch.minimum(x0, s), -s) if clip else x0
        return out / s if divide else out

    mistakes = {
        "s is per sample: the quantile of each sample's own |x0| (flatten(1), dim=1), not one s for the whole batch":
            functools.partial(per_sample, batch=True),
        "take the quantile of |x0|, the absolute values: a quantile of x0 itself ignores the negative side":
            functools.partial(per_sample, absolute=False),
        "s = max(s, 1): a sample already inside [-1, 1] must come out unchanged (dividing by s < 1 pushes it out)":
            functools.partial(per_sample, floor=False),
        "after clipping to [-s, s], divide by s: that is what brings the sample back into [-1, 1]":
            functools.partial(per_sample, divide=False),
        "clip to [-s, s] before dividing by s: the values beyond the percentile stay outside [-1, 1] otherwise":
            functools.partial(per_sample, clip=False),
    }
    return check_function("dynamic_threshold", fn, dynamic_threshold, cases, mistakes, atol=1e-6,
                          replaces=[dynamic_threshold, dynamic_threshold_s, threshold_fn], exercise="Exercise 8.1")


# -- Exercise 8.2: Imagen's guidance convention -------------------------------------------------------------------
def check_imagen_guidance(fn) -> Verdict:
    """Exercise 8.2: ``fn(eps_uncond, eps_cond, w)`` is Imagen's w eps(z, c) + (1 - w) eps(z) (w = 1: no guidance),
    what :func:`course_lib.imagen.imagen_guided_eps` computes."""
    from ..guidance import cfg_eps
    from ..imagen import guidance_scale, imagen_guided_eps

    g = torch.Generator().manual_seed(81)
    cases = [Case(f"w = {w:g}, shape {shape}", {"eps_uncond": torch.randn(shape, generator=g),
                                                "eps_cond": torch.randn(shape, generator=g), "w": w})
             for w, shape in ((1.0, (2, 3, 4, 4)), (4.0, (3, 3, 16, 16)), (0.0, (2, 4, 8, 8)), (7.5, (5, 2)),
                              (16.0, (1, 3, 8, 8)))]
    mistakes = {
        "that is Ho & Salimans' (1 + w) eps_c - w eps_u, where w = 0 is no guidance; Imagen writes "
        "w eps_c + (1 - w) eps_u, where w = 1 is": lambda eps_uncond, eps_cond, w: (1 + w) * eps_cond - w * eps_uncond,
        "the weights are swapped: w multiplies the conditional prediction eps(z, c), 1 - w the unconditional one":
            lambda eps_uncond, eps_cond, w: w * eps_uncond + (1 - w) * eps_cond,
        "w multiplies the difference eps_c - eps_u and the unconditional prediction is added back: "
        "eps_u + w (eps_c - eps_u)": lambda eps_uncond, eps_cond, w: w * (eps_cond - eps_uncond),
    }
    return check_function("Imagen guidance", fn, imagen_guided_eps, cases, mistakes, atol=1e-5,
                          replaces=[imagen_guided_eps, cfg_eps, guidance_scale], exercise="Exercise 8.2")


# -- Exercise 8.0: static clipping at w = 16 ----------------------------------------------------------------------
STATIC_CHOICES = {
    "a": "nothing visible changes: clipping x0 to [-1, 1] only removes values the data never has",
    "b": "the colours saturate: many more of the objects' values sit at +-1 than at w = 1, and more than with "
         "dynamic thresholding",
    "c": "the colours saturate, and dynamic thresholding saturates them just as much",
    "d": "the colours wash out: fewer of the objects' values at the extremes than at w = 1",
}


def _static_outcome(saturation: dict) -> str:
    """The choice a {setting: mean saturation} measurement supports (a rise counts when it is 1.5x and 0.02 up)."""
    w1, static, dynamic = saturation["w=1, none"], saturation["w=16, static"], saturation["w=16, dynamic"]
    if static > 1.5 * w1 and static - w1 > 0.02:
        return "b" if static > dynamic + 0.02 else "c"
    if static < w1 / 1.5 and w1 - static > 0.02:
        return "d"
    return "a"


def check_static_prediction(prediction, saturation: dict) -> Verdict:
    """Exercise 8.0 (predict, then run): what does static clipping do at w = 16? ``saturation`` is the experiment
    cell's {"w=1, none", "w=16, static", "w=16, dynamic": mean saturation_fraction of the samples}."""
    keys = ("w=1, none", "w=16, static", "w=16, dynamic")
    if not isinstance(saturation, dict) or set(saturation) != set(keys):
        raise CourseworkError(f"static clipping (Exercise 8.0): saturation: expected a dict with the keys {keys} "
                              f"from the experiment cell, got {saturation!r}; run the experiment cell first")
    measured = ", ".join(f"{k}: {v:.3f}" for k, v in saturation.items())
    return check_prediction(
        "static clipping", "Exercise 8.0", prediction, STATIC_CHOICES, _static_outcome(saturation),
        f"the share of the objects' values at +-1 ({measured})",
        "At w = 16 the guided eps overshoots, so the predicted x0 leaves [-1, 1] by a wide margin at every step; "
        "clipping flattens everything beyond the range onto +-1, and the next step builds on that flat x0. Dynamic "
        "thresholding divides the whole sample by s instead: no value is flattened, but here the shapes' black "
        "background (at -1, where any error puts x0 beyond the range) makes s > 1 at every step, and the whole "
        "image is shrunk towards grey (section 2).")


# -- Exercise 8.3: how far does augmentation let the super-resolution model drift? --------------------------------
AUG_LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8)
DRIFT_DB = 2.0  # the drop from level 0 that counts as "no longer following the low-resolution input"


@functools.lru_cache(maxsize=None)
def consistency_by_level() -> dict:
    """Exercise 8.3's measurement: shapes_base16_large_c32's samples for the first 32 held-out captions (w = 4,
    static thresholding, 20 DDIM steps from ``torch.Generator().manual_seed(0)``), super-resolved by shapes_sr32
    at each of AUG_LEVELS (20 steps, generator seeded 1): the mean PSNR (dB) of the result pooled back to 16x16
    against the base sample it was given. Computed on one thread (a learner's version on more threads differs in
    the last digits only, well inside the check's 0.1 dB)."""
    from .. import checkpoints
    from ..data import HELD_OUT_SEEDS, generate_shapes
    from ..device import one_thread
    from ..imagen import ImagenCascade, downsample
    from ..metrics import psnr

    cascade = ImagenCascade(checkpoints.load("shapes_base16_large_c32"), checkpoints.load("shapes_sr32"))
    tokens = generate_shapes(32, 16, 1, seed=HELD_OUT_SEEDS["ldm_captions"]).tokens
    with one_thread():  # the verdict line repeats on any machine
        low = cascade.sample_base(tokens, 20, 4.0, "static", generator=torch.Generator().manual_seed(0))
        out = {}
        for u in AUG_LEVELS:
            high = cascade.super_resolve(low, tokens, u, 20, generator=torch.Generator().manual_seed(1))
            out[u] = float(psnr(downsample(high, 2), low).mean())
    return out


def check_drift_experiment(psnr_at_zero, level_that_drifts) -> Verdict:
    """Exercise 8.3 (experiment): the PSNR at level 0 and the smallest level of AUG_LEVELS whose PSNR is at least
    DRIFT_DB below it (None if none is)."""
    name, exercise = "augmentation drift", "Exercise 8.3"
    rates = consistency_by_level()
    if psnr_at_zero is None:
        raise NotStarted(f"{name} ({exercise}): set psnr_at_zero and level_that_drifts from your experiment")
    zero = check_number(name, exercise, "psnr_at_zero", psnr_at_zero, rates[0.0], 0.1,
                        "Pool each 32x32 result back to 16x16 (downsample) and take the mean PSNR against the base "
                        "sample it was given: psnr(downsample(high, 2), low).mean().")
    drifts = next((u for u in AUG_LEVELS if rates[u] <= rates[0.0] - DRIFT_DB), None)
    check_choice(name, exercise, "level_that_drifts", level_that_drifts, (*AUG_LEVELS, None))
    table = ", ".join(f"{u:g}: {v:.1f}" for u, v in rates.items())
    if level_that_drifts != drifts:
        raise CourseworkError(f"{name} ({exercise}): level_that_drifts = {level_that_drifts}: the PSNR by level is "
                              f"{table} dB; take the smallest level at least {DRIFT_DB:g} dB below level 0's "
                              f"{zero:.1f} dB (None if no level is).")
    return announce(f"{name}: right - PSNR to the input by level {table} dB (32 samples). The more the condition is "
                    f"corrupted, the less the model copies it: augmentation trades fidelity to the low-resolution "
                    f"image for robustness to its flaws; it drifts {DRIFT_DB:g} dB by level {drifts}.")
