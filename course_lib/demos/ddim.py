"""The slider demos of notebook 01 (DDIM). Each function returns a :class:`~course_lib.widgets.SliderDemo`;
``demo.compute(**values)`` is the maths (cached), ``demo.show()`` puts it under sliders."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Circle

from .. import viz
from ..diffusion import (ddim_sample, ddim_step_terms, ddpm_posterior, q_sample, q_sigma_posterior,
                         sigma_eta)
from ..metrics import MMDToReference, mixture_nll
from ..schedules import timestep_subsequence
from ..widgets import moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["forward_demo", "posterior_demo", "terms_demo", "sampling_demo", "shapes_sampler_demo", "STEP_OPTIONS",
           "notebook_demos"]

STEP_OPTIONS = [5, 10, 20, 50, 100, 200, 500, 1000]
DPI = 80  # live figures are re-rendered on every slider move; fewer pixels keep the callback within budget


def forward_demo(image: torch.Tensor, points: torch.Tensor, labels, mixture, alphas_cumprod, seed: int = 0):
    """DDIM eq. 1 (1) on one shapes image and a 2-D cloud; slider t. The noise is drawn once, so only t moves."""
    g = torch.Generator().manual_seed(seed)
    img_noise = torch.randn(image.shape, generator=g)
    pt_noise = torch.randn(points.shape, generator=g)

    def compute(t):
        abar = float(alphas_cumprod[t])
        return {"abar": abar, "image": q_sample(image[None], abar, img_noise[None])[0],
                "points": q_sample(points, abar, pt_noise),
                "density": viz.density_grid(lambda p: mixture.log_prob(p, abar))}

    def numbers(r, v):  # plain text (see widgets.moving)
        return f"t = {v['t']}:   √ᾱₜ = {math.sqrt(r['abar']):.3f},   √(1 − ᾱₜ) = {math.sqrt(1 - r['abar']):.3f}"

    def draw(r, v):
        fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.8), dpi=DPI)
        fig.artists_ = {"image": moving(a.imshow(viz.to_image(r["image"]), interpolation="nearest")),
                        "points": moving(viz.scatter_2d(r["points"], b, labels=labels)), "ax": b,
                        "contours": moving(viz.density_contours(b, r["density"])),
                        "numbers": moving(fig.suptitle(numbers(r, v), fontsize=10))}
        a.set_title(r"$x_t=\sqrt{\bar\alpha_t}\,x_0+\sqrt{1-\bar\alpha_t}\,\epsilon$", fontsize=9)
        b.set_title("2-D cloud, and the density of $x_t$", fontsize=9)
        a.set_axis_off()
        fig.tight_layout()
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["image"].set_data(viz.to_image(r["image"]))
        art["numbers"].set_text(numbers(r, v))
        art["points"].set_offsets(r["points"].numpy())
        art["contours"].remove()
        art["contours"] = moving(viz.density_contours(art["ax"], r["density"]))

    return slider_demo(compute, draw, update=update, t=(0, len(alphas_cumprod) - 1, 1, 100))


def posterior_demo(x0: torch.Tensor, alphas_cumprod, seed: int = 0, num_samples: int = 300):
    """DDIM eq. 7 (2): q_sigma(x_prev | x_t, x0) for one 2-D x0 and one x_t; sliders t, jump (prev = t - jump; DDIM's
    sub-sequences jump, jump = 1 is the one-step posterior) and eta. At eta = 1 the mean and spread coincide
    with DDPM's posterior (drawn as a cross)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 2, generator=g)
    draws = torch.randn(num_samples, 2, generator=g)

    def compute(t, jump, eta):
        a_t, a_prev = float(alphas_cumprod[t]), float(alphas_cumprod[max(t - jump, 0)])
        x_t = q_sample(x0[None], a_t, noise)
        sigma = sigma_eta(a_t, a_prev, eta)
        mean, var = q_sigma_posterior(x_t, x0[None], a_t, a_prev, sigma)
        ddpm_mean, ddpm_var = ddpm_posterior(x_t, x0[None], a_t, a_prev)
        return {"x_t": x_t[0], "mean": mean[0], "std": float(var.sqrt()), "samples": mean + var.sqrt() * draws,
                "ddpm_mean": ddpm_mean[0], "ddpm_std": float(ddpm_var.sqrt()), "a_t": a_t, "a_prev": a_prev}

    def numbers(r, v):  # plain text (see widgets.moving)
        return (f"t = {v['t']} → {max(v['t'] - v['jump'], 0)},  η = {v['eta']:.2f}:   σₜ = {r['std']:.4f}   "
                f"(DDPM posterior std {r['ddpm_std']:.4f})")

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(5, 5.2), dpi=DPI)
        C = viz.TERM_COLORS
        art = fig.artists_ = {"ax": ax}
        art["samples"] = moving(ax.scatter(*r["samples"].numpy().T, s=4, color=C["noise"], alpha=0.5,
                                           label=r"samples of $x_{prev}$"))
        art["circle"] = moving(ax.add_patch(Circle(r["mean"].numpy(), r["std"], fill=False, color=C["noise"])))
        ax.scatter(*x0.numpy(), color=C["predicted_x0"], s=60, label="$x_0$", zorder=3)
        art["x_t"] = moving(ax.scatter(*r["x_t"].numpy(), color=C["x_t"], s=60, label="$x_t$", zorder=3))
        art["mean"] = moving(ax.scatter(*r["mean"].numpy(), color="black", s=40, label=r"mean of $q_\sigma$",
                                        zorder=4))
        art["ddpm"] = moving(ax.scatter(*r["ddpm_mean"].numpy(), color=C["guidance"], s=80, marker="x",
                                        label="DDPM posterior mean", zorder=5))
        art["numbers"] = moving(fig.suptitle(numbers(r, v), fontsize=9))
        ax.set_title(r"$q_\sigma(x_{prev}\,|\,x_t, x_0)$: mean, 1-std circle and samples", fontsize=9)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="upper left")
        update(fig, r, v)
        fig.tight_layout()
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["samples"].set_offsets(r["samples"].numpy())
        art["circle"].set_center(r["mean"].numpy())
        art["circle"].set_radius(r["std"])
        for key in ("x_t", "mean"):
            art[key].set_offsets(r[key].numpy()[None])
        art["ddpm"].set_offsets(r["ddpm_mean"].numpy()[None])
        art["numbers"].set_text(numbers(r, v))
        # The view follows x0, x_t and the spread, in steps (half-widths a power of sqrt(2), centre on a grid of a
        # quarter of that): nearby slider values share a view, and a view's axes are drawn once (see render).
        pts = np.stack([x0.numpy(), r["x_t"].numpy(), r["mean"].numpy()])
        c = pts.mean(0)
        half = 1.15 * max(1.0, np.abs(pts - c).max() + 3 * max(r["std"], 0.05))
        half = math.sqrt(2) ** math.ceil(2 * math.log2(half))
        c = np.round(c / (half / 4)) * (half / 4)
        art["ax"].set_xlim(c[0] - half, c[0] + half)
        art["ax"].set_ylim(c[1] - half, c[1] + half)

    return slider_demo(compute, draw, update=update, t=(1, len(alphas_cumprod) - 1, 1, 300), jump=(1, 300, 1, 100),
                       eta=(0.0, 1.0, 0.05, 1.0))


def terms_demo(mixture, alphas_cumprod, num_points: int = 6, seed: int = 0, lim: float = 3.0):
    """DDIM eq. 12 (4) as three arrows per point, head to tail: sqrt(abar_prev) * predicted x0, the direction pointing to
    x_t, and the random noise; the exact eps* of ``mixture`` is the noise prediction. Sliders t, jump, eta."""
    g = torch.Generator().manual_seed(seed)
    x0, _ = mixture.sample(num_points, g)
    eps0 = torch.randn(x0.shape, generator=g)
    step_noise = torch.randn(x0.shape, generator=g)
    eps_fn = mixture.eps_fn(alphas_cumprod)

    def compute(t, jump, eta):
        prev = max(t - jump, 0)
        a_t, a_prev = float(alphas_cumprod[t]), float(alphas_cumprod[prev]) if t - jump >= 0 else 1.0
        x_t = q_sample(x0, a_t, eps0)
        eps = eps_fn(x_t, torch.full((num_points,), t))
        terms = ddim_step_terms(x_t, eps, a_t, a_prev, eta, step_noise)
        return {"x_t": x_t, "terms": terms, "a_t": a_t, "a_prev": a_prev,
                "sigma": float(sigma_eta(a_t, a_prev, eta)), "prev": t - jump,
                "density": viz.density_grid(lambda p: mixture.log_prob(p, a_prev), lim)}

    parts = [("predicted_x0", "pred_x0_term", r"$\sqrt{\bar\alpha_{t-1}}\,\hat x_0$"),
             ("direction", "direction", r"$\sqrt{1-\bar\alpha_{t-1}-\sigma_t^2}\,\epsilon_\theta$"),
             ("noise", "noise", r"$\sigma_t\epsilon_t$")]

    def numbers(r, v):  # plain text (see widgets.moving)
        return (f"t = {v['t']} → {r['prev'] if r['prev'] >= 0 else 'x₀'},  η = {v['eta']:.2f},  "
                f"σₜ = {r['sigma']:.3f}")

    def arrows(tm):
        """(start, vector) of the three arrows of every point, head to tail from the origin."""
        start, out = torch.zeros_like(tm.pred_x0), []
        for _, attr, _ in parts:
            vec = getattr(tm, attr) * torch.ones_like(start)
            out.append((start.numpy(), vec.numpy()))
            start = start + vec
        return out

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(7.0, 5.7), dpi=DPI)  # wide enough for the legend beside the plane
        art = fig.artists_ = {"ax": ax, "contours": moving(viz.density_contours(ax, r["density"], lim=lim))}
        art["quivers"] = []
        for (key, _, label), (start, vec) in zip(parts, arrows(r["terms"])):
            art["quivers"].append(moving(ax.quiver(start[:, 0], start[:, 1], vec[:, 0], vec[:, 1], angles="xy",
                                                   scale_units="xy", scale=1, color=viz.TERM_COLORS[key],
                                                   width=0.006, label=label, zorder=2)))
        tm = r["terms"]
        art["x_t"] = moving(ax.scatter(*r["x_t"].numpy().T, color=viz.TERM_COLORS["x_t"], s=40, label="$x_t$",
                                       zorder=3))
        art["x_prev"] = moving(ax.scatter(*tm.x_prev.numpy().T, color="black", s=25, marker="s", label="$x_{t-1}$",
                                          zorder=3))
        art["x0"] = moving(ax.scatter(*tm.pred_x0.numpy().T, color=viz.TERM_COLORS["predicted_x0"], marker="*", s=60,
                                      label=r"$\hat x_0$", zorder=3))
        art["numbers"] = moving(fig.suptitle(numbers(r, v), fontsize=10))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)  # off the arrows
        ax.set_title("DDIM eq. 12 (4): the step as three arrows from the origin, head to tail", fontsize=9)
        fig.tight_layout()
        return fig

    def update(fig, r, v):
        art = fig.artists_
        for q, (start, vec) in zip(art["quivers"], arrows(r["terms"])):
            q.set_offsets(start)
            q.set_UVC(vec[:, 0], vec[:, 1])
        art["x_t"].set_offsets(r["x_t"].numpy())
        art["x_prev"].set_offsets(r["terms"].x_prev.numpy())
        art["x0"].set_offsets(r["terms"].pred_x0.numpy())
        art["contours"].remove()
        art["contours"] = moving(viz.density_contours(art["ax"], r["density"], lim=lim))
        art["numbers"].set_text(numbers(r, v))

    return slider_demo(compute, draw, update=update, t=(1, len(alphas_cumprod) - 1, 1, 400), jump=(1, 500, 1, 100),
                       eta=(0.0, 1.0, 0.05, 0.0))


def sampling_demo(eps_fns: dict, mixture, alphas_cumprod, num_points: int = 256, seed: int = 0,
                  reference_size: int = 1000):
    """Sampling the 2-D ring with a choice of noise prediction (``eps_fns``: name -> eps_fn(x_t, t)), number of
    steps S, sub-sequence tau and eta; the title shows MMD to fresh data and the NLL under the exact ring."""
    reference, _ = mixture.sample(reference_size, torch.Generator().manual_seed(seed + 1))
    mmd = MMDToReference(reference)
    x_T = torch.randn(num_points, 2, generator=torch.Generator().manual_seed(seed))
    T = len(alphas_cumprod)

    def compute(model, steps, tau, eta):
        ts = timestep_subsequence(T, steps, tau)
        x = ddim_sample(eps_fns[model], x_T, alphas_cumprod, ts, eta=eta,
                        generator=torch.Generator().manual_seed(seed + 2))
        return {"x": x, "mmd": float(mmd(x)), "nll": float(mixture_nll(x, mixture))}

    def title(r, v):
        return (f"{v['model']}, S={v['steps']} ({v['tau']}), eta={v['eta']:.1f}\n"
                f"MMD {r['mmd']:.4f}   NLL {r['nll']:.2f} nats")

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=DPI)
        fig.artists_ = {"points": moving(viz.scatter_2d(r["x"], ax, mixture=mixture,
                                                        color=viz.TERM_COLORS["predicted_x0"])), "ax": ax}
        moving(ax.set_title(title(r, v), fontsize=9))
        return fig

    def update(fig, r, v):
        fig.artists_["points"].set_offsets(r["x"].numpy())
        fig.artists_["ax"].set_title(title(r, v), fontsize=9)  # the same Text artist, new text

    return slider_demo(compute, draw, update=update, model=list(eps_fns), steps=STEP_OPTIONS, tau=["uniform", "quadratic"],
                       eta=(0.0, 1.0, 0.1, 0.0))


def shapes_sampler_demo(samples: dict, table: dict):
    """The shapes DDPM under every sampler of the Table-1 sweep (precomputed by ``./course experiments
    ddim``): pick the sampler and S, see 16 samples and the measured FD, precision and recall."""
    samplers = list(table)
    steps = sorted({int(s) for row in table.values() for s in row})

    def compute(sampler, steps):
        return {"x": samples[f"{sampler}|S={steps}"], **table[sampler][str(steps)]}

    def title(r, v):
        return (f"{v['sampler']}, S={v['steps']}: FD {r['fd']:.2f}, precision {r['precision']:.2f}, "
                f"recall {r['recall']:.2f}")

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(6, 3.4), dpi=DPI)
        fig.artists_ = {"grid": moving(viz.show_images(r["x"], nrow=8, ax=ax)),
                        "title": moving(ax.set_title(title(r, v), fontsize=9))}
        return fig

    def update(fig, r, v):
        fig.artists_["grid"].set_data(viz.image_grid(r["x"], nrow=8))
        fig.artists_["title"].set_text(title(r, v))

    return slider_demo(compute, draw, update=update, sampler=samplers, steps=steps)


def notebook_demos(ring=None, alphas_cumprod=None, mlp=None) -> NotebookDemos:
    """Notebook 01's demos from its setup's ``ring`` (the course's ring of 8), ``alphas_cumprod`` (DDPM's linear
    schedule) and ``mlp`` (the shipped ``ring8_mlp``); what is not passed is made as that setup makes it. The
    demos' own data (600 ring points, one 32x32 image, the point x_0 = (2, 0), the stored Table-1 samples) is made
    here, with its seeds, when a demo is first used."""
    from .. import checkpoints, results_path
    from ..data import generate_shapes, ring_mixture
    from ..schedules import make_alphas_cumprod

    ring = ring_mixture() if ring is None else ring
    ac = make_alphas_cumprod("linear", 1000) if alphas_cumprod is None else alphas_cumprod
    mlp = checkpoints.load("ring8_mlp") if mlp is None else mlp

    def forward():
        points, labels = ring.sample(600, torch.Generator().manual_seed(0))
        image = generate_shapes(1, image_size=32, num_objects=1, seed=5).images[0]
        return forward_demo(image, points, labels, ring, ac)

    def shapes_samplers():
        import json

        from safetensors.torch import load_file

        table = json.loads(results_path("ddim_tables.json").read_text())["table1_shapes_ddpm16"]
        return shapes_sampler_demo(load_file(str(results_path("ddim_samples.safetensors"))), table)

    eps_fns = {"exact eps*": ring.eps_fn(ac), "trained MLP": lambda x, t: mlp(x, t)}
    builders = {"forward": forward,
                "posterior": lambda: posterior_demo(torch.tensor([2.0, 0.0]), ac),
                "terms": lambda: terms_demo(ring, ac),
                "sampling": lambda: sampling_demo(eps_fns, ring, ac),
                "shapes samplers": shapes_samplers}
    sampling = lambda small: tuple(dict(model=m, steps=s, tau="uniform", eta=e) for m in eps_fns  # noqa: E731
                                   for s in STEP_OPTIONS if (s <= 50) == small for e in (0.0, 1.0))
    measured = {
        "01 forward": Measured("forward", tuple(dict(t=t) for t in (0, 100, 300, 500, 700, 999))),
        "01 posterior": Measured("posterior", tuple(dict(t=t, jump=j, eta=e) for t in (1, 300, 999)
                                                    for j in (1, 100, 300) for e in (0.0, 1.0))),
        "01 terms": Measured("terms", tuple(dict(t=t, jump=j, eta=e) for t in (1, 400, 999) for j in (1, 100, 500)
                                            for e in (0.0, 1.0))),
        # one demo, two budgets: up to S = 50 it is a 2-D demo; at S = 100-1000 each move runs that many
        # sequential network evaluations (the cost DDIM removes, shown on purpose), a sampler's budget
        "01 sampling S<=50": Measured("sampling", sampling(True)),
        "01 sampling S>=100 (sampler)": Measured("sampling", sampling(False), "sampler"),
        "01 shapes samplers": Measured("shapes samplers", tuple(dict(sampler=s, steps=n) for s in
                                                                ("eta=0.0", "eta=1.0", "sigma_hat")
                                                                for n in (10, 100, 1000)), "images"),
    }
    return NotebookDemos("01", builders, measured)
