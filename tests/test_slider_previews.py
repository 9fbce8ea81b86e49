"""Previews of slider demos: a new setting of a slow demo shows a cheap stand-in at once, marked as one, and the
asked result follows from a background thread. What is shown must be what it says it is:

- the preview is the demo's own computation at the preview's settings (fewer steps), computed afresh here;
- the asked result that replaces it equals a direct computation at the asked settings, bit for bit (computed
  here with one intra-op thread, as the background thread runs);
- a cached setting is answered from the cache with no preview, and the cached object is the asked result;
- a result the sliders moved away from is cached, never shown; an error in the background is shown and raised.
No wall clock: the benchmark (``./course bench --check``) holds the milliseconds.
"""
import threading

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib.tools.latency import _demos  # noqa: E402
from course_lib.widgets import fewer_steps, image_strip_demo, slider_demo  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(steps, level):
    """A fake sampler: a grey strip whose brightness says (level, steps)."""
    return torch.full((2, 3, 4, 4), level / 10 - steps / 100)


def _strip(preview_steps=3, gate=None, calls=None):
    def compute(level, steps):
        if calls is not None:
            calls.append((level, steps, threading.current_thread() is threading.main_thread()))
        if gate is not None and steps > preview_steps:
            gate.wait(10)
        if level == 9 and steps > preview_steps:
            raise ValueError("level: 9 breaks the fake sampler on purpose")
        return {"images": _images(steps, level)}

    return image_strip_demo(compute, lambda r, v: f"level {v['level']}, {v['steps']} steps", nrow=2,
                            preview=fewer_steps(compute, preview_steps), level=(0, 9, 1, 1), steps=(1, 50, 1, 2))


def _pixels(png):
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_a_new_setting_shows_its_marked_preview_first_and_the_asked_picture_after():
    calls, gate = [], threading.Event()
    demo = _strip(calls=calls, gate=gate)
    demo.update()  # what show() draws: the notebook cell's first picture is the asked one, computed in the cell
    assert demo.showing == "asked" and demo.previews == 0
    shown = demo.set(level=4, steps=20)
    assert demo.showing == "preview" and shown["preview"] == "preview: 3 of 20 steps, the 20-step picture follows"
    torch.testing.assert_close(shown["images"], _images(3, 4), rtol=0, atol=0)
    assert demo.kept_figure._preview_note.get_text() == shown["preview"]  # the picture says it is a preview
    gate.set()  # the background compute may finish now
    asked = demo.wait(timeout=30)
    assert demo.showing == "asked" and "preview" not in asked
    torch.testing.assert_close(asked["images"], _images(20, 4), rtol=0, atol=0)
    assert demo.kept_figure._preview_note.get_text() == ""
    assert calls[-2:] == [(4, 3, True), (4, 20, False)]  # the preview here, the asked steps in the background
    # the asked picture is the one a demo without previews draws for the same setting
    plain = image_strip_demo(lambda level, steps: {"images": _images(steps, level)},
                             lambda r, v: f"level {v['level']}, {v['steps']} steps", nrow=2, level=(0, 9, 1, 1),
                             steps=(1, 50, 1, 2))
    plain.set(level=4, steps=20)
    assert np.array_equal(_pixels(demo.png), _pixels(plain.png))
    # seen before: the cache answers with the very same object, no preview
    previews, n = demo.previews, len(calls)
    demo.set(level=1, steps=3)
    assert demo.showing == "asked" and calls[-1] == (1, 3, True)  # at most preview_steps: computed directly
    assert demo.set(level=4, steps=20) is asked and demo.showing == "asked"
    assert demo.previews == previews and len(calls) == n + 1


def test_a_setting_the_sliders_left_is_cached_but_never_shown():
    gate = threading.Event()
    demo = _strip(gate=gate)
    demo.set(level=2, steps=10)  # its asked result waits on the gate in the background
    demo.set(level=3, steps=10)  # the learner moves on before it is ready
    gate.set()
    asked = demo.wait(timeout=30)
    torch.testing.assert_close(asked["images"], _images(10, 3), rtol=0, atol=0)
    assert demo.showing == "asked" and demo.values() == {"level": 3, "steps": 10}
    kept = demo.cached(level=2, steps=10)
    assert kept is not None and "preview" not in kept
    torch.testing.assert_close(kept["images"], _images(10, 2), rtol=0, atol=0)


def test_an_error_in_the_background_is_shown_to_the_learner_and_raised_by_wait():
    demo = _strip()
    demo.set(level=9, steps=10)
    with pytest.raises(ValueError, match="level: 9 breaks"):
        demo.wait(timeout=30)
    assert demo.output.outputs[0]["name"] == "stderr" and "level: 9 breaks" in demo.output.outputs[0]["text"]
    demo.wait(timeout=30)  # raised once


def test_fewer_steps_refuses_a_bad_step_count_and_a_demo_without_steps():
    with pytest.raises(ValueError, match="preview_steps: expected an int >= 1, got 0"):
        fewer_steps(lambda **v: v, 0)
    with pytest.raises(ValueError, match="values: expected a 'steps' slider or full_steps"):
        fewer_steps(lambda **v: v, 2)(level=1)
    assert fewer_steps(lambda **v: v, 4, full_steps=20)(level=1) == {
        "level": 1, "steps": 4, "preview": "preview: 4 of 20 steps, the 20-step picture follows"}


def test_the_background_thread_leaves_the_main_threads_torch_threads_alone():
    before = torch.get_num_threads()
    demo = _strip()
    demo.set(level=5, steps=30)
    demo.wait(timeout=30)
    assert torch.get_num_threads() == before


def test_a_demo_without_a_preview_answers_every_move_in_the_callback():
    demo = slider_demo(lambda x: {"x": x}, lambda r, v: plt.figure(), x=(0, 3, 1, 0))
    assert demo.set(x=2) == {"x": 2} and demo.showing == "asked" and demo.previews == 0


# the notebooks' image demos that preview: one setting each that previews (more steps than the preview's)
PREVIEWING = ["02 shapes guidance (images)", "06 caption to image (images)", "07 control (images)",
              "07 compose (images)", "08 threshold (images)", "08 cascade (images)", "09 class to image (images)",
              "10 caption pair (images)"]


def _assert_same(a: dict, b: dict, atol: float):
    """Every entry of two demo results equal (tensors and numbers within ``atol``), the preview's mark aside."""
    keys = set(a) - {"preview"}
    assert keys == set(b) - {"preview"}, (sorted(a), sorted(b))
    for k in sorted(keys):
        x, y = a[k], b[k]
        if isinstance(x, torch.Tensor):
            torch.testing.assert_close(x, y, rtol=0, atol=atol, msg=lambda m: f"{k}: {m}")
        elif isinstance(x, (int, float, list, tuple)) and not isinstance(x, bool):
            np.testing.assert_allclose(np.asarray(x, dtype=float), np.asarray(y, dtype=float), rtol=0, atol=atol,
                                       err_msg=k)
        else:
            assert x == y, k


def _preview_steps(demo, values):
    """The steps the demo's preview runs for ``values``: from its marked text."""
    shown = demo.preview_fn(**values)
    return None if shown is None else int(shown["preview"].split()[1])


@pytest.mark.parametrize("name", PREVIEWING)
def test_each_image_demos_preview_and_asked_picture_equal_direct_computations(name):
    demo, values, budget = _demos([name])[name]
    assert budget == "images"
    demo.set(**values[0])
    demo.wait(timeout=120)
    asked_values = max(values[::-1], key=lambda v: v.get("steps", 0))  # the most steps (the last, at fixed steps)
    k = _preview_steps(demo, asked_values)
    assert k is not None, (name, asked_values, "the benchmark's most costly setting of these demos previews")
    demo.clear_cache()
    shown = demo.set(**asked_values)
    assert demo.showing == "preview" and shown["preview"].startswith(f"preview: {k} of ")
    with torch.no_grad():
        direct_preview = demo.compute_fn(**{**asked_values, "steps": k})  # the preview's settings, afresh
    _assert_same(shown, direct_preview, atol=0)
    asked = demo.wait(timeout=120)
    assert demo.showing == "asked" and "preview" not in asked
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the background thread computes: the same summation order, the same bits
    try:
        direct = demo.compute_fn(**asked_values)  # the asked settings, here in the main thread
    finally:
        torch.set_num_threads(threads)
    _assert_same(asked, direct, atol=0)
    assert demo.set(**asked_values) is asked, "a cached move shows the asked result, no preview"
