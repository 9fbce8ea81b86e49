"""Training loops and the recipes that rebuild every shipped model.

    python -m course_lib.train NAME [--steps N] [--device cpu|cuda] [--resume] [--no-save] [--use-retrained P ...]
    python -m course_lib.train NAME --eval-only [--ship]
    python -m course_lib.train NAME --ship        (maintainers: replace the shipped model)
    python -m course_lib.train --list

One loop for diffusion models (eps-prediction MSE, EMA of weights, optional label dropout
for classifier-free guidance) and one for classifiers; both are seeded (the batch of step
i is a function of the seed and i), show a tqdm bar, and save a resumable state every few
hundred steps under ``runs/NAME/``. A recipe then measures the model with
:mod:`course_lib.metrics` and writes weights and manifest entry via :mod:`course_lib.checkpoints`:
into ``runs/NAME/`` (a learner's retrain, used only where a notebook's ``RETRAINED`` names it),
and into the package's ``course_lib/weights/`` only with ``--ship``. The entry records the
sha256 of every parent model (:func:`recipe_parents`), which ``checkpoints.load`` checks.
The same command runs on CPU or CUDA (bfloat16 autocast on both for the UNet).
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from . import checkpoints
from .data import COLOURS, ROWS, SHAPES, SIZES, COLUMNS, generate_shapes, ring_mixture
from .device import default_device
from .diffusion import ddim_sample, diffusion_loss, q_sample
from .nets import build_model
from .schedules import make_alphas_cumprod, timestep_subsequence

__all__ = ["EMA", "Recipe", "RECIPES", "recipe_parents", "train", "evaluate", "main"]

CORRUPTIONS = ("clean", "light noise", "heavy noise", "blur")  # the clean classifier's extra head


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


@dataclass
class Recipe:
    """Everything that defines a shipped model: rerunning it rebuilds the same weights."""

    name: str
    model: str
    config: dict
    task: str            # "diffusion", "classifier", "autoencoder", "vqgan" or "prior"
    data: str            # "shapes16", "shapes32" or "ring8"
    steps: int
    batch_size: int
    lr: float
    seed: int
    description: str
    ema_decay: float | None = None
    cond_drop_prob: float = 0.0     # label dropout: trains the unconditional model alongside
    noise_aware: bool = False       # classifier trained on x_t at random t
    amp: bool = False               # bfloat16 autocast (1.7x on 2 CPU cores, measured)
    schedule: str = "linear"
    num_timesteps: int = 1000
    extra: dict = field(default_factory=dict)


RECIPES = {r.name: r for r in [
    Recipe("shapes_classifier16", "Classifier",
           dict(num_classes=len(SHAPES), time_conditional=False,
                attribute_heads=(len(COLOURS), len(ROWS), len(COLUMNS), len(SIZES), len(CORRUPTIONS))),
           task="classifier", data="shapes16", steps=1500, batch_size=256, lr=2e-3, seed=1,
           description="clean shapes classifier (shape, colour, row, column, size and corruption heads); its "
                       "features are the feature space of course_lib.metrics"),
    Recipe("shapes_noisy_classifier16", "Classifier", dict(num_classes=len(SHAPES), time_conditional=True),
           task="classifier", data="shapes16", steps=3000, batch_size=256, lr=2e-3, seed=2, noise_aware=True,
           description="noise-aware shapes classifier p_phi(y | x_t, t) for classifier guidance (linear schedule, T=1000)"),
    Recipe("shapes_ddpm16", "UNet", dict(num_classes=len(SHAPES), base_channels=32, channel_mults=(1, 2)),
           task="diffusion", data="shapes16", steps=6000, batch_size=128, lr=1e-3, seed=3, ema_decay=0.999,
           cond_drop_prob=0.1, amp=True,
           description="eps-prediction DDPM on 16x16 shapes (T=1000, linear schedule), class-conditional with "
                       "10% label dropout: unconditional with y=None, classifier-free guidance with both"),
    Recipe("shapes_vqvae16", "VQVAE", dict(num_codes=256, latent_dim=16, restart_dead_codes=True),
           task="autoencoder", data="shapes16", steps=2000, batch_size=128, lr=1e-3, seed=5,
           description="VQ-VAE on 16x16 shapes: 4x4 grid of codes from a 256-code codebook (D=16), beta 0.25, "
                       "codebook loss with dead-code restarts"),
    # notebook 05's three autoencoders: same architecture (32x32 -> 4x4 grid of codes from 256, D=16: the high
    # compression where the paper's argument lives; at 8x8 codes plain L2 already reached 37 dB), data, batch and
    # steps; only the objective differs. The perceptual term is the course's unweighted deep-feature distance
    # (LPIPS(net="shapes", lin=False)), whose scale is about 10x that of lpips' AlexNet-lin, hence weight 0.1.
    *[Recipe(name, "VQVAE", dict(channels=(32, 64, 64), num_codes=256, latent_dim=16, restart_dead_codes=True),
             task="vqgan", data="shapes32", steps=2000, batch_size=32, lr=1e-3, seed=6,
             description=desc, extra={"loss": loss, "log_every": 25, "disc": {"num_layers": 1, "channels": 64},
                                      "snapshot_steps": [0, 50, 100, 200, 400, 600, 800, 1000, 1500, 1999]})
      for name, desc, loss in [
          ("shapes_ae32_l2", "VQ autoencoder on 32x32 shapes, L2 reconstruction only (the VQ-VAE objective)",
           dict(rec="l2", perceptual_weight=0.0, gan=False)),
          ("shapes_ae32_lpips", "VQ autoencoder on 32x32 shapes, L1 + 0.1 x LPIPS (course backbone, unweighted)",
           dict(rec="l1", perceptual_weight=0.1, gan=False)),
          ("shapes_vqgan32", "VQGAN on 32x32 shapes: L1 + 0.1 x LPIPS + hinge patch-GAN with the adaptive lambda "
                             "(discriminator on from step 600)",
           dict(rec="l1", perceptual_weight=0.1, gan=True, disc_start=600, disc_weight=0.1)),
      ]],
    Recipe("shapes_gpt32", "GPTPrior", dict(vocab_size=256, block_size=16, n_layer=4, n_head=4, n_embd=128),
           task="prior", data="shapes32", steps=3000, batch_size=64, lr=1e-3, seed=7,
           description="VQGAN stage two: a 4-layer GPT over shapes_vqgan32's 4x4 code sequences in raster order",
           extra={"autoencoder": "shapes_vqgan32", "log_every": 25}),
    # notebook 06: the autoencoder whose latents the diffusion models use (f = 4: 32x32 -> 8x8x4), then three
    # caption-conditioned diffusion models on the same data: latent with standard cross-attention, latent with the
    # swapped layer, and pixel space (given about the same training wall-clock as the latent model)
    Recipe("shapes_ae32_f4", "VQVAE", dict(channels=(32, 64), num_codes=256, latent_dim=4, restart_dead_codes=True),
           task="vqgan", data="shapes32", steps=2000, batch_size=32, lr=1e-3, seed=8,
           description="Latent Diffusion's first stage: VQ autoencoder on 32x32 shapes to an 8x8x4 latent (f=4), L2",
           extra={"loss": dict(rec="l2", perceptual_weight=0.0, gan=False), "log_every": 25,
                  "snapshot_steps": [0, 100, 500, 1999]}),
    *[Recipe(name, "CaptionUNet", config, task="ldm", data="shapes32", steps=steps, batch_size=64, lr=1e-3, seed=9,
             ema_decay=0.999, cond_drop_prob=0.1, description=desc, extra={"autoencoder": ae, "log_every": 25})
      for name, config, steps, ae, desc in [
          ("shapes_ldm32", dict(in_channels=4), 3000, "shapes_ae32_f4",
           "latent diffusion on shapes_ae32_f4's 8x8x4 latents, caption-conditioned by cross-attention (Q from the "
           "image, K and V from the caption) at every level, 10% empty captions for classifier-free guidance"),
          ("shapes_ldm32_swapped", dict(in_channels=4, attention="swapped"), 3000, "shapes_ae32_f4",
           "as shapes_ldm32 but every cross-attention swapped (Q from the caption, K and V from the image; the "
           "per-token outputs averaged and broadcast to every pixel)"),
          ("shapes_pixel32", dict(in_channels=3, channel_mults=(1, 2, 2), attention_levels=(False, False, True)),
           600, None, "pixel-space counterpart of shapes_ldm32: the same caption UNet on 32x32 images (attention "
                      "at 8x8 only), given the latent model's training wall-clock (measured 0.146 vs 0.735 s a step "
                      "at batch 64 on one CPU thread: 3000 vs 600 steps)"),
      ]],
    Recipe("ring8_mlp", "MLPDenoiser", dict(dim=2, hidden=128, num_layers=3),
           task="diffusion", data="ring8", steps=20000, batch_size=512, lr=2e-3, seed=4, ema_decay=0.995,
           description="eps-prediction MLP on the ring of 8 Gaussians (ring_mixture(): radius 2, std 0.1; "
                       "T=1000, linear schedule)"),
]}


def recipe_parents(recipe: Recipe) -> dict:
    """The models a recipe's weights or metrics depend on, name -> use ("autoencoder": trained on its latents or
    codes; "perceptual": its features are in the loss; "metrics": its features measure the model's FD)."""
    parents = {}
    if recipe.task in ("diffusion", "ldm") and recipe.data != "ring8":
        parents["shapes_classifier16"] = "metrics"       # FD and caption-following in its features
    if recipe.task == "vqgan":                            # metrics.reconstruction_report: FD in both classifiers
        parents.update({"shapes_classifier16": "metrics", "shapes_noisy_classifier16": "metrics"})
        if recipe.extra["loss"].get("perceptual_weight", 0) > 0:
            parents["shapes_classifier16"] = "perceptual"  # LPIPS(net="shapes") is its trunk
    if recipe.extra.get("autoencoder"):
        parents[recipe.extra["autoencoder"]] = "autoencoder"
    return parents


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


def _train_loop(recipe: Recipe, device: torch.device, resume: bool, progress: bool, log=print,
                save_every: int = 500, runs_dir: Path | None = None):
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
    null = recipe.config.get("num_classes")

    def save_state(step):
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.model.state_dict() if ema else {},
                 "generator": gen.get_state(), "step": step, "elapsed": elapsed + time.time() - t0,
                 "steps": recipe.steps}
        checkpoints.write_atomic(state_path, lambda tmp: torch.save(state, tmp))

    t0 = time.time()
    bar = tqdm(range(start, recipe.steps), desc=recipe.name, disable=not progress, initial=start, total=recipe.steps)
    running = None
    step = start
    history = []  # autoencoders: codebook health through training
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, recipe)
        x, y, attrs = _batch(recipe, step)
        x, y = x.to(device), y.to(device)
        with amp:
            if recipe.task == "diffusion":
                cond = y if null else None
                loss = diffusion_loss(model, x, ac, cond, recipe.cond_drop_prob, gen)
            elif recipe.task == "autoencoder":
                loss, parts, idx = model.training_loss(x)
                if step % recipe.extra.get("log_every", 50) == 0 or step == recipe.steps - 1:
                    from .quantize import codebook_usage
                    use = codebook_usage(idx, model.config.num_codes)
                    history.append({"step": step, **{k: round(v, 5) for k, v in parts.items()},
                                    "perplexity": round(use["perplexity"], 2), "usage": round(use["usage"], 4)})
            elif recipe.noise_aware:
                t = torch.randint(0, len(ac), (len(x),), generator=gen).to(device)
                x_t = q_sample(x, ac.to(device)[t], torch.randn(x.shape, generator=gen).to(device))
                loss = F.cross_entropy(model(x_t, t).float(), y)
            else:
                x, kind = corrupt(x.cpu(), gen)
                logits = model.attribute_logits(x.to(device))
                targets = [y] + [attrs[k][:, 0].to(device) for k in ("colour", "row", "column", "size")]
                targets.append(kind.to(device))
                loss = sum(F.cross_entropy(lg.float(), tg) for lg, tg in zip(logits, targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if ema:
            ema.update(model, step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % save_every == 0 and step + 1 < recipe.steps:
            save_state(step + 1)
    wall = elapsed + time.time() - t0
    final = ema.model if ema else model
    info = {"final_loss": round(running, 5) if running is not None else None, "wall_time_s": round(wall, 1)}
    if history:
        info["history"] = history
    return final.eval(), info


def _train_vqgan(recipe: Recipe, device, progress: bool = True):
    """Train one of notebook 05's autoencoders with :class:`course_lib.gan.VQGANTrainer`; returns (model, info,
    log tensors: reconstructions of 8 held-out images at the snapshot steps, and the logged curves)."""
    from .gan import PatchDiscriminator, VQGANLossConfig, VQGANTrainer
    from .perceptual import LPIPS
    from .quantize import codebook_usage

    torch.manual_seed(recipe.seed)
    ae = build_model(recipe.model, recipe.config).to(device)
    loss_cfg = VQGANLossConfig(**recipe.extra["loss"])
    disc = PatchDiscriminator(**recipe.extra.get("disc", {})).to(device) if loss_cfg.gan else None
    perceptual = None
    if loss_cfg.perceptual_weight > 0:
        lp = LPIPS(net="shapes", lin=False).to(device).requires_grad_(False).eval()
        perceptual = lambda a, b: lp(a, b, check_range=False)  # noqa: E731 (raw decoder output may overshoot)
    trainer = VQGANTrainer(ae, loss_cfg, disc, perceptual, lr=recipe.lr)
    fixed = generate_shapes(8, 32, 1, seed=10_000_000 + 6).images.to(device)
    snap_steps = [s for s in recipe.extra.get("snapshot_steps", []) if s < recipe.steps]
    snaps, history, t0 = [], [], time.time()
    keys = ("l1", "l2", "lpips", "codebook", "commitment", "g_loss", "lambda_", "rec_grad_norm", "gan_grad_norm",
            "d_loss", "logits_real", "logits_fake", "loss")
    curves = {k: [] for k in keys}
    for step in tqdm(range(recipe.steps), desc=recipe.name, disable=not progress):
        x, _, _ = _batch(recipe, step)
        logs = trainer.step(x.to(device), lr=_lr_at(step, recipe))
        if step % recipe.extra.get("log_every", 25) == 0 or step == recipe.steps - 1:
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
    info = {"final_loss": history[-1].get("loss"), "wall_time_s": round(wall, 1), "loss_config": recipe.extra["loss"],
            "history": history[:: max(1, len(history) // 40)]}
    if disc is not None:  # shipped in the log: notebook 05 shows its logit maps
        info["discriminator_params"] = sum(p.numel() for p in disc.parameters())
        info["discriminator_config"] = disc.config
        log_tensors.update({f"discriminator.{k}": v for k, v in disc.state_dict().items()})
    return ae, info, log_tensors


def _prior_codes(recipe: Recipe, step: int, device, n: int | None = None, autoencoder=None):
    """Code sequences (B, h*w) of the batch of ``step`` under the recipe's autoencoder, raster order."""
    ae = autoencoder or checkpoints.load(recipe.extra["autoencoder"], device=device)
    x, _, _ = _batch(recipe, step, n)
    with torch.no_grad():
        _, idx, _ = ae.quantize(ae.encode(x.to(device)))
    return idx.flatten(1)


def _train_prior(recipe: Recipe, device, progress: bool = True):
    """Train the transformer prior on the codes of the recipe's autoencoder (loaded from the shipped weights)."""
    torch.manual_seed(recipe.seed)
    ae = checkpoints.load(recipe.extra["autoencoder"], device=device)
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.95))
    steps_log, losses, t0, running = [], [], time.time(), None
    for step in tqdm(range(recipe.steps), desc=recipe.name, disable=not progress):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, recipe)
        loss = model.loss(_prior_codes(recipe, step, device, autoencoder=ae))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % recipe.extra.get("log_every", 25) == 0 or step == recipe.steps - 1:
            steps_log.append(step)
            losses.append(loss.item())
    info = {"final_loss": round(running, 4), "wall_time_s": round(time.time() - t0, 1),
            "autoencoder": recipe.extra["autoencoder"]}
    return model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


def _train_ldm(recipe: Recipe, device, progress: bool = True):
    """Train a caption-conditioned denoiser on scaled latents (or pixels) with L_LDM; returns (EMA model, info, log)."""
    from .ldm import latent_scale

    torch.manual_seed(recipe.seed)
    ae_name = recipe.extra.get("autoencoder")
    ae = checkpoints.load(ae_name, device=device) if ae_name else None
    scale = latent_scale(ae, generate_shapes(1000, 32, 1, seed=10_000_000 + 11).images.to(device)) if ae else 1.0
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    ema = EMA(model, recipe.ema_decay)
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    gen = torch.Generator().manual_seed(recipe.seed)
    steps_log, losses, t0, running = [], [], time.time(), None
    for step in tqdm(range(recipe.steps), desc=recipe.name, disable=not progress):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, recipe)
        b = generate_shapes(recipe.batch_size, 32, 1, seed=recipe.seed * 1_000_003 + step)
        with torch.no_grad():
            z0 = scale * ae.encode(b.images.to(device)) if ae is not None else b.images.to(device)
        loss = diffusion_loss(model, z0, ac, b.tokens.to(device), recipe.cond_drop_prob, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, step)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % recipe.extra.get("log_every", 25) == 0 or step == recipe.steps - 1:
            steps_log.append(step)
            losses.append(loss.item())
    wall = time.time() - t0
    info = {"final_loss": round(running, 5), "wall_time_s": round(wall, 1), "autoencoder": ae_name,
            "latent_scale": round(scale, 6), "seconds_per_step": round(wall / recipe.steps, 4)}
    return ema.model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


@torch.no_grad()
def caption_following(images: torch.Tensor, attributes: dict, classifier) -> dict:
    """How often the clean shapes classifier (on 16x16 average-pooled images) reads the requested shape, colour and
    position (row and column) off ``images``; ``attributes`` as from :func:`generate_shapes` (first object)."""
    small = F.adaptive_avg_pool2d(images, 16) if images.shape[-1] != 16 else images
    logits = classifier.attribute_logits(small.to(next(classifier.parameters()).device))
    pred = {name: lg.argmax(1).cpu() for name, lg in zip(("shape", "colour", "row", "column"), logits[:4])}
    ok = {name: pred[name] == attributes[name][:, 0] for name in pred}
    both = ok["shape"] & ok["colour"]
    return {"shape": round(float(ok["shape"].double().mean()), 4), "colour": round(float(ok["colour"].double().mean()), 4),
            "position": round(float((ok["row"] & ok["column"]).double().mean()), 4),
            "shape_and_colour": round(float(both.double().mean()), 4),
            "all": round(float((both & ok["row"] & ok["column"]).double().mean()), 4)}


@torch.no_grad()
def evaluate_ldm(pipe, device, n: int = 256, steps: int = 20, guidance_scale: float = 3.0) -> dict:
    """Captions of n held-out images -> samples (DDIM, classifier-free guidance); caption-following rates, FD to
    real images (clean classifier features at 16x16), and sampling time per step (batch n)."""
    from .metrics import image_quality

    clf = checkpoints.load("shapes_classifier16", device=device)
    ref = generate_shapes(n, 32, 1, seed=10_000_000 + 12)
    real = generate_shapes(1000, 32, 1, seed=10_000_000 + 13).images
    out = {"num_samples": n, "ddim_steps": steps, "guidance_scale": guidance_scale,
           "real_images": caption_following(ref.images, ref.attributes, clf)}
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    x = pipe.sample(ref.tokens, steps=steps, guidance_scale=guidance_scale, generator=g).cpu()
    out["seconds_per_step"] = round((time.time() - t0) / steps, 4)
    out["network_evaluations"] = steps * (2 if guidance_scale != 1.0 else 1)
    out["caption_following"] = caption_following(x, ref.attributes, clf)
    pool = lambda im: F.adaptive_avg_pool2d(im, 16)  # noqa: E731
    out["quality"] = image_quality(pool(x), pool(real), clf)
    return out


# -- evaluation of each kind of model --------------------------------------------------------------------------
@torch.no_grad()
def _evaluate(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    if recipe.task == "ldm":
        from .ldm import LatentDiffusion

        info = info or checkpoints.entry(recipe.name)
        ae = checkpoints.load(info["autoencoder"], device=device) if info.get("autoencoder") else None
        return evaluate_ldm(LatentDiffusion(model, ae, info.get("latent_scale", 1.0)), device)
    if recipe.task == "vqgan":
        return evaluate_autoencoder32(model, device)
    if recipe.task == "prior":
        codes = _prior_codes(recipe, 10_000_000, device, n=1000)
        return {"held_out_nll_nats_per_code": round(float(model.loss(codes)), 4),
                "uniform_nll_nats_per_code": round(math.log(model.config.vocab_size), 4)}
    if recipe.task == "autoencoder":
        return evaluate_autoencoder(model, device)
    if recipe.task == "classifier":
        x, y, attrs = _batch(recipe, 10_000_000, n=2000)  # a held-out seed
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
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    if recipe.data == "ring8":
        from .metrics import mixture_nll, mmd_rbf, sliced_wasserstein
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
    from .metrics import image_quality
    clf = checkpoints.load("shapes_classifier16", device=device)
    real, _, _ = _batch(recipe, 10_000_000, n=1000)
    n = 256
    labels = torch.arange(n) % len(SHAPES)
    out = {"num_samples": n, "reference": "1000 held-out shapes; features of shapes_classifier16"}
    # the floor: held-out real images measured the same way (FD is biased upwards at small n)
    real_n, _, _ = _batch(recipe, 20_000_000, n=n)
    out["real_images"] = image_quality(real_n, real, clf, _batch(recipe, 20_000_000, n=n)[1])
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


@torch.no_grad()
def evaluate_autoencoder(model, device, n: int = 1000) -> dict:
    """PSNR / SSIM of reconstructions of held-out 16x16 shapes, and codebook usage over them."""
    from .metrics import psnr, ssim
    from .quantize import codebook_usage

    x = generate_shapes(n, 16, 1, seed=10_000_000 + 5).images.to(device)
    z_q, idx, _ = model.quantize(model.encode(x))
    x_hat = model.decode(z_q).clamp(-1, 1)
    use = codebook_usage(idx, model.config.num_codes)
    return {"psnr_db": round(float(psnr(x_hat, x).mean()), 2), "ssim": round(float(ssim(x_hat, x).mean()), 4),
            "perplexity": round(use["perplexity"], 1), "usage": round(use["usage"], 4)}


@torch.no_grad()
def evaluate_autoencoder32(model, device, n: int = 500) -> dict:
    """Notebook 05's comparison on held-out 32x32 shapes; see :func:`course_lib.metrics.reconstruction_report`."""
    from .metrics import reconstruction_report

    x = generate_shapes(n, 32, 1, seed=10_000_000 + 7).images.to(device)
    z_q, idx, _ = model.quantize(model.encode(x))
    return reconstruction_report(model.decode(z_q).clamp(-1, 1), x, idx, model.config.num_codes)


def _destination(name: str, ship: bool, weights_dir, runs_dir) -> Path:
    if ship and weights_dir is not None:
        raise ValueError("ship: --ship writes into the package's course_lib/weights/; do not also pass weights_dir")
    if ship:
        return checkpoints.WEIGHTS_DIR
    return Path(weights_dir) if weights_dir is not None else Path(runs_dir or checkpoints.RUNS_DIR) / name


def train(name: str, steps: int | None = None, device=None, resume: bool = False, save: bool = True,
          weights_dir=None, progress: bool = True, evaluate: bool = True, log=print, save_every: int = 500,
          runs_dir=None, ship: bool = False):
    """Train the registered model ``name``; returns (model, manifest entry info).

    With ``save`` the weights and manifest entry go to ``weights_dir`` if given, else to ``runs_dir/NAME/``
    (default ``runs/NAME/``, beside the resumable state): a retrain never touches the shipped model. Only
    ``ship=True`` (the maintainers' ``--ship``) writes into ``course_lib/weights/``. Parents load as
    :func:`course_lib.checkpoints.load` resolves them (shipped, unless ``use_retrained`` named them), and the entry
    records their sha256.
    """
    if isinstance(name, str) and name not in RECIPES:
        raise ValueError(f"name: expected one of {sorted(RECIPES)}, got {name!r}")
    recipe = copy.deepcopy(RECIPES[name] if isinstance(name, str) else name)
    if steps is not None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps: expected a positive number of steps, got {steps!r}")
        recipe.steps = steps
    out_dir = _destination(recipe.name, ship, weights_dir, runs_dir) if save else None
    device = default_device(device)
    parents = {p: checkpoints.parent_record(p, use) for p, use in recipe_parents(recipe).items()}
    log_tensors = None
    if recipe.task in ("vqgan", "prior", "ldm"):
        if resume:
            raise ValueError(f"resume: expected a diffusion or classifier recipe (they save resumable state); "
                             f"{recipe.task} recipes train in a few minutes and save none")
        fn = {"vqgan": _train_vqgan, "prior": _train_prior, "ldm": _train_ldm}[recipe.task]
        model, info, log_tensors = fn(recipe, device, progress)
    else:
        model, info = _train_loop(recipe, device, resume, progress, log, save_every, runs_dir)
    name = recipe.name
    cmd = f"python -m course_lib.train {name}" + (f" --steps {steps}" if steps is not None else "")
    info.update({
        "description": recipe.description, "seed": recipe.seed, "steps": recipe.steps,
        "batch_size": recipe.batch_size, "lr": recipe.lr, "ema_decay": recipe.ema_decay,
        "command": cmd, "device": str(device), "torch": torch.__version__,
        "num_params": sum(p.numel() for p in model.parameters()), "parents": parents,
    })
    if evaluate:
        t0 = time.time()
        info["metrics"] = _evaluate(recipe, model, device, log, info)
        info["eval_time_s"] = round(time.time() - t0, 1)
    if save:
        checkpoints.save(name, model, info, out_dir)
        if log_tensors:
            checkpoints.save_log(name, log_tensors, out_dir)
        log(f"{name}: weights and manifest entry written to {out_dir}/" + (
            "" if ship else f" (the shipped model is untouched; a notebook uses yours with RETRAINED = [{name!r}])"))
    return model, info


def evaluate(name: str, device=None, source=None, ship: bool = False, log=print) -> dict:
    """Measure model ``name`` again (as loaded from ``source``, see :func:`course_lib.checkpoints.weights_folder`)
    and refresh its metrics and the sha256 of the models those metrics used. The result is stored in the manifest
    it came from, except the shipped one, which only ``ship=True`` writes."""
    device = default_device(device)
    folder = checkpoints.weights_folder(name, source)
    model = checkpoints.load(name, device=device, source=folder, parents=False)
    e = checkpoints.entry(name, folder)
    for p, rec in e.get("parents", {}).items():  # a parent it was trained on must still match: only metrics move
        if rec["use"] != "metrics":
            checkpoints.check_parents(name, {"parents": {p: rec}}, folder)
    metrics = _evaluate(RECIPES[name], model, device, log, e)
    if folder == checkpoints.WEIGHTS_DIR and not ship:
        log(f"{name}: not stored (the shipped manifest changes only with --ship)")
        return metrics
    mpath = folder / "manifest.json"
    m = checkpoints.manifest(mpath)
    m[name]["metrics"] = metrics
    m[name].setdefault("parents", {}).update(
        {p: checkpoints.parent_record(p, "metrics") for p, use in recipe_parents(RECIPES[name]).items()
         if use == "metrics"})
    checkpoints.write_manifest(m, mpath)
    return metrics


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m course_lib.train", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"models to rebuild: {', '.join(RECIPES)} or 'all'")
    p.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--resume", action="store_true", help="continue from runs/NAME/state.pt")
    p.add_argument("--no-save", action="store_true", help="do not write weights or manifest")
    p.add_argument("--ship", action="store_true",
                   help="maintainers: write into the package's course_lib/weights/ (replaces the shipped model)")
    p.add_argument("--use-retrained", nargs="+", default=[], metavar="PARENT",
                   help="train on your retrains of these parent models (runs/PARENT/) instead of the shipped ones")
    p.add_argument("--list", action="store_true", help="list the recipes")
    p.add_argument("--eval-only", action="store_true",
                   help="re-measure the model (yours in runs/NAME/ if it exists, else the shipped one; stored "
                        "into the shipped manifest only with --ship)")
    a = p.parse_args(argv)
    if a.list or not a.names:
        for r in RECIPES.values():
            print(f"{r.name:28s} {r.steps:6d} steps  {r.description}")
        return 0
    names = list(RECIPES) if a.names == ["all"] else a.names
    for n in names + a.use_retrained:
        if n not in RECIPES:
            p.error(f"unknown model {n!r}; choose from {', '.join(RECIPES)}")
    if a.ship and a.no_save:
        p.error("--ship and --no-save contradict each other")
    print(checkpoints.use_retrained(a.use_retrained))
    for n in names:
        if a.eval_only:
            ours = (checkpoints.RUNS_DIR / n / "manifest.json").exists() and not a.ship
            print(f"{n}: metrics {evaluate(n, a.device, 'runs' if ours else 'shipped', a.ship)}")
            continue
        _, info = train(n, a.steps, a.device, a.resume, not a.no_save, ship=a.ship)
        print(f"{n}: {info.get('wall_time_s')} s training, metrics {info.get('metrics')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
