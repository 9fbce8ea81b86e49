"""The slider demos of notebook 03 (VQ-VAE, lookup-free quantization)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from ..quantize import codebook_usage, nearest_code, vq_losses
from ..widgets import moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["train_codebook_2d", "voronoi_demo", "sweep_reconstruction_demo", "notebook_demos"]

DPI = 80


def train_codebook_2d(points: torch.Tensor, num_codes: int = 16, steps: int = 300, lr: float = 0.05,
                      snapshot_every: int = 10, seed: int = 0, init_scale: float = 0.1):
    """Learn a codebook for fixed 2-D "encoder outputs" with the codebook loss alone (Adam); returns the codebook
    after every ``snapshot_every`` steps, starting with the initial one: a (snapshots, K, 2) tensor."""
    g = torch.Generator().manual_seed(seed)
    codebook = (torch.randn(num_codes, 2, generator=g) * init_scale).requires_grad_(True)
    opt = torch.optim.Adam([codebook], lr=lr)
    snaps = [codebook.detach().clone()]
    for step in range(1, steps + 1):
        z_q = codebook[nearest_code(points, codebook)]
        codebook_loss, _ = vq_losses(points, z_q)
        opt.zero_grad()
        codebook_loss.backward()
        opt.step()
        if step % snapshot_every == 0:
            snaps.append(codebook.detach().clone())
    return torch.stack(snaps)


def voronoi_demo(points: torch.Tensor, snapshots: torch.Tensor, snapshot_every: int = 10, lim: float = 3.0,
                 n: int = 200):
    """The argmin look-up in 2-D: every pixel of the plane coloured by its nearest code (the Voronoi cells),
    encoder outputs as dots, codes as crosses; a slider scrubs through the training snapshots."""
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    K = snapshots.shape[1]

    def compute(snapshot):
        cb = snapshots[snapshot]
        use = codebook_usage(nearest_code(points, cb), K)
        return {"cells": nearest_code(grid, cb).reshape(n, n), "codes": cb, "usage": use["usage"],
                "perplexity": use["perplexity"]}

    def title(r, v):
        return (f"step {v['snapshot'] * snapshot_every}: {round(r['usage'] * K)} of {K} codes used, "
                f"perplexity {r['perplexity']:.1f}")

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(5, 5), dpi=DPI)
        art = fig.artists_ = {"ax": ax}
        art["cells"] = moving(ax.imshow(r["cells"].numpy(), origin="lower", extent=(-lim, lim, -lim, lim),
                                        cmap="tab20", vmin=0, vmax=max(K - 1, 1), alpha=0.45, interpolation="nearest"))
        ax.scatter(points[:, 0], points[:, 1], s=3, color=viz.TERM_COLORS["x_t"], label="encoder outputs $z_e$")
        art["codes"] = moving(ax.scatter(r["codes"][:, 0], r["codes"][:, 1], marker="X", s=70, color="black",
                                         label="codes $C_j$"))
        moving(ax.title)  # update writes the step and the usage into it
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.legend(fontsize=7, loc="lower left")
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["cells"].set_data(r["cells"].numpy())
        art["codes"].set_offsets(r["codes"].numpy())
        art["ax"].set_title(title(r, v), fontsize=9)

    return slider_demo(compute, draw, update=update, snapshot=(0, snapshots.shape[0] - 1, 1, 0))


def sweep_reconstruction_demo(samples: dict, results: dict, prefix: str, key_name: str):
    """Reconstructions from a sweep (``samples[f"{prefix}|{value}"]``, 8 images) with their metrics; one picker over
    the swept values (e.g. beta)."""
    values = list(results)

    def compute(**kw):
        value = kw[key_name]
        return {"x": samples[f"{prefix}|{value}"], **results[value]}

    def title(r, v):
        if "per_seed" in r:  # a sweep over seeds: these images are the first seed's run, the numbers its own
            first = r["per_seed"][0]
            return (f"{key_name} = {v[key_name]} (seed {r['seeds'][0]}): PSNR {first['psnr_db']:.1f} dB, "
                    f"{100 * first['usage']:.0f}% of codes used")
        return f"{key_name} = {v[key_name]}: PSNR {r['psnr_db']:.1f} dB, {100 * r['usage']:.0f}% of codes used"

    def draw(r, v):
        fig, axes = plt.subplots(2, 1, figsize=(6, 2.4), dpi=DPI)
        viz.show_images(samples["originals"], nrow=8, ax=axes[0], title="originals")
        fig.artists_ = {"grid": moving(viz.show_images(r["x"], nrow=8, ax=axes[1])), "ax": axes[1]}
        moving(axes[1].title)
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        fig.artists_["grid"].set_data(viz.image_grid(r["x"], nrow=8))
        fig.artists_["ax"].set_title(title(r, v), fontsize=9)

    return slider_demo(compute, draw, update=update, **{key_name: values})


def notebook_demos(points=None, sweeps=None, sweep_samples=None) -> NotebookDemos:
    """Notebook 03's demos: a 16-code codebook trained live on ``points`` (800 points of the wide ring, 8 modes of
    std 0.3, seed 0, when not passed; the Voronoi cells move with it), and the stored beta sweep (``sweeps`` from
    ``vq_sweeps.json``, ``sweep_samples`` from ``vq_samples.safetensors``, loaded here when not passed)."""
    import json

    from safetensors.torch import load_file

    from .. import results_path
    from ..data import ring_mixture

    sweeps = json.loads(results_path("vq_sweeps.json").read_text()) if sweeps is None else sweeps
    samples = load_file(str(results_path("vq_samples.safetensors"))) if sweep_samples is None else sweep_samples

    def voronoi():
        x = ring_mixture(8, 2.0, 0.3).sample(800, torch.Generator().manual_seed(0))[0] if points is None else points
        return voronoi_demo(x, train_codebook_2d(x, num_codes=16, steps=300, snapshot_every=10), snapshot_every=10)

    builders = {"voronoi": voronoi, "beta": lambda: sweep_reconstruction_demo(samples, sweeps["beta"], "beta", "beta")}
    measured = {"03 voronoi": Measured("voronoi", tuple(dict(snapshot=k) for k in (0, 5, 10, 20, 30))),
                "03 beta": Measured("beta", tuple(dict(beta=b) for b in sweeps["beta"]))}
    return NotebookDemos("03", builders, measured)
