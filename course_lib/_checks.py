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


def check_tensor(x, name: str, ndim: int | None = None, last_dim: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
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
    a = as_tensor(alpha_bar, name)
    if a.numel() and (bool((a <= 0).any()) or bool((a > 1).any()) or bool(torch.isnan(a).any())):
        bad = a[(a <= 0) | (a > 1) | torch.isnan(a)].flatten()[0].item()
        raise ValueError(f"{name}: expected values in (0, 1], got {bad}")
    return a


def broadcast_to_batch(coef: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Make a scalar or per-sample coefficient broadcast against ``x``.

    A tensor of shape (N,) with N == x.shape[0] is read as one value per sample and gets
    trailing singleton axes; any other shape must broadcast as it is.
    """
    coef = coef.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
    if coef.ndim == 1 and x.ndim > 1 and coef.shape[0] == x.shape[0] and coef.shape[0] != 1:
        coef = coef.reshape(-1, *([1] * (x.ndim - 1)))
    try:
        torch.broadcast_shapes(coef.shape, x.shape)
    except RuntimeError:
        raise ValueError(
            f"{name}: shape {tuple(coef.shape)} does not broadcast against x of shape {tuple(x.shape)}; "
            "expected a float, a tensor of shape (N,) with one value per sample, or a broadcastable tensor"
        ) from None
    return coef
