"""The slider demos of notebook 07 (ControlNet): a mask picked by hand steering the frozen model, the training
snapshots of the sudden convergence, and two ControlNets composed."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import viz
from ..controlnet import ControlledUNet, ControlPipeline, keep_words, make_hint
from ..data import COLOURS, COLUMNS, ROWS, SHAPES, SIZES, encode_caption, render_shapes
from ..widgets import fewer_steps, image_strip_demo, moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["hint_mask", "control_demo", "snapshots_demo", "compose_demo", "notebook_demos"]

DPI = 80


def hint_mask(shape: str, row: str, column: str, size: str) -> torch.Tensor:
    """The mask hint (1, 1, 32, 32) of one shape drawn by the shapes world at a grid cell (no jitter)."""
    attrs = {"shape": [[SHAPES.index(shape)]], "colour": [[0]], "row": [[ROWS.index(row)]],
             "column": [[COLUMNS.index(column)]], "size": [[SIZES.index(size)]]}
    return make_hint(render_shapes(attrs, 32).masks)


def _hint_image(hint: torch.Tensor) -> torch.Tensor:
    """A hint (1, 1, H, W) in [0, 1] as a grey image in [-1, 1], to stand beside the samples."""
    return (hint * 2 - 1).expand(-1, 3, -1, -1)


def control_demo(pipe: ControlPipeline, n: int = 4, seed: int = 0, preview_steps: int = 5):
    """Pickers for the caption (colour and shape: what) and the mask (shape, row, column, size: where and how big),
    sliders for the control strength (the conditioning scale: 0 is the frozen base model), the guidance scale and
    the DDIM steps. Shows the hint, then n samples from one fixed noise. A step (ControlNet + base U-Net) costs
    about 25 ms on 2 CPU cores: a new setting with more than ``preview_steps`` steps shows those first (marked as a
    preview) and the asked steps follow."""
    base, cn = pipe.controlled.base, pipe.controlled.controlnets[0]
    z_T = torch.randn((n, 4, 8, 8), generator=torch.Generator().manual_seed(seed))

    def compute(colour, shape, mask_shape, row, column, size, strength, guidance, steps):
        hint = hint_mask(mask_shape, row, column, size)
        tokens = keep_words(encode_caption(f"{size} {colour} {shape} {row} {column}")[None]).repeat(n, 1)
        one = ControlPipeline(ControlledUNet(base, [cn], [strength]), pipe.autoencoder, pipe.scale)
        images = one.sample([hint.repeat(n, 1, 1, 1)], tokens, steps=steps, guidance_scale=guidance, z_T=z_T.clone())
        return {"images": torch.cat([_hint_image(hint), images.cpu()]), "caption": f"{colour} {shape}"}

    def title(r, v):
        return (f"hint ({v['size']} {v['mask_shape']}, {v['row']} {v['column']}) | '{r['caption']}': strength "
                f"{v['strength']:.2f}, guidance {v['guidance']:.1f}, {v['steps']} steps")

    return image_strip_demo(compute, title, n + 1, figsize=(6.6, 1.9), dpi=DPI,
                            preview=fewer_steps(compute, preview_steps), colour=list(COLOURS),
                            shape=list(SHAPES), mask_shape=list(SHAPES), row=list(ROWS), column=list(COLUMNS),
                            size=list(SIZES), strength=(0.0, 2.0, 0.25, 1.0), guidance=(0.0, 8.0, 0.5, 3.0),
                            steps=(2, 30, 1, 20))


def snapshots_demo(logs: dict):
    """A slider over the saved training snapshots and a picker for the model (``logs``: {name: its shipped log}):
    the IoU curve with the chosen step marked, and that step's samples for 8 held-out hints (hints on top)."""
    names = list(logs)
    steps = {k: [int(s) for s in L["snapshot_steps"]] for k, L in logs.items()}
    count = min(len(s) for s in steps.values())

    def compute(model, snapshot):
        L = logs[model]
        i = min(snapshot, len(steps[model]) - 1)
        imgs = torch.cat([_hint_image(L["snapshot_hints"].float()), L["snapshots"][i].float()])
        return {"grid": viz.image_grid(imgs, nrow=8), "step": steps[model][i], "iou": float(L["snapshot_iou"][i]),
                "curve": (steps[model], [float(v) for v in L["snapshot_iou"]])}

    def draw(r, v):
        fig, (ax_c, ax_i) = plt.subplots(1, 2, figsize=(9.6, 3.2), dpi=DPI, gridspec_kw={"width_ratios": [1, 1.5]})
        for k in names:
            s, iou = steps[k], [float(x) for x in logs[k]["snapshot_iou"]]
            ax_c.plot([max(x, 1) for x in s], iou, marker=".", lw=1, label=k)
        ax_c.set_xscale("log")
        ax_c.set_xlabel("training step (log; step 0 drawn at 1)", fontsize=8)
        ax_c.set_ylabel("IoU, 64 held-out hints", fontsize=8)
        ax_c.legend(fontsize=6)
        ax_c.tick_params(labelsize=7)
        art = fig.artists_ = {"marker": moving(ax_c.axvline(max(r["step"], 1), color="k", lw=0.8, ls="--")),
                              "img": moving(ax_i.imshow(r["grid"], interpolation="nearest")),
                              "title": moving(ax_i.set_title("", fontsize=8))}
        ax_i.set_axis_off()
        fig.tight_layout()
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["marker"].set_xdata([max(r["step"], 1)] * 2)
        art["img"].set_data(r["grid"])
        art["title"].set_text(f"{v['model']}, step {r['step']}: IoU {r['iou']:.2f} (top: hints)")

    return slider_demo(compute, draw, update=update, model=names, snapshot=(0, count - 1, 1, 0))


def compose_demo(pipe: ControlPipeline, n: int = 4, seed: int = 0, caption: str = "", steps: int = 20,
                 preview_steps: int = 4):
    """Two ControlNets composed: the same mask ControlNet twice, each with its own mask (a large shape at a picked
    cell) and its own strength; their residuals add. Shows both hints and n samples from one fixed noise, ``steps``
    DDIM steps. A step (two ControlNets + the base U-Net) costs about 35 ms on 2 CPU cores: a new setting shows
    ``preview_steps`` steps first (marked as a preview) and the asked steps follow."""
    base, cn = pipe.controlled.base, pipe.controlled.controlnets[0]
    z_T = torch.randn((n, 4, 8, 8), generator=torch.Generator().manual_seed(seed))
    tokens = (keep_words(encode_caption(caption)[None]) if caption else base.null_condition(1)).repeat(n, 1)

    def compute(shape_a, row_a, column_a, strength_a, shape_b, row_b, column_b, strength_b, steps=steps):
        a, b = hint_mask(shape_a, row_a, column_a, "large"), hint_mask(shape_b, row_b, column_b, "large")
        two = ControlPipeline(ControlledUNet(base, [cn, cn], [strength_a, strength_b]), pipe.autoencoder, pipe.scale)
        images = two.sample([a.repeat(n, 1, 1, 1), b.repeat(n, 1, 1, 1)], tokens, steps=steps, guidance_scale=3.0,
                            z_T=z_T.clone())
        return {"images": torch.cat([_hint_image(a), _hint_image(b), images.cpu()])}

    def title(r, v):
        return (f"hint A x {v['strength_a']:.2f} | hint B x {v['strength_b']:.2f} | {n} samples, "
                f"caption '{caption or '(empty)'}'")

    return image_strip_demo(compute, title, n + 2, figsize=(7.2, 1.7), dpi=DPI,
                            preview=fewer_steps(compute, preview_steps, full_steps=steps), shape_a=list(SHAPES),
                            row_a=list(ROWS), column_a=list(COLUMNS), strength_a=(0.0, 2.0, 0.25, 1.0),
                            shape_b=list(SHAPES), row_b=list(ROWS), column_b=list(COLUMNS),
                            strength_b=(0.0, 2.0, 0.25, 1.0))


def notebook_demos(pipe: ControlPipeline | None = None, logs: dict | None = None) -> NotebookDemos:
    """Notebook 07's demos from its ``pipe`` (``ControlPipeline.from_shipped("shapes_controlnet32")``) and ``logs``
    (the shipped training logs of the three ControlNets), loaded here when not passed."""
    from .. import checkpoints

    names = ("shapes_controlnet32", "shapes_controlnet32_gaussian", "shapes_controlnet32_lite")
    if pipe is None:
        pipe = ControlPipeline.from_shipped("shapes_controlnet32")
    if logs is None:
        logs = {k: checkpoints.load_log(k) for k in names}
    builders = {"control": lambda: control_demo(pipe), "snapshots": lambda: snapshots_demo(logs),
                "compose": lambda: compose_demo(pipe)}
    measured = {
        "07 control (images)": Measured("control", tuple(
            dict(colour="red", shape="circle", mask_shape=ms, row=r, column=c, size="large", strength=s,
                 guidance=g, steps=st)
            for ms, r, c in (("circle", "top", "left"), ("cross", "bottom", "right")) for s in (0.0, 1.0, 2.0)
            for g, st in ((3.0, 20), (8.0, 30), (0.0, 2))), "images"),
        "07 snapshots": Measured("snapshots", tuple(dict(model=m, snapshot=i) for m in names for i in (0, 5, 18))),
        "07 compose (images)": Measured("compose", tuple(
            dict(shape_a="circle", row_a="top", column_a="left", strength_a=sa, shape_b="square", row_b="bottom",
                 column_b="right", strength_b=sb) for sa in (0.0, 1.0, 2.0) for sb in (0.0, 1.0)), "images"),
    }
    return NotebookDemos("07", builders, measured)
