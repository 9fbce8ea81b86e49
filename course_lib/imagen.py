r"""Imagen (Saharia et al., NeurIPS 2022): the pieces of its pipeline that are equations.

- **Thresholding** of the predicted :math:`\hat x_0` at every sampling step. Static: :math:`\hat x_0 \leftarrow
  \mathrm{clip}(\hat x_0, -1, 1)`. Dynamic (the paper's): per sample, :math:`s` = the ``percentile`` of
  :math:`|\hat x_0|` over all its pixels and channels, :math:`s \leftarrow \max(s, 1)`,

  .. math:: \hat x_0 \leftarrow \mathrm{clip}(\hat x_0, -s, s) / s

  so a sample whose values stay in [-1, 1] is untouched, and one pushed out by a large guidance weight is pulled
  back by shrinking instead of being flattened against ±1.
- **Noise-conditioning augmentation** of a cascade's low-resolution input: the forward process at a level
  :math:`u \in [0, 1]`, :math:`\tilde x = \sqrt{\bar\alpha(u)}\,x + \sqrt{1 - \bar\alpha(u)}\,\epsilon`, with the
  super-resolution model told :math:`u`.
- **The guidance convention**: :math:`\tilde\epsilon = w\,\epsilon(z, c) + (1 - w)\,\epsilon(z)`, w = 1 no guidance.
  It is notebook 02's scale s (:func:`course_lib.guidance.cfg_eps`) under another letter: :func:`guidance_scale`.
"""
from __future__ import annotations

import math

import torch

from ._checks import check_range, check_tensor
from .guidance import cfg_eps, check_scale, tile_for_batch

__all__ = ["static_threshold", "dynamic_threshold", "dynamic_threshold_s", "THRESHOLDS", "threshold_fn",
           "augmentation_alpha_bar", "noise_augment", "GUIDANCE_CONVENTIONS", "guidance_scale", "imagen_guided_eps", "upsample", "downsample",
           "sr_condition", "LowResConditioned", "ImagenCascade", "saturation_fraction"]

THRESHOLDS = (None, "static", "dynamic")


def static_threshold(x0: torch.Tensor) -> torch.Tensor:
    r"""Static thresholding: :math:`\hat x_0 \leftarrow \mathrm{clip}(\hat x_0, -1, 1)` (the data range)."""
    check_tensor(x0, "x0", floating=True)
    return x0.clamp(-1.0, 1.0)


def dynamic_threshold(x0: torch.Tensor, percentile: float = 0.995) -> torch.Tensor:
    r"""Imagen's dynamic thresholding, per sample: :math:`s = \mathrm{quantile}(|\hat x_0|, p)` over all of the
    sample's pixels and channels (``torch.quantile``'s linear interpolation), :math:`s \leftarrow \max(s, 1)`,
    :math:`\hat x_0 \leftarrow \mathrm{clip}(\hat x_0, -s, s) / s`. x0: (N, ...); percentile p in (0, 1]
    (the paper's 99.5th is 0.995; diffusers' ``dynamic_thresholding_ratio``)."""
    s = dynamic_threshold_s(x0, percentile).view(-1, *([1] * (x0.ndim - 1)))
    # 3. clip to [-s, s], then divide by s: back into [-1, 1]
    return torch.maximum(torch.minimum(x0, s), -s) / s


def dynamic_threshold_s(x0: torch.Tensor, percentile: float = 0.995) -> torch.Tensor:
    r"""The (N,) thresholds of :func:`dynamic_threshold`: :math:`s = \max(\mathrm{quantile}(|\hat x_0|, p), 1)` per
    sample."""
    check_tensor(x0, "x0", floating=True)
    if x0.ndim < 2:
        raise ValueError(f"x0: expected a batch (N, ...) of predicted images, got shape {tuple(x0.shape)}")
    percentile = _check_percentile(percentile)
    # 1. s: the p-th quantile of |x0| per sample, over every pixel and channel
    s = torch.quantile(x0.abs().flatten(1).float(), percentile, dim=1).to(x0.dtype)
    # 2. s >= 1: a sample already inside [-1, 1] is left as it is
    return s.clamp_min(1.0)


def _check_percentile(p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"percentile: expected a number in (0, 1] such as 0.995, got {type(p).__name__} {p!r}")
    return float(check_range(p, "percentile", 0.0, 1.0, low_open=True))


def threshold_fn(threshold, percentile: float = 0.995):
    """The x0 -> x0 function a sampler applies at every step for ``threshold`` (None, "static" or "dynamic"), or
    None for no thresholding."""
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold: expected one of {THRESHOLDS}, got {threshold!r}")
    if threshold == "static":
        return static_threshold
    if threshold == "dynamic":
        percentile = _check_percentile(percentile)
        return lambda x0: dynamic_threshold(x0, percentile)
    return None


def augmentation_alpha_bar(aug_level) -> torch.Tensor:
    r""":math:`\bar\alpha(u) = \cos^2(\pi u / 2)`: the signal kept at augmentation level u (1 at u = 0, no
    corruption; 0 at u = 1, pure noise). A continuous cosine schedule (Nichol & Dhariwal without their offset), so
    that level 0 is exactly the clean image; Imagen uses its own continuous schedule, the idea is the same."""
    u = torch.as_tensor(aug_level, dtype=torch.float64)
    if u.is_complex() or not bool(((u >= 0) & (u <= 1)).all()):
        raise ValueError(f"aug_level: expected levels in [0, 1] (0 = no corruption), got {u.flatten()[:4].tolist()}")
    return torch.cos(math.pi / 2 * u) ** 2


def noise_augment(low_res: torch.Tensor, aug_level, generator: torch.Generator | None = None,
                  noise: torch.Tensor | None = None):
    r"""Noise-conditioning augmentation: :math:`\tilde x = \sqrt{\bar\alpha(u)}\,x + \sqrt{1-\bar\alpha(u)}\,\epsilon`
    (:func:`augmentation_alpha_bar`). low_res: (N, C, h, w); aug_level: a number or (N,) levels in [0, 1].
    Returns (the corrupted images, the (N,) levels the super-resolution model is conditioned on). Level 0 returns
    the input unchanged."""
    check_tensor(low_res, "low_res", ndim=4, floating=True)
    n = low_res.shape[0]
    u = torch.as_tensor(aug_level, dtype=torch.float32)
    if u.ndim == 0:
        u = u.expand(n)
    if u.shape != (n,):
        raise ValueError(f"aug_level: expected a number or one level per image ({n},), got shape {tuple(u.shape)}")
    a = augmentation_alpha_bar(u).to(low_res.device, low_res.dtype).view(n, 1, 1, 1)
    if noise is None:
        noise = torch.randn(low_res.shape, generator=generator).to(low_res.device, low_res.dtype)
    elif noise.shape != low_res.shape:
        raise ValueError(f"noise: expected the shape of low_res {tuple(low_res.shape)}, got {tuple(noise.shape)}")
    # at u = 0: sqrt(1) x + sqrt(0) eps = x exactly (the noise is finite)
    return a.sqrt() * low_res + (1 - a).sqrt() * noise, u.to(low_res.device)


# The three ways papers write classifier-free guidance, as the course's scale s of
# eps_u + s (eps_c - eps_u) (course_lib.guidance.cfg_eps): name -> (formula, s from the paper's number)
GUIDANCE_CONVENTIONS = {
    "course": ("eps_u + s (eps_c - eps_u)", lambda v: v),
    "imagen": ("w eps_c + (1 - w) eps_u", lambda w: w),            # Saharia et al.: w = 1 is no guidance
    "ho_salimans": ("(1 + w) eps_c - w eps_u", lambda w: 1.0 + w),  # Ho & Salimans: w = 0 is no guidance
}


def guidance_scale(value: float, convention: str) -> float:
    """The course's scale s for a guidance weight written in ``convention`` ("course", "imagen", "ho_salimans")."""
    if convention not in GUIDANCE_CONVENTIONS:
        raise ValueError(f"convention: expected one of {tuple(GUIDANCE_CONVENTIONS)}, got {convention!r}")
    return GUIDANCE_CONVENTIONS[convention][1](check_scale(value, "value"))


def imagen_guided_eps(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float) -> torch.Tensor:
    r"""Imagen's :math:`\tilde\epsilon = w\,\epsilon(z, c) + (1 - w)\,\epsilon(z)`, computed by the course's one CFG
    function (:func:`course_lib.guidance.cfg_eps`) at s = w."""
    return cfg_eps(eps_uncond, eps_cond, guidance_scale(w, "imagen"))


def upsample(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """The super-resolution model's view of the low-resolution image: bilinear upsampling to ``size`` (Imagen
    conditions its super-resolution U-Nets on the upsampled image, stacked with the noisy one)."""
    check_tensor(low_res, "low_res", ndim=4, floating=True)
    return torch.nn.functional.interpolate(low_res, size=(size, size), mode="bilinear", align_corners=False)


def downsample(images: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """The low-resolution view of real images a super-resolution model trains on: ``factor`` x ``factor`` average
    pooling (32x32 -> 16x16 shapes: the same scene as ``generate_shapes`` renders at 16x16, mean |difference| 0.002)."""
    check_tensor(images, "images", ndim=4, floating=True)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1 or images.shape[-1] % factor:
        raise ValueError(f"factor: expected a positive integer dividing the image side {images.shape[-1]}, got {factor!r}")
    return torch.nn.functional.avg_pool2d(images, factor)


def sr_condition(low_res: torch.Tensor, size: int, aug_level, generator: torch.Generator | None = None):
    """What a super-resolution model is conditioned on, in training and in sampling alike: the low-resolution image
    upsampled to ``size`` (:func:`upsample`), then corrupted at ``aug_level`` (:func:`noise_augment`; a number or
    (N,) levels). Returns (the upsampled, augmented images (N, C, size, size), their (N,) levels)."""
    return noise_augment(upsample(low_res, size), aug_level, generator=generator)


class LowResConditioned(torch.nn.Module):
    """A super-resolution UNet with its low-resolution condition bound: ``forward(x_t, t, tokens=None)`` runs the UNet
    on [x_t, upsampled low-res] stacked on the channels, told the augmentation level, as every sampler and
    :func:`~course_lib.diffusion.diffusion_loss` call a denoiser (guidance doubles the batch: the condition is tiled
    to match). ``low_res_up`` (N, C, H, W) is already upsampled and augmented; ``levels`` (N,) its levels."""

    def __init__(self, unet, low_res_up: torch.Tensor, levels: torch.Tensor):
        super().__init__()
        cfg = unet.config
        if not getattr(cfg, "level_embedding", False) or cfg.in_channels != 2 * (cfg.out_channels or 0):
            raise ValueError("unet: expected a super-resolution CaptionUNet (in_channels = 2 x out_channels, "
                             f"level_embedding=True), got in {cfg.in_channels}, out {cfg.out_channels}, "
                             f"level_embedding {getattr(cfg, 'level_embedding', None)}")
        check_tensor(low_res_up, "low_res_up", ndim=4, floating=True)
        if low_res_up.shape[1] != cfg.out_channels or levels.shape != (low_res_up.shape[0],):
            raise ValueError(f"low_res_up, levels: expected (N, {cfg.out_channels}, H, W) and (N,), got "
                             f"{tuple(low_res_up.shape)} and {tuple(levels.shape)}")
        self.unet, self.low_res_up, self.levels = unet, low_res_up, levels

    @property
    def config(self):
        return self.unet.config

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        return self.unet.null_condition(n, device)

    def forward(self, x_t, t, tokens=None):
        rows = x_t.shape[0]
        low = tile_for_batch(self.low_res_up.to(x_t.device), rows, "low-resolution images")
        level = tile_for_batch(self.levels.to(x_t.device), rows, "levels")
        return self.unet(torch.cat([x_t, low], dim=1), t, tokens, level=level)


class ImagenCascade:
    """Imagen's pipeline at toy scale: caption ids -> a caption-conditioned base model at ``base_size`` (pixel space)
    -> a super-resolution model to ``size``, conditioned on the upsampled base sample after noise-conditioning
    augmentation at ``aug_level``. Both stages: DDIM with classifier-free guidance in Imagen's convention
    (:func:`guidance_scale`) and optional thresholding of the predicted x0."""

    def __init__(self, base, sr, alphas_cumprod=None, base_size: int = 16, size: int = 32):
        from .schedules import make_alphas_cumprod

        self.base, self.sr, self.base_size, self.size = base, sr, base_size, size
        self.alphas_cumprod = make_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod

    def _ddim(self, model, tokens, x_T, steps, w, threshold, percentile, generator, on_x0=None):
        from .diffusion import ddim_sample, eps_fn_from_v
        from .guidance import cfg_eps_fn
        from .schedules import timestep_subsequence

        ts = timestep_subsequence(len(self.alphas_cumprod), steps, "uniform")
        eps_fn = cfg_eps_fn(model, tokens, guidance_scale(w, "imagen"))
        if getattr(model.config, "prediction", "eps") == "v":  # a v-predictor (the super-resolution models here)
            eps_fn = eps_fn_from_v(eps_fn, self.alphas_cumprod)
        return ddim_sample(eps_fn, x_T, self.alphas_cumprod, ts, generator=generator, threshold=threshold,
                           percentile=percentile, on_x0=on_x0)

    @torch.no_grad()
    def sample_base(self, tokens, steps: int = 20, w: float = 3.0, threshold=None, percentile: float = 0.995,
                    generator=None, x_T=None, on_x0=None) -> torch.Tensor:
        """(N, 3, base_size, base_size) images for caption ids (N, L); ``on_x0`` watches every step's predicted x0
        (:func:`~course_lib.diffusion.ddim_sample`)."""
        if x_T is None:
            x_T = torch.randn((tokens.shape[0], 3, self.base_size, self.base_size), generator=generator)
        return self._ddim(self.base, tokens, x_T, steps, w, threshold, percentile, generator, on_x0).clamp(-1, 1)

    @torch.no_grad()
    def super_resolve(self, low_res, tokens, aug_level: float = 0.2, steps: int = 20, w: float = 1.0,
                      threshold=None, percentile: float = 0.995, generator=None, x_T=None) -> torch.Tensor:
        """(N, 3, size, size) from low-resolution images (N, 3, base_size, base_size): upsample, augment at
        ``aug_level`` (the level the model is told), then DDIM."""
        up, levels = sr_condition(low_res, self.size, aug_level, generator)
        if x_T is None:
            x_T = torch.randn((low_res.shape[0], 3, self.size, self.size), generator=generator)
        model = LowResConditioned(self.sr, up, levels)
        return self._ddim(model, tokens, x_T, steps, w, threshold, percentile, generator).clamp(-1, 1)

    def sample(self, tokens, aug_level: float = 0.2, generator=None, **kwargs) -> tuple:
        """(base samples, super-resolved samples) for caption ids: the cascade end to end."""
        low = self.sample_base(tokens, generator=generator, **kwargs)
        return low, self.super_resolve(low, tokens, aug_level, generator=generator, **kwargs)


def saturation_fraction(images: torch.Tensor, level: float = 0.98, background: float = -0.5) -> torch.Tensor:
    r"""Per image, the share of its object's channel values at the ends of the range, :math:`|x| \ge` ``level``: the
    oversaturation that static clipping at a large guidance weight is blamed for. Only foreground pixels count (a
    pixel whose brightest channel exceeds ``background``): the shapes' black background sits at -1 by design and
    would swamp the number. (N,); an image with no foreground pixel gives 0. Real shapes average 0.02 at 16x16 and
    0.04 at 32x32 (1000 images; blue's channel at 1.0 is the only saturated colour, anti-aliased edges dilute it)."""
    check_tensor(images, "images", ndim=4, floating=True)
    fg = (images.amax(dim=1, keepdim=True) > background).expand_as(images)
    hits = ((images.abs() >= level) & fg).flatten(1).sum(1).double()
    return hits / fg.flatten(1).sum(1).clamp_min(1).double()
