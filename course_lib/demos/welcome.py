"""The slider demo of notebook 00 (welcome): notebook 01's forward-process demo (:func:`.ddim.forward_demo`: compute,
draw, and update with the artists it moves marked) on the welcome notebook's ring, the pattern of every demo of the
course."""
from __future__ import annotations

import torch

from . import Measured, NotebookDemos
from .ddim import forward_demo

__all__ = ["notebook_demos"]


def notebook_demos(ring=None, alphas_cumprod=None, x0=None, labels=None) -> NotebookDemos:
    """Notebook 00's demo from its setup's ``ring`` (8 modes, radius 2, std 0.1), ``alphas_cumprod`` (linear, 1000)
    and 2000 points ``x0`` with their ``labels`` (seed 0), beside one 32x32 shapes image; what is not passed is made
    as that setup makes it."""
    from ..data import generate_shapes, ring_mixture
    from ..schedules import make_alphas_cumprod

    ring = ring_mixture(num_modes=8, radius=2.0, std=0.1) if ring is None else ring
    ac = make_alphas_cumprod("linear", 1000) if alphas_cumprod is None else alphas_cumprod
    if x0 is None:
        x0, labels = ring.sample(2000, torch.Generator().manual_seed(0))
    image = generate_shapes(1, image_size=32, num_objects=1, seed=5).images[0]
    builders = {"forward": lambda: forward_demo(image, x0, labels, ring, ac)}
    measured = {"00 forward": Measured("forward", tuple(dict(t=t) for t in (0, 100, 300, 500, 700, 999)))}
    return NotebookDemos("00", builders, measured)
