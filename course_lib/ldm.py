r"""Latent Diffusion (Rombach et al. 2022): diffusion in an autoencoder's latent space, conditioned by cross-attention.

.. math:: L_{LDM} = \mathbb{E}_{\mathcal{E}(x), y, \epsilon \sim \mathcal{N}(0, 1), t}
          \big[\|\epsilon - \epsilon_\theta(z_t, t, \tau_\theta(y))\|_2^2\big]

:math:`z_0 = s\,\mathcal E(x)` are the autoencoder's latents times a scale factor s (chosen so that they have unit
standard deviation, like the noise the forward process adds); :math:`\tau_\theta` encodes the caption and
:math:`\epsilon_\theta` is a :class:`course_lib.nets.CaptionUNet`. Sampling runs DDIM (notebook 01) in latent space
and decodes once at the end. With ``autoencoder=None`` the same pipeline is a pixel-space model (s = 1, identity
encoder and decoder): notebook 06 trains one of each on the same data and compares them.
"""
from __future__ import annotations

import math

import torch
from einops import rearrange
from torch.nn import functional as F

from . import checkpoints
from ._checks import check_positive_int, check_tensor
from .attention import AttentionRecorder
from .diffusion import ddim_sample
from .guidance import cfg_eps_fn, check_scale
from .schedules import make_alphas_cumprod, timestep_subsequence

__all__ = ["latent_scale", "LatentDiffusion", "sample_images", "attention_on_object"]


@torch.no_grad()
def latent_scale(autoencoder, images: torch.Tensor) -> float:
    r"""LDM's scale factor :math:`s = 1 / \mathrm{std}(\mathcal E(x))` over ``images`` (pre-quantization latents)."""
    check_tensor(images, "images", ndim=4)
    return float(1.0 / autoencoder.encode(images).flatten().std())


class LatentDiffusion:
    """Autoencoder + scale factor + caption-conditioned denoiser: encode, decode, guided DDIM sampling."""

    def __init__(self, unet, autoencoder=None, scale: float = 1.0, alphas_cumprod=None, image_size: int = 32):
        self.unet, self.autoencoder, self.scale = unet, autoencoder, float(scale)
        self.alphas_cumprod = make_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod
        self.image_size = check_positive_int(image_size, "image_size", minimum=8)  # the images' side in pixels

    @classmethod
    def from_shipped(cls, name: str, device=None, source=None) -> "LatentDiffusion":
        """The model ``name`` with its autoencoder and scale factor, as recorded in its manifest entry; ``source`` as
        for :func:`course_lib.checkpoints.load` (the autoencoder comes from the same folder if it is there, else
        as ``use_retrained`` says, and must be the one the denoiser was trained on)."""
        folder = checkpoints.weights_folder(name, source)
        e = checkpoints.entry(name, folder)
        unet = checkpoints.load(name, device=device, source=folder)
        ae = (checkpoints.load(e["autoencoder"], device=device, source=checkpoints.parent_folder(e["autoencoder"], folder))
              if e.get("autoencoder") else None)
        return cls(unet, ae, e.get("latent_scale", 1.0), image_size=e.get("image_size", 32))

    @property
    def latent_shape(self) -> tuple:
        """(C, H, W) of what the denoiser sees for an ``image_size`` image (the image itself in pixel space)."""
        c, side = self.unet.config.in_channels, self.image_size
        if self.autoencoder is None:
            return (c, side, side)
        f = 2 ** len(self.autoencoder.config.channel_mults)
        return (c, side // f, side // f)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        r""":math:`z = s\,\mathcal E(x)`: images (N, 3, 32, 32) in [-1, 1] -> scaled latents."""
        check_tensor(images, "images", ndim=4)
        return images if self.autoencoder is None else self.scale * self.autoencoder.encode(images)

    def _check_sampling(self, steps, guidance_scale) -> None:
        check_positive_int(steps, "steps")
        if steps > len(self.alphas_cumprod):
            raise ValueError(f"steps: expected at most {len(self.alphas_cumprod)} (the schedule's T), got {steps}")
        check_scale(guidance_scale, "guidance_scale")

    @property
    def class_conditional(self) -> bool:
        """Whether the denoiser is conditioned on class labels (a :class:`course_lib.nets.DiT` with ``num_classes``)
        rather than on caption ids."""
        return getattr(self.unet.config, "num_classes", None) is not None

    def condition_of(self, batch) -> torch.Tensor:
        """What the denoiser is conditioned on for a :func:`course_lib.data.generate_shapes` batch: its shape labels
        (the first object's) for a class-conditional denoiser, else its caption ids."""
        return batch.attributes["shape"][:, 0] if self.class_conditional else batch.tokens

    def check_condition(self, cond) -> torch.Tensor:
        """Caption ids (:meth:`check_tokens`) or, for a class-conditional denoiser, labels (N,) long in
        [0, num_classes): checked before guidance doubles the batch."""
        if not self.class_conditional:
            return self.check_tokens(cond)
        n = self.unet.config.num_classes
        check_tensor(cond, "labels")
        if cond.is_floating_point() or cond.dtype == torch.bool or cond.ndim != 1:
            raise ValueError(f"labels: expected (N,) long class labels (one per sample), got {cond.dtype} "
                             f"{tuple(cond.shape)}")
        if int(cond.min()) < 0 or int(cond.max()) >= n:
            raise ValueError(f"labels: expected labels in [0, {n}) (course_lib.data.SHAPES' indices), got "
                             f"{int(cond.min())}..{int(cond.max())}")
        return cond

    def check_tokens(self, tokens) -> torch.Tensor:
        """Caption ids as the caller passed them, (B, L) long in [0, vocab): checked here, before classifier-free
        guidance doubles the batch, so a message shows the shape that was given."""
        cfg = self.unet.config
        check_tensor(tokens, "tokens")
        if tokens.is_floating_point() or tokens.dtype == torch.bool:
            raise TypeError(f"tokens: expected long caption ids (course_lib.data.encode_caption), got {tokens.dtype}")
        if tokens.ndim != 2 or tokens.shape[1] != cfg.caption_length:
            raise ValueError(f"tokens: expected shape (B, {cfg.caption_length}) (one caption per row; a single "
                             f"caption is tokens[None]), got {tuple(tokens.shape)}")
        if int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size:
            raise ValueError(f"tokens: expected ids in [0, {cfg.vocab_size}), got "
                             f"{int(tokens.min())}..{int(tokens.max())}")
        return tokens

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\hat x = \mathcal D(z / s)`; a VQ autoencoder quantizes first (LDM's VQ-regularised decoder).

        The images are clamped to the data range [-1, 1] (as every LDM decoder's output is for display): a huge
        guidance scale gives saturated images, not values outside [-1, 1]."""
        check_tensor(z, "z", ndim=4, floating=True)
        c = self.latent_shape[0]
        if z.shape[1] != c:
            raise ValueError(f"z: expected latents of shape (N, {c}, h, w) (scaled, as sample returns them), got "
                             f"{tuple(z.shape)}")
        if self.autoencoder is None:
            return z.clamp(-1, 1)
        z_q, _, _ = self.autoencoder.quantize(z / self.scale)
        return self.autoencoder.decode(z_q).clamp(-1, 1)

    def guided_eps(self, guidance_scale: float, tokens: torch.Tensor):
        """eps_fn(z_t, t) for DDIM: classifier-free guidance (:func:`course_lib.guidance.cfg_eps_fn`; the empty
        caption is the unconditional branch)."""
        return cfg_eps_fn(self.unet, tokens, guidance_scale)

    @torch.no_grad()
    def sample(self, tokens: torch.Tensor, steps: int = 20, guidance_scale: float = 3.0, eta: float = 0.0,
               generator: torch.Generator | None = None, z_T: torch.Tensor | None = None,
               return_latents: bool = False):
        """Images (N, 3, image_size, image_size) for caption ids (N, L) (or class labels (N,) for a class-conditional
        denoiser): DDIM with ``steps`` uniform steps in the denoiser's space."""
        self._check_sampling(steps, guidance_scale)
        device = next(self.unet.parameters()).device
        tokens = self.check_condition(tokens).to(device)
        if z_T is None:
            z_T = torch.randn((tokens.shape[0], *self.latent_shape), generator=generator).to(device)
        check_tensor(z_T, "z_T", floating=True)
        if tuple(z_T.shape) != (tokens.shape[0], *self.latent_shape):
            raise ValueError(f"z_T: expected shape {(tokens.shape[0], *self.latent_shape)} (one latent per condition), "
                             f"got {tuple(z_T.shape)}")
        ts = timestep_subsequence(len(self.alphas_cumprod), steps, "uniform")
        z0 = ddim_sample(self.guided_eps(guidance_scale, tokens), z_T, self.alphas_cumprod, ts, eta=eta,
                         generator=generator)
        images = self.decode(z0)
        return (images, z0) if return_latents else images

    @torch.no_grad()
    def sample_with_attention(self, tokens: torch.Tensor, steps: int = 20, guidance_scale: float = 3.0,
                              generator: torch.Generator | None = None, z_T: torch.Tensor | None = None):
        """:meth:`sample`, also recording every cross-attention layer's weights at every step (conditional branch,
        averaged over heads): returns (images, {layer: (N, steps, M, h, w)}), M caption positions (start token
        first), h x w that layer's resolution. For the swapped layer the weights are per caption token over the
        pixels, so the same layout holds."""
        self._check_sampling(steps, guidance_scale)
        device = next(self.unet.parameters()).device
        tokens = self.check_tokens(tokens).to(device)
        recorder = AttentionRecorder()
        if z_T is None:
            z_T = torch.randn((tokens.shape[0], *self.latent_shape), generator=generator).to(device)
        ts = timestep_subsequence(len(self.alphas_cumprod), steps, "uniform")
        eps_fn = cfg_eps_fn(self.unet, tokens, guidance_scale, recorder=recorder)
        z0 = ddim_sample(eps_fn, z_T, self.alphas_cumprod, ts, generator=generator)
        maps = {}
        for name, per_step in recorder.maps.items():
            a = torch.stack(per_step, dim=1).mean(2)  # (N, steps, heads, ., .) -> mean over heads
            if self.unet.config.attention == "standard":
                a = a.transpose(-1, -2)  # (N, steps, HW, M) -> (N, steps, M, HW)
            side = int(math.isqrt(a.shape[-1]))
            maps[name] = rearrange(a, "n s m (h w) -> n s m h w", h=side, w=side).cpu()
        return self.decode(z0), maps


@torch.no_grad()
def sample_images(denoiser, autoencoder, scale: float, tokens: torch.Tensor, z_T: torch.Tensor, alphas_cumprod,
                  steps: int, guidance_scale: float) -> torch.Tensor:
    r"""The pipeline's sampling from its parts, as one function (notebook 10's Exercise 10.5): DDIM (eta = 0) from
    ``z_T`` along :func:`~course_lib.schedules.timestep_subsequence` with classifier-free guidance
    :math:`\hat\epsilon = \epsilon_u + w(\epsilon_c - \epsilon_u)`, then :math:`x = \mathcal D(q(z_0 / s))` in
    [-1, 1]: :meth:`LatentDiffusion.sample`."""
    side = z_T.shape[-1] * 2 ** len(autoencoder.config.channel_mults) if autoencoder is not None else z_T.shape[-1]
    pipe = LatentDiffusion(denoiser, autoencoder, scale, alphas_cumprod, image_size=side)
    return pipe.sample(tokens, steps, guidance_scale, z_T=z_T)


def attention_on_object(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    r"""How much one caption token's attention falls on the object, relative to chance:
    :math:`\sum_{hw \in \text{object}} a_{hw} / (\text{object area} / \text{image area})` per image, with the
    mask average-pooled to the map's resolution. 1 = no better than spread evenly; higher = on the object.

    maps: (N, h, w) attention weights of one token (each map sums to 1); masks: (N, H, W) bool object masks.
    """
    check_tensor(maps, "maps", ndim=3)
    if masks.shape[0] != maps.shape[0]:
        raise ValueError(f"masks: expected {maps.shape[0]} masks like maps, got {tuple(masks.shape)}")
    m = F.adaptive_avg_pool2d(masks.float()[:, None], maps.shape[-2:])[:, 0]
    area = m.mean(dim=(1, 2)).clamp_min(1e-6)
    return (maps * m).sum(dim=(1, 2)) / maps.sum(dim=(1, 2)).clamp_min(1e-12) / area
