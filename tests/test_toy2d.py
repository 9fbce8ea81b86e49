import math

import pytest
import torch

from course_lib.data import GaussianMixture, grid_mixture, ring_mixture, swiss_roll, two_moons
from course_lib.diffusion import q_sample


@pytest.fixture
def mix():
    return ring_mixture(8, radius=2.0, std=0.3)


def test_ring_and_grid_geometry():
    r = ring_mixture(8, 2.0, 0.1)
    assert torch.allclose(r.means.norm(dim=1), torch.full((8,), 2.0))
    g = grid_mixture(3, 1.5, 0.1)
    assert g.means.shape == (9, 2) and torch.allclose(g.means.mean(0), torch.zeros(2), atol=1e-6)


def test_sampling_moments(mix):
    x, y = mix.sample(40000, torch.Generator().manual_seed(0))
    assert x.shape == (40000, 2) and y.shape == (40000,)
    resid = x - mix.means[y]
    assert resid.std().item() == pytest.approx(0.3, rel=0.02)
    assert torch.bincount(y, minlength=8).min() > 4500


def test_log_prob_integrates_to_one(mix):
    xs = torch.linspace(-4, 4, 401)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    for a in (1.0, 0.5, 0.05):
        mass = mix.log_prob(pts, a).exp().sum() * (xs[1] - xs[0]) ** 2
        assert mass.item() == pytest.approx(1.0, abs=0.01 if a > 0.1 else 0.03)


@pytest.mark.parametrize("alpha_bar", [0.99, 0.6, 0.1])
def test_eps_star_matches_autograd_of_noised_log_density(mix, alpha_bar):
    x = torch.randn(256, 2, generator=torch.Generator().manual_seed(1)) * 2
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(mix.log_prob(xr, alpha_bar).sum(), xr)
    expected = -math.sqrt(1 - alpha_bar) * grad
    assert torch.allclose(mix.eps_star(x, alpha_bar), expected, atol=1e-5)


def test_eps_star_matches_monte_carlo_posterior_mean_of_the_noise():
    """E[eps | x_t] by rejection-free binning: draw (x0, eps), noise, and average eps near a query point."""
    mix = ring_mixture(8, 2.0, 0.3)
    g = torch.Generator().manual_seed(2)
    a = 0.5
    x0, _ = mix.sample(2_000_000, g)
    eps = torch.randn(x0.shape, generator=g)
    xt = q_sample(x0, a, eps)
    for query in (torch.tensor([1.0, 0.3]), torch.tensor([-0.5, -1.2]), torch.tensor([0.0, 0.0])):
        near = (xt - query).norm(dim=1) < 0.08
        assert near.sum() > 1000
        mc = eps[near].mean(0)
        exact = mix.eps_star(query[None], a)[0]
        se = eps[near].std(0) / near.sum().sqrt()
        assert torch.all((mc - exact).abs() < 4 * se + 0.02), (mc, exact)


def test_class_posterior_is_bayes_rule_and_matches_monte_carlo():
    mix = grid_mixture(2, 2.0, 0.4)
    g = torch.Generator().manual_seed(3)
    a = 0.3
    x0, y = mix.sample(1_000_000, g)
    xt = q_sample(x0, a, torch.randn(x0.shape, generator=g))
    query = torch.tensor([0.3, -0.2])
    near = (xt - query).norm(dim=1) < 0.05
    mc = torch.bincount(y[near], minlength=4).double() / near.sum()
    exact = mix.class_posterior(query[None], a)[0].double()
    assert torch.allclose(mc, exact, atol=0.03)
    p = mix.class_posterior(torch.randn(10, 2), torch.rand(10) * 0.9 + 0.05)
    assert torch.allclose(p.sum(1), torch.ones(10))


def test_per_sample_alpha_bar_equals_scalar_calls(mix):
    x = torch.randn(3, 2)
    a = torch.tensor([0.9, 0.5, 0.1])
    batched = mix.eps_star(x, a)
    single = torch.cat([mix.eps_star(x[i:i + 1], a[i].item()) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6)


def test_eps_fn_indexes_the_table(mix):
    ac = torch.linspace(0.99, 0.01, 10)
    x = torch.randn(4, 2)
    t = torch.tensor([0, 3, 3, 9])
    assert torch.allclose(mix.eps_fn(ac)(x, t), mix.eps_star(x, ac[t]))


def test_swiss_roll_and_moons_are_deterministic_and_scaled():
    a = swiss_roll(5000, generator=torch.Generator().manual_seed(0))
    b = swiss_roll(5000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and 0.5 < a.std().item() < 1.5
    m, y = two_moons(5000, generator=torch.Generator().manual_seed(0))
    assert m.shape == (5000, 2) and set(y.unique().tolist()) == {0, 1}
    assert m.mean(0).abs().max() < 0.2 and 0.5 < m.std().item() < 1.5


def test_bad_input():
    with pytest.raises(ValueError, match="std"):
        GaussianMixture(torch.zeros(2, 2), -1.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(torch.zeros(2, 2), 1.0, weights=[1.0, -1.0])
    mix = ring_mixture()
    with pytest.raises(ValueError, match="alpha_bar"):
        mix.eps_star(torch.zeros(3, 2), 0.0)
    with pytest.raises(ValueError, match="alpha_bar"):
        mix.eps_star(torch.zeros(3, 2), torch.rand(4) * 0.5 + 0.1)
    with pytest.raises(ValueError, match="x_t"):
        mix.log_prob(torch.zeros(3, 3))
    with pytest.raises(TypeError, match="n"):
        mix.sample(2.5)
