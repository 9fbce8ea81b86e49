r"""The course's networks, one file per family: small enough to train on a CPU in minutes, readable in one sitting.

- :mod:`.blocks`: the time embedding and the residual block (attention: :mod:`course_lib.attention`);
- :mod:`.unet`: :class:`UNet` (:math:`\epsilon_\theta(x_t, t[, y])`) and :class:`CaptionUNet` (Latent Diffusion's denoiser);
- :mod:`.mlp`: :class:`MLPDenoiser` for 2-D points;
- :mod:`.classifier`: :class:`Classifier`, noise-aware (classifier guidance) or clean (the metrics' features);
- :mod:`.vqvae`: :class:`VQVAE`, the VQ/LFQ autoencoder; :mod:`.gpt`: :class:`GPTPrior`; :mod:`.caption`:
  :class:`CaptionEncoder` (and :class:`CaptionAttributes`, one pretrained on captions alone);
  :mod:`.lpips_weights`: :class:`LPIPSWeights`, LPIPS' learned per-channel weights;
  :mod:`.controlnet`: :class:`ControlNet`, a trainable copy of a CaptionUNet's encoder behind zero convolutions;
  :mod:`.dit`: :class:`DiT`, the Diffusion Transformer on latent patches (patchify, the 2-D position table,
  adaLN-Zero and the paper's other conditioning blocks); :mod:`.mini_unet`: :class:`MiniUNet`, the smallest caption
  UNet, which notebook 10's learner assembles from these blocks.

Each model takes one config dataclass (as in nanoGPT), so a checkpoint stores its config as plain JSON and
:func:`build_model` (the registry below) rebuilds it.
"""
from __future__ import annotations

import difflib
from dataclasses import fields

from torch import nn

from .blocks import NUM_TIMESTEPS, ResBlock, TimeEmbedding, timestep_embedding
from .caption import CaptionAttributes, CaptionAttributesConfig, CaptionEncoder
from .classifier import Classifier, ClassifierConfig
from .controlnet import ControlNet, ControlNetConfig, HintEncoder, zero_conv
from .dit import DiT, DiTBlock, DiTConfig
from .gpt import GPTConfig, GPTPrior
from .lpips_weights import LPIPSWeights, LPIPSWeightsConfig
from .mini_unet import MiniUNet, MiniUNetConfig
from .mlp import MLPConfig, MLPDenoiser
from .unet import CaptionUNet, CaptionUNetConfig, UNet, UNetConfig
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["timestep_embedding", "TimeEmbedding", "ResBlock", "NUM_TIMESTEPS", "UNetConfig", "UNet",
           "CaptionUNetConfig", "CaptionUNet", "CaptionEncoder", "MLPConfig", "MLPDenoiser", "ClassifierConfig",
           "Classifier", "VQVAEConfig", "VQVAE", "GPTConfig", "GPTPrior", "LPIPSWeightsConfig", "LPIPSWeights",
           "ControlNetConfig", "ControlNet", "HintEncoder", "zero_conv", "CaptionAttributesConfig", "CaptionAttributes",
           "DiTConfig", "DiT", "DiTBlock", "MiniUNetConfig", "MiniUNet", "MODELS", "build_model"]

MODELS = {
    "UNet": (UNet, UNetConfig),
    "CaptionUNet": (CaptionUNet, CaptionUNetConfig),
    "MLPDenoiser": (MLPDenoiser, MLPConfig),
    "Classifier": (Classifier, ClassifierConfig),
    "VQVAE": (VQVAE, VQVAEConfig),
    "GPTPrior": (GPTPrior, GPTConfig),
    "LPIPSWeights": (LPIPSWeights, LPIPSWeightsConfig),
    "ControlNet": (ControlNet, ControlNetConfig),
    "CaptionAttributes": (CaptionAttributes, CaptionAttributesConfig),  # from_config: around a fresh base of the recorded config
    "DiT": (DiT, DiTConfig),
    "MiniUNet": (MiniUNet, MiniUNetConfig),
}


def build_model(kind: str, config: dict) -> nn.Module:
    """Rebuild a model from its class name and plain-JSON config (lists become tuples)."""
    if kind not in MODELS:
        raise ValueError(f"kind: expected one of {sorted(MODELS)}, got {kind!r}")
    cls, cfg_cls = MODELS[kind]
    known = {f.name for f in fields(cfg_cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        close = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        hints = "; ".join(f"{k!r} (did you mean {c[0]!r}?)" if c else repr(k) for k, c in close.items())
        raise TypeError(f"config: expected fields of {cfg_cls.__name__} {sorted(known)}, got unknown {hints}")
    cfg = cfg_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    return cls.from_config(cfg) if hasattr(cls, "from_config") else cls(cfg)
