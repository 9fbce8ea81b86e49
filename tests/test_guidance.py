"""course_lib.guidance: the formulas, and guided sampling with the exact mixture (no learned error)."""

import pytest
import torch

from course_lib.data import grid_mixture, ring_mixture
from course_lib.diffusion import ddim_sample
from course_lib.guidance import (cfg_eps, cfg_sample, classifier_guided_eps, classifier_guided_mean,
                                 classifier_log_prob_grad, guided_ddim_sample, guided_ddpm_sample)
from course_lib.metrics import mmd_rbf
from course_lib.nets import UNet, UNetConfig
from course_lib.schedules import make_alphas_cumprod, timestep_subsequence

AC = make_alphas_cumprod()


def gen(s):
    return torch.Generator().manual_seed(s)


def test_formulas_against_hand_computed_values():
    mean, grad = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.5, 4.0]])
    assert torch.allclose(classifier_guided_mean(mean, 0.25, grad, 2.0), torch.tensor([[1.25, 0.0]]))
    eps = torch.tensor([[0.3, 0.3]])
    # sqrt(1 - 0.36) = 0.8: 0.3 - 0.8 * 3 * 0.5 = -0.9 ; 0.3 - 0.8 * 3 * 4 = -9.3
    assert torch.allclose(classifier_guided_eps(eps, grad, 0.36, 3.0), torch.tensor([[-0.9, -9.3]]))
    eu, ec = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    assert torch.allclose(cfg_eps(eu, ec, 0.0), eu) and torch.allclose(cfg_eps(eu, ec, 1.0), ec)
    assert torch.allclose(cfg_eps(eu, ec, 3.0), torch.tensor([[4.0, 3.0]]))  # (1+w) e_c - w e_u, w = 2


def test_log_prob_grad_matches_finite_differences_and_is_per_sample():
    mix = grid_mixture(2, 2.0, 0.4)
    clf = mix.classifier_fn(AC)
    x = torch.randn(5, 2, generator=gen(0), dtype=torch.float32)
    t = torch.full((5,), 300)
    y = torch.tensor([0, 1, 2, 3, 0])
    g = classifier_log_prob_grad(clf, x, t, y)
    h = 1e-3
    for d in range(2):
        e = torch.zeros_like(x); e[:, d] = h
        lp = lambda z: mix.class_posterior(z, AC[t], log=True).gather(1, y[:, None])[:, 0]  # noqa: E731
        fd = (lp(x + e) - lp(x - e)) / (2 * h)
        assert torch.allclose(g[:, d], fd, atol=2e-3)
    single = torch.cat([classifier_log_prob_grad(clf, x[i:i + 1], t[i:i + 1], y[i:i + 1]) for i in range(5)])
    assert torch.allclose(g, single, atol=1e-6)
    with pytest.raises(ValueError, match="y"):
        classifier_log_prob_grad(clf, x, t, torch.tensor([0, 9, 0, 0, 0]))


def _exact(mix):
    clf = mix.classifier_fn(AC)
    return mix.eps_fn(AC), (lambda x, t, y: classifier_log_prob_grad(clf, x, t, y))


def test_scale_one_reproduces_the_class_conditional_distribution():
    """Exact eps* of the unconditional mixture + exact classifier at s = 1 = sampling from component y."""
    mix = ring_mixture(8, 2.0, 0.3)
    eps_fn, grad_fn = _exact(mix)
    y = torch.full((1000,), 2)
    target = mix.means[2] + 0.3 * torch.randn(1000, 2, generator=gen(1))
    x = guided_ddim_sample(eps_fn, grad_fn, torch.randn(1000, 2, generator=gen(2)), AC,
                           timestep_subsequence(1000, 100), y, 1.0)
    assert torch.allclose(x.mean(0), mix.means[2], atol=0.05)
    assert torch.allclose(x.std(0), torch.full((2,), 0.3), atol=0.03)
    assert mmd_rbf(x, target).item() < 0.01
    unguided = ddim_sample(eps_fn, torch.randn(1000, 2, generator=gen(2)), AC, timestep_subsequence(1000, 100))
    assert mmd_rbf(unguided, target).item() > 10 * mmd_rbf(x, target).item()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_guidance_moves_samples_toward_the_class(sampler):
    mix = ring_mixture(8, 2.0, 0.3)
    eps_fn, grad_fn = _exact(mix)
    y = torch.full((400,), 5)
    frac = []
    for s in (0.0, 1.0, 4.0):
        xT = torch.randn(400, 2, generator=gen(3))
        if sampler == "ddim":
            x = guided_ddim_sample(eps_fn, grad_fn, xT, AC, timestep_subsequence(1000, 50), y, s)
        else:
            x = guided_ddpm_sample(eps_fn, grad_fn, xT, AC, timestep_subsequence(1000, 100), y, s, generator=gen(4))
        frac.append((mix.class_posterior(x).argmax(1) == 5).float().mean().item())
    assert frac[0] < 0.3 and frac[1] > 0.9 and frac[2] >= frac[1] - 0.02, frac


def test_scale_zero_is_unguided_sampling_exactly():
    mix = ring_mixture()
    eps_fn, grad_fn = _exact(mix)
    xT, ts, y = torch.randn(50, 2, generator=gen(5)), timestep_subsequence(1000, 20), torch.zeros(50, dtype=torch.long)
    assert torch.equal(guided_ddim_sample(eps_fn, grad_fn, xT, AC, ts, y, 0.0, eta=0.5, generator=gen(6)),
                       ddim_sample(eps_fn, xT, AC, ts, eta=0.5, generator=gen(6)))
    # Algorithm 1 at s = 0 is DDPM's ancestral step, which DDIM computes as eta = 1 (same noise draws)
    assert torch.allclose(guided_ddpm_sample(eps_fn, grad_fn, xT, AC, ts, y, 0.0, generator=gen(7)),
                          ddim_sample(eps_fn, xT, AC, ts, eta=1.0, generator=gen(7)), atol=1e-5)


def test_cfg_sample_at_scales_zero_and_one():
    torch.manual_seed(0)
    net = UNet(UNetConfig(num_classes=4, base_channels=16, num_res_blocks=1)).eval()
    torch.nn.init.normal_(net.conv_out.weight, std=0.05)
    xT, ts, y = torch.randn(3, 3, 16, 16, generator=gen(8)), timestep_subsequence(1000, 5), torch.tensor([0, 1, 2])
    with torch.no_grad():
        uncond = ddim_sample(lambda x, t: net(x, t), xT, AC, ts)
        cond = ddim_sample(lambda x, t: net(x, t, y), xT, AC, ts)
        assert torch.allclose(cfg_sample(net, xT, AC, ts, y, 0.0), uncond, atol=1e-4)
        assert torch.allclose(cfg_sample(net, xT, AC, ts, y, 1.0), cond, atol=1e-4)


def test_bad_input():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="variance"):
        classifier_guided_mean(x, -1.0, x, 1.0)
    with pytest.raises(ValueError, match="grad_log_prob"):
        classifier_guided_eps(x, torch.zeros(3, 2), 0.5, 1.0)
    with pytest.raises(ValueError, match="alpha_bar_t"):
        classifier_guided_eps(x, x, 1.5, 1.0)
    with pytest.raises(TypeError, match="scale"):
        cfg_eps(x, x, "2")
    with pytest.raises(ValueError, match="eps_cond"):
        cfg_eps(x, torch.zeros(2, 3), 1.0)


def test_classifier_free_guidance_is_batched_in_one_place_with_the_models_null_condition():
    from course_lib.guidance import cfg_eps_fn

    calls = []

    class Spy(torch.nn.Module):
        def forward(self, x, t, y):
            calls.append(y.clone())
            return x * (1 + y[:, None].float())

        def null_condition(self, n, device=None):
            return torch.full((n,), 7, dtype=torch.long, device=device)

    x, t, y = torch.randn(3, 2), torch.full((3,), 10), torch.tensor([0, 1, 2])
    out = cfg_eps_fn(Spy(), y, 3.0)(x, t)
    assert torch.equal(calls[-1], torch.tensor([7, 7, 7, 0, 1, 2]))  # one batch of 2N: the null half first
    e_u, e_c = x * 8, x * (1 + y[:, None].float())
    assert torch.allclose(out, e_u + 3.0 * (e_c - e_u))
    cfg_eps_fn(Spy(), y, 1.0)(x, t)
    assert torch.equal(calls[-1], y)  # scale 1 is the conditional model: one evaluation of N


def test_guided_density_is_the_normalised_product_of_eq2():
    from course_lib.guidance import guided_density

    log_p = torch.log(torch.tensor([0.2, 0.5, 0.3]))
    log_y = torch.log(torch.tensor([0.9, 0.1, 0.5]))
    prod = torch.tensor([0.2 * 0.9, 0.5 * 0.1, 0.3 * 0.5])
    assert torch.allclose(guided_density(log_p, log_y), prod / prod.sum())
    assert torch.allclose(guided_density(log_p + 7.0, log_y - 3.0), prod / prod.sum())  # constants cancel in Z
