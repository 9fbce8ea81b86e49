"""Data the course generates itself: toy mixtures with exact answers, and shapes world."""
from .shapes import (
    CAPTION_LENGTH, COLOURS, COLUMNS, ROWS, SHAPES, SIZES, VOCAB,
    ShapesBatch, decode_tokens, encode_caption, generate_shapes, render_shapes,
)
from .toy2d import GaussianMixture, grid_mixture, ring_mixture, swiss_roll, two_moons

__all__ = [
    "GaussianMixture", "ring_mixture", "grid_mixture", "swiss_roll", "two_moons",
    "SHAPES", "COLOURS", "ROWS", "COLUMNS", "SIZES", "VOCAB", "CAPTION_LENGTH",
    "ShapesBatch", "generate_shapes", "render_shapes", "encode_caption", "decode_tokens",
]
