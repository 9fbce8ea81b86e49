"""course_lib: complete, tested implementations behind the diffusion and visual-tokenizer course.

Modules (import what you need; importing the package itself stays cheap):
schedules, diffusion, data, nets, attention, train, checkpoints, metrics, viz, widgets, coursework, device.
"""
__version__ = "0.1.0"

from pathlib import Path as _Path

RESULTS_DIR = _Path(__file__).resolve().parent / "results"


def results_path(name: str) -> _Path:
    """The path of a precomputed result the notebooks display (``python -m course_lib.experiments`` writes them).

    They ship inside the package, beside the weights, so a notebook finds them wherever it lives: in
    ``notebooks/``, in a student copy under ``student/``, or anywhere else.
    """
    path = RESULTS_DIR / name
    if not path.is_file():
        known = sorted(p.name for p in RESULTS_DIR.glob("*")) if RESULTS_DIR.is_dir() else []
        raise FileNotFoundError(f"results_path: no result named {name!r} in {RESULTS_DIR}; expected one of "
                                f"{known} (rebuild with `python -m course_lib.experiments NAME`)")
    return path
