"""The slider demo of notebook 04: a distortion lab comparing L2, PSNR, SSIM and LPIPS, with LPIPS's spatial map."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from ..data.distortions import DISTORTIONS, distort
from ..metrics import psnr, ssim
from ..widgets import moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["distortion_lab", "notebook_demos"]

DPI = 80


def distortion_lab(images: torch.Tensor, metric, seed: int = 0):
    """Sliders: distortion type and strength; four images, their distorted versions, LPIPS's spatial map, and
    L2 / PSNR / SSIM / LPIPS averaged over the four."""

    def compute(kind, strength):
        x = distort(images, kind, strength, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            d = metric(images, x)
            dmap = metric(images, x, spatial=True)
        return {"x": x, "map": dmap, "l2": float(((x - images) ** 2).mean()),
                "psnr": float(psnr(x, images).clamp(max=99).mean()), "ssim": float(ssim(x, images).mean()),
                "lpips": float(d.mean())}

    def title(r, v):
        return (f"{v['kind']} at {v['strength']:.2f}:  L2 {r['l2']:.4f}   PSNR {r['psnr']:.1f} dB   "
                f"SSIM {r['ssim']:.3f}   LPIPS {r['lpips']:.4f}")

    def draw(r, v):
        n = images.shape[0]
        fig, axes = plt.subplots(3, 1, figsize=(7, 4.6), dpi=DPI)
        viz.show_images(images, nrow=n, ax=axes[0], title="reference")
        art = fig.artists_ = {"x": moving(viz.show_images(r["x"], nrow=n, ax=axes[1], title="distorted"))}
        art["map"] = moving(axes[2].imshow(torch.cat(list(r["map"]), dim=1).numpy(), cmap="magma", vmin=0,
                                           vmax=max(float(r["map"].max()), 1e-6), interpolation="nearest"))
        art["title"] = moving(fig.suptitle(title(r, v), fontsize=9))
        axes[2].set_axis_off()
        axes[2].set_title("LPIPS, spatial (brighter = more different)", fontsize=9)
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["x"].set_data(viz.image_grid(r["x"], nrow=images.shape[0]))
        art["map"].set_data(torch.cat(list(r["map"]), dim=1).numpy())
        art["map"].set_clim(0, max(float(r["map"].max()), 1e-6))
        art["title"].set_text(title(r, v))

    return slider_demo(compute, draw, update=update, kind=list(DISTORTIONS), strength=(0.0, 1.0, 0.05, 0.5))


def notebook_demos(metric=None, images=None) -> NotebookDemos:
    """Notebook 04's distortion lab on ``images`` (four 32x32 images of one or two shapes, seed 5, when not passed)
    measured with its setup's ``metric`` (the learned ``LPIPS("shapes")`` when not passed)."""
    from ..data import generate_shapes

    if metric is None:
        from ..perceptual import LPIPS

        metric = LPIPS("shapes")
    images = generate_shapes(4, 32, (1, 2), seed=5).images if images is None else images
    builders = {"distortion lab": lambda: distortion_lab(images, metric)}
    measured = {"04 distortion lab": Measured("distortion lab", tuple(
        dict(kind=k, strength=s) for k in ("blur", "noise", "shift", "contrast") for s in (0.0, 0.5, 1.0)))}
    return NotebookDemos("04", builders, measured)
