"""Slider demos of notebooks 00-10 held to deterministic proxies of their speed, not to the wall clock.

A test that times itself fails on any busy laptop or loaded CI; the budgets in milliseconds are the benchmark's
(`./course bench --check`). What is asserted here does not depend on the machine:
- a new setting computes once (a demo with a preview computes its asked result once, in the background, after the
  preview), a setting seen before computes nothing (the cache answers);
- a redraw that keeps the layout draws no full figure: only the artists the slider moves (and static artists
  lying above them) are drawn over the kept picture;
- the network evaluations per move are what the sampler needs: S for S steps, none for a cached move.
"""
import matplotlib

matplotlib.use("Agg")
import IPython.display  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axis import Axis  # noqa: E402

from course_lib import checkpoints  # noqa: E402
from course_lib.data import ring_mixture  # noqa: E402
from course_lib.demos import ddim as D  # noqa: E402
from course_lib.demos import guidance as G  # noqa: E402
from course_lib.tools.latency import _demos  # noqa: E402
from course_lib.schedules import make_alphas_cumprod  # noqa: E402


@pytest.fixture(autouse=True)
def _no_frontend(monkeypatch):
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: None)
    yield
    plt.close("all")


GROUPS = {"00-04": ["00 forward", "01 forward", "01 posterior", "01 terms", "01 sampling S<=50", "01 sampling S>=100 (sampler)",
                    "01 shapes samplers", "02 taylor", "02 field", "02 exact guidance", "02 shapes guidance (images)", "03 voronoi",
                    "03 beta", "04 distortion lab"],
          "05": ["05 training snapshots", "05 lambda vs delta", "05 prior sampling (images)"],
          "06": ["06 attention maps", "06 caption to image (images)"],
          "07": ["07 control (images)", "07 snapshots", "07 compose (images)"],
          "08": ["08 threshold (images)", "08 cascade (images)"],
          "09": ["09 adaln", "09 class to image (images)"],
          "10": ["10 caption pair (images)"]}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_demo_computes_once_per_new_setting_and_blits_a_cached_move(group):
    names = GROUPS[group]
    demos = _demos(names)
    assert set(names) <= set(demos)
    for name in names:
        demo, values, _ = demos[name]
        demo.set(**values[0])  # the notebook cell builds the first figure
        demo.clear_cache()
        # the first, a middle and the last of the benchmark's settings (its extremes): the benchmark sets them all
        for v in (values[0], values[len(values) // 2], values[-1]):
            calls = demo.compute_calls
            demo.set(**v)
            first = demo.wait(timeout=120)  # the asked result (after the preview, where the demo shows one)
            assert demo.compute_calls == calls + 1, (name, v, "a new setting computes exactly once")
            draws = demo.full_draws
            again = demo.set(**v)
            assert demo.compute_calls == calls + 1 and again is first, (name, v, "a cached move computes nothing")
            assert demo.full_draws == draws, (name, v, "a move that keeps the layout redraws the whole figure")
            marked = [a for a in demo.kept_figure.findobj() if getattr(a, "_slider_moves", False) and a.get_visible()]
            frame = demo.last_frame
            assert marked and all(a in frame for a in marked), (name, v, "every moving artist is drawn")
            assert not any(isinstance(a, Axis) for a in frame), (name, "tick labels stay in the kept picture")
            visible = [a for a in demo.kept_figure.findobj() if a.get_visible()]
            assert len(frame) < len(visible), (name, "a blitted move draws a part of the figure, not all of it")


class Counting:
    """Wrap a noise prediction (or a module) and count its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_ddim_sampling_demo_runs_s_network_evaluations_per_new_setting_and_none_when_cached():
    ac = make_alphas_cumprod()
    ring = ring_mixture()
    mlp = checkpoints.load("ring8_mlp")
    eps = {"exact eps*": Counting(ring.eps_fn(ac)), "trained MLP": Counting(lambda x, t: mlp(x, t))}
    demo = D.sampling_demo(eps, ring, ac)
    for model in eps:
        for steps in (5, 50, 1000):
            for eta in (0.0, 1.0):
                before = eps[model].calls
                demo.set(model=model, steps=steps, tau="uniform", eta=eta)
                assert eps[model].calls - before == steps, (model, steps, eta)
                demo.set(model=model, steps=steps, tau="uniform", eta=eta)
                assert eps[model].calls - before == steps, "a cached move evaluates nothing"


def test_shapes_guidance_demo_evaluates_each_network_once_per_step_and_sampler():
    ac = make_alphas_cumprod()
    ddpm, noisy = checkpoints.load("shapes_ddpm16"), checkpoints.load("shapes_noisy_classifier16")
    ddpm_batches, classifier_calls = [], []
    ddpm.register_forward_hook(lambda m, args, out: ddpm_batches.append(args[0].shape[0]))
    noisy.register_forward_hook(lambda m, args, out: classifier_calls.append(args[0].shape[0]))
    demo = G.shapes_guidance_demo(ddpm, noisy, ac, num_images=6, steps=16, preview_steps=4)
    for shape, scale in (("circle", 3.0), ("cross", 10.0)):
        ddpm_batches.clear(), classifier_calls.clear()
        demo.set(shape=shape, scale=scale)
        demo.wait(timeout=120)
        # classifier guidance: one DDPM call (6 images) and one classifier call per step; classifier-free guidance:
        # one call per step with the unconditional and conditional halves in one batch of 12; the preview's 4 steps
        # first, then the 16 asked
        assert sorted(ddpm_batches) == [6] * 20 + [12] * 20 and classifier_calls == [6] * 20
    ddpm_batches.clear(), classifier_calls.clear()
    demo.set(shape="circle", scale=3.0)
    assert ddpm_batches == [] and classifier_calls == [], "a cached move evaluates nothing"


def test_caption_demo_runs_one_batched_unet_call_per_ddim_step():
    from course_lib.demos.ldm import caption_demo
    from course_lib.ldm import LatentDiffusion

    pipe = LatentDiffusion.from_shipped("shapes_ldm32")
    calls = []
    pipe.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    demo = caption_demo(pipe, n=4, preview_steps=10)
    for steps, preview in ((2, 0), (10, 0), (30, 10)):
        calls.clear()
        demo.set(size="large", colour="red", shape="circle", row="top", column="left", guidance=3.0, steps=steps)
        demo.wait(timeout=120)
        # guided: empty + caption in one 2n batch; more steps than the preview's: the preview's steps first
        assert len(calls) == preview + steps and set(calls) == {8}, (steps, calls)
    calls.clear()
    demo.set(size="large", colour="red", shape="circle", row="top", column="left", guidance=3.0, steps=10)
    assert calls == [], "a cached move evaluates nothing"


def test_control_demo_runs_one_controlnet_and_one_base_call_per_ddim_step_and_none_at_strength_zero():
    from course_lib.controlnet import ControlPipeline
    from course_lib.demos.controlnet import control_demo

    pipe = ControlPipeline.from_shipped("shapes_controlnet32")
    base_calls, cn_calls = [], []
    pipe.controlled.base.register_forward_hook(lambda m, args, out: base_calls.append(args[0].shape[0]))
    pipe.controlled.controlnets[0].register_forward_hook(lambda m, args, out: cn_calls.append(args[0].shape[0]))
    demo = control_demo(pipe, n=4, preview_steps=5)
    setting = dict(colour="red", shape="circle", mask_shape="circle", row="top", column="left", size="large",
                   guidance=3.0)
    for steps, strength in ((2, 1.0), (10, 2.0), (10, 0.0)):
        base_calls.clear(), cn_calls.clear()
        demo.set(**setting, strength=strength, steps=steps)
        demo.wait(timeout=120)
        evaluations = steps + (5 if steps > 5 else 0)  # a preview of 5 steps first where more are asked
        assert base_calls == [8] * evaluations, (steps, base_calls)  # guided: empty + caption in one 2n batch
        assert cn_calls == ([8] * evaluations if strength else []), "strength 0 is the frozen model: no ControlNet"
    base_calls.clear()
    demo.set(**setting, strength=2.0, steps=10)
    assert base_calls == [], "a cached move evaluates nothing"


def test_cascade_demo_reuses_the_base_samples_when_only_the_super_resolution_stage_changes():
    from course_lib import checkpoints
    from course_lib.demos.imagen import cascade_demo

    base = checkpoints.load("shapes_base16_large_c32")
    sr = {k: checkpoints.load(k) for k in ("shapes_sr32", "shapes_sr32_noaug")}
    base_calls, sr_calls = [], []
    base.register_forward_hook(lambda m, args, out: base_calls.append(args[0].shape[0]))
    for model in sr.values():
        model.register_forward_hook(lambda m, args, out: sr_calls.append(args[0].shape[0]))
    demo = cascade_demo(sr, base, n=2, steps=4)
    caption = dict(colour="red", shape="circle", row="top", column="left", size="large")
    demo.set(**caption, w=4.0, mode="static", model="shapes_sr32", aug_level=0.2)
    assert base_calls == [4] * 4 and sr_calls == [2] * 4  # base guided (2n rows), SR at w = 1 (n rows)
    for change in (dict(aug_level=0.6), dict(model="shapes_sr32_noaug")):
        base_calls.clear(), sr_calls.clear()
        demo.set(**{**caption, "w": 4.0, "mode": "static", "model": "shapes_sr32", "aug_level": 0.2, **change})
        assert base_calls == [], (change, "the base samples are kept per caption, w and mode")
        assert sr_calls == [2] * 4, change
    base_calls.clear(), sr_calls.clear()
    demo.set(**caption, w=8.0, mode="static", model="shapes_sr32", aug_level=0.2)
    assert base_calls == [4] * 4 and sr_calls == [2] * 4, "a new w samples the base again"


def test_threshold_demo_samples_once_per_setting_and_walks_the_steps_from_its_record():
    from course_lib import checkpoints
    from course_lib.demos.imagen import threshold_demo
    from course_lib.imagen import ImagenCascade

    base = checkpoints.load("shapes_base16_large_c32")
    calls = []
    base.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    demo = threshold_demo(ImagenCascade(base, None), n=2, steps=5)
    setting = dict(colour="red", shape="circle", row="top", column="left", size="large", mode="dynamic", w=16.0,
                   percentile=0.995)
    demo.set(**setting, step=4)
    assert calls == [4] * 5  # one guided sampling run
    for step in (0, 2, 3):
        calls.clear()
        demo.set(**setting, step=step)
        assert calls == [], "moving the step slider samples nothing"
    calls.clear()
    demo.set(**{**setting, "mode": "static"}, step=0)
    assert calls == [4] * 5


def test_the_class_demo_samples_once_per_setting_with_one_doubled_batch_per_step():
    from course_lib.demos.dit import class_demo
    from course_lib.ldm import LatentDiffusion

    pipe = LatentDiffusion.from_shipped("shapes_dit")
    calls = []
    pipe.unet.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    demo = class_demo(pipe, n=3)
    demo.set(shape="circle", guidance=3.0, steps=5)
    assert calls == [6] * 5  # guided: the null label and the class in one 2n batch
    calls.clear()
    demo.set(shape="circle", guidance=1.0, steps=4)
    assert calls == [3] * 4, "guidance 1 is the conditional model alone"
    calls.clear()
    demo.set(shape="circle", guidance=3.0, steps=5)
    assert calls == [], "a cached move evaluates nothing"


def test_the_adaln_demo_runs_the_network_once_per_setting():
    from course_lib.demos.dit import adaln_demo, class_latents
    from course_lib.ldm import LatentDiffusion

    pipe = LatentDiffusion.from_shipped("shapes_dit")
    calls = []
    for block in pipe.unet.blocks:
        block.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    demo = adaln_demo(pipe.unet, class_latents(pipe, n=4), pipe.alphas_cumprod)
    assert calls == [4] * len(pipe.unet.blocks) * 8, "building measures the slider's ends: t = 0 and 999, 4 classes"
    calls.clear()
    demo.set(t=500, shape="square")
    assert calls == [4] * len(pipe.unet.blocks)  # one pass through the blocks for the 4 latents
    calls.clear()
    demo.set(t=500, shape="square")
    assert calls == []


def _on_a_frame(fig, xs, ys, height):
    """Which of the pixels (xs, ys) (rows from the top) lie within 2.5 px of an axes' frame: where a tick mark's inner
    end meets a moving image (ticks stay in the kept pixels, under it; a full draw puts them over it)."""
    import numpy as np

    near = np.zeros(len(xs), bool)
    for ax in fig.axes:
        x0, y0, x1, y1 = ax.get_window_extent().extents
        inside_x = (xs >= x0 - 2) & (xs <= x1 + 2)
        inside_y = (height - ys >= y0 - 2) & (height - ys <= y1 + 2)
        near |= inside_y & (np.minimum(np.abs(xs - x0), np.abs(xs - x1)) <= 2.5)
        near |= inside_x & (np.minimum(np.abs(height - ys - y0), np.abs(height - ys - y1)) <= 2.5)
    return near


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_demos_blitted_picture_is_the_full_drawing_of_its_figure(group):
    """What a move shows (kept pixels, moving artists drawn over them, static artists above them blended from kept
    layers) is what drawing the whole figure gives: an artist that changes but is not marked as moving would stay
    stale in the kept pixels and show here. Up to 4 levels of 255 (the 8-bit blend of a kept layer: semi-transparent
    points over a moving image differ by up to 4) and the inner ends of tick marks on a frame."""
    import io

    import numpy as np
    from PIL import Image

    for name, (demo, values, _) in _demos(GROUPS[group]).items():
        demo.set(**values[0])
        demo.wait(timeout=120)
        for v in (values[len(values) // 2], values[-1]):
            demo.set(**v)
            demo.wait(timeout=120)
            shown = np.asarray(Image.open(io.BytesIO(demo.png)).convert("RGB")).astype(int)
            buf = io.BytesIO()
            demo.kept_figure.savefig(buf, format="png", dpi=demo.kept_figure.dpi)
            full = np.asarray(Image.open(buf).convert("RGB")).astype(int)
            assert shown.shape == full.shape, name
            ys, xs = np.nonzero(np.abs(shown - full).max(axis=2) > 4)
            off = ~_on_a_frame(demo.kept_figure, xs, ys, shown.shape[0])
            assert not off.any(), (name, v, f"{off.sum()} pixels differ from a full draw, e.g. at "
                                            f"{list(zip(xs[off][:5].tolist(), ys[off][:5].tolist()))}")
