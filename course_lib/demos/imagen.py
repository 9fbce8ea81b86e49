"""The slider demos of notebook 08 (Imagen): the predicted x0 at every sampling step before and after thresholding,
and the cascade end to end (caption -> 16x16 base sample -> augmented condition -> 32x32 result)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import viz
from ..data import COLOURS, COLUMNS, ROWS, SHAPES, SIZES, encode_caption
from ..imagen import ImagenCascade, dynamic_threshold_s, sr_condition
from ..widgets import fewer_steps, image_strip_demo, moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["MODES", "HISTOGRAM_RANGE", "threshold_demo", "cascade_demo", "notebook_demos"]

DPI = 80
MODES = ("none", "static", "dynamic")  # the pickers' names of ddim_sample's threshold=None | "static" | "dynamic"
HISTOGRAM_RANGE = 4.0                   # the histograms span [-4, 4]; values beyond are counted in the title


def _caption(colour, shape, row, column, size, n):
    return encode_caption(f"{size} {colour} {shape} {row} {column}")[None].repeat(n, 1)


def _threshold(mode):
    return None if mode == "none" else mode


def threshold_demo(cascade: ImagenCascade, n: int = 4, seed: int = 0, steps: int = 20, preview_steps: int = 8):
    """Pickers for the caption and the thresholding mode, sliders for Imagen's guidance weight w, the dynamic
    percentile p and the sampling step shown. Left: the histogram of the base model's predicted x0 at that step,
    over the n samples' pixels and channels, before thresholding (grey) and after (colour), the data range and
    the dynamic thresholds s marked; right: the n final samples. One sampling run per (caption, mode, w, p): moving
    the step slider redraws from it. A run of ``steps`` guided steps takes about 0.3 s on 2 CPU cores: a new
    setting shows a run of ``preview_steps`` first (marked as a preview; its step nearest the same fraction of the
    way) and the asked run follows."""
    z_T = torch.randn((n, 3, cascade.base_size, cascade.base_size), generator=torch.Generator().manual_seed(seed))
    runs: dict = {}
    edges = torch.linspace(-HISTOGRAM_RANGE, HISTOGRAM_RANGE, 81)
    full_steps = steps

    def run(colour, shape, row, column, size, mode, w, percentile, steps):
        key = (colour, shape, row, column, size, mode, w, percentile, steps)
        if key not in runs:
            seen = []

            def watch(i, raw, used):
                s = dynamic_threshold_s(raw, percentile)  # what dynamic thresholding would divide by at this step
                seen.append((torch.histogram(raw.flatten().float(), edges)[0],
                             torch.histogram(used.flatten().float(), edges)[0],
                             int((raw.abs() > HISTOGRAM_RANGE).sum()), s.tolist(), float(raw.abs().max())))

            images = cascade.sample_base(_caption(colour, shape, row, column, size, n), steps, w, _threshold(mode),
                                         percentile, x_T=z_T.clone(), on_x0=watch)
            runs[key] = (seen, images)
        return runs[key]

    def compute(colour, shape, row, column, size, mode, w, percentile, step, steps=full_steps):
        seen, images = run(colour, shape, row, column, size, mode, w, percentile, steps)
        index = round(step * (steps - 1) / max(full_steps - 1, 1))  # the asked run: index == step
        before, after, beyond, s, top = seen[index]
        return {"before": before, "after": after, "beyond": beyond, "s": s, "max": top, "images": images,
                "index": index, "of": steps}

    floor = 0.8  # the log axis' bottom: empty bins sit on it

    def draw(r, v):
        fig, (ax_h, ax_i) = plt.subplots(1, 2, figsize=(9.4, 2.8), dpi=DPI, gridspec_kw={"width_ratios": [1.5, 1]})
        # one step patch per histogram (not 80 bars each): a move redraws two artists
        hist_before = ax_h.stairs(np.maximum(r["before"].numpy(), floor), edges.numpy(), baseline=floor, fill=True,
                             color="0.7", label="predicted x0")
        hist_after = ax_h.stairs(np.maximum(r["after"].numpy(), floor), edges.numpy(), baseline=floor, fill=True,
                             color="C3", alpha=0.7, label="after thresholding")
        for x in (-1, 1):
            ax_h.axvline(x, color="k", lw=0.8, ls="--")
        ax_h.set_yscale("log")
        ax_h.set_ylim(floor, 3 * n * 3 * cascade.base_size ** 2)
        ax_h.set_xlabel("value of the predicted x0 (data range [-1, 1] dashed)", fontsize=8)
        ax_h.set_ylabel("count (log)", fontsize=8)
        ax_h.legend(fontsize=7, loc="upper left")
        ax_h.tick_params(labelsize=7)
        fig.artists_ = {"before": moving(hist_before), "after": moving(hist_after),
                        "title_h": moving(ax_h.set_title("", fontsize=8)),
                        "img": moving(ax_i.imshow(viz.image_grid(r["images"], nrow=2), interpolation="nearest")),
                        "title_i": moving(ax_i.set_title("", fontsize=8))}
        ax_i.set_axis_off()
        update(fig, r, v)
        fig.tight_layout()  # after the titles hold their text: the layout leaves room for them
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["before"].set_data(np.maximum(r["before"].numpy(), floor))
        art["after"].set_data(np.maximum(r["after"].numpy(), floor))
        s = ", ".join(f"{x:.2f}" for x in r["s"])
        art["title_h"].set_text(f"step {r['index'] + 1}/{r['of']}: max |x0| {r['max']:.2f}, {r['beyond']} values beyond "
                                f"+-{HISTOGRAM_RANGE:g}; dynamic s at p = {v['percentile']:.3f}: {s}")
        art["img"].set_data(viz.image_grid(r["images"], nrow=2))
        art["title_i"].set_text(f"w = {v['w']:g}, {v['mode']}: the {n} samples")

    demo = slider_demo(compute, draw, update=update, preview=fewer_steps(compute, preview_steps, full_steps=full_steps),
                       colour=list(COLOURS), shape=list(SHAPES), row=list(ROWS), column=list(COLUMNS),
                       size=list(SIZES), mode=list(MODES), w=(1.0, 16.0, 0.5, 8.0),
                       percentile=(0.9, 1.0, 0.005, 0.995), step=(0, steps - 1, 1, steps - 1))
    demo.inner_caches.append(runs)
    return demo


def cascade_demo(cascade_models: dict, base, n: int = 4, seed: int = 0, steps: int = 20, preview_steps: int = 6):
    """The cascade end to end: pickers for the caption, the thresholding mode and the super-resolution model
    (``cascade_models``: {name: super-resolution UNet}), sliders for the base model's guidance weight w and the
    augmentation level u at sampling. Rows: the 16x16 base samples (pixels enlarged), the super-resolution model's
    condition (upsampled, corrupted at u), the 32x32 results. The base samples are kept per (caption, w, mode):
    moving u or the model runs the super-resolution stage only. Both stages together take about 0.25 s on 2 CPU
    cores: a new setting shows ``preview_steps`` steps of each first (marked as a preview) and the asked ``steps``
    follow."""
    names = list(cascade_models)
    cascades = {k: ImagenCascade(base, sr) for k, sr in cascade_models.items()}
    first = cascades[names[0]]
    z16 = torch.randn((n, 3, first.base_size, first.base_size), generator=torch.Generator().manual_seed(seed))
    z32 = torch.randn((n, 3, first.size, first.size), generator=torch.Generator().manual_seed(seed + 1))
    lows: dict = {}
    full_steps = steps

    def compute(colour, shape, row, column, size, w, mode, model, aug_level, steps=full_steps):
        tokens = _caption(colour, shape, row, column, size, n)
        key = (colour, shape, row, column, size, w, mode, steps)
        if key not in lows:
            lows[key] = first.sample_base(tokens, steps, w, _threshold(mode), x_T=z16.clone())
        low = lows[key]
        c = cascades[model]
        # the condition as the model sees it: the same generator seed as the sampler's own draw below
        seen, _ = sr_condition(low, c.size, aug_level, torch.Generator().manual_seed(seed + 2))
        high = c.super_resolve(low, tokens, aug_level, steps, 1.0, generator=torch.Generator().manual_seed(seed + 2),
                               x_T=z32.clone())
        return {"images": torch.cat([viz.enlarge(low, c.size), seen.clamp(-1, 1), high])}

    def title(r, v):
        return (f"'{v['size']} {v['colour']} {v['shape']} {v['row']} {v['column']}', w = {v['w']:g}, {v['mode']}\n"
                f"{v['model']} at u = {v['aug_level']:.2f}\nrows: 16x16 base, its condition, 32x32 result")

    demo = image_strip_demo(compute, title, nrow=n, figsize=(4.6, 4.4), dpi=DPI,
                            preview=fewer_steps(compute, preview_steps, full_steps=full_steps), colour=list(COLOURS),
                            shape=list(SHAPES), row=list(ROWS), column=list(COLUMNS), size=list(SIZES),
                            w=(1.0, 16.0, 0.5, 4.0), mode=["static", "none", "dynamic"], model=names,
                            aug_level=(0.0, 1.0, 0.05, 0.2))
    demo.inner_caches.append(lows)
    return demo


def notebook_demos(base=None, sr_models: dict | None = None) -> NotebookDemos:
    """Notebook 08's demos from its ``base`` (``checkpoints.load("shapes_base16_large_c32")``) and ``sr_models``
    ({"shapes_sr32": ..., "shapes_sr32_noaug": ...}), loaded here when not passed."""
    from .. import checkpoints

    if base is None:
        base = checkpoints.load("shapes_base16_large_c32")
    if sr_models is None:
        sr_models = {k: checkpoints.load(k) for k in ("shapes_sr32", "shapes_sr32_noaug")}
    builders = {"threshold": lambda: threshold_demo(ImagenCascade(base, None)),
                "cascade": lambda: cascade_demo(sr_models, base)}
    caption = dict(colour="red", shape="circle", row="top", column="left", size="large")
    measured = {
        "08 threshold (images)": Measured("threshold", tuple(
            dict(caption, mode=m, w=w, percentile=p, step=st) for m in MODES for w in (1.0, 16.0)
            for p, st in ((0.995, 19), (0.9, 0), (1.0, 10))), "images"),
        "08 cascade (images)": Measured("cascade", tuple(
            dict(caption, w=w, mode=m, model=k, aug_level=u) for w, m in ((4.0, "dynamic"), (16.0, "static"))
            for k in sr_models for u in (0.0, 0.2, 1.0)), "images"),
    }
    return NotebookDemos("08", builders, measured)
