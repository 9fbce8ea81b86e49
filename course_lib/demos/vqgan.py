"""The slider demos of notebook 05 (VQGAN): training snapshots of the three autoencoders, the adaptive weight
lambda against delta and the clamp on a live batch, and sampling the transformer prior."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import checkpoints, viz
from ..gan import adaptive_weight, adaptive_weight_of_norms, generator_loss
from ..widgets import image_strip_demo, moving, slider_demo
from . import Measured, NotebookDemos

__all__ = ["AUTOENCODERS", "snapshot_scrubber", "lambda_demo", "prior_sampler", "uniform_codes", "notebook_demos"]

DPI = 80
# notebook 05's three objectives, same architecture and budget
AUTOENCODERS = {"shapes_ae32_l2": "(a) L2", "shapes_ae32_lpips": "(b) L1 + LPIPS",
                "shapes_vqgan32": "(c) L1 + LPIPS + GAN"}


def snapshot_scrubber(names=tuple(AUTOENCODERS), source=None):
    """One slider over training snapshots: the same 8 held-out images reconstructed by each model at that step
    (the snapshots ship in each model's training log, so scrubbing costs only a redraw)."""
    logs = {n: checkpoints.load_log(n, source) for n in names}
    steps = logs[names[0]]["snapshot_steps"].tolist()
    for n in names:
        if logs[n]["snapshot_steps"].tolist() != steps:
            raise ValueError(f"names: {n} was snapshotted at other steps than {names[0]}; retrain with equal recipes")
    originals = logs[names[0]]["snapshot_images"]

    def compute(snapshot):
        return {n: logs[n]["snapshots"][snapshot] for n in names}

    def draw(r, v):
        fig, axes = plt.subplots(len(names) + 1, 1, figsize=(7, 1.2 * (len(names) + 1) + 0.4), dpi=DPI)
        viz.show_images(originals, nrow=8, ax=axes[0], title="held-out originals")
        fig.artists_ = {n: moving(viz.show_images(r[n], nrow=8, ax=ax, title=AUTOENCODERS.get(n, n)))
                        for n, ax in zip(names, axes[1:])}
        fig.artists_["title"] = moving(fig.suptitle("", fontsize=10))
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        for n in names:
            fig.artists_[n].set_data(viz.image_grid(r[n], nrow=8))
        fig.artists_["title"].set_text(f"after {steps[v['snapshot']] + 1} training steps (batch 32)")

    demo = slider_demo(compute, draw, update=update, snapshot=(0, len(steps) - 1, 1, len(steps) - 1))
    demo.steps = steps
    return demo


def lambda_demo(autoencoder, discriminator, x: torch.Tensor, rec_loss_fn):
    r"""lambda = ||grad L_rec|| / (||grad L_GAN|| + delta), clamped, on one live batch ``x``.

    The two gradient norms at the decoder's last layer are computed once (two backward passes); the sliders then
    move delta, the clamp and a factor c that rescales L_GAN, whose gradient norm scales by c. With a small
    delta, lambda * ||grad L_GAN|| equals ||grad L_rec|| whatever c: the adaptive weight undoes the scale of the
    GAN loss. A large delta (or the clamp) breaks that balance.
    """
    autoencoder.eval()
    z_q, _, _ = autoencoder.quantize(autoencoder.encode(x))
    x_hat = autoencoder.decode(z_q)
    rec = rec_loss_fn(x_hat, x)
    g_loss = generator_loss(discriminator(x_hat))
    _, rec_norm, gan_norm = adaptive_weight(rec, g_loss, autoencoder.last_layer(), return_norms=True)
    rec_norm, gan_norm = float(rec_norm), float(gan_norm)
    deltas = np.logspace(-8, 2, 121)

    def compute(log10_delta, log10_max_weight, log10_gan_scale):
        c, delta, mw = 10 ** log10_gan_scale, 10 ** log10_delta, 10 ** log10_max_weight
        # the library's equation, on the measured norms (the GAN gradient scaled by c)
        curve = adaptive_weight_of_norms(rec_norm, c * gan_norm, torch.from_numpy(deltas), mw).numpy()
        value = float(adaptive_weight_of_norms(rec_norm, c * gan_norm, delta, mw))
        return {"curve": curve, "lambda": value, "delta": delta, "gan_norm": c * gan_norm,
                "balanced": value * c * gan_norm}

    def draw(r, v):
        # one axes, plain-text ticks: a redraw must stay under 100 ms (log axes with mathtext labels took 120)
        fig, a0 = plt.subplots(1, 1, figsize=(6.4, 3.2), dpi=DPI)
        art = fig.artists_ = {}
        art["curve"] = moving(a0.loglog(deltas, r["curve"], color=viz.TERM_COLORS["predicted_x0"])[0])
        art["point"] = moving(a0.loglog([r["delta"]], [r["lambda"]], "o", color="crimson")[0])
        art["title"] = moving(fig.suptitle("", fontsize=9))
        a0.axvline(1e-6, color="grey", ls=":", lw=1)
        a0.text(1.2e-6, 1e-3, "paper's δ", fontsize=8, color="grey")
        a0.axvline(1e-4, color="grey", ls="--", lw=1)
        a0.text(1.2e-4, 1e-2, "reference code's δ", fontsize=8, color="grey")
        a0.set_ylim(1e-4, 2e5)
        a0.minorticks_off()
        a0.set_xticks([1e-8, 1e-6, 1e-4, 1e-2, 1], ["1e-8", "1e-6", "1e-4", "0.01", "1"])
        a0.set_yticks([1e-4, 1e-2, 1, 1e2, 1e4], ["1e-4", "0.01", "1", "100", "1e4"])
        a0.set_xlabel("δ")
        a0.set_ylabel("λ")
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.16, top=0.8)
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        art = fig.artists_
        art["curve"].set_ydata(r["curve"])
        art["point"].set_data([r["delta"]], [r["lambda"]])
        art["title"].set_text(f"‖∇L_rec‖ = {rec_norm:.3g}, ‖∇L_GAN‖ = {r['gan_norm']:.3g}:  λ = {r['lambda']:.4g}\n"
                              f"λ‖∇L_GAN‖ / ‖∇L_rec‖ = {r['balanced'] / rec_norm:.3g}  (1 = the GAN gradient as "
                              f"large as the reconstruction gradient)")

    demo = slider_demo(compute, draw, update=update, log10_delta=(-8.0, 2.0, 0.5, -6.0),
                       log10_max_weight=(-1.0, 4.0, 0.5, 4.0), log10_gan_scale=(-6.0, 2.0, 0.5, 0.0))
    demo.rec_norm, demo.gan_norm = rec_norm, gan_norm
    return demo


def prior_sampler(gpt, autoencoder, n: int = 8, grid=(4, 4)):
    """Sliders: temperature, top-k (256 = off) and seed; n code sequences from the transformer prior, decoded."""
    K = gpt.config.vocab_size

    @torch.no_grad()
    def compute(temperature, top_k, seed):
        codes = gpt.sample(n, temperature=temperature, top_k=None if top_k >= K else top_k,
                           generator=torch.Generator().manual_seed(seed))
        images = autoencoder.decode(autoencoder.codes_to_latents(codes.view(n, *grid))).clamp(-1, 1)
        return {"codes": codes, "images": images, "distinct": len(codes.unique())}

    def title(r, v):
        k = "off" if v["top_k"] >= K else v["top_k"]
        return f"temperature {v['temperature']:.2f}, top-k {k}: {r['distinct']} distinct codes used"

    return image_strip_demo(compute, title, n, figsize=(7, 1.4), dpi=DPI, temperature=(0.1, 2.0, 0.1, 1.0),
                            top_k=(1, K, 1, K), seed=(0, 9, 1, 0))


def uniform_codes(n: int, num_codes: int, grid=(4, 4), seed: int = 0) -> torch.Tensor:
    """Codes drawn independently and uniformly (notebook 03's "no prior"), (n, h, w)."""
    return torch.randint(0, num_codes, (n, *grid), generator=torch.Generator().manual_seed(seed))


def notebook_demos(vqgan=None, discriminator=None, gpt=None, held_out=None, rec_loss=None) -> NotebookDemos:
    """Notebook 05's demos from its ``vqgan`` (``shapes_vqgan32``), ``discriminator``, ``gpt`` (``shapes_gpt32``),
    ``held_out`` images (256 at the seed ``HELD_OUT_SEEDS["vqgan_demo"]``; the lambda demo takes the first 16) and
    ``rec_loss`` (the VQGAN recipe's L1 + 0.1 LPIPS("shapes", lin=False), :func:`course_lib.gan.reconstruction_loss`);
    what is not passed is made here."""
    from ..data import HELD_OUT_SEEDS, generate_shapes
    from ..gan import load_discriminator

    vqgan = checkpoints.load("shapes_vqgan32") if vqgan is None else vqgan
    disc = load_discriminator("shapes_vqgan32") if discriminator is None else discriminator
    gpt = checkpoints.load("shapes_gpt32") if gpt is None else gpt
    if rec_loss is None:  # the loss the shipped VQGAN was trained with (gan.reconstruction_loss, its recipe's config)
        from ..gan import reconstruction_loss
        from ..perceptual import LPIPS
        from ..recipes import RECIPES

        lpips_shapes, config = LPIPS("shapes", lin=False), RECIPES["shapes_vqgan32"].vqgan.loss
        rec_loss = lambda a, b: reconstruction_loss(  # noqa: E731 (raw decoder output may overshoot [-1, 1])
            a, b, config, lambda p, q: lpips_shapes(p, q, check_range=False))[0]

    def live():
        x = generate_shapes(256, 32, 1, seed=HELD_OUT_SEEDS["vqgan_demo"]).images if held_out is None else held_out
        return lambda_demo(vqgan, disc, x[:16], rec_loss)

    builders = {"training snapshots": snapshot_scrubber, "lambda vs delta": live,
                "prior sampling": lambda: prior_sampler(gpt, vqgan)}
    snapshots = len(checkpoints.load_log(tuple(AUTOENCODERS)[0])["snapshot_steps"])
    measured = {
        "05 training snapshots": Measured("training snapshots", tuple(dict(snapshot=k) for k in range(snapshots))),
        "05 lambda vs delta": Measured("lambda vs delta", tuple(
            dict(log10_delta=d, log10_max_weight=m, log10_gan_scale=c)
            for d in (-8.0, -6.0, -2.0, 2.0) for m in (-1.0, 4.0) for c in (-6.0, 0.0, 2.0))),
        "05 prior sampling (images)": Measured("prior sampling", tuple(
            dict(temperature=t, top_k=k, seed=s) for t in (0.1, 1.0, 2.0) for k in (1, 16, 256) for s in (0, 9)),
            "images"),
    }
    return NotebookDemos("05", builders, measured)
