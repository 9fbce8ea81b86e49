"""The slider demos of notebook 09 (DiT): what adaLN-Zero's regressed shift, scale and gate do as t changes, and
the shipped DiT sampling a class."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..data import SHAPES
from ..diffusion import q_sample
from ..widgets import fewer_steps, image_strip_demo, moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["adaln_statistics", "adaln_demo", "class_demo", "notebook_demos"]

DPI = 80
QUANTITIES = ("gate1", "gate2", "scale1", "scale2", "shift1", "shift2")  # alpha, gamma, beta of attention / MLP
LABELS = {"gate1": "|α| attention", "gate2": "|α| MLP", "scale1": "|γ| attention", "scale2": "|γ| MLP",
          "shift1": "|β| attention", "shift2": "|β| MLP"}


@torch.no_grad()
def adaln_statistics(model, z0: torch.Tensor, t: int, label: int, alphas_cumprod: torch.Tensor,
                     seed: int = 0) -> dict:
    """One adaLN-Zero DiT on the latents z0 (N, C, H, W) noised to step t, conditioned on ``label``: per block, the
    mean over channels and samples of |alpha|, |gamma| and |beta| for attention (1) and MLP (2) ({quantity:
    (depth,)}), and the tokens' RMS entering the first block and after each block ("rms", (depth + 1,)); also how
    far each block moves the tokens (RMS of the update over RMS of its input, "update", (depth,))."""
    n = z0.shape[0]
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    z_t = q_sample(z0, alphas_cumprod[t], noise)
    ts = torch.full((n,), t)
    c = model.condition(ts, torch.full((n,), label), z_t)
    tokens = model.embed(z_t)
    stats = {q: [] for q in QUANTITIES}
    rms, update = [float(tokens.pow(2).mean().sqrt())], []
    for block in model.blocks:
        m = block.modulation(c)
        for q in QUANTITIES:
            stats[q].append(float(m[q].abs().mean()))
        out = block(tokens, c)
        update.append(float((out - tokens).pow(2).mean().sqrt() / tokens.pow(2).mean().sqrt()))
        tokens = out
        rms.append(float(tokens.pow(2).mean().sqrt()))
    return {**{q: np.array(v) for q, v in stats.items()}, "rms": np.array(rms), "update": np.array(update),
            "alpha_bar": float(alphas_cumprod[t])}


def adaln_demo(model, latents: dict, alphas_cumprod: torch.Tensor):
    """Sliders for the timestep t and the class: left, per block, the mean |alpha|, |gamma|, |beta| that adaLN-Zero
    regresses from c = e_t + e_y (attention and MLP); right, the tokens' RMS through the blocks and how much each
    block changes them. ``latents``: {class name: (N, C, H, W) scaled latents of real images of that class}."""
    depth = len(model.blocks)
    x = np.arange(depth)
    width = 0.8 / len(QUANTITIES)

    def compute(t, shape):
        return adaln_statistics(model, latents[shape], t, SHAPES.index(shape), alphas_cumprod)

    # the axes' ranges from the slider's ends (t = 0 and T - 1, every class), so that no move draws off the axes
    ends = [compute(t, s) for t in (0, len(alphas_cumprod) - 1) for s in latents]
    top = {k: max(float(r[k].max()) for r in ends) for k in ("rms", "update")}
    top["bars"] = max(float(r[q].max()) for r in ends for q in QUANTITIES)

    def draw(r, v):
        fig, (ax_b, ax_r) = plt.subplots(1, 2, figsize=(9.4, 3.0), dpi=DPI, gridspec_kw={"width_ratios": [1.6, 1]})
        bars = {}
        for i, q in enumerate(QUANTITIES):
            bars[q] = ax_b.bar(x + (i - len(QUANTITIES) / 2 + 0.5) * width, r[q], width=width, label=LABELS[q],
                               color=f"C{i}")
        ax_b.set_xticks(x, [f"block {i + 1}" for i in x], fontsize=8)
        ax_b.set_ylim(0, 1.5 * top["bars"] + 0.05)  # room for the legend above the bars
        ax_b.set_ylabel("mean over channels", fontsize=8)
        ax_b.legend(fontsize=7, ncol=3, loc="upper left")
        ax_b.tick_params(labelsize=7)
        line_rms, = ax_r.plot(np.arange(depth + 1), r["rms"], "o-", color="k", label="token RMS")
        ax_u = ax_r.twinx()
        line_up, = ax_u.plot(np.arange(1, depth + 1), r["update"], "s--", color="C3", label="update / input RMS")
        ax_r.set_xticks(np.arange(depth + 1), ["in"] + [str(i + 1) for i in x], fontsize=7)
        ax_r.set_xlabel("after block", fontsize=8)
        ax_r.set_ylabel("token RMS", fontsize=8)
        ax_u.set_ylabel("block's update / its input (RMS)", fontsize=8, color="C3")
        ax_r.set_ylim(0, 1.15 * top["rms"])
        ax_u.set_ylim(0, 1.15 * top["update"])
        ax_r.tick_params(labelsize=7)
        ax_u.tick_params(labelsize=7)
        fig.artists_ = {"bars": bars, "rms": moving(line_rms), "update": moving(line_up),
                        "title": moving(fig.suptitle("", fontsize=9))}
        for q in QUANTITIES:
            moving(*bars[q].patches)
        fig.tight_layout()
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        for q in QUANTITIES:
            for bar, h in zip(art["bars"][q].patches, r[q]):
                bar.set_height(float(h))
        art["rms"].set_ydata(r["rms"])
        art["update"].set_ydata(r["update"])
        art["title"].set_text(f"t = {v['t']} (ᾱ_t = {r['alpha_bar']:.2g}), class '{v['shape']}': what c = e_t + e_y "
                              f"sets in each block")

    return slider_demo(compute, draw, update=update, t=(0, len(alphas_cumprod) - 1, 1, 500), shape=list(SHAPES))


def class_demo(pipe, n: int = 8, seed: int = 0, max_steps: int = 50, preview_steps: int = 16):
    """Pickers for the class, sliders for the guidance scale and the number of DDIM steps: n samples of the shipped
    DiT (the same starting noise for every setting, so only the label and the sampler change). A guided step costs
    about 6 ms on 2 CPU cores: a new setting with more than ``preview_steps`` steps shows those first (marked as a
    preview) and the asked steps follow."""
    z_T = torch.randn((n, *pipe.latent_shape), generator=torch.Generator().manual_seed(seed))

    def compute(shape, guidance, steps):
        labels = torch.full((n,), SHAPES.index(shape))
        return {"images": pipe.sample(labels, steps=steps, guidance_scale=guidance, z_T=z_T.clone()).cpu()}

    def title(r, v):
        return f"class '{v['shape']}', guidance {v['guidance']:.1f}, {v['steps']} DDIM steps"

    return image_strip_demo(compute, title, n, figsize=(7.2, 1.6), dpi=DPI, preview=fewer_steps(compute, preview_steps),
                            shape=list(SHAPES),
                            guidance=(1.0, 8.0, 0.5, 3.0), steps=(2, max_steps, 1, 20))


def notebook_demos(pipe=None, latents: dict | None = None) -> NotebookDemos:
    """Notebook 09's demos from its ``pipe`` (``LatentDiffusion.from_shipped("shapes_dit")``) and ``latents``
    ({class name: scaled latents of real images}, :func:`class_latents`, made here when not passed)."""
    if pipe is None:
        from ..ldm import LatentDiffusion

        pipe = LatentDiffusion.from_shipped("shapes_dit")
    if latents is None:
        latents = class_latents(pipe)
    builders = {"adaln": lambda: adaln_demo(pipe.unet, latents, pipe.alphas_cumprod),
                "class to image": lambda: class_demo(pipe)}
    measured = {
        "09 adaln": Measured("adaln", tuple(dict(t=t, shape=s) for t in (0, 250, 500, 999) for s in SHAPES)),
        "09 class to image (images)": Measured("class to image", tuple(
            dict(shape=s, guidance=g, steps=st) for s in ("circle", "cross") for g in (1.0, 3.0, 8.0)
            for st in (2, 20, 50)), "images"),
    }
    return NotebookDemos("09", builders, measured)


def class_latents(pipe, n: int = 16) -> dict:
    """{class name: the scaled latents of n held-out real images of that class} (notebook 09's adaLN demo input)."""
    from ..data import HELD_OUT_SEEDS, generate_shapes

    b = generate_shapes(8 * n, 32, 1, seed=HELD_OUT_SEEDS["ldm_real"])
    z = pipe.encode(b.images)
    labels = b.attributes["shape"][:, 0]
    return {s: z[labels == i][:n] for i, s in enumerate(SHAPES)}
