"""Student copies as a learner and a TA meet them: made by the real `./course student`, graded by `./course check`.

- untouched copies run top to bottom and fail only at the checks of unfinished exercises ("not started");
- filled with the reference solutions they pass; filled with a call to the library they are "wrong", with the
  hint; a learner's own exception is an "error";
- no solution appears in a copy: not its lines, not lines of the same shape, no `inspect.getsource` of the
  function an exercise asks for, no stored verdict of a check;
- the checks catch at least 95% of the automatic mutants of every reference solution that still run.
"""
import contextlib
import io
import json
import keyword
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

import pytest
import torch

from course_lib.coursework import EXERCISES, CourseworkError, LearnerCodeRaised
from course_lib.coursework.student import REVEALS_TAG, is_check_cell, solution_blocks

from mutants import mutants, solutions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(Path(path).read_text())["cells"]


def _src(cell):
    return "".join(cell["source"])


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """The real command's output, in a folder of its own (no results/ beside it, nothing linked)."""
    out = tmp_path_factory.mktemp("learner") / "student"
    proc = subprocess.run([str(ROOT / "course"), "student", "--out", str(out)], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    assert not (out / "results").exists() and not (out.parent / "results").exists()
    return out


def _grade(paths, report):
    proc = subprocess.run([str(ROOT / "course"), "check", *map(str, paths), "--report", str(report)],
                          capture_output=True, text=True, timeout=1800)
    return proc, json.loads(Path(report).read_text())


def _check_cell_count():
    return sum(is_check_cell(c) for nb in NOTEBOOKS for c in _cells(nb))


def test_untouched_copies_fail_only_at_the_checks_each_not_started(copies, tmp_path):
    proc, report = _grade(sorted(copies.glob("*.ipynb")), tmp_path / "report.json")
    assert proc.returncode == 1, proc.stdout[-3000:]
    rows = [r for nb in report["notebooks"] for r in nb["rows"]]
    assert len(rows) == report["total"] == _check_cell_count()
    assert {r["status"] for r in rows} == {"not started"}, [r for r in rows if r["status"] != "not started"]
    assert report["other_failing_cells"] == 0, report["notebooks"]
    assert "not started" in proc.stdout and f"0/{len(rows)} passed" in proc.stdout


# exercise -> (the learner's cell, what the grader must say); the rest of the exercises get the reference solution
WRONG = {
    "1.1": ("# Exercise 1.1: predicted_x0\ndef my_predicted_x0(x_t, eps, alpha_bar_t):\n"
            "    return predicted_x0(x_t, eps, alpha_bar_t)\n", "wrong", "asks you to write this yourself"),
    "4.2": ("# Exercise 4.2: lpips_distance\nfrom course_lib import perceptual\n\n\n"
            "def my_lpips_distance(feats_x, feats_x0, weights):\n"
            "    return perceptual.lpips_distance(feats_x, feats_x0, weights)\n", "wrong", "asks you to write this"),
    "2.3": ("# Exercise 2.3: cfg_eps\ndef my_cfg_eps(eps_uncond, eps_cond, scale):\n    return 1 / 0\n",
            "error", "ZeroDivisionError"),
}


def _exercise_of(source):
    m = re.search(r"#\s*Exercise\s+(\d+\.\d+)", source)
    return m.group(1) if m else None


def test_filled_copies_pass_and_library_calls_are_wrong_with_the_hint(copies, tmp_path):
    filled = tmp_path / "student"
    shutil.copytree(copies, filled)
    for nb in NOTEBOOKS:
        reference, path = _cells(nb), filled / nb.name
        data = json.loads(path.read_text())
        for i, (mine, ref) in enumerate(zip(data["cells"], reference)):
            if mine["cell_type"] == "code" and "### BEGIN SOLUTION" in _src(ref):
                ex = _exercise_of(_src(ref))
                mine["source"] = WRONG[ex][0] if ex in WRONG else ref["source"]
        path.write_text(json.dumps(data))
    proc, report = _grade(sorted(filled.glob("*.ipynb")), tmp_path / "report.json")
    assert proc.returncode == 1  # three exercises are not passed
    rows = {r["exercise"]: r for nb in report["notebooks"] for r in nb["rows"]}
    for ex, row in rows.items():
        if ex in WRONG:
            assert row["status"] == WRONG[ex][1] and WRONG[ex][2] in row["message"], row
        else:
            assert row["status"] == "passed", row
    assert sum(r["status"] == "passed" for r in rows.values()) == len(rows) - len(WRONG)
    assert report["other_failing_cells"] == 0
    assert "asks you to write this yourself" in proc.stdout


# a solution's set-up lines that carry no answer (seeding, an optimiser's step, a loop header): the exercise text
# gives them, and they occur all over a notebook
_BOILERPLATE = re.compile(r"^(torch\.manual_seed\(\d+\)|with torch\.no_grad\(\):|for _ in range\(\d+\):|\w+\.(zero_grad|step|backward)\(\)|import |from )")


def _norm(line):
    return re.sub(r"\s+", "", line)


def _shape(line):
    """A line with every identifier replaced by _ : the same formula under other names."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line.strip() + "\n").readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    skip = (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    return "".join("_" if t.type == tokenize.NAME and not keyword.iskeyword(t.string) else t.string
                   for t in toks if t.type not in skip)


def _texts(cells):
    for i, c in enumerate(cells):
        yield i, _src(c)
        for o in c.get("outputs", []):
            yield i, "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_line_of_a_solution_appears_in_the_student_copy(copies, nb):
    core = [line for c in _cells(nb) for _, block in solution_blocks(_src(c)) for line in block.splitlines()
            if len(_norm(line)) >= 10 and not line.strip().startswith("#") and not _BOILERPLATE.match(line.strip())]
    assert core, nb.name
    exact = {_norm(line) for line in core}
    shapes = {s for s in map(_shape, core) if s and len(s) >= 16}
    for i, text in _texts(_cells(copies / nb.name)):
        for line in text.splitlines():
            assert _norm(line) not in exact, (nb.name, i, line)
            assert _shape(line) not in shapes, (nb.name, i, line, "the same formula under other names")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_student_copy_shows_no_asked_for_source_and_no_stored_verdict(copies, nb):
    asked = {m.group(1).split()[0] for c in _cells(nb) for m in [re.search(r"#\s*Exercise\s+\d+\.\d+:\s*(\w+)", _src(c))]
             if m}
    cells = _cells(copies / nb.name)
    for i, c in enumerate(cells):
        for name in asked:
            assert f"getsource({name})" not in _src(c), (nb.name, i, name)
        if is_check_cell(c) or (c["cell_type"] == "code" and "NotImplementedError" in _src(c)):
            assert c.get("outputs") == [] and c.get("execution_count") is None, (nb.name, i)
    for i, c in enumerate(cells):  # after a prediction, nothing measured shows until its check has run
        if c["cell_type"] == "code" and re.search(r"^my_prediction = None", _src(c), re.M):
            j = next(k for k in range(i + 1, len(cells)) if is_check_cell(cells[k]))
            assert all(not d.get("outputs") for d in cells[i:j + 1] if d["cell_type"] == "code"), (nb.name, i, j)
    tagged = [c for c in _cells(nb) if REVEALS_TAG in c.get("metadata", {}).get("tags", [])]
    hidden = [c for c in cells if REVEALS_TAG + "-hidden" in c.get("metadata", {}).get("tags", [])]
    assert len(hidden) == len(tagged)
    for c in hidden:
        assert c["cell_type"] == "markdown" and "Hidden in your copy" in _src(c)


# Mutants a check cannot and should not reject, with the reason; each is verified equal to the reference below.
EQUIVALENT = {
    ("0.1", "dim - 1 in `torch.cumprod(1 - betas, dim=0)`"): "betas is one table: dim=-1 is dim=0",
    ("5.1", "drop detach in `(rec_grad.norm() / (gan_grad.norm() + delta)).clamp(0, 10000.0).detach()`"):
        "gradients taken without create_graph carry no graph, so the detach is already a no-op",
    ("6.1", "drop negation in `-2`"): "k is (b, h, m, d): transpose(-1, 2) is transpose(-1, -2)",
}


def _equivalent(exercise, desc):
    return next((reason for (ex, tail), reason in EQUIVALENT.items() if ex == exercise and desc.endswith(tail)), None)


def _exec(text, names):
    from course_lib.perceptual import normalize_channels

    ns = {"torch": torch, "normalize_channels": normalize_channels}
    exec(compile(text, "<exercise>", "exec"), ns)
    return [ns[n] for n in names]


def _verify_equivalent(exercise, mutant_fns, reference_fns):
    """The listed equivalent mutants give the reference's output on fresh inputs (not the check's cases)."""
    g = torch.Generator().manual_seed(123)
    if exercise == "0.1":
        betas = torch.rand(37, generator=g, dtype=torch.float64) * 0.3
        return torch.equal(mutant_fns[0](betas), reference_fns[0](betas))
    if exercise == "5.1":
        torch.manual_seed(5)
        dec = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
        out = dec(torch.randn(6, 3))
        rec, gan = out.abs().mean(), -out.sum()
        a, b = mutant_fns[0](rec, gan, dec[-1].weight, 1e-6), reference_fns[0](rec, gan, dec[-1].weight, 1e-6)
        return torch.equal(a, b) and not a.requires_grad
    if exercise == "6.1":
        from course_lib.attention import CrossAttention

        torch.manual_seed(6)
        layer = CrossAttention(10, 6, 2, 4)
        x, ctx = torch.randn(2, 5, 10, generator=g), torch.randn(2, 3, 6, generator=g)
        mask = torch.tensor([[True, True, False], [True, False, False]])
        with torch.no_grad():
            return torch.allclose(mutant_fns[0](layer, x, ctx, mask), reference_fns[0](layer, x, ctx, mask))
    return False


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_checks_reject_at_least_95_percent_of_the_mutants_of_each_solution(nb):
    sols = solutions(nb)
    assert sols, nb.name
    rejected, survived, ran, crashed, equivalent = 0, [], 0, 0, 0
    for sol in sols:
        check = EXERCISES[sol.exercise]
        reference = _exec(sol.source, sol.functions)
        for desc, text in mutants(sol):
            try:
                fns = _exec(text, sol.functions)
                with contextlib.redirect_stdout(io.StringIO()):
                    check(*fns)
            except LearnerCodeRaised:
                crashed += 1
                continue  # the mutant does not run: not counted
            except CourseworkError:
                ran, rejected = ran + 1, rejected + 1
                continue
            reason = _equivalent(sol.exercise, desc)
            if reason is not None:
                assert _verify_equivalent(sol.exercise, fns, reference), (sol.exercise, desc, reason)
                equivalent += 1
                continue  # proven equivalent: not a mistake, not counted
            ran += 1
            survived.append((sol.exercise, desc))
    rate = rejected / ran
    print(f"{nb.name}: {rejected}/{ran} mutants rejected ({rate:.1%}); not counted: {crashed} that do not run, "
          f"{equivalent} proven equivalent")
    assert ran >= 5 and rate >= 0.95, (nb.name, rejected, ran, survived)
