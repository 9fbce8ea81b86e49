"""Measure the slider demos of the notebooks as a learner meets them: ``./course latency``.

Each callback is timed as ``SliderDemo.set`` runs it: compute, in-place redraw and the PNG render the
learner sees, over representative slider values (the extremes included), cold (empty cache) and cached, in
three rounds.
Prints median and 95th percentile in milliseconds per demo.
"""
from __future__ import annotations

import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .. import checkpoints  # noqa: E402
from ..data import HELD_OUT_SEEDS, generate_shapes, ring_mixture  # noqa: E402
from ..schedules import make_alphas_cumprod  # noqa: E402
from ..demos import ddim as D  # noqa: E402
from ..demos import guidance as G  # noqa: E402
from ..demos import vq as V  # noqa: E402
from ..demos.lpips import distortion_lab  # noqa: E402


def _base_demos():
    ac = make_alphas_cumprod()
    ring, ring3 = ring_mixture(), ring_mixture(8, 2.0, 0.3)
    pts, y = ring.sample(600, torch.Generator().manual_seed(0))
    mlp, ddpm = checkpoints.load("ring8_mlp"), checkpoints.load("shapes_ddpm16")
    noisy = checkpoints.load("shapes_noisy_classifier16")
    image = generate_shapes(1, 32, 1, seed=5).images[0]
    eps_fns = {"exact eps*": ring.eps_fn(ac), "trained MLP": lambda x, t: mlp(x, t)}
    sampling = D.sampling_demo(eps_fns, ring, ac)
    vq_points, _ = ring3.sample(800, torch.Generator().manual_seed(0))
    snapshots = V.train_codebook_2d(vq_points, num_codes=16, steps=300, snapshot_every=10)
    import json

    from safetensors.torch import load_file
    from .. import results_path

    sweeps = json.loads(results_path("vq_sweeps.json").read_text())
    vq_samples = load_file(str(results_path("vq_samples.safetensors")))
    return {
        "01 forward": (D.forward_demo(image, pts, y, ring, ac), [dict(t=t) for t in (0, 100, 300, 500, 700, 999)]),
        "01 posterior": (D.posterior_demo(torch.tensor([2.0, 0.0]), ac),
                         [dict(t=t, jump=j, eta=e) for t in (1, 300, 999) for j in (1, 100, 300) for e in (0.0, 1.0)]),
        "01 terms": (D.terms_demo(ring, ac),
                     [dict(t=t, jump=j, eta=e) for t in (1, 400, 999) for j in (1, 100, 500) for e in (0.0, 1.0)]),
        # One demo, two budgets: up to S = 50 it is a 2-D demo; at S = 100-1000 each move runs that many
        # sequential network evaluations (the cost DDIM removes, shown on purpose), a sampler's budget.
        "01 sampling S<=50": (sampling, [dict(model=m, steps=s, tau="uniform", eta=e) for m in eps_fns
                                          for s in D.STEP_OPTIONS if s <= 50 for e in (0.0, 1.0)]),
        "01 sampling S>=100 (sampler)": (sampling, [dict(model=m, steps=s, tau="uniform", eta=e) for m in eps_fns
                                                    for s in D.STEP_OPTIONS if s >= 100 for e in (0.0, 1.0)]),
        "02 taylor": (G.taylor_demo(ring3, ac), [dict(log10_var=v, y=c) for v in (-3.0, -1.5, 0.0) for c in (0, 7)]),
        "02 field": (G.posterior_field_demo(ring3, ac),
                     [dict(t=t, y=c, scale=s) for t in (0, 300, 999) for c in (0, 7) for s in (0.0, 10.0)]),
        "02 exact guidance": (G.exact_guidance_demo(ring3, ac),
                              [dict(y=c, scale=s) for c in (0, 7) for s in (0.0, 1.0, 10.0)]),
        "02 shapes guidance (images)": (G.shapes_guidance_demo(ddpm, noisy, ac),
                                        [dict(shape=sh, scale=s) for sh in ("circle", "cross") for s in (0.0, 3.0, 10.0)]),
        "03 voronoi": (V.voronoi_demo(vq_points, snapshots), [dict(snapshot=k) for k in (0, 5, 10, 20, 30)]),
        "03 beta": (V.sweep_reconstruction_demo(vq_samples, sweeps["beta"], "beta", "beta"),
                    [dict(beta=b) for b in sweeps["beta"]]),
        # notebook 04 measures with the learned w_l (LPIPS("shapes")), as the lab there does
        "04 distortion lab": (distortion_lab(generate_shapes(4, 32, (1, 2), seed=5).images, _shapes_lpips(lin=True)),
                              [dict(kind=k, strength=s) for k in ("blur", "noise", "shift", "contrast")
                               for s in (0.0, 0.5, 1.0)]),
    }


def _demos(names=None) -> dict:
    """The demos to measure; only the groups that ``names`` needs are built (building loads models and samples)."""
    wanted = lambda prefix: names is None or any(n.startswith(prefix) for n in names)  # noqa: E731
    out = {}
    if names is None or any(not n.startswith(("05", "06")) for n in names):
        out.update(_base_demos())
    if wanted("05"):
        out.update(_vqgan_demos())
    if wanted("06"):
        out.update(_ldm_demos())
    return out


def _ldm_demos():
    from ..data import encode_caption
    from ..ldm import LatentDiffusion
    from ..demos.ldm import attention_explorer, caption_demo

    pipe = LatentDiffusion.from_shipped("shapes_ldm32")
    tokens = encode_caption("large red circle top left")[None]
    image, maps = pipe.sample_with_attention(tokens, steps=20, generator=torch.Generator().manual_seed(1))
    words = ["<start>", "large", "red", "circle", "top", "left"] + ["<pad>"] * 6
    explorer = attention_explorer(image[0], maps, words)
    return {
        "06 attention maps": (explorer, [dict(step=s, layer=layer, token=w) for s in (0, 10, 19)
                                         for layer in ("down0", "mid", "up0") for w in ("circle", "red", "<start>")]),
        "06 caption to image (images)": (caption_demo(pipe),
                                         [dict(size="large", colour=c, shape=sh, row="top", column="left", guidance=g,
                                               steps=st) for c, sh in (("red", "circle"), ("blue", "cross"))
                                          for g in (0.0, 3.0, 8.0) for st in (5, 20, 30)]),
    }


def _vqgan_demos():
    from ..gan import load_discriminator
    from ..demos import vqgan as Q

    vqgan, gpt = checkpoints.load("shapes_vqgan32"), checkpoints.load("shapes_gpt32")
    lp = _shapes_lpips()
    x = generate_shapes(16, 32, 1, seed=HELD_OUT_SEEDS["vqgan_demo"]).images
    live = Q.lambda_demo(vqgan, load_discriminator("shapes_vqgan32"), x,
                         lambda a, b: (a - b).abs().mean() + 0.1 * lp(a, b, check_range=False).mean())
    scrubber = Q.snapshot_scrubber()
    return {
        "05 training snapshots": (scrubber, [dict(snapshot=k) for k in range(len(scrubber.steps))]),
        "05 lambda vs delta": (live, [dict(log10_delta=d, log10_max_weight=m, log10_gan_scale=c)
                                      for d in (-8.0, -6.0, -2.0, 2.0) for m in (-1.0, 4.0) for c in (-6.0, 0.0, 2.0)]),
        "05 prior sampling (images)": (Q.prior_sampler(gpt, vqgan),
                                       [dict(temperature=t, top_k=k, seed=s) for t in (0.1, 1.0, 2.0)
                                        for k in (1, 16, 256) for s in (0, 9)]),
    }


def _shapes_lpips(lin: bool = False):
    from ..perceptual import LPIPS

    return LPIPS("shapes", lin=lin)


def measure(names=None, rounds: int = 3) -> dict:
    """{demo: {"cold": (median, p95), "cached": (median, p95)}} in ms; ``names`` restricts the demos.

    Each of ``rounds`` rounds empties the demo's cache and sets every representative value twice: the first
    time is cold (compute + redraw), the second cached (redraw). The 95th percentile is numpy's (linear
    interpolation), over rounds x values callbacks: with one round and six values it would be the maximum, and one
    hiccup of the machine would decide it.
    """
    import IPython.display
    import numpy as np

    IPython.display.display = lambda *a, **k: None  # no frontend here: SliderDemo still renders the PNG
    out = {}
    for name, (demo, values) in _demos(names).items():
        if names is not None and name not in names:
            continue
        demo.set(**values[0])  # the first figure is built in the notebook cell, not in a callback
        times = {"cold": [], "cached": []}
        for _ in range(rounds):
            demo.clear_cache()
            for phase in ("cold", "cached"):
                for v in values:
                    t0 = time.perf_counter()
                    demo.set(**v)
                    times[phase].append(time.perf_counter() - t0)
            plt.close("all")
        out[name] = {phase: (round(1000 * statistics.median(ts)), round(1000 * float(np.percentile(ts, 95))))
                     for phase, ts in times.items()}
    return out


def main():
    res = measure()
    print(f"{'demo':30s} {'cold median':>12s} {'cold p95':>9s} {'cached median':>14s} {'cached p95':>11s}  (ms)")
    for name, r in res.items():
        print(f"{name:30s} {r['cold'][0]:>12d} {r['cold'][1]:>9d} {r['cached'][0]:>14d} {r['cached'][1]:>11d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
