"""Regenerate the README's figures in img/: ``python -m course_lib.figures``."""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from . import checkpoints, viz  # noqa: E402
from .data import generate_shapes  # noqa: E402
from .diffusion import ddim_sample  # noqa: E402
from .schedules import make_alphas_cumprod, timestep_subsequence  # noqa: E402

IMG = Path(__file__).resolve().parent.parent / "img"


def shapes_world(path: Path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
    for row, size in enumerate((16, 32)):
        b = generate_shapes(8, size, (1, 2), seed=row)
        axes[row, 0].imshow(viz.image_grid(b.images, nrow=8), interpolation="nearest")
        axes[row, 0].set_title(f"{size}x{size}", fontsize=9)
        axes[row, 0].set_axis_off()
        axes[row, 1].set_axis_off()
        axes[row, 1].text(0, 0.5, "\n".join(f"{i}: {c}" for i, c in enumerate(b.captions)), fontsize=7.5,
                          va="center", family="monospace", transform=axes[row, 1].transAxes)
    fig.suptitle("shapes world: images and their captions (generated from a seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ddpm_samples(path: Path):
    model = checkpoints.load("shapes_ddpm16")
    ac = make_alphas_cumprod()
    labels = torch.arange(4).repeat_interleave(8)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.2))
    for ax, (title, steps, eta) in zip(axes, [("1000-step ancestral (eta=1)", 1000, 1.0),
                                             ("DDIM 50 steps (eta=0)", 50, 0.0), ("DDIM 20 steps (eta=0)", 20, 0.0)]):
        g = torch.Generator().manual_seed(0)
        xT = torch.randn(32, 3, 16, 16, generator=g)
        x = ddim_sample(lambda x, t: model(x, t, labels), xT, ac, timestep_subsequence(1000, steps), eta=eta,
                        generator=g)
        viz.show_images(x, nrow=8, ax=ax, title=title)
    fig.suptitle("shapes_ddpm16, rows asked for: circle, square, triangle, cross")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    IMG.mkdir(exist_ok=True)
    shapes_world(IMG / "shapes_world.png")
    ddpm_samples(IMG / "shapes_ddpm16_samples.png")
    print(f"wrote {IMG}/shapes_world.png, {IMG}/shapes_ddpm16_samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
