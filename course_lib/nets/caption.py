r""":math:`\tau_\theta`: the caption encoder of Latent Diffusion's denoiser (caption ids -> tokens and a key mask)."""
from __future__ import annotations

import torch
from torch import nn

from ..attention import TransformerBlock

__all__ = ["CaptionEncoder"]


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
