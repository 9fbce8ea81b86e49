"""Automatic mutants of the reference solutions in the instructor notebooks (used by test_coursework).

Each mutant changes one place of one solution, the slips a learner makes: an operator flipped (+/-, * and /,
> and <), the operands of a subtraction or division swapped, a square root or a power dropped, a ``.detach()``
or a clamp dropped, ``mean`` and ``sum`` swapped, a ``dim`` moved by one, an index shifted by one, a negation
dropped. A check is good when it rejects nearly every mutant that still runs.
"""
from __future__ import annotations

import ast
import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from course_lib.coursework.student import BEGIN, END

_TITLE = re.compile(r"#\s*Exercise\s+(\d+\.\d+)")


@dataclass
class Solution:
    notebook: str
    exercise: str
    source: str               # the whole exercise cell
    lines: tuple[int, int]    # first and last line (1-based) of the fenced solution, inclusive
    functions: list[str]      # the names the cell defines


def solutions(notebook: Path) -> list[Solution]:
    """Every exercise cell of a notebook whose solutions are function bodies."""
    out = []
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or BEGIN not in source:
            continue
        title = _TITLE.search(source)
        lines = source.splitlines()
        fences = [i + 1 for i, l in enumerate(lines) if l.strip() in (BEGIN, END)]
        if not title or any(lines[i - 1].startswith(BEGIN) for i in fences):  # top-level answers are not code
            continue
        names = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
        out.append(Solution(Path(notebook).name, title.group(1), source, (fences[0], fences[-1]), names))
    return out


class _Sites(ast.NodeVisitor):
    """Collects (node path, mutation) pairs inside the solution's lines."""

    def __init__(self, lo, hi):
        self.lo, self.hi, self.sites = lo, hi, []

    def _inside(self, node):
        return hasattr(node, "lineno") and self.lo <= node.lineno <= self.hi

    def generic_visit(self, node):
        if self._inside(node):
            for kind in _kinds(node):
                if kind == "swap operands" and _squared(node):
                    continue  # (a - b) ** 2 == (b - a) ** 2: no learner could be caught by it, nor should be
                self.sites.append((node, kind))
        for child in ast.iter_child_nodes(node):
            child.parent = node
        super().generic_visit(node)


def _squared(node) -> bool:
    parent = getattr(node, "parent", None)
    return (isinstance(node.op, ast.Sub) and isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Pow)
            and parent.left is node and isinstance(parent.right, ast.Constant) and parent.right.value == 2)


def _call_attr(node, names):
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in names


def _kinds(node):
    kinds = []
    if isinstance(node, ast.BinOp):
        flips = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
        if type(node.op) in flips:
            kinds.append("flip operator")
        if isinstance(node.op, (ast.Sub, ast.Div)):
            kinds.append("swap operands")
        if isinstance(node.op, ast.Pow):
            kinds.append("drop power")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        kinds.append("drop negation")
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in (ast.Gt, ast.Lt, ast.GtE, ast.LtE):
        kinds.append("flip comparison")
    if _call_attr(node, {"sqrt"}):
        kinds.append("drop sqrt")
    if _call_attr(node, {"detach"}):
        kinds.append("drop detach")
    if _call_attr(node, {"clamp", "clamp_min", "clamp_max"}):
        kinds.append("drop clamp")
    if _call_attr(node, {"mean", "sum"}):
        kinds.append("swap mean/sum")
    if isinstance(node, ast.Call):
        for kw in node.keywords:
            if kw.arg in ("dim", "axis"):
                kinds += ["dim - 1", "dim + 1"]
        if _call_attr(node, {"sum", "mean", "softmax", "norm", "cumprod", "cumsum"}) and node.args \
                and isinstance(node.args[0], (ast.Constant, ast.UnaryOp, ast.Tuple)):
            kinds += ["dim - 1", "dim + 1"]
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name):
        kinds += ["index - 1", "index + 1"]
    return kinds


def _shift(node, by):
    """Shift an int constant, a negated constant, or every int of a tuple, by ``by``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return ast.Constant(node.value + by)
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return ast.Constant(-node.operand.value + by)
    if isinstance(node, ast.Tuple):
        return ast.Tuple([_shift(e, by) for e in node.elts], ast.Load())
    return node


def _apply(node, kind):
    """The mutated replacement of ``node``."""
    n = copy.deepcopy(node)
    if kind == "flip operator":
        n.op = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}[type(n.op)]()
        return n
    if kind == "swap operands":
        n.left, n.right = n.right, n.left
        return n
    if kind == "drop power":
        return n.left
    if kind == "drop negation":
        return n.operand
    if kind == "flip comparison":
        n.ops = [{ast.Gt: ast.Lt, ast.Lt: ast.Gt, ast.GtE: ast.LtE, ast.LtE: ast.GtE}[type(n.ops[0])]()]
        return n
    if kind == "drop sqrt":  # x.sqrt() -> x, torch.sqrt(x) -> x
        return n.args[0] if n.args else n.func.value
    if kind in ("drop detach", "drop clamp"):
        return n.func.value
    if kind == "swap mean/sum":
        n.func.attr = {"mean": "sum", "sum": "mean"}[n.func.attr]
        return n
    if kind.startswith("dim"):
        by = -1 if kind == "dim - 1" else 1
        for kw in n.keywords:
            if kw.arg in ("dim", "axis"):
                kw.value = _shift(kw.value, by)
                return n
        n.args[0] = _shift(n.args[0], by)
        return n
    if kind.startswith("index"):
        n.slice = ast.BinOp(n.slice, ast.Sub() if kind == "index - 1" else ast.Add(), ast.Constant(1))
        return n
    raise ValueError(kind)


class _Replace(ast.NodeTransformer):
    def __init__(self, target, replacement):
        self.target, self.replacement = target, replacement

    def visit(self, node):
        if node is self.target:
            return self.replacement
        return super().visit(node)


def mutants(sol: Solution):
    """(description, mutated cell source) for every site and kind inside the solution's lines."""
    tree = ast.parse(sol.source)
    visitor = _Sites(*sol.lines)
    visitor.visit(tree)
    out = []
    for node, kind in visitor.sites:
        fresh = ast.parse(sol.source)  # one mutation per fresh parse, at the same position
        twin = _find_twin(fresh, node, tree)
        mutated = _Replace(twin, _apply(twin, kind)).visit(fresh)
        ast.fix_missing_locations(mutated)
        text = ast.unparse(mutated)
        if text != ast.unparse(tree):
            out.append((f"line {node.lineno}: {kind} in `{ast.unparse(node)}`", text))
    return out


def _find_twin(fresh, node, original):
    """The node of ``fresh`` at the position ``node`` has in ``original`` (both parsed from the same text)."""
    for a, b in zip(ast.walk(original), ast.walk(fresh)):
        if a is node:
            return b
    raise LookupError(node)
