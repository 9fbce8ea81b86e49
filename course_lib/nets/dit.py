r"""DiT (Peebles & Xie, *Scalable Diffusion Models with Transformers*, ICCV 2023): a transformer denoiser on
patches of a latent.

The pieces, each one function or class:

- **patchify**: a (C, H, W) latent becomes :math:`N = (H/p)(W/p)` tokens of :math:`p^2 C` values, in raster order,
  each token's values in the (p, p, C) order of the reference code (:func:`patchify`, :func:`unpatchify`); a linear
  layer embeds them and a fixed 2-D sine-cosine table (MAE's, :func:`sincos_pos_embed_2d`) adds the position.
- **the conditioning vector** :math:`c = e_t + e_y`: the time embedding (:class:`~course_lib.nets.blocks.TimeEmbedding`,
  the course's :func:`~course_lib.nets.blocks.timestep_embedding`: GLIDE's and ADM's convention, [cos, sin] of
  :math:`t\,P^{-i/(d/2)}`, which DiT's ``TimestepEmbedder`` copies) plus a learned class embedding.
- **adaLN-Zero**: a block regresses shift, scale and gate from c,

  .. math:: x \leftarrow x + \alpha_1 \odot \mathrm{Attn}\big(\mathrm{LN}(x)(1 + \gamma_1) + \beta_1\big),\qquad
            x \leftarrow x + \alpha_2 \odot \mathrm{MLP}\big(\mathrm{LN}(x)(1 + \gamma_2) + \beta_2\big)

  with :math:`(\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2) = W\,\mathrm{SiLU}(c) + b` and W, b = 0 at
  initialisation: every block starts as the identity (:func:`modulate`, :class:`DiTBlock`). The paper's other three
  blocks (its Fig. 3) are here too: adaLN (no gates, ordinary initialisation), cross-attention to c, and c as one
  more token (in-context).

Unlike the reference code this DiT predicts only the noise (the course's samplers take eps; the reference also
learns the variance, ``learn_sigma``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from .._checks import check_positive_int, check_tensor
from ..attention import CrossAttention
from .blocks import TimeEmbedding, _timesteps_for

__all__ = ["patchify", "unpatchify", "sincos_pos_embed_1d", "sincos_pos_embed_2d", "modulate", "gated_residual",
           "CONDITIONINGS", "DiTBlock", "DiTConfig", "DiT", "dit_gflops"]

CONDITIONINGS = ("adaln_zero", "adaln", "cross_attention", "in_context")  # the paper's Fig. 3, best first


def _check_patch(x: torch.Tensor, patch_size) -> int:
    check_tensor(x, "x", ndim=4)
    p = check_positive_int(patch_size, "patch_size")
    if x.shape[-2] % p or x.shape[-1] % p:
        raise ValueError(f"patch_size: expected a divisor of the height and width {tuple(x.shape[-2:])}, got {p}")
    return p


def _xavier(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for a linear layer (the reference code's ``_basic_init``)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    r"""(B, C, H, W) -> (B, N, p·p·C) tokens, :math:`N = (H/p)(W/p)` in raster order (row by row), each token's
    values in (p, p, C) order: the inverse of the reference code's ``unpatchify`` (``nhwpqc -> nchpwq``)."""
    p = _check_patch(x, patch_size)
    return rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)


def unpatchify(tokens: torch.Tensor, patch_size: int, channels: int, height: int, width: int) -> torch.Tensor:
    """(B, N, p·p·C) tokens -> (B, C, H, W): the inverse of :func:`patchify`."""
    check_tensor(tokens, "tokens", ndim=3)
    p, c = check_positive_int(patch_size, "patch_size"), check_positive_int(channels, "channels")
    height, width = check_positive_int(height, "height"), check_positive_int(width, "width")
    if height % p or width % p:
        raise ValueError(f"patch_size: expected a divisor of height and width ({height}, {width}), got {p}")
    h, w = height // p, width // p
    if tokens.shape[1:] != (h * w, p * p * c):
        raise ValueError(f"tokens: expected (B, {h * w}, {p * p * c}) for a {channels}x{height}x{width} image in "
                         f"{p}x{p} patches, got {tuple(tokens.shape)}")
    return rearrange(tokens, "b (h w) (p q c) -> b c (h p) (w q)", h=h, w=w, p=p, q=p)


def sincos_pos_embed_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    r"""(M,) positions -> (M, dim): :math:`[\sin(m\,\omega_k),\ \cos(m\,\omega_k)]`,
    :math:`\omega_k = 10000^{-k/(d/2)}`, k = 0 .. d/2 - 1 (MAE's table: sines first, unlike the time embedding)."""
    if check_positive_int(dim, "dim", 2) % 2:
        raise ValueError(f"dim: expected an even size, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double().reshape(-1, 1) * omega  # (M, d/2): m omega_k
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    r"""The fixed (grid_size², dim) position table of DiT (from MAE), in :func:`patchify`'s raster order: the token at
    row i, column j gets :math:`[\mathrm{PE}_{d/2}(i),\ \mathrm{PE}_{d/2}(j)]` (:func:`sincos_pos_embed_1d` of the row,
    then of the column; dim divisible by 4)."""
    check_positive_int(grid_size, "grid_size")
    if check_positive_int(dim, "dim", 4) % 4:
        raise ValueError(f"dim: expected a multiple of 4 (sines and cosines of rows and columns), got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    return torch.cat([sincos_pos_embed_1d(dim // 2, rows), sincos_pos_embed_1d(dim // 2, cols)], dim=1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""adaLN's modulation of tokens x (B, N, D) by per-sample shift :math:`\beta` and scale :math:`\gamma` (B, D):
    :math:`x\,(1 + \gamma) + \beta` (the 1 + makes :math:`\gamma = 0` the identity)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def gated_residual(x: torch.Tensor, branch, norm, shift: torch.Tensor, scale: torch.Tensor,
                   gate: torch.Tensor) -> torch.Tensor:
    r"""adaLN-Zero's residual update of tokens x (B, N, D): :math:`x + \alpha \odot F\big(\mathrm{LN}(x)(1 + \gamma)
    + \beta\big)`, F the block's attention or MLP (``branch``), LN its affine-free ``norm``; shift :math:`\beta`,
    scale :math:`\gamma` and gate :math:`\alpha` per sample (B, D). :math:`\alpha = 0` leaves x unchanged."""
    return x + gate.unsqueeze(1) * branch(modulate(norm(x), shift, scale))


class DiTBlock(nn.Module):
    r"""One transformer block of DiT with one of the paper's four ways to condition on c (B, D) (its Fig. 3):

    - ``"adaln_zero"``: :math:`(\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2)` regressed from c by a
      zero-initialised linear layer, layer norms without their own affine; the block is the identity at init;
    - ``"adaln"``: :math:`(\beta_1, \gamma_1, \beta_2, \gamma_2)` regressed from c, ordinary initialisation, no gates;
    - ``"cross_attention"``: a standard block plus multi-head cross-attention to c as one token;
    - ``"in_context"``: a standard block; c travels as one more token of x (:class:`DiT` prepends it).

    ``forward(x, c)``: tokens (B, N, D), c (B, D) -> (B, N, D).
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, conditioning: str = "adaln_zero"):
        super().__init__()
        check_positive_int(hidden_size, "hidden_size")
        check_positive_int(num_heads, "num_heads")
        if hidden_size % num_heads:
            raise ValueError(f"num_heads: expected a divisor of hidden_size {hidden_size}, got {num_heads}")
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning: expected one of {CONDITIONINGS}, got {conditioning!r}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio: expected a positive number, got {mlp_ratio!r}")
        self.conditioning = conditioning
        adaptive = conditioning.startswith("adaln")
        d, head = hidden_size, hidden_size // num_heads
        # adaLN's norms carry no affine of their own: gamma and beta come from c
        self.norm1 = nn.LayerNorm(d, elementwise_affine=not adaptive, eps=1e-6)
        self.attn = CrossAttention(d, None, num_heads, head, qkv_bias=True)
        if conditioning == "cross_attention":
            self.norm_cross = nn.LayerNorm(d, eps=1e-6)
            self.cross_attn = CrossAttention(d, d, num_heads, head, qkv_bias=True)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=not adaptive, eps=1e-6)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        if adaptive:
            chunks = 6 if conditioning == "adaln_zero" else 4
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, chunks * d))
        self.apply(_xavier)  # the reference code's initialisation of every linear layer
        if conditioning == "adaln_zero":  # alpha = gamma = beta = 0: the block starts as the identity
            nn.init.zeros_(self.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def modulation(self, c: torch.Tensor) -> dict:
        """The adaLN parameters regressed from c (B, D): {"shift1", "scale1", "gate1", "shift2", "scale2", "gate2"}
        (B, D) each, 1 for attention and 2 for the MLP (no gates for adaLN); {} for the other conditionings."""
        if self.conditioning == "adaln_zero":
            names = ("shift1", "scale1", "gate1", "shift2", "scale2", "gate2")
        elif self.conditioning == "adaln":
            names = ("shift1", "scale1", "shift2", "scale2")
        else:
            return {}
        return dict(zip(names, self.adaLN_modulation(c).chunk(len(names), dim=1)))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.conditioning == "adaln_zero":
            m = self.modulation(c)
            x = gated_residual(x, self.attn, self.norm1, m["shift1"], m["scale1"], m["gate1"])
            return gated_residual(x, self.mlp, self.norm2, m["shift2"], m["scale2"], m["gate2"])
        if self.conditioning == "adaln":
            shift1, scale1, shift2, scale2 = self.adaLN_modulation(c).chunk(4, dim=1)
            x = x + self.attn(modulate(self.norm1(x), shift1, scale1))
            return x + self.mlp(modulate(self.norm2(x), shift2, scale2))
        x = x + self.attn(self.norm1(x))
        if self.conditioning == "cross_attention":  # every token attends to the one token c
            x = x + self.cross_attn(self.norm_cross(x), c.unsqueeze(1))
        return x + self.mlp(self.norm2(x))


class _FinalLayer(nn.Module):
    """The last norm and the linear map back to p·p·C values per token, zero-initialised (the model outputs 0 at
    init); adaLN-modulated by c for the adaLN blocks, as in the reference code, a plain LayerNorm otherwise."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, adaptive: bool):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, elementwise_affine=not adaptive, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.adaLN_modulation = None
        if adaptive:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
            nn.init.zeros_(self.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x, c):
        x = self.norm(x)
        if self.adaLN_modulation is not None:
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
            x = modulate(x, shift, scale)
        return self.linear(x)


@dataclass
class DiTConfig:
    input_size: int = 8                 # the latent's height and width (notebook 06's autoencoder: 8)
    patch_size: int = 2                 # p: N = (input_size / p)^2 tokens
    in_channels: int = 4                # the latent's channels
    hidden_size: int = 128              # D
    depth: int = 4                      # blocks
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int | None = None      # class labels y in [0, num_classes); num_classes itself is the null label
    class_dropout_prob: float = 0.1     # the share of labels dropped in training (classifier-free guidance)
    conditioning: str = "adaln_zero"    # one of CONDITIONINGS


class DiT(nn.Module):
    r"""The Diffusion Transformer :math:`\epsilon_\theta(x_t, t, y)` on (B, in_channels, input_size, input_size):
    :func:`patchify` -> linear embedding + :func:`sincos_pos_embed_2d` -> ``depth`` :class:`DiTBlock` conditioned on
    :math:`c = e_t + e_y` -> final layer -> :func:`unpatchify`. ``forward(x, t, y=None)`` predicts the noise, shaped
    like x; y = None (or the label ``num_classes``) is the null condition. At initialisation it outputs exactly 0
    (the final layer starts at zero)."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        check_positive_int(cfg.input_size, "input_size")
        check_positive_int(cfg.patch_size, "patch_size")
        check_positive_int(cfg.in_channels, "in_channels")
        if cfg.input_size % cfg.patch_size:
            raise ValueError(f"patch_size: expected a divisor of input_size {cfg.input_size}, got {cfg.patch_size}")
        if cfg.hidden_size % 4:
            raise ValueError(f"hidden_size: expected a multiple of 4 (the 2-D position table), got {cfg.hidden_size}")
        if cfg.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning: expected one of {CONDITIONINGS}, got {cfg.conditioning!r}")
        if cfg.num_classes is not None:
            check_positive_int(cfg.num_classes, "num_classes")
        if not 0.0 <= cfg.class_dropout_prob < 1.0:
            raise ValueError(f"class_dropout_prob: expected a probability in [0, 1), got {cfg.class_dropout_prob}")
        d, p, grid = cfg.hidden_size, cfg.patch_size, cfg.input_size // cfg.patch_size
        self.x_embedder = nn.Linear(p * p * cfg.in_channels, d)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(d, grid)[None], persistent=False)  # fixed, not learned
        self.t_embedder = TimeEmbedding(256, d)
        # one extra row: the null label, the unconditional model's condition
        self.y_embedder = nn.Embedding(cfg.num_classes + 1, d) if cfg.num_classes else None
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.conditioning)
                                    for _ in range(cfg.depth))
        self.final_layer = _FinalLayer(d, p, cfg.in_channels, cfg.conditioning.startswith("adaln"))
        # the reference code's initialisation of the embeddings (the blocks and the final layer set their own)
        _xavier(self.x_embedder)
        self.t_embedder.apply(_xavier)
        nn.init.normal_(self.t_embedder[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder[2].weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.weight, std=0.02)

    @property
    def num_tokens(self) -> int:
        return (self.config.input_size // self.config.patch_size) ** 2

    def null_condition(self, n: int, device=None) -> torch.Tensor:
        """The label of the unconditional model, ``num_classes``, for n samples (the model owns its null condition)."""
        if self.y_embedder is None:
            raise ValueError("null_condition: this DiT has no labels (num_classes=None)")
        return torch.full((n,), self.config.num_classes, dtype=torch.long, device=device)

    def condition(self, t: torch.Tensor, y: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        """c = e_t + e_y (B, D); y = None is the null label (or no label embedding for a model without labels)."""
        c = self.t_embedder(_timesteps_for(t, x))
        if self.y_embedder is None:
            if y is not None:
                raise ValueError("y: this DiT has no labels (num_classes=None), got labels")
            return c
        if y is None:
            y = self.null_condition(x.shape[0], x.device)
        y = torch.as_tensor(y, device=x.device)
        if y.shape != (x.shape[0],) or y.dtype != torch.long:
            raise ValueError(f"y: expected ({x.shape[0]},) long labels, got {y.dtype} {tuple(y.shape)}")
        if int(y.min()) < 0 or int(y.max()) > self.config.num_classes:
            raise ValueError(f"y: expected labels in [0, {self.config.num_classes}] ({self.config.num_classes} is the "
                             f"null label), got {int(y.min())}..{int(y.max())}")
        return c + self.y_embedder(y)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the first block's input tokens (B, N, D): the patches linearly embedded, plus the fixed
        position table."""
        return self.x_embedder(patchify(x, self.config.patch_size)) + self.pos_embed

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        check_tensor(x, "x", ndim=4)
        if tuple(x.shape[1:]) != (cfg.in_channels, cfg.input_size, cfg.input_size):
            raise ValueError(f"x: expected (B, {cfg.in_channels}, {cfg.input_size}, {cfg.input_size}), got "
                             f"{tuple(x.shape)}")
        c = self.condition(t, y, x)                                            # (B, D)
        tokens = self.embed(x)                                                  # (B, N, D)
        if cfg.conditioning == "in_context":  # c as one more token, dropped after the last block
            tokens = torch.cat([c.unsqueeze(1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens, c)
        if cfg.conditioning == "in_context":
            tokens = tokens[:, 1:]
        out = self.final_layer(tokens, c)                                       # (B, N, p*p*C)
        return unpatchify(out, cfg.patch_size, cfg.in_channels, cfg.input_size, cfg.input_size)


def dit_gflops(model: DiT, batch: int = 1) -> float:
    """Gflops of one forward pass of ``model`` on ``batch`` inputs, as ``torch.utils.flop_counter.FlopCounterMode``
    counts them (every matrix multiply and convolution, 2 flops per multiply-add). The paper's Gflops (fvcore's
    counter) count a multiply-add once: halve ours to compare, e.g. with its DiT-XL/2's 118.6."""
    from ..metrics import count_flops

    cfg = model.config
    x = torch.zeros(batch, cfg.in_channels, cfg.input_size, cfg.input_size)
    y = model.null_condition(batch) if cfg.num_classes else None
    with torch.no_grad():
        flops, _ = count_flops(model, x, torch.full((batch,), 500), y)
    return flops / 1e9
