"""Training loops and the recipes that rebuild every shipped model.

    python -m course_lib.train NAME [--steps N] [--device cpu|cuda] [--resume] [--no-save] [--use-retrained P ...]
    python -m course_lib.train NAME --eval-only [--ship]
    python -m course_lib.train NAME --ship        (maintainers: replace the shipped model)
    python -m course_lib.train --list
    torchrun --standalone --nproc_per_node N -m course_lib.train NAME ...   (N processes: see .distributed)

One loop for diffusion models (eps-prediction MSE, EMA of weights, optional label dropout
for classifier-free guidance) and one for classifiers; both are seeded (the batch of step
i is a function of the seed and i), show a tqdm bar, and save a resumable state every few
hundred steps under ``runs/NAME/``. A recipe then measures the model with
:mod:`course_lib.metrics` and writes weights and manifest entry via :mod:`course_lib.checkpoints`:
into ``runs/NAME/`` (a learner's retrain, used only where a notebook's ``RETRAINED`` names it),
and into the package's ``course_lib/weights/`` only with ``--ship``. The entry records the
sha256 of every parent model (:func:`recipe_parents`), which ``checkpoints.load`` checks.
The same command runs on CPU or CUDA (bfloat16 autocast on both for the UNet).
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from .. import checkpoints
from ..device import default_device
from ..recipes import CORRUPTIONS, RECIPES, Recipe, recipe_parents
from . import distributed
from .loops import EMA, corrupt, fit
from .tasks import TASKS, _evaluate, task_of

__all__ = ["EMA", "Recipe", "RECIPES", "CORRUPTIONS", "recipe_parents", "fit", "corrupt", "train", "evaluate", "main"]


def _destination(name: str, ship: bool, weights_dir, runs_dir) -> Path:
    if ship and weights_dir is not None:
        raise ValueError("ship: --ship writes into the package's course_lib/weights/; do not also pass weights_dir")
    if ship:
        return checkpoints.WEIGHTS_DIR
    return Path(weights_dir) if weights_dir is not None else Path(runs_dir or checkpoints.RUNS_DIR) / name


def train(name: str, steps: int | None = None, device=None, resume: bool = False, save: bool = True,
          weights_dir=None, progress: bool = True, evaluate: bool = True, log=print, save_every: int = 500,
          runs_dir=None, ship: bool = False):
    """Train the registered model ``name``; returns (model, manifest entry info).

    With ``save`` the weights and manifest entry go to ``weights_dir`` if given, else to ``runs_dir/NAME/``
    (default ``runs/NAME/``, beside the resumable state): a retrain never touches the shipped model. Only
    ``ship=True`` (the maintainers' ``--ship``) writes into ``course_lib/weights/``. Parents load as
    :func:`course_lib.checkpoints.load` resolves them (shipped, unless ``use_retrained`` named them), and the entry
    records their sha256.
    """
    if isinstance(name, str) and name not in RECIPES:
        raise ValueError(f"name: expected one of {sorted(RECIPES)}, got {name!r}")
    recipe = copy.deepcopy(RECIPES[name] if isinstance(name, str) else name)
    if steps is not None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps: expected a positive number of steps, got {steps!r}")
        recipe.steps = steps
    out_dir = _destination(recipe.name, ship, weights_dir, runs_dir) if save else None
    device = default_device(device)
    parents = {p: checkpoints.parent_record(p, use) for p, use in recipe_parents(recipe).items()}
    log_tensors = None
    task = task_of(recipe)
    main, (_, world_size) = distributed.is_main(), distributed.world()
    if world_size > 1:  # under torchrun: see .distributed
        if task.one_process_only:
            raise ValueError(f"name: {recipe.name} is a {recipe.task!r} recipe, which trains in one process only "
                             f"({task.one_process_only}); run it without torchrun")
        if recipe.batch_size % world_size:
            raise ValueError(f"--nproc_per_node: expected a number of processes dividing {recipe.name}'s batch_size "
                             f"{recipe.batch_size} (each rank takes an equal shard), got {world_size}")
        if not main:
            log = lambda *args, **kwargs: None  # noqa: E731 (rank 0 speaks for all)
    if task.resumable:
        model, info, log_tensors = task.train(recipe, device, resume, progress, log, save_every, runs_dir)
    elif resume:
        raise ValueError(f"resume: expected a recipe of a resumable task "
                         f"({', '.join(k for k, v in TASKS.items() if v.resumable)}); {recipe.task} recipes train "
                         f"in a few minutes and save no state")
    else:
        model, info, log_tensors = task.train(recipe, device, progress)
    name = recipe.name
    cmd = (f"torchrun --standalone --nproc_per_node {world_size} -m course_lib.train {name}" if world_size > 1 else
           f"python -m course_lib.train {name}") + (f" --steps {steps}" if steps is not None else "")
    info.update({
        "description": recipe.description, "seed": recipe.seed, "steps": recipe.steps,
        "batch_size": recipe.batch_size, "lr": recipe.lr, "ema_decay": recipe.ema_decay,
        "command": cmd, "device": str(device), "torch": torch.__version__,
        "num_params": sum(p.numel() for p in model.parameters()), "parents": parents,
    })
    if world_size > 1:  # the replicas must agree to the last bit: DDP never exchanges weights, only gradients
        info.update({"world_size": world_size, "replica_max_difference": distributed.replica_difference(model)})
    if not main:
        return model, info  # rank 0 evaluates and writes
    if evaluate:
        t0 = time.time()
        info["metrics"] = _evaluate(recipe, model, device, log, info)
        info["eval_time_s"] = round(time.time() - t0, 1)
    if save:
        checkpoints.save(name, model, info, out_dir)
        if log_tensors:
            checkpoints.save_log(name, log_tensors, out_dir)
        log(f"{name}: weights and manifest entry written to {out_dir}/" + (
            "" if ship else f" (the shipped model is untouched; a notebook uses yours with RETRAINED = [{name!r}])"))
    return model, info


def evaluate(name: str, device=None, source=None, ship: bool = False, log=print) -> dict:
    """Measure model ``name`` again (as loaded from ``source``, see :func:`course_lib.checkpoints.weights_folder`)
    and refresh its metrics and the sha256 of the models those metrics used. The result is stored in the manifest
    it came from, except the shipped one, which only ``ship=True`` writes."""
    device = default_device(device)
    folder = checkpoints.weights_folder(name, source)
    model = checkpoints.load(name, device=device, source=folder, parents=False)
    e = checkpoints.entry(name, folder)
    for p, rec in e.get("parents", {}).items():  # a parent it was trained on must still match: only metrics move
        if rec["use"] != "metrics":
            checkpoints.check_parents(name, {"parents": {p: rec}}, folder)
    metrics = _evaluate(RECIPES[name], model, device, log, e)
    if folder == checkpoints.WEIGHTS_DIR and not ship:
        log(f"{name}: not stored (the shipped manifest changes only with --ship)")
        return metrics
    mpath = folder / "manifest.json"
    m = checkpoints.manifest(mpath)
    m[name]["metrics"] = metrics
    m[name].setdefault("parents", {}).update(
        {p: checkpoints.parent_record(p, "metrics") for p, use in recipe_parents(RECIPES[name]).items()
         if use == "metrics"})
    checkpoints.write_manifest(m, mpath)
    return metrics


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m course_lib.train", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"models to rebuild: {', '.join(RECIPES)} or 'all'")
    p.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--resume", action="store_true", help="continue from runs/NAME/state.pt")
    p.add_argument("--no-save", action="store_true", help="do not write weights or manifest")
    p.add_argument("--ship", action="store_true",
                   help="maintainers: write into the package's course_lib/weights/ (replaces the shipped model)")
    p.add_argument("--use-retrained", nargs="+", default=[], metavar="PARENT",
                   help="train on your retrains of these parent models (runs/PARENT/) instead of the shipped ones")
    p.add_argument("--list", action="store_true", help="list the recipes")
    p.add_argument("--no-eval", action="store_true", help="skip the manifest's metrics (a quick or test run)")
    p.add_argument("--runs-dir", type=Path, default=None, help="where retrains and resumable states go (default: runs/)")
    p.add_argument("--save-every", type=int, default=500, help="steps between resumable states (default: 500)")
    p.add_argument("--eval-only", action="store_true",
                   help="re-measure the model (yours in runs/NAME/ if it exists, else the shipped one; stored "
                        "into the shipped manifest only with --ship)")
    a = p.parse_args(argv)
    if a.list or not a.names:
        for r in RECIPES.values():
            print(f"{r.name:28s} {r.steps:6d} steps  {r.description}")
        return 0
    names = list(RECIPES) if a.names == ["all"] else a.names
    for n in names + a.use_retrained:
        if n not in RECIPES:
            p.error(f"unknown model {n!r}; choose from {', '.join(RECIPES)}")
    if a.ship and a.no_save:
        p.error("--ship and --no-save contradict each other")
    if a.save_every < 1:
        p.error(f"--save-every: expected a positive number of steps, got {a.save_every}")
    device = a.device
    if distributed.launched_by_torchrun():  # torchrun --nproc_per_node N -m course_lib.train ...
        if a.eval_only:
            p.error("--eval-only: measuring runs in one process; run it without torchrun")
        device = distributed.setup(a.device)
    say = print if distributed.is_main() else (lambda *args, **kwargs: None)
    try:
        say(checkpoints.use_retrained(a.use_retrained))
        for n in names:
            if a.eval_only:
                ours = (checkpoints.RUNS_DIR / n / "manifest.json").exists() and not a.ship
                print(f"{n}: metrics {evaluate(n, a.device, 'runs' if ours else 'shipped', a.ship)}")
                continue
            _, info = train(n, a.steps, device, a.resume, not a.no_save, ship=a.ship, evaluate=not a.no_eval,
                            save_every=a.save_every, runs_dir=a.runs_dir)
            say(f"{n}: {info.get('wall_time_s')} s training, metrics {info.get('metrics')}"
                + (f", {info['world_size']} processes (replicas differ by at most {info['replica_max_difference']})"
                   if "world_size" in info else ""))
    finally:
        distributed.teardown()
    return 0
