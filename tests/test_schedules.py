import math

import pytest
import torch

from course_lib.schedules import (alphas_cumprod, cosine_betas, linear_betas, make_alphas_cumprod,
                                  timestep_subsequence)


def test_linear_betas_endpoints_and_spacing():
    b = linear_betas(1000)
    assert b.shape == (1000,)
    assert b[0].item() == pytest.approx(1e-4) and b[-1].item() == pytest.approx(0.02)
    assert torch.allclose(b.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))


def test_alphas_cumprod_is_product_of_one_minus_beta():
    b = linear_betas(1000)
    ac = alphas_cumprod(b)
    assert ac[0].item() == pytest.approx(1 - 1e-4)
    assert ac[10].item() == pytest.approx(math.prod(1 - b[i].item() for i in range(11)), rel=1e-12)
    assert bool((ac.diff() < 0).all())
    # DDPM's well-known value: abar_T ~ 4.0e-5 for the linear schedule
    assert ac[-1].item() == pytest.approx(4.04e-5, rel=0.02)


def test_cosine_schedule_follows_its_definition():
    T, s = 1000, 0.008
    ac = alphas_cumprod(cosine_betas(T, s))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 500, 900):
        assert ac[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert cosine_betas(T).max().item() <= 0.999


def test_make_alphas_cumprod_names():
    assert make_alphas_cumprod("linear").dtype == torch.float32
    with pytest.raises(ValueError, match="schedule"):
        make_alphas_cumprod("sigmoid")


@pytest.mark.parametrize("kind", ["uniform", "quadratic", "trailing"])
@pytest.mark.parametrize("S", [1, 2, 10, 20, 50, 100, 999, 1000])
def test_subsequences_are_strictly_decreasing_in_range(kind, S):
    ts = timestep_subsequence(1000, S, kind)
    assert ts.shape == (S,) and ts.dtype == torch.long
    assert int(ts.min()) >= 0 and int(ts.max()) <= 999
    assert bool((ts[1:] < ts[:-1]).all())


def test_subsequence_values_match_the_papers():
    # DDIM uniform: tau_i = floor(c i), c = T/S
    assert timestep_subsequence(1000, 10, "uniform").tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    # trailing starts at the last timestep
    assert timestep_subsequence(1000, 10, "trailing").tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    q = timestep_subsequence(1000, 10, "quadratic").flip(0)
    assert q[0] == 0 and q[-1] == 800  # floor(c i^2), largest ~0.8 T
    assert q[1] == int(800 / 81)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="num_steps"):
        timestep_subsequence(100, 101)
    with pytest.raises(ValueError, match="kind"):
        timestep_subsequence(100, 10, "cubic")
    with pytest.raises(ValueError, match="beta_end"):
        linear_betas(10, 1e-4, 1.5)
    with pytest.raises(TypeError, match="num_timesteps"):
        linear_betas(10.0)
    with pytest.raises(ValueError, match="betas"):
        alphas_cumprod(torch.tensor([0.1, 1.2]))
