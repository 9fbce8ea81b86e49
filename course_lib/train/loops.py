"""The training loop and what each kind of recipe feeds it: :func:`fit` (the one loop: learning rate, loss,
backward, clipping, optimizer, EMA, a hook), the seeded batches, the per-task losses, and the evaluation that
writes a manifest's metrics."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable
import math
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .. import checkpoints
from ..data import HELD_OUT_SEEDS, SHAPES, generate_shapes, ring_mixture
from ..diffusion import ddim_sample, diffusion_loss, q_sample
from ..metrics import evaluate_autoencoder, evaluate_autoencoder32, evaluate_ldm
from ..recipes import CORRUPTIONS, Recipe
from ..nets import build_model
from ..schedules import make_alphas_cumprod, timestep_subsequence

__all__ = ["EMA", "fit", "corrupt", "Task", "TASKS"]



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
        desc: str = "", on_step=None, max_grad_norm: float = 1.0):
    """The one training loop of every recipe (VQGAN's two-player step is :class:`course_lib.gan.VQGANTrainer`'s):
    for each step, set the learning rate ``lr_at(step)``, take ``loss_at(step)``, backpropagate, clip the gradient
    norm, step the optimizer, update the EMA, then ``on_step(step, loss)`` (logging, resumable state). It knows
    nothing about the model. Returns the smoothed loss (None if no step ran)."""
    running = None
    bar = tqdm(range(start, steps), desc=desc, disable=not progress, initial=start, total=steps)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        if ema is not None:
            ema.update(model, step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        if on_step is not None:
            on_step(step, loss)
    return running


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
    gen = torch.Generator().manual_seed(recipe.seed)
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
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if ema:
            ema.model.load_state_dict(state["ema"])
        gen.set_state(state["generator"])
        start, elapsed = state["step"], state["elapsed"]
        log(f"resumed {recipe.name} at step {start}")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.amp)

    def save_state(step):
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.model.state_dict() if ema else {},
                 "generator": gen.get_state(), "step": step, "elapsed": elapsed + time.time() - t0,
                 "steps": recipe.steps}
        checkpoints.write_atomic(state_path, lambda tmp: torch.save(state, tmp))

    t0 = time.time()
    history = []  # autoencoders: codebook health through training

    ctx = {"ac": ac, "gen": gen, "device": device, "history": history}

    def loss_at(step):
        x, y, attrs = _batch(recipe, step)
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


def _train_vqgan(recipe: Recipe, device, progress: bool = True):
    """Train one of notebook 05's autoencoders with :class:`course_lib.gan.VQGANTrainer`; returns (model, info,
    log tensors: reconstructions of 8 held-out images at the snapshot steps, and the logged curves)."""
    from ..gan import PatchDiscriminator, VQGANTrainer
    from ..perceptual import LPIPS
    from ..quantize import codebook_usage

    torch.manual_seed(recipe.seed)
    ae = build_model(recipe.model, recipe.config).to(device)
    section = recipe.vqgan
    loss_cfg = section.loss
    disc = (PatchDiscriminator(channels=section.disc_channels, num_layers=section.disc_layers).to(device)
            if loss_cfg.gan else None)
    perceptual = None
    if loss_cfg.perceptual_weight > 0:
        lp = LPIPS(net="shapes", lin=False).to(device).requires_grad_(False).eval()
        perceptual = lambda a, b: lp(a, b, check_range=False)  # noqa: E731 (raw decoder output may overshoot)
    trainer = VQGANTrainer(ae, loss_cfg, disc, perceptual, lr=recipe.lr)
    fixed = generate_shapes(8, 32, 1, seed=HELD_OUT_SEEDS["vqgan_snapshots"]).images.to(device)
    snap_steps = [s for s in section.snapshot_steps if s < recipe.steps]
    snaps, history, t0 = [], [], time.time()
    keys = ("l1", "l2", "lpips", "codebook", "commitment", "g_loss", "lambda_", "rec_grad_norm", "gan_grad_norm",
            "d_loss", "logits_real", "logits_fake", "loss")
    curves = {k: [] for k in keys}
    for step in tqdm(range(recipe.steps), desc=recipe.name, disable=not progress):
        x, _, _ = _batch(recipe, step)
        logs = trainer.step(x.to(device), lr=_lr_at(step, recipe))
        if step % recipe.log_every == 0 or step == recipe.steps - 1:
            use = codebook_usage(logs["indices"], ae.config.num_codes)
            history.append({"step": step, "perplexity": round(use["perplexity"], 2),
                            **{k: round(logs[k], 5) for k in keys if k in logs}})
            for k in keys:
                curves[k].append(float(logs.get(k, float("nan"))))
        if step in snap_steps:
            with torch.no_grad():
                ae.eval()
                snaps.append(ae(fixed).clamp(-1, 1).cpu())
    wall = time.time() - t0
    ae.eval()
    log_tensors = {"snapshot_steps": torch.tensor(snap_steps), "snapshots": torch.stack(snaps) if snaps else torch.zeros(0),
                   "snapshot_images": fixed.cpu(), "curve_steps": torch.tensor([h["step"] for h in history]),
                   **{f"curve_{k}": torch.tensor(v) for k, v in curves.items()}}
    info = {"final_loss": history[-1].get("loss"), "wall_time_s": round(wall, 1), "loss_config": asdict(loss_cfg),
            "history": history[:: max(1, len(history) // 40)]}
    if disc is not None:  # shipped in the log: notebook 05 shows its logit maps
        info["discriminator_params"] = sum(p.numel() for p in disc.parameters())
        info["discriminator_config"] = disc.config
        log_tensors.update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    return ae, info, log_tensors


def _curve_logger(recipe: Recipe, steps_log: list, losses: list):
    """on_step for :func:`fit`: the loss every ``log_every`` steps and at the last one (the shipped curves)."""
    def log(step, loss):
        if step % recipe.log_every == 0 or step == recipe.steps - 1:
            steps_log.append(step)
            losses.append(loss.item())
    return log


def _prior_codes(recipe: Recipe, step: int, device, n: int | None = None, autoencoder=None):
    """Code sequences (B, h*w) of the batch of ``step`` under the recipe's autoencoder, raster order."""
    ae = autoencoder or checkpoints.load(recipe.autoencoder, device=device)
    x, _, _ = _batch(recipe, step, n)
    with torch.no_grad():
        _, idx, _ = ae.quantize(ae.encode(x.to(device)))
    return idx.flatten(1)


def _train_prior(recipe: Recipe, device, progress: bool = True):
    """Train the transformer prior on the codes of the recipe's autoencoder (loaded from the shipped weights)."""
    torch.manual_seed(recipe.seed)
    ae = checkpoints.load(recipe.autoencoder, device=device)
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.95))
    steps_log, losses, t0 = [], [], time.time()
    running = fit(model, lambda step: model.loss(_prior_codes(recipe, step, device, autoencoder=ae)), recipe.steps,
                  lambda step: _lr_at(step, recipe), opt, progress=progress, desc=recipe.name,
                  on_step=_curve_logger(recipe, steps_log, losses))
    info = {"final_loss": round(running, 4), "wall_time_s": round(time.time() - t0, 1),
            "autoencoder": recipe.autoencoder}
    return model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


def _train_ldm(recipe: Recipe, device, progress: bool = True):
    """Train a caption-conditioned denoiser on scaled latents (or pixels) with L_LDM; returns (EMA model, info, log)."""
    from ..ldm import latent_scale

    torch.manual_seed(recipe.seed)
    ae_name = recipe.autoencoder
    ae = checkpoints.load(ae_name, device=device) if ae_name else None
    scale = latent_scale(ae, generate_shapes(1000, 32, 1, seed=HELD_OUT_SEEDS["latent_scale"]).images.to(device)) if ae else 1.0
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    ema = EMA(model, recipe.ema_decay)
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    gen = torch.Generator().manual_seed(recipe.seed)
    steps_log, losses, t0 = [], [], time.time()

    def loss_at(step):  # L_LDM on the scaled latents of the step's batch (pixels for the pixel-space model)
        b = generate_shapes(recipe.batch_size, 32, 1, seed=recipe.seed * 1_000_003 + step)
        with torch.no_grad():
            z0 = scale * ae.encode(b.images.to(device)) if ae is not None else b.images.to(device)
        return diffusion_loss(model, z0, ac, b.tokens.to(device), recipe.cond_drop_prob, gen)

    running = fit(model, loss_at, recipe.steps, lambda step: _lr_at(step, recipe), opt, ema=ema, progress=progress,
                  desc=recipe.name, on_step=_curve_logger(recipe, steps_log, losses))
    wall = time.time() - t0
    info = {"final_loss": round(running, 5), "wall_time_s": round(wall, 1), "autoencoder": ae_name,
            "latent_scale": round(scale, 6), "seconds_per_step": round(wall / recipe.steps, 4)}
    return ema.model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


@torch.no_grad()
def _evaluate_ldm(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    from ..ldm import LatentDiffusion

    info = info or checkpoints.entry(recipe.name)
    ae = checkpoints.load(info["autoencoder"], device=device) if info.get("autoencoder") else None
    return evaluate_ldm(LatentDiffusion(model, ae, info.get("latent_scale", 1.0)), device)


@torch.no_grad()
def _evaluate_prior(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    codes = _prior_codes(recipe, HELD_OUT_SEEDS["eval"], device, n=1000)
    return {"held_out_nll_nats_per_code": round(float(model.loss(codes)), 4),
            "uniform_nll_nats_per_code": round(math.log(model.config.vocab_size), 4)}


@torch.no_grad()
def _evaluate_classifier(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    x, y, attrs = _batch(recipe, HELD_OUT_SEEDS["eval"], n=2000)
    x, y = x.to(device), y.to(device)
    out = {}
    for tt in ([0, 250, 500, 750, 999] if recipe.noise_aware else [None]):
        if tt is None:
            logits = model.attribute_logits(x)
            out["accuracy"] = round(float((logits[0].argmax(1) == y).float().mean()), 4)
            for name, lg in zip(("colour", "row", "column", "size"), logits[1:]):
                out[f"{name}_accuracy"] = round(float((lg.argmax(1).cpu() == attrs[name][:, 0]).float().mean()), 4)
            xc, kind = corrupt(x.cpu(), torch.Generator().manual_seed(0))
            logits = model.attribute_logits(xc.to(device))
            out["accuracy_on_corrupted"] = round(float((logits[0].argmax(1) == y).float().mean()), 4)
            out["corruption_accuracy"] = round(float((logits[-1].argmax(1).cpu() == kind).float().mean()), 4)
        else:
            ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
            g = torch.Generator().manual_seed(0)
            t = torch.full((len(x),), tt, dtype=torch.long)
            x_t = q_sample(x, ac[t].to(device), torch.randn(x.shape, generator=g).to(device))
            out[f"accuracy_t{tt}"] = round(float((model(x_t, t.to(device)).argmax(1) == y).float().mean()), 4)
    return out


@torch.no_grad()
def _evaluate_diffusion(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    if recipe.data == "ring8":
        from ..metrics import mixture_nll, mmd_rbf, sliced_wasserstein
        mix = ring_mixture()
        real, _ = mix.sample(2000, torch.Generator().manual_seed(123))
        out = {}
        for label, steps, eta in (("ancestral1000", 1000, 1.0), ("ddim20", 20, 0.0), ("ddim50", 50, 0.0)):
            g = torch.Generator().manual_seed(7)
            xT = torch.randn(2000, 2, generator=g)
            ts = timestep_subsequence(recipe.num_timesteps, steps, "uniform")
            x = ddim_sample(lambda x, t: model(x, t), xT, ac, ts, eta=eta, generator=g)
            out[label] = {"sliced_w2": round(float(sliced_wasserstein(x, real)), 4),
                          "mmd": round(float(mmd_rbf(x, real)), 5), "nll": round(float(mixture_nll(x, mix)), 4)}
        return out
    from ..metrics import image_quality
    clf = checkpoints.load("shapes_classifier16", device=device)
    real, _, _ = _batch(recipe, HELD_OUT_SEEDS["eval"], n=1000)
    n = 256
    labels = torch.arange(n) % len(SHAPES)
    out = {"num_samples": n, "reference": "1000 held-out shapes; features of shapes_classifier16"}
    # the floor: held-out real images measured the same way (FD is biased upwards at small n)
    real_n, _, _ = _batch(recipe, HELD_OUT_SEEDS["eval_floor"], n=n)
    out["real_images"] = image_quality(real_n, real, clf, _batch(recipe, HELD_OUT_SEEDS["eval_floor"], n=n)[1])
    for label, steps, eta in (("ancestral1000", 1000, 1.0), ("ddim20", 20, 0.0), ("ddim50", 50, 0.0)):
        g = torch.Generator().manual_seed(7)
        xT = torch.randn(n, 3, 16, 16, generator=g).to(device)
        ts = timestep_subsequence(recipe.num_timesteps, steps, "uniform")
        y = labels.to(device)
        t0 = time.time()
        x = ddim_sample(lambda x, t: model(x, t, y), xT, ac, ts, eta=eta, generator=g)
        out[label] = {**image_quality(x.cpu().clamp(-1, 1), real, clf, labels), "seconds": round(time.time() - t0, 1)}
        log(f"{label}: {out[label]}")
    return out


@dataclass(frozen=True)
class Task:
    """What a recipe's ``task`` means, in one place: how its model trains (returning (model, info, log tensors or
    None)) and how it is measured for the manifest."""

    train: Callable
    evaluate: Callable
    resumable: bool = False


TASKS = {
    "diffusion": Task(partial(_train_loop, step_loss=_diffusion_step_loss), _evaluate_diffusion, resumable=True),
    "classifier": Task(partial(_train_loop, step_loss=_classifier_step_loss), _evaluate_classifier, resumable=True),
    "autoencoder": Task(partial(_train_loop, step_loss=_autoencoder_step_loss),
                        lambda recipe, model, device, log=print, info=None: evaluate_autoencoder(model, device),
                        resumable=True),
    "vqgan": Task(_train_vqgan, lambda recipe, model, device, log=print, info=None: evaluate_autoencoder32(model, device)),
    "prior": Task(_train_prior, _evaluate_prior),
    "ldm": Task(_train_ldm, _evaluate_ldm),
}


def task_of(recipe: Recipe) -> Task:
    if recipe.task not in TASKS:
        raise ValueError(f"recipe.task: expected one of {sorted(TASKS)}, got {recipe.task!r}")
    return TASKS[recipe.task]


def _evaluate(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    """The manifest's metrics of a trained model (its task's evaluation)."""
    return task_of(recipe).evaluate(recipe, model, device, log, info)
