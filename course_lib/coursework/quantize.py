"""Checks of notebook 03: straight-through, the VQ loss terms, the LFQ index."""
from __future__ import annotations

import functools

import torch

from .core import Case, CourseworkError, Verdict, announce, check_function, check_number, check_prediction, run_learner
from ..quantize import vq_losses


# -- Notebook 03: quantization -------------------------------------------------------------------------------------
def check_straight_through(fn) -> Verdict:
    """Exercise 3.1: ``fn(z_e, z_q)`` has the value of z_q, passes the gradient unchanged to z_e, none to z_q."""
    from ..quantize import straight_through

    name, exercise = "straight_through", "Exercise 3.1"
    where = f" ({exercise})"
    g = torch.Generator().manual_seed(15)
    shapes = [(8, 4), (2, 4, 4, 16), (1, 3)]
    for i, shape in enumerate(shapes):
        z_e = torch.randn(shape, generator=g, requires_grad=True)
        z_q = torch.randn(shape, generator=g, requires_grad=True)
        upstream = torch.randn(shape, generator=g)
        # positional call, as the exercise's signature reads (run_learner passes keywords)
        out = run_learner(name, exercise, lambda z_e, z_q: fn(z_e, z_q), {"z_e": z_e, "z_q": z_q},
                          f"shape {tuple(shape)}", f"{i + 1}/{len(shapes)}", [straight_through], fn)
        # run_learner hands the learner clones of z_e and z_q: clone() is differentiable, so the gradients still
        # arrive at z_e.grad and z_q.grad
        if not isinstance(out, torch.Tensor) or out.shape != z_e.shape:
            raise CourseworkError(f"{name}{where}: expected a tensor of shape {tuple(shape)}, got "
                                  f"{getattr(out, 'shape', type(out).__name__)}")
        if not torch.allclose(out, z_q, atol=1e-6):
            hint = ("you returned z_e: the forward value must be z_q" if torch.allclose(out, z_e, atol=1e-6)
                    else "the forward value must equal z_q")
            raise CourseworkError(f"{name}{where}: case {i + 1} {tuple(shape)}: {hint}")
        if not out.requires_grad:
            raise CourseworkError(f"{name}{where}: case {i + 1}: the output has no gradient at all - "
                                  "z_e must receive the gradient (only (z_q - z_e) is detached)")
        out.backward(upstream)
        if z_e.grad is None or not torch.allclose(z_e.grad, upstream, atol=1e-6):
            raise CourseworkError(f"{name}{where}: case {i + 1}: the gradient reaching z_e must equal the gradient "
                                  "at the output (detach the difference z_q - z_e, not z_e)")
        if z_q.grad is not None and z_q.grad.abs().max() > 0:
            raise CourseworkError(f"{name}{where}: case {i + 1}: z_q must get no gradient from this path: detach "
                                  "(z_q - z_e) as a whole")
    return announce(f"{name}: {len(shapes)}/{len(shapes)} cases match (value and gradients)")


def _vq_loss_cases() -> list[Case]:
    g = torch.Generator().manual_seed(16)
    return [Case(f"shape {shape}, beta={b}", {"z_e": torch.randn(shape, generator=g),
                                               "z_q": torch.randn(shape, generator=g), "beta": b})
            for shape in [(16, 8), (2, 4, 4, 16)] for b in (0.25, 1.0, 2.0)]


def _trains(term, tensor) -> bool:
    """Whether ``term`` sends a non-zero gradient to ``tensor`` (False too when it has no graph at all)."""
    if not (isinstance(term, torch.Tensor) and term.requires_grad):
        return False
    (grad,) = torch.autograd.grad(term, [tensor], retain_graph=True, allow_unused=True)
    return grad is not None and bool(grad.abs().max() > 0)


def check_vq_losses(fn) -> Verdict:
    """Exercise 3.2: ``fn(z_e, z_q, beta)`` -> (codebook term, commitment term), means over elements; the codebook
    term trains z_q only (sg(z_e)), the commitment term z_e only (sg(z_q))."""
    name, exercise = "vq_losses", "Exercise 3.2"

    def reference(z_e, z_q, beta):
        return torch.stack(vq_losses(z_e, z_q, beta))

    def pair(out):
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise CourseworkError(f"{name} ({exercise}): expected a pair (codebook_term, commitment_term), got "
                                  f"{type(out).__name__}")
        return out

    def learner(z_e, z_q, beta):
        return torch.stack([torch.as_tensor(o, dtype=torch.float32).reshape(()) for o in pair(fn(z_e, z_q, beta))])

    mse = lambda a, b: ((a - b) ** 2).mean()  # noqa: E731
    mistakes = {
        "beta belongs on the commitment term (the second), not the codebook term (or the two are swapped)":
            lambda z_e, z_q, beta: torch.stack([beta * mse(z_e, z_q), mse(z_e, z_q)]),
        "beta is missing from the commitment term": lambda z_e, z_q, beta: torch.stack([mse(z_e, z_q), mse(z_e, z_q)]),
        "use the mean of the squared differences, not their sum":
            lambda z_e, z_q, beta: torch.stack([((z_e - z_q) ** 2).sum(), beta * ((z_e - z_q) ** 2).sum()]),
        "square the differences (an L2 loss), not their absolute value":
            lambda z_e, z_q, beta: torch.stack([(z_e - z_q).abs().mean(), beta * (z_e - z_q).abs().mean()]),
    }
    line = check_function(name, learner, reference, _vq_loss_cases(), mistakes, exercise=exercise,
                          replaces=[vq_losses], announce=False, learner=fn)
    # values can match while the stop-gradients are wrong: check which side each term trains
    z_e = torch.randn(8, 4, requires_grad=True)
    z_q = torch.randn(8, 4, requires_grad=True)
    codebook_term, commitment_term = pair(run_learner(name, exercise, lambda **kw: fn(**kw),
                                                      {"z_e": z_e, "z_q": z_q, "beta": 0.25}, "gradients", "7/7",
                                                      [vq_losses], fn))
    hints = []
    if _trains(codebook_term, z_e):
        hints.append("the codebook term must not train the encoder: sg(z_e), i.e. z_e.detach()")
    if not _trains(codebook_term, z_q):
        hints.append("the codebook term must train the codebook: detach z_e there, not z_q")
    if _trains(commitment_term, z_q):
        hints.append("the commitment term must not train the codebook: sg(z_q), i.e. z_q.detach()")
    if not _trains(commitment_term, z_e):
        hints.append("the commitment term must train the encoder: detach z_q there, not z_e")
    if hints:
        raise CourseworkError(f"{name} ({exercise}): values match, but " + "; ".join(hints))
    return announce(line + " (values and stop-gradients)")


def check_lfq_index(fn) -> Verdict:
    """Exercise 3.3: ``fn(q)`` = sum_i 2^i [q_i > 0] over the last axis (dimension 0 = lowest bit)."""
    from ..quantize import lfq_codes, lfq_index

    g = torch.Generator().manual_seed(17)
    cases = [Case(f"all codes of d={d}", {"q": lfq_codes(d)}) for d in (1, 3, 6)]
    cases.append(Case("a (2, 4, 4, 10) grid of codes", {"q": torch.randint(0, 2, (2, 4, 4, 10), generator=g).float() * 2 - 1}))
    mistakes = {
        "bit order: dimension 0 is the lowest bit (weight 2^0), the last dimension the highest":
            lambda q: ((q > 0).long() * 2 ** torch.arange(q.shape[-1] - 1, -1, -1)).sum(-1),
        "the bit is [q_i > 0]: +1 -> 1, -1 -> 0 (you counted the -1s)": lambda q: ((q < 0).long() * 2 ** torch.arange(q.shape[-1])).sum(-1),
        "weights are powers of two, 2^i, not i": lambda q: ((q > 0).long() * torch.arange(q.shape[-1])).sum(-1),
    }
    return check_function("lfq_index", fn, lfq_index, cases, mistakes, exercise="Exercise 3.3", replaces=[lfq_index])




# -- Exercises 3.0 and 3.5: dead codes, and bringing them back ----------------------------------------------------
USAGE_CHOICES = {"a": "all 16 codes", "b": "between 8 and 15 codes", "c": "fewer than 8 codes"}


def check_usage_prediction(prediction, codes_used: int, num_codes: int = 16) -> Verdict:
    """Exercise 3.0 (predict, then run): how many of the 16 codes are in use after 300 steps of the codebook loss on
    the 2-D ring (the Voronoi demo's training)? ``codes_used`` is what the experiment cell counted."""
    if isinstance(codes_used, bool) or not isinstance(codes_used, int) or not 0 <= codes_used <= num_codes:
        raise CourseworkError(f"codebook usage (Exercise 3.0): codes_used: expected a count in [0, {num_codes}] from "
                              f"the experiment cell, got {codes_used!r}; run the experiment cell first")
    outcome = "a" if codes_used == num_codes else "b" if codes_used >= 8 else "c"
    return check_prediction(
        "codebook usage", "Exercise 3.0", prediction, USAGE_CHOICES, outcome,
        f"{codes_used} of {num_codes} codes in use",
        "Only the chosen code of each point gets a gradient from ||sg(z_e) - z_q||^2: a code that wins no point at "
        "the start never moves again, however long you train. That is the codebook collapse the VQ sweeps show at "
        "large vocabularies.")


@functools.lru_cache(maxsize=None)
def restarts_usage(restart: bool = True) -> dict:
    """Exercise 3.4's measurement: VectorQuantizer(16, 2, restart_dead_codes=restart) after torch.manual_seed(0),
    Adam (lr 0.05) on its codebook loss for 300 steps over the 800 ring points of notebook 03; codes in use and
    perplexity of the final codebook's assignment."""
    from ..data import ring_mixture
    from ..quantize import VectorQuantizer, codebook_usage, nearest_code

    points, _ = ring_mixture(8, 2.0, 0.3).sample(800, torch.Generator().manual_seed(0))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        vq = VectorQuantizer(16, 2, restart_dead_codes=restart)
        opt = torch.optim.Adam(vq.parameters(), lr=0.05)
        for _ in range(300):
            loss = vq(points).codebook_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.random.set_rng_state(state)
    u = codebook_usage(nearest_code(points, vq.codebook.detach()), 16)
    return {"codes_used": int(round(float(u["usage"]) * 16)), "perplexity": float(u["perplexity"])}


def check_restarts_experiment(codes_used, perplexity) -> Verdict:
    """Exercise 3.4 (experiment): codes in use and perplexity after training with dead-code restarts."""
    name, exercise = "dead-code restarts", "Exercise 3.4"
    m = restarts_usage()
    hint = ("Follow the recipe: torch.manual_seed(0) just before VectorQuantizer(16, 2, restart_dead_codes=True), "
            "Adam(lr=0.05), 300 steps of vq(points).codebook_loss, then codebook_usage(nearest_code(points, "
            "vq.codebook.detach()), 16).")
    if codes_used is not None and codes_used == restarts_usage(False)["codes_used"] != m["codes_used"]:
        hint = "That is the usage without restarts: pass restart_dead_codes=True. " + hint
    used = check_number(name, exercise, "codes_used", codes_used, m["codes_used"], 0.5, hint)
    ppl = check_number(name, exercise, "perplexity", perplexity, m["perplexity"], 0.3, hint)
    return announce(f"{name}: right - {used:.0f} of 16 codes in use, perplexity {ppl:.1f} (a uniform use of 16 codes "
                    "gives 16). A code unused for 20 steps jumps onto a random encoder output, where it wins points "
                    "and so gets gradients again: the fix notebook 03's sweep applies to the VQ-VAE.")
