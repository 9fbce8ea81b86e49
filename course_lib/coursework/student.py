"""Student copies of the instructor notebooks (``./course student``).

Instructor notebooks fence each solution with ``### BEGIN SOLUTION`` / ``### END SOLUTION`` (nbgrader's
convention). In the student copy:

- a fence inside a function becomes ``raise NotImplementedError("Exercise N.k: ...")``;
- a fence at the top level of a cell (an answer: a prediction, the result of an experiment) becomes
  ``NAME = None`` for each name it assigns, so the cell runs and its check says "not started";
- a cell tagged ``reveals-solution`` (it shows what an exercise asks for, e.g. ``inspect.getsource`` of the
  library function) becomes a short note saying what was hidden, with its source and outputs gone;
- every check cell (one that calls ``check_...``) and every exercise cell loses its stored outputs, so nothing
  green shows before the learner has written anything.
"""
from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path

__all__ = ["BEGIN", "END", "REVEALS_TAG", "StudentCopyEdited", "strip_solutions", "student_copy",
           "make_student_notebook", "solution_blocks", "is_check_cell"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
REVEALS_TAG = "reveals-solution"
EXERCISE_TITLE = re.compile(r"#\s*Exercise\s+(\d+\.\d+)\s*[:.\-\u2014]?\s*(.*)")
_CHECK_CALL = re.compile(r"^\s*check_\w+\(", re.M)


def is_check_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and bool(_CHECK_CALL.search("".join(cell["source"])))


def _assigned_names(block: str, label: str) -> list[str]:
    """Names a top-level solution block assigns at its own top level (its answer variables)."""
    try:
        tree = ast.parse(block)
    except SyntaxError as exc:
        raise ValueError(f"{label}: the top-level solution does not parse: {exc}") from None
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            for n in ast.walk(target):
                if isinstance(n, ast.Name) and n.id not in names:
                    names.append(n.id)
    if not names:
        raise ValueError(f"{label}: a solution at the top level of a cell must assign its answer to a name")
    return names


def solution_blocks(source: str) -> list[tuple[str, str]]:
    """The fenced blocks of one cell's source as (indent, text) pairs, in order."""
    blocks, inside, indent, lines = [], False, "", []
    for line in source.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == BEGIN:
            inside, indent, lines = True, line[: len(line) - len(line.lstrip())], []
        elif stripped == END and inside:
            blocks.append((indent, "".join(lines)))
            inside = False
        elif inside:
            lines.append(line)
    return blocks


def strip_solutions(source: str, fallback_id: str) -> tuple[str, int]:
    """Replace every fenced solution in one cell's source; returns (new source, number replaced)."""
    lines = source.splitlines(keepends=True)
    title = next((m for m in map(EXERCISE_TITLE.search, lines) if m), None)
    label = f"Exercise {title.group(1)}: {title.group(2).strip()}" if title else f"Exercise {fallback_id}"
    out, inside, count, indent, block = [], False, 0, "", []
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"{label}: nested '{BEGIN}'")
            inside, indent, block = True, line[: len(line) - len(line.lstrip())], []
            continue
        if stripped == END:
            if not inside:
                raise ValueError(f"{label}: '{END}' without '{BEGIN}'")
            inside = False
            count += 1
            if indent:  # inside a function: the learner writes its body
                out.append(f"{indent}raise NotImplementedError({label!r})\n")
            else:  # an answer at the top level: the cell must still run, the check then says "not started"
                for name in _assigned_names("".join(block), label):
                    out.append(f"{name} = None  # {label.split(':')[0]}: your answer here\n")
            continue
        if inside:
            block.append(line)
        else:
            out.append(line)
    if inside:
        raise ValueError(f"{label}: '{BEGIN}' without '{END}'")
    return "".join(out), count


def _hidden_note(cell: dict, notebook: str) -> dict:
    exercise = cell.get("metadata", {}).get("course", {}).get("reveals", "")
    what = f"the answer to Exercise {exercise}" if exercise else "an exercise's answer"
    text = (f"*Hidden in your copy: this cell shows {what}. Solve the exercise first; the instructor notebook "
            f"`notebooks/{notebook}` has the cell.*")
    return {"cell_type": "markdown", "metadata": {"tags": [REVEALS_TAG + "-hidden"]}, "source": [text]}


class StudentCopyEdited(FileExistsError):
    """The student copy exists and differs from a fresh one: it holds the learner's work, and is not replaced."""


def student_copy(src: Path) -> tuple[str, int]:
    """The text of the student copy of one instructor notebook, and the number of solution blocks replaced."""
    nb = json.loads(Path(src).read_text())
    total, cells, predicting = 0, [], False
    for cell in nb["cells"]:
        if REVEALS_TAG in cell.get("metadata", {}).get("tags", []):
            cells.append(_hidden_note(cell, Path(src).name))
            continue
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            answer = any(not indent for indent, _ in solution_blocks(source))
            if BEGIN in source:
                new, n = strip_solutions(source, f"{Path(src).stem}.{total + 1}")
                total += n
                cell["source"] = new.splitlines(keepends=True)
            # a solution's outputs, a check's stored verdict, or (after a prediction) the experiment's stored result
            # would give the answer away
            if BEGIN in source or is_check_cell(cell) or predicting:
                cell["outputs"] = []
                cell["execution_count"] = None
            if answer:
                predicting = True  # until the check: the learner predicts before the experiment runs
            if is_check_cell(cell):
                predicting = False
        cells.append(cell)
    nb["cells"] = cells
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n", total


def make_student_notebook(src: Path, dst: Path, force: bool = False) -> int:
    """Write the student copy of one notebook; returns the number of solution blocks replaced.

    An existing copy that differs from a fresh one holds the learner's work: it is left alone
    (:class:`StudentCopyEdited`) unless ``force``, which first moves it to ``NAME.ipynb.bak-YYYYmmdd-HHMMSS``.
    The copy is written to a temporary file beside it and moved into place, so an interrupted write leaves either
    the old copy or the new one, never half of one."""
    text, total = student_copy(src)
    dst = Path(dst)
    if dst.exists() and dst.read_text() != text:
        if not force:
            raise StudentCopyEdited(f"{dst}: differs from a fresh copy (your work is in it), so it was kept; to "
                                    f"replace it, run `./course student --force {Path(src).name}` (the old copy is "
                                    "kept as a .bak file)")
        backup = dst.with_name(f"{dst.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(dst, backup)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return total
