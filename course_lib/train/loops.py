"""The one training loop and what the resumable recipes feed it: :func:`fit` (learning rate, loss, backward,
clipping, optimizer, EMA, a hook), the seeded batches, the step losses of the diffusion, classifier and autoencoder
tasks and their resumable trainer. The other tasks' trainers are in :mod:`.tasks`, the evaluations in
:mod:`.evaluate`."""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import checkpoints
from . import distributed
from ..data import generate_shapes, ring_mixture
from ..diffusion import diffusion_loss, q_sample
from ..nets import build_model
from ..recipes import CORRUPTIONS, Recipe
from ..schedules import make_alphas_cumprod

__all__ = ["EMA", "fit", "fit_with_ema", "corrupt"]


class EMA:
    """Exponential moving average of a model's weights (with the usual warm-up of the decay).

    theta_ema <- d * theta_ema + (1 - d) * theta,  d = min(decay, (1 + step) / (10 + step))
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


def corrupt(x: torch.Tensor, generator: torch.Generator, p: float = 0.5):
    """Corrupt a random half of the images; returns (images, corruption id per image, see CORRUPTIONS).

    The clean classifier learns to name the corruption, so that its features (the metrics' feature
    space) register residual noise and blur in samples, which a plain shape classifier ignores.
    """
    n = x.shape[0]
    kind = torch.randint(1, len(CORRUPTIONS), (n,), generator=generator)
    kind = torch.where(torch.rand(n, generator=generator) < p, kind, torch.zeros_like(kind))
    u = torch.rand(n, 1, 1, 1, generator=generator)
    sigma = torch.where(kind.view(n, 1, 1, 1) == 1, 0.03 + 0.09 * u, 0.12 + 0.38 * u)
    noisy = x + sigma * torch.randn(x.shape, generator=generator)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    k = kind.view(n, 1, 1, 1)
    out = torch.where(k == 0, x, torch.where(k == 3, blurred, noisy))
    return out, kind


def _batch(recipe: Recipe, step: int, n: int | None = None):
    """The training batch of ``step``: a pure function of the recipe's seed and the step."""
    n = n or recipe.batch_size
    seed = recipe.seed * 1_000_003 + step
    if recipe.data == "shapes16":
        b = generate_shapes(n, 16, 1, seed=seed)
        return b.images, b.labels, b.attributes
    if recipe.data == "shapes32":
        b = generate_shapes(n, 32, 1, seed=seed)
        return b.images, b.labels, b.attributes
    if recipe.data == "ring8":
        x, y = ring_mixture().sample(n, torch.Generator().manual_seed(seed))
        return x, y, None
    raise ValueError(f"recipe.data: unknown data {recipe.data!r}")


def _lr_at(step: int, recipe: Recipe, warmup: int = 200) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return recipe.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, recipe.steps - warmup)
    return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def fit(model, loss_at, steps: int, lr_at, opt, start: int = 0, ema: EMA | None = None, progress: bool = True,
        desc: str = "", on_step=None, max_grad_norm: float | None = 1.0):
    """The one training loop of every recipe (VQGAN's two-player step is :class:`course_lib.gan.VQGANTrainer`'s):
    for each step, set the learning rate ``lr_at(step)`` (``lr_at=None`` keeps the optimizer's per-group rates),
    take ``loss_at(step)``, backpropagate, clip the gradient norm (not with ``max_grad_norm=None``), step the
    optimizer, update the EMA, then ``on_step(step, loss)`` (logging, resumable state). It knows nothing about the
    model. Returns the smoothed loss (None if no step ran).

    Under torchrun (:mod:`.distributed`) ``loss_at`` returns this rank's shard's loss and runs inside
    DistributedDataParallel, so ``backward`` leaves every rank the gradient averaged over the ranks: the clipping,
    optimizer and EMA below then do on every rank what one process does on the combined batch. The smoothed loss
    and ``on_step``'s loss are the mean over the ranks (the global batch's)."""
    running = None
    step_loss = distributed.distributed_loss(model, loss_at)
    bar = tqdm(range(start, steps), desc=desc, disable=not progress or not distributed.is_main(), initial=start,
               total=steps)
    for step in bar:
        if lr_at is not None:  # None: keep the optimizer's own (per-group) learning rates
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
        loss = step_loss(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: the gradients arrive averaged over the ranks
        if max_grad_norm is not None:  # None: plain steps (LPIPS' 2AFC training)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        if ema is not None:
            ema.update(model, step)
        loss = distributed.mean_over_ranks(loss.detach())
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        if on_step is not None:
            on_step(step, loss)
    return running


def fit_with_ema(model, loss_at, steps: int, lr_at, ema_decay: float, max_grad_norm: float | None = 1.0,
                 progress: bool = False):
    """AdamW (no weight decay) through :func:`fit` with an :class:`EMA` of decay ``ema_decay``; returns the EMA
    model. Every diffusion recipe trains so (notebook 10's Exercise 10.4 asks for this loop)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr_at(0), weight_decay=0.0)
    ema = EMA(model, ema_decay)
    fit(model, loss_at, steps, lr_at, opt, ema=ema, progress=progress, max_grad_norm=max_grad_norm)
    return ema.model


def _diffusion_step_loss(recipe: Recipe, model, step, x, y, attrs, ctx):
    """L_simple (with label dropout for a class-conditional model): :func:`course_lib.diffusion.diffusion_loss`."""
    cond = y if recipe.config.get("num_classes") else None
    return diffusion_loss(model, x, ctx["ac"], cond, recipe.cond_drop_prob, ctx["gen"])


def _autoencoder_step_loss(recipe: Recipe, model, step, x, y, attrs, ctx):
    """The VQ objective with VQ-VAE's squared error, logging codebook health every ``log_every`` steps."""
    from ..quantize import codebook_usage

    loss, parts, idx = model.training_loss(x)
    if step % recipe.log_every == 0 or step == recipe.steps - 1:
        use = codebook_usage(idx, model.config.num_codes)
        ctx["history"].append({"step": step, **{k: round(v, 5) for k, v in parts.items()},
                               "perplexity": round(use["perplexity"], 2), "usage": round(use["usage"], 4)})
    return loss


def _classifier_step_loss(recipe: Recipe, model, step, x, y, attrs, ctx):
    """Cross-entropy: on x_t at a random t (noise-aware), or on clean/corrupted images over all heads."""
    ac, gen, device = ctx["ac"], ctx["gen"], ctx["device"]
    if recipe.noise_aware:
        t = torch.randint(0, len(ac), (len(x),), generator=gen).to(device)
        x_t = q_sample(x, ac.to(device)[t], torch.randn(x.shape, generator=gen).to(device))
        return F.cross_entropy(model(x_t, t).float(), y)
    x, kind = corrupt(x.cpu(), gen)
    logits = model.attribute_logits(x.to(device))
    targets = [y] + [attrs[k][:, 0].to(device) for k in ("colour", "row", "column", "size")]
    targets.append(kind.to(device))
    return sum(F.cross_entropy(lg.float(), tg) for lg, tg in zip(logits, targets))


def _train_loop(recipe: Recipe, device: torch.device, resume: bool, progress: bool, log=print,
                save_every: int = 500, runs_dir: Path | None = None, step_loss=None):
    """The resumable trainer of the diffusion, classifier and autoencoder recipes: :func:`fit` on
    ``step_loss(recipe, model, step, x, y, attributes, ctx)``, saving its state every ``save_every`` steps."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    ema = EMA(model, recipe.ema_decay) if recipe.ema_decay else None
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    gen = distributed.rank_generator(recipe.seed)  # t, noise, dropout: this rank's own stream (rank 0: the seed's)
    rank, world_size = distributed.world()
    state_path = Path(runs_dir or checkpoints.RUNS_DIR) / recipe.name / "state.pt"
    start, elapsed = 0, 0.0
    if resume and not state_path.exists():
        raise FileNotFoundError(f"resume: no saved state at {state_path}; train without --resume to start afresh")
    if resume:
        try:
            state = torch.load(state_path, weights_only=True)
        except Exception as exc:  # truncated or not a state file: say which file, and what to do
            raise RuntimeError(f"resume: {state_path} is not a readable training state ({type(exc).__name__}: "
                               f"{str(exc)[:120]}); delete it and train without --resume") from None
        if state["steps"] != recipe.steps:
            log(f"resume: saved run was for {state['steps']} steps, this one is for {recipe.steps}; the lr schedule follows the new total")
        saved_world = len(state.get("generators", [state["generator"]]))
        if saved_world != world_size:
            raise ValueError(f"resume: {state_path} was saved by {saved_world} process(es), this run has "
                             f"{world_size}; each rank continues its own random stream, so resume with "
                             f"--nproc_per_node {saved_world}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if ema:
            ema.model.load_state_dict(state["ema"])
        gen.set_state(state.get("generators", [state["generator"]])[rank])
        start, elapsed = state["step"], state["elapsed"]
        log(f"resumed {recipe.name} at step {start}")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.amp)

    def save_state(step):
        generators = distributed.gather_objects(gen.get_state())  # every rank's stream (each rank calls this)
        if not distributed.is_main():
            return  # the replicas are identical: rank 0 writes for all
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.model.state_dict() if ema else {},
                 "generator": generators[0], "step": step, "elapsed": elapsed + time.time() - t0,
                 "steps": recipe.steps, **({"generators": generators} if world_size > 1 else {})}
        checkpoints.write_atomic(state_path, lambda tmp: torch.save(state, tmp))

    t0 = time.time()
    history = []  # autoencoders: codebook health through training

    ctx = {"ac": ac, "gen": gen, "device": device, "history": history}

    def loss_at(step):
        x, y, attrs = (distributed.shard(part) for part in _batch(recipe, step))  # this rank's rows of the batch
        with amp:
            return step_loss(recipe, model, step, x.to(device), y.to(device), attrs, ctx)

    def after(step, loss):
        if (step + 1) % save_every == 0 and step + 1 < recipe.steps:
            save_state(step + 1)

    running = fit(model, loss_at, recipe.steps, lambda step: _lr_at(step, recipe), opt, start=start, ema=ema,
                  progress=progress, desc=recipe.name, on_step=after)
    wall = elapsed + time.time() - t0
    final = ema.model if ema else model
    info = {"final_loss": round(running, 5) if running is not None else None, "wall_time_s": round(wall, 1)}
    if history:
        info["history"] = history
    return final.eval(), info, None


def _prior_codes(recipe: Recipe, step: int, device, n: int | None = None, autoencoder=None):
    """Code sequences (B, h*w) of the batch of ``step`` under the recipe's autoencoder, raster order."""
    ae = autoencoder or checkpoints.load(recipe.autoencoder, device=device)
    x, _, _ = _batch(recipe, step, n)
    with torch.no_grad():
        _, idx, _ = ae.quantize(ae.encode(x.to(device)))
    return idx.flatten(1)
