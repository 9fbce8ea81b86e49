"""What a recipe's ``task`` means, in one table (:data:`TASKS`): how its model trains and how it is measured. The
resumable trainer is :func:`.loops._train_loop`; here are the others (VQGAN's two-player step, the GPT prior, the
latent diffusion model, LPIPS' lin weights)."""
from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass
from functools import partial
from types import SimpleNamespace
from typing import Callable

import torch
from tqdm.auto import tqdm

from .. import checkpoints
from . import distributed
from ..data import HELD_OUT_SEEDS, generate_shapes
from ..diffusion import diffusion_loss
from ..metrics import evaluate_autoencoder, evaluate_autoencoder32
from ..nets import build_model
from ..recipes import Recipe
from ..schedules import make_alphas_cumprod
from .evaluate import (TWO_AFC_SETS, _evaluate_classifier, _evaluate_diffusion, _evaluate_ldm,
                       _evaluate_lpips_weights, _evaluate_prior, _evaluate_sr)
from .loops import (EMA, _autoencoder_step_loss, _batch, _classifier_step_loss, _diffusion_step_loss, _lr_at,
                    _prior_codes, _train_loop, fit)

__all__ = ["Task", "TASKS", "task_of", "train_2afc", "training_step_flops"]


def _vqgan_trainer(recipe: Recipe, device):
    """A "vqgan" recipe's freshly initialised (autoencoder, discriminator or None, VQGANTrainer)."""
    from ..gan import PatchDiscriminator, VQGANTrainer
    from ..perceptual import LPIPS

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
    return ae, disc, VQGANTrainer(ae, loss_cfg, disc, perceptual, lr=recipe.lr)


def _train_vqgan(recipe: Recipe, device, progress: bool = True):
    """Train one of notebook 05's autoencoders with :class:`course_lib.gan.VQGANTrainer`; returns (model, info,
    log tensors: reconstructions of 8 held-out images at the snapshot steps, and the logged curves)."""
    from ..quantize import codebook_usage

    ae, disc, trainer = _vqgan_trainer(recipe, device)
    section, loss_cfg = recipe.vqgan, recipe.vqgan.loss
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


def _train_prior(recipe: Recipe, device, progress: bool = True):
    """Train the transformer prior on the codes of the recipe's autoencoder (loaded from the shipped weights)."""
    torch.manual_seed(recipe.seed)
    ae = checkpoints.load(recipe.autoencoder, device=device)
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.95))
    steps_log, losses, t0 = [], [], time.time()
    running = fit(model, lambda step: model.loss(distributed.shard(_prior_codes(recipe, step, device, autoencoder=ae))),
                  recipe.steps,
                  lambda step: _lr_at(step, recipe), opt, progress=progress, desc=recipe.name,
                  on_step=_curve_logger(recipe, steps_log, losses))
    info = {"final_loss": round(running, 4), "wall_time_s": round(time.time() - t0, 1),
            "autoencoder": recipe.autoencoder}
    return model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


def _ldm_first_stage(recipe: Recipe, device):
    """An "ldm" recipe's frozen autoencoder (None in pixel space) and latent scale (1 in pixel space)."""
    from ..ldm import latent_scale

    if not recipe.autoencoder:
        return None, 1.0
    # loaded anew (not from _first_stage's cache): building it draws from the global generator after the recipe's
    # seed, as it did when the shipped models were trained, so a retrain initialises its model the same way
    ae = checkpoints.load(recipe.autoencoder, device=device)
    return ae, latent_scale(ae, generate_shapes(1000, 32, 1, seed=HELD_OUT_SEEDS["latent_scale"]).images.to(device))


_IMAGE_SIZE = {"shapes16": 16, "shapes32": 32}


def _ldm_batch(recipe: Recipe, step: int):
    """The captioned images (32x32, or 16x16 for data "shapes16") of an "ldm" recipe's training step: a pure
    function of its seed and the step."""
    return generate_shapes(recipe.batch_size, _IMAGE_SIZE[recipe.data], 1, seed=recipe.seed * 1_000_003 + step)


def _frozen_caption_encoder(recipe: Recipe, model, device) -> None:
    """Load a shipped pretrained caption encoder (``recipe.caption_encoder``, a CaptionAttributes) into ``model``'s
    and freeze it: Imagen's frozen text encoder. Its width and depth must match the UNet's context_dim and
    caption_layers."""
    if not recipe.caption_encoder:
        return
    pre = checkpoints.load(recipe.caption_encoder, device=device)
    model.caption_encoder.load_state_dict(pre.encoder.state_dict())
    model.caption_encoder.requires_grad_(False)


def _ldm_step_loss(recipe: Recipe, model, ae, scale, ac, gen, device, step):
    """L_LDM on the scaled latents of the step's batch (pixels for the pixel-space model)."""
    b = distributed.shard(_ldm_batch(recipe, step))  # this rank's rows (all of them in one process)
    with torch.no_grad():  # the first stage is frozen: one encoder pass per image, no gradient
        z0 = scale * ae.encode(b.images.to(device)) if ae is not None else b.images.to(device)
    return diffusion_loss(model, z0, ac, b.tokens.to(device), recipe.cond_drop_prob, gen)


@functools.lru_cache(maxsize=8192)  # ~64 KB a batch of 64: the scaling grid's models share their latents
def _encoded_batch(autoencoder: str, data: str, seed: int, batch_size: int, step: int, device: str):
    """(scaled latents, shape labels) of the captioned images of a step (:func:`_ldm_batch`), encoded once by the
    frozen ``autoencoder``: every model trained on the same seed, batch size and steps reads the same latents, so
    an experiment that trains many (notebook 09's grid) encodes each batch once."""
    ae, scale = _first_stage(autoencoder, device)
    b = generate_shapes(batch_size, _IMAGE_SIZE[data], 1, seed=seed * 1_000_003 + step)
    with torch.no_grad():
        return scale * ae.encode(b.images.to(device)), b.attributes["shape"][:, 0].to(device)


@functools.lru_cache(maxsize=4)
def _first_stage(autoencoder: str, device: str):
    """A shipped autoencoder (frozen: shared by every caller) and its latent scale (:func:`_ldm_first_stage`'s),
    loaded once, without touching the global random generator (a training step may load it)."""
    with torch.random.fork_rng(devices=[]):
        return _ldm_first_stage(SimpleNamespace(autoencoder=autoencoder), torch.device(device))


def _dit_step_loss(recipe: Recipe, model, ae, scale, ac, gen, device, step):
    """L_simple on the step's scaled latents, conditioned on the shape labels, ``class_dropout_prob`` of them the
    null label (DiT's classifier-free guidance training)."""
    z0, labels = distributed.shard(_encoded_batch(recipe.autoencoder, recipe.data, recipe.seed, recipe.batch_size,
                                                  step, str(device)))
    return diffusion_loss(model, z0, ac, labels, model.config.class_dropout_prob, gen)


SR_LOW_RES = 16  # an "sr" recipe's low-resolution side: its 32x32 images pooled 2 x 2


def _sr_step_loss(recipe: Recipe, model, ae, scale, ac, gen, device, step):
    """Imagen's super-resolution loss on the step's batch: the real 32x32 images x_0 denoised given their pooled,
    upsampled 16x16 views, corrupted at u ~ U[0, 1] per image with ``recipe.noise_augmentation`` (else u = 0); the
    target is the model's parameterisation (its config's ``prediction``: eps or v)."""
    from ..imagen import LowResConditioned, downsample, sr_condition

    b = distributed.shard(_ldm_batch(recipe, step))
    x0 = b.images.to(device)
    n, side = x0.shape[0], x0.shape[-1]
    levels = torch.rand(n, generator=gen) if recipe.noise_augmentation else torch.zeros(n)
    low_up, levels = sr_condition(downsample(x0, side // SR_LOW_RES), side, levels.to(device), gen)
    return diffusion_loss(LowResConditioned(model, low_up, levels), x0, ac, b.tokens.to(device),
                          recipe.cond_drop_prob, gen, prediction=model.config.prediction)


def training_step_flops(recipe: Recipe, device=None) -> dict:
    """The FLOPs of one training step of ``recipe`` (:func:`course_lib.metrics.count_flops`, forward and backward),
    for "ldm" and "vqgan" recipes: {"step": all of it, "first_stage": the frozen encoder's share (ldm)}. A step's
    count does not depend on the weights, so a fresh model is measured."""
    from ..metrics import count_flops

    device = torch.device(device or "cpu")
    if recipe.task == "ldm":
        ae, scale = _ldm_first_stage(recipe, device)
        model = build_model(recipe.model, recipe.config).to(device)
        ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
        gen = torch.Generator().manual_seed(recipe.seed)
        step, _ = count_flops(lambda: _ldm_step_loss(recipe, model, ae, scale, ac, gen, device, 0).backward())
        images = _ldm_batch(recipe, 0).images.to(device)
        with torch.no_grad():
            first, _ = count_flops(ae.encode, images) if ae is not None else (0, None)
        return {"step": step, "first_stage": first}
    if recipe.task == "vqgan":
        ae, _, trainer = _vqgan_trainer(recipe, device)
        trainer.step_count = recipe.vqgan.loss.disc_start  # a step with the discriminator on, where it has one
        x, _, _ = _batch(recipe, 0)
        step, _ = count_flops(trainer.step, x.to(device), lr=recipe.lr)
        return {"step": step, "first_stage": 0}
    raise ValueError(f"recipe.task: expected an 'ldm' or 'vqgan' recipe, got {recipe.task!r} ({recipe.name})")


def _train_ldm(recipe: Recipe, device, progress: bool = True, snapshot_steps=(), on_snapshot=None,
               step_loss=_ldm_step_loss):
    """Train a caption-conditioned denoiser on scaled latents (or pixels) with L_LDM (an "sr" recipe: with
    ``step_loss=_sr_step_loss``, conditioned on the low-resolution image too); returns (EMA model, info, log).

    ``on_snapshot(steps_done, ema_model)`` is called once the number of steps done reaches each of
    ``snapshot_steps`` (the training-compute curve of notebook 06 evaluates those snapshots); it must not change
    the model."""
    torch.manual_seed(recipe.seed)
    ae, scale = _ldm_first_stage(recipe, device)
    model = build_model(recipe.model, recipe.config).to(device)
    _frozen_caption_encoder(recipe, model, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=0.0)
    ema = EMA(model, recipe.ema_decay)
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    gen = distributed.rank_generator(recipe.seed)
    steps_log, losses, t0 = [], [], time.time()
    loss_at = partial(step_loss, recipe, model, ae, scale, ac, gen, device)

    bad = [s for s in snapshot_steps if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= recipe.steps]
    if bad:
        raise ValueError(f"snapshot_steps: expected step counts in 1..{recipe.steps} (recipe.steps), got {bad}")
    log_curve, pause = _curve_logger(recipe, steps_log, losses), [0.0]

    def on_step(step, loss):
        log_curve(step, loss)
        if on_snapshot is not None and step + 1 in snapshot_steps:
            t_snap = time.time()  # the snapshot's own time (a caller may evaluate it) is not training time
            on_snapshot(step + 1, ema.model)
            pause[0] += time.time() - t_snap

    running = fit(model, loss_at, recipe.steps, lambda step: _lr_at(step, recipe), opt, ema=ema, progress=progress,
                  desc=recipe.name, on_step=on_step)
    wall = time.time() - t0 - pause[0]
    info = {"final_loss": round(running, 5), "wall_time_s": round(wall, 1), "autoencoder": recipe.autoencoder,
            "latent_scale": round(scale, 6), "seconds_per_step": round(wall / recipe.steps, 4),
            **({"image_size": _IMAGE_SIZE[recipe.data]} if recipe.data != "shapes32" else {}),
            **({"caption_encoder": recipe.caption_encoder} if recipe.caption_encoder else {}),
            **({"low_res_size": SR_LOW_RES, "noise_augmentation": recipe.noise_augmentation}
               if recipe.task == "sr" else {})}
    return ema.model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


def _control_batch(recipe: Recipe, step: int):
    """A "controlnet" recipe's training step: 32x32 one-object images, their hints and the captions with only the
    kept words (a pure function of the seed and the step)."""
    from ..controlnet import keep_words, make_hint

    b = _ldm_batch(recipe, step)
    return b, make_hint(b.masks, recipe.control.hint), keep_words(b.tokens, recipe.control.keep)


def _train_controlnet(recipe: Recipe, device, progress: bool = True):
    """Train a ControlNet on the frozen ``recipe.base`` with L_LDM, only the ControlNet's parameters free, a constant
    learning rate and no EMA (the paper's: AdamW at a fixed rate), ``cond_drop_prob`` of the captions empty; at each
    snapshot step measure IoU on held-out hints and keep 8 samples (the shipped log). Returns (model, info, log)."""
    from ..controlnet import ControlledUNet, ControlNet, ControlPipeline, control_fidelity, held_out_controls
    from ..ldm import LatentDiffusion

    torch.manual_seed(recipe.seed)
    ldm = LatentDiffusion.from_shipped(recipe.base, device=device)
    base, ae, scale = ldm.unet.requires_grad_(False), ldm.autoencoder, ldm.scale
    cn = ControlNet(base, **recipe.config).to(device)
    controlled = ControlledUNet(base, [cn])
    trainable = [p for p in cn.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=0.0)
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    gen = distributed.rank_generator(recipe.seed)
    section = recipe.control
    held, held_hints, held_tokens = held_out_controls(section.snapshot_samples, section.hint, section.keep)
    z_T = torch.randn((section.snapshot_samples, 4, 8, 8), generator=torch.Generator().manual_seed(1))
    pipe = ControlPipeline(controlled, ae, scale)

    def loss_at(step):
        b, hint, tokens = (distributed.shard(part) for part in _control_batch(recipe, step))
        with torch.no_grad():  # the first stage is frozen
            z0 = scale * ae.encode(b.images.to(device))
        return diffusion_loss(controlled.with_hints([hint.to(device)]), z0, ac, tokens.to(device),
                              recipe.cond_drop_prob, gen)

    snap_steps, snap_iou, snaps, pause = [], [], [], [0.0]

    def snapshot(done):
        t_snap = time.time()
        cn.eval()
        x = pipe.sample([held_hints.to(device)], held_tokens.to(device), section.snapshot_ddim_steps, z_T=z_T.to(device))
        cn.train()
        snap_steps.append(done)
        snap_iou.append(control_fidelity(x, held.masks, intervals=False)["iou"])
        snaps.append(x[:8].cpu().half())
        pause[0] += time.time() - t_snap

    steps_log, losses = [], []
    log_curve = _curve_logger(recipe, steps_log, losses)

    def on_step(step, loss):
        log_curve(step, loss)
        if step + 1 in section.snapshot_steps:
            snapshot(step + 1)

    t0 = time.time()
    if 0 in section.snapshot_steps:
        snapshot(0)
    cn.train()
    running = fit(cn, loss_at, recipe.steps, lambda step: recipe.lr, opt, progress=progress, desc=recipe.name,
                  on_step=on_step)
    wall = time.time() - t0 - pause[0]
    info = {"final_loss": round(running, 5), "wall_time_s": round(wall, 1), "seconds_per_step": round(wall / recipe.steps, 4),
            "base": recipe.base, "autoencoder": recipe.autoencoder, "latent_scale": round(scale, 6),
            "trainable_params": sum(p.numel() for p in trainable),
            "frozen_params": sum(p.numel() for p in base.parameters()) + sum(p.numel() for p in cn.parameters()
                                                                          if not p.requires_grad),
            "snapshot_iou": dict(zip(snap_steps, snap_iou))}
    log = {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses),
           "snapshot_steps": torch.tensor(snap_steps), "snapshot_iou": torch.tensor(snap_iou),
           "snapshots": torch.stack(snaps) if snaps else torch.zeros(0), "snapshot_hints": held_hints[:8].half()}
    return cn.eval(), info, log


def _caption_batch(recipe: Recipe, step: int, n: int | None = None):
    """A "caption" recipe's step: captions of one or two objects (their images are not drawn: 8x8, the cheapest)."""
    return generate_shapes(n or recipe.batch_size, 8, (1, 2), seed=recipe.seed * 1_000_003 + step)


def _train_caption(recipe: Recipe, device, progress: bool = True):
    """Pretrain a caption encoder on captions alone (:class:`course_lib.nets.CaptionAttributes`: every attribute of
    every object named from the start token); notebook 08 freezes it inside a denoiser."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model, recipe.config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)
    steps_log, losses, t0 = [], [], time.time()

    def loss_at(step):
        b = distributed.shard(_caption_batch(recipe, step))
        return model.loss(b.tokens.to(device), {k: v.to(device) for k, v in b.attributes.items()})

    running = fit(model, loss_at, recipe.steps, lambda step: _lr_at(step, recipe), opt, progress=progress,
                  desc=recipe.name, on_step=_curve_logger(recipe, steps_log, losses))
    info = {"final_loss": round(running, 5), "wall_time_s": round(time.time() - t0, 1)}
    return model.eval(), info, {"curve_steps": torch.tensor(steps_log), "curve_loss": torch.tensor(losses)}


@torch.no_grad()
def _evaluate_caption(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    b = generate_shapes(2000, 8, (1, 2), seed=HELD_OUT_SEEDS["eval"])
    attrs = {k: v.to(device) for k, v in b.attributes.items()}
    return {"held_out_captions": 2000, "all_attributes_right": round(model.accuracy(b.tokens.to(device), attrs), 4),
            "held_out_loss": round(float(model.loss(b.tokens.to(device), attrs)), 5)}


def _evaluate_controlnet(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    from ..controlnet import ControlledUNet, ControlPipeline, evaluate_controlnet
    from ..ldm import LatentDiffusion

    ldm = LatentDiffusion.from_shipped(recipe.base, device=device)
    pipe = ControlPipeline(ControlledUNet(ldm.unet, [model.to(device)]), ldm.autoencoder, ldm.scale)
    return evaluate_controlnet(pipe, device, hint=recipe.control.hint, intervals=True)


def train_2afc(variant: str, train_set: dict, steps: int, batch_size: int, seed: int = 3, progress: bool = False,
               desc: str = "", lr: float | None = None):
    """Train one of LPIPS' set-ups (:func:`course_lib.perceptual.lpips_variant`) on a 2AFC set with the paper's
    head G and loss (:func:`course_lib.perceptual.two_afc_loss`), keeping w_l >= 0; returns (metric in eval mode,
    smoothed final loss). ``lr``: the metric's learning rate (default: the variant's); the head's is 1e-3."""
    from ..perceptual import TwoAFCHead, clamp_weights_, lpips_variant, two_afc_loss

    torch.manual_seed(0)
    metric, groups = lpips_variant(variant, lr=lr)
    head = TwoAFCHead()
    opt = torch.optim.Adam(groups + [{"params": head.parameters(), "lr": 1e-3}])
    g = torch.Generator().manual_seed(seed)
    n = len(train_set["ref"])

    def loss_at(step):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        return two_afc_loss(metric, head, train_set["ref"][idx], train_set["p0"][idx], train_set["p1"][idx],
                            train_set["judge"][idx])

    # no gradient clipping: the paper's plain Adam steps
    running = fit(metric, loss_at, steps, None, opt, progress=progress, desc=desc, max_grad_norm=None,
                  on_step=lambda step, loss: clamp_weights_(metric))
    return metric.eval(), running


def _train_lpips_weights(recipe: Recipe, device, progress: bool = True):
    """LPIPS' "lin" on the course backbone: w_l learned on the synthetic 2AFC set, the backbone frozen."""
    from ..data.distortions import make_2afc

    t0 = time.time()
    n, seed = TWO_AFC_SETS["train"]
    metric, running = train_2afc("lin", make_2afc(n, seed=seed), recipe.steps, recipe.batch_size, recipe.seed,
                                 progress, recipe.name, lr=recipe.lr)
    model = build_model(recipe.model, recipe.config)
    if list(model.config.channels) != list(metric.channels):
        raise ValueError(f"recipe.config: expected channels {metric.channels} (the trunk's), got "
                         f"{model.config.channels}")
    for w, learned in zip(model.weights, metric.weights):
        w.data.copy_(learned.detach())
    info = {"final_loss": round(running, 5), "wall_time_s": round(time.time() - t0, 1),
            "train_set": list(TWO_AFC_SETS["train"])}
    return model.eval(), info, None


@dataclass(frozen=True)
class Task:
    """What a recipe's ``task`` means, in one place: how its model trains (returning (model, info, log tensors or
    None)) and how it is measured for the manifest."""

    train: Callable
    evaluate: Callable
    resumable: bool = False
    one_process_only: str = ""  # why the task cannot train under torchrun (empty: it can, see .distributed)


_CODEBOOK = ("its codebook moves outside the gradient (dead-code restarts, EMA updates) on each process's own data, "
             "which DistributedDataParallel does not average")

TASKS = {
    "diffusion": Task(partial(_train_loop, step_loss=_diffusion_step_loss), _evaluate_diffusion, resumable=True),
    "classifier": Task(partial(_train_loop, step_loss=_classifier_step_loss), _evaluate_classifier, resumable=True),
    "autoencoder": Task(partial(_train_loop, step_loss=_autoencoder_step_loss),
                        lambda recipe, model, device, log=print, info=None: evaluate_autoencoder(model, device),
                        resumable=True, one_process_only=_CODEBOOK),
    "vqgan": Task(_train_vqgan, lambda recipe, model, device, log=print, info=None: evaluate_autoencoder32(model, device),
                  one_process_only=_CODEBOOK + "; and its two-player step has two optimizers outside the one loop"),
    "prior": Task(_train_prior, _evaluate_prior),
    "ldm": Task(_train_ldm, _evaluate_ldm),
    "lpips": Task(_train_lpips_weights, _evaluate_lpips_weights,
                  one_process_only="it samples its 2AFC set by index, not by seeded step batches, and trains in seconds"),
    "controlnet": Task(_train_controlnet, _evaluate_controlnet),
    "caption": Task(_train_caption, _evaluate_caption),
    "sr": Task(partial(_train_ldm, step_loss=_sr_step_loss), _evaluate_sr),
    "dit": Task(partial(_train_ldm, step_loss=_dit_step_loss), _evaluate_ldm),
}


def task_of(recipe: Recipe) -> Task:
    if recipe.task not in TASKS:
        raise ValueError(f"recipe.task: expected one of {sorted(TASKS)}, got {recipe.task!r}")
    return TASKS[recipe.task]


def _evaluate(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    """The manifest's metrics of a trained model (its task's evaluation)."""
    return task_of(recipe).evaluate(recipe, model, device, log, info)
