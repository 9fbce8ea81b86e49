"""The slider demo of notebook 10 (latent diffusion written by the learner): one caption, two shipped models side by
side - the learner's MiniUNet trained at full length (shapes_mini_ldm32) and notebook 06's larger caption U-Net
(shapes_ldm32) - from the same starting noise, so only the model differs between the two halves of the strip."""
from __future__ import annotations

import torch

from ..data import COLOURS, COLUMNS, ROWS, SHAPES, encode_caption
from ..widgets import fewer_steps, image_strip_demo
from . import Measured, NotebookDemos

__all__ = ["caption_pair_demo", "notebook_demos"]

DPI = 80
MODELS = ("shapes_mini_ldm32", "shapes_ldm32")


def caption_pair_demo(pipes: dict, n: int = 4, seed: int = 0, max_steps: int = 30, preview_steps: int = 5):
    """Pickers for the caption's colour, shape, row and column, sliders for the guidance scale and the number of
    DDIM steps: n samples of each pipeline in ``pipes`` ({name: LatentDiffusion}, left to right), the same starting
    noise for both models and every setting. A step of both models costs about 23 ms on 2 CPU cores: a new setting
    with more than ``preview_steps`` steps shows those first (marked as a preview) and the asked steps follow."""
    shape = next(iter(pipes.values())).latent_shape
    z_T = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))

    def compute(colour, shape, row, column, guidance, steps):
        tokens = encode_caption(f"large {colour} {shape} {row} {column}")[None].repeat(n, 1)
        images = [p.sample(tokens, steps=steps, guidance_scale=guidance, z_T=z_T.clone()).cpu() for p in pipes.values()]
        return {"images": torch.cat(images)}

    def title(r, v):
        names = " | ".join(f"{name} ({n})" for name in pipes)
        return (f"'large {v['colour']} {v['shape']} {v['row']} {v['column']}', guidance {v['guidance']:.1f}, "
                f"{v['steps']} DDIM steps\n{names}")

    return image_strip_demo(compute, title, n * len(pipes), figsize=(9.6, 1.75), dpi=DPI,
                            preview=fewer_steps(compute, preview_steps), colour=list(COLOURS),
                            shape=list(SHAPES), row=list(ROWS), column=list(COLUMNS), guidance=(1.0, 8.0, 0.5, 3.0),
                            steps=(2, max_steps, 1, 20))


def notebook_demos(pipes: dict | None = None) -> NotebookDemos:
    """Notebook 10's demo from its ``pipes`` ({name: LatentDiffusion.from_shipped(name)} for :data:`MODELS`, loaded
    here when not passed)."""
    if pipes is None:
        from ..ldm import LatentDiffusion

        pipes = {name: LatentDiffusion.from_shipped(name) for name in MODELS}
    builders = {"caption pair": lambda: caption_pair_demo(pipes)}
    colours = list(COLOURS)
    measured = {"10 caption pair (images)": Measured("caption pair", tuple(
        dict(colour=c, shape=s, row="top", column="left", guidance=g, steps=st)
        for c, s in ((colours[0], "circle"), (colours[-1], "cross")) for g in (1.0, 3.0, 8.0) for st in (2, 20, 30)),
        "images")}
    return NotebookDemos("10", builders, measured)
