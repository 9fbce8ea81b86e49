"""Pictures used across the course: image grids, 2-D scatters over density contours, trajectories.

Colours are fixed per equation term (``TERM_COLORS``) so that "predicted x0" is the same
blue in every notebook, "direction pointing to x_t" the same orange, and so on.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["TERM_COLORS", "to_image", "attention_overlay", "image_grid", "enlarge", "show_images", "compare_samples", "scatter_2d", "density_grid", "density_contours",
           "plot_trajectories", "class_colors", "interval_errorbar"]

TERM_COLORS = {
    "x_t": "#555555",
    "predicted_x0": "#1f77b4",   # DDIM: predicted x0
    "direction": "#ff7f0e",      # DDIM: direction pointing to x_t
    "noise": "#2ca02c",          # DDIM: random noise
    "guidance": "#d62728",       # classifier gradient / guidance shift
    "data": "#7f7f7f",
    "codebook": "#9467bd",       # VQ codes
    "commitment": "#8c564b",
    "reconstruction": "#e377c2",
}


def class_colors(num_classes: int):
    return [plt.get_cmap("tab10")(i % 10) for i in range(num_classes)]


def to_image(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (H, W) tensor in [-1, 1] -> numpy image in [0, 1] for ``imshow`` (values outside are clipped for display only)."""
    x = x.detach().float().cpu()
    if x.ndim == 3:
        x = x.permute(1, 2, 0)
    return ((x + 1) / 2).clamp(0, 1).numpy()


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> one (rows*H, nrow*W, 3) numpy image in [0, 1], separated by ``pad`` pixels."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected a tensor (N, C, H, W), got {getattr(images, 'shape', type(images))}")
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    grid = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, 3), pad_value, dtype=np.float32)
    imgs = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    if c == 1:
        imgs = imgs.expand(n, 3, h, w)
    imgs = imgs.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = imgs[i]
    return grid


def interval_errorbar(ax, x, values, intervals, **style):
    """Plot ``values`` at ``x`` with each one's [low, high] interval as an error bar (matplotlib wants the distances
    below and above each value, not the ends); returns what ``ax.errorbar`` returns."""
    if len(values) != len(intervals) or len(values) != len(x):
        raise ValueError(f"intervals: expected one [low, high] per value ({len(x)} x, {len(values)} values), got "
                         f"{len(intervals)}")
    below = [v - low for v, (low, _) in zip(values, intervals)]
    above = [high - v for v, (_, high) in zip(values, intervals)]
    return ax.errorbar(x, values, yerr=[below, above], **style)


def enlarge(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (N, C, h, w) shown at ``size`` x ``size`` without smoothing (nearest neighbour), so that a small sample's
    pixels stay visible beside a larger image."""
    return torch.nn.functional.interpolate(images, size=(size, size), mode="nearest")


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None, scale: float = 0.5):
    """Draw an image grid on ``ax`` (a new figure if None); returns the AxesImage (update it with ``set_data``)."""
    if ax is None:
        rows = -(-images.shape[0] // nrow)
        _, ax = plt.subplots(figsize=(scale * nrow * images.shape[-1] / 8, scale * rows * images.shape[-2] / 8))
    im = ax.imshow(image_grid(images, nrow), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return im


def compare_samples(columns: dict, captions: list, per_caption: int) -> plt.Figure:
    """Samples of several models side by side, one row per caption: ``columns`` maps a label to images
    (len(captions) * per_caption, 3, H, W) drawn caption by caption, in the same caption order for every model."""
    for label, images in columns.items():
        if len(images) != len(captions) * per_caption:
            raise ValueError(f"columns[{label!r}]: expected {len(captions) * per_caption} images ({per_caption} per "
                             f"caption), got {len(images)}")
    fig, axes = plt.subplots(len(captions), len(columns), figsize=(4 * len(columns), 1.25 * len(captions)),
                             squeeze=False)
    for i, caption in enumerate(captions):
        for j, (label, images) in enumerate(columns.items()):
            show_images(images[per_caption * i: per_caption * (i + 1)], nrow=per_caption, ax=axes[i, j],
                        title=f"{label}: {caption}")
    fig.tight_layout()
    return fig


def density_grid(log_density_fn, lim: float = 3.0, n: int = 120) -> torch.Tensor:
    """The density ``exp(log_density_fn(points (M, 2)))`` on an n x n grid over [-lim, lim]^2 (rows are x_2), for
    :func:`density_contours`. Demos compute it with the rest of a slider's maths, so that it is cached."""
    xs = torch.linspace(-lim, lim, n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    with torch.no_grad():
        return log_density_fn(torch.stack([gx.flatten(), gy.flatten()], 1)).exp().reshape(n, n)


def density_contours(ax, density, lim: float = 3.0, n: int = 120,
                     levels=(0.02, 0.08, 0.25, 0.5, 0.8), **kwargs):
    """Contours of a density over [-lim, lim]^2: ``density`` is ``log_density_fn(points (M, 2)) -> (M,)`` or a
    square grid from :func:`density_grid` (then ``n`` is its size).

    ``levels`` are fractions of the density's maximum on the grid, so sharp and flat densities
    get comparable pictures.
    """
    dens = density if isinstance(density, torch.Tensor) else density_grid(density, lim, n)
    if dens.ndim != 2 or dens.shape[0] != dens.shape[1]:
        raise ValueError(f"density: expected a function or a square (n, n) grid, got shape {tuple(dens.shape)}")
    xs = np.linspace(-lim, lim, dens.shape[0])
    kwargs.setdefault("colors", TERM_COLORS["data"])
    kwargs.setdefault("linewidths", 0.6)
    top = float(dens.max())
    return ax.contour(xs, xs, dens.numpy(), levels=[f * top for f in levels], **kwargs)


def scatter_2d(x: torch.Tensor, ax=None, labels=None, mixture=None, alpha_bar: float = 1.0, lim: float = 3.0,
               title: str | None = None, s: float = 3, **kwargs):
    """Scatter of 2-D points, coloured by ``labels``; with a ``mixture``, its noised density's contours behind.

    Returns the PathCollection (update positions in place with ``set_offsets``).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if mixture is not None:
        density_contours(ax, lambda p: mixture.log_prob(p, alpha_bar), lim=lim)
    x = x.detach().cpu()
    c = None
    if labels is not None:
        cols = class_colors(int(labels.max()) + 1)
        c = [cols[int(i)] for i in labels]
    sc = ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=s, c=c, **kwargs)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")
    if title:
        ax.set_title(title)
    return sc


def plot_trajectories(traj: torch.Tensor, ax=None, max_paths: int = 50, color=None, lim: float = 3.0, **kwargs):
    """Paths of 2-D points through sampling; ``traj`` is (steps+1, N, 2) as ``ddim_sample(return_trajectory=True)`` gives."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if traj.ndim != 3 or traj.shape[-1] != 2:
        raise ValueError(f"traj: expected shape (steps+1, N, 2), got {tuple(traj.shape)}")
    tr = traj[:, :max_paths].detach().cpu().numpy()
    color = color or TERM_COLORS["x_t"]
    for i in range(tr.shape[1]):
        ax.plot(tr[:, i, 0], tr[:, i, 1], color=color, lw=0.6, alpha=0.6, **kwargs)
    ax.scatter(tr[0, :, 0], tr[0, :, 1], s=6, color=TERM_COLORS["noise"], label="$x_T$", zorder=3)
    ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=6, color=TERM_COLORS["predicted_x0"], label="$x_0$", zorder=3)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8)
    return ax


def attention_overlay(ax, image: torch.Tensor, attention: torch.Tensor, title: str | None = None, alpha: float = 0.6):
    """One word's cross-attention over the image it helped make: the image (3, H, W) in [-1, 1], and the
    attention map (h, w) upsampled to H x W without smoothing (each latent cell stays a visible block)."""
    if attention.ndim != 2:
        raise ValueError(f"attention: expected one map (h, w), got shape {tuple(attention.shape)}")
    side = image.shape[-2:]
    up = torch.nn.functional.interpolate(attention[None, None].float(), size=side, mode="nearest")[0, 0]
    ax.imshow(to_image(image), interpolation="nearest")
    ax.imshow(up.numpy(), cmap="inferno", alpha=alpha)
    if title is not None:
        ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return ax

