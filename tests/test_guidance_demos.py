"""The slider demos of notebook 02 at their extremes."""
import matplotlib.pyplot as plt
import torch

from course_lib import checkpoints
from course_lib.data import ring_mixture
from course_lib.demos import guidance as demos
from course_lib.schedules import make_alphas_cumprod

AC = make_alphas_cumprod()
RING = ring_mixture(8, 2.0, 0.3)


def test_taylor_demo_approximation_improves_as_the_variance_shrinks():
    demo = demos.taylor_demo(RING, AC)
    small, large = demo.set(log10_var=-3.0, y=0), demo.set(log10_var=0.0, y=7)
    assert small["tv"] < 0.05 < large["tv"]
    for r in (small, large):
        assert abs(r["exact"].sum().item() * (6 / 120) ** 2 - 1) < 1e-3  # a normalised density on the grid
    plt.close("all")


def test_posterior_field_sharpens_with_scale_and_points_to_the_class():
    demo = demos.posterior_field_demo(RING, AC)
    r1, r10 = demo.set(t=300, y=0, scale=1.0), demo.set(scale=10.0)
    assert r10["post_s"].sum() < r1["post_s"].sum()  # p^s <= p for p in [0, 1]
    for vals in (dict(t=0, y=0, scale=0.0), dict(t=999, y=7, scale=10.0)):
        assert torch.isfinite(demo.set(**vals)["grad"]).all()
    plt.close("all")


def test_exact_guidance_demo_hits_the_class_more_with_scale():
    demo = demos.exact_guidance_demo(RING, AC, num_points=200)
    hits = [demo.set(y=2, scale=s)["hit"] for s in (0.0, 1.0, 10.0)]
    assert hits[0] < 0.3 < 0.9 < hits[1] <= hits[2] + 0.02
    # the right Voronoi region is not the right density: at s = 10 the samples leave the component (data: 1.25 std)
    near, far = demo.set(y=2, scale=1.0)["distance"], demo.set(y=2, scale=10.0)["distance"]
    assert 0.8 < near < 1.5 and far > 3.0, (near, far)
    plt.close("all")


def test_shapes_guidance_demo_shows_the_asked_shape():
    ddpm = checkpoints.load("shapes_ddpm16")
    noisy = checkpoints.load("shapes_noisy_classifier16")
    clean = checkpoints.load("shapes_classifier16")
    demo = demos.shapes_guidance_demo(ddpm, noisy, AC, num_images=8, steps=25)
    for shape_id, shape in enumerate(["circle", "cross"]):
        demo.set(shape=shape, scale=3.0)  # a preview of fewer steps first (marked as one)
        r = demo.wait(timeout=120)         # the asked 25 steps
        assert demo.showing == "asked" and "preview" not in r
        for key in ("cg", "cfg"):
            with torch.no_grad():
                acc = (clean(r[key].clamp(-1, 1)).argmax(1) == (0 if shape == "circle" else 3)).float().mean()
            assert acc >= 0.75, (shape, key, acc)
    assert torch.isfinite(demo.set(shape="circle", scale=0.0)["cg"]).all()
    plt.close("all")
