"""Slider demos from plain functions, with caching.

A demo is two functions: ``compute(**values) -> result`` (the maths, cached by slider values,
testable in plain pytest) and ``draw(result, values) -> matplotlib Figure`` (the picture), plus
optionally ``update(fig, result, values)`` that moves the artists of the first figure in place; artists marked
with :func:`moving` are then redrawn alone over a kept picture of the rest (blitting).
:class:`SliderDemo` wires them to ipywidgets: moving a slider calls compute (instantly when
the values were seen before) and redraws.

A demo whose compute is too slow for a glance (sampling images with many steps) may also have a
``preview(**values)``: a cheap stand-in (the same settings with fewer sampling steps, :func:`fewer_steps`) shown
at once for a setting never computed, marked as a preview on the picture, while the asked result is computed in
a background thread and replaces it (if the sliders still ask for it).

    demo = slider_demo(compute, draw, t=(0, 999, 1, 500), eta=(0.0, 1.0, 0.1, 0.0))
    demo.show()            # in a notebook (mark the cell # NBVAL_IGNORE_OUTPUT)
    demo.set(t=10)         # what a test does instead of dragging: compute + draw, returns the result
"""
from __future__ import annotations

import atexit
import base64
import io
import threading
import time
import traceback
import weakref
from collections import OrderedDict

import ipywidgets as W
import matplotlib.pyplot as plt

__all__ = ["SliderDemo", "slider_demo", "make_widget", "image_strip_demo", "moving", "fewer_steps"]


def moving(*artists):
    """Mark artists that a demo's ``update`` changes (data, text, colour limits): :meth:`SliderDemo.render` then
    redraws only them over a cached picture of the rest. An artist that ``update`` creates (a new contour set)
    must be marked too: the rest of the picture is not redrawn while the axes limits stay. Text that changes on
    every move is best plain (unicode) text: mathtext is parsed anew for each new string, tens of ms a move; keep
    the equations in static titles. The figure itself is unchanged (``savefig`` and ``plt.show`` draw
    everything). Returns the artist (or the tuple, for several)."""
    for a in artists:
        a._slider_moves = True
    return artists[0] if len(artists) == 1 else artists


def _png(canvas) -> bytes:
    """The Agg canvas' pixels as PNG; low zlib effort (the bytes only travel to the browser on this machine)."""
    from PIL import Image

    width, height = canvas.get_width_height(physical=True)
    image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="png", compress_level=1)
    return buf.getvalue()


def _layer(canvas, artist):
    """``artist`` drawn alone on the cleared (transparent) canvas: (x, y, RGBA pixels bottom row first) of the
    smallest box holding its ink, (x, y) the box's lower left corner in display pixels (what ``draw_image`` takes).
    The canvas' own renderer draws it (a new renderer would lay out every text anew, mathtext included: 38 ms for a
    legend instead of 10); the caller restores the canvas after."""
    import numpy as np

    renderer = canvas.get_renderer()
    renderer.clear()
    artist.draw(renderer)
    rgba = np.asarray(renderer.buffer_rgba())
    rows, cols = np.nonzero(rgba[..., 3].any(axis=1))[0], np.nonzero(rgba[..., 3].any(axis=0))[0]
    if not rows.size:
        return 0, 0, np.zeros((0, 0, 4), np.uint8)
    # two transparent pixels around the ink: Agg's draw_image left out a box one pixel thin (a spine)
    top, left = max(rows[0] - 2, 0), max(cols[0] - 2, 0)
    bottom, right = min(rows[-1] + 3, rgba.shape[0]), min(cols[-1] + 3, rgba.shape[1])
    # draw_image takes the rows bottom up (matplotlib's images come to it flipped)
    return int(left), int(rgba.shape[0] - bottom), np.ascontiguousarray(rgba[top:bottom, left:right][::-1])


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


def fewer_steps(compute, preview_steps: int, full_steps: int | None = None, key: str = "steps"):
    """A ``preview`` for :class:`SliderDemo`: the same settings sampled with ``preview_steps`` steps where more are
    asked (``values[key]``, or ``full_steps`` when no slider sets them), ``None`` (compute directly) where not.
    ``compute`` takes the steps as the keyword ``key``. The preview's result says what it is under ``"preview"``."""
    if not (isinstance(preview_steps, int) and preview_steps >= 1):
        raise ValueError(f"preview_steps: expected an int >= 1, got {preview_steps!r}")

    def preview(**values):
        asked = values.get(key, full_steps)
        if asked is None:
            raise ValueError(f"values: expected a '{key}' slider or full_steps, got neither")
        if asked <= preview_steps:
            return None
        result = dict(compute(**{**values, key: preview_steps}))
        result["preview"] = f"preview: {preview_steps} of {asked} steps, the {asked}-step picture follows"
        return result

    return preview


_REFINERS: "weakref.WeakSet" = weakref.WeakSet()  # demos with a background compute, waited for at exit


@atexit.register
def _wait_for_refiners():
    """A background compute cut off at interpreter exit can abort the process inside OpenMP: let it finish."""
    for demo in list(_REFINERS):
        demo._idle.wait(60)


class SliderDemo:
    """compute + draw + sliders. ``cache_size`` results are kept (least recently used dropped).

    With ``preview``, a move to a setting never computed shows ``preview(**values)`` at once (unless it returns
    None) and computes the asked result in one background thread; the asked picture replaces the preview when it
    is ready and the sliders still ask for it (a result the sliders moved away from is kept in the cache only).
    :meth:`wait` blocks until the picture shown is the asked one. ``showing`` says which: ``"asked"`` or
    ``"preview"``; the picture says it too (a red note in its lower right corner)."""

    def __init__(self, compute, draw=None, sliders: dict | None = None, cache_size: int = 256, update=None,
                 preview=None):
        self.compute_fn, self.draw_fn, self.update_fn, self.preview_fn = compute, draw, update, preview
        self.sliders = {k: make_widget(k, v) for k, v in (sliders or {}).items()}
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self.inner_caches: list = []     # a compute's own memo dicts (kept runs): emptied with the cache
        self._lock = threading.RLock()   # the cache, the figure and the output, shared with the refining thread
        self._pending = None             # the latest setting waiting for its asked result
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.refine_error: BaseException | None = None
        self.showing = "asked"           # what the picture shows: the asked result or a preview
        self.shown = None                # the result the picture shows
        self.previews = 0                # moves answered first by a preview
        self.compute_calls = 0           # how often compute really ran (cache misses)
        self.full_draws = 0              # renders that drew the whole figure (no kept picture to blit onto)
        self.last_frame: list = []       # the artists the last blitted render drew over the kept picture
        self.latencies: list[float] = []  # seconds per callback, compute + draw
        self.output = W.Output()
        self.kept_figure = None
        self.png: bytes | None = None  # what the learner sees after the last callback
        for w in self.sliders.values():
            w.observe(self._on_change, names="value")

    def values(self) -> dict:
        return {k: w.value for k, w in self.sliders.items()}

    def check_values(self, values: dict) -> None:
        """Every value must be one its slider can hold: within [min, max], an int for an IntSlider, one of a
        dropdown's options, a bool for a checkbox. Raises before anything is set or computed."""
        unknown = set(values) - set(self.sliders)
        if unknown:
            raise ValueError(f"values: expected the sliders {sorted(self.sliders)}, got unknown {sorted(unknown)}")
        for k, v in values.items():
            w = self.sliders[k]
            if isinstance(w, W.Checkbox):
                ok, want = isinstance(v, bool), "True or False"
            elif isinstance(w, (W.Dropdown, W.SelectionSlider, W.ToggleButtons, W.RadioButtons)):
                options = [o[1] if isinstance(o, tuple) else o for o in w.options]
                if isinstance(w.options, dict):
                    options = list(w.options.values())
                ok, want = v in options, f"one of the options {options}"
            elif isinstance(w, (W.IntSlider, W.FloatSlider)):
                number = isinstance(v, (int, float)) and not isinstance(v, bool)
                if isinstance(w, W.IntSlider) and number and not float(v).is_integer():
                    number = False
                ok = number and w.min <= v <= w.max
                want = f"{'an int' if isinstance(w, W.IntSlider) else 'a number'} in [{w.min}, {w.max}]"
            else:
                continue
            if not ok:
                raise ValueError(f"{k}: expected {want}, got {v!r}")

    def compute(self, **values):
        """The cached compute: same values, same (identical) result object. Values are checked against the
        sliders first (:meth:`check_values`), so a direct call is bounded exactly as the sliders are."""
        if self.sliders:
            self.check_values(values)
        key = tuple(sorted(values.items()))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            self.compute_calls += 1
        result = self.compute_fn(**values)
        with self._lock:
            self._cache[key] = result
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return result

    def cached(self, **values):
        """The cached result for ``values``, or None: never computes."""
        with self._lock:
            return self._cache.get(tuple(sorted(values.items())))

    def clear_cache(self):
        """Forget every computed result (the next move of each setting computes again, as the first time)."""
        self.wait()
        with self._lock:
            self._cache.clear()
            for memo in self.inner_caches:
                memo.clear()

    def update(self, preview: bool = False):
        """Compute for the current slider values and redraw; returns the result shown. With ``preview`` (a slider
        move) and a setting never computed, the demo's preview is shown and the asked result follows from the
        background (:meth:`wait`)."""
        t0 = time.perf_counter()
        values = self.values()
        result = None
        if preview and self.preview_fn is not None and self.cached(**values) is None:
            result = self.preview_fn(**values)
        if result is not None:
            self.previews += 1
            with self._lock:
                self._show(result, values, "preview")
            self._refine(values)
        else:
            result = self.compute(**values)
            with self._lock:
                self._show(result, values, "asked")
        self.latencies.append(time.perf_counter() - t0)
        return result

    def _show(self, result, values: dict, showing: str):
        """Draw ``result`` (in place when a figure is kept), render and display it; the caller holds the lock."""
        self.showing, self.shown = showing, result
        if self.draw_fn is None:
            return
        if self.update_fn is not None and self.kept_figure is not None:
            fig = self.kept_figure  # move the existing artists: much cheaper than building a new figure
            self.update_fn(fig, result, values)
        else:
            fig = self.draw_fn(result, values)
            plt.close(fig)  # the demo shows its own PNG: pyplot must not show the figure again at the cell's end
        note = fig.__dict__.get("_preview_note")
        if note is None and self.preview_fn is not None:
            note = fig._preview_note = moving(fig.text(0.995, 0.01, "", ha="right", va="bottom", fontsize=8,
                                                       color="C3"))
        if note is not None:
            note.set_text(result.get("preview", "") if showing == "preview" else "")
        self.png = self.render(fig)
        self._display_png(self.png)
        self.kept_figure = fig

    def _display_png(self, png: bytes):
        """Replace what the output shows by ``png``; by setting the widget's outputs (not by display() inside the
        output's context), so that the refining thread can do it too."""
        self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                "data": {"image/png": base64.b64encode(png).decode("ascii")}},)

    def _refine(self, values: dict):
        """Ask the background thread for the asked result of ``values`` (the latest ask replaces an older one that
        has not started)."""
        with self._lock:
            self._pending = dict(values)
            self._idle.clear()
            if self._worker is None:
                _REFINERS.add(self)
                self._worker = threading.Thread(target=self._refine_loop, name="slider-refine", daemon=True)
                self._worker.start()

    def _refine_loop(self):
        import torch

        # One intra-op thread here: a second OpenMP team beside the kernel's made the same sampling 2.4x slower on
        # 2 cores (0.83-1.0 s against 0.33-0.37 s in the main thread; 0.38-0.48 s with one thread), and the main
        # thread keeps a core for the next preview. The setting is this thread's own.
        torch.set_num_threads(1)
        while True:
            with self._lock:
                values, self._pending = self._pending, None
                if values is None:
                    self._worker = None
                    self._idle.set()
                    return
            try:
                result = self.compute(**values)
            except BaseException as e:  # noqa: BLE001 - shown to the learner, raised again by wait()
                with self._lock:
                    self.refine_error = e
                    self.output.outputs = ({"output_type": "stream", "name": "stderr",
                                            "text": "".join(traceback.format_exception(e))},)
                continue
            with self._lock:
                if self._pending is None and self.values() == values:  # the sliders still ask for it
                    self._show(result, values, "asked")

    def wait(self, timeout: float | None = None):
        """Block until no asked result is being computed in the background (``timeout`` seconds at most: a
        ``TimeoutError`` after); returns the result shown. An error of the background compute is raised here."""
        if not self._idle.wait(timeout):
            raise TimeoutError(f"timeout: the asked result was not ready within {timeout} s")
        if self.refine_error is not None:
            error, self.refine_error = self.refine_error, None
            raise error
        return self.shown

    def render(self, fig) -> bytes:
        """The figure as PNG. Artists marked with :func:`moving` are the ones a slider changes: the rest of the
        figure (axes, ticks, legends, static data) is drawn once per axes layout and kept as pixels, and each
        callback only restores them and draws the moving artists on top (matplotlib's blitting). Static artists
        of the same axes that lie above a moving one (a contour over an image, a legend over points, the
        spines) are left out of the kept pixels and drawn after it, so the picture is the one a full draw
        gives, but for the inner ends of tick marks where a moving image meets the frame (ticks stay in the
        kept pixels). Those static artists are drawn once alone and blended from kept RGBA layers each frame (8-bit
        rounding of the blend: a few levels of 255). Without marked artists the whole figure is drawn."""
        from matplotlib.axis import Axis
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.legend import Legend
        from matplotlib.spines import Spine

        if not isinstance(fig.canvas, FigureCanvasAgg):  # plt.close() leaves a figure a bare canvas
            FigureCanvasAgg(fig)
        canvas = fig.canvas
        marked = [a for a in fig.findobj() if getattr(a, "_slider_moves", False) and a.get_visible()]
        if not marked:
            self.full_draws += 1
            self.last_frame = []
            canvas.draw()
            return _png(canvas)
        # What each frame draws, in the order a full draw would: per axes by (zorder, order of addition); tick
        # labels, grids (Axis) and static axes titles stay in the kept pixels, they sit outside the data area.
        frame = []
        for ax in dict.fromkeys(a.axes for a in marked):
            if ax is None:
                continue
            children = ax.get_children()
            # a full draw goes by zorder, then by order of addition: what comes after the first moving artist of
            # this axes in that order lies above it
            lowest = min(((c.get_zorder(), i) for i, c in enumerate(children)
                          if getattr(c, "_slider_moves", False) and c.get_visible()), default=(float("inf"), 0))
            outside = (ax.patch, ax.title, ax._left_title, ax._right_title)
            # a full draw leaves out the spines of an axes drawn without its frame (set_axis_off, frameon=False)
            framed = ax.axison and ax.get_frame_on()
            mine = [(c.get_zorder(), i, c) for i, c in enumerate(children) if c.get_visible()
                    and (framed or not isinstance(c, Spine))
                    and (getattr(c, "_slider_moves", False)
                         or ((c.get_zorder(), i) > lowest and not isinstance(c, Axis) and c not in outside))]
            frame += [c for _, _, c in sorted(mine, key=lambda e: e[:2])]
        frame += [a for a in marked if a.axes is None]  # figure-level text (suptitle) last, as in a full draw
        # A background is valid while the layout is: same size, same axes limits (a zooming demo gets one
        # background per view; a few are kept, on the figure they belong to).
        layout = (tuple(fig.get_size_inches()), fig.dpi, len(frame),
                  tuple((tuple(ax.get_xlim()), tuple(ax.get_ylim())) for ax in fig.axes))
        backgrounds = fig.__dict__.setdefault("_slider_backgrounds", {})
        kept = backgrounds.get(layout)
        if kept is None:
            self.full_draws += 1
            for a in frame:  # matplotlib leaves animated artists out of a full draw
                a.set_animated(True)
            try:
                canvas.draw()
            finally:
                for a in frame:
                    a.set_animated(False)
            background = canvas.copy_from_bbox(fig.bbox)
            # The static artists that lie above a moving one (a legend: 8-12 ms a frame, its mathtext laid out anew
            # each draw) are drawn once alone and kept as RGBA pixels, but a legend placed "best" (it moves away
            # from the moving data). A legend and a spine do not depend on the axes limits, only on where the axes
            # sit: their layers serve every view of a zooming demo; any other static artist gets one per view.
            fixed = fig.__dict__.setdefault("_slider_fixed_layers", {})
            layers = {}
            for a in frame:
                if getattr(a, "_slider_moves", False) or (isinstance(a, Legend) and a._loc in (0, "best")):
                    continue
                if isinstance(a, (Legend, Spine)):
                    key = (id(a), a.axes and tuple(a.axes.get_position().bounds), layout[:2])
                    if key not in fixed:
                        fixed[key] = _layer(canvas, a)
                    layers[id(a)] = fixed[key]
                else:
                    layers[id(a)] = _layer(canvas, a)
            kept = backgrounds[layout] = (background, layers)
            canvas.restore_region(background)
            if len(backgrounds) > 8:
                backgrounds.pop(next(iter(backgrounds)))
        else:
            canvas.restore_region(kept[0])
        renderer = canvas.get_renderer()
        gc = renderer.new_gc()
        for artist in frame:
            layer = kept[1].get(id(artist))
            if layer is None:
                fig.draw_artist(artist)
            elif layer[2].size:  # blended over what lies below, as drawing the artist there does
                renderer.draw_image(gc, layer[0], layer[1], layer[2])
        gc.restore()
        self.last_frame = frame
        return _png(canvas)

    def _on_change(self, change):
        self.update(preview=True)

    def set(self, **values):
        """Set several sliders (one redraw, not one per slider) and return the result shown, as a learner's move
        does: a preview for a setting never computed where the demo has one (:meth:`wait` returns the asked one).
        Every value is checked first: a bad one raises and leaves every slider as it was (slider and picture never
        disagree)."""
        self.check_values(values)
        for k, v in values.items():
            self.sliders[k].unobserve(self._on_change, names="value")
            try:
                self.sliders[k].value = v
            finally:
                self.sliders[k].observe(self._on_change, names="value")
        return self.update(preview=True)

    def figure(self, **values):
        """A static figure of the demo at ``values`` (the other sliders as they are), drawn by the demo's own
        ``draw``: the way a notebook shows one setting without re-drawing it by hand. The values are checked like a
        move of the sliders; the sliders themselves do not move."""
        if self.draw_fn is None:
            raise ValueError("figure: expected a demo with a draw function, got one without")
        self.check_values(values)
        values = {**self.values(), **values}
        return self.draw_fn(self.compute(**values), values)

    def grid(self, settings: list, ncols: int | None = None, title=None):
        """Small multiples: one panel per dict of ``settings`` (each as in :meth:`figure`), side by side in one
        figure, each titled by ``title(values)`` (default: the values that differ from the sliders')."""
        import numpy as np

        if not settings:
            raise ValueError("settings: expected at least one dict of slider values, got none")
        panels = []
        for values in settings:
            fig = self.figure(**values)
            fig.canvas.draw()
            img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
            plt.close(fig)
            ink = (img < 250).any(axis=2)  # crop the demo figure's white margins: the panels sit closer
            rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
            if rows.size:
                img = img[max(rows[0] - 4, 0):rows[-1] + 5, max(cols[0] - 4, 0):cols[-1] + 5]
            panels.append(img)
        ncols = ncols or len(panels)
        nrows = -(-len(panels) // ncols)
        h, w = max(p.shape[0] for p in panels), max(p.shape[1] for p in panels)
        out, axes = plt.subplots(nrows, ncols, figsize=(ncols * w / 80, nrows * h / 80 + 0.3 * nrows), dpi=80,
                                 squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, img, values in zip(axes.flat, panels, settings):
            ax.imshow(img)
            ax.set_title(title(values) if title else ", ".join(f"{k}={v}" for k, v in values.items()), fontsize=9)
        out.tight_layout()
        return out

    def widget(self):
        return W.VBox([W.HBox(list(self.sliders.values())), self.output])

    def show(self):
        from IPython.display import display

        self.update()
        display(self.widget())
        return None


def slider_demo(compute, draw=None, cache_size: int = 256, update=None, preview=None, **sliders) -> SliderDemo:
    """Build a :class:`SliderDemo`; each keyword is a slider spec for the argument of the same name.

    ``update(fig, result, values)``, if given, redraws by changing the artists of the figure that ``draw``
    made the first time (set_data, set_offsets, set_text) instead of building a new figure. ``preview``: see
    :class:`SliderDemo`.
    """
    return SliderDemo(compute, draw, sliders, cache_size, update, preview)


def image_strip_demo(compute, title, nrow: int, figsize=(6, 1.9), dpi: int = 80, cache_size: int = 256,
                     preview=None, **sliders) -> SliderDemo:
    """A demo whose picture is one row of images: ``compute(**values)`` returns a dict with ``"images"``
    (N, 3, H, W) in [-1, 1]; ``title(result, values)`` gives the figure's title. Redraws in place. ``preview``:
    see :class:`SliderDemo`."""
    from . import viz

    def draw(r, v):
        fig, ax = plt.subplots(1, 1, figsize=figsize, dpi=dpi)
        fig.artists_ = {"img": moving(viz.show_images(r["images"], nrow=nrow, ax=ax)),
                        "title": moving(fig.suptitle(title(r, v), fontsize=9))}
        return fig

    def update(fig, r, v):
        fig.artists_["img"].set_data(viz.image_grid(r["images"], nrow=nrow))
        fig.artists_["title"].set_text(title(r, v))

    return SliderDemo(compute, draw, sliders, cache_size, update, preview)
