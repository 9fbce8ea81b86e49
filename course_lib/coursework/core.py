"""The machinery every check shares: cases, the comparison with the reference, and the library made unavailable.

A check runs the learner's function and the reference on random and edge-case inputs and prints one
deterministic line once (``q_sample_at: 7/7 cases match``), or raises :class:`CourseworkError` with a hint
that names what differs: a known mistake it recognises (a sign flip, a missing square root, an off-by-one
timestep), a wrong shape, or the case and the size of the error.

While the learner's function runs, the ``course_lib`` function the exercise replaces is patched to raise
"Exercise N.k asks you to write this yourself" (:func:`library_unavailable`), wherever it is reachable by
name: in its module, in every module that imported it, in the notebook's namespace and in the closure of
the learner's function. So a one-line wrapper around the library fails with that hint, and any correct
implementation of one's own passes.
"""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["CourseworkError", "NotStarted", "LearnerCodeRaised", "LibraryCalled", "Verdict", "Case",
           "check_function", "library_unavailable", "not_started_message", "check_prediction", "check_number", "check_choice",
           "announce"]


class CourseworkError(AssertionError):
    """The learner's function disagrees with the reference; the message says how."""


class NotStarted(CourseworkError):
    """The exercise still holds its ``raise NotImplementedError`` (or its answer is still ``None``)."""


class LearnerCodeRaised(CourseworkError):
    """The learner's code raised an exception of its own (the grader reports it as an error, not a wrong answer)."""


class LibraryCalled(CourseworkError):
    """The learner's function called the ``course_lib`` function the exercise asks them to write."""


class Verdict(str):
    """A check's one-line verdict. In a notebook it is printed once by the check; returning it displays nothing
    more (IPython asks ``_ipython_display_`` first), so the line does not appear twice."""

    def _ipython_display_(self):
        return None


@dataclass
class Case:
    label: str
    kwargs: dict


def not_started_message(name: str, exercise: str) -> str:
    where = f" ({exercise})" if exercise else ""
    return (f"{name}{where}: not implemented yet - replace the `raise NotImplementedError` line of the exercise "
            "cell with your code, run it, then run this check again")


def _clone(kwargs: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _matches(a, b, atol, rtol) -> bool:
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
            and torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def _describe(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}" if hasattr(obj, "__qualname__") else repr(obj)


def _stub(original, exercise: str):
    name = _describe(original)

    def unavailable(*args, **kwargs):
        raise LibraryCalled(f"{exercise or 'this exercise'} asks you to write this yourself: your function calls "
                            f"course_lib's `{name}`, which is switched off while the check runs. Write the "
                            "computation with torch operations (your own earlier exercises may be called).")
    unavailable.__wrapped_original__ = original
    return unavailable


@contextmanager
def library_unavailable(replaces, exercise: str = "", learner_fns=()):
    """Within the block, each callable of ``replaces`` raises :class:`LibraryCalled` with the exercise's hint.

    replaces:    functions, or ``(class, "method")`` pairs, of course_lib that the exercise asks the learner to write.
    learner_fns: the learner's functions; their globals (the notebook's namespace) and closures are searched too,
                 so an alias such as ``f = predicted_x0`` is caught as well as ``course_lib.diffusion.predicted_x0``.
    Everything is restored on the way out, also when the learner's code raises.
    """
    undo = []
    try:
        for target in replaces:
            if isinstance(target, tuple):  # a method: patch the class attribute itself
                owner, attr = target
                original = owner.__dict__[attr]
                undo.append((setattr, owner, attr, original))
                setattr(owner, attr, _stub(original, exercise))
                continue
            stub = _stub(target, exercise)
            # every module under the function's own name (``module.f`` and ``from module import f``); the
            # learner's namespaces under any name (an alias such as ``f = predicted_x0``)
            name = getattr(target, "__name__", None)
            places = [(m.__dict__, name) for m in list(sys.modules.values())
                      if isinstance(m, types.ModuleType) and name and m.__dict__.get(name) is target]
            seen = set()
            for fn in learner_fns:
                ns = getattr(fn, "__globals__", None)
                if ns is None or id(ns) in seen:
                    continue
                seen.add(id(ns))
                places += [(ns, key) for key, value in list(ns.items()) if value is target]
            for ns, key in places:
                if ns.get(key) is target:
                    undo.append((dict.__setitem__, ns, key, target))
                    ns[key] = stub
            for fn in learner_fns:
                for cell in getattr(fn, "__closure__", None) or ():
                    try:
                        held = cell.cell_contents
                    except ValueError:  # an empty cell
                        continue
                    if held is target:
                        undo.append((setattr, cell, "cell_contents", held))
                        cell.cell_contents = stub
        yield
    finally:
        for setter, owner, key, value in reversed(undo):
            setter(owner, key, value)


def expect_function(fn, name: str = "learner_fn"):
    """A check is given the learner's function: anything else (a number, None, a result) is refused by name."""
    if not callable(fn):
        raise TypeError(f"{name}: expected your function (def ...), got {type(fn).__name__}")
    return fn


def run_learner(name: str, exercise: str, fn, kwargs: dict, label: str, position: str, replaces=(), learner=None):
    """Call the learner's ``fn(**kwargs)`` with the library it replaces unavailable; turn what it raises into a
    :class:`CourseworkError` whose message says what to do."""
    expect_function(learner if learner is not None else fn)
    where = f" ({exercise})" if exercise else ""
    originals = [t[0].__dict__[t[1]] if isinstance(t, tuple) else t for t in replaces]
    for given in (fn, learner):
        if any(given is o for o in originals):  # the library function itself, handed over as the answer
            raise LibraryCalled(f"{name}{where}: {exercise or 'this exercise'} asks you to write this yourself: you "
                                f"passed course_lib's `{_describe(given)}` itself. Write the computation with torch "
                                "operations.")
    try:
        with library_unavailable(replaces, exercise, (fn,) if learner is None else (fn, learner)):
            return fn(**_clone(kwargs))
    except NotImplementedError:
        raise NotStarted(not_started_message(name, exercise)) from None
    except CourseworkError as exc:
        if isinstance(exc, LibraryCalled):
            raise LibraryCalled(f"{name}{where}: {exc}") from None
        raise
    except Exception as exc:
        raise LearnerCodeRaised(f"{name}{where}: case {position} ({label}) raised {type(exc).__name__}: {exc}") from exc


def check_function(name: str, learner_fn, reference_fn, cases: list[Case], mistakes: dict | None = None,
                   atol: float = 1e-5, rtol: float = 1e-4, exercise: str = "", nan_hint: str = "",
                   replaces=(), announce: bool = True, learner=None) -> Verdict:
    """Compare ``learner_fn`` with ``reference_fn`` on every case; print (once, if ``announce``) and return the
    verdict line. The line is printed only when every case passed.

    mistakes: {hint: wrong_fn}: when the learner's output matches a wrong_fn on a failing case,
              the error says that hint, so the learner learns *what* is wrong, not only *that* it is.
    replaces: the course_lib functions the exercise asks for; they raise while the learner's function runs.
    learner:  the learner's own function when learner_fn wraps it (its namespace is searched for aliases).
    """
    expect_function(learner_fn)
    if learner is not None:
        expect_function(learner)  # learner_fn wraps it: a non-function must not reach the wrapper's call
    where = f" ({exercise})" if exercise else ""
    for i, case in enumerate(cases):
        expected = reference_fn(**_clone(case.kwargs))
        got = run_learner(name, exercise, learner_fn, case.kwargs, case.label, f"{i + 1}/{len(cases)}", replaces,
                          learner)
        if not isinstance(got, torch.Tensor):
            raise CourseworkError(f"{name}{where}: expected a torch.Tensor, got {type(got).__name__} "
                                  f"(case {case.label})")
        if got.shape != expected.shape:
            raise CourseworkError(f"{name}{where}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)} "
                                  f"(case {case.label}); check how the per-sample coefficient broadcasts")
        if _matches(got, expected, atol, rtol):
            continue
        bad = torch.isnan(got) & ~torch.isnan(expected)
        if bool(bad.any()):
            idx = tuple(int(j) for j in torch.nonzero(bad)[0])
            raise CourseworkError(f"{name}{where}: case {i + 1}/{len(cases)} ({case.label}): your output is NaN at "
                                  f"index {idx}, the reference is {expected[idx].item():.5g}. {nan_hint}".rstrip())
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
    line = Verdict(f"{name}: {len(cases)}/{len(cases)} cases match")
    if announce:
        print(line)
    return line


def announce(line: str) -> Verdict:
    """Print a verdict assembled from several parts, once, and return it."""
    v = Verdict(line)
    print(v)
    return v


def check_prediction(name: str, exercise: str, prediction, choices: dict, outcome: str, measured: str,
                     why: str) -> Verdict:
    """A predict-then-run question: the learner recorded ``prediction`` (a key of ``choices``) before the
    experiment ran; ``outcome`` is the choice the measurement ``measured`` supports. Any recorded prediction
    passes (it is a prediction, not an answer); the line says whether it came true, and why."""
    if prediction is None:
        raise NotStarted(f"{name} ({exercise}): no prediction yet - set `prediction` to one of "
                         f"{sorted(choices)} in the cell above the experiment, before you run it")
    if not isinstance(prediction, str) or prediction.strip().lower() not in choices:
        raise CourseworkError(f"{name} ({exercise}): prediction: expected one of {sorted(choices)}, "
                              f"got {prediction!r}")
    p = prediction.strip().lower()
    verdict = "it came true" if p == outcome else f"what happened is ({outcome}) {choices[outcome]}"
    return announce(f"{name}: you predicted ({p}) {choices[p]}; measured {measured}: {verdict}. {why}")


def check_number(name: str, exercise: str, argument: str, value, expected: float, tolerance: float,
                 hint: str = "") -> float:
    """One numerical answer of an experiment against the value the library measures; returns it as a float.
    Raises NotStarted for None, CourseworkError (naming ``argument``) for a non-number or a value off by more than
    ``tolerance``; ``hint`` says what the likely slip is."""
    if value is None:
        raise NotStarted(f"{name} ({exercise}): {argument} is still None - run your experiment and set it")
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CourseworkError(f"{name} ({exercise}): {argument}: expected a number, got {type(value).__name__}")
    if not abs(float(value) - expected) <= tolerance:
        side = "too high" if float(value) > expected else "too low"
        raise CourseworkError(f"{name} ({exercise}): {argument} = {value:.4g} is {side} for what the experiment "
                              f"measures (tolerance {tolerance:g}). {hint}".rstrip())
    return float(value)


def check_choice(name: str, exercise: str, argument: str, value, choices):
    """One answer of an experiment that must be one of ``choices`` (a grid value, a word); returns it. Raises
    CourseworkError naming ``argument``, the choices and what came."""
    if value not in choices:
        raise CourseworkError(f"{name} ({exercise}): {argument}: expected one of {choices}, got {value!r}")
    return value
