"""course_lib.show: a notebook shows the lines that compute an equation, from the function that runs."""
import pytest
import torch

from course_lib import diffusion
from course_lib.diffusion import ddim_sample, ddim_step, ddim_step_terms, ddim_update, predicted_x0
from course_lib.gan import adaptive_weight, adaptive_weight_of_norms
from course_lib.schedules import make_alphas_cumprod
from course_lib.source import maths_source


def test_show_leaves_out_docstring_and_checks_and_keeps_the_maths_and_its_comments():
    src = maths_source(ddim_update)
    assert src.startswith("def ddim_update(")
    assert '"""' not in src and "check_" not in src and "raise" not in src
    assert "x0 = predicted_x0(x_t, eps, alpha_bar_t)" in src  # DDIM eq. 12 (4)'s first bracket is the shown function's
    for comment in ("# 1. predicted x0", "# 2. direction pointing to x_t", "# 3. random noise"):
        assert comment in src
    assert "# (argument checks left out" in src
    assert maths_source(predicted_x0).strip().endswith("return (x_t - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5")


def test_a_function_without_checks_is_shown_whole_but_its_docstring():
    def f(x):
        """doc"""
        # why
        y = x + 1
        return y

    assert maths_source(f) == "def f(x):\n    # why\n    y = x + 1\n    return y\n"


def test_an_if_that_only_checks_an_optional_argument_is_left_out():
    def h(x, scale=None):
        if scale is not None:
            scale = check_thing(scale)  # noqa: F821
        return x * (1 if scale is None else scale)

    assert maths_source(h) == ("def h(x, scale=None):\n    # (argument checks left out: course_lib.show)\n"
                               "    return x * (1 if scale is None else scale)\n")


def test_assignments_that_are_not_a_rebinding_check_stay():
    def g(a, b):
        c = check_thing(b)  # noqa: F821 — a value the maths uses: shown
        a = check_thing(a)  # noqa: F821 — the same argument, checked: left out
        return a + c

    src = maths_source(g)
    assert "c = check_thing(b)" in src and "a = check_thing(a)" not in src


def test_show_refuses_what_is_not_a_function():
    with pytest.raises(TypeError):
        maths_source(int)


def test_every_ddim_update_path_goes_through_the_one_function(monkeypatch):
    calls = []
    real = diffusion.ddim_update

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(diffusion, "ddim_update", counting)
    x, eps = torch.randn(4, 2), torch.randn(4, 2)
    ddim_step(x, eps, 0.3, 0.6)
    ddim_step_terms(x, eps, 0.3, 0.6, eta=0.5)
    ddim_sample(lambda x, t: torch.zeros_like(x), x, make_alphas_cumprod(), [900, 500, 100], eta=1.0,
                generator=torch.Generator().manual_seed(0))
    assert len(calls) == 2 + 3


def test_the_adaptive_weight_is_its_equation_on_the_gradient_norms():
    w = torch.randn(3, 3, requires_grad=True)
    x = torch.randn(5, 3)
    rec, gan = (x @ w).pow(2).mean(), (x @ w).sum() * 10
    lam, rn, gn = adaptive_weight(rec, gan, w, return_norms=True)
    assert torch.equal(lam, adaptive_weight_of_norms(rn, gn))
    assert float(adaptive_weight_of_norms(2.0, 1.0, delta=0.0)) == 2.0
    assert float(adaptive_weight_of_norms(2.0, 0.0, delta=0.0, max_weight=5.0)) == 5.0  # clamped, not inf
    with pytest.raises(ValueError, match="delta"):
        adaptive_weight_of_norms(1.0, 1.0, delta=-1.0)
