r"""ControlNet on the frozen latent diffusion model of notebook 06: the controlled forward pass, hints drawn from the
shapes world's own masks, and condition fidelity measured exactly.

The paper's eq. 2 for one locked block, applied to the whole encoder of the frozen ``shapes_ldm32``:

.. math:: y_c = \mathcal F(x;\Theta) + \mathcal Z\big(\mathcal F(x + \mathcal Z(c;\Theta_{z1});\Theta_c);\Theta_{z2}\big)

The network :math:`\mathcal F(\cdot;\Theta_c)` with its connectors is :class:`course_lib.nets.ControlNet`;
:class:`ControlledUNet` adds K of them to the frozen base, each scaled by its conditioning scale :math:`s_k` (the
paper composes several controls by adding their outputs):

.. math:: r = \sum_k s_k\,\mathrm{ControlNet}_k(z_t, t, c_k, y),\qquad
          \hat\epsilon = \epsilon_\theta(z_t, t, \tau(y);\ \text{skips} + r_\text{down},\ \text{middle} + r_\text{mid})

Training is L_LDM (:func:`course_lib.diffusion.diffusion_loss`) with only the ControlNet's parameters free and half
the captions replaced by the empty one (the paper's 50%).
"""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_tensor
from .data import COLOURS, SHAPES, VOCAB
from .guidance import tile_for_batch
from .nets.controlnet import CONNECTOR_INITS, VARIANTS, ControlNet, ControlNetConfig, HintEncoder, zero_conv
from .nets.unet import CaptionUNet

__all__ = ["zero_conv", "HintEncoder", "ControlNet", "ControlNetConfig", "ControlledUNet", "VARIANTS",
           "CONNECTOR_INITS", "HINT_KINDS", "make_hint", "keep_words", "object_mask", "mask_iou", "ControlPipeline",
           "control_fidelity", "held_out_controls", "evaluate_controlnet"]

HINT_KINDS = ("mask", "edges")


class ControlledUNet(nn.Module):
    r"""The frozen ``base`` and its ControlNets: ``forward(x_t, t, hints, context=None)`` with ``hints`` a list (one
    hint per ControlNet, (B, 1, 32, 32) each) and ``context`` the base's caption ids, passed to the base and to
    every ControlNet. Residuals are scaled by ``scales`` (diffusers' ``conditioning_scale``, one per ControlNet;
    settable as ``.scales``) and summed; a ControlNet at scale 0 is not evaluated, so all scales 0 is the base
    exactly. The base is frozen here (``requires_grad_(False)``); the ControlNets are not."""

    def __init__(self, base: CaptionUNet, controlnets, scales=None):
        super().__init__()
        if not isinstance(base, CaptionUNet):
            raise TypeError(f"base: expected the CaptionUNet the ControlNets were copied from, got {type(base).__name__}")
        controlnets = [controlnets] if isinstance(controlnets, ControlNet) else list(controlnets)
        bad = [type(c).__name__ for c in controlnets if not isinstance(c, ControlNet)]
        if bad:
            raise TypeError(f"controlnets: expected ControlNet modules, got {bad}")
        for i, cn in enumerate(controlnets):
            if cn.config.base != asdict(base.config):
                raise ValueError(f"controlnets[{i}]: it was copied from a base of config {cn.config.base}, not from "
                                 f"one like this base ({asdict(base.config)})")
        self.base = base.requires_grad_(False)
        self.controlnets = nn.ModuleList(controlnets)
        self.scales = [1.0] * len(controlnets) if scales is None else scales

    @property
    def scales(self) -> list:
        return self._scales

    @scales.setter
    def scales(self, values) -> None:
        values = [values] if isinstance(values, (int, float)) and not isinstance(values, bool) else list(values)
        if len(values) != len(self.controlnets):
            raise ValueError(f"scales: expected one conditioning scale per ControlNet ({len(self.controlnets)}), got "
                             f"{len(values)}: {values}")
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf"):
                raise ValueError(f"scales: expected finite numbers (0 switches a ControlNet off), got {values}")
        self._scales = [float(v) for v in values]

    @property
    def config(self):
        """The base's config: what samplers (:class:`course_lib.ldm.LatentDiffusion`) read."""
        return self.base.config

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The base's empty caption: what caption dropout trains and guidance's unconditional branch passes."""
        return self.base.null_condition(n, device)

    def residuals(self, x_t, t, hints, context=None):
        r""":math:`\sum_k s_k\,\mathrm{ControlNet}_k(z_t, t, c_k, y)`: (down residuals, mid residual), or
        (None, None) when every scale is 0."""
        if not isinstance(hints, (list, tuple)) or len(hints) != len(self.controlnets):
            raise ValueError(f"hints: expected a list of {len(self.controlnets)} hint(s), one per ControlNet, got "
                             f"{type(hints).__name__}" + (f" of {len(hints)}" if isinstance(hints, (list, tuple)) else ""))
        down, mid = None, None
        for cn, hint, s in zip(self.controlnets, hints, self.scales):
            if s == 0.0:
                continue
            d, m = cn(x_t, t, hint, context)
            down = [s * r for r in d] if down is None else [a + s * r for a, r in zip(down, d)]
            mid = s * m if mid is None else mid + s * m
        return down, mid

    def forward(self, x_t, t, hints, context=None):
        down, mid = self.residuals(x_t, t, hints, context)
        return self.base(x_t, t, context, down_residuals=down, mid_residual=mid)

    def with_hints(self, hints) -> "HintedUNet":
        """This model with its hints bound: ``model(x_t, t, tokens)`` as every sampler and
        :func:`~course_lib.diffusion.diffusion_loss` call a denoiser (guidance doubles the batch: the hints are
        tiled to match)."""
        return HintedUNet(self, hints)


class HintedUNet(nn.Module):
    """A :class:`ControlledUNet` with fixed hints (N each): ``forward(x_t, t, tokens=None)`` for a batch of k*N rows
    (classifier-free guidance stacks [unconditional, conditional]), the hints repeated k times in the same order."""

    def __init__(self, controlled: ControlledUNet, hints):
        super().__init__()
        if not isinstance(hints, (list, tuple)) or not hints:
            raise ValueError(f"hints: expected a non-empty list of hints, got {type(hints).__name__}")
        self.controlled, self.hints = controlled, list(hints)

    @property
    def config(self):
        return self.controlled.base.config

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        return self.controlled.null_condition(n, device)

    def forward(self, x_t, t, tokens=None):
        hints = [tile_for_batch(h.to(x_t.device), x_t.shape[0], "hints") for h in self.hints]
        return self.controlled(x_t, t, hints, tokens)


def make_hint(masks: torch.Tensor, kind: str = "mask") -> torch.Tensor:
    r"""The control image of the shapes world: object masks (N, H, W) (``ShapesBatch.masks``, 0 = background) ->
    (N, 1, H, W) float in {0, 1}. ``kind="mask"``: 1 on the object; ``"edges"``: 1 on the object's boundary pixels
    (inside pixels with a 4-neighbour outside), the edge map the paper's Canny control stands for."""
    check_tensor(masks, "masks", ndim=3)
    if masks.is_floating_point():
        raise TypeError(f"masks: expected integer or bool object masks (ShapesBatch.masks), got {masks.dtype}")
    if kind not in HINT_KINDS:
        raise ValueError(f"kind: expected one of {HINT_KINDS}, got {kind!r}")
    inside = (masks > 0).float()[:, None]
    if kind == "mask":
        return inside
    # an inside pixel whose 4-neighbourhood leaves the object: 1 - erosion, erosion = min-pool over the cross
    padded = F.pad(inside, (1, 1, 1, 1), value=0.0)
    neighbours = torch.stack([padded[..., 1:-1, :-2], padded[..., 1:-1, 2:], padded[..., :-2, 1:-1],
                              padded[..., 2:, 1:-1]]).amin(0)
    return inside * (1 - neighbours)


_KEEP = {"colour": set(COLOURS), "shape": set(SHAPES)}


def keep_words(tokens: torch.Tensor, keep=("colour", "shape")) -> torch.Tensor:
    """Caption ids with every word but the ``keep`` kinds replaced by ``<pad>`` in place (each kept word stays at its
    slot, where the base saw it in training): "large red circle top left" -> "red circle". With a mask as the
    control, the caption says what, the mask where and how big."""
    check_tensor(tokens, "tokens", ndim=2)
    if tokens.is_floating_point():
        raise TypeError(f"tokens: expected long caption ids, got {tokens.dtype}")
    unknown = [k for k in keep if k not in _KEEP]
    if unknown:
        raise ValueError(f"keep: expected kinds from {tuple(_KEEP)}, got {unknown}")
    words = set().union(*(_KEEP[k] for k in keep)) if keep else set()
    ids = torch.tensor([i for i, w in enumerate(VOCAB) if w in words], dtype=torch.long)
    return torch.where(torch.isin(tokens, ids.to(tokens.device)), tokens, torch.zeros_like(tokens))


def object_mask(images: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    r"""Segment the shapes world exactly enough to score control: the background is black (-1 in every channel) and
    every colour has a channel at 0.6 or more, so a pixel is object where its brightest channel exceeds
    ``threshold`` (0: half way). images (N, 3, H, W) in [-1, 1] -> (N, H, W) bool."""
    check_tensor(images, "images", ndim=4, floating=True)
    if images.shape[1] != 3:
        raise ValueError(f"images: expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
    return images.amax(dim=1) > threshold


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Intersection over union per image, :math:`|A \cap B| / |A \cup B|` (1 where both are empty): (N, H, W) masks
    (bool, or anything > 0.5 counts as in) -> (N,)."""
    for name, m in (("pred", pred), ("target", target)):
        check_tensor(m, name, ndim=3)
    if pred.shape != target.shape:
        raise ValueError(f"pred, target: expected masks of the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    a, b = pred.bool() if pred.dtype == torch.bool else pred > 0.5, target.bool() if target.dtype == torch.bool else target > 0.5
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


class ControlPipeline:
    """Notebook 06's latent diffusion sampler with ControlNets in the loop: ``sample(hints, tokens)`` runs guided DDIM
    on :class:`ControlledUNet` with the hints bound (both guidance branches see the hint, as in diffusers) and
    decodes once. ``from_shipped(names)`` loads the ControlNets and the base, autoencoder and scale they were
    trained on."""

    def __init__(self, controlled: ControlledUNet, autoencoder, scale: float):
        if not isinstance(controlled, ControlledUNet):
            raise TypeError(f"controlled: expected a ControlledUNet, got {type(controlled).__name__}")
        self.controlled, self.autoencoder, self.scale = controlled, autoencoder, float(scale)

    @classmethod
    def from_shipped(cls, names, scales=None, device=None, source=None) -> "ControlPipeline":
        from . import checkpoints
        from .ldm import LatentDiffusion

        names = [names] if isinstance(names, str) else list(names)
        bases = {checkpoints.entry(n, checkpoints.weights_folder(n, source))["base"] for n in names}
        if len(bases) != 1:
            raise ValueError(f"names: expected ControlNets of one base, got bases {sorted(bases)}")
        ldm = LatentDiffusion.from_shipped(bases.pop(), device=device, source=source)
        cns = [checkpoints.load(n, device=device, source=source) for n in names]
        return cls(ControlledUNet(ldm.unet, cns, scales), ldm.autoencoder, ldm.scale)

    @property
    def scales(self) -> list:
        return self.controlled.scales

    @scales.setter
    def scales(self, values) -> None:
        self.controlled.scales = values

    @torch.no_grad()
    def sample(self, hints, tokens, steps: int = 20, guidance_scale: float = 3.0, generator=None, z_T=None,
               return_latents: bool = False):
        """Images (N, 3, 32, 32) for hints (a list, one (N, 1, 32, 32) hint per ControlNet) and caption ids (N, L)."""
        from .ldm import LatentDiffusion

        device = next(self.controlled.parameters()).device
        if not isinstance(hints, (list, tuple)) or len(hints) != len(self.controlled.controlnets):
            raise ValueError(f"hints: expected a list of {len(self.controlled.controlnets)} hint(s), one per "
                             f"ControlNet, got {type(hints).__name__}")
        for cn, h in zip(self.controlled.controlnets, hints):
            cn.check_hint(h, tokens.shape[0])
        pipe = LatentDiffusion(self.controlled.with_hints([h.to(device) for h in hints]), self.autoencoder,
                               self.scale)
        return pipe.sample(tokens, steps, guidance_scale, generator=generator, z_T=z_T, return_latents=return_latents)


@torch.no_grad()
def control_fidelity(images: torch.Tensor, masks: torch.Tensor, intervals: bool = True,
                     num_resamples: int = 200) -> dict:
    """How well generated ``images`` (N, 3, 32, 32) follow their mask hints (N, 32, 32): the mean IoU of
    :func:`object_mask` against the hint, and with ``intervals`` its 95% bootstrap interval over the images."""
    from .metrics import bootstrap_interval

    iou = mask_iou(object_mask(images.cpu()), masks.cpu() > 0)
    out = {"iou": round(float(iou.mean()), 4)}
    if intervals:
        iv = bootstrap_interval(lambda v: v.mean(), iou, num_resamples=num_resamples)
        out["iou_interval"] = [round(iv.low, 4), round(iv.high, 4)]
    return out


def held_out_controls(n: int = 256, hint: str = "mask", keep=("colour", "shape")):
    """The held-out hints the ControlNets are measured on: (ShapesBatch, hints (N, 1, 32, 32), captions with only
    the ``keep`` words)."""
    from .data import HELD_OUT_SEEDS, generate_shapes

    b = generate_shapes(n, 32, 1, seed=HELD_OUT_SEEDS["control_hints"])
    return b, make_hint(b.masks, hint), keep_words(b.tokens, keep)


@torch.no_grad()
def evaluate_controlnet(pipe: ControlPipeline, device=None, n: int = 256, steps: int = 20,
                        guidance_scale: float = 3.0, hint: str = "mask", intervals: bool = False,
                        samples_out: dict | None = None) -> dict:
    """The manifest's measurements of a one-ControlNet pipeline on n held-out hints: condition fidelity (IoU) with
    the colour-and-shape caption and with the empty caption (the paper's "no prompt"), caption following (shape and
    colour, the clean classifier) and FD to real images; same noise for both captions."""
    from . import checkpoints
    from .data import HELD_OUT_SEEDS, generate_shapes
    from .metrics import caption_following, image_quality

    b, hints, tokens = held_out_controls(n, hint)
    clf = checkpoints.load("shapes_classifier16", device=device)
    real = generate_shapes(1000, 32, 1, seed=HELD_OUT_SEEDS["control_real"]).images
    z_T = torch.randn((n, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    out = {"num_samples": n, "ddim_steps": steps, "guidance_scale": guidance_scale, "hint": hint}
    for name, caps in (("caption", tokens), ("empty_caption", torch.zeros_like(tokens))):
        x = pipe.sample([hints], caps, steps, guidance_scale, z_T=z_T).cpu()
        fid = control_fidelity(x, b.masks, intervals)
        follow = caption_following(x, b.attributes, clf, intervals=intervals)
        pool = lambda im: F.adaptive_avg_pool2d(im, 16)  # noqa: E731
        out[name] = {**fid, **{k: v for k, v in follow.items() if k.startswith(("shape", "colour"))},
                     "quality": image_quality(pool(x), pool(real), clf, intervals=intervals)}
        if samples_out is not None:
            samples_out[name] = x
    return out
