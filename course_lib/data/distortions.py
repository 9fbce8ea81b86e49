"""Image distortions with a strength knob, and a two-alternative forced-choice (2AFC) set built from them.

Every distortion maps images in [-1, 1] to images in [-1, 1]; strength 0 is the identity and larger strengths
distort more. The 2AFC judgments are *synthetic*: "the patch with the lower severity is closer", where severity is
strength times a per-type weight chosen by the course (below) — a stand-in for human judgments, not a measurement
of them.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .._checks import check_positive_int, check_range, check_tensor
from .shapes import generate_shapes

__all__ = ["DISTORTIONS", "SEVERITY_WEIGHTS", "distort", "translate", "make_2afc"]

DISTORTIONS = ("blur", "noise", "shift", "colour", "blocking", "contrast")
# How much one unit of strength "costs" in the synthetic judgments: a person barely minds a small shift of the
# whole image or a slight contrast change, and minds noise and colour changes much more.
SEVERITY_WEIGHTS = {"blur": 1.0, "noise": 1.5, "shift": 0.3, "colour": 1.2, "blocking": 1.0, "contrast": 0.5}


def _gaussian_blur(x, sigma):
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(2.5 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def translate(images: torch.Tensor, dy: int, dx: int, fill: float = -1.0) -> torch.Tensor:
    """Move (N, C, H, W) images by ``dy`` rows and ``dx`` columns (positive: down and right) without wrapping:
    what leaves the frame is lost and the uncovered border is ``fill`` (-1, shapes world's black background).
    The small misalignment the LPIPS paper's claim is about, unlike the circular ``distort(..., "shift", ...)``."""
    check_tensor(images, "images", ndim=4)
    h, w = images.shape[-2:]
    for name, v, size in (("dy", dy, h), ("dx", dx, w)):
        if not isinstance(v, int) or isinstance(v, bool) or abs(v) >= size:
            raise ValueError(f"{name}: expected an int with |{name}| < {size} (the image side), got {v!r}")
    out = torch.full_like(images, fill)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def distort(images: torch.Tensor, kind: str, strength: float, generator: torch.Generator | None = None):
    """Distort (N, 3, H, W) images in [-1, 1] by ``kind`` (one of DISTORTIONS) at ``strength`` in [0, 1]:

    blur: Gaussian, sigma up to 2 px; noise: Gaussian, std up to 0.5; shift: circular, up to H/4 px;
    colour: rotate the RGB channels towards the next (hue-like), up to a full step; blocking: average 4x4 blocks
    (JPEG-like), blended in; contrast: scale towards the mean, down to 20%. Result clamped to [-1, 1].
    """
    check_tensor(images, "images", ndim=4)
    if kind not in DISTORTIONS:
        raise ValueError(f"kind: expected one of {DISTORTIONS}, got {kind!r}")
    check_range(float(strength), "strength", 0.0, 1.0)
    s = float(strength)
    x = images
    if kind == "blur":
        out = _gaussian_blur(x, 2.0 * s)
    elif kind == "noise":
        out = x + 0.5 * s * torch.randn(x.shape, generator=generator).to(x)
    elif kind == "shift":
        out = torch.roll(x, shifts=(round(s * x.shape[-2] / 4), round(s * x.shape[-1] / 4)), dims=(-2, -1))
    elif kind == "colour":
        out = (1 - s) * x + s * x[:, [1, 2, 0]]
    elif kind == "blocking":
        blocks = F.interpolate(F.avg_pool2d(x, 4, ceil_mode=True), size=x.shape[-2:], mode="nearest")
        out = (1 - s) * x + s * blocks
    else:  # contrast
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        out = mean + (1 - 0.8 * s) * (x - mean)
    return out.clamp(-1, 1)


def make_2afc(n: int, image_size: int = 32, seed: int = 0):
    """A synthetic 2AFC set: for each reference, two distorted versions and the judgment.

    Returns a dict: ref, p0, p1 (N, 3, H, W); kinds (N, 2) distortion ids; strengths (N, 2);
    judge (N,) float, 1.0 when p1 is judged closer (its severity is lower), 0.0 when p0 is.
    """
    check_positive_int(n, "n")
    g = torch.Generator().manual_seed(seed)
    ref = generate_shapes(n, image_size, (1, 2), generator=g).images
    kinds = torch.randint(0, len(DISTORTIONS), (n, 2), generator=g)
    strengths = 0.15 + 0.85 * torch.rand(n, 2, generator=g)
    patches = []
    for j in range(2):
        out = torch.empty_like(ref)
        for k, kind in enumerate(DISTORTIONS):
            for i in (kinds[:, j] == k).nonzero().flatten().tolist():
                out[i] = distort(ref[i:i + 1], kind, float(strengths[i, j]), g)[0]
        patches.append(out)
    w = torch.tensor([SEVERITY_WEIGHTS[k] for k in DISTORTIONS])
    severity = w[kinds] * strengths
    return {"ref": ref, "p0": patches[0], "p1": patches[1], "kinds": kinds, "strengths": strengths,
            "judge": (severity[:, 1] < severity[:, 0]).float()}
