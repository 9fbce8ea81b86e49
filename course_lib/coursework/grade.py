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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .student import EXERCISE_TITLE, is_check_cell

__all__ = ["Row", "grade_notebook", "grade", "format_report"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NOT_STARTED = {"NotStarted"}
_WRONG = {"CourseworkError", "LibraryCalled", "AssertionError"}


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


def _exercise_of(check_name: str, nb_cells: list, index: int) -> str:
    from . import EXERCISES

    for key, fn in EXERCISES.items():
        if fn.__name__ == check_name:
            return key
    for prev in reversed(nb_cells[:index]):  # a check outside the table: the exercise title above it
        m = EXERCISE_TITLE.search("".join(prev["source"]))
        if m:
            return m.group(1)
    return "?"


def _execute(cells: list, cwd: Path, timeout: float) -> None:
    """Run the code cells in a fresh kernel started in ``cwd``; each cell's outputs become its stream text and, if it
    raised, one error output.

    A cell's outcome is read from its execute_reply on the shell channel (status, ename, evalue), its printed text
    from iopub. nbclient's bookkeeping of widget comms was seen to wait forever after a widget cell on a loaded
    machine, kernel idle, so the grader keeps to these two messages. A cell that runs past ``timeout`` seconds
    is recorded as an error and the rest of the notebook is not run (its checks then report "error")."""
    from queue import Empty

    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), startup_timeout=120)
    try:
        stopped = None
        for i, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            if stopped is not None:
                cell["outputs"] = [{"output_type": "error", "ename": "NotRun",
                                    "evalue": f"not run: cell {stopped} did not finish within {timeout:.0f} s"}]
                continue
            msg_id = kc.execute("".join(cell["source"]), store_history=True, allow_stdin=False)
            text, reply, idle, deadline = [], None, False, time.monotonic() + timeout
            while reply is None and time.monotonic() < deadline:
                try:
                    msg = kc.get_shell_msg(timeout=0.2)
                    if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_reply":
                        reply = msg["content"]
                except Empty:
                    pass
                idle = _drain_stream(kc, msg_id, text, wait=0.0) or idle
            if not idle:  # what was printed just before the reply may still be on its way
                _drain_stream(kc, msg_id, text, wait=2.0)
            outputs = [{"output_type": "stream", "name": "stdout", "text": "".join(text)}] if text else []
            if reply is None:
                stopped = i
                km.interrupt_kernel()
                outputs.append({"output_type": "error", "ename": "CellTimeout",
                                "evalue": f"the cell did not finish within {timeout:.0f} s"})
            elif reply.get("status") == "error":
                outputs.append({"output_type": "error", "ename": reply.get("ename", "Error"),
                                "evalue": reply.get("evalue", "")})
            cell["outputs"] = outputs
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _drain_stream(kc, msg_id: str, text: list, wait: float) -> bool:
    """Append the stream text of ``msg_id`` waiting on iopub to ``text``; with ``wait``, keep waiting up to that many
    seconds for more. Returns whether the cell's "idle" status arrived (nothing more will come)."""
    from queue import Empty

    deadline = time.monotonic() + wait
    while True:
        try:
            msg = kc.get_iopub_msg(timeout=max(0.01, deadline - time.monotonic()))
        except Empty:
            return False
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text.append(msg["content"]["text"])
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return True


def grade_notebook(path: Path, timeout: int = 600) -> NotebookReport:
    """Execute one student copy in a fresh kernel (working directory: its folder) and read its check cells."""
    path = Path(path)
    cells = json.loads(path.read_text())["cells"]
    _execute(cells, path.parent.resolve(), timeout)
    report = NotebookReport(path.name)
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
        exercise = _exercise_of(name, cells, i)
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
                 + (f"; {summary['other_failing_cells']} other cell(s) failed" if summary["other_failing_cells"]
                    else ""))
    return "\n".join(lines)
