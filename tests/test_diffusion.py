"""course_lib.diffusion against the DDIM paper's equations, DDPM, and a reference implementation."""
import math

import pytest
import torch

from course_lib.data import GaussianMixture, ring_mixture
from course_lib.diffusion import (ddim_invert, ddim_sample, ddim_step, ddim_step_terms, ddpm_posterior,
                                  predicted_x0, q_sample, q_sigma_posterior, sigma_eta, slerp)
from course_lib.schedules import linear_betas, make_alphas_cumprod, timestep_subsequence

AC = make_alphas_cumprod()


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_q_sigma_keeps_the_marginals_of_eq1(eta):
    """x_t ~ q(x_t | x0), then x_{t-1} ~ q_sigma(x_{t-1} | x_t, x0) has the marginal q(x_{t-1} | x0) of eq. 1 (1)."""
    x0 = torch.tensor([[1.0, -2.0]]).expand(200000, 2)
    t, s = 600, 400
    a_t, a_s = AC[t].item(), AC[s].item()
    x_t = q_sample(x0, a_t, torch.randn(x0.shape, generator=gen(0)))
    mean, var = q_sigma_posterior(x_t, x0, a_t, a_s, sigma_eta(a_t, a_s, eta))
    x_s = mean + var.sqrt() * torch.randn(x0.shape, generator=gen(1))
    assert torch.allclose(x_s.mean(0), math.sqrt(a_s) * x0[0], atol=0.01)
    assert torch.allclose(x_s.var(0), torch.full((2,), 1 - a_s), rtol=0.02)


def test_q_sigma_at_eta1_is_the_ddpm_posterior():
    x_t, x0 = torch.randn(64, 3, 4, 4, generator=gen(2)), torch.randn(64, 3, 4, 4, generator=gen(3))
    t = torch.randint(1, 1000, (64,), generator=gen(4))
    a_t, a_prev = AC[t], AC[t - 1]
    m1, v1 = q_sigma_posterior(x_t, x0, a_t, a_prev, sigma_eta(a_t, a_prev, 1.0))
    m2, v2 = ddpm_posterior(x_t, x0, a_t, a_prev)
    assert torch.allclose(m1, m2, atol=1e-5)
    assert torch.allclose(v1.expand_as(v2), v2, rtol=1e-4, atol=1e-9)


def test_ddim_step_is_q_sigma_with_the_predicted_x0():
    """DDIM eq. 10 (3) / eq. 12 (4): the generative step is q_sigma(x_{t-1} | x_t, f_theta(x_t))."""
    x_t, eps, noise = (torch.randn(8, 2, generator=gen(i)) for i in (5, 6, 7))
    a_t, a_prev, eta = 0.3, 0.6, 0.7
    sigma = sigma_eta(a_t, a_prev, eta)
    mean, var = q_sigma_posterior(x_t, predicted_x0(x_t, eps, a_t), a_t, a_prev, sigma)
    assert torch.allclose(ddim_step(x_t, eps, a_t, a_prev, eta, noise), mean + var.sqrt() * noise, atol=1e-6)


def test_ddim_terms_are_the_three_named_terms():
    x_t, eps, noise = (torch.randn(8, 2, generator=gen(i)) for i in (8, 9, 10))
    a_t, a_prev, eta = 0.3, 0.6, 0.5
    terms = ddim_step_terms(x_t, eps, a_t, a_prev, eta, noise)
    sig = sigma_eta(a_t, a_prev, eta)
    x0 = (x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    assert torch.allclose(terms.pred_x0, x0, atol=1e-6)
    assert torch.allclose(terms.pred_x0_term, math.sqrt(a_prev) * x0, atol=1e-6)
    assert torch.allclose(terms.direction, torch.sqrt(1 - a_prev - sig**2) * eps, atol=1e-6)
    assert torch.allclose(terms.noise, sig * noise, atol=1e-6)


def test_sigma_eta_formula():
    a_t, a_prev = torch.tensor([0.2, 0.5]), torch.tensor([0.4, 0.9])
    expected = 0.6 * torch.sqrt((1 - a_prev) / (1 - a_t)) * torch.sqrt(1 - a_t / a_prev)
    assert torch.allclose(sigma_eta(a_t, a_prev, 0.6), expected)
    assert sigma_eta(0.5, 1.0, 1.0).item() == 0.0  # the last step, to abar = 1, adds no noise


def test_eta0_sampling_is_deterministic_eta1_is_not():
    mix = ring_mixture()
    ts = timestep_subsequence(1000, 20)
    xT = torch.randn(100, 2, generator=gen(11))
    a = ddim_sample(mix.eps_fn(AC), xT, AC, ts, eta=0.0, generator=gen(1))
    b = ddim_sample(mix.eps_fn(AC), xT, AC, ts, eta=0.0, generator=gen(2))
    assert torch.equal(a, b)
    c = ddim_sample(mix.eps_fn(AC), xT, AC, ts, eta=1.0, generator=gen(1))
    d = ddim_sample(mix.eps_fn(AC), xT, AC, ts, eta=1.0, generator=gen(2))
    assert not torch.allclose(c, d)


def test_sigma_hat_variance_is_larger_than_eta1():
    ts = timestep_subsequence(1000, 10)
    mix = GaussianMixture(torch.zeros(1, 2), 0.5)
    xT = torch.randn(20000, 2, generator=gen(12))
    x_hat = ddim_sample(mix.eps_fn(AC), xT, AC, ts, variance="sigma_hat", generator=gen(13))
    x_one = ddim_sample(mix.eps_fn(AC), xT, AC, ts, eta=1.0, generator=gen(13))
    assert x_hat.std() > x_one.std() * 1.05  # the "larger variance" sampler over-disperses at few steps
    with pytest.raises(ValueError, match="variance"):
        ddim_sample(mix.eps_fn(AC), xT, AC, ts, variance="big")


def test_clipping_is_off_by_default_and_explicit():
    x_t, eps = torch.full((1, 2), 3.0), torch.full((1, 2), -1.0)
    assert ddim_step_terms(x_t, eps, 0.5, 0.9).pred_x0.max() > 1
    assert ddim_step_terms(x_t, eps, 0.5, 0.9, clip_x0=1.0).pred_x0.max() == 1.0


def test_inversion_then_sampling_reconstructs():
    """Table 2 in miniature: exact eps* of a Gaussian mixture; error shrinks as S grows."""
    mix = ring_mixture(8, 2.0, 0.3)
    x0, _ = mix.sample(200, gen(14))
    errs = []
    for S in (10, 50, 200):
        ts = timestep_subsequence(1000, S)
        xT = ddim_invert(mix.eps_fn(AC), x0, AC, ts)
        rec = ddim_sample(mix.eps_fn(AC), xT, AC, ts, eta=0.0)
        errs.append(((rec - x0) ** 2).mean().item())
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3, errs
    xT, traj = ddim_invert(mix.eps_fn(AC), x0, AC, timestep_subsequence(1000, 10), return_trajectory=True)
    assert traj.shape == (11, 200, 2) and torch.equal(traj[-1], xT)


def test_slerp():
    z0, z1 = torch.randn(4, 3, 8, 8, generator=gen(15)), torch.randn(4, 3, 8, 8, generator=gen(16))
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-5) and torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-5)
    mid = slerp(z0, z1, 0.5)
    # norms stay near those of the endpoints (linear interpolation would shrink them by about 1/sqrt(2))
    assert torch.allclose(mid.flatten(1).norm(dim=1), z0.flatten(1).norm(dim=1), rtol=0.15)
    e = torch.zeros(2, 2); e[:, 0] = 1
    f = torch.zeros(2, 2); f[:, 1] = 1
    assert torch.allclose(slerp(e, f, 0.5), torch.full((2, 2), math.sqrt(0.5)))
    assert torch.allclose(slerp(e, 2 * e, 0.5), 1.5 * e)  # parallel: linear
    with pytest.raises(ValueError, match="alpha"):
        slerp(e, f, 1.5)


def test_bad_input_names_the_argument():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="sigma"):
        q_sigma_posterior(x, x, 0.5, 0.6, 0.9)  # sigma^2 > 1 - abar_prev
    with pytest.raises(ValueError, match="alpha_bar_prev"):
        ddim_step(x, x, 0.5, 0.0)
    with pytest.raises(ValueError, match="eps"):
        ddim_step(x, torch.zeros(4, 3), 0.5, 0.6)
    with pytest.raises(ValueError, match="alpha_bar_t"):
        predicted_x0(x, x, torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="eta"):
        ddim_step(x, x, 0.5, 0.6, eta=-1)
    with pytest.raises(ValueError, match="x0"):
        q_sigma_posterior(x, torch.zeros(3, 2), 0.5, 0.6, 0.1)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("S", [10, 50])
def test_agrees_with_diffusers_ddim_scheduler(eta, S):
    """Same abar, timesteps, noise predictions and noise as diffusers' DDIMScheduler: outputs agree to 1e-5."""
    from diffusers import DDIMScheduler

    betas = linear_betas(1000).float()
    ref = DDIMScheduler(num_train_timesteps=1000, trained_betas=betas.numpy(), clip_sample=False,
                        set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)
    ref.set_timesteps(S)
    ts = timestep_subsequence(1000, S)
    assert ref.timesteps.tolist() == ts.tolist()
    ac = ref.alphas_cumprod  # identical abar on both sides
    mix = ring_mixture(8, 2.0, 0.3)
    eps_fn = mix.eps_fn(ac)
    xT = torch.randn(64, 2, generator=gen(20))
    ours = ddim_sample(eps_fn, xT, ac, ts, eta=eta, generator=gen(21))
    g = gen(21)
    x = xT
    for i, t in enumerate(ts.tolist()):
        prev = ts[i + 1].item() if i + 1 < len(ts) else None
        noise = None
        if eta > 0 and prev is not None:
            noise = torch.randn(x.shape, generator=g)  # ours draws exactly when sigma > 0
        x = ref.step(eps_fn(x, torch.full((64,), t)), t, x, eta=eta, variance_noise=noise).prev_sample
    assert torch.allclose(ours, x, atol=1e-5), (ours - x).abs().max()


@pytest.mark.parametrize("S", [10, 50])
def test_sigma_hat_sampler_is_diffusers_ddpm_scheduler_with_the_large_variance(S):
    """The paper's "larger variance" sampler (Table 1's sigma-hat row, App. D.3): DDPM's posterior mean over the jump
    tau_i -> tau_{i-1} (the eta = 1 mean) with noise of variance beta' = 1 - alpha_t / alpha_{t-1}; diffusers'
    DDPMScheduler on the same sub-sequence with variance_type="fixed_large" computes that: agree to 1e-5."""
    diffusers = pytest.importorskip("diffusers")
    betas = linear_betas(1000).float()
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, trained_betas=betas.numpy(), clip_sample=False,
                                  variance_type="fixed_large", prediction_type="epsilon")
    ts = timestep_subsequence(1000, S)
    ref.set_timesteps(timesteps=ts.tolist())
    ac = ref.alphas_cumprod
    mix = ring_mixture(8, 2.0, 0.3)
    eps_fn = mix.eps_fn(ac)
    xT = torch.randn(64, 2, generator=gen(30))
    ours = ddim_sample(eps_fn, xT, ac, ts, variance="sigma_hat", generator=gen(31))
    g, x = gen(31), xT
    for t in ts.tolist():  # diffusers draws its noise from the generator at every t > 0, as ours before the last step
        x = ref.step(eps_fn(x, torch.full((64,), t)), t, x, generator=g).prev_sample
    assert ts[-1].item() == 0 and torch.allclose(ours, x, atol=1e-5), (ours - x).abs().max()
    # the old reading (sigma-hat inside the direction term too) is a different sampler: it would fail the line above
    eta1 = ddim_sample(eps_fn, xT, ac, ts, eta=1.0, generator=gen(31))
    assert not torch.allclose(ours, eta1, atol=1e-3)


def test_q_sample_and_ddpm_posterior_match_diffusers_ddpm_scheduler():
    """Reference: diffusers' DDPMScheduler (add_noise is DDIM eq. 1 (1); step with prediction_type="sample" is the posterior
    of Ho et al. eq. 6-7, whose mean and variance we read off two draws of its noise)."""
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                    prediction_type="sample", variance_type="fixed_small", clip_sample=False)
    ac = make_alphas_cumprod()
    assert torch.allclose(sched.alphas_cumprod.double(), ac.double(), atol=1e-6)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([1, 10, 500, 999])
    assert torch.allclose(q_sample(x0, ac[t].float(), noise), sched.add_noise(x0, noise, t), atol=1e-5)
    for step in (1, 10, 500, 999):
        x_t = q_sample(x0, ac[step].item(), noise)
        draws = []
        for seed in (1, 2):
            gen = torch.Generator().manual_seed(seed)
            prev = sched.step(x0, step, x_t, generator=gen).prev_sample
            draws.append((prev, torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))))
        (p1, n1), (p2, n2) = draws
        std = ((p1 - p2) / (n1 - n2)).median()  # the same std everywhere: sigma_t
        mean_ref = p1 - std * n1
        mean, var = ddpm_posterior(x_t, x0, ac[step].item(), ac[step - 1].item())
        assert torch.allclose(mean, mean_ref, atol=1e-4), step
        assert math.isclose(float(var) ** 0.5, float(std), rel_tol=1e-3), step


# -- the core properties (formerly tests/test_diffusion_core.py) -------------------------------------------------
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
