"""The registry of shipped weights.

``course_lib/weights/manifest.json`` lists every shipped model: its file, sha256, model
class and config, seed, the command that rebuilds it, wall time, device and final metrics.
Weights are safetensors (tensors only: loading cannot run code). :func:`load` checks the
hash before it builds the model, and every failure names the command that rebuilds the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .nets import build_model

__all__ = ["WEIGHTS_DIR", "MANIFEST", "CheckpointError", "manifest", "entry", "load", "save", "sha256", "write_atomic",
           "write_manifest"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


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
               "`python -m course_lib.train NAME --weights-dir ...`")
    if not path.exists():
        if missing_ok:
            return {}
        raise CheckpointError(f"manifest: {path} is missing; {restore}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"manifest: {path} is not readable JSON ({exc}); {restore}") from None


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


def entry(name: str, weights_dir: Path | None = None) -> dict:
    m = manifest(Path(weights_dir) / "manifest.json" if weights_dir else None)
    if name not in m:
        raise CheckpointError(f"name: no shipped model called {name!r}; known: {sorted(m)}. "
                              f"If it is a registered recipe, build it with `{retrain_command(name)}`")
    return m[name]


def load(name: str, device=None, weights_dir: Path | None = None, verify: bool = True):
    """Build the model ``name`` from the manifest and load its weights, in eval mode.

    Raises :class:`CheckpointError` if the file is missing or its sha256 differs from the
    manifest's (a corrupted or half-written file), naming the command that rebuilds it.
    """
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    e = entry(name, wdir)
    path = wdir / e["file"]
    if not path.exists():
        raise CheckpointError(f"{name}: weights file {path} is missing; rebuild it with `{retrain_command(name)}`")
    if verify:
        digest = sha256(path)
        if digest != e["sha256"]:
            raise CheckpointError(
                f"{name}: {path.name} has sha256 {digest[:12]}..., the manifest expects {e['sha256'][:12]}... "
                f"(corrupted or replaced file); rebuild it with `{retrain_command(name)}` or restore it from git")
    model = build_model(e["model"], e["config"])
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a broken header
        raise CheckpointError(f"{name}: cannot read {path.name} ({exc}); rebuild it with `{retrain_command(name)}`") from exc
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"{name}: weights do not match the config (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]}); rebuild it with `{retrain_command(name)}`")
    model.load_state_dict(state, strict=True)
    if device is not None:
        model.to(device)
    return model.eval()


def save(name: str, model: torch.nn.Module, info: dict, weights_dir: Path | None = None) -> dict:
    """Write ``NAME.safetensors`` and its manifest entry (``info`` adds seed, command, metrics...)."""
    from dataclasses import asdict

    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
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


def save_log(name: str, tensors: dict, weights_dir: Path | None = None) -> dict:
    """Ship a training log beside a model (``NAME.log.safetensors``: snapshots, curves) and record it, with its
    sha256, in the model's manifest entry under ``log_file``. Call after :func:`save`."""
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
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


def load_log(name: str, weights_dir: Path | None = None) -> dict:
    """The tensors of a model's shipped training log (checked against the manifest's sha256)."""
    wdir = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    e = entry(name, wdir)
    if "log_file" not in e:
        raise CheckpointError(f"{name}: this model ships no training log")
    path = wdir / e["log_file"]["file"]
    if not path.exists() or sha256(path) != e["log_file"]["sha256"]:
        raise CheckpointError(f"{name}: log file {path.name} is missing or differs from the manifest; rebuild it "
                              f"with `{retrain_command(name)}`")
    return load_file(str(path))
