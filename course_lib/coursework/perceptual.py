"""Checks of notebook 04: LPIPS."""
from __future__ import annotations

import torch

from .core import Case, CourseworkError, Verdict, check_function


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


