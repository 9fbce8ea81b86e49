"""Training on several processes with PyTorch's own engine (``torch.distributed`` and DistributedDataParallel):

    torchrun --standalone --nproc_per_node N -m course_lib.train NAME      (the same as ./course train --nproc N NAME)

Every one of the N processes (a *rank*) builds the same model from the recipe's seed, and DDP broadcasts rank 0's
weights once at the start. At each step every rank:

1. draws the step's *global* batch (a pure function of the recipe's seed and the step, as in one process) and
   keeps its shard, rows ``rank::N`` (:func:`shard`): N ranks together see exactly the one-process batch;
2. draws its timesteps, noise and caption dropout from its own generator (:func:`rank_generator`; rank 0's is the
   one-process generator, so N = 1 reproduces every shipped model);
3. computes the mean loss over its shard; ``backward`` runs inside DDP, which averages the gradients over the ranks
   (an all-reduce; gloo on CPU, NCCL on CUDA) while it computes them. With equal shards the average of the N
   shard-mean gradients is the gradient of the mean loss over the global batch, so each optimizer step is the step
   of one process on the combined batch, and the replicas stay identical without ever exchanging weights.

Only rank 0 prints, evaluates and writes weights, manifest and the resumable state (which holds every rank's
generator, so ``--resume`` continues each rank's random stream; it needs the same N). The global batch stays the
recipe's ``batch_size``: N processes each compute 1/N of it, and the learning rate needs no change. To grow the
batch with N instead, scale ``batch_size`` and, as a starting point, the learning rate by N (Goyal et al.'s linear
rule, with the warm-up every recipe already has).
"""
from __future__ import annotations

import dataclasses
import gc
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["launched_by_torchrun", "setup", "teardown", "exit_rank", "world", "is_main", "as_rank", "rank_generator", "shard",
           "distributed_loss", "mean_over_ranks", "gather_objects", "replica_difference"]

_SIMULATED: tuple[int, int] | None = None  # (rank, world size) while as_rank() is active


def launched_by_torchrun() -> bool:
    """Whether this process is one of torchrun's (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def setup(device=None) -> torch.device:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) and return this rank's device: ``cuda:LOCAL_RANK``
    when CUDA is asked for (or available and nothing is asked), else the CPU."""
    from ..device import default_device

    local = int(os.environ["LOCAL_RANK"])
    dev = default_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dev


def teardown() -> None:
    """Leave the process group together: wait for every rank (rank 0 may still be evaluating and writing), drop the
    DDP objects left in reference cycles, then destroy the group."""
    if dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End a torchrun rank without Python's interpreter finalization: gloo's worker threads may still hold work
    objects then, and tearing them down during finalization aborts the process now and then ("terminate called
    without an active exception", SIGABRT; about 1 run in 16 here with two runs side by side), which torchrun reports
    as a failed run although training and writing had finished. Output is flushed first."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _running() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world() -> tuple[int, int]:
    """(this process's rank, number of processes): (0, 1) in a plain process."""
    if _SIMULATED is not None:
        return _SIMULATED
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """Rank 0 (or a plain process): the one that prints, evaluates and writes."""
    return world()[0] == 0


@contextmanager
def as_rank(rank: int, world_size: int):
    """Inside, :func:`shard` and :func:`rank_generator` act as rank ``rank`` of ``world_size`` would, in this one
    process (no process group): how the equivalence test computes, in one process, the combined batch that N ranks
    see."""
    global _SIMULATED
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"rank, world_size: expected 0 <= rank < world_size, got rank={rank!r}, "
                         f"world_size={world_size!r}")
    before, _SIMULATED = _SIMULATED, (rank, world_size)
    try:
        yield
    finally:
        _SIMULATED = before


def rank_generator(seed: int) -> torch.Generator:
    """This rank's generator for timesteps, noise and dropout: ``seed`` itself on rank 0 (so one process is the
    recipe's own run), a stream of its own on every other rank."""
    rank, _ = world()
    return torch.Generator().manual_seed(seed + 1_000_000_007 * rank)


def shard(batch):
    """This rank's rows (``rank::N``) of a global batch: a tensor, a tuple, dict or dataclass of tensors (a
    :class:`course_lib.data.ShapesBatch`), or None. The batch size must divide evenly: equal shards are what make the
    averaged gradient the global batch's."""
    rank, n = world()
    if n == 1 or batch is None:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] % n:
            raise ValueError(f"batch: expected a batch size divisible by the {n} processes, got {batch.shape[0]} "
                             f"rows; choose --nproc_per_node dividing the recipe's batch_size")
        return batch[rank::n]
    if isinstance(batch, dict):
        return {k: shard(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(shard(v) for v in batch)
    if dataclasses.is_dataclass(batch):
        return dataclasses.replace(batch, **{f.name: shard(getattr(batch, f.name)) for f in dataclasses.fields(batch)})
    raise TypeError(f"batch: expected a tensor, a tuple, dict or dataclass of tensors, got {type(batch).__name__}")


class _StepLoss(nn.Module):
    """The step's loss as a module whose parameters are the trained model's: DDP wraps this, so whatever the loss
    calls on the model (forward or another method) runs inside DDP's forward and every gradient is averaged."""

    def __init__(self, model: nn.Module, loss_at):
        super().__init__()
        self.model, self.loss_at = model, loss_at

    def forward(self, step: int) -> torch.Tensor:
        return self.loss_at(step)


def distributed_loss(model: nn.Module, loss_at):
    """``loss_at`` itself in one process; with several, the same function run through DistributedDataParallel
    around ``model`` (its parameters that require gradients), so ``backward`` averages the gradients over the ranks.
    ``static_graph``: every step uses the same parameters (a noise-aware classifier leaves the same heads out each
    time), which lets DDP find the unused ones once instead of searching the graph at every step."""
    if not _running():
        return loss_at
    dev = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(_StepLoss(model, loss_at), device_ids=[dev] if dev.type == "cuda" else None,
                                               static_graph=True)


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a (detached) tensor over the ranks: the global batch's loss for the log."""
    if not _running():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order (``[obj]`` in one process); every rank must call it."""
    if not _running():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def replica_difference(model: nn.Module) -> float:
    """The largest |difference| between this rank's weights and rank 0's, over every rank (0.0 in one process):
    DDP keeps replicas identical by construction, and the trainer records that it did."""
    if not _running():
        return 0.0
    flat = torch.cat([p.detach().float().flatten() for p in model.state_dict().values()
                      if torch.is_tensor(p) and p.is_floating_point()])  # on the model's device (NCCL: CUDA)
    ref = flat.clone()
    dist.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff)
