"""The registry of shipped weights, and of a learner's own retrains.

``course_lib/weights/manifest.json`` lists every shipped model: its file, sha256, model
class and config, seed, the command that rebuilds it, wall time, device, final metrics and
the sha256 of every model it depends on (``parents``). Weights are safetensors (tensors
only: loading cannot run code). :func:`load` checks the hash before it builds the model and
refuses a model whose parent has changed since it was trained; every failure names the
command that rebuilds the file.

Where a model comes from (``source``): ``"shipped"`` is ``course_lib/weights/``; ``"runs"``
is ``runs/NAME/``, where ``./course train NAME`` writes a learner's retrain (only the
maintainer's ``--ship`` writes into the package); a path is any other weights folder. With
no source, a model loads from ``runs/`` only if :func:`use_retrained` named it (the flag at
the top of every notebook), so a retrain is used only when asked for, and says so.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .nets import build_model

__all__ = ["WEIGHTS_DIR", "RUNS_DIR", "MANIFEST", "CheckpointError", "manifest", "entry", "load", "save", "sha256",
           "write_atomic", "write_manifest", "use_retrained", "weights_folder", "parent_folder", "parent_record",
           "check_parents"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RUNS_DIR = Path(__file__).resolve().parent.parent / "runs"
MANIFEST = WEIGHTS_DIR / "manifest.json"
_retrained: set = set()  # the models use_retrained() named: they load from runs/NAME/


class CheckpointError(RuntimeError):
    """A shipped checkpoint is missing, corrupted or unknown."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest(path: Path | None = None, missing_ok: bool = False) -> dict:
    """The whole manifest as a dict name -> entry. A missing file is an empty manifest only with ``missing_ok``
    (a new weights folder); otherwise, like an unreadable one, a :class:`CheckpointError` that says how to restore it."""
    path = Path(path) if path else MANIFEST
    restore = (f"restore the shipped one with `git checkout -- {path.relative_to(WEIGHTS_DIR.parent.parent)}`"
               if path.resolve().is_relative_to(WEIGHTS_DIR.parent.parent) else "rebuild its models with "
               "`python -m course_lib.train NAME` (a retrain writes runs/NAME/)")
    if not path.exists():
        if missing_ok:
            return {}
        raise CheckpointError(f"manifest: expected a manifest at {path}, found none; {restore}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"manifest: expected readable JSON in {path}, got {exc}; {restore}") from None


def write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``path``, then move it into place (``os.replace``): a kill
    during the write leaves the old file whole, never half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(m: dict, path: Path) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n"))


def retrain_command(name: str) -> str:
    return f"python -m course_lib.train {name}"


def _known_recipe(name) -> bool:
    from .recipes import RECIPES  # late: only an unknown name needs the recipes (and the data module they import)
    return isinstance(name, str) and name in RECIPES


def weights_folder(name: str, source=None) -> Path:
    """The folder model ``name`` loads from: ``source`` ``"shipped"`` (the package's), ``"runs"`` (``runs/NAME/``,
    a learner's retrain) or a path; ``None`` means ``"runs"`` if :func:`use_retrained` named the model, else shipped."""
    if source is None:
        source = "runs" if name in _retrained else "shipped"
    if isinstance(source, str) and source == "shipped":
        return WEIGHTS_DIR
    if isinstance(source, str) and source == "runs":
        return RUNS_DIR / str(name)
    if isinstance(source, (str, os.PathLike)):
        return Path(source)
    raise TypeError(f"source: expected 'shipped', 'runs' or a folder path, got {type(source).__name__}")


def use_retrained(names=()) -> str:
    """The notebook flag: the models in ``names`` load from ``runs/NAME/`` (what ``./course train NAME`` wrote),
    every other model is the shipped one. Returns the line a notebook prints to say which models run."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    found = {}
    for n in names:
        folder = RUNS_DIR / str(n)
        m = manifest(folder / "manifest.json", missing_ok=True)
        if n not in m:
            hint = (f"train it with `./course train {n}` (it writes {folder}/)" if _known_recipe(n)
                    else "expected names of registered models (./course train --list)")
            raise CheckpointError(f"RETRAINED: there is no retrain of {n!r} in {folder}/; {hint}")
        found[n] = m[n]
    _retrained.clear()
    _retrained.update(names)
    if not names:
        return "models: every one is the shipped one (course_lib/weights/); list a model in RETRAINED to use your retrain"
    parts = [f"{n} ({e.get('steps')} steps, sha256 {e['sha256'][:10]})" for n, e in found.items()]
    return f"models: YOUR RETRAINS from runs/ for {', '.join(parts)}; every other model is the shipped one"


def entry(name: str, source=None) -> dict:
    folder = weights_folder(name, source)
    m = manifest(folder / "manifest.json")
    if name not in m:
        if folder == WEIGHTS_DIR and _known_recipe(name):
            hint = f"build it with `{retrain_command(name)} --ship`"
        elif folder == WEIGHTS_DIR:
            close = difflib.get_close_matches(str(name), sorted(m), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "the names are listed above"
        else:
            hint = f"build it with `{retrain_command(name)}`"
        raise CheckpointError(f"name: expected one of the models in {folder} {sorted(m)}, got {name!r}; {hint}")
    return m[name]


def parent_record(name: str, use: str, source=None) -> dict:
    """What a dependent model records about a parent: its sha256 and what the parent was used for (``use``:
    "autoencoder", "perceptual" or "base" (a ControlNet's frozen denoiser) mean the dependent was trained on it, "metrics" that it was only measured with it)."""
    if use not in _REBUILD:
        raise ValueError(f"use: expected one of {sorted(_REBUILD)}, got {use!r}")
    return {"sha256": entry(name, source)["sha256"], "use": use}


def parent_folder(parent: str, child_folder: Path) -> Path:
    """A parent loads from the child's folder if that folder has it (a self-contained weights folder), else from
    where :func:`weights_folder` says."""
    m = manifest(child_folder / "manifest.json", missing_ok=True)
    return child_folder if parent in m else weights_folder(parent)


# what a changed parent means for its dependent: retrain it (its weights were fitted to the parent) or re-measure it
_REBUILD = {"autoencoder": "retrain", "perceptual": "retrain", "base": "retrain", "metrics": "re-measure"}


def check_parents(name: str, e: dict, folder: Path) -> None:
    """Refuse a model whose parents (recorded with their sha256 when it was trained) are no longer the ones that
    load: the LDM's autoencoder, the GPT's VQGAN, the classifier behind its FD numbers or its LPIPS trunk."""
    for parent, rec in e.get("parents", {}).items():
        pfolder = parent_folder(parent, folder)
        now = entry(parent, pfolder)["sha256"]
        if now != rec["sha256"]:
            retrain = _REBUILD[rec["use"]] == "retrain"
            fix = f"`{retrain_command(name)}`" if retrain else f"`{retrain_command(name)} --eval-only`"
            raise CheckpointError(
                f"{name}: it was {'trained' if retrain else 'measured'} with {parent} ({rec['use']}) of sha256 "
                f"{rec['sha256'][:12]}..., but the {parent} that loads now ({pfolder}) has sha256 {now[:12]}...; "
                f"{_REBUILD[rec['use']]} {name} with {fix}, or load the {parent} it was built with (restore it "
                f"from git, or take it out of RETRAINED)")


def load(name: str, device=None, source=None, verify: bool = True, parents: bool = True):
    """Build the model ``name`` from its manifest entry and load its weights, in eval mode.

    ``source``: see :func:`weights_folder`. Raises :class:`CheckpointError` if the file is missing, its sha256
    differs from the manifest's (a corrupted or half-written file), its tensors do not fit the config, or (unless
    ``parents=False``, for re-measuring it) a parent has changed since it was built (:func:`check_parents`); each
    names the command that rebuilds it.
    """
    folder = weights_folder(name, source)
    e = entry(name, folder)
    path = folder / e["file"]
    if not path.exists():
        raise CheckpointError(f"{name}: weights file {path} is missing; rebuild it with `{retrain_command(name)}`")
    if verify:
        digest = sha256(path)
        if digest != e["sha256"]:
            raise CheckpointError(
                f"{name}: {path.name} has sha256 {digest[:12]}..., the manifest expects {e['sha256'][:12]}... "
                f"(corrupted or replaced file); rebuild it with `{retrain_command(name)}` or restore it from git")
    if parents:
        check_parents(name, e, folder)
    model = build_model(e["model"], e["config"])
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a broken header
        raise CheckpointError(f"{name}: cannot read {path.name} ({exc}); rebuild it with `{retrain_command(name)}`") from exc
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        shapes = [f"{k} {tuple(state[k].shape)} (config wants {tuple(expected[k].shape)})" for k in wrong[:3]]
        raise CheckpointError(f"{name}: weights do not match the config (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}, wrong shapes {shapes}); rebuild it with "
                              f"`{retrain_command(name)}`")
    model.load_state_dict(state, strict=True)
    model.source = {"name": name, "folder": str(folder), "sha256": e["sha256"], "steps": e.get("steps")}
    if device is not None:
        from .device import default_device
        model.to(default_device(device))  # a missing GPU is a clear ValueError naming the device
    return model.eval()


def save(name: str, model: torch.nn.Module, info: dict, weights_dir: Path) -> dict:
    """Write ``NAME.safetensors`` and its manifest entry into ``weights_dir`` (``info`` adds seed, command,
    metrics, parents...). There is no default folder: writing into the package is the caller's explicit choice."""
    from dataclasses import asdict

    wdir = Path(weights_dir)
    wdir.mkdir(parents=True, exist_ok=True)
    path = wdir / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_atomic(path, lambda tmp: save_file(state, str(tmp)))
    e = {
        "file": path.name,
        "sha256": sha256(path),
        "size_bytes": path.stat().st_size,
        "model": type(model).__name__,
        "config": asdict(model.config),
        **info,
    }
    mpath = wdir / "manifest.json"
    m = manifest(mpath, missing_ok=True)
    m[name] = e
    write_manifest(m, mpath)
    return e


def save_log(name: str, tensors: dict, weights_dir: Path) -> dict:
    """Ship a training log beside a model (``NAME.log.safetensors``: snapshots, curves) and record it, with its
    sha256, in the model's manifest entry under ``log_file``. Call after :func:`save`."""
    wdir = Path(weights_dir)
    path = wdir / f"{name}.log.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp)))
    mpath = wdir / "manifest.json"
    m = manifest(mpath, missing_ok=True)
    if name not in m:
        raise CheckpointError(f"name: save the model {name!r} before its log")
    m[name]["log_file"] = {"file": path.name, "sha256": sha256(path), "size_bytes": path.stat().st_size}
    write_manifest(m, mpath)
    return m[name]["log_file"]


def load_log(name: str, source=None) -> dict:
    """The tensors of a model's training log (checked against the manifest's sha256); ``source`` as for :func:`load`."""
    wdir = weights_folder(name, source)
    e = entry(name, wdir)
    if "log_file" not in e:
        raise CheckpointError(f"{name}: expected a training log in its manifest entry (log_file); this model ships none")
    path = wdir / e["log_file"]["file"]
    if not path.exists() or sha256(path) != e["log_file"]["sha256"]:
        raise CheckpointError(f"{name}: log file {path.name} is missing or differs from the manifest; rebuild it "
                              f"with `{retrain_command(name)}`")
    return load_file(str(path))
