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
    assert demo.kept_figure.axes[0].get_title() == "x: 2.0"
    demo.sliders["b"].value = 1.0  # what dragging does
    assert demo.kept_figure.axes[0].get_title() == "x: 4.0"
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
    demo.clear_cache()
    r3 = demo.set(a=3)
    assert r3 is not r1 and r3 == r1 and demo.compute_calls == calls + 2


def test_out_of_range_and_unknown_values_are_refused():
    demo = _demo()
    with pytest.raises(ValueError, match="a"):
        demo.set(a=11)
    with pytest.raises(ValueError, match="values: expected the sliders.*unknown"):
        demo.set(c=1)


def test_cache_is_bounded():
    demo = SliderDemo(lambda a: a * 2, None, {"a": (0, 100, 1, 0)}, cache_size=3)
    for v in range(10):
        demo.set(a=v)
    assert len(demo._cache) == 3 and demo.compute_calls == 10


def _blit_demo():
    """Moving image under a static contour and legend, moving points and a moving suptitle: the cases render
    has to order (static artists above a moving one are drawn after it)."""
    import numpy as np

    from course_lib.widgets import moving

    xs = np.linspace(-1, 1, 40)
    bump = np.exp(-(xs[None] ** 2 + xs[:, None] ** 2) * 4)

    def compute(k):
        return {"img": np.roll(bump, k, axis=1), "pts": np.stack([xs[::8] + k / 40, xs[::8] ** 2], 1)}

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(3, 3), dpi=60)
        fig.artists_ = {"img": moving(ax.imshow(r["img"], extent=(-1, 1, -1, 1), origin="lower")),
                        "pts": moving(ax.scatter(*r["pts"].T, color="red", label="points", zorder=3)),
                        "title": moving(fig.suptitle(f"k = {v['k']}"))}
        ax.contour(xs, xs, bump, levels=[0.5], colors="white")
        ax.legend(loc="lower left")
        ax.set_title("static title")
        return fig

    def update(fig, r, v):
        fig.artists_["img"].set_data(r["img"])
        fig.artists_["pts"].set_offsets(r["pts"])
        fig.artists_["title"].set_text(f"k = {v['k']}")

    return slider_demo(compute, draw, update=update, k=(0, 20, 1, 0))


def test_blitted_frames_equal_a_full_draw():
    import io

    import numpy as np
    from PIL import Image

    demo = _blit_demo()
    demo.set(k=0)
    for k in (5, 17, 5):
        demo.set(k=k)
        fast = np.asarray(Image.open(io.BytesIO(demo.png)).convert("RGB"))
        buf = io.BytesIO()
        demo.kept_figure.savefig(buf, format="png", dpi=demo.kept_figure.dpi)  # everything drawn, in matplotlib's order
        full = np.asarray(Image.open(buf).convert("RGB"))
        assert fast.shape == full.shape
        # The static contour and legend above the moving image are blended from kept RGBA layers: 8-bit rounding
        # of that blend moves a pixel by at most 2 levels of 255 (invisible). Beyond that, identical except where a
        # tick mark's inner end touches the frame: ticks stay in the kept pixels, under the moving image, while a
        # full draw puts them (zorder 1.5) over it. Nowhere else.
        diff = np.abs(fast.astype(int) - full.astype(int)).max(axis=2)
        layers = demo.kept_figure._slider_backgrounds[next(iter(demo.kept_figure._slider_backgrounds))][1]
        assert len(layers) >= 2, "the contour and the legend are kept as layers"
        ys, xs = np.nonzero(diff > 2)
        x0, y0, x1, y1 = demo.kept_figure.axes[0].get_window_extent().extents
        height = fast.shape[0]
        on_frame = (np.minimum(np.abs(xs - x0), np.abs(xs - x1)) <= 1.5) | \
                   (np.minimum(np.abs(height - ys - y0), np.abs(height - ys - y1)) <= 1.5)
        assert on_frame.all(), f"k={k}: pixels differ inside the picture at {list(zip(xs[~on_frame], ys[~on_frame]))}"
        assert len(xs) <= 20, f"k={k}: {len(xs)} pixels differ"
    assert len(demo.kept_figure._slider_backgrounds) == 1  # the layout never changed: one background, reused


def test_a_marked_figure_still_draws_everything_outside_the_demo():
    """moving() only tags artists: savefig / plt.show of a demo's figure (notebooks show draw_fn's figure
    that way) includes them."""
    import io

    import numpy as np
    from PIL import Image

    demo = _blit_demo()
    fig = demo.draw_fn(demo.compute(k=3), {"k": 3})
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    with_marked = np.asarray(Image.open(buf).convert("RGB"))
    for a in (fig.artists_["img"], fig.artists_["pts"]):
        a.set_visible(False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert (with_marked != np.asarray(Image.open(buf).convert("RGB"))).any()
    plt.close(fig)


def test_figure_and_grid_draw_a_demo_at_given_values_without_moving_its_sliders():
    import matplotlib.pyplot as plt

    from course_lib.widgets import slider_demo

    def draw(r, v):
        fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
        ax.set_title(f"x: {r}")
        return fig

    demo = slider_demo(lambda x, k: x * k, draw, x=(0.0, 5.0, 0.5, 1.0), k=(1, 3, 1, 2))
    fig = demo.figure(x=4.0)
    assert fig.axes[0].get_title() == "x: 8.0"  # k stays at the slider's 2
    assert demo.values() == {"x": 1.0, "k": 2}  # the sliders did not move
    calls = demo.compute_calls
    demo.figure(x=4.0)
    assert demo.compute_calls == calls  # the same setting comes from the cache
    with pytest.raises(ValueError, match="x: expected a number in"):
        demo.figure(x=9.0)
    grid = demo.grid([{"x": 0.5}, {"x": 2.0}, {"k": 3}], ncols=2)
    assert [ax.get_title() for ax in grid.axes if ax.images] == ["x=0.5", "x=2.0", "k=3"]
    with pytest.raises(ValueError, match="settings"):
        demo.grid([])
    plt.close("all")
