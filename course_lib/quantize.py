r"""Vector quantization (VQ-VAE, van den Oord et al. 2017) and lookup-free quantization (MAGVIT-v2, Yu et al. 2024).

All functions take vectors on the last axis: z of shape (..., D), a codebook of shape (K, D).

.. math:: z_q = C_k,\quad k = \arg\min_j \|z_e - C_j\|_2,\qquad
          \mathcal L = \|x - \mathrm{dec}(z_e + \mathrm{sg}(z_q - z_e))\|^2 + \beta\|z_e - \mathrm{sg}(z_q)\|^2
          + \|\mathrm{sg}(z_e) - z_q\|^2
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_positive_int, check_same_shape, check_tensor

__all__ = ["nearest_code", "straight_through", "vq_losses", "VQOutput", "VectorQuantizer", "codebook_usage",
           "lfq_quantize", "lfq_index", "lfq_codes", "lfq_entropy_loss"]


def nearest_code(z: torch.Tensor, codebook: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    r"""Index of the nearest code by squared L2, :math:`k = \arg\min_j \|z - C_j\|^2` (ties: the lowest index).

    Uses :math:`\|z\|^2 - 2 z\cdot C_j + \|C_j\|^2` in float64 on chunks of z, so memory is N x K per
    chunk, never N x K x D. Returns a LongTensor of shape z.shape[:-1].
    """
    check_tensor(z, "z", floating=True, finite=True)
    check_tensor(codebook, "codebook", ndim=2)
    if codebook.shape[0] == 0:
        raise ValueError(f"codebook: expected at least one code (K >= 1), got shape {tuple(codebook.shape)}")
    if z.shape[-1] != codebook.shape[1]:
        raise ValueError(f"z: expected last dimension {codebook.shape[1]} (the codebook's D), got {z.shape[-1]}")
    check_positive_int(chunk, "chunk")
    flat = z.reshape(-1, z.shape[-1]).double()
    cb = codebook.detach().double()
    cb_sq = (cb**2).sum(1)
    out = torch.empty(flat.shape[0], dtype=torch.long, device=z.device)
    for i in range(0, flat.shape[0], chunk):
        part = flat[i:i + chunk]
        d = (part**2).sum(1, keepdim=True) - 2 * part @ cb.T + cb_sq  # squared distances, (n, K)
        out[i:i + chunk] = d.argmin(1)  # torch returns the first minimum: ties go to the lowest index
    return out.reshape(z.shape[:-1])


def straight_through(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    r""":math:`z_e + \mathrm{sg}(z_q - z_e)`: the value of z_q going forward, the gradient of z_e going back
    (sg is ``detach``: identity forward, zero gradient backward)."""
    check_tensor(z_e, "z_e")
    check_same_shape(z_q, z_e, "z_q", "z_e")
    return z_e + (z_q - z_e).detach()


def vq_losses(z_e: torch.Tensor, z_q: torch.Tensor, beta: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(codebook term, commitment term), each a mean over elements:

    - codebook :math:`\|\mathrm{sg}(z_e) - z_q\|^2` moves the codes towards the encoder outputs;
    - commitment :math:`\beta\|z_e - \mathrm{sg}(z_q)\|^2` keeps the encoder near its codes (beta where the paper
      puts it, on this term; the paper found results flat for beta in [0.1, 2.0] and used 0.25).
    """
    check_tensor(z_e, "z_e")
    check_same_shape(z_q, z_e, "z_q", "z_e")
    if beta < 0:
        raise ValueError(f"beta: expected a value >= 0, got {beta}")
    return F.mse_loss(z_q, z_e.detach()), beta * F.mse_loss(z_e, z_q.detach())


@dataclass
class VQOutput:
    z_q: torch.Tensor            # straight-through quantized vectors, like z_e
    indices: torch.Tensor        # (...,) code ids
    codebook_loss: torch.Tensor  # zero with the EMA codebook (it is not trained by gradient)
    commitment_loss: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.codebook_loss + self.commitment_loss


class VectorQuantizer(nn.Module):
    r"""Nearest-code quantizer with a K x D codebook.

    ema=True: the codebook follows exponential moving averages instead of the codebook loss (paper, appendix A.1):
    :math:`N_i \leftarrow \gamma N_i + (1-\gamma) n_i`, :math:`m_i \leftarrow \gamma m_i + (1-\gamma)\sum_{j: k_j = i} z_{e,j}`,
    :math:`e_i = m_i / N_i`, with :math:`\gamma` = ``decay`` (0.99) and Laplace smoothing ``eps`` of the counts (as in
    the reference implementation; eps = 0 is the appendix formula exactly).
    restart_dead_codes=True: a code unused for ``restart_after`` training steps is moved onto a random encoder
    output of the current batch.
    """

    def __init__(self, num_codes: int, dim: int, beta: float = 0.25, ema: bool = False, decay: float = 0.99,
                 restart_dead_codes: bool = False, restart_after: int = 20, eps: float = 1e-5):
        super().__init__()
        check_positive_int(num_codes, "num_codes")
        check_positive_int(dim, "dim")
        check_positive_int(restart_after, "restart_after")
        if not 0 < decay < 1:
            raise ValueError(f"decay: expected a value in (0, 1), got {decay}")
        self.num_codes, self.dim, self.beta, self.ema, self.decay = num_codes, dim, beta, ema, decay
        self.restart_dead_codes, self.restart_after, self.eps = restart_dead_codes, restart_after, eps
        init = torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes)
        self.codebook = nn.Parameter(init, requires_grad=not ema)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_sum", init.clone())
        self.register_buffer("steps_unused", torch.zeros(num_codes, dtype=torch.long))

    def forward(self, z_e: torch.Tensor) -> VQOutput:
        check_tensor(z_e, "z_e", last_dim=self.dim)
        idx = nearest_code(z_e, self.codebook)
        if self.training:
            self._update(z_e.detach().reshape(-1, self.dim), idx.reshape(-1))
        z_q = F.embedding(idx, self.codebook)
        codebook_loss, commitment = vq_losses(z_e, z_q, self.beta)
        if self.ema:
            codebook_loss = torch.zeros((), device=z_e.device)
        return VQOutput(straight_through(z_e, z_q), idx, codebook_loss, commitment)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, idx: torch.Tensor):
        counts = torch.bincount(idx, minlength=self.num_codes).to(flat.dtype)  # n_k: vectors assigned to code k
        if self.ema:
            sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat)  # sum of the z_e assigned to code k
            # N_k <- gamma N_k + (1 - gamma) n_k
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            # m_k <- gamma m_k + (1 - gamma) sum_{i: k_i = k} z_e,i
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            # Laplace smoothing, (N_k + eps) / (N + K eps) * N, so that an unused code never divides by zero
            n = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
            # C_k = m_k / N_k
            self.codebook.data.copy_(self.embed_sum / smoothed.clamp_min(1e-12)[:, None])
        if self.restart_dead_codes:
            self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
            dead = (self.steps_unused >= self.restart_after).nonzero().squeeze(1)
            if dead.numel():
                pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
                self.codebook.data[dead] = flat[pick]
                self.steps_unused[dead] = 0
                if self.ema:
                    self.cluster_size[dead] = 1.0
                    self.embed_sum[dead] = flat[pick]


def codebook_usage(indices: torch.Tensor, num_codes: int) -> dict:
    r"""How the codes are used: ``perplexity`` :math:`\exp(-\sum_k p_k \log p_k)` (1 = one code, K = uniform),
    ``usage`` the fraction of codes used at least once, ``counts`` per code."""
    check_positive_int(num_codes, "num_codes")
    idx = torch.as_tensor(indices).reshape(-1)
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise TypeError(f"indices: expected integer code ids, got {idx.dtype}")
    if idx.numel() == 0:
        raise ValueError("indices: expected at least one index, got none")
    if int(idx.min()) < 0 or int(idx.max()) >= num_codes:
        raise ValueError(f"indices: expected ids in [0, {num_codes - 1}], got {int(idx.min())}..{int(idx.max())}")
    counts = torch.bincount(idx, minlength=num_codes).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return {"perplexity": float(entropy.exp()), "usage": float((counts > 0).double().mean()), "counts": counts.long()}


# -- lookup-free quantization ------------------------------------------------------------------------------------
MAX_INDEX_BITS = 62  # 2^63 overflows int64
def lfq_index(q: torch.Tensor) -> torch.Tensor:
    r"""Index of a code :math:`q \in \{-1, 1\}^d`: :math:`k = \sum_i 2^i\,[q_i > 0]` — bit i is dimension i
    (little-endian: dimension 0 is the least significant bit). d is at most 62: the index must fit an int64."""
    check_tensor(q, "q")
    d = q.shape[-1] if q.ndim else 0
    if not 1 <= d <= MAX_INDEX_BITS:
        raise ValueError(f"q: expected a last dimension d in [1, {MAX_INDEX_BITS}] (2^d codes must be indexable by "
                         f"an int64), got d = {d}")
    weights = 2 ** torch.arange(d, device=q.device)
    return ((q > 0).long() * weights).sum(-1)


def lfq_codes(d: int, max_bits: int = 20) -> torch.Tensor:
    """The implicit codebook {-1, 1}^d as a (2^d, d) tensor, row k = the code of index k. Enumerating it is
    2^d x d floats, so d is capped at ``max_bits`` (20: 80 MiB; d = 26 would be 6.5 GiB)."""
    check_positive_int(d, "d")
    if d > max_bits:
        raise ValueError(f"d: enumerating {{-1, 1}}^d stores 2^d x d floats ({2**d * d * 4 / 2**30:.3g} GiB); "
                         f"expected d <= max_bits = {max_bits}, got {d}")
    bits = (torch.arange(2**d)[:, None] >> torch.arange(d)) & 1
    return bits.float() * 2 - 1


def lfq_quantize(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""MAGVIT-v2's lookup-free quantization: :math:`q_i = \mathrm{sign}(z_i)` (0 maps to -1), returned with the
    straight-through estimator, and the index :func:`lfq_index`. No codebook is stored or searched: the nearest
    point of {-1, 1}^d to z is the sign pattern of z."""
    check_tensor(z, "z")
    q = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
    return straight_through(z, q), lfq_index(q)


def lfq_entropy_loss(z: torch.Tensor, temperature: float = 1.0, max_bits: int = 16) -> tuple[torch.Tensor, dict]:
    r"""MAGVIT-v2's entropy penalty :math:`\mathbb E[H(q(z))] - H(\mathbb E[q(z)])` over the batch.

    q(c | z) is a soft assignment to the codes, :math:`\propto \exp(-\|z - c\|^2/\tau)`; on {-1, 1}^d it factorises:
    bit i is +1 with probability :math:`\sigma(4 z_i / \tau)`. The first term (per-sample entropy) makes each
    assignment confident; subtracting the second (entropy of the batch's average assignment, over all 2^d
    codes) rewards using the whole vocabulary. Returns (loss, {"sample_entropy", "codebook_entropy"}) in nats.
    """
    check_tensor(z, "z")
    d = z.shape[-1]
    if d > max_bits:
        raise ValueError(f"z: the exact codebook entropy enumerates 2^d codes; expected d <= {max_bits}, got {d}")
    if temperature <= 0:
        raise ValueError(f"temperature: expected a value > 0, got {temperature}")
    flat = z.reshape(-1, d).float()
    # q(bit_i = +1 | z) = sigma(4 z_i / tau): exp(-||z - c||^2 / tau) factorises over the bits of c in {-1, 1}^d
    logit = 4 * flat / temperature
    log_p1, log_p0 = F.logsigmoid(logit), F.logsigmoid(-logit)  # log P(bit = +1), log P(bit = -1)
    p1 = log_p1.exp()
    # E[H(q(z))]: the entropy of independent bits is the sum of the bits' entropies, averaged over the batch
    sample_entropy = -(p1 * log_p1 + (1 - p1) * log_p0).sum(1).mean()
    bits = ((torch.arange(2**d, device=z.device)[:, None] >> torch.arange(d, device=z.device)) & 1).float()
    log_q = log_p1 @ bits.T + log_p0 @ (1 - bits).T  # (N, 2^d) log q(c | z) = sum_i log q(bit_i = c_i | z)
    avg = torch.logsumexp(log_q, dim=0) - math.log(flat.shape[0])  # log E_z[q(c | z)], the batch average
    # H(E[q(z)]) = -sum_c E[q](c) log E[q](c), over all 2^d codes
    codebook_entropy = -(avg.exp() * avg).sum()
    return sample_entropy - codebook_entropy, {"sample_entropy": sample_entropy.detach(),
                                               "codebook_entropy": codebook_entropy.detach()}
