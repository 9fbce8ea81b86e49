"""The parts of course_lib.diffusion the foundation relies on (training and sampling of the shipped models)."""
import math

import pytest
import torch

from course_lib.data import GaussianMixture
from course_lib.diffusion import ddim_sample, ddim_step, ddim_step_terms, predicted_x0, q_sample, sigma_eta
from course_lib.schedules import make_alphas_cumprod, timestep_subsequence


def test_q_sample_moments():
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200000, 1), 2.0)
    xt = q_sample(x0, 0.36, torch.randn(x0.shape, generator=g))
    assert xt.mean().item() == pytest.approx(0.6 * 2.0, abs=0.01)
    assert xt.var().item() == pytest.approx(0.64, rel=0.01)


def test_predicted_x0_inverts_q_sample():
    x0, eps = torch.randn(16, 3, 4, 4), torch.randn(16, 3, 4, 4)
    a = torch.rand(16) * 0.98 + 0.01
    assert torch.allclose(predicted_x0(q_sample(x0, a, eps), eps, a), x0, atol=1e-4)


def test_sigma_eta_at_one_is_the_ddpm_posterior_std():
    ac = make_alphas_cumprod()
    t = torch.arange(1, 1000)
    a_t, a_prev = ac[t], ac[t - 1]
    beta = 1 - a_t / a_prev
    beta_tilde = (1 - a_prev) / (1 - a_t) * beta
    assert torch.allclose(sigma_eta(a_t, a_prev, 1.0) ** 2, beta_tilde, rtol=1e-4)
    assert torch.all(sigma_eta(a_t, a_prev, 0.0) == 0)


def test_ddim_step_terms_add_up_and_eta0_is_deterministic():
    x, eps = torch.randn(8, 2), torch.randn(8, 2)
    terms = ddim_step_terms(x, eps, 0.5, 0.7, eta=0.0)
    assert torch.allclose(terms.x_prev, terms.pred_x0_term + terms.direction + terms.noise)
    assert torch.all(terms.noise == 0)
    assert torch.equal(ddim_step(x, eps, 0.5, 0.7), ddim_step(x, eps, 0.5, 0.7))
    expected = math.sqrt(0.7) * (x - math.sqrt(0.5) * eps) / math.sqrt(0.5) + math.sqrt(0.3) * eps
    assert torch.allclose(terms.x_prev, expected, atol=1e-6)


@pytest.mark.parametrize("eta,steps", [(0.0, 50), (1.0, 1000), (0.5, 100)])
def test_sampling_with_the_exact_eps_recovers_a_gaussian(eta, steps):
    """Data N(mu, s^2 I): with the exact eps*, sampling must return that distribution."""
    mix = GaussianMixture(torch.tensor([[1.5, -0.5]]), 0.4)
    ac = make_alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    x = ddim_sample(mix.eps_fn(ac), torch.randn(20000, 2, generator=g), ac,
                    timestep_subsequence(1000, steps), eta=eta, generator=g)
    assert torch.allclose(x.mean(0), torch.tensor([1.5, -0.5]), atol=0.03)
    assert torch.allclose(x.std(0), torch.tensor([0.4, 0.4]), atol=0.03)


def test_sampler_is_seeded_and_returns_trajectory():
    ac = make_alphas_cumprod()
    mix = GaussianMixture(torch.zeros(1, 2), 1.0)
    ts = timestep_subsequence(1000, 10)
    xT = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    a = ddim_sample(mix.eps_fn(ac), xT, ac, ts, eta=1.0, generator=torch.Generator().manual_seed(3))
    b, traj = ddim_sample(mix.eps_fn(ac), xT, ac, ts, eta=1.0, generator=torch.Generator().manual_seed(3),
                          return_trajectory=True)
    assert torch.equal(a, b) and traj.shape == (11, 5, 2) and torch.equal(traj[0], xT)


def test_bad_input():
    ac = make_alphas_cumprod()
    with pytest.raises(ValueError, match="eta"):
        sigma_eta(0.5, 0.6, -0.1)
    with pytest.raises(ValueError, match="alpha_bar_t"):
        q_sample(torch.zeros(2, 2), 1.5, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="noise"):
        q_sample(torch.zeros(2, 2), 0.5, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="alpha_bar_t"):
        q_sample(torch.zeros(2, 2), torch.full((3,), 0.5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="timesteps"):
        ddim_sample(lambda x, t: x, torch.zeros(2, 2), ac, [10, 20, 5])
    with pytest.raises(ValueError, match="timesteps"):
        ddim_sample(lambda x, t: x, torch.zeros(2, 2), ac, [1000, 5])
