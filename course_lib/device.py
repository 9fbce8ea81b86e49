"""One place that picks the device: CUDA when present, CPU otherwise."""
from __future__ import annotations

import contextlib
import os

import torch

__all__ = ["default_device", "one_thread"]


def default_device(prefer: str | None = None) -> torch.device:
    """``prefer`` ("cpu", "cuda", "cuda:1") wins if given; else $COURSE_DEVICE; else CUDA if available.

    Asking for CUDA on a machine without it raises ``ValueError`` rather than falling back silently.
    """
    choice = prefer or os.environ.get("COURSE_DEVICE")
    if choice:
        if isinstance(choice, torch.device):
            dev = choice
        else:
            try:
                dev = torch.device(choice)
            except (RuntimeError, TypeError):
                raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {choice!r}") from None
        if dev.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {choice!r}")
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: expected a device this machine has; {choice!r} was asked for but CUDA is not "
                             f"available here: use 'cpu'")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def one_thread():
    """Run the block on one CPU thread, then restore the thread count: the same sums in the same order on any machine,
    so a printed number repeats under nbval whatever the load (with several threads the last digits can move)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
