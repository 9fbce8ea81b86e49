"""Checks of notebook 04: LPIPS."""
from __future__ import annotations

import functools

import torch

from .core import Case, CourseworkError, Verdict, announce, check_function, check_number, check_prediction


# -- Notebook 04: LPIPS --------------------------------------------------------------------------------------------
def check_normalize_channels(fn) -> Verdict:
    """Exercise 4.1: ``fn(f)`` = f / (||f||_2 over channels + 1e-10), f of shape (N, C, H, W)."""
    from ..perceptual import normalize_channels

    g = torch.Generator().manual_seed(18)
    zero = torch.randn(2, 4, 3, 3, generator=g)
    tiny = torch.randn(1, 4, 2, 2, generator=g)
    tiny[0, :, 0, 0] = torch.tensor([6e-11, 8e-11, 0.0, 0.0])  # ||f|| = 1e-10: + eps halves it, - eps divides by ~0
    zero[0, :, 1, 1] = 0
    cases = [Case("random features (2, 8, 5, 5)", {"f": torch.randn(2, 8, 5, 5, generator=g)}),
             Case("one channel", {"f": torch.randn(3, 1, 4, 4, generator=g)}),
             Case("a zero feature vector", {"f": zero}),
             Case("large values", {"f": 1e3 * torch.randn(1, 16, 2, 2, generator=g)}),
             Case("a feature vector of norm 1e-10, where eps doubles the norm", {"f": tiny})]
    mistakes = {
        "normalise over the channel axis (dim=1), not over all positions":
            lambda f: f / (f.pow(2).sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10),
        "divide by the L2 norm (square root of the sum of squares), not by the sum of squares":
            lambda f: f / (f.pow(2).sum(dim=1, keepdim=True) + 1e-10),
        "divide by the L2 norm, not the L1 norm": lambda f: f / (f.abs().sum(dim=1, keepdim=True) + 1e-10),
        "add eps to the norm, ||f|| + 1e-10 (subtracting it divides by zero when ||f|| = eps)":
            lambda f: f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() - 1e-10),
    }
    return check_function("normalize_channels", fn, normalize_channels, cases, mistakes, atol=1e-6,
                          exercise="Exercise 4.1", replaces=[normalize_channels],
                          nan_hint="A zero (or tiny) feature vector divides by 0: add eps = 1e-10 to the norm, ||f|| + eps.")


def check_lpips_distance(fn) -> Verdict:
    """Exercise 4.2: ``fn(feats_x, feats_x0, weights)`` = sum_l mean_{h,w} sum_c w_lc (y_hat - y0_hat)^2, per image."""
    from ..perceptual import lpips_distance, normalize_channels

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
    return check_function("lpips_distance", fn, reference, cases, mistakes, exercise="Exercise 4.2", replaces=[lpips_distance])




# -- Exercises 4.0 and 4.4: what LPIPS calls far, and how often it agrees with the judgments -----------------------
SHIFT_NOISE_CHOICES = {"a": "the one-pixel shift", "b": "the Gaussian noise", "c": "both about equally far"}


def check_shift_noise_prediction(prediction, l2_shift: float, l2_noise: float, lpips_shift: float,
                                 lpips_noise: float) -> Verdict:
    """Exercise 4.0 (predict, then run): a one-pixel shift and Gaussian noise with no larger L2 distance: which
    does LPIPS (the course backbone, learned weights) call farther? The arguments are the experiment's means."""
    values = {"l2_shift": l2_shift, "l2_noise": l2_noise, "lpips_shift": lpips_shift, "lpips_noise": lpips_noise}
    for name, v in values.items():
        if not isinstance(v, float) or not v >= 0:
            raise CourseworkError(f"shift or noise (Exercise 4.0): {name}: expected a non-negative number from the "
                                  f"experiment cell, got {v!r}; run the experiment cell first")
    ratio = lpips_noise / max(lpips_shift, 1e-12)
    outcome = "b" if ratio > 1.5 else "a" if ratio < 1 / 1.5 else "c"
    return check_prediction(
        "shift or noise", "Exercise 4.0", prediction, SHIFT_NOISE_CHOICES, outcome,
        f"L2 {l2_shift:.4f} (shift) and {l2_noise:.4f} (noise); LPIPS {lpips_shift:.3f} and {lpips_noise:.3f}, "
        f"{ratio:.0f}x",
        "Deep features of a shifted image are shifted features: after the unit normalisation the difference is "
        "small at every position, while noise changes the local statistics everywhere. Part of the gap is this "
        "backbone: the course classifier was also trained to name noise and blur, so its features are built to "
        "separate them.")


def _lpips_with_learned_weights():
    from ..perceptual import LPIPS

    return LPIPS("shapes")  # the shipped w_l (shapes_lpips_lin)


@functools.lru_cache(maxsize=None)
def two_afc_agreement(n: int = 300, seed: int = 2024) -> dict:
    """Exercise 4.3's measurement: on make_2afc(n, seed=seed), the fraction of triplets where the distance calls the
    judged-closer patch closer (ties count for p0), for L2 (mean squared error) and for LPIPS with the learned
    weights; and the paired standard error of their difference."""
    from ..data.distortions import make_2afc

    d = make_2afc(n, seed=seed)
    metric = _lpips_with_learned_weights()
    with torch.no_grad():
        l0, l1 = metric(d["ref"], d["p0"]).flatten(), metric(d["ref"], d["p1"]).flatten()
    e0 = ((d["p0"] - d["ref"]) ** 2).mean((1, 2, 3))
    e1 = ((d["p1"] - d["ref"]) ** 2).mean((1, 2, 3))

    def agrees(a0, a1):
        return torch.where(d["judge"] == 1, (a1 < a0).double(), (a1 >= a0).double())

    a_l2, a_lp = agrees(e0, e1), agrees(l0, l1)
    diff = a_lp - a_l2
    return {"l2": float(a_l2.mean()), "lpips": float(a_lp.mean()), "diff": float(diff.mean()),
            "diff_se": float(diff.std() / n ** 0.5), "n": n}


def check_2afc_experiment(l2_agreement, lpips_agreement) -> Verdict:
    """Exercise 4.3 (experiment): agreement of L2 and of LPIPS with the synthetic 2AFC judgments."""
    name, exercise = "2AFC agreement", "Exercise 4.3"
    m = two_afc_agreement()
    hint = ("Use make_2afc(300, seed=2024); a distance agrees when it calls p1 closer exactly where judge == 1 "
            "(d(ref, p1) < d(ref, p0)), and p0 closer (>=) where judge == 0; L2 is the mean squared difference per "
            "image, LPIPS the notebook's `metric`.")
    a = check_number(name, exercise, "l2_agreement", l2_agreement, m["l2"], 0.01, hint)
    b = check_number(name, exercise, "lpips_agreement", lpips_agreement, m["lpips"], 0.01, hint)
    lo, hi = m["diff"] - 1.96 * m["diff_se"], m["diff"] + 1.96 * m["diff_se"]
    return announce(f"{name}: right - L2 {a:.3f}, LPIPS {b:.3f} on {m['n']} triplets; LPIPS - L2 = {m['diff']:+.3f} "
                    f"(95% interval {lo:+.3f} to {hi:+.3f}, paired). The judgments here are synthetic (a severity per "
                    "distortion kind): L2 cannot know that a shift is milder than noise of the same energy, LPIPS "
                    "partly can.")
