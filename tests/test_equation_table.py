"""The package docstring's table: every equation of the reading notes has one function, whose docstring shows it."""
import importlib
import re

import course_lib


def _rows():
    """(equation, functions) of the reST simple table in course_lib's docstring, cut at its ==== column borders."""
    lines = course_lib.__doc__.splitlines()
    borders = [k for k, line in enumerate(lines) if line.startswith("====")]
    assert len(borders) == 6, "two tables (topic map, equations), three border lines each"
    borders = borders[3:]  # the equation table comes second
    cols = [len(c) for c in lines[borders[0]].split("  ")]
    rows = []
    for line in lines[borders[1] + 1:borders[2]]:
        eq, fn = line[:cols[0]].strip(), line[cols[0] + 2:cols[0] + 2 + cols[1]].strip()
        rows.append((eq, fn))
    return rows


def _resolve(dotted: str):
    module, *attrs = dotted.split(".")
    obj = importlib.import_module(f"course_lib.{module}")
    for a in attrs:
        obj = getattr(obj, a)
    return obj


def test_every_row_names_functions_that_exist_and_show_their_formula():
    rows = _rows()
    assert len(rows) >= 24, rows
    for equation, functions in rows:
        names = re.findall(r"[a-z_]+\.[A-Za-z_][A-Za-z0-9_.]*", functions)
        assert names, equation
        for name in names:
            fn = _resolve(name)
            doc = fn.__doc__ or ""
            assert ".. math::" in doc or ":math:" in doc, f"{name} ({equation}): its docstring does not show the formula"


def test_the_table_covers_each_paper_of_the_notes():
    text = " ".join(e for e, _ in _rows())
    for paper in ("DDIM eq. 1", "DDIM eq. 7", "DDIM eq. 10", "DDIM eq. 12", "Guided Diffusion eq. 2", "VQ-VAE",
                  "MAGVIT-v2", "LPIPS eq. 1", "VQGAN eq. 4", "VQGAN eq. 7", "LDM eq. 3", "LDM eq. 2", "swap",
                  "ControlNet eq. 2", "Imagen", "DiT: patchify", "DiT: adaLN-Zero", "DiT Fig. 8"):
        assert paper in text, paper


def test_the_topic_map_names_modules_that_exist_for_every_notebook():
    lines = course_lib.__doc__.splitlines()
    borders = [k for k, line in enumerate(lines) if line.startswith("====")][:3]
    starts = [m.start() for m in re.finditer(r"=+", lines[borders[0]])]  # column starts, from the border line
    rows = [[row[a:b].strip() for a, b in zip(starts, starts[1:] + [None])] for row in lines[borders[1] + 1:borders[2]]]
    assert [r[0][:2] for r in rows] == ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]
    found = 0
    for notebook, maths, demos, checks, models in rows:
        for name in re.findall(r"\b([a-z_]+)(?:\.[a-z_]+)?", re.sub(r"\(.*?\)", "", maths) + " " +
                               re.sub(r"^.*\(\+ ?|\)", "", maths if "(+" in maths else "")):
            importlib.import_module(f"course_lib.{name}")
            found += 1
        importlib.import_module(f"course_lib.{demos}")
        importlib.import_module(f"course_lib.{checks}")
        for name in (n.strip() for n in models.split(",") if "(" not in n):
            importlib.import_module(f"course_lib.nets.{name}")
            found += 1
    assert found >= 20
