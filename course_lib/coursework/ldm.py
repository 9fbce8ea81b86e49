"""Checks of notebook 06: cross-attention and the scaled latent."""
from __future__ import annotations

import torch

from .core import Case, CourseworkError, Verdict, announce, check_function


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
    from ..nets import VQVAE, VQVAEConfig

    library = [(LatentDiffusion, "encode"), (LatentDiffusion, "decode")]

    def ae(seed):
        torch.manual_seed(seed)
        return VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=4, num_codes=16)).eval()

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
    line2 = check_function("decode", dec(decode_fn), dec(ref_decode), dec_cases,
                           {"divide by s before quantizing: the decoder was trained on unscaled latents":
                                dec(lambda a, s, z: a.decode(a.quantize(z)[0])),
                            "quantize first (autoencoder.quantize), then decode": dec(lambda a, s, z: a.decode(z / s)),
                            "divide by s, do not multiply": dec(lambda a, s, z: a.decode(a.quantize(z * s)[0]))},
                           exercise="Exercise 6.2", replaces=library, announce=False, learner=decode_fn)
    return announce(line1 + "; " + line2)


