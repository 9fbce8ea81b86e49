r"""VQGAN's adversarial half (Esser et al. 2021, "Taming Transformers"): a patch discriminator, its losses, and
the adaptive weight that balances the GAN term against the reconstruction term.

The notes' objective: :math:`\mathcal{Q}^* = \arg\min_{E,G,\mathcal{Z}} \max_D \mathbb{E}_{x}\big[
\mathcal{L}_{VQ}(E,G,\mathcal{Z}) + \lambda\, \mathcal{L}_{GAN}(\{E,G,\mathcal{Z}\}, D)\big]` with
:math:`\mathcal{L}_{GAN} = \log D(x) + \log(1 - D(\hat x))` and
:math:`\lambda = \nabla_{G_L}[\mathcal{L}_{rec}] / (\nabla_{G_L}[\mathcal{L}_{GAN}] + \delta)`.

:class:`VQGANTrainer` is one training step with two optimizers: the autoencoder step (reconstruction + perceptual +
VQ terms + lambda x generator loss) and the discriminator step, with the discriminator switched off (lambda = 0,
no discriminator update) before ``disc_start``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_positive_int, check_tensor

__all__ = ["PatchDiscriminator", "load_discriminator", "hinge_d_loss", "vanilla_d_loss", "generator_loss", "adaptive_weight",
           "adaptive_weight_of_norms",
           "VQGANLossConfig", "reconstruction_loss", "VQGANTrainer"]


class PatchDiscriminator(nn.Module):
    r"""A PatchGAN (pix2pix, as used by VQGAN): a fully convolutional net whose output is a map of logits, one
    per overlapping input patch, so the adversarial loss judges local texture and edges rather than the whole image.

    ``num_layers`` stride-2 4x4 convolutions (channels doubling from ``channels``, capped at 8x), then a stride-1
    4x4 convolution and a 1-channel 4x4 output convolution. For an H x W input the logit map is
    :meth:`output_size` (H, W) = (H / 2**num_layers - 2, ...): 32x32 with 2 layers gives 6x6 logits. GroupNorm
    replaces the reference code's BatchNorm so that a logit does not depend on the other images of the batch; like
    BatchNorm in training mode, its statistics span the whole image, so :meth:`receptive_field` is that of the
    convolutions and every logit still feels the rest of the image a little, through the normalisation.
    """

    def __init__(self, in_channels: int = 3, channels: int = 32, num_layers: int = 2, groups: int = 8):
        super().__init__()
        check_positive_int(num_layers, "num_layers")
        check_positive_int(channels, "channels")
        self.config = dict(in_channels=in_channels, channels=channels, num_layers=num_layers, groups=groups)
        self.in_channels, self.num_layers = in_channels, num_layers
        layers = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, num_layers):
            c_next = channels * min(2 ** i, 8)
            layers += [nn.Conv2d(c, c_next, 4, stride=2, padding=1, bias=False), nn.GroupNorm(groups, c_next),
                       nn.LeakyReLU(0.2)]
            c = c_next
        c_next = channels * min(2 ** num_layers, 8)
        layers += [nn.Conv2d(c, c_next, 4, stride=1, padding=1, bias=False), nn.GroupNorm(groups, c_next),
                   nn.LeakyReLU(0.2), nn.Conv2d(c_next, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size of the logit map for an input of ``height`` x ``width``."""
        def one(s):
            for _ in range(self.num_layers):
                s = (s + 2 - 4) // 2 + 1
            return s - 2  # two stride-1 4x4 convolutions with padding 1 each remove one pixel
        return one(height), one(width)

    def receptive_field(self) -> int:
        """Side in pixels of the input patch that one output logit sees."""
        rf, jump = 1, 1
        for m in self.net:
            if isinstance(m, nn.Conv2d):
                rf += (m.kernel_size[0] - 1) * jump
                jump *= m.stride[0]
        return rf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [-1, 1] -> (N, 1, h, w) per-patch logits (real: positive)."""
        check_tensor(x, "x", ndim=4)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} channels, got shape {tuple(x.shape)}")
        h, w = self.output_size(x.shape[2], x.shape[3])
        if h < 1 or w < 1:
            raise ValueError(f"x: images of {x.shape[2]}x{x.shape[3]} are too small for {self.num_layers} "
                             f"downsampling layers (need at least {2 ** self.num_layers * 3}x{2 ** self.num_layers * 3})")
        return self.net(x)


def load_discriminator(name: str = "shapes_vqgan32", source=None) -> PatchDiscriminator:
    """The discriminator trained with the VQGAN ``name`` (kept in its training log), in eval mode; ``source`` as for
    :func:`course_lib.checkpoints.load`."""
    from .checkpoints import CheckpointError, entry, load_log

    e = entry(name, source)
    if "discriminator_config" not in e:
        raise CheckpointError(f"{name}: this model was trained without a discriminator")
    d = PatchDiscriminator(**e["discriminator_config"])
    state = {k.removeprefix("discriminator."): v for k, v in load_log(name, source).items()
             if k.startswith("discriminator.")}
    d.load_state_dict(state, strict=True)
    return d.eval()


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    r"""Hinge loss of the discriminator (VQGAN's default):
    :math:`\tfrac12\big(\mathbb{E}[\max(0, 1 - D(x))] + \mathbb{E}[\max(0, 1 + D(\hat x))]\big)`, D = logits.
    Real logits above +1 and fake ones below -1 cost nothing."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    r"""The notes' log form, negated to a loss and halved like the hinge:
    :math:`-\tfrac12\big(\mathbb{E}[\log D(x)] + \mathbb{E}[\log(1 - D(\hat x))]\big)` with
    :math:`D = \sigma(\text{logit})`, computed stably as softplus: :math:`-\log\sigma(l) = \text{softplus}(-l)`,
    :math:`-\log(1-\sigma(l)) = \text{softplus}(l)`."""
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_loss(logits_fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    r"""The autoencoder's adversarial loss :math:`\mathcal{L}_{GAN}` (what the generator minimises).

    ``kind="hinge"`` (VQGAN's code, with either discriminator loss): :math:`-\mathbb{E}[D(\hat x)]` on logits.
    ``kind="non_saturating"``: :math:`-\mathbb{E}[\log \sigma(D(\hat x))]`, the usual replacement for minimising
    :math:`\log(1 - D(\hat x))`, whose gradient vanishes exactly when the discriminator wins.
    """
    if kind == "hinge":
        return -logits_fake.mean()
    if kind == "non_saturating":
        return F.softplus(-logits_fake).mean()
    raise ValueError(f"kind: expected 'hinge' or 'non_saturating', got {kind!r}")


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer_weight: torch.Tensor,
                    delta: float = 1e-6, max_weight: float = 1e4, return_norms: bool = False):
    r"""VQGAN's adaptive weight :math:`\lambda = \|\nabla_{G_L}\mathcal{L}_{rec}\| / (\|\nabla_{G_L}\mathcal{L}_{GAN}\| + \delta)`.

    :math:`G_L` is the decoder's last layer (``last_layer_weight``); both losses must still have their graphs
    (the gradients are taken with ``retain_graph=True``, so the caller can backpropagate afterwards). The result is
    clamped to [0, ``max_weight``] and detached: lambda scales the GAN term, it is not itself optimised. Its effect:
    the adversarial gradient reaching the decoder has the same size as the reconstruction gradient, whatever the
    scale of either loss.

    The paper writes :math:`\delta = 10^{-6}` (our default). The reference code (taming-transformers'
    ``calculate_adaptive_weight``) uses :math:`\delta = 10^{-4}`, clamps to [0, 1e4] and multiplies by a
    ``disc_weight`` factor (0.8 in its configs) and by ``disc_factor`` (0 before ``disc_start``).

    Returns lambda (a 0-d tensor), or ``(lambda, rec_grad_norm, gan_grad_norm)`` with ``return_norms=True``.
    """
    for name, loss in (("rec_loss", rec_loss), ("gan_loss", gan_loss)):
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
            raise ValueError(f"{name}: expected a scalar tensor that still has its graph (requires_grad), "
                             f"got {type(loss).__name__}" + (f" of shape {tuple(loss.shape)}, requires_grad="
                                                              f"{loss.requires_grad}" if isinstance(loss, torch.Tensor) else ""))
    rec_grad, = torch.autograd.grad(rec_loss, last_layer_weight, retain_graph=True)  # nabla_{G_L} L_rec
    gan_grad, = torch.autograd.grad(gan_loss, last_layer_weight, retain_graph=True)  # nabla_{G_L} L_GAN
    rec_norm, gan_norm = rec_grad.norm().detach(), gan_grad.norm().detach()
    lam = adaptive_weight_of_norms(rec_norm, gan_norm, delta, max_weight)
    if return_norms:
        return lam, rec_norm, gan_norm
    return lam


def adaptive_weight_of_norms(rec_grad_norm, gan_grad_norm, delta: float = 1e-6, max_weight: float = 1e4):
    r"""The equation of :func:`adaptive_weight` on the two gradient norms (floats or tensors, which broadcast):

    .. math:: \lambda = \min\Big(\frac{\|\nabla_{G_L}\mathcal{L}_{rec}\|}{\|\nabla_{G_L}\mathcal{L}_{GAN}\| + \delta},\ \lambda_{max}\Big)
    """
    rec_grad_norm = _check_norm(rec_grad_norm, "rec_grad_norm")
    gan_grad_norm = _check_norm(gan_grad_norm, "gan_grad_norm")
    delta = _check_norm(delta, "delta", number_ok=True)
    if max_weight <= 0:
        raise ValueError(f"max_weight: expected a positive number, got {max_weight}")
    return (rec_grad_norm / (gan_grad_norm + delta)).clamp(0.0, max_weight)


def _check_norm(value, name: str, number_ok: bool = False):
    """A non-negative norm: a tensor as it is; a number as a float64 tensor, or (``number_ok``) as the number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name}: expected a non-negative number or tensor, got {type(value).__name__}")
    if number_ok and isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{name}: expected a non-negative number, got {value}")
        return float(value)
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
    if bool((t < 0).any()):
        raise ValueError(f"{name}: expected non-negative values, got {t.min().item()}")
    return t


@dataclass
class VQGANLossConfig:
    """The autoencoder objective. ``rec="l2"`` with no perceptual/GAN term is the VQ-VAE objective."""

    rec: str = "l1"                    # "l1" or "l2" pixel reconstruction term
    perceptual_weight: float = 1.0     # weight of the LPIPS term (0: off)
    gan: bool = True                   # adversarial term with the adaptive lambda
    disc_start: int = 500              # autoencoder steps before the discriminator is switched on
    disc_weight: float = 1.0           # the reference code's extra factor on lambda (0.8 there)
    delta: float = 1e-6                # the paper's delta
    max_weight: float = 1e4
    d_loss: str = "hinge"              # "hinge" or "vanilla"
    d_lr: float = 4e-4


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, config: VQGANLossConfig, perceptual=None):
    r"""The VQGAN objective's reconstruction term: the pixel term plus the weighted perceptual term,

    .. math:: \mathcal L_{rec} = \lVert x - \hat x\rVert_1 + w_{p}\,\text{LPIPS}(x, \hat x)

    (means over the batch; ``config.rec="l2"`` takes the mean squared error instead). ``perceptual``: a callable
    (x_hat, x) -> (N,) distances, needed when ``config.perceptual_weight > 0``. Returns (total, {term: value})."""
    pix = (x_hat - x).abs().mean() if config.rec == "l1" else F.mse_loss(x_hat, x)
    parts = {config.rec: pix}
    total = pix
    if config.perceptual_weight > 0:
        if perceptual is None:
            raise ValueError(f"perceptual: config.perceptual_weight is {config.perceptual_weight}, so a perceptual "
                             "distance is needed, got None")
        p = perceptual(x_hat, x).mean()
        parts["lpips"] = p
        total = total + config.perceptual_weight * p
    return total, parts


class VQGANTrainer:
    r"""One VQGAN training step: autoencoder update, then discriminator update (two optimizers).

    Autoencoder loss: :math:`\mathcal{L}_{rec} + \mathcal{L}_{codebook} + \beta\,\mathcal{L}_{commit} + \lambda\,
    \mathcal{L}_{GAN}` with :math:`\mathcal{L}_{rec} = |x - \hat x|_1` (or squared) + w_p LPIPS(x, x̂).
    Before ``disc_start`` the discriminator is off: lambda = 0 and D is not updated, so the autoencoder first
    learns to reconstruct (a discriminator facing blobs wins at once and its gradients say little about detail).

    ``autoencoder`` needs ``objective(x, reconstruction)`` (the VQ objective, :meth:`course_lib.nets.VQVAE.objective`)
    and ``last_layer()`` (e.g. :class:`course_lib.nets.VQVAE`); ``perceptual`` is any callable (x_hat, x) -> (N,)
    distances such as :class:`course_lib.perceptual.LPIPS`; its parameters are never updated here.
    """

    def __init__(self, autoencoder: nn.Module, config: VQGANLossConfig, discriminator: nn.Module | None = None,
                 perceptual=None, lr: float = 1e-3):
        if config.rec not in ("l1", "l2"):
            raise ValueError(f"config.rec: expected 'l1' or 'l2', got {config.rec!r}")
        if config.d_loss not in ("hinge", "vanilla"):
            raise ValueError(f"config.d_loss: expected 'hinge' or 'vanilla', got {config.d_loss!r}")
        if config.gan and discriminator is None:
            raise ValueError("discriminator: config.gan is True, so a discriminator is needed, got None")
        if config.perceptual_weight > 0 and perceptual is None:
            raise ValueError(f"perceptual: config.perceptual_weight is {config.perceptual_weight}, so a perceptual "
                             "distance is needed, got None")
        self.ae, self.disc, self.perceptual, self.config = autoencoder, discriminator, perceptual, config
        if perceptual is not None and isinstance(perceptual, nn.Module):
            perceptual.requires_grad_(False).eval()
        self.opt_ae = torch.optim.Adam(autoencoder.parameters(), lr=lr, betas=(0.5, 0.9))
        self.opt_d = (torch.optim.Adam(discriminator.parameters(), lr=config.d_lr, betas=(0.5, 0.9))
                      if config.gan else None)
        self.step_count = 0

    def disc_active(self, step: int | None = None) -> bool:
        step = self.step_count if step is None else step
        return self.config.gan and step >= self.config.disc_start

    def reconstruction_loss(self, x_hat, x):
        """:func:`reconstruction_loss` with this trainer's config and perceptual distance; returns (total, parts)."""
        return reconstruction_loss(x_hat, x, self.config, self.perceptual)

    def autoencoder_step(self, x: torch.Tensor, lr: float | None = None):
        r"""Update E, G and the codebook on VQGAN eq. 4's :math:`\mathcal L_{VQ} = \mathcal L_{rec} + \|\mathrm{sg}[E(x)]
        - z_q\|_2^2 + \beta\|\mathrm{sg}[z_q] - E(x)\|_2^2` plus :math:`\lambda\,\mathcal L_{GAN}` once the discriminator
        is on (never D, never the perceptual net); returns (x_hat detached, logs)."""
        cfg, active = self.config, self.disc_active()
        if lr is not None:
            for g in self.opt_ae.param_groups:
                g["lr"] = lr
        self.ae.train()
        vq = self.ae.objective(x, self.reconstruction_loss)  # L_VQ, the VQ-VAE objective with VQGAN's L_rec
        loss, rec, idx, x_hat = vq.loss, vq.reconstruction, vq.indices, vq.x_hat
        logs = {k: float(v.detach()) for k, v in vq.parts.items()}
        if cfg.gan:
            self.disc.requires_grad_(False)  # D is a fixed critic here: no gradients accumulate on it
            g_loss = generator_loss(self.disc(x_hat))
            if active:
                lam, rn, gn = adaptive_weight(rec, g_loss, self.ae.last_layer(), cfg.delta, cfg.max_weight,
                                              return_norms=True)
                lam = lam * cfg.disc_weight
                logs.update(rec_grad_norm=float(rn), gan_grad_norm=float(gn))
            else:  # warm-up: the discriminator is off, lambda = 0
                lam = torch.zeros((), device=x.device)
            loss = loss + lam * g_loss
            logs.update(g_loss=float(g_loss.detach()), lambda_=float(lam))
            self.disc.requires_grad_(True)
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.ae.parameters(), 1.0)
        self.opt_ae.step()
        logs["loss"] = float(loss.detach())
        logs["indices"] = idx.detach()
        return x_hat.detach(), logs

    def discriminator_step(self, x: torch.Tensor, x_hat: torch.Tensor) -> dict:
        """Update D only, on real ``x`` against reconstructions ``x_hat`` (detached)."""
        real, fake = self.disc(x), self.disc(x_hat.detach())
        d_loss = (hinge_d_loss if self.config.d_loss == "hinge" else vanilla_d_loss)(real, fake)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        return {"d_loss": float(d_loss.detach()), "logits_real": float(real.mean().detach()),
                "logits_fake": float(fake.mean().detach())}

    def step(self, x: torch.Tensor, lr: float | None = None) -> dict:
        r"""One step of VQGAN eq. 6, :math:`\mathcal Q^* = \arg\min_{E,G,Z}\max_D \mathbb E[\mathcal L_{VQ} + \lambda
        \mathcal L_{GAN}]`: one autoencoder update (the min), then, once the discriminator is on, one discriminator
        update (the max); returns the logs."""
        active = self.disc_active()
        x_hat, logs = self.autoencoder_step(x, lr)
        if active:
            logs.update(self.discriminator_step(x, x_hat))
        self.step_count += 1
        return logs
