"""The slider demos of notebook 01: compute at the sliders' extremes, check what they return, draw."""
import matplotlib.pyplot as plt
import torch

from course_lib import checkpoints
from course_lib.data import generate_shapes, ring_mixture
from course_lib.demos import ddim as demos
from course_lib.diffusion import ddpm_posterior
from course_lib.schedules import make_alphas_cumprod

AC = make_alphas_cumprod()
RING = ring_mixture()


def _extremes(demo):
    """Every slider at its minimum, then at its maximum (dropdowns: first and last option)."""
    lo, hi = {}, {}
    for k, w in demo.sliders.items():
        if hasattr(w, "options"):
            opts = list(w.options)
            lo[k], hi[k] = opts[0], opts[-1]
        else:
            lo[k], hi[k] = w.min, w.max
    return lo, hi


def test_forward_demo():
    pts, y = RING.sample(100, torch.Generator().manual_seed(0))
    img = generate_shapes(1, 32, seed=1).images[0]
    demo = demos.forward_demo(img, pts, y, RING, AC)
    lo, hi = _extremes(demo)
    r0, r1 = demo.set(**lo), demo.set(**hi)
    assert torch.allclose(r0["image"], img, atol=0.05)  # t = 0: noise std sqrt(1 - abar_0) = 0.01
    assert abs(r1["points"].std().item() - 1) < 0.15    # t = T-1: almost pure noise
    assert len(demo.kept_figure.axes) == 2
    plt.close("all")


def test_posterior_demo_matches_ddpm_at_eta_one():
    demo = demos.posterior_demo(torch.tensor([2.0, 0.0]), AC)
    r = demo.set(t=300, jump=100, eta=1.0)
    m, v = ddpm_posterior(r["x_t"][None], torch.tensor([[2.0, 0.0]]), AC[300].item(), AC[200].item())
    assert torch.allclose(r["mean"], m[0], atol=1e-5) and abs(r["std"] - v.sqrt().item()) < 1e-5
    assert demo.set(eta=0.0)["std"] == 0.0
    lo, hi = _extremes(demo)
    for vals in (lo, hi):
        assert torch.isfinite(demo.set(**vals)["samples"]).all()
    plt.close("all")


def test_terms_demo_terms_add_up_and_extremes_draw():
    demo = demos.terms_demo(RING, AC)
    lo, hi = _extremes(demo)
    for vals in (lo, hi, dict(t=400, jump=100, eta=0.5)):
        r = demo.set(**vals)
        tm = r["terms"]
        assert torch.allclose(tm.x_prev, tm.pred_x0_term + tm.direction + tm.noise)
        assert torch.isfinite(tm.x_prev).all()
    assert demo.set(eta=0.0)["terms"].noise.abs().max() == 0
    r = demo.set(t=1, jump=5, eta=0.0)  # jump past t = 0: the step goes to alpha = 1, i.e. returns x0-hat
    assert torch.allclose(r["terms"].x_prev, r["terms"].pred_x0, atol=1e-5)
    plt.close("all")


def test_sampling_demo_quality_responds_to_steps():
    mlp = checkpoints.load("ring8_mlp")
    demo = demos.sampling_demo({"exact eps*": RING.eps_fn(AC), "trained MLP": lambda x, t: mlp(x, t)}, RING, AC)
    few = demo.set(model="exact eps*", steps=5, tau="uniform", eta=0.0)
    many = demo.set(steps=200)
    assert few["mmd"] > 2 * many["mmd"] and many["nll"] < 1.0
    lo, hi = _extremes(demo)
    assert torch.isfinite(demo.set(**lo)["x"]).all() and torch.isfinite(demo.set(**hi)["x"]).all()
    assert demo.set(model="exact eps*", steps=5, tau="uniform", eta=0.0) is few  # cached
    plt.close("all")


def test_shapes_sampler_demo_reads_every_configuration():
    table = {"eta=0.0": {"10": {"fd": 1.0, "precision": 1.0, "recall": 1.0}, "20": {"fd": 2.0, "precision": 1.0,
                                                                                     "recall": 1.0}}}
    samples = {"eta=0.0|S=10": torch.zeros(16, 3, 16, 16), "eta=0.0|S=20": torch.ones(16, 3, 16, 16)}
    demo = demos.shapes_sampler_demo(samples, table)
    assert demo.set(sampler="eta=0.0", steps=20)["fd"] == 2.0
    assert torch.equal(demo.set(steps=10)["x"], samples["eta=0.0|S=10"])
    plt.close("all")
