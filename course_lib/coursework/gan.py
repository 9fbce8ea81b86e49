"""Checks of notebook 05: VQGAN's adaptive weight and the hinge loss."""
from __future__ import annotations

import torch

from .core import Case, CourseworkError, Verdict, check_function


# -- Exercises 5.1 and 5.2: VQGAN's adaptive weight and the hinge loss ----------------------------------------
def check_adaptive_weight(fn) -> Verdict:
    """Exercise 5.1: ``fn(rec_loss, gan_loss, last_layer_weight, delta)`` = clamp(||grad rec|| / (||grad gan|| +
    delta), 0, 1e4), detached, gradients taken with respect to ``last_layer_weight`` only."""
    from torch import nn

    from ..gan import adaptive_weight

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
                          replaces=[adaptive_weight], learner=fn)


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


