"""Slider demos from plain functions, with caching.

A demo is two functions: ``compute(**values) -> result`` (the maths, cached by slider values,
testable in plain pytest) and ``draw(result, values) -> matplotlib Figure`` (the picture), plus
optionally ``update(fig, result, values)`` that moves the artists of the first figure in place.
:class:`SliderDemo` wires them to ipywidgets: moving a slider calls compute (instantly when
the values were seen before) and redraws.

    demo = slider_demo(compute, draw, t=(0, 999, 1, 500), eta=(0.0, 1.0, 0.1, 0.0))
    demo.show()            # in a notebook (mark the cell # NBVAL_IGNORE_OUTPUT)
    demo.set(t=10)         # what a test does instead of dragging: compute + draw, returns the result
"""
from __future__ import annotations

import io
import time
from collections import OrderedDict

import ipywidgets as W
import matplotlib.pyplot as plt

__all__ = ["SliderDemo", "slider_demo", "make_widget", "image_strip_demo"]


def make_widget(name: str, spec):
    """A widget from a short spec: (min, max, step, value) -> Int/FloatSlider; a list -> Dropdown; a bool -> Checkbox."""
    style = {"description_width": "initial"}
    if isinstance(spec, W.ValueWidget):
        return spec
    if isinstance(spec, bool):
        return W.Checkbox(value=spec, description=name)
    if isinstance(spec, (list, dict)):
        options = spec
        return W.Dropdown(options=options, description=name, style=style)
    if isinstance(spec, tuple) and len(spec) == 4:
        lo, hi, step, value = spec
        if not (lo <= value <= hi):
            raise ValueError(f"{name}: expected the initial value within [{lo}, {hi}], got {value}")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            return W.IntSlider(min=lo, max=hi, step=step, value=value, description=name, style=style,
                               continuous_update=True)
        return W.FloatSlider(min=lo, max=hi, step=step, value=value, description=name, style=style,
                             continuous_update=True, readout_format=".3g")
    raise TypeError(f"{name}: expected a widget, a (min, max, step, value) tuple, a list of options or a bool, "
                    f"got {spec!r}")


class SliderDemo:
    """compute + draw + sliders. ``cache_size`` results are kept (least recently used dropped)."""

    def __init__(self, compute, draw=None, sliders: dict | None = None, cache_size: int = 256, update=None):
        self.compute_fn, self.draw_fn, self.update_fn = compute, draw, update
        self.sliders = {k: make_widget(k, v) for k, v in (sliders or {}).items()}
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self.compute_calls = 0           # how often compute really ran (cache misses)
        self.latencies: list[float] = []  # seconds per callback, compute + draw
        self.output = W.Output()
        self.figure = None
        self.png: bytes | None = None  # what the learner sees after the last callback
        for w in self.sliders.values():
            w.observe(self._on_change, names="value")

    def values(self) -> dict:
        return {k: w.value for k, w in self.sliders.items()}

    def compute(self, **values):
        """The cached compute: same values, same (identical) result object."""
        key = tuple(sorted(values.items()))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self.compute_calls += 1
        result = self.compute_fn(**values)
        self._cache[key] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def update(self):
        """Compute for the current slider values and redraw; returns the result."""
        t0 = time.perf_counter()
        values = self.values()
        result = self.compute(**values)
        if self.draw_fn is not None:
            from IPython.display import Image, clear_output, display

            if self.update_fn is not None and self.figure is not None:
                fig = self.figure  # move the existing artists: much cheaper than building a new figure
                self.update_fn(fig, result, values)
            else:
                fig = self.draw_fn(result, values)
            self.png = self.render(fig)
            with self.output:
                clear_output(wait=True)
                display(Image(data=self.png, format="png"))
            plt.close(fig)
            self.figure = fig
        self.latencies.append(time.perf_counter() - t0)
        return result

    @staticmethod
    def render(fig) -> bytes:
        """The figure as PNG, in one pass (no tight bounding box: demo figures lay themselves out once)."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi)
        return buf.getvalue()

    def _on_change(self, change):
        self.update()

    def set(self, **values):
        """Set several sliders (one redraw, not one per slider) and return the new result."""
        unknown = set(values) - set(self.sliders)
        if unknown:
            raise ValueError(f"values: unknown slider(s) {sorted(unknown)}; this demo has {sorted(self.sliders)}")
        for k, v in values.items():
            self.sliders[k].unobserve(self._on_change, names="value")
            try:
                self.sliders[k].value = v
                if self.sliders[k].value != v:
                    raise ValueError(f"{k}: {v!r} is outside the slider's range or options; "
                                     f"it holds {self.sliders[k].value!r}")
            finally:
                self.sliders[k].observe(self._on_change, names="value")
        return self.update()

    def widget(self):
        return W.VBox([W.HBox(list(self.sliders.values())), self.output])

    def show(self):
        from IPython.display import display

        self.update()
        display(self.widget())
        return None


def slider_demo(compute, draw=None, cache_size: int = 256, update=None, **sliders) -> SliderDemo:
    """Build a :class:`SliderDemo`; each keyword is a slider spec for the argument of the same name.

    ``update(fig, result, values)``, if given, redraws by changing the artists of the figure that ``draw``
    made the first time (set_data, set_offsets, set_text) instead of building a new figure.
    """
    return SliderDemo(compute, draw, sliders, cache_size, update)


def image_strip_demo(compute, title, nrow: int, figsize=(6, 1.9), dpi: int = 80, cache_size: int = 256,
                     **sliders) -> SliderDemo:
    """A demo whose picture is one row of images: ``compute(**values)`` returns a dict with ``"images"``
    (N, 3, H, W) in [-1, 1]; ``title(result, values)`` gives the figure's title. Redraws in place."""
    from . import viz

    def draw(r, v):
        fig, ax = plt.subplots(1, 1, figsize=figsize, dpi=dpi)
        fig.artists_ = {"img": viz.show_images(r["images"], nrow=nrow, ax=ax)}
        update(fig, r, v)
        return fig

    def update(fig, r, v):
        fig.artists_["img"].set_data(viz.image_grid(r["images"], nrow=nrow))
        fig.suptitle(title(r, v), fontsize=9)

    return SliderDemo(compute, draw, sliders, cache_size, update)
