"""The slider demo of notebook 00 (welcome): the forward process on the ring of Gaussians, the smallest demo of the
course and the pattern of all the others. ``compute`` is the maths (cached by slider value), ``draw`` the first
picture, ``update`` moves what ``draw`` drew for every later move: the artists it changes are marked with
:func:`~course_lib.widgets.moving`, so a move redraws them alone over a kept picture of the rest."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from ..diffusion import q_sample
from ..widgets import moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["noising_demo", "notebook_demos"]

DPI = 80


def noising_demo(x0: torch.Tensor, labels: torch.Tensor, mixture, alphas_cumprod, noise: torch.Tensor):
    """Slider t: the points ``x0`` (coloured by ``labels``) noised to step t with the fixed ``noise``,
    :math:`x_t = \\sqrt{\\bar\\alpha_t}\\,x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon`, over the contours of the exact
    density :math:`q_t` of the ``mixture``."""

    def compute(t):
        abar = float(alphas_cumprod[t])
        return {"abar": abar, "x_t": q_sample(x0, abar, noise),
                "density": viz.density_grid(lambda p: mixture.log_prob(p, abar))}

    def title(r, v):  # plain text: it changes on every move (see widgets.moving)
        return f"t = {v['t']},  ᾱₜ = {r['abar']:.3f}"

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(4, 4), dpi=DPI)
        fig.artists_ = {"ax": ax, "points": moving(viz.scatter_2d(r["x_t"], ax, labels=labels)),
                        "contours": moving(viz.density_contours(ax, r["density"])),
                        "title": moving(ax.set_title(title(r, v), fontsize=10))}
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["points"].set_offsets(r["x_t"].numpy())
        art["contours"].remove()  # a contour set cannot be moved: draw the new density's, marked too
        art["contours"] = moving(viz.density_contours(art["ax"], r["density"]))
        art["title"].set_text(title(r, v))

    return slider_demo(compute, draw, update=update, t=(0, len(alphas_cumprod) - 1, 1, 100))


def notebook_demos(ring=None, alphas_cumprod=None, x0=None, labels=None, noise=None) -> NotebookDemos:
    """Notebook 00's demo from its setup's ``ring`` (8 modes, radius 2, std 0.1), ``alphas_cumprod`` (linear, 1000),
    2000 points ``x0`` with their ``labels`` (seed 0) and ``noise`` (seed 1); what is not passed is made as that setup
    makes it."""
    from ..data import ring_mixture
    from ..schedules import make_alphas_cumprod

    ring = ring_mixture(num_modes=8, radius=2.0, std=0.1) if ring is None else ring
    ac = make_alphas_cumprod("linear", 1000) if alphas_cumprod is None else alphas_cumprod
    if x0 is None:
        x0, labels = ring.sample(2000, torch.Generator().manual_seed(0))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)) if noise is None else noise
    builders = {"forward": lambda: noising_demo(x0, labels, ring, ac, noise)}
    measured = {"00 forward": Measured("forward", tuple(dict(t=t) for t in (0, 100, 300, 500, 700, 999)))}
    return NotebookDemos("00", builders, measured)
