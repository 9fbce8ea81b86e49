"""Checks of notebook 07: the zero convolution, the controlled forward pass y_c, the first gradient step, and how
much control strength a mask needs."""
from __future__ import annotations

import functools

import torch

from .core import (Case, CourseworkError, NotStarted, Verdict, announce, check_choice, check_function, check_number,
                   check_prediction)


def _small_base(seed: int):
    """A small CaptionUNet whose output depends on its input (a fresh one predicts 0: its conv_out starts at 0)."""
    from ..nets import CaptionUNet, CaptionUNetConfig

    torch.manual_seed(seed)
    unet = CaptionUNet(CaptionUNetConfig(base_channels=16, context_dim=16)).eval()
    torch.nn.init.normal_(unet.conv_out.weight, std=0.05)
    for st in unet.transformers().values():
        torch.nn.init.normal_(st.proj_out.weight, std=0.05)
    return unet


# -- Exercise 7.1: the zero convolution ---------------------------------------------------------------------------
def check_zero_conv(fn) -> Verdict:
    """Exercise 7.1: ``fn(in_channels, out_channels)`` returns a 1x1 convolution with weight and bias 0: its output
    is 0 and its parameters' gradients are what :func:`course_lib.controlnet.zero_conv`'s are."""
    from ..nets.controlnet import zero_conv

    g = torch.Generator().manual_seed(70)
    cases = [Case(f"{i} -> {o} channels", {"in_channels": i, "out_channels": o,
                                           "x": torch.randn(2, i, 5, 5, generator=g),
                                           "upstream": torch.randn(2, o, 5, 5, generator=g)})
             for i, o in ((4, 4), (16, 8), (3, 32))]

    def run(make):
        def g_(in_channels, out_channels, x, upstream):
            conv = make(in_channels, out_channels)
            if not isinstance(conv, torch.nn.Module):
                raise CourseworkError(f"zero_conv (Exercise 7.1): expected an nn.Module (nn.Conv2d), got "
                                      f"{type(conv).__name__}")
            if getattr(conv, "kernel_size", (1, 1)) != (1, 1):
                raise CourseworkError(f"zero_conv (Exercise 7.1): Z is a 1x1 convolution (kernel_size=1), got "
                                      f"kernel_size {conv.kernel_size}")
            got = (getattr(conv, "in_channels", None), getattr(conv, "out_channels", None))
            if got != (in_channels, out_channels):
                raise CourseworkError(f"zero_conv (Exercise 7.1): expected a convolution from {in_channels} to "
                                      f"{out_channels} channels, got {got[0]} to {got[1]}")
            if conv.bias is None:
                raise CourseworkError("zero_conv (Exercise 7.1): the convolution needs a bias (zeroed too): "
                                      "Z has weight and bias, both 0 at the start")
            if torch.count_nonzero(conv.weight.detach()):
                raise CourseworkError("zero_conv (Exercise 7.1): the weight must start at 0 "
                                      "(nn.init.zeros_(conv.weight)): a default-initialised conv changes the base's "
                                      "output at step 0")
            if torch.count_nonzero(conv.bias.detach()):
                raise CourseworkError("zero_conv (Exercise 7.1): the bias must start at 0 too "
                                      "(nn.init.zeros_(conv.bias)): otherwise Z adds a constant from the first step")
            y = conv(x)
            (y * upstream).sum().backward()  # dL/dy = upstream: dL/dW = sum over pixels of upstream x^T, not 0
            w, b = conv.weight, conv.bias
            return torch.cat([y.detach().flatten(), w.detach().flatten(), b.detach().flatten(),
                              w.grad.flatten(), b.grad.flatten()])
        return g_

    return check_function("zero_conv", run(fn), run(zero_conv), cases, replaces=[zero_conv], learner=fn,
                          exercise="Exercise 7.1")


# -- Exercise 7.2: the controlled forward pass --------------------------------------------------------------------
def check_controlled_forward(fn) -> Verdict:
    """Exercise 7.2: ``fn(base, controlnets, scales, x_t, t, hints, tokens)`` equals
    :class:`course_lib.controlnet.ControlledUNet`'s output: the residuals of every ControlNet, each scaled by its
    conditioning scale, summed, and added to the frozen base's skips and middle block."""
    from ..controlnet import ControlledUNet, ControlNet, make_hint
    from ..data import generate_shapes

    def nets(seed, k):
        base = _small_base(seed)
        cns = []
        for j in range(k):
            cn = ControlNet(base)
            gen = torch.Generator().manual_seed(100 * seed + j)
            with torch.no_grad():  # trained-looking connectors: at zero every answer would equal the base
                for conv in cn.connectors().values():
                    conv.weight.copy_(0.1 * torch.randn(conv.weight.shape, generator=gen))
                    conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=gen))
            cns.append(cn)
        return base, cns

    g = torch.Generator().manual_seed(72)

    def case(label, seed, scales):
        b = generate_shapes(3, 32, 1, seed=seed)
        hints = [make_hint(b.masks)] + [make_hint(torch.roll(b.masks, 8 * j, dims=2)) for j in range(1, len(scales))]
        return Case(label, {"seed": seed, "scales": scales, "x_t": torch.randn(3, 4, 8, 8, generator=g),
                            "t": torch.randint(0, 1000, (3,), generator=g), "hints": hints, "tokens": b.tokens})

    cases = [case("one ControlNet, scale 1", 1, [1.0]), case("one ControlNet, scale 0.4", 2, [0.4]),
             case("two ControlNets, scales 0.7 and 1.5", 3, [0.7, 1.5]), case("scale 0: the base", 4, [0.0])]

    def run(f):
        def g_(seed, scales, x_t, t, hints, tokens):
            base, cns = nets(seed, len(scales))
            with torch.no_grad():
                return f(base, cns, list(scales), x_t, t, hints, tokens)
        return g_

    def reference(base, cns, scales, x_t, t, hints, tokens):
        return ControlledUNet(base, cns, scales)(x_t, t, hints, tokens)

    def wrong(use_scale=True, mid=True, down=True, mean=False):
        def f(base, cns, scales, x_t, t, hints, tokens):
            outs = [cn(x_t, t, h, tokens) for cn, h in zip(cns, hints)]
            w = [s if use_scale else 1.0 for s in scales]
            k = len(cns) if mean else 1
            d = [sum(wi * o[0][i] for wi, o in zip(w, outs)) / k for i in range(len(outs[0][0]))]
            m = sum(wi * o[1] for wi, o in zip(w, outs)) / k
            return base(x_t, t, tokens, down_residuals=d if down else None, mid_residual=m if mid else None)
        return f

    mistakes = {
        "multiply each ControlNet's residuals by its conditioning scale s_k before adding them":
            run(wrong(use_scale=False)),
        "the middle block's residual (the second thing a ControlNet returns) must be added too: pass mid_residual":
            run(wrong(mid=False)),
        "the skip residuals (the list a ControlNet returns first) must be added too: pass down_residuals":
            run(wrong(down=False)),
        "several ControlNets add their scaled residuals (a sum, not a mean)": run(wrong(mean=True)),
    }
    return check_function("controlled forward", run(fn), run(reference), cases, mistakes, atol=1e-5,
                          replaces=[(ControlledUNet, "forward"), (ControlledUNet, "residuals")], learner=fn,
                          exercise="Exercise 7.2")


# -- Exercise 7.0: the first gradient step ------------------------------------------------------------------------
FIRST_STEP_CHOICES = {
    "a": "nothing: every path to the loss passes through a zero, so every gradient is 0 and training cannot start",
    "b": "only the output zero convolutions (on the skips and the middle block)",
    "c": "the output zero convolutions and the hint's zero convolution, not the copy",
    "d": "the whole ControlNet (copy, hint encoder, every zero convolution)",
}


def _outcome_of(groups: dict) -> str:
    """The choice a {group: nonzero gradient?} measurement supports."""
    out, hint, copy = groups["output zero convs"], groups["hint zero conv"], groups["trainable copy"]
    if not out:
        return "a"
    if copy:
        return "d"
    return "c" if hint else "b"


def check_first_step_prediction(prediction, nonzero: dict) -> Verdict:
    """Exercise 7.0 (predict, then run): which parameters of a fresh ControlNet receive a non-zero gradient at the
    first step? ``nonzero`` is the experiment cell's {group: bool}."""
    keys = ("output zero convs", "hint zero conv", "hint encoder", "trainable copy")
    if not isinstance(nonzero, dict) or set(nonzero) != set(keys):
        raise CourseworkError(f"first gradient step (Exercise 7.0): nonzero: expected a dict with the keys {keys} "
                              f"from the experiment cell, got {nonzero!r}; run the experiment cell first")
    outcome = _outcome_of(nonzero)
    measured = ", ".join(f"{k}: {'non-zero' if v else 'zero'}" for k, v in nonzero.items())
    return check_prediction(
        "first gradient step", "Exercise 7.0", prediction, FIRST_STEP_CHOICES, outcome, measured,
        "For y = W x + b with W = 0: dL/dW = dL/dy x^T is not 0 (x, the copy's features, is not), but "
        "dL/dx = W^T dL/dy = 0, so nothing behind an output connector learns at step one. After that step W is not "
        "0 and the gradient reaches the copy and the hint's connector; one step later the hint encoder behind it.")


# -- Exercise 7.3: how much control strength does a mask need? ----------------------------------------------------
STRENGTHS = (0.0, 0.25, 0.5, 1.0)


@functools.lru_cache(maxsize=None)
def iou_by_strength() -> dict:
    """Exercise 7.3's measurement: the shipped ControlNet on the first 32 held-out hints (colour-and-shape captions),
    10 DDIM steps at guidance 3 from ``torch.Generator().manual_seed(0)``, conditioning scale in STRENGTHS: IoU."""
    from ..controlnet import ControlPipeline, control_fidelity, held_out_controls

    pipe = ControlPipeline.from_shipped("shapes_controlnet32")
    b, hints, tokens = held_out_controls(32)
    out = {}
    for s in STRENGTHS:
        pipe.scales = [s]
        x = pipe.sample([hints], tokens, steps=10, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
        out[s] = control_fidelity(x, b.masks, intervals=False)["iou"]
    pipe.scales = [1.0]
    return out


def check_strength_experiment(strength_needed, iou_at_full_strength) -> Verdict:
    """Exercise 7.3 (experiment): the smallest strength of STRENGTHS whose IoU is at least half the IoU at strength
    1, and the IoU at strength 1 itself."""
    name, exercise = "control strength", "Exercise 7.3"
    rates = iou_by_strength()
    if strength_needed is None or iou_at_full_strength is None:
        raise NotStarted(f"{name} ({exercise}): set strength_needed and iou_at_full_strength from your experiment")
    full = check_number(name, exercise, "iou_at_full_strength", iou_at_full_strength, rates[1.0], 0.02,
                        "Take the mean IoU of object_mask(images) against the hints at strength 1.0 "
                        "(control_fidelity(images, masks)['iou']).")
    needed = next(s for s in STRENGTHS if rates[s] >= 0.5 * rates[1.0])
    check_choice(name, exercise, "strength_needed", strength_needed, STRENGTHS)
    if strength_needed != needed:
        raise CourseworkError(f"{name} ({exercise}): strength_needed = {strength_needed}: its IoU is "
                              f"{rates[strength_needed]:.2f} against {rates[1.0]:.2f} at full strength; take the "
                              "smallest strength whose IoU reaches half of that.")
    table = ", ".join(f"{s:g}: {v:.2f}" for s, v in rates.items())
    return announce(f"{name}: right - IoU by strength {table} (32 hints: each about +-0.05); half the effect "
                    f"needs strength {needed:g}, full strength {full:.2f}. Strength 0 is the frozen model, which "
                    "puts the object anywhere.")
