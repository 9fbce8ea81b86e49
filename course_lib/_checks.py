"""Argument checks shared by every module.

Each helper raises ``ValueError``/``TypeError`` whose message names the argument, what
was expected and what came, so a learner sees at once which call was wrong.
"""
from __future__ import annotations

import torch


def as_tensor(value, name: str, dtype=torch.float32) -> torch.Tensor:
    """Turn a float, list or tensor into a tensor; anything else is a ``TypeError``."""
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() or dtype is None else value.to(dtype)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=dtype)
    if isinstance(value, (list, tuple)):
        return torch.tensor(value, dtype=dtype)
    raise TypeError(f"{name}: expected a float or a torch.Tensor, got {type(value).__name__}")


def check_tensor(x, name: str, ndim: int | None = None, last_dim: int | None = None, floating: bool = False,
                 finite: bool = False) -> torch.Tensor:
    """``x`` must be a tensor (of ``ndim`` dimensions, last dimension ``last_dim``; with ``floating``, of a floating
    dtype, so uint8 images in [0, 255] are caught; with ``finite``, without NaN or inf)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating tensor (data in [-1, 1], not integer pixel values), got "
                        f"{x.dtype}")
    if finite and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name}: expected finite values, got {x[tuple(bad)].item()} at index {tuple(bad)}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {tuple(x.shape)}")
    if last_dim is not None and (x.ndim == 0 or x.shape[-1] != last_dim):
        raise ValueError(f"{name}: expected last dimension {last_dim}, got shape {tuple(x.shape)}")
    return x


def check_same_shape(x, like: torch.Tensor, name: str, like_name: str) -> torch.Tensor:
    """``x`` must be a tensor of exactly ``like``'s shape (noise of x0, eps of x_t, ...)."""
    check_tensor(x, name)
    if x.shape != like.shape:
        raise ValueError(f"{name}: expected the shape of {like_name} {tuple(like.shape)}, got {tuple(x.shape)}")
    return x


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_range(value: float, name: str, low: float, high: float, low_open=False, high_open=False) -> float:
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (ok_low and ok_high):
        lb = "(" if low_open else "["
        hb = ")" if high_open else "]"
        raise ValueError(f"{name}: expected a value in {lb}{low}, {high}{hb}, got {value}")
    return value


def check_alpha_bar(alpha_bar, name: str) -> torch.Tensor:
    """alpha_bar must lie in (0, 1]: it is a product of (1 - beta) factors."""
    if isinstance(alpha_bar, torch.Tensor) and not alpha_bar.is_floating_point():
        raise TypeError(f"{name}: expected floating values in (0, 1], got an integer tensor ({alpha_bar.dtype}); "
                        f"did you pass a timestep t instead of alphas_cumprod[t]?")
    a = as_tensor(alpha_bar, name)
    if a.numel() and (bool((a <= 0).any()) or bool((a > 1).any()) or bool(torch.isnan(a).any())):
        bad = a[(a <= 0) | (a > 1) | torch.isnan(a)].flatten()[0].item()
        raise ValueError(f"{name}: expected values in (0, 1], got {bad}")
    return a


def broadcast_to_batch(coef: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Make a scalar or per-sample coefficient broadcast against ``x`` (N, ...).

    Accepted: a scalar (shape () or (1,)), one value per sample (N,), or (N, 1, ..., 1) / (1, 1, ..., 1) with x's
    number of dimensions. Nothing else: a (W,) or (D,) tensor would broadcast along the last axis of x and
    silently give each pixel or coordinate its own alpha.
    """
    coef = coef.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    n = x.shape[0] if x.ndim else 1
    if coef.ndim == 0 or coef.shape == (1,):
        return coef.reshape(())
    if coef.ndim == 1 and coef.shape[0] == n:
        return coef.reshape(-1, *([1] * (x.ndim - 1)))
    if coef.ndim == x.ndim and coef.shape[0] in (1, n) and all(s == 1 for s in coef.shape[1:]):
        return coef
    raise ValueError(
        f"{name}: expected a float, a tensor of shape ({n},) with one value per sample, or shape ({n}, 1, ..., 1); "
        f"got shape {tuple(coef.shape)} for x of shape {tuple(x.shape)}")


def check_coefficient(value, x: torch.Tensor, name: str) -> torch.Tensor:
    """A float or per-sample tensor as a tensor shaped to broadcast against x (see :func:`broadcast_to_batch`)."""
    return broadcast_to_batch(as_tensor(value, name), x, name)


def check_alphas_cumprod(table, name: str = "alphas_cumprod") -> torch.Tensor:
    """A table alpha_bar_0 > ... > alpha_bar_{T-1}: a 1-D floating tensor in (0, 1] that never increases."""
    check_tensor(table, name, ndim=1, floating=True)
    if table.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty table, got shape (0,)")
    check_alpha_bar(table, name)
    if table.numel() > 1 and bool((table[1:] > table[:-1]).any()):
        i = int((table[1:] > table[:-1]).nonzero()[0])
        raise ValueError(f"{name}: expected a non-increasing table (more noise at larger t), got "
                         f"{table[i].item():.4g} at t={i} then {table[i + 1].item():.4g}; reversed or swapped?")
    return table


# -- the diffusion core's checks (course_lib.diffusion): coefficients, step order, sigma, timesteps --------------
def check_coef(value, x: torch.Tensor, name: str):
    """An alpha_bar checked to lie in (0, 1]: a Python number stays a float (exact float64 coefficients, and no tensor
    per step in a 1000-step sampler); a tensor must be one value or one per sample and is shaped to broadcast."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 < value <= 1:  # NaN fails this too; plain Python: no tensor per call
            raise ValueError(f"{name}: expected values in (0, 1], got {value}")
        return float(value)
    return broadcast_to_batch(check_alpha_bar(value, name), x, name)



def check_coef_tensor(value, x: torch.Tensor, name: str) -> torch.Tensor:
    """An alpha_bar checked to lie in (0, 1], always as a tensor shaped to broadcast against x."""
    return broadcast_to_batch(check_alpha_bar(value, name), x, name)



def at_least(value, floor: float):
    """max(value, floor) for floats, value.clamp_min(floor) for tensors."""
    return value.clamp_min(floor) if isinstance(value, torch.Tensor) else max(value, floor)



def check_step_order(a_t: torch.Tensor, a_prev: torch.Tensor) -> None:
    """A generative step goes from alpha_bar_t to a less noisy alpha_bar_prev >= alpha_bar_t."""
    if bool((a_prev < a_t).any()):
        at, ap = torch.broadcast_tensors(a_t, a_prev)
        i = (ap < at).nonzero()[0].tolist() if ap.ndim else []
        raise ValueError(f"alpha_bar_prev: expected a value >= alpha_bar_t (a step goes towards less noise), got "
                         f"{ap[tuple(i)].item():.4g} < {at[tuple(i)].item():.4g}; swapped arguments?")



def check_sigma(sig: torch.Tensor, a_prev: torch.Tensor) -> torch.Tensor:
    """0 <= sigma and sigma^2 <= 1 - alpha_bar_prev, eq. 7 (2)'s condition (a rounding tolerance of 1e-6)."""
    if bool((sig < 0).any()) or bool(sig.isnan().any()):
        raise ValueError(f"sigma: expected values >= 0, got {sig.min().item()}")
    room = 1 - a_prev - sig**2
    if bool((room < -1e-6).any()):
        raise ValueError(f"sigma: expected sigma^2 <= 1 - alpha_bar_prev, got sigma^2 - (1 - alpha_bar_prev) = "
                         f"{(-room).max().item():.3g}")
    return room



def check_sigma_coef(sigma, x: torch.Tensor):
    """sigma >= 0: a Python number stays a float, a tensor is shaped to broadcast against x."""
    if isinstance(sigma, (int, float)) and not isinstance(sigma, bool):
        if not sigma >= 0:
            raise ValueError(f"sigma: expected values >= 0, got {sigma}")
        return float(sigma)
    return broadcast_to_batch(as_tensor(sigma, "sigma"), x, "sigma")



def check_timesteps(timesteps, num_timesteps: int) -> torch.Tensor:
    ts = torch.as_tensor(timesteps)
    if ts.ndim != 1 or ts.numel() == 0:
        raise ValueError(f"timesteps: expected a non-empty 1-D sequence, got shape {tuple(ts.shape)}")
    if ts.is_floating_point() or ts.dtype == torch.bool:
        raise TypeError(f"timesteps: expected integer timesteps (indices into alphas_cumprod), got {ts.dtype}; "
                        f"a float such as {ts.flatten()[:1].tolist()} would be truncated")
    ts = ts.long()
    if ts.ndim != 1 or ts.numel() == 0:
        raise ValueError(f"timesteps: expected a non-empty 1-D sequence, got shape {tuple(ts.shape)}")
    if ts.numel() > 1 and not bool((ts[1:] < ts[:-1]).all()):
        raise ValueError(f"timesteps: expected a strictly decreasing sequence, got {ts.tolist()[:8]}...")
    if int(ts.min()) < 0 or int(ts.max()) >= num_timesteps:
        raise ValueError(f"timesteps: expected values in [0, {num_timesteps - 1}], got {int(ts.min())}..{int(ts.max())}")
    return ts
