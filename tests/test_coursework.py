import re
from pathlib import Path

import pytest
import torch

from course_lib.coursework import (CourseworkError, check_alphas_cumprod, check_function, check_q_sample_at,
                                   strip_solutions, check_adaptive_weight, check_hinge_d_loss)

ROOT = Path(__file__).resolve().parent.parent


def good_alphas_cumprod(betas):
    return torch.cumprod(1 - betas, dim=0)


def good_q_sample_at(x0, alphas_cumprod, t, noise):
    a = alphas_cumprod[t].reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def test_correct_answers_pass_with_one_deterministic_line(capsys):
    assert check_alphas_cumprod(good_alphas_cumprod) == "alphas_cumprod: 5/5 cases match"
    assert check_q_sample_at(good_q_sample_at) == "q_sample_at: 7/7 cases match"
    assert capsys.readouterr().out.splitlines() == ["alphas_cumprod: 5/5 cases match", "q_sample_at: 7/7 cases match"]


def _q(coef_x0, coef_eps, shift=0, reshape=True):
    def f(x0, alphas_cumprod, t, noise):
        a = alphas_cumprod[(t + shift).clamp(0, len(alphas_cumprod) - 1)]
        if reshape:
            a = a.reshape(-1, *([1] * (x0.ndim - 1)))
        return coef_x0(a) * x0 + coef_eps(a) * noise
    return f


WRONG_Q = {
    "sign flip": (_q(torch.sqrt, lambda a: -(1 - a).sqrt()), "sign flip"),
    "missing square roots": (_q(lambda a: a, lambda a: 1 - a), "missing square roots"),
    "missing sqrt on noise": (_q(torch.sqrt, lambda a: 1 - a), "missing square root on the noise"),
    "off by one (t-1)": (_q(torch.sqrt, lambda a: (1 - a).sqrt(), shift=-1), "off-by-one"),
    "off by one (t+1)": (_q(torch.sqrt, lambda a: (1 - a).sqrt(), shift=1), "off-by-one"),
    "swapped": (_q(lambda a: (1 - a).sqrt(), torch.sqrt), "swapped"),
    "no broadcasting": (_q(torch.sqrt, lambda a: (1 - a).sqrt(), reshape=False), "raised|shape"),
    "returns x0": (lambda x0, alphas_cumprod, t, noise: x0, "differs"),
    "scalar t": (lambda x0, alphas_cumprod, t, noise: alphas_cumprod[0].sqrt() * x0
                 + (1 - alphas_cumprod[0]).sqrt() * noise, "differs"),
}


@pytest.mark.parametrize("label", sorted(WRONG_Q))
def test_q_sample_check_rejects_plausible_mistakes_with_a_specific_hint(label):
    fn, hint = WRONG_Q[label]
    with pytest.raises(CourseworkError, match=hint):
        check_q_sample_at(fn)


WRONG_ABAR = {
    "cumprod of betas": (lambda betas: torch.cumprod(betas, 0), "multiplied the betas"),
    "cumsum": (lambda betas: torch.cumsum(1 - betas, 0), "summed"),
    "off by one": (lambda betas: torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)[:-1]]),
                   "off by one"),
    "no cumulative product": (lambda betas: 1 - betas, "cumulative product"),
    "float32 cast of sqrt": (lambda betas: torch.cumprod(1 - betas, 0).sqrt(), "differs"),
    "wrong type": (lambda betas: (1 - betas).tolist(), "torch.Tensor"),
}


@pytest.mark.parametrize("label", sorted(WRONG_ABAR))
def test_alphas_cumprod_check_rejects_plausible_mistakes(label):
    fn, hint = WRONG_ABAR[label]
    with pytest.raises(CourseworkError, match=hint):
        check_alphas_cumprod(fn)


def test_not_implemented_gives_the_exercise_hint():
    def todo(betas):
        raise NotImplementedError("Exercise 0.1: alphas_cumprod")
    with pytest.raises(CourseworkError, match="Exercise 0.1.*not implemented yet"):
        check_alphas_cumprod(todo)
    with pytest.raises(TypeError, match="learner_fn"):
        check_function("x", 3, lambda: None, [])


def test_strip_solutions_keeps_indentation_and_names_the_exercise():
    src = ("# Exercise 0.1: alphas_cumprod\ndef f(betas):\n    ### BEGIN SOLUTION\n    return 1 - betas\n"
           "    ### END SOLUTION\n")
    out, n = strip_solutions(src, "x")
    assert n == 1
    assert out == ("# Exercise 0.1: alphas_cumprod\ndef f(betas):\n"
                   "    raise NotImplementedError('Exercise 0.1: alphas_cumprod')\n")
    with pytest.raises(ValueError, match="without"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n", "x")


# -- notebook 01 checks ---------------------------------------------------------------------------------------------
from course_lib.coursework import check_ddim_step, check_predicted_x0, check_sigma_eta  # noqa: E402


def good_predicted_x0(x_t, eps, alpha_bar_t):
    a = torch.as_tensor(alpha_bar_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def good_sigma_eta(alpha_bar_t, alpha_bar_prev, eta):
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar_t)).sqrt() * (1 - alpha_bar_t / alpha_bar_prev).sqrt()


def good_ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise):
    a, p = torch.as_tensor(alpha_bar_t), torch.as_tensor(alpha_bar_prev)
    sigma = good_sigma_eta(a, p, eta)
    x0 = good_predicted_x0(x_t, eps, a)
    return p.sqrt() * x0 + (1 - p - sigma**2).clamp_min(0).sqrt() * eps + sigma * noise


def test_unclamped_direction_gets_the_rounding_hint():
    def unclamped(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise):
        a, p = torch.as_tensor(alpha_bar_t), torch.as_tensor(alpha_bar_prev)
        sigma = good_sigma_eta(a, p, eta)
        return p.sqrt() * good_predicted_x0(x_t, eps, a) + (1 - p - sigma**2).sqrt() * eps + sigma * noise
    with pytest.raises(CourseworkError, match="NaN.*clamp it at 0"):
        check_ddim_step(unclamped)


def test_ddim_checks_accept_correct_answers():
    assert check_predicted_x0(good_predicted_x0).endswith("6/6 cases match")
    assert check_sigma_eta(good_sigma_eta).endswith("18/18 cases match")
    assert check_ddim_step(good_ddim_step).endswith("19/19 cases match")


def _step_with(**over):
    def f(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise):
        a, p = torch.as_tensor(alpha_bar_t), torch.as_tensor(alpha_bar_prev)
        sigma = over.get("sigma", good_sigma_eta)(a, p, eta)
        x0 = over.get("x0", good_predicted_x0)(x_t, eps, a)
        room = over.get("room", lambda a, p, s: 1 - p - s**2)(a, p, sigma)
        return p.sqrt() * x0 + over.get("sign", 1) * room.clamp_min(0).sqrt() * eps + sigma * over.get("k", 1) * noise
    return f


WRONG_DDIM = {
    "predicted_x0 sign flip": (check_predicted_x0,
                               lambda x_t, eps, alpha_bar_t: (x_t + (1 - torch.as_tensor(alpha_bar_t)).sqrt() * eps)
                               / torch.as_tensor(alpha_bar_t).sqrt(), "sign flip"),
    "predicted_x0 missing sqrt": (check_predicted_x0,
                                  lambda x_t, eps, alpha_bar_t: (x_t - (1 - torch.as_tensor(alpha_bar_t)).sqrt() * eps)
                                  / torch.as_tensor(alpha_bar_t), "missing square root"),
    "sigma no eta": (check_sigma_eta, lambda alpha_bar_t, alpha_bar_prev, eta: good_sigma_eta(alpha_bar_t, alpha_bar_prev, 1.0),
                     "eta is missing"),
    "sigma variance": (check_sigma_eta, lambda alpha_bar_t, alpha_bar_prev, eta:
                       good_sigma_eta(alpha_bar_t, alpha_bar_prev, eta) ** 2 / max(eta, 1e-12) if eta else
                       good_sigma_eta(alpha_bar_t, alpha_bar_prev, eta), "differs|variance"),
    "sigma swapped ratio": (check_sigma_eta, lambda alpha_bar_t, alpha_bar_prev, eta:
                            eta * ((1 - alpha_bar_t) / (1 - alpha_bar_prev)).sqrt()
                            * (1 - alpha_bar_t / alpha_bar_prev).sqrt(), "upside down"),
    "step without sigma^2": (check_ddim_step, _step_with(room=lambda a, p, s: 1 - p), "left out sigma_t"),
    "step without noise": (check_ddim_step, _step_with(k=0), "noise term"),
    "step direction sign": (check_ddim_step, _step_with(sign=-1), "sign flip"),
    "step sigma = eta": (check_ddim_step, _step_with(sigma=lambda a, p, e: torch.as_tensor(float(e))), "not eta itself"),
    "step uses abar_t in direction": (check_ddim_step, _step_with(room=lambda a, p, s: 1 - a - s**2), "abar_prev"),
}


@pytest.mark.parametrize("label", sorted(WRONG_DDIM))
def test_ddim_checks_reject_plausible_mistakes(label):
    check, fn, hint = WRONG_DDIM[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


# -- notebook 02 checks ---------------------------------------------------------------------------------------------
from course_lib.coursework import check_cfg_eps, check_classifier_guided_eps, check_classifier_guided_mean  # noqa: E402


def test_guidance_checks_accept_correct_answers():
    assert check_classifier_guided_mean(
        lambda mean, variance, grad_log_prob, scale: mean + scale * torch.as_tensor(variance) * grad_log_prob
    ).endswith("18/18 cases match")
    assert check_classifier_guided_eps(
        lambda eps, grad_log_prob, alpha_bar_t, scale: eps - (1 - torch.as_tensor(alpha_bar_t)).sqrt() * scale * grad_log_prob
    ).endswith("18/18 cases match")
    assert check_cfg_eps(lambda eps_uncond, eps_cond, scale: eps_uncond + scale * (eps_cond - eps_uncond)).endswith(
        "8/8 cases match")


WRONG_GUIDANCE = {
    "mean sign": (check_classifier_guided_mean,
                  lambda mean, variance, grad_log_prob, scale: mean - scale * torch.as_tensor(variance) * grad_log_prob,
                  "sign flip"),
    "mean without variance": (check_classifier_guided_mean,
                              lambda mean, variance, grad_log_prob, scale: mean + scale * grad_log_prob, "variance"),
    "mean with std": (check_classifier_guided_mean, lambda mean, variance, grad_log_prob, scale:
                      mean + scale * torch.as_tensor(variance).sqrt() * grad_log_prob, "standard deviation"),
    "eps sign": (check_classifier_guided_eps, lambda eps, grad_log_prob, alpha_bar_t, scale:
                 eps + (1 - torch.as_tensor(alpha_bar_t)).sqrt() * scale * grad_log_prob, "sign flip"),
    "eps missing sqrt": (check_classifier_guided_eps, lambda eps, grad_log_prob, alpha_bar_t, scale:
                         eps - (1 - torch.as_tensor(alpha_bar_t)) * scale * grad_log_prob, "missing square root"),
    "eps sqrt(abar)": (check_classifier_guided_eps, lambda eps, grad_log_prob, alpha_bar_t, scale:
                       eps - torch.as_tensor(alpha_bar_t).sqrt() * scale * grad_log_prob, "not sqrt"),
    "cfg swapped": (check_cfg_eps, lambda eps_uncond, eps_cond, scale: eps_cond + scale * (eps_uncond - eps_cond),
                    "swapped"),
    "cfg w convention": (check_cfg_eps, lambda eps_uncond, eps_cond, scale:
                         eps_cond + scale * (eps_cond - eps_uncond), "convention"),
}


@pytest.mark.parametrize("label", sorted(WRONG_GUIDANCE))
def test_guidance_checks_reject_plausible_mistakes(label):
    check, fn, hint = WRONG_GUIDANCE[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


# -- notebook 03 checks ---------------------------------------------------------------------------------------------
from course_lib.coursework import check_lfq_index, check_straight_through, check_vq_losses  # noqa: E402


def test_quantization_checks_accept_correct_answers():
    assert check_straight_through(lambda z_e, z_q: z_e + (z_q - z_e).detach()).startswith("straight_through: 3/3")
    assert check_vq_losses(lambda z_e, z_q, beta: (((z_e.detach() - z_q) ** 2).mean(),
                                                   beta * ((z_e - z_q.detach()) ** 2).mean())).endswith("6/6 cases match (values and stop-gradients)")
    assert check_lfq_index(lambda q: ((q > 0).long() * 2 ** torch.arange(q.shape[-1])).sum(-1)).endswith(
        "4/4 cases match")


WRONG_QUANT = {
    "st returns z_e": (check_straight_through, lambda z_e, z_q: z_e, "returned z_e"),
    "st detaches z_e": (check_straight_through, lambda z_e, z_q: z_e.detach() + (z_q - z_e.detach()).detach(),
                        "no gradient"),
    "st no detach": (check_straight_through, lambda z_e, z_q: z_e + (z_q - z_e), "z_q must get no gradient|gradient"),
    "losses beta swapped": (check_vq_losses, lambda z_e, z_q, beta: (beta * ((z_e.detach() - z_q) ** 2).mean(),
                                                                      ((z_e - z_q.detach()) ** 2).mean()), "beta belongs"),
    "losses no stop-gradient": (check_vq_losses, lambda z_e, z_q, beta: (((z_e - z_q) ** 2).mean(),
                                                                          beta * ((z_e - z_q) ** 2).mean()),
                                "must not train"),
    "losses sum": (check_vq_losses, lambda z_e, z_q, beta: (((z_e.detach() - z_q) ** 2).sum(),
                                                             beta * ((z_e - z_q.detach()) ** 2).sum()), "mean"),
    "index bit order": (check_lfq_index, lambda q: ((q > 0).long() * 2 ** torch.arange(q.shape[-1] - 1, -1, -1)).sum(-1),
                        "bit order"),
    "index counts -1": (check_lfq_index, lambda q: ((q < 0).long() * 2 ** torch.arange(q.shape[-1])).sum(-1), "counted"),
}


@pytest.mark.parametrize("label", sorted(WRONG_QUANT))
def test_quantization_checks_reject_plausible_mistakes(label):
    check, fn, hint = WRONG_QUANT[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


# -- notebook 04 checks ---------------------------------------------------------------------------------------------
from course_lib.coursework import check_lpips_distance, check_normalize_channels  # noqa: E402


def _good_lpips(feats_x, feats_x0, weights):
    total = 0
    for a, b, w in zip(feats_x, feats_x0, weights):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + (((a - b) ** 2) * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total


def test_lpips_checks_accept_correct_answers():
    assert check_normalize_channels(lambda f: f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)).endswith(
        "5/5 cases match")
    assert check_lpips_distance(_good_lpips).endswith("4/4 cases match")


WRONG_LPIPS = {
    "norm without eps": (check_normalize_channels, lambda f: f / f.pow(2).sum(1, keepdim=True).sqrt(), "eps"),
    "norm over space": (check_normalize_channels,
                        lambda f: f / (f.pow(2).sum((2, 3), keepdim=True).sqrt() + 1e-10), "channel axis"),
    "l1 norm": (check_normalize_channels, lambda f: f / (f.abs().sum(1, keepdim=True) + 1e-10), "L1"),
    "no normalisation": (check_lpips_distance,
                         lambda feats_x, feats_x0, weights: sum((((a - b) ** 2) * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
                                                                for a, b, w in zip(feats_x, feats_x0, weights)),
                         "normalise"),
    "sum over positions": (check_lpips_distance,
                           lambda feats_x, feats_x0, weights: sum(
                               (((a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                                  - b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)) ** 2) * w.view(1, -1, 1, 1))
                               .sum(1).sum((1, 2)) for a, b, w in zip(feats_x, feats_x0, weights)), "average"),
}


@pytest.mark.parametrize("label", sorted(WRONG_LPIPS))
def test_lpips_checks_reject_plausible_mistakes(label):
    check, fn, hint = WRONG_LPIPS[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


# -- notebook 05: adaptive weight and hinge loss -----------------------------------------------------------------
def _aw(kind):
    def f(rec, gan, w, delta):
        keep = kind == "right"  # create_graph: the gradients (and so lambda) keep a graph unless detached
        gr = torch.autograd.grad(rec, w, retain_graph=True, create_graph=keep)[0]
        gg = torch.autograd.grad(gan, w, retain_graph=True, create_graph=keep)[0]
        lam = {"swapped": lambda: gg.norm() / (gr.norm() + delta),
               "no delta": lambda: gr.norm() / gg.norm(),
               "no clamp": lambda: gr.norm() / (gg.norm() + delta),
               "squared": lambda: gr.pow(2).sum() / (gg.pow(2).sum() + delta),
               "right": lambda: gr.norm() / (gg.norm() + delta)}[kind]()
        if kind == "no clamp":
            return lam.detach()
        return lam.clamp(0, 1e4) if kind == "right" else lam.clamp(0, 1e4).detach()
    return f


_relu = torch.nn.functional.relu
WRONG_GAN = {
    "swapped ratio": (check_adaptive_weight, _aw("swapped"), "upside down"),
    "no delta": (check_adaptive_weight, _aw("no delta"), "delta"),
    "no clamp": (check_adaptive_weight, _aw("no clamp"), "clamp"),
    "squared norms": (check_adaptive_weight, _aw("squared"), "squared"),
    "gradients with a graph, not detached": (check_adaptive_weight, _aw("right"), "detach"),
    "no half": (check_hinge_d_loss, lambda logits_real, logits_fake: _relu(1 - logits_real).mean()
                + _relu(1 + logits_fake).mean(), "average"),
    "real sign": (check_hinge_d_loss, lambda logits_real, logits_fake: 0.5 * (_relu(1 + logits_real).mean()
                                                                             + _relu(1 + logits_fake).mean()), "above"),
    "fake sign": (check_hinge_d_loss, lambda logits_real, logits_fake: 0.5 * (_relu(1 - logits_real).mean()
                                                                             + _relu(1 - logits_fake).mean()), "below"),
    "no hinge": (check_hinge_d_loss, lambda logits_real, logits_fake: 0.5 * ((1 - logits_real).mean()
                                                                            + (1 + logits_fake).mean()), "max"),
}


@pytest.mark.parametrize("label", sorted(WRONG_GAN))
def test_gan_checks_reject_plausible_mistakes(label):
    check, fn, hint = WRONG_GAN[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


def test_gan_checks_accept_own_versions_and_reject_the_library():
    from course_lib.gan import adaptive_weight, hinge_d_loss
    own_hinge = lambda logits_real, logits_fake: 0.5 * (_relu(1 - logits_real).mean() + _relu(1 + logits_fake).mean())  # noqa: E731
    assert "4/4" in check_adaptive_weight(lambda r, g, w, d: _aw("right")(r, g, w, d).detach())
    assert "4/4" in check_hinge_d_loss(own_hinge)
    with pytest.raises(CourseworkError, match="Exercise 5.1 asks you to write this yourself"):
        check_adaptive_weight(lambda r, g, w, d: adaptive_weight(r, g, w, d))
    with pytest.raises(CourseworkError, match="Exercise 5.2 asks you to write this yourself"):
        check_hinge_d_loss(hinge_d_loss)


# -- notebook 06: cross-attention and the scaled latent ----------------------------------------------------------
from einops import rearrange  # noqa: E402

from course_lib.coursework import check_cross_attention, check_latent_round_trip  # noqa: E402


def _xattn(scale="sqrt", axis=-1, use_mask=True):
    def f(lay, x, context, mask):
        q = rearrange(lay.to_q(x), "b n (h d) -> b h n d", h=lay.heads)
        k = rearrange(lay.to_k(context), "b m (h d) -> b h m d", h=lay.heads)
        v = rearrange(lay.to_v(context), "b m (h d) -> b h m d", h=lay.heads)
        s = q @ k.transpose(-1, -2) / {"sqrt": q.shape[-1] ** 0.5, "none": 1.0}[scale]
        if use_mask:
            s = s.masked_fill(~mask[:, None, None, :], float("-inf"))
        return lay.to_out(rearrange(s.softmax(dim=axis) @ v, "b h n d -> b n (h d)"))
    return f


WRONG_LDM = {
    "no scale": (lambda f: check_cross_attention(f), _xattn(scale="none"), "sqrt"),
    "softmax over queries": (lambda f: check_cross_attention(f), _xattn(axis=-2), "last axis"),
    "mask ignored": (lambda f: check_cross_attention(f), _xattn(use_mask=False), "-inf"),
    "encode divides": (lambda f: check_latent_round_trip(f, None), lambda a, s, x: a.encode(x) / s, "multiply"),
    "decode forgets the scale": (lambda f: check_latent_round_trip(lambda a, s, x: s * a.encode(x), f),
                                 lambda a, s, z: a.decode(a.quantize(z)[0]), "divide by s"),
    "decode without quantizing": (lambda f: check_latent_round_trip(lambda a, s, x: s * a.encode(x), f),
                                  lambda a, s, z: a.decode(z / s), "quantize"),
}


@pytest.mark.parametrize("label", sorted(WRONG_LDM))
def test_ldm_checks_reject_plausible_mistakes(label):
    check, fn, hint = WRONG_LDM[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


def test_ldm_checks_accept_the_reference():
    assert "4/4" in check_cross_attention(_xattn())
    line = check_latent_round_trip(lambda a, s, x: s * a.encode(x), lambda a, s, z: a.decode(a.quantize(z / s)[0]))
    assert line == "encode: 3/3 cases match; decode: 3/3 cases match"


# -- every check: a call to the library is rejected with the exercise's hint, and the library comes back after ---
# (exercise -> (the notebook's import, the learner's one-line wrapper(s))); executed in a namespace of their own,
# as a notebook's cell is
LIBRARY_WRAPPERS = {
    "0.1": ("from course_lib.schedules import alphas_cumprod", ["lambda betas: alphas_cumprod(betas)"]),
    "0.2": ("from course_lib.diffusion import q_sample",
            ["lambda x0, alphas_cumprod, t, noise: q_sample(x0, alphas_cumprod[t].reshape(-1, *[1] * (x0.ndim - 1)), "
             "noise)"]),
    "1.1": ("from course_lib.diffusion import predicted_x0",
            ["lambda x_t, eps, alpha_bar_t: predicted_x0(x_t, eps, alpha_bar_t)"]),
    "1.2": ("from course_lib import diffusion", ["lambda alpha_bar_t, alpha_bar_prev, eta: diffusion.sigma_eta(alpha_bar_t, alpha_bar_prev, eta)"]),
    "1.3": ("import course_lib.diffusion as D",
            ["lambda x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise: "
             "D.ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise)"]),
    "2.1": ("from course_lib.guidance import classifier_guided_mean as f", ["f"]),
    "2.2": ("from course_lib.guidance import classifier_guided_eps",
            ["lambda eps, grad_log_prob, alpha_bar_t, scale: classifier_guided_eps(eps, grad_log_prob, alpha_bar_t, "
             "scale)"]),
    "2.3": ("from course_lib.guidance import cfg_eps", ["lambda eps_uncond, eps_cond, scale: cfg_eps(eps_uncond, eps_cond, "
                                                         "scale)"]),
    "3.1": ("from course_lib.quantize import straight_through", ["lambda z_e, z_q: straight_through(z_e, z_q)"]),
    "3.2": ("from course_lib.quantize import vq_losses", ["lambda z_e, z_q, beta: vq_losses(z_e, z_q, beta)"]),
    "3.3": ("from course_lib.quantize import lfq_index", ["lambda q: lfq_index(q)"]),
    "4.1": ("from course_lib.perceptual import normalize_channels", ["lambda f: normalize_channels(f)"]),
    "4.2": ("from course_lib.perceptual import lpips_distance",
            ["lambda feats_x, feats_x0, weights: lpips_distance(feats_x, feats_x0, weights)"]),
    "5.1": ("from course_lib.gan import adaptive_weight", ["lambda r, g, w, d: adaptive_weight(r, g, w, d)"]),
    "5.2": ("from course_lib.gan import hinge_d_loss", ["lambda logits_real, logits_fake: hinge_d_loss(logits_real, logits_fake)"]),
    "6.1": ("", ["lambda layer, x, context, mask: layer(x, context, mask=mask)"]),
    "6.2": ("from course_lib.ldm import LatentDiffusion",
            ["lambda a, s, x: LatentDiffusion(None, a, s).encode(x)", "lambda a, s, z: LatentDiffusion(None, a, s).decode(z)"]),
    "7.1": ("from course_lib.controlnet import zero_conv", ["lambda i, o: zero_conv(i, o)"]),
    "7.2": ("from course_lib.controlnet import ControlledUNet",
            ["lambda base, cns, scales, x_t, t, hints, tokens: ControlledUNet(base, cns, scales)(x_t, t, hints, tokens)"]),
    "8.1": ("from course_lib.imagen import threshold_fn", ["lambda x0, percentile: threshold_fn('dynamic', percentile)(x0)"]),
    "8.2": ("from course_lib.guidance import cfg_eps", ["lambda eps_uncond, eps_cond, w: cfg_eps(eps_uncond, eps_cond, w)"]),
    "9.1": ("from course_lib.nets.dit import patchify, unpatchify",
            ["lambda x, patch_size: patchify(x, patch_size)",
             "lambda tokens, patch_size, channels, height, width: unpatchify(tokens, patch_size, channels, height, "
             "width)"]),
    "9.2": ("from course_lib.nets.dit import modulate",
            ["lambda x, branch, norm, shift, scale, gate: x + gate[:, None] * branch(modulate(norm(x), shift, scale))"]),
    "10.1": ("from course_lib.ldm import latent_scale", ["lambda autoencoder, images: latent_scale(autoencoder, images)"]),
    "10.2": ("from course_lib.diffusion import diffusion_loss",
             ["lambda model, z0, ac, tokens, p, gen: diffusion_loss(model, z0, ac, tokens, p, gen)"]),
    "10.3": ("", ["lambda net, z_t, t, tokens: net(z_t, t, tokens)"]),
    "10.4": ("from course_lib.train import EMA, fit\nimport torch",
             ["lambda model, loss_at, steps, lr_at, d, n: (lambda ema: (fit(model, loss_at, steps, lr_at, "
              "torch.optim.AdamW(model.parameters(), weight_decay=0.0), ema=ema, progress=False, max_grad_norm=n), "
              "ema.model)[1])(EMA(model, d))"]),
    "10.5": ("from course_lib.ldm import LatentDiffusion",
             ["lambda unet, ae, s, tokens, z_T, ac, steps, w: LatentDiffusion(unet, ae, s, ac, image_size=16)"
              ".sample(tokens, steps, w, z_T=z_T)"]),
    "10.7": ("from course_lib.timing import median_wall_time",
             ["lambda fn, repeats, warmup, clock: median_wall_time(fn, repeats, warmup, clock)"]),
}


def test_the_wrapper_table_covers_every_exercise_that_asks_for_a_function():
    from course_lib.coursework import WRITE_THE_FUNCTION
    assert set(LIBRARY_WRAPPERS) == set(WRITE_THE_FUNCTION)


@pytest.mark.parametrize("exercise", sorted(LIBRARY_WRAPPERS))
def test_every_check_rejects_a_call_to_the_library_with_the_exercise_hint(exercise, capsys):
    from course_lib import diffusion, guidance, perceptual, quantize
    from course_lib.attention import CrossAttention
    from course_lib.coursework import EXERCISES, LibraryCalled

    before = {m.__name__: dict(vars(m)) for m in (diffusion, guidance, perceptual, quantize)}
    forward = CrossAttention.forward
    imports, wrappers = LIBRARY_WRAPPERS[exercise]
    notebook = {}  # the learner's namespace
    exec(imports, notebook)
    fns = [eval(w, notebook) for w in wrappers]
    with pytest.raises(LibraryCalled, match=rf"Exercise {re.escape(exercise)} asks you to write this yourself"):
        EXERCISES[exercise](*fns)
    assert capsys.readouterr().out == "", "nothing is printed before the failure"
    for m in (diffusion, guidance, perceptual, quantize):  # everything is back as it was
        assert all(vars(m)[k] is v for k, v in before[m.__name__].items() if callable(v)), m.__name__
    assert CrossAttention.forward is forward
    assert not any(hasattr(v, "__wrapped_original__") for v in notebook.values() if callable(v))


def test_a_verdict_is_printed_once_and_displays_nothing_more(capsys):
    from IPython.core.formatters import DisplayFormatter

    verdict = check_alphas_cumprod(good_alphas_cumprod)
    assert capsys.readouterr().out == "alphas_cumprod: 5/5 cases match\n"
    assert verdict == "alphas_cumprod: 5/5 cases match"
    assert DisplayFormatter().format(verdict) == ({}, {})  # a notebook shows no second copy of the line


def test_vq_losses_names_a_term_without_any_gradient_instead_of_a_torch_error():
    both_detached = lambda z_e, z_q, beta: (((z_e.detach() - z_q.detach()) ** 2).mean(),  # noqa: E731
                                            beta * ((z_e - z_q.detach()) ** 2).mean())
    with pytest.raises(CourseworkError, match="must train the codebook"):
        check_vq_losses(both_detached)
    swapped = lambda z_e, z_q, beta: (((z_e - z_q.detach()) ** 2).mean(), beta * ((z_e.detach() - z_q) ** 2).mean())  # noqa: E731
    with pytest.raises(CourseworkError, match="must not train the encoder.*must train the codebook"):
        check_vq_losses(swapped)


def test_course_check_names_a_missing_notebook_and_a_missing_student_folder(tmp_path, capsys):
    from course_lib.coursework import main
    assert main(["check", str(tmp_path / "nope.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "notebooks: expected student copies" in err and "nope.ipynb" in err


def test_student_command_writes_copies_with_answers_stubbed(tmp_path, capsys):
    from course_lib.coursework import main
    assert main(["student", str(ROOT / "notebooks" / "01_ddim.ipynb"), "--out", str(tmp_path)]) == 0
    assert "5 exercise(s)" in capsys.readouterr().out  # 1.0 (a prediction), 1.1-1.3 (functions), 1.4 (experiment)
    text = (tmp_path / "01_ddim.ipynb").read_text()
    assert "my_prediction = None  # Exercise 1.0: your answer here" in text
    assert "first_good_S = None  # Exercise 1.4: your answer here" in text
    assert "raise NotImplementedError('Exercise 1.1: predicted_x0')" in text


def test_a_top_level_solution_must_assign_its_answer():
    with pytest.raises(ValueError, match="must assign its answer"):
        strip_solutions("# Exercise 9.9: x\n### BEGIN SOLUTION\nprint(3)\n### END SOLUTION\n", "x")


def test_student_command_keeps_a_learners_work_unless_forced_and_then_keeps_a_backup(tmp_path, capsys):
    from course_lib.coursework import main
    nb = str(ROOT / "notebooks" / "00_welcome.ipynb")
    assert main(["student", nb, "--out", str(tmp_path)]) == 0
    copy = tmp_path / "00_welcome.ipynb"
    fresh = copy.read_text()
    assert main(["student", "00_welcome.ipynb", "--out", str(tmp_path)]) == 0  # unchanged: rewritten, same text
    assert copy.read_text() == fresh
    mine = fresh.replace("my_alphas_cumprod(betas):", "my_alphas_cumprod(betas):  # my work")
    copy.write_text(mine)
    capsys.readouterr()
    assert main(["student", nb, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "00_welcome.ipynb: differs from a fresh copy" in err and "--force 00_welcome.ipynb" in err
    assert copy.read_text() == mine, "the learner's copy is untouched"
    assert main(["student", nb, "--out", str(tmp_path), "--force"]) == 0
    backups = list(tmp_path.glob("00_welcome.ipynb.bak-*"))
    assert copy.read_text() == fresh and len(backups) == 1 and backups[0].read_text() == mine
    assert main(["student", "99_nothing.ipynb", "--out", str(tmp_path)]) == 2
    assert "99_nothing.ipynb" in capsys.readouterr().err


def test_an_interrupted_student_copy_write_leaves_the_old_copy_whole(tmp_path, monkeypatch):
    from course_lib.coursework import student
    src, dst = ROOT / "notebooks" / "00_welcome.ipynb", tmp_path / "00_welcome.ipynb"
    dst.write_text(student.student_copy(src)[0])
    before = dst.read_text()

    def killed(a, b):
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(student.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        student.make_student_notebook(src, dst)
    assert dst.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["00_welcome.ipynb"]


# -- notebook 07: the zero convolution, the controlled forward, the first-step prediction, the strength sweep -----
def _zero_conv(kernel=1, zero_weight=True, zero_bias=True):
    def make(i, o):
        conv = torch.nn.Conv2d(i, o, kernel, padding=kernel // 2)
        if zero_weight:
            torch.nn.init.zeros_(conv.weight)
        if zero_bias:
            torch.nn.init.zeros_(conv.bias)
        return conv
    return make


def _controlled(scale=True, mid=True, mean=False):
    def f(base, cns, scales, x_t, t, hints, tokens):
        down, mids = 0, 0
        for cn, h, s in zip(cns, hints, scales):
            d, m = cn(x_t, t, h, tokens)
            w = s if scale else 1.0
            down = [w * r for r in d] if isinstance(down, int) else [a + w * r for a, r in zip(down, d)]
            mids = mids + w * m
        if mean:
            down, mids = [r / len(cns) for r in down], mids / len(cns)
        return base(x_t, t, tokens, down_residuals=down, mid_residual=mids if mid else None)
    return f


def test_controlnet_checks_accept_own_versions():
    from course_lib.coursework import check_controlled_forward, check_zero_conv

    def zc(i, o):  # another correct version: zeros written by hand
        conv = torch.nn.Conv2d(i, o, (1, 1))
        with torch.no_grad():
            conv.weight.mul_(0.0)
            conv.bias.fill_(0.0)
        return conv
    assert check_zero_conv(_zero_conv()) == "zero_conv: 3/3 cases match"
    assert check_zero_conv(zc) == "zero_conv: 3/3 cases match"
    assert check_controlled_forward(_controlled()) == "controlled forward: 4/4 cases match"


@pytest.mark.parametrize("label", ["bias", "weight", "kernel", "scale", "mid", "mean"])
def test_controlnet_checks_name_the_mistake(label):
    from course_lib.coursework import check_controlled_forward, check_zero_conv

    wrong = {"bias": (check_zero_conv, _zero_conv(zero_bias=False), "bias must start at 0"),
             "weight": (check_zero_conv, _zero_conv(zero_weight=False), "weight must start at 0"),
             "kernel": (check_zero_conv, _zero_conv(kernel=3), "1x1 convolution"),
             "scale": (check_controlled_forward, _controlled(scale=False), "conditioning scale"),
             "mid": (check_controlled_forward, _controlled(mid=False), "mid_residual"),
             "mean": (check_controlled_forward, _controlled(mean=True), "a sum, not a mean")}
    check, fn, hint = wrong[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


def test_first_step_prediction_reports_what_the_gradients_support(capsys):
    from course_lib.coursework import NotStarted, check_first_step_prediction

    measured = {"output zero convs": True, "hint zero conv": False, "hint encoder": False, "trainable copy": False}
    assert "it came true" in check_first_step_prediction("b", measured)
    assert "what happened is (b)" in check_first_step_prediction("d", measured)
    assert "what happened is (d)" in check_first_step_prediction("b", {k: True for k in measured})
    with pytest.raises(NotStarted):
        check_first_step_prediction(None, measured)
    with pytest.raises(CourseworkError, match="nonzero"):
        check_first_step_prediction("b", {"output zero convs": True})


# -- notebook 08: dynamic thresholding, Imagen's guidance, static clipping, the augmentation drift ---------------
def _dynamic(batch=False, absolute=True, floor=True, clip=True, divide=True):
    def f(x0, percentile):
        v = x0.abs() if absolute else x0
        s = (torch.quantile(v.flatten(), percentile).repeat(len(x0)) if batch
             else torch.stack([torch.quantile(row.flatten(), percentile) for row in v]))
        s = torch.clamp(s, min=1.0) if floor else s
        s = s.reshape(-1, *[1] * (x0.ndim - 1))
        out = torch.where(x0 > s, s, torch.where(x0 < -s, -s, x0)) if clip else x0
        return out / s if divide else out
    return f


def test_imagen_checks_accept_own_versions():
    from course_lib.coursework import check_dynamic_threshold, check_imagen_guidance

    assert check_dynamic_threshold(_dynamic()) == "dynamic_threshold: 5/5 cases match"
    # another correct version: Imagen's expression rearranged, u + w (c - u)
    assert check_imagen_guidance(lambda eps_uncond, eps_cond, w: eps_uncond + w * (eps_cond - eps_uncond)) == \
        "Imagen guidance: 5/5 cases match"


@pytest.mark.parametrize("label", ["batch", "absolute", "floor", "clip", "divide", "ho_salimans", "swapped",
                                   "no_uncond"])
def test_imagen_checks_name_the_mistake(label):
    from course_lib.coursework import check_dynamic_threshold, check_imagen_guidance

    wrong = {"batch": (check_dynamic_threshold, _dynamic(batch=True), "not one s for the whole batch"),
             "absolute": (check_dynamic_threshold, _dynamic(absolute=False), "the absolute values"),
             "floor": (check_dynamic_threshold, _dynamic(floor=False), "max\\(s, 1\\)"),
             "clip": (check_dynamic_threshold, _dynamic(clip=False), "clip to \\[-s, s\\] before dividing"),
             "divide": (check_dynamic_threshold, _dynamic(divide=False), "divide by s"),
             "ho_salimans": (check_imagen_guidance, lambda eps_uncond, eps_cond, w: (1 + w) * eps_cond - w * eps_uncond,
                             "Ho & Salimans"),
             "swapped": (check_imagen_guidance, lambda eps_uncond, eps_cond, w: w * eps_uncond + (1 - w) * eps_cond,
                         "swapped"),
             "no_uncond": (check_imagen_guidance, lambda eps_uncond, eps_cond, w: w * (eps_cond - eps_uncond),
                           "added back")}
    check, fn, hint = wrong[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


def test_static_prediction_reports_what_the_saturation_supports():
    from course_lib.coursework import NotStarted, check_static_prediction

    measured = {"w=1, none": 0.07, "w=16, static": 0.13, "w=16, dynamic": 0.01}
    assert "it came true" in check_static_prediction("b", measured)
    assert "what happened is (b)" in check_static_prediction("a", measured)
    assert "what happened is (c)" in check_static_prediction("b", {**measured, "w=16, dynamic": 0.14})
    assert "what happened is (d)" in check_static_prediction("b", {**measured, "w=16, static": 0.01})
    assert "what happened is (a)" in check_static_prediction("b", {**measured, "w=16, static": 0.08})
    with pytest.raises(NotStarted):
        check_static_prediction(None, measured)
    with pytest.raises(CourseworkError, match="saturation"):
        check_static_prediction("b", {"w=1, none": 0.07})


def test_drift_experiment_takes_the_first_level_that_drops_drift_db(monkeypatch):
    from course_lib.coursework import NotStarted, check_drift_experiment
    from course_lib.coursework import imagen as ex

    measured = {0.0: 28.2, 0.2: 28.0, 0.4: 27.4, 0.6: 26.4, 0.8: 25.4}  # a drop of 2 dB first at 0.8
    monkeypatch.setattr(ex, "consistency_by_level", lambda: measured)
    assert ex.DRIFT_DB == 2.0
    assert "right" in check_drift_experiment(28.23, 0.8)
    with pytest.raises(ex.CourseworkError, match="level_that_drifts = 0.6"):
        check_drift_experiment(28.2, 0.6)
    with pytest.raises(ex.CourseworkError, match="psnr_at_zero"):
        check_drift_experiment(30.0, 0.8)
    with pytest.raises(NotStarted):
        check_drift_experiment(None, None)
    monkeypatch.setattr(ex, "consistency_by_level", lambda: {**measured, 0.8: 26.5})  # no level drops 2 dB
    assert "right" in check_drift_experiment(28.2, None)
