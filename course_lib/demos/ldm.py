"""The slider demos of notebook 06 (Latent Diffusion): where each caption token looks, and caption to image."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch.nn import functional as F

from .. import viz
from ..data import COLOURS, COLUMNS, ROWS, SHAPES, SIZES, encode_caption
from ..widgets import fewer_steps, image_strip_demo, moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["attention_explorer", "caption_demo", "attention_example", "notebook_demos"]

DPI = 80


def attention_explorer(image: torch.Tensor, maps: dict, words: list[str]):
    """Sliders over the denoising step and the layer, a picker for the caption token: that token's cross-attention
    map (mean over heads) over the generated image. ``maps`` from :meth:`LatentDiffusion.sample_with_attention` for
    one image ({layer: (1, steps, M, h, w)}); ``words`` the M caption positions (``<start>`` first)."""
    layers = list(maps)
    steps = next(iter(maps.values())).shape[1]
    tokens = {w: i for i, w in enumerate(words)}
    img = viz.to_image(image)

    def compute(step, layer, token):
        a = maps[layer][0, step, tokens[token]]
        up = F.interpolate(a[None, None], size=image.shape[-2:], mode="nearest")[0, 0]
        return {"map": up.numpy(), "raw": a, "peak": float(a.max()), "resolution": tuple(a.shape)}

    def draw(r, v):
        fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4), dpi=DPI)
        axes[0].imshow(img, interpolation="nearest")
        axes[0].set_title("generated image", fontsize=9)
        axes[1].imshow(img, interpolation="nearest")
        art = fig.artists_ = {"map": moving(axes[1].imshow(r["map"], cmap="inferno", alpha=0.6,
                                                           interpolation="nearest", vmin=0, vmax=max(r["peak"], 1e-6)))}
        for ax in axes:
            ax.set_axis_off()
        art["title"] = moving(axes[1].set_title("", fontsize=9))
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["map"].set_data(r["map"])
        art["map"].set_clim(0, max(r["peak"], 1e-6))
        art["title"].set_text(f"'{v['token']}' in {v['layer']} ({r['resolution'][0]}x{r['resolution'][1]}), "
                              f"step {v['step'] + 1}/{steps}")

    return slider_demo(compute, draw, update=update, step=(0, steps - 1, 1, steps - 1), layer=layers,
                       token=[w for w in words if w != "<pad>"])


def caption_demo(pipe, n: int = 4, seed: int = 0, preview_steps: int = 10):
    """Pickers for size, colour, shape, row and column; sliders for the guidance scale and the number of DDIM
    steps: n samples of the caption (the same starting noise for every setting, so only the caption and the
    sampler change). Each step is a 2n-batch network call (about 11 ms on 2 CPU cores): a new setting with more
    than ``preview_steps`` steps shows those first (marked as a preview) and the asked steps follow."""
    z_T = torch.randn((n, *pipe.latent_shape), generator=torch.Generator().manual_seed(seed))

    def compute(size, colour, shape, row, column, guidance, steps):
        caption = f"{size} {colour} {shape} {row} {column}"
        tokens = encode_caption(caption)[None].repeat(n, 1)
        images = pipe.sample(tokens, steps=steps, guidance_scale=guidance, z_T=z_T.clone())
        return {"images": images.cpu(), "caption": caption}

    def title(r, v):
        return f"'{r['caption']}', guidance {v['guidance']:.1f}, {v['steps']} DDIM steps"

    return image_strip_demo(compute, title, n, figsize=(6, 1.9), dpi=DPI, preview=fewer_steps(compute, preview_steps),
                            size=list(SIZES), colour=list(COLOURS),
                            shape=list(SHAPES), row=list(ROWS), column=list(COLUMNS),
                            guidance=(0.0, 8.0, 0.5, 3.0), steps=(2, 30, 1, 20))


def attention_example(pipe, caption: str = "large red circle top left", steps: int = 20, guidance_scale: float = 3.0,
                      seed: int = 1):
    """The image notebook 06 looks into: ``caption`` sampled with ``steps`` DDIM steps at ``guidance_scale`` from
    ``seed``, recording every cross-attention map. Returns (image (3, H, W), {layer: (1, steps, M, h, w)}, the M
    caption positions as words, ``<start>`` first)."""
    from ..data import VOCAB

    tokens = encode_caption(caption)[None]
    images, maps = pipe.sample_with_attention(tokens, steps=steps, guidance_scale=guidance_scale,
                                              generator=torch.Generator().manual_seed(seed))
    return images[0], maps, ["<start>"] + [VOCAB[i] for i in tokens[0].tolist()]


def notebook_demos(pipe=None, example=None) -> NotebookDemos:
    """Notebook 06's demos from its ``pipe`` (``LatentDiffusion.from_shipped("shapes_ldm32")``) and ``example``
    (:func:`attention_example`'s (image, maps, words), sampled here when not passed)."""
    if pipe is None:
        from ..ldm import LatentDiffusion

        pipe = LatentDiffusion.from_shipped("shapes_ldm32")
    builders = {"attention maps": lambda: attention_explorer(*(example or attention_example(pipe))),
                "caption to image": lambda: caption_demo(pipe)}
    measured = {
        "06 attention maps": Measured("attention maps", tuple(
            dict(step=s, layer=layer, token=w) for s in (0, 10, 19) for layer in ("down0", "mid", "up0")
            for w in ("circle", "red", "<start>"))),
        "06 caption to image (images)": Measured("caption to image", tuple(
            dict(size="large", colour=c, shape=sh, row="top", column="left", guidance=g, steps=st)
            for c, sh in (("red", "circle"), ("blue", "cross")) for g in (0.0, 3.0, 8.0) for st in (5, 20, 30)),
            "images"),
    }
    return NotebookDemos("06", builders, measured)
