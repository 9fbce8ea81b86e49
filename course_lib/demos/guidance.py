"""The slider demos of notebook 02 (classifier guidance, classifier-free guidance)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from ..data import SHAPES
from ..guidance import (cfg_sample, classifier_guided_mean, classifier_log_prob_grad, guided_ddim_sample,
                        guided_density)
from ..schedules import timestep_subsequence
from ..widgets import fewer_steps, moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["taylor_demo", "posterior_field_demo", "exact_guidance_demo", "shapes_guidance_demo", "SCALE_OPTIONS",
           "notebook_demos"]

DPI = 80
SCALE_OPTIONS = [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0]


def _grid(lim, n):
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    return gx, gy, torch.stack([gx.flatten(), gy.flatten()], 1), (xs[1] - xs[0]).item() ** 2


def taylor_demo(mixture, alphas_cumprod, mean=(0.9, 0.9), t: int = 150, lim: float = 3.0, n: int = 121):
    """Why guidance shifts the mean: the exact product N(x; mu, var I) p(y | x) (left) against the Gaussian
    N(mu + var * grad log p(y | mu), var I) of the first-order Taylor expansion (right). Sliders: the step's
    variance (log10) and the class y. The title gives the total-variation distance between the two."""
    mu = torch.tensor(mean, dtype=torch.float32)
    gx, gy, pts, cell = _grid(lim, n)
    clf = mixture.classifier_fn(alphas_cumprod)
    tt = torch.full((pts.shape[0],), t)
    log_post = clf(pts, tt).log_softmax(1)  # log p(y | x) on the grid, (M, K)

    def compute(log10_var, y):
        var = 10.0**log10_var
        log_gauss = -((pts - mu) ** 2).sum(1) / (2 * var)
        exact = guided_density(log_gauss, log_post[:, y]) / cell  # eq. 2's product, normalised on the grid
        g = classifier_log_prob_grad(clf, mu[None], torch.tensor([t]), torch.tensor([y]))[0]
        shifted_mean = classifier_guided_mean(mu[None], var, g[None], 1.0)[0]  # Algorithm 1's mean, s = 1
        approx = (-((pts - shifted_mean) ** 2).sum(1) / (2 * var)).softmax(0) / cell
        tv = 0.5 * (exact - approx).abs().sum().item() * cell
        exact_mean = (exact[:, None] * pts).sum(0) * cell
        return {"exact": exact.reshape(n, n), "approx": approx.reshape(n, n), "tv": tv, "grad": g,
                "shifted_mean": shifted_mean, "exact_mean": exact_mean, "var": var}

    def draw(r, v):
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), dpi=DPI)
        art = fig.artists_ = {"axes": axes, "im": []}
        for ax, key, title in zip(axes, ("exact", "approx"), ("exact product $p(x_t|x_{t+1})\\,p(y|x_t)$",
                                                             "shifted Gaussian $\\mathcal{N}(\\mu+\\Sigma g, \\Sigma)$")):
            art["im"].append(moving(ax.imshow(r[key].numpy(), origin="lower", extent=(-lim, lim, -lim, lim),
                                              cmap="Greens", interpolation="nearest")))
            viz.density_contours(ax, mixture.log_prob, lim=lim, levels=(0.1, 0.5))
            ax.scatter(*mu.numpy(), color=viz.TERM_COLORS["x_t"], s=30, label=r"$\mu$")
            ax.set_title(title, fontsize=9)
        art["shift"] = moving(axes[1].scatter(*r["shifted_mean"].numpy(), color=viz.TERM_COLORS["guidance"],
                                              marker="x", s=60, label=r"$\mu + \Sigma g$"))
        art["exact_mean"] = moving(axes[0].scatter(*r["exact_mean"].numpy(), color="black", marker="+", s=60,
                                                   label="mean of the product"))
        for ax in axes:
            ax.legend(fontsize=7, loc="lower left")
        art["numbers"] = moving(fig.suptitle(numbers(r, v), fontsize=10))
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        for im, key in zip(art["im"], ("exact", "approx")):
            im.set_data(r[key].numpy())
            im.set_clim(0, float(r[key].max()))
        art["shift"].set_offsets(r["shifted_mean"].numpy()[None])
        art["exact_mean"].set_offsets(r["exact_mean"].numpy()[None])
        art["numbers"].set_text(numbers(r, v))

    def numbers(r, v):
        return f"class y = {v['y']}, variance {r['var']:.3g}: total variation between the two = {r['tv']:.3f}"

    return slider_demo(compute, draw, update=update, log10_var=(-3.0, 0.0, 0.1, -1.5),
                       y=list(range(mixture.num_components)))


def posterior_field_demo(mixture, alphas_cumprod, lim: float = 3.0):
    """p(y | x_t)^s on a grid (how a scale s > 1 sharpens the classifier) and the field grad log p(y | x_t)
    (the direction guidance pushes); sliders t, class y and scale s."""
    gx, gy, pts, _ = _grid(lim, 101)
    _, _, coarse, _ = _grid(lim, 17)
    clf = mixture.classifier_fn(alphas_cumprod)

    def compute(t, y, scale):
        post = clf(pts, torch.full((pts.shape[0],), t)).softmax(1)[:, y]
        g = classifier_log_prob_grad(clf, coarse, torch.full((coarse.shape[0],), t), torch.full((coarse.shape[0],), y))
        return {"post_s": (post**scale).reshape(101, 101), "grad": g}

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(4.8, 4.8), dpi=DPI)
        art = fig.artists_ = {"ax": ax}
        art["im"] = moving(ax.imshow(r["post_s"].numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="Reds",
                                     interpolation="nearest", vmin=0, vmax=1))
        zeros = torch.zeros(coarse.shape[0])
        art["quiver"] = moving(ax.quiver(coarse[:, 0], coarse[:, 1], zeros, zeros, color=viz.TERM_COLORS["guidance"],
                                         angles="xy"))  # arrows set in update
        viz.density_contours(ax, mixture.log_prob, lim=lim, levels=(0.1, 0.5))
        ax.set_title(r"$p(y\,|\,x_t)^s$ (red) and $\nabla_{x_t}\log p(y\,|\,x_t)$ (arrows)", fontsize=9)
        art["numbers"] = moving(fig.suptitle(numbers(v), fontsize=10))
        update(fig, r, v)
        fig.tight_layout()
        return fig

    def numbers(v):  # plain text (see widgets.moving)
        return f"class y = {v['y']},  scale s = {v['scale']:g},  t = {v['t']}"

    def update(fig, r, v):
        art = fig.artists_
        art["im"].set_data(r["post_s"].numpy())
        g = r["grad"] / (1 + r["grad"].norm(dim=1, keepdim=True))  # squash long arrows, keep direction
        art["quiver"].set_UVC(g[:, 0], g[:, 1])
        art["numbers"].set_text(numbers(v))

    return slider_demo(compute, draw, update=update, t=(0, len(alphas_cumprod) - 1, 1, 300),
                       y=list(range(mixture.num_components)), scale=SCALE_OPTIONS)


def exact_guidance_demo(mixture, alphas_cumprod, num_points: int = 300, steps: int = 25, seed: int = 0):
    """Guided DDIM (Algorithm 2) with the exact eps* and the exact classifier of the mixture; sliders class y
    and scale s. The title gives the fraction of samples whose most likely component is y (the right Voronoi
    region, not the right density) and how far they sit from that component's centre, in units of its std: data
    drawn from a 2-D Gaussian sit at sqrt(pi/2) = 1.25 on average, over-guided samples much farther out. 25 steps:
    each takes a classifier gradient (autograd, about 1 ms), and a new setting must answer within 100 ms."""
    eps_fn = mixture.eps_fn(alphas_cumprod)
    clf = mixture.classifier_fn(alphas_cumprod)
    x_T = torch.randn(num_points, 2, generator=torch.Generator().manual_seed(seed))
    ts = timestep_subsequence(len(alphas_cumprod), steps)

    def compute(y, scale):
        labels = torch.full((num_points,), y)
        x = guided_ddim_sample(eps_fn, lambda x, t, yy: classifier_log_prob_grad(clf, x, t, yy), x_T,
                               alphas_cumprod, ts, labels, scale)
        distance = ((x - mixture.means[y]).norm(dim=1) / float(mixture.std)).mean().item()
        return {"x": x, "hit": (mixture.class_posterior(x).argmax(1) == y).float().mean().item(),
                "distance": distance}

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=DPI)
        fig.artists_ = {"ax": ax, "points": moving(viz.scatter_2d(r["x"], ax, mixture=mixture,
                                                                  color=viz.TERM_COLORS["guidance"]))}
        moving(ax.title)  # update writes the numbers into the title
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        fig.artists_["points"].set_offsets(r["x"].numpy())
        fig.artists_["ax"].set_title(f"guided DDIM, exact classifier: y={v['y']}, s={v['scale']:g}\n"
                                     f"{100 * r['hit']:.0f}% nearest component y, at {r['distance']:.1f} std from "
                                     f"its centre (data: 1.25)", fontsize=9)

    return slider_demo(compute, draw, update=update, y=list(range(mixture.num_components)), scale=SCALE_OPTIONS)


def shapes_guidance_demo(ddpm, noisy_classifier, alphas_cumprod, num_images: int = 6, steps: int = 16, seed: int = 0,
                         preview_steps: int = 4):
    """Live, on shapes: classifier guidance (noise-aware classifier on the unconditional model) beside
    classifier-free guidance (the same label-dropout model), same x_T; pickers for the class and the scale.
    Both samplers run on every new choice (3 network evaluations per step, one with a backward pass: about 30 ms
    a step on 2 CPU cores): a new choice shows ``preview_steps`` steps first (marked as a preview) and the
    ``steps`` asked follow."""
    x_T = torch.randn(num_images, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    grad_fn = lambda x, t, y: classifier_log_prob_grad(noisy_classifier, x, t, y)  # noqa: E731
    full_steps = steps

    def compute(shape, scale, steps=full_steps):
        ts = timestep_subsequence(len(alphas_cumprod), steps)
        y = torch.full((num_images,), SHAPES.index(shape))
        cg = guided_ddim_sample(lambda x, t: ddpm(x, t), grad_fn, x_T, alphas_cumprod, ts, y, scale)
        with torch.no_grad():
            cfg = cfg_sample(ddpm, x_T, alphas_cumprod, ts, y, scale)
        return {"cg": cg.detach(), "cfg": cfg}

    def draw(r, v):
        fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 1.25 * num_images), 3.6), dpi=DPI)  # readable 16 px images
        fig.artists_ = {"cg": moving(viz.show_images(r["cg"], nrow=num_images, ax=axes[0])),
                        "cfg": moving(viz.show_images(r["cfg"], nrow=num_images, ax=axes[1])), "axes": axes}
        moving(axes[0].title, axes[1].title)
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["cg"].set_data(viz.image_grid(r["cg"], nrow=num_images))
        art["cfg"].set_data(viz.image_grid(r["cfg"], nrow=num_images))
        art["axes"][0].set_title(f"classifier guidance, '{v['shape']}', s={v['scale']:g}", fontsize=9)
        art["axes"][1].set_title(f"classifier-free guidance, '{v['shape']}', s={v['scale']:g}", fontsize=9)

    return slider_demo(compute, draw, update=update, preview=fewer_steps(compute, preview_steps, full_steps=full_steps),
                       shape=list(SHAPES), scale=SCALE_OPTIONS)


def notebook_demos(ring=None, alphas_cumprod=None, ddpm=None, noisy_classifier=None) -> NotebookDemos:
    """Notebook 02's demos from its setup's ``ring`` (8 modes of std 0.3: the classes overlap when noised),
    ``alphas_cumprod``, ``ddpm`` (``shapes_ddpm16``) and ``noisy_classifier`` (``shapes_noisy_classifier16``);
    what is not passed is made as that setup makes it."""
    from .. import checkpoints
    from ..data import ring_mixture
    from ..schedules import make_alphas_cumprod

    ring = ring_mixture(8, radius=2.0, std=0.3) if ring is None else ring
    ac = make_alphas_cumprod("linear", 1000) if alphas_cumprod is None else alphas_cumprod
    ddpm = checkpoints.load("shapes_ddpm16") if ddpm is None else ddpm
    noisy = checkpoints.load("shapes_noisy_classifier16") if noisy_classifier is None else noisy_classifier
    builders = {"taylor": lambda: taylor_demo(ring, ac),
                "field": lambda: posterior_field_demo(ring, ac),
                "exact guidance": lambda: exact_guidance_demo(ring, ac),
                "shapes guidance": lambda: shapes_guidance_demo(ddpm, noisy, ac)}
    measured = {
        "02 taylor": Measured("taylor", tuple(dict(log10_var=v, y=c) for v in (-3.0, -1.5, 0.0) for c in (0, 7))),
        "02 field": Measured("field", tuple(dict(t=t, y=c, scale=s) for t in (0, 300, 999) for c in (0, 7)
                                            for s in (0.0, 10.0))),
        "02 exact guidance": Measured("exact guidance", tuple(dict(y=c, scale=s) for c in (0, 7)
                                                              for s in (0.0, 1.0, 10.0))),
        "02 shapes guidance (images)": Measured("shapes guidance", tuple(dict(shape=sh, scale=s)
                                                                         for sh in ("circle", "cross")
                                                                         for s in (0.0, 3.0, 10.0)), "images"),
    }
    return NotebookDemos("02", builders, measured)
