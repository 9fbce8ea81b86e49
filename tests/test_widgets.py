import matplotlib.pyplot as plt
import pytest

from course_lib.widgets import SliderDemo, make_widget, slider_demo


def _demo():
    def compute(a, b, kind):
        return {"value": a * b, "kind": kind}

    def draw(result, values):
        fig, ax = plt.subplots()
        ax.set_title(f"{result['kind']}: {result['value']}")
        return fig

    return slider_demo(compute, draw, a=(0, 10, 1, 2), b=(0.0, 1.0, 0.1, 0.5), kind=["x", "y"])


def test_sliders_are_built_from_specs():
    demo = _demo()
    assert type(demo.sliders["a"]).__name__ == "IntSlider"
    assert type(demo.sliders["b"]).__name__ == "FloatSlider"
    assert type(demo.sliders["kind"]).__name__ == "Dropdown"
    with pytest.raises(TypeError, match="c"):
        make_widget("c", "nonsense")
    with pytest.raises(ValueError, match="initial value"):
        make_widget("c", (0, 1, 0.1, 2.0))


def test_moving_a_slider_recomputes_and_redraws():
    demo = _demo()
    assert demo.set(a=4)["value"] == 2.0
    assert demo.figure.axes[0].get_title() == "x: 2.0"
    demo.sliders["b"].value = 1.0  # what dragging does
    assert demo.figure.axes[0].get_title() == "x: 4.0"
    assert demo.set(a=0, b=0.0)["value"] == 0.0
    assert demo.set(a=10, b=1.0, kind="y")["value"] == 10.0


def test_repeated_values_are_cached():
    demo = _demo()
    r1 = demo.set(a=3)
    calls = demo.compute_calls
    demo.set(a=5)
    r2 = demo.set(a=3)
    assert r2 is r1 and demo.compute_calls == calls + 1
    assert len(demo.latencies) == 3


def test_out_of_range_and_unknown_values_are_refused():
    demo = _demo()
    with pytest.raises(ValueError, match="a"):
        demo.set(a=11)
    with pytest.raises(ValueError, match="unknown slider"):
        demo.set(c=1)


def test_cache_is_bounded():
    demo = SliderDemo(lambda a: a * 2, None, {"a": (0, 100, 1, 0)}, cache_size=3)
    for v in range(10):
        demo.set(a=v)
    assert len(demo._cache) == 3 and demo.compute_calls == 10
