"""Coursework: checks for the exercise cells, and the generator of student notebooks.

Instructor notebooks fence each solution with ``### BEGIN SOLUTION`` / ``### END SOLUTION``
(the nbgrader convention); ``python -m course_lib.coursework student`` writes copies in which
each fenced block becomes ``raise NotImplementedError("Exercise N.k: ...")``.

Each exercise is followed by a check cell, e.g. ``check_q_sample_at(q_sample_at)``. A check
runs the learner's function and the reference on random and edge-case inputs and prints one
deterministic line (``q_sample_at: 12/12 cases match``), or raises :class:`CourseworkError`
with a hint that names what differs: a known mistake it recognises (a sign flip, a missing
square root, an off-by-one timestep), a wrong shape, or the case and the size of the error.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .diffusion import q_sample
from .schedules import alphas_cumprod, cosine_betas, linear_betas

__all__ = ["CourseworkError", "check_function", "check_alphas_cumprod", "check_q_sample_at",
           "make_student_notebook", "main", "EXERCISES"]


class CourseworkError(AssertionError):
    """The learner's function disagrees with the reference; the message says how."""


@dataclass
class Case:
    label: str
    kwargs: dict


def _clone(kwargs: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _matches(a, b, atol, rtol) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def check_function(name: str, learner_fn, reference_fn, cases: list[Case], mistakes: dict | None = None,
                   atol: float = 1e-5, rtol: float = 1e-4, exercise: str = "") -> str:
    """Compare ``learner_fn`` with ``reference_fn`` on every case; print and return the verdict line.

    mistakes: {hint: wrong_fn}: when the learner's output matches a wrong_fn on a failing case,
    the error says that hint, so the learner learns *what* is wrong, not only *that* it is.
    """
    if not callable(learner_fn):
        raise TypeError(f"learner_fn: expected your function, got {type(learner_fn).__name__}")
    where = f" ({exercise})" if exercise else ""
    for i, case in enumerate(cases):
        expected = reference_fn(**_clone(case.kwargs))
        try:
            got = learner_fn(**_clone(case.kwargs))
        except NotImplementedError:
            raise CourseworkError(f"{name}{where}: not implemented yet - replace the `raise NotImplementedError` "
                                  f"line of the exercise cell with your code, run it, then run this check again") from None
        except Exception as exc:
            raise CourseworkError(f"{name}{where}: case {i + 1}/{len(cases)} ({case.label}) raised "
                                  f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(got, torch.Tensor):
            raise CourseworkError(f"{name}{where}: expected a torch.Tensor, got {type(got).__name__} "
                                  f"(case {case.label})")
        if got.shape != expected.shape:
            raise CourseworkError(f"{name}{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)} "
                                  f"(case {case.label}); check how the per-sample coefficient broadcasts")
        if _matches(got, expected, atol, rtol):
            continue
        for hint, wrong in (mistakes or {}).items():
            try:
                w = wrong(**_clone(case.kwargs))
            except Exception:
                continue
            if _matches(got, w, atol, rtol):
                raise CourseworkError(f"{name}{where}: case {case.label}: {hint}")
        diff = (got.double() - expected.double()).abs()
        where_max = tuple(int(j) for j in torch.nonzero(diff == diff.max())[0])
        raise CourseworkError(
            f"{name}{where}: case {i + 1}/{len(cases)} ({case.label}) differs: max |yours - reference| = "
            f"{diff.max().item():.3g} at index {where_max} (yours {got.double()[where_max].item():.5g}, "
            f"reference {expected.double()[where_max].item():.5g})")
    line = f"{name}: {len(cases)}/{len(cases)} cases match"
    print(line)
    return line


# -- Exercise 0.1: alphas_cumprod -------------------------------------------------------------------------------
def _alphas_cumprod_cases() -> list[Case]:
    return [
        Case("linear schedule, T=1000", {"betas": linear_betas(1000)}),
        Case("cosine schedule, T=1000", {"betas": cosine_betas(1000)}),
        Case("linear schedule, T=10", {"betas": linear_betas(10, 0.01, 0.2)}),
        Case("a single step (T=1)", {"betas": torch.tensor([0.3], dtype=torch.float64)}),
        Case("random betas", {"betas": torch.rand(50, generator=torch.Generator().manual_seed(1),
                                                   dtype=torch.float64) * 0.5 + 0.01}),
    ]


def check_alphas_cumprod(fn) -> str:
    """Exercise 0.1: ``fn(betas) -> alphas_cumprod``, abar_t = prod_{s<=t} (1 - beta_s)."""
    mistakes = {
        "you multiplied the betas, not (1 - beta): abar_t = prod (1 - beta_s)": lambda betas: torch.cumprod(betas, 0),
        "you summed instead of multiplying: abar_t is a cumulative *product*": lambda betas: torch.cumsum(1 - betas, 0),
        "off by one: abar_0 must already include beta_1, i.e. alphas_cumprod[0] = 1 - betas[0]":
            lambda betas: torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)[:-1]]),
        "you returned alpha_t = 1 - beta_t for each step alone; take the cumulative product":
            lambda betas: 1 - betas,
    }
    return check_function("alphas_cumprod", fn, alphas_cumprod, _alphas_cumprod_cases(), mistakes,
                          atol=1e-9, rtol=1e-7, exercise="Exercise 0.1")


# -- Exercise 0.2: q_sample at integer timesteps ----------------------------------------------------------------
def _q_sample_at_reference(x0, alphas_cumprod, t, noise):
    return q_sample(x0, alphas_cumprod[t].float(), noise)


def _q_sample_at_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    ac = alphas_cumprod(linear_betas(1000)).float()
    acc = alphas_cumprod(cosine_betas(1000)).float()
    cases = []
    for label, shape, t, table in [
        ("batch of 2-D points, random t", (64, 2), torch.randint(0, 1000, (64,), generator=g), ac),
        ("batch of images, random t", (8, 3, 16, 16), torch.randint(0, 1000, (8,), generator=g), ac),
        ("t = 0 (almost clean)", (16, 2), torch.zeros(16, dtype=torch.long), ac),
        ("t = T-1 (almost pure noise)", (16, 2), torch.full((16,), 999), ac),
        ("one sample", (1, 3, 8, 8), torch.tensor([500]), ac),
        ("cosine schedule", (32, 2), torch.randint(0, 1000, (32,), generator=g), acc),
        ("increasing t", (10, 2), torch.arange(0, 1000, 100), ac),
    ]:
        cases.append(Case(label, {"x0": torch.randn(shape, generator=g), "alphas_cumprod": table, "t": t,
                                  "noise": torch.randn(shape, generator=g)}))
    return cases


def _wrong_q(coef_x0, coef_eps, shift=0):
    def f(x0, alphas_cumprod, t, noise):
        a = alphas_cumprod[(t + shift).clamp(0, len(alphas_cumprod) - 1)].float()
        a = a.reshape(-1, *([1] * (x0.ndim - 1)))
        return coef_x0(a) * x0 + coef_eps(a) * noise
    return f


def check_q_sample_at(fn) -> str:
    """Exercise 0.2: ``fn(x0, alphas_cumprod, t, noise) -> x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``."""
    sq, one_minus = torch.sqrt, (lambda a: torch.sqrt(1 - a))
    mistakes = {
        "sign flip: the noise term is + sqrt(1 - abar_t) * noise": _wrong_q(sq, lambda a: -torch.sqrt(1 - a)),
        "missing square roots: the coefficients are sqrt(abar_t) and sqrt(1 - abar_t), not abar_t and 1 - abar_t":
            _wrong_q(lambda a: a, lambda a: 1 - a),
        "missing square root on the x0 coefficient: sqrt(abar_t) * x0": _wrong_q(lambda a: a, one_minus),
        "missing square root on the noise coefficient: sqrt(1 - abar_t) * noise": _wrong_q(sq, lambda a: 1 - a),
        "x0 and noise coefficients are swapped": _wrong_q(one_minus, sq),
        "off-by-one timestep: use alphas_cumprod[t] (the table is 0-indexed), not alphas_cumprod[t - 1]":
            _wrong_q(sq, one_minus, shift=-1),
        "off-by-one timestep: use alphas_cumprod[t], not alphas_cumprod[t + 1]": _wrong_q(sq, one_minus, shift=1),
    }
    return check_function("q_sample_at", fn, _q_sample_at_reference, _q_sample_at_cases(), mistakes,
                          exercise="Exercise 0.2")


EXERCISES = {"0.1": check_alphas_cumprod, "0.2": check_q_sample_at}


# -- student notebooks ------------------------------------------------------------------------------------------
_BEGIN, _END = "### BEGIN SOLUTION", "### END SOLUTION"
_EXERCISE_TITLE = re.compile(r"#\s*Exercise\s+(\d+\.\d+)\s*[:.\-\u2014]?\s*(.*)")


def strip_solutions(source: str, fallback_id: str) -> tuple[str, int]:
    """Replace every fenced solution in one cell's source; returns (new source, number replaced)."""
    lines = source.splitlines(keepends=True)
    title = next((m for m in map(_EXERCISE_TITLE.search, lines) if m), None)
    label = f"Exercise {title.group(1)}: {title.group(2).strip()}" if title else f"Exercise {fallback_id}"
    out, inside, count, indent = [], False, 0, ""
    for line in lines:
        stripped = line.strip()
        if stripped == _BEGIN:
            if inside:
                raise ValueError(f"{label}: nested '{_BEGIN}'")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            continue
        if stripped == _END:
            if not inside:
                raise ValueError(f"{label}: '{_END}' without '{_BEGIN}'")
            inside = False
            count += 1
            out.append(f"{indent}raise NotImplementedError({label!r})\n")
            continue
        if not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{label}: '{_BEGIN}' without '{_END}'")
    return "".join(out), count


def make_student_notebook(src: Path, dst: Path) -> int:
    """Write the student copy of one notebook; returns the number of exercises replaced."""
    nb = json.loads(Path(src).read_text())
    total = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if _BEGIN not in source:
            continue
        new, n = strip_solutions(source, f"{Path(src).stem}.{total + 1}")
        total += n
        cell["source"] = new.splitlines(keepends=True)
        cell["outputs"] = []  # the solution's outputs would give the answer away
        cell["execution_count"] = None
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return total


def main(argv=None):
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(prog="python -m course_lib.coursework")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="write student copies of the notebooks, solutions removed")
    s.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/*.ipynb")
    s.add_argument("--out", type=Path, default=root / "student", help="default: student/")
    a = p.parse_args(argv)
    nbs = a.notebooks or sorted((root / "notebooks").glob("*.ipynb"))
    for nb in nbs:
        n = make_student_notebook(nb, a.out / nb.name)
        print(f"{a.out / nb.name}: {n} exercise(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
