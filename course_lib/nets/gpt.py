r"""VQGAN's stage two: a small GPT over code sequences. The config keeps nanoGPT's field names (``n_layer``,
``n_head``, ``n_embd``, ``block_size``) so it reads beside nanoGPT's ``model.py``; its blocks are the course's one
:class:`course_lib.attention.TransformerBlock` with ``causal=True`` (no cross-attention)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..attention import TransformerBlock

__all__ = ["GPTConfig", "GPTPrior"]


@dataclass
class GPTConfig:
    vocab_size: int = 256      # number of codes K
    block_size: int = 64       # sequence length h*w (raster order)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128


class GPTPrior(nn.Module):
    r"""VQGAN's stage two: :math:`p(s) = \prod_i p(s_i \mid s_{<i})` over the code indices s of an image in raster
    order, a small decoder-only transformer (as nanoGPT). A start token (id ``vocab_size``) precedes the sequence,
    so the first code has a distribution too: ``forward(idx)`` with idx (B, n) codes returns (B, n, K) logits where
    position i predicts code i from codes < i.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, cfg.n_embd)  # + start token
        self.pos_emb = nn.Parameter(torch.zeros(1, cfg.block_size, cfg.n_embd))
        nn.init.normal_(self.pos_emb, std=0.02)
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd: expected a multiple of n_head={cfg.n_head}, got {cfg.n_embd}")
        self.blocks = nn.ModuleList(TransformerBlock(cfg.n_embd, None, cfg.n_head, causal=True, qkv_bias=True)
                                    for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if idx.ndim != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"idx: expected (B, n) integer code ids, got {tuple(idx.shape)} {idx.dtype}")
        if idx.shape[1] > cfg.block_size:
            raise ValueError(f"idx: expected at most block_size={cfg.block_size} codes, got {idx.shape[1]}")
        if idx.numel() and (idx.min() < 0 or idx.max() >= cfg.vocab_size):
            raise ValueError(f"idx: expected code ids in [0, {cfg.vocab_size}), got [{int(idx.min())}, {int(idx.max())}]")
        start = torch.full((idx.shape[0], 1), cfg.vocab_size, dtype=torch.long, device=idx.device)
        tokens = torch.cat([start, idx.long()], dim=1)[:, : idx.shape[1]]  # shift right: position i sees < i
        x = self.tok_emb(tokens) + self.pos_emb[:, : tokens.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per code (nats), the stage-two training loss."""
        logits = self.forward(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), idx.reshape(-1).long())

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 1.0, top_k: int | None = None, generator=None,
               length: int | None = None) -> torch.Tensor:
        r"""Draw n code sequences one code at a time from :math:`\text{softmax}(\text{logits}/T)` restricted to the
        ``top_k`` most likely codes. Returns (n, length) ids (default length: block_size)."""
        cfg = self.config
        length = cfg.block_size if length is None else length
        if temperature <= 0:
            raise ValueError(f"temperature: expected a positive number, got {temperature}")
        if top_k is not None and not 1 <= top_k <= cfg.vocab_size:
            raise ValueError(f"top_k: expected None or an integer in [1, {cfg.vocab_size}], got {top_k}")
        device = self.head.weight.device
        idx = torch.zeros(n, 0, dtype=torch.long, device=device)
        for i in range(length):
            # recomputing the prefix each step (no KV cache) keeps this readable; 64 steps of a 4-layer net are cheap
            padded = torch.cat([idx, torch.zeros(n, 1, dtype=torch.long, device=device)], dim=1)
            logits = self.forward(padded)[:, i].float() / temperature
            if top_k is not None:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = logits.softmax(-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
