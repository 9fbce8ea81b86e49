"""Checks of notebook 09: compute against patch size (predict, then run), patchify / unpatchify, and adaLN-Zero's
gated residual."""
from __future__ import annotations

import functools

import torch
from torch import nn

from .core import Case, CourseworkError, Verdict, announce, check_function, check_prediction


# -- Exercise 9.1: patchify and unpatchify ------------------------------------------------------------------------
def _patch_cases():
    g = torch.Generator().manual_seed(90)
    return [Case(label, {"x": torch.randn(shape, generator=g), "patch_size": p})
            for label, shape, p in (("a batch of 8x8x4 latents, p = 2", (3, 4, 8, 8), 2),
                                    ("p = 4: 4 tokens of 64 values", (2, 4, 8, 8), 4),
                                    ("p = 1: one token per position", (2, 4, 8, 8), 1),
                                    ("3 channels, a 6x10 image, p = 2 (not square)", (1, 3, 6, 10), 2))]


def check_patchify(patchify_fn, unpatchify_fn) -> Verdict:
    """Exercise 9.1: ``patchify_fn(x, patch_size)`` equals :func:`course_lib.nets.dit.patchify` (raster order of the
    tokens, each token's values in (p, p, C) order) and ``unpatchify_fn(tokens, patch_size, channels, height,
    width)`` inverts it (:func:`course_lib.nets.dit.unpatchify`)."""
    from einops import rearrange

    from ..nets.dit import patchify, unpatchify

    name, exercise = "patchify / unpatchify", "Exercise 9.1"
    cases = _patch_cases()
    mistakes = {
        "each token's values are in (p, p, C) order, the channels fastest (the reference code's nhwpqc): you put "
        "the channels first, (C, p, p)": lambda x, patch_size: rearrange(
            x, "b c (h p) (w q) -> b (h w) (c p q)", p=patch_size, q=patch_size),
        "the tokens go in raster order, row by row (h, then w): you went column by column": lambda x, patch_size:
            rearrange(x, "b c (h p) (w q) -> b (w h) (p q c)", p=patch_size, q=patch_size),
        "inside a patch, rows come before columns (p, then q): you swapped them": lambda x, patch_size: rearrange(
            x, "b c (h p) (w q) -> b (h w) (q p c)", p=patch_size, q=patch_size),
        "a patch is a p x p block of neighbouring pixels ((h p), not (p h)): you took every (H/p)-th pixel":
            lambda x, patch_size: rearrange(x, "b c (p h) (q w) -> b (h w) (p q c)", p=patch_size, q=patch_size),
    }
    check_function("patchify", patchify_fn, patchify, cases, mistakes, atol=0, rtol=0, exercise=exercise,
                   replaces=[patchify, unpatchify], announce=False)

    inverse_cases = [Case(c.label, {"tokens": patchify(c.kwargs["x"], c.kwargs["patch_size"]),
                                    "patch_size": c.kwargs["patch_size"], "channels": c.kwargs["x"].shape[1],
                                    "height": c.kwargs["x"].shape[2], "width": c.kwargs["x"].shape[3]})
                     for c in cases]
    inverse_mistakes = {
        "unpatchify must read each token in the order patchify wrote it, (p, p, C), the channels fastest":
            lambda tokens, patch_size, channels, height, width: rearrange(
                tokens, "b (h w) (c p q) -> b c (h p) (w q)", h=height // patch_size, p=patch_size, q=patch_size),
        "the tokens are in raster order (row by row): the first W/p tokens are the top row of patches":
            lambda tokens, patch_size, channels, height, width: rearrange(
                tokens, "b (w h) (p q c) -> b c (h p) (w q)", h=height // patch_size, p=patch_size, q=patch_size),
    }
    check_function("unpatchify", unpatchify_fn, unpatchify, inverse_cases, inverse_mistakes, atol=0, rtol=0,
                   exercise=exercise, replaces=[patchify, unpatchify], announce=False)
    return announce(f"{name}: {len(cases)}/{len(cases)} cases match, and unpatchify(patchify(x)) == x on each")


# -- Exercise 9.2: adaLN-Zero's gated residual --------------------------------------------------------------------
def check_gated_residual(fn) -> Verdict:
    """Exercise 9.2: ``fn(x, branch, norm, shift, scale, gate)`` is x + gate * branch(norm(x) * (1 + scale) + shift),
    shift / scale / gate (B, D) broadcast over the N tokens: :func:`course_lib.nets.dit.gated_residual` (with
    :func:`course_lib.nets.dit.modulate`)."""
    from ..nets.dit import gated_residual, modulate

    torch.manual_seed(91)
    g = torch.Generator().manual_seed(91)
    cases = []
    for label, (b, n, d), gate_zero in (("4 tokens of width 8", (2, 4, 8), False),
                                        ("16 tokens of width 32, one sample", (1, 16, 32), False),
                                        ("the gate at 0 (initialisation): the identity", (3, 5, 16), True)):
        branch = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(approximate="tanh"), nn.Linear(2 * d, d))
        norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        gate = torch.zeros(b, d) if gate_zero else torch.randn(b, d, generator=g)
        cases.append(Case(label, {"x": torch.randn(b, n, d, generator=g), "branch": branch, "norm": norm,
                                  "shift": torch.randn(b, d, generator=g), "scale": torch.randn(b, d, generator=g),
                                  "gate": gate}))

    def wrong(x, branch, norm, shift, scale, gate, one=True, normalise=True, inside=True, order="norm_first"):
        s, b_, a = scale.unsqueeze(1), shift.unsqueeze(1), gate.unsqueeze(1)
        h = norm(x) if normalise else x
        h = h * ((1 + s) if one else s) + b_
        if order == "modulate_first":
            h = norm(x * (1 + s) + b_)
        out = branch(h)
        return x + a * out if inside else a * (x + out)

    mistakes = {
        "modulate is x (1 + scale) + shift: without the 1 a scale of 0 (its value at initialisation) zeroes the "
        "tokens instead of leaving them alone": functools.partial(wrong, one=False),
        "normalise first (the block's LayerNorm has no affine of its own), then modulate: LN(x)(1 + scale) + shift":
            functools.partial(wrong, normalise=False),
        "the layer norm comes before the modulation, not after: LN(x)(1 + scale) + shift (modulating first "
        "normalises the shift and scale away)": functools.partial(wrong, order="modulate_first"),
        "the gate scales the branch only: x + gate * F(...), so that gate = 0 is the identity (gate * (x + F) "
        "zeroes the tokens)": functools.partial(wrong, inside=False),
    }
    return check_function("gated_residual", fn, gated_residual, cases, mistakes, atol=1e-5, exercise="Exercise 9.2",
                          replaces=[gated_residual, modulate])


# -- Exercise 9.0: patch size and compute -------------------------------------------------------------------------
PATCH_CHOICES = {
    "a": "about the same: the parameters barely change, so the compute barely changes",
    "b": "about 2x: each side has twice the patches",
    "c": "about 4x: four times the tokens go through every block",
    "d": "about 16x: attention compares every token with every other, so it grows with the square of the tokens",
}


def _patch_outcome(ratio: float) -> str:
    """The choice a measured Gflops ratio (p = 1 over p = 2) supports."""
    if ratio < 1.4:
        return "a"
    if ratio < 3.0:
        return "b"
    if ratio < 8.0:
        return "c"
    return "d"


def check_patch_prediction(prediction, gflops: dict) -> Verdict:
    """Exercise 9.0 (predict, then run): from 2x2 to 1x1 patches at the same width and depth, how do the Gflops
    change? ``gflops`` is the experiment cell's {1: Gflops at p = 1, 2: ..., 4: ...} of the shipped configuration."""
    if not isinstance(gflops, dict) or not {1, 2} <= set(gflops):
        raise CourseworkError(f"patch size (Exercise 9.0): gflops: expected a dict {{patch size: Gflops}} with "
                              f"the keys 1 and 2 from the experiment cell, got {gflops!r}; run that cell first")
    ratio = gflops[1] / gflops[2]
    return check_prediction(
        "patch size", "Exercise 9.0", prediction, PATCH_CHOICES, _patch_outcome(ratio),
        f"Gflops {gflops[2]:.4f} at p = 2, {gflops[1]:.4f} at p = 1: x{ratio:.2f}",
        "Every linear layer of a block runs once per token, and halving p makes (H/p)(W/p) four times as many "
        "tokens; the parameters hardly change (only the patch embedding and the output layer see p). Attention's "
        "token-by-token product does grow with N^2, but at D = 128 and N = 64 it is a small share of the block: "
        "the ratio is just above 4. Compute, not parameters, is what patch size buys (the paper's Fig. 6).")


# -- Exercise 9.3: is quality linear in compute, or in its logarithm? ---------------------------------------------
def _grid_correlations(grid: dict) -> tuple[float, float]:
    """(Pearson(log Gflops, FD), Pearson(Gflops, FD)) over the scaling grid's rows."""
    import math

    from ..dit import pearson

    gflops, fd = [r["gflops"] for r in grid.values()], [r["fd"] for r in grid.values()]
    return pearson([math.log(g) for g in gflops], fd), pearson(gflops, fd)


def check_correlation_experiment(r_log, r_linear, stronger, grid: dict | None = None) -> Verdict:
    """Exercise 9.3 (experiment): from the scaling grid (``results["grid"]`` of ``./course experiments dit``; the
    shipped results when ``grid`` is None), Pearson's r of FD with log Gflops and with Gflops itself, and which of
    the two is the stronger (larger |r|): "log" or "linear"."""
    from .core import NotStarted, check_choice, check_number

    name, exercise = "FD against compute", "Exercise 9.3"
    if grid is None:
        import json

        from .. import results_path

        grid = json.loads(results_path("dit_table.json").read_text())["grid"]
    if r_log is None or r_linear is None or stronger is None:
        raise NotStarted(f"{name} ({exercise}): set r_log, r_linear and stronger from your computation")
    from ..dit import PAPER_FID_GFLOPS

    want_log, want_linear = _grid_correlations(grid)
    paper_log, paper_linear = _grid_correlations({k: {"gflops": g, "fd": f} for k, (g, f) in PAPER_FID_GFLOPS.items()})
    check_number(name, exercise, "r_log", r_log, want_log, 1e-3,
                 "Correlate FD with the natural logarithm of each model's Gflops (math.log), over every grid row; "
                 "Pearson's r is the covariance over the product of the standard deviations.")
    check_number(name, exercise, "r_linear", r_linear, want_linear, 1e-3,
                 "The same with the Gflops themselves, not their logarithm.")
    check_choice(name, exercise, "stronger", stronger, ("log", "linear"))
    right = "log" if abs(want_log) > abs(want_linear) else "linear"
    if stronger != right:
        raise CourseworkError(f"{name} ({exercise}): stronger = {stronger!r}, but |r_log| = {abs(want_log):.3f} and "
                              f"|r_linear| = {abs(want_linear):.3f}: the larger |r| is the stronger relation")
    reading = ("as in the paper, FD falls by roughly equal steps for each multiple of the compute: quality follows "
               "its logarithm" if right == "log" else
               "unlike the paper's models, ours follow the compute itself more closely than its logarithm")
    return announce(f"{name}: right - r = {want_log:.3f} with log Gflops, {want_linear:.3f} with Gflops over "
                    f"{len(grid)} models (the paper's 12 FIDs: {paper_log:.3f} and {paper_linear:.3f}); {reading}. Halving the patch size "
                    f"multiplies the compute by about 4, so the models spread over decades of Gflops.")
