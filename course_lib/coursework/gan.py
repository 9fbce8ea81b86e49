"""Checks of notebook 05: VQGAN's adaptive weight and the hinge loss."""
from __future__ import annotations

import functools

import torch

from .core import Case, CourseworkError, Verdict, announce, check_function, check_number, check_prediction


# -- Exercises 5.1 and 5.2: VQGAN's adaptive weight and the hinge loss ----------------------------------------
def check_adaptive_weight(fn) -> Verdict:
    """Exercise 5.1: ``fn(rec_loss, gan_loss, last_layer_weight, delta)`` = clamp(||grad rec|| / (||grad gan|| +
    delta), 0, 1e4), detached, gradients taken with respect to ``last_layer_weight`` only."""
    from torch import nn

    from ..gan import adaptive_weight, adaptive_weight_of_norms

    def losses(seed, gan_scale):
        torch.manual_seed(seed)
        dec = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6))
        z, target = torch.randn(5, 4), torch.randn(5, 6)
        out = dec(z)
        critic = nn.Linear(6, 1)
        return dec, (out - target).abs().mean(), -gan_scale * critic(out).mean()

    def wrap(f, check_detached=False):
        def run(seed, gan_scale, delta):
            dec, rec, gan = losses(seed, gan_scale)
            lam = f(rec, gan, dec[-1].weight, delta)
            if check_detached and isinstance(lam, torch.Tensor) and lam.requires_grad:
                raise CourseworkError("lambda still has a graph: detach it (.detach()), it weights the GAN term "
                                      "and must not itself be optimised")
            return lam
        return run

    def grads(rec, gan, w):
        return (torch.autograd.grad(rec, w, retain_graph=True)[0], torch.autograd.grad(gan, w, retain_graph=True)[0])

    def wrong(kind):
        def f(rec, gan, w, delta):
            gr, gg = grads(rec, gan, w)
            if kind == "swapped":
                return (gg.norm() / (gr.norm() + delta)).clamp(0, 1e4).detach()
            if kind == "no_delta":
                return (gr.norm() / gg.norm()).clamp(0, 1e4).detach()
            if kind == "no_clamp":
                return (gr.norm() / (gg.norm() + delta)).detach()
            if kind == "squared":
                return (gr.pow(2).sum() / (gg.pow(2).sum() + delta)).clamp(0, 1e4).detach()
        return f

    cases = [Case("a tiny decoder", {"seed": 0, "gan_scale": 1.0, "delta": 1e-6}),
             Case("GAN loss 100x larger", {"seed": 1, "gan_scale": 100.0, "delta": 1e-6}),
             Case("a large delta", {"seed": 2, "gan_scale": 1.0, "delta": 0.5}),
             Case("GAN gradient nearly zero (the clamp at 1e4)", {"seed": 3, "gan_scale": 1e-9, "delta": 1e-6})]
    mistakes = {
        "the ratio is upside down: ||grad L_rec|| goes on top, ||grad L_GAN|| + delta below": wrong("swapped"),
        "add delta to the denominator": wrong("no_delta"),
        "clamp lambda to [0, 1e4] (a vanishing GAN gradient must not blow it up)": wrong("no_clamp"),
        "use the norms (square roots), not the squared norms": wrong("squared"),
    }
    return check_function("adaptive_weight", wrap(fn, True), wrap(lambda r, g, w, d: adaptive_weight(r, g, w, d)),
                          cases, {k: wrap(v) for k, v in mistakes.items()}, rtol=1e-4, exercise="Exercise 5.1",
                          replaces=[adaptive_weight, adaptive_weight_of_norms], learner=fn)


def check_hinge_d_loss(fn) -> Verdict:
    """Exercise 5.2: ``fn(logits_real, logits_fake)`` = 0.5 (mean relu(1 - real) + mean relu(1 + fake))."""
    from ..gan import hinge_d_loss

    g = torch.Generator().manual_seed(19)
    cases = [Case("random patch maps (4, 1, 6, 6)", {"logits_real": torch.randn(4, 1, 6, 6, generator=g),
                                                     "logits_fake": torch.randn(4, 1, 6, 6, generator=g)}),
             Case("a confident discriminator (margins met)", {"logits_real": torch.full((2, 1, 3, 3), 2.0),
                                                              "logits_fake": torch.full((2, 1, 3, 3), -3.0)}),
             Case("a fooled discriminator", {"logits_real": torch.full((2, 1, 3, 3), -2.0),
                                             "logits_fake": torch.full((2, 1, 3, 3), 1.5)}),
             Case("different sizes of real and fake maps", {"logits_real": 3 * torch.randn(3, 1, 4, 4, generator=g),
                                                            "logits_fake": 3 * torch.randn(5, 1, 2, 2, generator=g)})]
    relu = torch.nn.functional.relu
    mistakes = {
        "average the two terms: 0.5 * (real term + fake term)":
            lambda logits_real, logits_fake: relu(1 - logits_real).mean() + relu(1 + logits_fake).mean(),
        "real logits should be pushed above +1: max(0, 1 - D(x)), not max(0, 1 + D(x))":
            lambda logits_real, logits_fake: 0.5 * (relu(1 + logits_real).mean() + relu(1 + logits_fake).mean()),
        "fake logits should be pushed below -1: max(0, 1 + D(x_hat)), not max(0, 1 - D(x_hat))":
            lambda logits_real, logits_fake: 0.5 * (relu(1 - logits_real).mean() + relu(1 - logits_fake).mean()),
        "the hinge is max(0, .): without it a confident discriminator keeps being rewarded":
            lambda logits_real, logits_fake: 0.5 * ((1 - logits_real).mean() + (1 + logits_fake).mean()),
    }
    return check_function("hinge_d_loss", fn, hinge_d_loss, cases, mistakes, exercise="Exercise 5.2", replaces=[hinge_d_loss])




# -- Exercises 5.0 and 5.4: what the discriminator thinks, and where the clamp takes over --------------------------
DISCRIMINATOR_CHOICES = {"a": "as real as the real images: D is fooled",
                         "b": "less real than the real images, but more real than (b)'s",
                         "c": "the least real of the three autoencoders'"}


def check_discriminator_prediction(prediction, mean_logit: dict) -> Verdict:
    """Exercise 5.0 (predict, then run): how does the discriminator trained alongside (c) rate (c)'s
    reconstructions? ``mean_logit`` is the experiment cell's {"real", "(a) L2", "(b) L1 + LPIPS",
    "(c) L1 + LPIPS + GAN"} -> mean logit over 256 held-out images."""
    keys = ("real", "(a) L2", "(b) L1 + LPIPS", "(c) L1 + LPIPS + GAN")
    if not isinstance(mean_logit, dict) or set(mean_logit) != set(keys):
        raise CourseworkError(f"discriminator (Exercise 5.0): mean_logit: expected a dict with keys {keys} from the "
                              f"experiment cell, got {mean_logit!r}; run the experiment cell first")
    real, a, b, c = (float(mean_logit[k]) for k in keys)
    outcome = "a" if c >= real - 0.1 * abs(real) else "c" if c <= min(a, b) else "b"
    return check_prediction(
        "discriminator", "Exercise 5.0", prediction, DISCRIMINATOR_CHOICES, outcome,
        f"mean logits real {real:+.2f}, (a) {a:+.2f}, (b) {b:+.2f}, (c) {c:+.2f}",
        "A discriminator keeps learning its generator's current flaws, so at the end of training it still tells (c)'s "
        "reconstructions from real images: a GAN sits at a moving balance, not at a fooled D. (c) does score well "
        "above (b), the same objective without the adversarial term; and (a), whose reconstructions D never saw in "
        "training, scores about as high as (c): D's verdict is not a quality metric.")


@functools.lru_cache(maxsize=None)
def gradient_norms() -> dict:
    """Exercise 5.3's measurement: ||grad L_rec|| and ||grad L_GAN|| at the last layer of shapes_vqgan32's decoder,
    on notebook 05's 16 held-out images, L_rec = L1 + 0.1 LPIPS (course backbone), L_GAN the generator loss."""
    from .. import checkpoints
    from ..data import HELD_OUT_SEEDS, generate_shapes
    from ..gan import adaptive_weight, generator_loss, load_discriminator
    from ..perceptual import LPIPS

    vqgan, disc = checkpoints.load("shapes_vqgan32").eval(), load_discriminator("shapes_vqgan32")
    x = generate_shapes(256, 32, 1, seed=HELD_OUT_SEEDS["vqgan_demo"]).images[:16]
    lp = LPIPS("shapes", lin=False)
    z_q, _, _ = vqgan.quantize(vqgan.encode(x))
    x_hat = vqgan.decode(z_q)
    rec = (x_hat - x).abs().mean() + 0.1 * lp(x_hat, x, check_range=False).mean()
    _, rec_norm, gan_norm = adaptive_weight(rec, generator_loss(disc(x_hat)), vqgan.last_layer(), return_norms=True)
    return {"rec_norm": float(rec_norm), "gan_norm": float(gan_norm)}


def check_clamp_experiment(clamp_scale) -> Verdict:
    """Exercise 5.3 (experiment): the factor c on L_GAN below which lambda sits at its clamp 1e4 (delta = 1e-6)."""
    name, exercise = "the clamp", "Exercise 5.3"
    m = gradient_norms()
    truth = (m["rec_norm"] / 1e4 - 1e-6) / m["gan_norm"]  # rec / (c gan + delta) = 1e4, solved for c
    hint = ("lambda = ||grad L_rec|| / (c ||grad L_GAN|| + delta) reaches 1e4 where c ||grad L_GAN|| + delta = "
            "||grad L_rec|| / 1e4; `live.rec_norm` and `live.gan_norm` hold the two norms (or scan "
            "live.compute(log10_gan_scale=...)). Norms, not squared norms.")
    if isinstance(clamp_scale, (int, float)) and not isinstance(clamp_scale, bool) and clamp_scale > 0:
        import math
        check_number(name, exercise, "log10(clamp_scale)", math.log10(clamp_scale), math.log10(truth), 0.02, hint)
    else:
        check_number(name, exercise, "clamp_scale", clamp_scale, truth, 0.0, hint)
    share = 1e-6 / (m["rec_norm"] / 1e4)
    return announce(f"{name}: right - below c = {truth:.3g} lambda is clamped at 1e4 (the norms: ||grad L_rec|| = "
                    f"{m['rec_norm']:.3g}, ||grad L_GAN|| = {m['gan_norm']:.3g}; delta = 1e-6 is {share:.0%} of the "
                    "denominator there). Above it, lambda * c * ||grad L_GAN|| is ||grad L_rec|| up to delta: whatever "
                    "the GAN loss's scale, its gradient is brought to the size of the reconstruction's, until the clamp "
                    "stops a vanishing GAN gradient from being blown up.")
