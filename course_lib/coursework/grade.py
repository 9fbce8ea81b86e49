"""The grader behind ``./course check``: execute student copies, one row per exercise, a total, JSON for a TA.

Each notebook runs top to bottom in a fresh kernel, in its own folder, errors allowed (so one unfinished
exercise does not hide the others). Every check cell's outcome becomes a row:

=============  ==================================================================================
passed         the check printed its verdict line
not started    the exercise still holds ``raise NotImplementedError`` (or its answer is ``None``)
wrong          the check ran the learner's code and disagrees; the row carries the check's hint
error          the learner's code (or the cell before the check) raised an exception of its own
=============  ==================================================================================

Cells that are not check cells and fail are listed too: a student copy is meant to fail only at checks.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .student import is_check_cell

__all__ = ["Row", "grade_notebook", "grade", "format_report"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NOT_STARTED = {"NotStarted"}
_WRONG = {"CourseworkError", "LibraryCalled", "AssertionError"}
_EXERCISE = re.compile(r"Exercise (\d+\.\d+)")


@dataclass
class Row:
    notebook: str
    exercise: str
    check: str
    status: str  # passed / not started / wrong / error
    message: str = ""


@dataclass
class NotebookReport:
    notebook: str
    rows: list = field(default_factory=list)
    other_errors: list = field(default_factory=list)  # (cell index, "Name: message") of failing non-check cells


def _error_of(cell: dict):
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return out["ename"], _ANSI.sub("", out.get("evalue", ""))
    return None


def _stdout(cell: dict) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def _exercise_of(cell_source: str, check_name: str, nb_cells: list, index: int) -> str:
    from . import EXERCISES

    for key, fn in EXERCISES.items():
        if fn.__name__ == check_name:
            return key
    for prev in reversed(nb_cells[:index]):  # a check outside the table: the exercise title above it
        m = _EXERCISE.search("".join(prev["source"]))
        if m:
            return m.group(1)
    return "?"


def grade_notebook(path: Path, timeout: int = 600) -> NotebookReport:
    """Execute one student copy in a fresh kernel (working directory: its folder) and read its check cells."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    report = NotebookReport(path.name)
    cells = [dict(c) for c in nb.cells]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        err = _error_of(cell)
        if not is_check_cell(cell):
            if err:
                report.other_errors.append((i, f"{err[0]}: {err[1]}"))
            continue
        name = re.search(r"^\s*(check_\w+)\(", source, re.M).group(1)
        exercise = _exercise_of(source, name, cells, i)
        if err is None:
            verdict = _stdout(cell).strip().splitlines()
            row = Row(path.name, exercise, name, "passed", verdict[-1] if verdict else "")
        elif err[0] in _NOT_STARTED:
            row = Row(path.name, exercise, name, "not started", err[1])
        elif err[0] in _WRONG:
            row = Row(path.name, exercise, name, "wrong", err[1])
        else:
            row = Row(path.name, exercise, name, "error", f"{err[0]}: {err[1]}")
        report.rows.append(row)
    return report


def grade(paths, report_path: Path | None = None) -> tuple[list[NotebookReport], dict]:
    reports = [grade_notebook(p) for p in paths]
    rows = [r for rep in reports for r in rep.rows]
    counts = {s: sum(r.status == s for r in rows) for s in ("passed", "not started", "wrong", "error")}
    summary = {"total": len(rows), **counts,
               "other_failing_cells": sum(len(rep.other_errors) for rep in reports),
               "notebooks": [{"notebook": rep.notebook, "rows": [asdict(r) for r in rep.rows],
                              "other_failing_cells": [{"cell": i, "error": e} for i, e in rep.other_errors]}
                             for rep in reports]}
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(summary, indent=1) + "\n")
    return reports, summary


def _short(text: str, width: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_report(reports, summary) -> str:
    lines = [f"{'notebook':28s} {'exercise':8s} {'status':12s} detail"]
    for rep in reports:
        for r in rep.rows:
            detail = "" if r.status == "not started" else _short(r.message)
            lines.append(f"{rep.notebook:28s} {r.exercise:8s} {r.status:12s} {detail}")
        for i, e in rep.other_errors:
            lines.append(f"{rep.notebook:28s} {'cell ' + str(i):8s} {'cell failed':12s} {_short(e)}")
    lines.append(f"total: {summary['passed']}/{summary['total']} passed, {summary['not started']} not started, "
                 f"{summary['wrong']} wrong, {summary['error']} error"
                 + (f"; {summary['other_failing_cells']} other cell(s) failed" if summary["other_failing_cells"] else ""))
    return "\n".join(lines)
