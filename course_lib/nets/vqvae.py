r"""The VQ autoencoder: x -> encoder -> z_e -> quantizer (VQ or LFQ) -> z_q -> decoder -> x_hat."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import ResBlock, _check_image_input

__all__ = ["VQVAEConfig", "VQVAE", "VQObjective"]


@dataclass
class VQVAEConfig:
    in_channels: int = 3
    base_channels: int = 32
    channel_mults: tuple = (1, 2)     # widths base * mult, one stride-2 downsampling each: 16x16 -> 4x4 with two
    latent_dim: int = 16              # D; for LFQ the number of bits, so num_codes = 2 ** latent_dim
    num_codes: int = 256              # K
    quantizer: str = "vq"             # "vq" (nearest code) or "lfq" (lookup-free, MAGVIT-v2)
    beta: float = 0.25
    ema: bool = False
    restart_dead_codes: bool = False
    entropy_weight: float = 0.1       # LFQ's entropy penalty (0: off)
    groups: int = 8


class VQVAE(nn.Module):
    r""":math:`x \to E \to z_e \to q \to z_q \to G \to \hat x` (the notes' VQ-VAE pipeline: encoder, quantizer, decoder).

    :meth:`objective` is the VQ objective (reconstruction + codebook + commitment, + LFQ's entropy penalty), the one
    VQGAN extends; :meth:`training_loss` is it with VQ-VAE's squared error. Latent grids are (B, D, h, w); the quantizer sees vectors on the last axis.
    """

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        from ..quantize import VectorQuantizer

        self.config = cfg = config
        if cfg.quantizer not in ("vq", "lfq"):
            raise ValueError(f"quantizer: expected 'vq' or 'lfq', got {cfg.quantizer!r}")
        if cfg.quantizer == "lfq" and cfg.num_codes != 2**cfg.latent_dim:
            raise ValueError(f"num_codes: LFQ's codebook is {{-1, 1}}^D, so expected 2**latent_dim = "
                             f"{2 ** cfg.latent_dim}, got {cfg.num_codes}")
        ch = [cfg.base_channels * m for m in cfg.channel_mults]
        enc = [nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)]
        prev = ch[0]
        for c in ch:
            enc += [ResBlock(prev, c, None, cfg.groups), nn.Conv2d(c, c, 4, stride=2, padding=1)]
            prev = c
        enc += [nn.GroupNorm(cfg.groups, prev), nn.SiLU(), nn.Conv2d(prev, cfg.latent_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv2d(cfg.latent_dim, ch[-1], 3, padding=1)]
        prev = ch[-1]
        for c in reversed(ch):
            dec += [ResBlock(prev, c, None, cfg.groups), nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(c, c, 3, padding=1)]
            prev = c
        dec += [nn.GroupNorm(cfg.groups, prev), nn.SiLU(), nn.Conv2d(prev, cfg.in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.quantizer = (VectorQuantizer(cfg.num_codes, cfg.latent_dim, cfg.beta, cfg.ema,
                                          restart_dead_codes=cfg.restart_dead_codes) if cfg.quantizer == "vq" else None)

    def encode(self, x):
        _check_image_input(x, self.config.in_channels)
        return self.encoder(x)

    def quantize(self, z_e):
        """(z_q straight-through (B, D, h, w), indices (B, h, w), {loss parts})."""
        from ..quantize import lfq_entropy_loss, lfq_quantize, vq_losses

        z = z_e.permute(0, 2, 3, 1)
        if self.quantizer is not None:
            out = self.quantizer(z)
            parts = {"codebook": out.codebook_loss, "commitment": out.commitment_loss}
            z_q, idx = out.z_q, out.indices
        else:
            z_q, idx = lfq_quantize(z)
            _, commitment = vq_losses(z, z_q.detach(), self.config.beta)
            parts = {"commitment": commitment}
            if self.config.entropy_weight > 0:
                ent, _ = lfq_entropy_loss(z)
                parts["entropy"] = self.config.entropy_weight * ent
        return z_q.permute(0, 3, 1, 2), idx, parts

    def decode(self, z_q):
        return self.decoder(z_q)

    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's last convolution: VQGAN's :math:`G_L`, where the adaptive weight compares gradients."""
        return self.decoder[-1].weight

    def codes_to_latents(self, indices):
        """(B, h, w) code ids -> (B, D, h, w) quantized latents."""
        from ..quantize import lfq_codes

        book = self.quantizer.codebook if self.quantizer is not None else lfq_codes(self.config.latent_dim).to(indices.device)
        return F.embedding(indices, book).permute(0, 3, 1, 2)

    def forward(self, x):
        z_q, _, _ = self.quantize(self.encode(x))
        return self.decode(z_q)

    def objective(self, x, reconstruction=None) -> "VQObjective":
        r"""The VQ objective, the one both VQ-VAE and VQGAN train on (VQGAN eq. 4 with VQ-VAE's squared error):

        .. math:: \mathcal L_{VQ} = \mathcal L_{rec}(x, \hat x) + \|\mathrm{sg}[z_e] - z_q\|_2^2
                  + \beta\,\|z_e - \mathrm{sg}[z_q]\|_2^2\ (+\ \text{LFQ's entropy penalty})

        with :math:`z_e = E(x)`, :math:`z_q` its quantization and :math:`\hat x = G(z_q)`. ``reconstruction``
        ``(x_hat, x) -> (loss, {name: term})`` is :math:`\mathcal L_{rec}`; by default VQ-VAE's
        :math:`\|x - \hat x\|_2^2` (mean squared error). VQGAN passes its L1 + LPIPS term and adds its GAN term
        (:class:`course_lib.gan.VQGANTrainer`). Returns tensors (with their graph) as a :class:`VQObjective`.
        """
        z_e = self.encode(x)
        z_q, idx, vq_parts = self.quantize(z_e)
        x_hat = self.decode(z_q)
        if reconstruction is None:
            rec = F.mse_loss(x_hat, x)
            rec_parts = {"reconstruction": rec}
        else:
            rec, rec_parts = reconstruction(x_hat, x)
        loss = rec
        for term in vq_parts.values():  # codebook, commitment (VQ) or commitment, entropy (LFQ)
            loss = loss + term
        return VQObjective(loss, rec, {**rec_parts, **vq_parts}, idx, x_hat)

    def training_loss(self, x):
        """:meth:`objective` with VQ-VAE's squared error: returns (loss, parts as floats, indices)."""
        out = self.objective(x)
        return out.loss, {k: float(v.detach()) for k, v in out.parts.items()}, out.indices


class VQObjective(NamedTuple):
    r"""What :meth:`VQVAE.objective` computes: the total loss, its reconstruction term, every term by name, the code
    indices and the reconstruction :math:`\hat x`."""

    loss: torch.Tensor
    reconstruction: torch.Tensor
    parts: dict
    indices: torch.Tensor
    x_hat: torch.Tensor
