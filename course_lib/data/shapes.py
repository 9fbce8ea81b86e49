"""Shapes world: small procedurally drawn RGB images with known content.

Every image holds one or two shapes (circle, square, triangle, cross) in one of six
colours, at one of the 3x3 grid cells, in one of two sizes, on a black background. Each
image comes with

- ``labels``:   the class of its first shape (index into ``SHAPES``), for classifiers and guidance;
- ``tokens``:   a caption made of the vocabulary words, e.g. ``"large red circle top left"``
  (two shapes are joined by ``"and"``), padded with ``<pad>`` to a fixed length, for cross-attention;
- ``masks``:    per-pixel object index (0 background, 1 first shape, 2 second), for control and
  for checking where attention looks.

Drawing is vectorised: each shape is a signed distance function evaluated on the pixel
grid of the whole batch at once, and a one-pixel ramp of the distance gives anti-aliased
edges. Everything is a function of the seed: no files, no downloads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_positive_int

__all__ = [
    "SHAPES", "COLOURS", "ROWS", "COLUMNS", "SIZES", "VOCAB", "CAPTION_LENGTH",
    "ShapesBatch", "generate_shapes", "render_shapes", "encode_caption", "decode_tokens",
]

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (0.92, 0.16, 0.14),
    "green": (0.18, 0.80, 0.22),
    "blue": (0.20, 0.38, 1.00),
    "yellow": (0.98, 0.88, 0.12),
    "magenta": (0.90, 0.20, 0.90),
    "cyan": (0.15, 0.85, 0.92),
}
ROWS = ("top", "middle", "bottom")
COLUMNS = ("left", "center", "right")
SIZES = ("small", "large")
VOCAB = ("<pad>", "and", *SIZES, *COLOURS, *SHAPES, *ROWS, *COLUMNS)
WORDS_PER_OBJECT = 5  # size colour shape row column
CAPTION_LENGTH = 2 * WORDS_PER_OBJECT + 1  # two objects joined by "and"
_TOKEN = {w: i for i, w in enumerate(VOCAB)}

# Geometry, as fractions of the image side: cell centres, jitter, radii.
_CELL_CENTRES = (0.21, 0.5, 0.79)
_JITTER = 0.03
_RADII = (0.12, 0.18)  # small, large


@dataclass
class ShapesBatch:
    """A batch from :func:`generate_shapes`.

    images      (N, 3, H, W) float in [-1, 1]
    labels      (N,)         long, shape class of the first object
    tokens      (N, L)       long, caption token ids (L = CAPTION_LENGTH), 0 = <pad>
    masks       (N, H, W)    long, 0 background, k = the k-th object
    attributes  dict name -> (N, max_objects) long: shape, colour, row, column, size; -1 where absent
    num_objects (N,)         long
    """

    images: torch.Tensor
    labels: torch.Tensor
    tokens: torch.Tensor
    masks: torch.Tensor
    attributes: dict
    num_objects: torch.Tensor

    def __len__(self):
        return self.images.shape[0]

    @property
    def captions(self) -> list[str]:
        return decode_tokens(self.tokens)


def encode_caption(caption: str) -> torch.Tensor:
    """Caption string -> (CAPTION_LENGTH,) token ids; an unknown word raises ``ValueError`` naming it."""
    if not isinstance(caption, str):
        raise TypeError(f"caption: expected a str such as 'large red circle top left', got {type(caption).__name__}")
    words = caption.split()
    if len(words) > CAPTION_LENGTH:
        raise ValueError(f"caption: expected at most {CAPTION_LENGTH} words, got {len(words)}: {caption!r}")
    ids = []
    for w in words:
        if w not in _TOKEN:
            raise ValueError(f"caption: unknown word {w!r}; expected words from VOCAB {VOCAB}")
        ids.append(_TOKEN[w])
    return torch.tensor(ids + [0] * (CAPTION_LENGTH - len(ids)), dtype=torch.long)


def decode_tokens(tokens: torch.Tensor) -> list[str]:
    """(N, L) or (L,) token ids -> caption strings (padding dropped)."""
    t = tokens if tokens.ndim == 2 else tokens[None]
    return [" ".join(VOCAB[i] for i in row.tolist() if i != 0) for row in t]


def _circle(dx, dy, r):
    return torch.sqrt(dx**2 + dy**2) - r


def _square(dx, dy, r):
    return torch.maximum(dx.abs(), dy.abs()) - 0.85 * r  # 0.85: about the circle's area


def _triangle(dx, dy, r):
    # Apex up at (0, -rt), base at y = +0.8 rt from x = -rt to +rt (y points down).
    rt = 1.15 * r
    s5 = math.sqrt(5.0)
    sides = torch.maximum((2 * dx - dy) / s5, (-2 * dx - dy) / s5) - rt / s5
    return torch.maximum(dy - 0.8 * rt, sides)


def _cross(dx, dy, r):
    ax, ay, w = dx.abs(), dy.abs(), 0.36 * r  # w: half width of the arms
    return torch.minimum(torch.maximum(ax - r, ay - w), torch.maximum(ax - w, ay - r))


_SDF = (_circle, _square, _triangle, _cross)  # ordered as SHAPES


def _signed_distance(kind: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Signed distance (in pixels, negative inside) of each pixel to the shape ``kind``.

    kind: (N,) shape ids; dx, dy: (N, H, W) pixel offsets from the shape centre (y points
    down); r: (N, 1, 1) radius. Boxes and polygons use the max of half-plane distances:
    exact near the edges, which is all the anti-aliasing ramp needs. Each image is drawn
    only with its own shape's function.
    """
    out = torch.empty_like(dx)
    for k, sdf in enumerate(_SDF):
        idx = (kind == k).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = sdf(dx[idx], dy[idx], r[idx])
    return out


def generate_shapes(
    n: int,
    image_size: int = 16,
    num_objects: int | tuple[int, int] = 1,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> ShapesBatch:
    """Draw ``n`` shapes-world images, deterministically from ``seed`` (or from ``generator``).

    image_size:  side in pixels (16 and 32 are the course's sizes; 8..128 accepted)
    num_objects: 1, 2, or a range (1, 2) drawn per image; two objects never share a cell
    """
    check_positive_int(n, "n")
    check_positive_int(image_size, "image_size", minimum=8)
    if image_size > 128:
        raise ValueError(f"image_size: expected at most 128, got {image_size}")
    if isinstance(num_objects, bool) or not (isinstance(num_objects, int) or (
            isinstance(num_objects, tuple) and len(num_objects) == 2 and all(isinstance(v, int) for v in num_objects))):
        raise TypeError(f"num_objects: expected 1, 2 or (1, 2), got {num_objects!r}")
    lo, hi = (num_objects, num_objects) if isinstance(num_objects, int) else tuple(num_objects)
    if not (1 <= lo <= hi <= 2):
        raise ValueError(f"num_objects: expected 1, 2 or (1, 2), got {num_objects!r}")
    if generator is None:
        if seed is None:
            raise ValueError("seed: expected an int seed or a generator, got neither")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__} {seed!r}")
        generator = torch.Generator().manual_seed(seed)
    g = generator
    count = torch.randint(lo, hi + 1, (n,), generator=g)
    shape = torch.randint(0, len(SHAPES), (n, 2), generator=g)
    colour = torch.randint(0, len(COLOURS), (n, 2), generator=g)
    size = torch.randint(0, len(SIZES), (n, 2), generator=g)
    cell0 = torch.randint(0, 9, (n,), generator=g)
    cell1 = (cell0 + 1 + torch.randint(0, 8, (n,), generator=g)) % 9  # a different cell
    cell = torch.stack([cell0, cell1], dim=1)
    jitter = (torch.rand(n, 2, 2, generator=g) * 2 - 1) * _JITTER
    absent = torch.arange(2).view(1, 2) >= count.view(n, 1)
    attrs = {"shape": shape, "colour": colour, "row": cell // 3, "column": cell % 3, "size": size}
    attrs = {k: v.masked_fill(absent, -1) for k, v in attrs.items()}
    return render_shapes(attrs, image_size, jitter)


def render_shapes(attributes: dict, image_size: int = 16, jitter: torch.Tensor | None = None) -> ShapesBatch:
    """Draw images with chosen content: ``attributes`` maps shape, colour, row, column, size to
    (N, k) long tensors (k = 1 or 2 objects; -1 marks an absent second object). ``jitter``
    (N, k, 2) shifts each centre by a fraction of the image side (default: none)."""
    keys = ("shape", "colour", "row", "column", "size")
    missing = [k for k in keys if k not in attributes]
    if missing:
        raise ValueError(f"attributes: missing {missing}; expected the keys {keys}")
    attrs = {}
    for k in keys:
        try:
            v = torch.as_tensor(attributes[k])
        except (TypeError, ValueError, RuntimeError):
            v = None
        if v is None or v.dtype == torch.bool or (v.is_floating_point() and not bool((v == v.round()).all())):
            what = f"{v.dtype} values such as {v[v != v.round()].flatten()[:1].tolist()}" if v is not None and \
                v.is_floating_point() else (str(v.dtype) if v is not None else repr(attributes[k])[:40])
            raise TypeError(f"attributes[{k!r}]: expected integer ids (indices, not names), got {what}")
        attrs[k] = v.long()
    attrs = {k: (v[:, None] if v.ndim == 1 else v) for k, v in attrs.items()}
    n, k_obj = attrs["shape"].shape
    limits = {"shape": len(SHAPES), "colour": len(COLOURS), "row": 3, "column": 3, "size": len(SIZES)}
    for k, v in attrs.items():
        if v.shape != (n, k_obj) or k_obj > 2:
            raise ValueError(f"attributes[{k!r}]: expected shape (N, 1) or (N, 2) like 'shape' {(n, k_obj)}, "
                             f"got {tuple(v.shape)}")
        if int(v[:, 0].min()) < 0 or int(v.max()) >= limits[k]:
            raise ValueError(f"attributes[{k!r}]: expected ids in [0, {limits[k] - 1}] (-1 only for an absent "
                             f"second object), got {v.unique().tolist()}")
    if k_obj == 1:
        attrs = {k: torch.cat([v, torch.full_like(v, -1)], dim=1) for k, v in attrs.items()}
    count = 1 + (attrs["shape"][:, 1] >= 0).long()
    H = image_size
    jitter = torch.zeros(n, 2, 2) if jitter is None else torch.as_tensor(jitter, dtype=torch.float32)
    if jitter.shape[1] == 1:
        jitter = torch.cat([jitter, torch.zeros_like(jitter)], dim=1)
    centres = torch.tensor(_CELL_CENTRES)
    cy = (centres[attrs["row"].clamp_min(0)] + jitter[..., 0]) * H  # (N, 2) pixels
    cx = (centres[attrs["column"].clamp_min(0)] + jitter[..., 1]) * H
    radius = torch.tensor(_RADII)[attrs["size"].clamp_min(0)] * H
    palette = torch.tensor(list(COLOURS.values())) * 2 - 1  # to [-1, 1]

    pix = torch.arange(H, dtype=torch.float32) + 0.5
    images = torch.full((n, 3, H, H), -1.0)
    masks = torch.zeros(n, H, H, dtype=torch.long)
    for j in range(2):
        present = count > j
        dy = (pix.view(1, H, 1) - cy[:, j].view(n, 1, 1)).expand(n, H, H)
        dx = (pix.view(1, 1, H) - cx[:, j].view(n, 1, 1)).expand(n, H, H)
        sdf = _signed_distance(attrs["shape"][:, j].clamp_min(0), dx, dy, radius[:, j].view(n, 1, 1))
        coverage = (0.5 - sdf).clamp(0, 1) * present.view(n, 1, 1)  # one-pixel anti-aliasing ramp
        col = palette[attrs["colour"][:, j].clamp_min(0)].view(n, 3, 1, 1)
        images = images * (1 - coverage[:, None]) + col * coverage[:, None]
        masks = torch.where(coverage > 0.5, torch.full_like(masks, j + 1), masks)
    tokens = _caption_tokens(attrs, count)
    return ShapesBatch(images, attrs["shape"][:, 0].clone(), tokens, masks, attrs, count)


def _caption_tokens(attrs: dict, count: torch.Tensor) -> torch.Tensor:
    """Token ids "size colour shape row column [and size colour shape row column]", vectorised."""
    n = count.shape[0]
    offsets = {  # where each attribute's words start in VOCAB
        "size": _TOKEN[SIZES[0]], "colour": _TOKEN[next(iter(COLOURS))], "shape": _TOKEN[SHAPES[0]],
        "row": _TOKEN[ROWS[0]], "column": _TOKEN[COLUMNS[0]],
    }
    tokens = torch.zeros(n, CAPTION_LENGTH, dtype=torch.long)
    for j in range(2):
        start = j * (WORDS_PER_OBJECT + 1)
        words = torch.stack([attrs[k][:, j] + off for k, off in offsets.items()], dim=1)
        present = (count > j).view(n, 1)
        tokens[:, start:start + WORDS_PER_OBJECT] = torch.where(present, words, torch.zeros_like(words))
    tokens[:, WORDS_PER_OBJECT] = torch.where(count > 1, _TOKEN["and"], 0)
    return tokens
