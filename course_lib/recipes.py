"""The recipes that rebuild every shipped model: data, not code. Rerunning a recipe with
``./course train NAME --ship`` rebuilds the same weights; :func:`recipe_parents` names the models a recipe's
weights or metrics depend on (their sha256 goes into the manifest, and ``checkpoints.load`` checks it)."""
from __future__ import annotations

from dataclasses import dataclass

from .data import COLOURS, COLUMNS, ROWS, SHAPES, SIZES
from .gan import VQGANLossConfig

__all__ = ["Recipe", "VQGANSection", "ControlSection", "RECIPES", "recipe_parents", "CORRUPTIONS"]

CORRUPTIONS = ("clean", "light noise", "heavy noise", "blur")  # the clean classifier's extra head


@dataclass
class VQGANSection:
    """The part of a recipe only the "vqgan" task reads: its objective, its discriminator (if ``loss.gan``) and the
    steps at which the shipped log keeps reconstructions of 8 held-out images."""

    loss: VQGANLossConfig
    disc_layers: int = 2                # PatchDiscriminator(num_layers=...)
    disc_channels: int = 32             # PatchDiscriminator(channels=...)
    snapshot_steps: tuple = ()


@dataclass
class ControlSection:
    """The part of a recipe only the "controlnet" task reads: the hint, the caption words kept beside it, and the
    steps at which the shipped log measures the ControlNet on held-out hints (the sudden-convergence curve)."""

    hint: str = "mask"                        # course_lib.controlnet.HINT_KINDS
    keep: tuple = ("colour", "shape")         # caption words the model still gets (the mask says where, how big)
    snapshot_steps: tuple = ()
    snapshot_samples: int = 64                # held-out hints measured at each snapshot
    snapshot_ddim_steps: int = 10


@dataclass
class Recipe:
    """Everything that defines a shipped model: rerunning it rebuilds the same weights."""

    name: str
    model: str
    config: dict
    task: str            # a key of train.tasks.TASKS: "diffusion", "classifier", "autoencoder", "vqgan", "prior",
                         # "ldm", "lpips", "controlnet", "caption", "sr" or "dit"
    data: str            # "shapes16", "shapes32", "ring8", "2afc" or "captions"
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
    log_every: int = 50                 # steps between the logged points of the shipped curves
    autoencoder: str | None = None      # "prior" and "ldm": the shipped autoencoder whose codes or latents it models
    vqgan: VQGANSection | None = None   # "vqgan" only
    base: str | None = None             # "controlnet": the shipped denoiser it controls (frozen, and copied)
    caption_encoder: str | None = None  # "ldm": a shipped pretrained caption encoder, loaded and frozen (Imagen)
    control: ControlSection | None = None  # "controlnet" only
    noise_augmentation: bool = False    # "sr": the low-resolution condition corrupted at a level U[0, 1] per image


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
    *[Recipe(name, "VQVAE", dict(base_channels=32, channel_mults=(1, 2, 2), num_codes=256, latent_dim=16, restart_dead_codes=True),
             task="vqgan", data="shapes32", steps=2000, batch_size=32, lr=1e-3, seed=6,
             description=desc, log_every=25,
             vqgan=VQGANSection(loss, disc_layers=1, disc_channels=64,
                                snapshot_steps=(0, 50, 100, 200, 400, 600, 800, 1000, 1500, 1999)))
      for name, desc, loss in [
          ("shapes_ae32_l2", "VQ autoencoder on 32x32 shapes, L2 reconstruction only (the VQ-VAE objective)",
           VQGANLossConfig(rec="l2", perceptual_weight=0.0, gan=False)),
          ("shapes_ae32_lpips", "VQ autoencoder on 32x32 shapes, L1 + 0.1 x LPIPS (course backbone, unweighted)",
           VQGANLossConfig(rec="l1", perceptual_weight=0.1, gan=False)),
          ("shapes_vqgan32", "VQGAN on 32x32 shapes: L1 + 0.1 x LPIPS + hinge patch-GAN with the adaptive lambda "
                             "(discriminator on from step 600)",
           VQGANLossConfig(rec="l1", perceptual_weight=0.1, gan=True, disc_start=600, disc_weight=0.1)),
      ]],
    Recipe("shapes_gpt32", "GPTPrior", dict(vocab_size=256, block_size=16, n_layer=4, n_head=4, n_embd=128),
           task="prior", data="shapes32", steps=3000, batch_size=64, lr=1e-3, seed=7,
           description="VQGAN stage two: a 4-layer GPT over shapes_vqgan32's 4x4 code sequences in raster order",
           autoencoder="shapes_vqgan32", log_every=25),
    # notebook 06: the autoencoder whose latents the diffusion models use (f = 4: 32x32 -> 8x8x4), then three
    # caption-conditioned diffusion models on the same data: latent with standard cross-attention, latent with the
    # swapped layer, and pixel space (given about the same training wall-clock as the latent model)
    Recipe("shapes_ae32_f4", "VQVAE", dict(base_channels=32, channel_mults=(1, 2), num_codes=256, latent_dim=4, restart_dead_codes=True),
           task="vqgan", data="shapes32", steps=2000, batch_size=32, lr=1e-3, seed=8,
           description="Latent Diffusion's first stage: VQ autoencoder on 32x32 shapes to an 8x8x4 latent (f=4), L2",
           log_every=25, vqgan=VQGANSection(VQGANLossConfig(rec="l2", perceptual_weight=0.0, gan=False),
                                            snapshot_steps=(0, 100, 500, 1999))),
    *[Recipe(name, "CaptionUNet", config, task="ldm", data="shapes32", steps=steps, batch_size=64, lr=1e-3, seed=9,
             ema_decay=0.999, cond_drop_prob=0.1, description=desc, autoencoder=ae, log_every=25)
      for name, config, steps, ae, desc in [
          ("shapes_ldm32", dict(in_channels=4), 3000, "shapes_ae32_f4",
           "latent diffusion on shapes_ae32_f4's 8x8x4 latents, caption-conditioned by cross-attention (Q from the "
           "image, K and V from the caption) at every level, 10% empty captions for classifier-free guidance"),
          ("shapes_ldm32_swapped", dict(in_channels=4, attention="swapped"), 3000, "shapes_ae32_f4",
           "as shapes_ldm32 but every cross-attention swapped (Q from the caption, K and V from the image; the "
           "per-token outputs averaged and broadcast to every pixel)"),
          ("shapes_ldm32_swapped_scatter", dict(in_channels=4, attention="swapped_scatter"), 3000, "shapes_ae32_f4",
           "as shapes_ldm32_swapped but each word's output sent back to the pixels it attended to (the attention "
           "matrix read column-wise: pixel n receives sum_m N A_mn u_m / M')"),
          ("shapes_pixel32", dict(in_channels=3, channel_mults=(1, 2, 2), attention_levels=(False, False, True)),
           600, None, "pixel-space counterpart of shapes_ldm32: the same caption UNet on 32x32 images (attention "
                      "at 8x8 only), given the latent model's training wall-clock (measured 0.146 vs 0.735 s a step "
                      "at batch 64 on one CPU thread: 3000 vs 600 steps)"),
      ]],
    # notebook 10: the learner's pipeline at full length - the MiniUNet they assemble, on shapes_ae32_f4's latents,
    # with shapes_ldm32's data, dropout, EMA and seed; the notebook's live run is this recipe's first few hundred steps
    Recipe("shapes_mini_ldm32", "MiniUNet", dict(in_channels=4, channels=32, context_dim=32), task="ldm",
           data="shapes32", steps=4000, batch_size=64, lr=1e-3, seed=9, ema_decay=0.999, cond_drop_prob=0.1,
           autoencoder="shapes_ae32_f4", log_every=25,
           description="notebook 10's MiniUNet (one ResBlock and cross-attention per resolution, 8x8 and 4x4; "
                       "width 32) on shapes_ae32_f4's scaled latents, caption-conditioned, 10% empty captions"),
    # notebook 07: ControlNets on the frozen shapes_ldm32, the hint an object's mask, the caption only its colour and
    # shape (the mask says where and how big), half the captions empty (the paper's 50%); a constant learning rate,
    # no EMA. The same data, steps and seed for the paper's model and its two ablations.
    *[Recipe(name, "ControlNet", dict(hint_channels=1, variant=variant, connector_init=init), task="controlnet",
             data="shapes32", steps=4000, batch_size=32, lr=1e-4, seed=11, cond_drop_prob=0.5, description=desc,
             autoencoder="shapes_ae32_f4", base="shapes_ldm32", log_every=25,
             control=ControlSection(snapshot_steps=(0, 25, 50, 75, 100, 125, 150, 175, 200, 250, 300, 400, 500, 750,
                                                    1000, 1500, 2000, 3000, 4000)))
      for name, variant, init, desc in [
          ("shapes_controlnet32", "copy", "zero",
           "ControlNet on shapes_ldm32: a trainable copy of its encoder and middle block, mask hint through the hint "
           "encoder, zero convolutions on both skips and the middle block"),
          ("shapes_controlnet32_gaussian", "copy", "gaussian",
           "the paper's ablation of shapes_controlnet32: every connector a Gaussian-initialised 1x1 convolution"),
          ("shapes_controlnet32_lite", "lite", "zero",
           "ControlNet-lite on shapes_ldm32: one 3x3 convolution per block instead of the trainable copy (no time, no "
           "caption), the same zero convolutions"),
      ]],
    # notebook 08: caption encoders pretrained on captions alone (no images), frozen later inside the denoisers, at
    # two sizes: Imagen's frozen T5 at toy scale
    *[Recipe(name, "CaptionAttributes", dict(dim=dim, layers=layers, heads=heads), task="caption", data="captions",
             steps=1500, batch_size=128, lr=2e-3, seed=12, description=desc)
      for name, dim, layers, heads, desc in [
          ("shapes_caption_small", 16, 1, 2, "caption encoder pretrained to name every attribute of every object "
                                            "from captions alone: width 16, 1 layer"),
          ("shapes_caption_large", 64, 2, 4, "the same objective at width 64, 2 layers"),
      ]],
    # notebook 08: Imagen's base models, pixel space at 16x16, caption-conditioned (10% empty captions for guidance).
    # The encoder/U-Net grid: each shipped caption encoder, frozen, under a U-Net of width 16 or 32 (attention at
    # 8x8 only); and the width-32 U-Net with its encoder trained jointly (notebook 06's way). Same data, steps, seed.
    *[Recipe(name, "CaptionUNet", dict(in_channels=3, base_channels=width, attention_levels=(False, True), **enc),
             task="ldm", data="shapes16", steps=2500, batch_size=64, lr=1e-3, seed=13, ema_decay=0.999,
             cond_drop_prob=0.1, description=desc, caption_encoder=frozen, log_every=25)
      for name, width, frozen, enc, desc in [
          (f"shapes_base16_{size}_c{width}", width, f"shapes_caption_{size}", enc,
           f"Imagen base model: 16x16 pixel-space caption UNet of width {width}, its caption encoder the frozen "
           f"shapes_caption_{size}")
          for size, enc in (("small", dict(context_dim=16, caption_layers=1, num_heads=2)),
                            ("large", dict(context_dim=64, caption_layers=2, num_heads=4)))
          for width in (16, 32)
      ] + [("shapes_base16_joint_c32", 32, None, dict(context_dim=64, caption_layers=2, num_heads=4),
            "as shapes_base16_large_c32 but its caption encoder trained jointly with the UNet from scratch "
            "(notebook 06's way), not pretrained and frozen")]],
    # notebook 08: Imagen's super-resolution models 16 -> 32, trained on real 32x32 images and their 2x2-pooled
    # 16x16 views (upsampled, stacked with the noisy image), with and without noise-conditioning augmentation; the
    # frozen shapes_caption_large reads the caption (attention at 8x8 only). Same data, steps and seed. They predict
    # v (Salimans & Ho 2022): the eps-predicting shapes_sr32_eps, otherwise the same as shapes_sr32, samples garbage
    # (its eps error ~0.002 at every t makes x0-hat meaningless above t ~ 800; notebook 08 measures it).
    *[Recipe(name, "CaptionUNet", dict(in_channels=6, out_channels=3, level_embedding=True, base_channels=16,
                                       channel_mults=(1, 2, 2), attention_levels=(False, False, True), context_dim=64,
                                       caption_layers=2, num_heads=4, prediction=prediction),
             task="sr", data="shapes32", steps=3000, batch_size=32, lr=1e-3, seed=14, ema_decay=0.999,
             cond_drop_prob=0.1, description=desc, caption_encoder="shapes_caption_large", log_every=25,
             noise_augmentation=augment)
      for name, augment, prediction, desc in [
          ("shapes_sr32", True, "v", "Imagen super-resolution 16 -> 32 with noise-conditioning augmentation: the "
                                     "upsampled low-resolution image corrupted at a level u ~ U[0, 1], the UNet told "
                                     "u; predicts v"),
          ("shapes_sr32_noaug", False, "v", "as shapes_sr32 without augmentation: always the clean low-resolution "
                                            "image, level 0"),
          ("shapes_sr32_eps", True, "eps", "as shapes_sr32 but predicting eps, the ablation that shows why v"),
      ]],
    # notebook 09: DiT on shapes_ae32_f4's 8x8x4 latents, conditioned on the shape class by adaLN-Zero (10% null
    # labels for guidance); shapes_ldm32's data, batch and seed. The learning rate from a 1000-step sweep (5e-4,
    # 1e-3, 2e-3: final loss 0.077, 0.071, 0.064); twice the UNet's steps, for the notebook's demos (the
    # comparison at the UNet's own budget is `./course experiments dit`'s)
    Recipe("shapes_dit", "DiT", dict(input_size=8, patch_size=2, in_channels=4, hidden_size=128, depth=4, num_heads=4,
                                     num_classes=4, class_dropout_prob=0.1),
           task="dit", data="shapes32", steps=6000, batch_size=64, lr=2e-3, seed=9, ema_decay=0.999,
           autoencoder="shapes_ae32_f4", log_every=25,
           description="DiT-B/2 at toy scale (width 128, 4 blocks, 2x2 patches: 16 tokens) on shapes_ae32_f4's "
                       "scaled latents, conditioned on the shape class by adaLN-Zero, 10% null labels"),
    # notebook 04: the weights w_l of LPIPS(net="shapes"), the paper's "lin" set-up on the synthetic 2AFC set
    Recipe("shapes_lpips_lin", "LPIPSWeights", dict(channels=(32, 64, 64)), task="lpips", data="2afc", steps=400,
           batch_size=64, lr=1e-2, seed=3,
           description="LPIPS' lin on the course backbone (shapes_classifier16's trunk, frozen): per-channel weights "
                       "w_l >= 0 learned with the 2AFC head G on data.distortions.make_2afc(4000, seed=1)"),
    Recipe("ring8_mlp", "MLPDenoiser", dict(dim=2, hidden=128, num_layers=3),
           task="diffusion", data="ring8", steps=20000, batch_size=512, lr=2e-3, seed=4, ema_decay=0.995,
           description="eps-prediction MLP on the ring of 8 Gaussians (ring_mixture(): radius 2, std 0.1; "
                       "T=1000, linear schedule)"),
]}


def recipe_parents(recipe: Recipe) -> dict:
    """The models a recipe's weights or metrics depend on, name -> use ("autoencoder": trained on its latents or
    codes; "perceptual": its features are in the loss; "metrics": its features measure the model's FD)."""
    parents = {}
    if recipe.task in ("diffusion", "ldm", "controlnet", "dit") and recipe.data != "ring8":
        parents["shapes_classifier16"] = "metrics"       # FD and caption-following in its features
    if recipe.task == "vqgan":                            # metrics.reconstruction_report: FD in both classifiers
        parents.update({"shapes_classifier16": "metrics", "shapes_noisy_classifier16": "metrics"})
        if recipe.vqgan.loss.perceptual_weight > 0:
            parents["shapes_classifier16"] = "perceptual"  # LPIPS(net="shapes") is its trunk
    if recipe.task == "lpips":
        parents["shapes_classifier16"] = "perceptual"      # w_l weigh its trunk's channels
    if recipe.autoencoder:
        parents[recipe.autoencoder] = "autoencoder"
    if recipe.base:
        parents[recipe.base] = "base"                     # copied from it and trained against it, frozen
    if recipe.caption_encoder:
        parents[recipe.caption_encoder] = "base"          # its frozen encoder is part of the model
    return parents
