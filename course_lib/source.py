"""Show a library function as a notebook should: its maths, without the argument checks in front of it.

Every public function of ``course_lib`` checks its arguments first (so a wrong call names the argument) and then
computes its equation. :func:`show` prints the function with those checks left out, so the cell that displays an
equation's function shows the lines that compute it, from the same source that runs: nothing is copied or sliced
by hand. A check is a statement of the function body that only guards:

- a call whose name starts with ``check`` or ``_check`` or ``expect_`` (the helpers of ``course_lib._checks``),
  alone or rebinding the argument it checks (``alpha_bar_t = check_coef(alpha_bar_t, ...)``);
- an ``if`` whose body only raises or checks (and has no ``else``: ``if noise is not None: noise = check_...``), or
  a ``for`` loop over such guards.

The docstring is left out too (the notebook's markdown shows the equation); the signature and every other line,
comments included, are printed verbatim.
"""
from __future__ import annotations

import ast
import inspect
import textwrap

__all__ = ["show", "maths_source"]

_CHECK_PREFIXES = ("check", "_check", "expect_")


def _called_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        f = node.func
        return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
    return ""


def _is_check(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Expr) and _called_name(stmt.value).startswith(_CHECK_PREFIXES):
        return True
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) and \
            _called_name(stmt.value).startswith(_CHECK_PREFIXES) and stmt.value.args and \
            isinstance(stmt.value.args[0], ast.Name) and stmt.value.args[0].id == stmt.targets[0].id:
        return True  # `x = check_...(x, ...)`: the same argument, checked (and shaped to broadcast)
    if isinstance(stmt, ast.If) and not stmt.orelse and \
            all(isinstance(s, ast.Raise) or _is_check(s) for s in stmt.body):
        return True
    if isinstance(stmt, ast.For) and not stmt.orelse and all(_is_check(s) for s in stmt.body):
        return True
    return False


def maths_source(fn) -> str:
    """The source of ``fn`` without its docstring and its argument checks (see the module docstring)."""
    src = textwrap.dedent(inspect.getsource(fn))
    lines = src.splitlines()
    tree = ast.parse(src)
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(f"fn: expected a function, got source that starts with {type(node).__name__}")
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
            isinstance(body[0].value.value, str):
        body = body[1:]
    first_body_line = node.body[0].lineno
    header = lines[:first_body_line - 1]  # decorators and the (possibly multi-line) signature
    out, omitted = list(header), False
    for stmt in body:
        if _is_check(stmt):
            omitted = True
            continue
        start = stmt.lineno - 1
        while start - 1 >= 0 and lines[start - 1].strip().startswith("#"):  # its comment lines above it
            start -= 1
        out.extend(lines[start:stmt.end_lineno])
    if omitted:
        indent = " " * (body[0].col_offset if body else 4)
        out.insert(len(header), f"{indent}# (argument checks left out: course_lib.show)")
    return "\n".join(out) + "\n"


def show(fn) -> None:
    """Print :func:`maths_source` of ``fn``: the lines that compute its equation."""
    print(maths_source(fn))
