"""Checks of notebook 06: cross-attention and the scaled latent."""
from __future__ import annotations

import functools

import torch

from .core import (Case, CourseworkError, NotStarted, Verdict, announce, check_choice, check_function,
                   check_prediction)


# -- Exercises 6.1 and 6.2: cross-attention, and the scaled latent ---------------------------------------------
def check_cross_attention(fn) -> Verdict:
    """Exercise 6.1: ``fn(layer, x, context, mask)`` equals ``layer(x, context, mask=mask)`` for a
    :class:`course_lib.attention.CrossAttention`."""
    from einops import rearrange

    from ..attention import CrossAttention

    def layer(seed, heads, dim_head):
        torch.manual_seed(seed)
        return CrossAttention(16, 12, heads, dim_head)

    g = torch.Generator().manual_seed(20)
    some = torch.ones(3, 5, dtype=torch.bool)
    some[0, 3:] = False
    some[2, 1:] = False

    def case(label, seed, heads, dim_head, mask):
        return Case(label, {"seed": seed, "heads": heads, "dim_head": dim_head, "x": torch.randn(3, 7, 16, generator=g),
                            "context": torch.randn(3, 5, 12, generator=g), "mask": mask})

    cases = [case("4 heads, nothing masked", 0, 4, 8, torch.ones(3, 5, dtype=torch.bool)),
             case("4 heads, padding masked", 1, 4, 8, some), case("1 head", 2, 1, 16, some),
             case("8 heads of width 2", 3, 8, 2, some)]

    def run(f):
        def g_(seed, heads, dim_head, x, context, mask):
            with torch.no_grad():
                return f(layer(seed, heads, dim_head), x, context, mask)
        return g_

    def wrong(scale="sqrt", axis=-1, use_mask=True, split=True):
        def f(lay, x, context, mask):
            h = lay.heads if split else 1
            q = rearrange(lay.to_q(x), "b n (h d) -> b h n d", h=h)
            k = rearrange(lay.to_k(context), "b m (h d) -> b h m d", h=h)
            v = rearrange(lay.to_v(context), "b m (h d) -> b h m d", h=h)
            d = q.shape[-1]
            s = q @ k.transpose(-1, -2) / {"sqrt": d ** 0.5, "d": d, "none": 1.0}[scale]
            if use_mask:
                s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
            return lay.to_out(rearrange(s.softmax(dim=axis) @ v, "b h n d -> b n (h d)"))
        return f

    mistakes = {
        "scale the scores by 1/sqrt(d) with d the width of one head": wrong(scale="none"),
        "divide by sqrt(d), not by d": wrong(scale="d"),
        "the softmax runs over the caption tokens (the last axis, keys), not over the image tokens": wrong(axis=-2),
        "masked caption tokens must get -inf before the softmax (mask[:, None, None, :])": wrong(use_mask=False),
        "split the width into heads (rearrange 'b n (h d) -> b h n d') before the dot products": wrong(split=False),
    }
    reference = run(lambda lay, x, context, mask: lay(x, context, mask=mask))
    return check_function("cross_attention", run(fn), reference, cases, {k: run(v) for k, v in mistakes.items()},
                          replaces=[(CrossAttention, "forward")], learner=fn,
                          exercise="Exercise 6.1", nan_hint="A row whose every caption token is masked gives NaN; "
                                                            "here every row keeps at least one token, so check the mask's broadcasting.")


def check_latent_round_trip(encode_fn, decode_fn) -> Verdict:
    """Exercise 6.2: ``encode_fn(autoencoder, scale, x)`` = scale * E(x) and ``decode_fn(autoencoder, scale, z)`` =
    G(quantize(z / scale)), on a small VQ autoencoder."""
    from ..ldm import LatentDiffusion
    from .core import expect_function

    expect_function(encode_fn, "encode_fn")
    from ..nets import VQVAE, VQVAEConfig

    library = [(LatentDiffusion, "encode"), (LatentDiffusion, "decode")]

    def ae(seed):
        torch.manual_seed(seed)
        return VQVAE(VQVAEConfig(base_channels=8, channel_mults=(1, 2), latent_dim=4, num_codes=16)).eval()

    g = torch.Generator().manual_seed(21)
    enc_cases = [Case(f"scale {s}", {"seed": i, "scale": s, "x": torch.rand(2, 3, 16, 16, generator=g) * 2 - 1})
                 for i, s in enumerate((1.0, 0.37, 4.2))]
    dec_cases = [Case(f"scale {s}", {"seed": i, "scale": s, "z": torch.randn(2, 4, 4, 4, generator=g)})
                 for i, s in enumerate((1.0, 0.37, 4.2))]

    def enc(f):
        def g_(seed, scale, x):
            with torch.no_grad():
                return f(ae(seed), scale, x)
        return g_

    def dec(f):
        def g_(seed, scale, z):
            with torch.no_grad():
                return f(ae(seed), scale, z)
        return g_

    def ref_decode(a, s, z):
        return a.decode(a.quantize(z / s)[0])

    line1 = check_function("encode", enc(encode_fn), enc(lambda a, s, x: s * a.encode(x)), enc_cases,
                           {"multiply by the scale s (it makes the latents unit-variance), do not divide":
                                enc(lambda a, s, x: a.encode(x) / s),
                            "encode returns s * E(x): the scale is missing": enc(lambda a, s, x: a.encode(x))},
                           exercise="Exercise 6.2", replaces=library, announce=False, learner=encode_fn)
    expect_function(decode_fn, "decode_fn")  # checked once encode passed (a check of encode alone may pass None)
    line2 = check_function("decode", dec(decode_fn), dec(ref_decode), dec_cases,
                           {"divide by s before quantizing: the decoder was trained on unscaled latents":
                                dec(lambda a, s, z: a.decode(a.quantize(z)[0])),
                            "quantize first (autoencoder.quantize), then decode": dec(lambda a, s, z: a.decode(z / s)),
                            "divide by s, do not multiply": dec(lambda a, s, z: a.decode(a.quantize(z * s)[0]))},
                           exercise="Exercise 6.2", replaces=library, announce=False, learner=decode_fn)
    return announce(line1 + "; " + line2)




# -- Exercises 6.0 and 6.4: the swapped attention, and how many steps a caption needs -----------------------------
SWAP_CHOICES = {"a": "as often as the standard model (nearly always)", "b": "about as often as chance (1 in 9)",
                "c": "somewhere in between"}


def check_swap_prediction(prediction, position_swapped: float, position_standard: float) -> Verdict:
    """Exercise 6.0 (predict, then run): how often does the swapped model put the shape where the caption says?
    The arguments are the measured position rates (the manifest's, 256 held-out captions)."""
    for name, v in (("position_swapped", position_swapped), ("position_standard", position_standard)):
        if not isinstance(v, float) or not 0 <= v <= 1:
            raise CourseworkError(f"swapped attention (Exercise 6.0): {name}: expected a rate in [0, 1] from the "
                                  f"experiment cell, got {v!r}; run the experiment cell first")
    outcome = "a" if position_swapped >= 0.8 * position_standard else "b" if position_swapped <= 0.25 else "c"
    return check_prediction(
        "swapped attention", "Exercise 6.0", prediction, SWAP_CHOICES, outcome,
        f"position right for {position_swapped:.0%} of captions swapped, {position_standard:.0%} standard "
        "(chance 11%)",
        "Swapped, each word gets one vector (an average of image values) and all that reaches the feature map is "
        "their mean, the same at every pixel: a global signal can say 'red circle' but not 'here'. With Q from the "
        "image every pixel asks its own question.")


STEPS_GRID = (1, 2, 3, 4, 8)


@functools.lru_cache(maxsize=None)
def caption_following_by_steps() -> dict:
    """Exercise 6.3's measurement: shapes_ldm32 on the 24 captions of generate_shapes(24, 32, 1, seed=606), guidance
    3, starting noise torch.Generator().manual_seed(0), DDIM with S in STEPS_GRID: caption following per S."""
    from .. import checkpoints
    from ..data import generate_shapes
    from ..ldm import LatentDiffusion
    from ..metrics import caption_following

    pipe, clf = LatentDiffusion.from_shipped("shapes_ldm32"), checkpoints.load("shapes_classifier16")
    ref = generate_shapes(24, 32, 1, seed=606)
    out = {}
    for S in STEPS_GRID:
        images = pipe.sample(ref.tokens, steps=S, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
        out[S] = caption_following(images, ref.attributes, clf)
    return out


def check_steps_experiment(steps_needed, weakest_at_2_steps) -> Verdict:
    """Exercise 6.3 (experiment): the smallest S of STEPS_GRID at which all three words are followed on at least 90%
    of the captions, and which of shape, colour, position is followed least at S = 2."""
    name, exercise = "steps per caption", "Exercise 6.3"
    rates = caption_following_by_steps()
    needed = next(S for S in STEPS_GRID if rates[S]["all"] >= 0.9)
    at2 = {k: rates[2][k] for k in ("shape", "colour", "position")}
    weakest = min(at2, key=at2.get)
    if steps_needed is None or weakest_at_2_steps is None:
        raise NotStarted(f"{name} ({exercise}): set steps_needed and weakest_at_2_steps from your experiment")
    check_choice(name, exercise, "steps_needed", steps_needed, STEPS_GRID)
    check_choice(name, exercise, "weakest_at_2_steps", weakest_at_2_steps, sorted(at2))
    if steps_needed != needed:
        raise CourseworkError(f"{name} ({exercise}): steps_needed = {steps_needed}: at that S the rate of captions "
                              f"with all three words right is {rates[steps_needed]['all']:.2f}; take the smallest S "
                              "whose 'all' rate is at least 0.9 (caption_following(...)['all']).")
    if weakest_at_2_steps != weakest:
        raise CourseworkError(f"{name} ({exercise}): weakest_at_2_steps = {weakest_at_2_steps!r}: at S = 2 it is "
                              f"followed on {at2[weakest_at_2_steps]:.2f} of the captions, not the fewest; compare the "
                              "'shape', 'colour' and 'position' rates at S = 2.")
    table = "; ".join(f"S={S}: all {rates[S]['all']:.2f}" for S in STEPS_GRID)
    return announce(f"{name}: right - {needed} steps ({table}); at S = 2 {weakest} is the weakest "
                    f"({', '.join(f'{k} {v:.2f}' for k, v in at2.items())}): here where and what are settled in "
                    "the first steps and the colour lags. 24 captions make each rate uncertain by about 0.05-0.1.")
