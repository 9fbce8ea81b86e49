"""Each notebook's demos come from one function of its demos module (``notebook_demos``), the one the notebook calls
and the one ``./course latency`` measures; the notebooks' RETRAINED flag comes before the first model they load."""
import json
import re
from pathlib import Path

import pytest

from course_lib.demos import Measured, NotebookDemos
from course_lib.tools.latency import NOTEBOOKS

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
CONSTRUCTORS = r"\b(forward_demo|posterior_demo|terms_demo|sampling_demo|shapes_sampler_demo|taylor_demo|" \
               r"posterior_field_demo|exact_guidance_demo|shapes_guidance_demo|voronoi_demo|" \
               r"sweep_reconstruction_demo|distortion_lab|snapshot_scrubber|lambda_demo|prior_sampler|" \
               r"attention_explorer|caption_demo|adaln_demo|class_demo)\("


def code_cells(number: str) -> list[str]:
    (path,) = NOTEBOOK_DIR.glob(f"{number}_*.ipynb")
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_notebook_demos_builds_each_demo_once_on_first_use_and_names_what_is_missing():
    built = []
    sliders = NotebookDemos("99", {"a": lambda: built.append("a") or object(), "b": lambda: built.append("b")},
                            {"99 a": Measured("a", (dict(x=1),))})
    assert built == [] and sorted(sliders) == ["a", "b"] and len(sliders) == 2
    first = sliders["a"]
    assert sliders["a"] is first and built == ["a"] and sliders.built() == ["a"]
    with pytest.raises(KeyError, match="notebook 99 has no demo 'c'; it has \\['a', 'b'\\]"):
        sliders["c"]
    with pytest.raises(ValueError, match="measured: .*'99 z': 'z'.* name no demo of notebook 99"):
        NotebookDemos("99", {"a": object}, {"99 z": Measured("z", (dict(x=1),))})
    with pytest.raises(ValueError, match="budget: expected one of .*got 'fast'"):
        Measured("a", (dict(x=1),), "fast")
    with pytest.raises(ValueError, match="values: expected a non-empty sequence"):
        Measured("a", ())


@pytest.mark.parametrize("number", sorted(NOTEBOOKS))
def test_every_demo_of_a_notebook_is_measured_and_the_notebook_builds_it_through_notebook_demos(number):
    sliders = NOTEBOOKS[number].notebook_demos()
    assert sliders.built() == [], "setting a notebook's demos up builds none of them"
    assert {m.demo for m in sliders.measured.values()} == set(sliders), "the benchmark measures every demo"
    assert all(label.startswith(number + " ") for label in sliders.measured)
    cells = code_cells(number)
    assert any("notebook_demos(" in c for c in cells), f"notebook {number} does not call notebook_demos"
    for c in cells:
        if "### BEGIN SOLUTION" not in c:
            assert not re.search(CONSTRUCTORS, c), (number, "builds a demo itself instead of through notebook_demos", c)
    shown = {m for c in cells for m in re.findall(r'sliders\["([^"]+)"\]|notebook_demos\([^)]*\)\["([^"]+)"\]', c)}
    assert {name for pair in shown for name in pair if name} == set(sliders), "the notebook shows every demo"


@pytest.mark.parametrize("number", ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10"])
def test_the_retrained_flag_comes_before_the_first_model_a_notebook_loads(number):
    cells = code_cells(number)
    flag = next(i for i, c in enumerate(cells) if "use_retrained(RETRAINED)" in c)
    loads = [i for i, c in enumerate(cells) if re.search(r"checkpoints\.load\(|from_shipped\(|LPIPS\(|load_discriminator\(|"
                                                         r"notebook_demos\(", c)]
    assert not loads or flag < loads[0], f"notebook {number} loads a model in cell {loads[0]} before RETRAINED applies"
