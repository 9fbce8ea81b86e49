r""":math:`\tau_\theta`: the caption encoder of Latent Diffusion's denoiser (caption ids -> tokens and a key mask)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..attention import TransformerBlock

__all__ = ["CaptionEncoder", "CaptionAttributesConfig", "CaptionAttributes", "ATTRIBUTE_SIZES"]


class CaptionEncoder(nn.Module):
    r""":math:`\tau_\theta`: caption token ids (B, L) -> tokens (B, L+1, dim) and a key mask (B, L+1).

    Token embeddings plus learned positions, then :class:`course_lib.attention.TransformerBlock` layers (self-attention
only) that ignore ``<pad>`` (id 0).
    Position 0 is a learned start token that is always attendable, so the empty caption (all ``<pad>``), which
    classifier-free guidance uses as "no condition", still gives well-defined attention.
    """

    def __init__(self, vocab_size: int, length: int, dim: int, layers: int = 2, heads: int = 4):
        super().__init__()
        self.length = length
        self.tok_emb = nn.Embedding(vocab_size, dim)
        self.start = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_emb = nn.Parameter(torch.zeros(1, length + 1, dim))
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.start, std=0.02)
        self.layers = nn.ModuleList(TransformerBlock(dim, None, heads) for _ in range(layers))
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor):
        if tokens.ndim != 2 or tokens.shape[1] != self.length or tokens.dtype != torch.long:
            raise ValueError(f"tokens: expected (B, {self.length}) long caption ids, got {tokens.dtype} "
                             f"{tuple(tokens.shape)}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.tok_emb.num_embeddings:
            raise ValueError(f"tokens: expected ids in [0, {self.tok_emb.num_embeddings}), got "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        b = tokens.shape[0]
        x = torch.cat([self.start.expand(b, -1, -1), self.tok_emb(tokens)], dim=1) + self.pos_emb
        mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=tokens.device), tokens != 0], dim=1)
        for layer in self.layers:
            x = layer(x, self_mask=mask)
        return self.norm_out(x), mask


# -- a caption encoder pretrained on a task of its own, then frozen (Imagen's frozen T5 at toy scale) -------------
ATTRIBUTE_SIZES = {"size": 2, "colour": 6, "shape": 4, "row": 3, "column": 3}  # as course_lib.data orders them


@dataclass
class CaptionAttributesConfig:
    vocab_size: int = 20            # len(course_lib.data.VOCAB)
    caption_length: int = 11        # CAPTION_LENGTH
    dim: int = 64                   # the width of its tokens: a UNet that reads them has context_dim = dim
    layers: int = 2
    heads: int = 4
    objects: int = 2                # objects a caption can name


class CaptionAttributes(nn.Module):
    r"""A :class:`CaptionEncoder` trained on a task of its own, without images: from the start token of
    :math:`\tau(y)` alone, name every attribute of every object the caption mentions (size, colour, shape, row,
    column, or "absent" for a missing second object). To succeed, the start token must gather the whole caption
    through self-attention, so the tokens carry its content; the encoder is then frozen and a denoiser learns to
    read it, as Imagen's U-Nets read a frozen T5. ``forward(tokens)`` -> {attribute: (B, objects, classes + 1)}
    logits (the last class is "absent"); :meth:`loss` is their mean cross-entropy."""

    def __init__(self, config: CaptionAttributesConfig):
        super().__init__()
        self.config = cfg = config
        self.encoder = CaptionEncoder(cfg.vocab_size, cfg.caption_length, cfg.dim, cfg.layers, cfg.heads)
        self.heads = nn.ModuleDict({k: nn.Linear(cfg.dim, cfg.objects * (n + 1)) for k, n in ATTRIBUTE_SIZES.items()})

    def forward(self, tokens: torch.Tensor) -> dict:
        start = self.encoder(tokens)[0][:, 0]  # the start token
        return {k: head(start).view(tokens.shape[0], self.config.objects, -1) for k, head in self.heads.items()}

    @staticmethod
    def targets(attributes: dict) -> dict:
        """ShapesBatch.attributes ({name: (B, objects) ids, -1 absent}) -> class ids with "absent" as the last."""
        return {k: torch.where(attributes[k] < 0, torch.full_like(attributes[k], n), attributes[k])
                for k, n in ATTRIBUTE_SIZES.items()}

    def loss(self, tokens: torch.Tensor, attributes: dict) -> torch.Tensor:
        logits, target = self(tokens), self.targets(attributes)
        return torch.stack([nn.functional.cross_entropy(logits[k].flatten(0, 1), target[k].flatten())
                            for k in ATTRIBUTE_SIZES]).mean()

    @torch.no_grad()
    def accuracy(self, tokens: torch.Tensor, attributes: dict) -> float:
        """The share of captions whose every attribute of every object is named right."""
        logits, target = self(tokens), self.targets(attributes)
        right = torch.stack([(logits[k].argmax(-1) == target[k]).all(-1) for k in ATTRIBUTE_SIZES]).all(0)
        return float(right.double().mean())
