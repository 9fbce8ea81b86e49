"""course_lib: complete, tested implementations behind the diffusion and visual-tokenizer course.

Modules (import what you need; importing the package itself stays cheap):
schedules, diffusion, data, nets, attention, train, checkpoints, metrics, viz, widgets, coursework, device.
"""
__version__ = "0.1.0"

from pathlib import Path as _Path

RESULTS_DIR = _Path(__file__).resolve().parent / "results"


def show(fn) -> None:
    """Print the lines of ``fn`` that compute its equation, without its argument checks (see course_lib.source)."""
    from .source import show as _show  # imports only ast and inspect

    _show(fn)


def results_path(name: str) -> _Path:
    """The path of a precomputed result the notebooks display (``python -m course_lib.experiments`` writes them).

    They ship inside the package, beside the weights, so a notebook finds them wherever it lives: in
    ``notebooks/``, in a student copy under ``student/``, or anywhere else.
    """
    path = RESULTS_DIR / name
    if not path.is_file():
        from .experiments import SWEEPS  # only on this path: it imports the models

        stem = _Path(name).stem
        sweep = next((k for k, (_, res, samples) in SWEEPS.items() if stem in (res, samples)), None)
        how = (f"rebuild it with `python -m course_lib.experiments {sweep}`" if sweep else
               f"no sweep writes it; the results are {sorted(p.name for p in RESULTS_DIR.glob('*.*'))}")
        raise FileNotFoundError(f"results_path: {name!r} is missing from {RESULTS_DIR}; {how} (a fresh checkout "
                                "ships every result: `git checkout -- course_lib/results` restores them)")
    return path
