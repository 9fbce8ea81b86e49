"""Data the course generates itself: toy mixtures with exact answers, and shapes world."""
from .shapes import (
    CAPTION_LENGTH, COLOURS, COLUMNS, ROWS, SHAPES, SIZES, VOCAB,
    ShapesBatch, decode_tokens, encode_caption, generate_shapes, render_shapes,
)
from .toy2d import GaussianMixture, grid_mixture, ring_mixture, swiss_roll, two_moons

# Held-out data: a training batch is drawn with seed recipe.seed * 1_000_003 + step, far below 10_000_000, so every
# seed from there on is data no model trained on. Each held-out set has its name here, once.
HELD_OUT = 10_000_000
HELD_OUT_SEEDS = {
    "eval": HELD_OUT + 0,                   # the evaluation batch of a recipe (train.evaluate)
    "real16": HELD_OUT + 3,                 # 1000 real 16x16 images: the FD reference of the samplers
    "autoencoder16": HELD_OUT + 5,          # shapes_vqvae16's held-out reconstructions
    "vqgan_snapshots": HELD_OUT + 6,        # the 8 images notebook 05's training snapshots show
    "autoencoder32": HELD_OUT + 7,          # notebook 05's reconstruction report
    "vqgan_demo": HELD_OUT + 8,             # the lambda demo's and the discriminator check's batch
    "vqgan_prior_real": HELD_OUT + 9,       # notebook 05's second real set, measured beside the prior's samples
    "latent_scale": HELD_OUT + 11,          # the images that fix Latent Diffusion's scale factor
    "ldm_captions": HELD_OUT + 12,          # the captions the LDMs are measured on
    "ldm_real": HELD_OUT + 13,              # their real 32x32 reference images
    "ldm_attention": HELD_OUT + 14,         # the 64 captions notebook 06 measures attention on
    "real16_floor": HELD_OUT + 15,          # 256 more real 16x16 images: the samplers' real-vs-real floor
    "control_hints": HELD_OUT + 16,         # the held-out masks (and captions) the ControlNets are measured on
    "control_real": HELD_OUT + 17,          # their real 32x32 reference images (FD)
    "eval_floor": 2 * HELD_OUT,             # real images measured like samples: the FD floor of an evaluation
    "floor_draws16": 3 * HELD_OUT,          # notebook 00's fresh real draws: seed + 1000 n + k for draw k of n images
}

__all__ = [
    "GaussianMixture", "ring_mixture", "grid_mixture", "swiss_roll", "two_moons",
    "SHAPES", "COLOURS", "ROWS", "COLUMNS", "SIZES", "VOCAB", "CAPTION_LENGTH",
    "ShapesBatch", "generate_shapes", "render_shapes", "encode_caption", "decode_tokens", "HELD_OUT",
    "HELD_OUT_SEEDS",
]
