"""Every bad input of the reliability probe (`../shared/reviews/reliability-probe.md`, section 1), as a table.

Each row is one call with one wrong input, keyed by the probe's id. A row expects either a clear error, checked
mechanically: the exception type, a message that starts its sentence with the argument's name and a colon and says
what was ``expected`` and what came, raised by course_lib itself (the innermost frame is ours, not torch's, einops'
or ipywidgets') — or, for the few inputs that turned out to be legitimate, a documented valid result, checked by a
predicate. None may come back silently wrong. The fault cases (corrupted files, interrupted writes, resume) are in
test_checkpoints.py and test_train.py.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch

from course_lib import checkpoints
from course_lib.attention import CrossAttention, SwappedCrossAttention
from course_lib.checkpoints import CheckpointError
from course_lib.coursework import (check_adaptive_weight, check_alphas_cumprod, check_cross_attention,
                                   check_ddim_step, check_hinge_d_loss, check_latent_round_trip, check_lfq_index,
                                   check_lpips_distance, check_normalize_channels, check_q_sample_at,
                                   check_straight_through, check_vq_losses)
from course_lib.coursework.core import CourseworkError, LearnerCodeRaised
from course_lib.data import generate_shapes, ring_mixture
from course_lib.data.distortions import distort, make_2afc
from course_lib.data.shapes import encode_caption, render_shapes
from course_lib.data.toy2d import GaussianMixture
from course_lib.diffusion import (ddim_invert, ddim_sample, ddim_step, predicted_x0, q_sample, q_sigma_posterior,
                                  sigma_eta, slerp)
from course_lib.guidance import cfg_eps, classifier_guided_eps, classifier_guided_mean, classifier_log_prob_grad, \
    guided_ddim_sample
from course_lib.metrics import frechet_distance, mmd_rbf, precision_recall, psnr, ssim
from course_lib.nets import build_model
from course_lib.perceptual import LPIPS, lpips_distance, normalize_channels
from course_lib.quantize import VectorQuantizer, codebook_usage, lfq_codes, lfq_entropy_loss, lfq_index, \
    nearest_code, vq_losses
from course_lib.schedules import alphas_cumprod, cosine_betas, linear_betas, make_alphas_cumprod, \
    timestep_subsequence
from course_lib.train import train

COURSE_LIB = Path(__file__).resolve().parent.parent / "course_lib"
AC = make_alphas_cumprod()
G = torch.Generator().manual_seed(0)
IMG = torch.randn(8, 3, 16, 16, generator=G)
PTS = torch.randn(8, 2, generator=G)
EPS = torch.randn(8, 2, generator=G)
RING = ring_mixture()
VALID = "valid"


@functools.cache
def shipped(name):
    return checkpoints.load(name)


@functools.cache
def lpips_shapes():
    return LPIPS(net="shapes")


@functools.cache
def ldm():
    from course_lib.ldm import LatentDiffusion
    return LatentDiffusion.from_shipped("shapes_ldm32")


@functools.cache
def demos():
    from course_lib.demos import ddim
    forward = ddim.forward_demo(IMG[0], PTS, torch.zeros(8, dtype=torch.long), RING, AC)
    sampling = ddim.sampling_demo({"exact": RING.eps_fn(AC)}, RING, AC, num_points=16, reference_size=64)
    return forward, sampling


def _eps_of_shape(*shape):
    return lambda x, t: torch.zeros(x.shape[0], *shape)


def _tiny_demo(**sliders):
    from course_lib.widgets import slider_demo
    return slider_demo(lambda **v: v, None, **sliders)


def _toy_classifier(x, t):
    return x.sum(-1, keepdim=True).repeat(1, 8)


def _lpips_alex_random():
    return LPIPS("alex", backbone="random")


def _tensor_with_nan(t, where=0):
    t = t.clone()
    t.view(-1)[where] = float("nan")
    return t


def _no_cuda(call):
    def run():
        if torch.cuda.is_available():
            pytest.skip("a GPU is here: device='cuda' is valid")
        return call()
    return run


def _train_resume_truncated(tmp):
    state = Path(tmp) / "ring8_mlp" / "state.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"PK\x03\x04 truncated")
    return train("ring8_mlp", steps=2, resume=True, save=False, runs_dir=tmp, progress=False)


# (id, call, expected exception type or VALID, argument named by the message or a predicate on a valid result)
CASES = [
    # -- schedules ----------------------------------------------------------------------------------------------
    ("S1", lambda: linear_betas(0), ValueError, "num_timesteps"),
    ("S2", lambda: linear_betas(-5), ValueError, "num_timesteps"),
    ("S3", lambda: linear_betas(10.5), TypeError, "num_timesteps"),
    ("S4", lambda: linear_betas(1000, beta_start=0), ValueError, "beta_start"),
    ("S5", lambda: cosine_betas(0), ValueError, "num_timesteps"),
    ("S6", lambda: alphas_cumprod([0.1, 0.2]), ValueError, "betas"),
    ("S7", lambda: alphas_cumprod(torch.tensor([0.1, float("nan"), 0.2])), ValueError, "betas"),
    ("S8", lambda: alphas_cumprod(torch.tensor([0.5, 0.01, 0.3])), VALID,
     lambda r: bool((r[1:] < r[:-1]).all())),  # non-monotone betas are legitimate: the product still decreases
    ("S9", lambda: alphas_cumprod(torch.tensor([])), ValueError, "betas"),
    ("S10", lambda: alphas_cumprod(torch.tensor([0.1, 1.0])), ValueError, "betas"),
    ("S11", lambda: make_alphas_cumprod("Linear"), ValueError, "schedule"),
    ("S12", lambda: timestep_subsequence(1000, 0), ValueError, "num_steps"),
    ("S13", lambda: timestep_subsequence(1000, 2000), ValueError, "num_steps"),
    ("S14", lambda: timestep_subsequence(1000, 50.0), TypeError, "num_steps"),
    ("S15", lambda: timestep_subsequence(1000, 10, "cosine"), ValueError, "kind"),
    ("S16", lambda: make_alphas_cumprod(num_timesteps=1.5e3), TypeError, "num_timesteps"),
    # -- diffusion ----------------------------------------------------------------------------------------------
    ("D1", lambda: q_sample(IMG, 500, torch.randn_like(IMG)), ValueError, "alpha_bar_t"),
    ("D2", lambda: q_sample(IMG, -0.1, torch.randn_like(IMG)), ValueError, "alpha_bar_t"),
    ("D3", lambda: q_sample(IMG, torch.ones(8, dtype=torch.long), torch.randn_like(IMG)), TypeError, "alpha_bar_t"),
    ("D4", lambda: q_sample(IMG, float("nan"), torch.randn_like(IMG)), ValueError, "alpha_bar_t"),
    ("D5", lambda: q_sample(IMG, 0.5, torch.randn(8, 3, 8, 8)), ValueError, "noise"),
    ("D6", lambda: q_sample(IMG, torch.full((4,), 0.5), torch.randn_like(IMG)), ValueError, "alpha_bar_t"),
    ("D7", lambda: q_sample(IMG, torch.full((16,), 0.5), torch.randn_like(IMG)), ValueError, "alpha_bar_t"),
    ("D8", lambda: q_sample(PTS[:3], torch.tensor([0.5, 0.9]), torch.randn(3, 2)), ValueError, "alpha_bar_t"),
    ("D9", lambda: q_sample(IMG.numpy(), 0.5, torch.randn_like(IMG)), TypeError, "x0"),
    ("D10", lambda: q_sample(torch.randint(0, 255, (2, 3, 4, 4), dtype=torch.uint8), 0.5, torch.randn(2, 3, 4, 4)),
     TypeError, "x0"),
    ("D11", lambda: q_sample(IMG, "0.5", torch.randn_like(IMG)), TypeError, "alpha_bar_t"),
    ("D12", lambda: predicted_x0(PTS, torch.zeros(8, 1), 0.5), ValueError, "eps"),
    ("D13", lambda: predicted_x0(PTS.tolist(), EPS, 0.5), TypeError, "x_t"),
    ("D14", lambda: sigma_eta(0.5, 0.6, -0.5), ValueError, "eta"),
    ("D15", lambda: sigma_eta(0.3, 0.6, 2.0), ValueError, "eta"),
    ("D16", lambda: sigma_eta(0.6, 0.3, 1.0), ValueError, "alpha_bar_prev"),
    ("D17", lambda: ddim_step(PTS, EPS, 1.5, 0.6), ValueError, "alpha_bar_t"),
    ("D18", lambda: ddim_step(PTS, EPS, 0.5, 0.0), ValueError, "alpha_bar_prev"),
    ("D19", lambda: ddim_step(PTS, EPS, 0.3, 0.6, eta=2.0), ValueError, "eta"),
    ("D20", lambda: ddim_step(PTS, EPS, 0.3, 0.6, eta=-1.0), ValueError, "eta"),
    ("D21", lambda: ddim_step(_tensor_with_nan(PTS), EPS, 0.3, 0.6), ValueError, "x_t"),
    ("D22", lambda: ddim_step(PTS, torch.zeros(8, 3), 0.3, 0.6), ValueError, "eps"),
    ("D23", lambda: ddim_step(PTS, EPS, 0.3, 0.6, eta=1.0, noise=torch.randn(1, 2)), ValueError, "noise"),
    ("D24", lambda: ddim_step(PTS, EPS, 0.3, 0.6, eta=1.0, noise=torch.randn(3)), ValueError, "noise"),
    ("D25", lambda: ddim_step(PTS, EPS, 0.3, 0.6, clip_x0=-1.0), ValueError, "clip_x0"),
    ("D26", lambda: ddim_step(PTS, EPS, 0.9, 0.2), ValueError, "alpha_bar_prev"),
    ("D27", lambda: ddim_step(PTS, EPS, 0.3, 0.6, eta="0"), TypeError, "eta"),
    ("D28", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC, list(range(0, 800, 100))), ValueError, "timesteps"),
    ("D29", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC, [1000, 500, 0]), ValueError, "timesteps"),
    ("D30", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC, [999.7, 500.2, 0.9]), TypeError, "timesteps"),
    ("D31", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC.tolist(), [999, 500, 0]), TypeError, "alphas_cumprod"),
    ("D32", lambda: ddim_sample(RING.eps_fn(AC), PTS, torch.cat([AC[:-1], torch.tensor([1.5])]), [999, 500, 0]),
     ValueError, "alphas_cumprod"),
    ("D33", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC.flip(0), [999, 500, 0]), ValueError, "alphas_cumprod"),
    ("D34", lambda: ddim_sample(_eps_of_shape(1), PTS, AC, [999, 500, 0]), ValueError, "eps_fn"),
    ("D35", lambda: ddim_sample(_eps_of_shape(3), PTS, AC, [999, 500, 0]), ValueError, "eps_fn"),
    ("D36", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC, [999, 500, 0], eta=5.0), ValueError, "eta"),
    ("D37", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC, [999, 500, 0], variance="sigma"), ValueError, "variance"),
    ("D38", lambda: ddim_sample(RING.eps_fn(AC), PTS, AC, []), ValueError, "timesteps"),
    ("D39", lambda: slerp(PTS, EPS, 1.5), ValueError, "alpha"),
    ("D40", lambda: slerp(torch.zeros(8, 2), EPS, 0.5), ValueError, "z0"),
    ("D41", lambda: ddim_invert(RING.eps_fn(AC), PTS, AC, list(range(0, 800, 100))), ValueError, "timesteps"),
    ("D42", lambda: q_sigma_posterior(PTS, EPS, 0.3, 0.6, 0.9), ValueError, "sigma"),
    # -- guidance -----------------------------------------------------------------------------------------------
    ("G1", lambda: cfg_eps(EPS, EPS, "3"), TypeError, "scale"),
    ("G2", lambda: cfg_eps(EPS, EPS, torch.tensor(3.0)), TypeError, "scale"),
    ("G3", lambda: cfg_eps(EPS, torch.zeros(8, 3), 3.0), ValueError, "eps_cond"),
    ("G4", lambda: classifier_log_prob_grad(_toy_classifier, PTS, 10, torch.full((8,), 9)), ValueError, "y"),
    ("G5", lambda: classifier_log_prob_grad(_toy_classifier, PTS, 10, torch.zeros(3, dtype=torch.long)),
     ValueError, "y"),
    ("G6", lambda: classifier_guided_mean(PTS, -1.0, EPS, 1.0), ValueError, "variance"),
    ("G7", lambda: classifier_guided_eps(EPS, EPS, 2.0, 1.0), ValueError, "alpha_bar_t"),
    ("G8", lambda: guided_ddim_sample(RING.eps_fn(AC), RING.classifier_fn(AC), PTS, AC, [999, 500, 0],
                                      torch.zeros(8, dtype=torch.long), float("nan")), ValueError, "scale"),
    ("G9", lambda: classifier_log_prob_grad(_toy_classifier, PTS, 10, torch.zeros(8)), TypeError, "y"),
    # -- quantize -----------------------------------------------------------------------------------------------
    ("Q1", lambda: nearest_code(torch.randn(5, 3), torch.randn(16, 4)), ValueError, "z"),
    ("Q2", lambda: nearest_code(torch.randn(5, 4), torch.randn(0, 4)), ValueError, "codebook"),
    ("Q3", lambda: nearest_code(torch.randn(5, 4), torch.randn(4)), ValueError, "codebook"),
    ("Q4", lambda: nearest_code(_tensor_with_nan(torch.randn(1, 4)), torch.randn(16, 4)), ValueError, "z"),
    ("Q5", lambda: nearest_code(torch.randn(5, 4), torch.randn(16, 4), chunk=0), ValueError, "chunk"),
    ("Q6", lambda: lfq_index(torch.ones(1, 64)), ValueError, "q"),
    ("Q7", lambda: lfq_index(torch.ones(2, 70)), ValueError, "q"),
    ("Q8", lambda: lfq_entropy_loss(torch.randn(4, 20)), ValueError, "z"),
    ("Q9", lambda: lfq_entropy_loss(torch.randn(4, 4), temperature=0), ValueError, "temperature"),
    ("Q10", lambda: lfq_codes(0), ValueError, "d"),
    ("Q11", lambda: codebook_usage(torch.tensor([0, 20]), 16), ValueError, "indices"),
    ("Q12", lambda: codebook_usage(torch.tensor([0.0, 1.0]), 16), TypeError, "indices"),
    ("Q13", lambda: VectorQuantizer(0, 4), ValueError, "num_codes"),
    ("Q14", lambda: VectorQuantizer(16, 4)(torch.randn(3, 8)), ValueError, "z_e"),
    ("Q15", lambda: vq_losses(torch.randn(3, 4), torch.randn(3, 4), beta=-1.0), ValueError, "beta"),
    ("Q16", lambda: VectorQuantizer(16, 4, decay=1.0), ValueError, "decay"),
    ("Q17", lambda: VectorQuantizer(16, 4, restart_dead_codes=True, restart_after=0), ValueError, "restart_after"),
    ("Q18", lambda: lfq_codes(26), ValueError, "d"),
    ("Q19", lambda: lfq_codes(64), ValueError, "d"),
    # -- perceptual ---------------------------------------------------------------------------------------------
    ("P1", lambda: lpips_shapes()(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)), ValueError, "x"),
    ("P2", lambda: lpips_shapes()(torch.rand(2, 3, 16, 16) * 255, torch.zeros(2, 3, 16, 16)), ValueError, "x"),
    ("P3", lambda: lpips_shapes()(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)), ValueError, "x"),
    ("P4", lambda: lpips_shapes()(torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)), ValueError, "x"),
    ("P4b", lambda: lpips_shapes()(torch.rand(2, 3, 2, 2) * 2 - 1, torch.rand(2, 3, 2, 2) * 2 - 1), ValueError, "x"),
    ("P5", lambda: lpips_shapes()(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 32, 32)), ValueError, "x0"),
    ("P6", lambda: LPIPS(net="foo"), ValueError, "net"),
    ("P8", lambda: _lpips_alex_random()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)), ValueError, "x"),
    ("P10", lambda: normalize_channels(torch.randn(3, 4, 4)), ValueError, "f"),
    ("P11", lambda: lpips_distance([torch.randn(1, 2, 4, 4)], [torch.randn(1, 2, 4, 4)], [torch.tensor([-1.0, 1.0])]),
     ValueError, "weights[0]"),
    ("P12", lambda: lpips_shapes()(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16)), ValueError, "x"),
    ("P13", lambda: lpips_shapes()(_tensor_with_nan(IMG[:1].clamp(-1, 1)), IMG[:1].clamp(-1, 1)), ValueError, "x"),
    # -- attention ----------------------------------------------------------------------------------------------
    ("A1", lambda: CrossAttention(64, context_dim=32)(torch.randn(2, 10, 64), torch.randn(2, 5, 16)),
     ValueError, "context"),
    ("A2", lambda: CrossAttention(64)(torch.randn(2, 10, 32)), ValueError, "x"),
    ("A3", lambda: CrossAttention(64)(torch.randn(10, 64), torch.randn(10, 64)), ValueError, "x, context"),
    ("A4", lambda: CrossAttention(64, 32)(torch.randn(2, 10, 64), torch.randn(2, 5, 32), torch.ones(2, 5,
                                                                                               dtype=torch.long)),
     ValueError, "mask"),
    ("A5", lambda: CrossAttention(64, 32)(torch.randn(2, 10, 64), torch.randn(2, 5, 32),
                                          torch.tensor([[True] * 5, [False] * 5])), ValueError, "mask"),
    ("A6", lambda: CrossAttention(64, 32)(torch.randn(2, 10, 64), torch.randn(3, 5, 32)), ValueError, "x, context"),
    ("A7", lambda: SwappedCrossAttention(64, 32)(torch.randn(2, 10, 64), torch.randn(2, 5, 16)), ValueError,
     "context"),
    ("A8", lambda: CrossAttention(64, heads=0), ValueError, "heads"),
    # -- checkpoints --------------------------------------------------------------------------------------------
    ("C1", lambda: checkpoints.load("shapes_ddpm"), CheckpointError, "name"),
    ("C2", lambda: checkpoints.load(None), CheckpointError, "name"),
    ("C3", lambda: checkpoints.load("shapes_ddpm16", source="/nonexistent/weights"), CheckpointError, "manifest"),
    ("C4", _no_cuda(lambda: checkpoints.load("ring8_mlp", device="cuda")), ValueError, "device"),
    ("C5", lambda: checkpoints.load_log("ring8_mlp"), CheckpointError, "ring8_mlp"),
    # -- data ---------------------------------------------------------------------------------------------------
    ("X1", lambda: generate_shapes(0), ValueError, "n"),
    ("X2", lambda: generate_shapes(-3), ValueError, "n"),
    ("X3", lambda: generate_shapes(2.5), TypeError, "n"),
    ("X4", lambda: generate_shapes(4, image_size=7), ValueError, "image_size"),
    ("X5", lambda: generate_shapes(4, num_objects=3), ValueError, "num_objects"),
    ("X6", lambda: generate_shapes(4, num_objects="2"), TypeError, "num_objects"),
    ("X7", lambda: generate_shapes(4, seed="abc"), TypeError, "seed"),
    ("X8", lambda: generate_shapes(4, seed=-1), VALID, lambda b: b.images.shape == (4, 3, 16, 16)),  # torch seeds
    ("X9", lambda: generate_shapes(4, seed=1.7), TypeError, "seed"),
    ("X10", lambda: encode_caption("large red hexagon top left"), ValueError, "caption"),
    ("X11", lambda: encode_caption("Large Red Circle Top Left"), ValueError, "caption"),
    ("X12", lambda: encode_caption(123), TypeError, "caption"),
    ("X13", lambda: encode_caption(" ".join(["red"] * 200)), ValueError, "caption"),
    ("X14", lambda: encode_caption(""), VALID, lambda t: t.shape == (11,) and int(t.abs().sum()) == 0),  # CFG's null
    ("X15", lambda: encode_caption("large red circle top left \u2713"), ValueError, "caption"),
    ("X16", lambda: render_shapes({"shape": [["circle"]], "colour": [[0]], "row": [[0]], "column": [[0]],
                                   "size": [[0]]}), TypeError, "attributes['shape']"),
    ("X17", lambda: render_shapes({"shape": torch.tensor([[7]]), "colour": torch.tensor([[0]]),
                                   "row": torch.tensor([[0]]), "column": torch.tensor([[0]]),
                                   "size": torch.tensor([[0]])}), ValueError, "attributes['shape']"),
    ("X18", lambda: ring_mixture(0), ValueError, "num_modes"),
    ("X19", lambda: GaussianMixture(torch.zeros(2, 2), 0.0), ValueError, "std"),
    ("X20", lambda: RING.sample(0), ValueError, "n"),
    ("X21", lambda: RING.eps_fn(AC)(PTS, 1000), ValueError, "t"),
    ("X22", lambda: RING.eps_fn(AC)(PTS, -1), ValueError, "t"),
    ("X23", lambda: distort(IMG[:2].clamp(-1, 1), "jpeg", 0.5), ValueError, "kind"),
    ("X24", lambda: distort(IMG[:2].clamp(-1, 1), "blur", 1.5), ValueError, "strength"),
    ("X25", lambda: make_2afc(0), ValueError, "n"),
    ("X26", lambda: RING.log_prob(torch.randn(4, 3)), ValueError, "x_t"),
    ("X27", lambda: generate_shapes(4, image_size=16.0), TypeError, "image_size"),
    # -- nets ---------------------------------------------------------------------------------------------------
    ("N1", lambda: shipped("shapes_ddpm16")(torch.randn(2, 1, 16, 16), 10), ValueError, "x"),
    ("N2", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 16, 16), 5000), ValueError, "t"),
    ("N3", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 16, 16), -7), ValueError, "t"),
    ("N4", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 16, 16), 500.5), VALID,
     lambda out: out.shape == (2, 3, 16, 16)),  # documented: the sinusoidal embedding takes real t in [0, T - 1]
    ("N5", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 16, 16), 10, torch.tensor([9, 9])), ValueError, "y"),
    ("N6", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 15, 15), 10), ValueError, "x"),
    ("N7", lambda: build_model("Unet", {}), ValueError, "kind"),
    ("N8", lambda: build_model("UNet", {"base_chanels": 8}), TypeError, "config"),
    ("N9", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 16, 16), torch.tensor([1, 2, 3])), ValueError, "t"),
    ("N10", lambda: shipped("shapes_ddpm16")(torch.randn(2, 3, 16, 16), 10, torch.tensor([1.0, 2.0])), TypeError,
     "y"),
    # -- metrics ------------------------------------------------------------------------------------------------
    ("M1", lambda: psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 4, 4)), ValueError, "y"),
    ("M2", lambda: ssim(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)), ValueError, "window_size"),
    ("M3", lambda: frechet_distance(torch.randn(1, 4), torch.randn(5, 4)), ValueError, "feats_a, feats_b"),
    ("M4", lambda: precision_recall(torch.randn(3, 4), torch.randn(3, 4), k=5), ValueError, "k"),
    ("M5", lambda: mmd_rbf(torch.randn(5, 4), torch.randn(5, 5)), ValueError, "y"),
    ("M6", lambda: psnr(IMG, IMG), VALID, lambda r: bool(torch.isinf(r).all())),  # identical images: inf dB
    # -- coursework checks --------------------------------------------------------------------------------------
    ("W1", lambda: check_q_sample_at(42), TypeError, "learner_fn"),
    ("W2", lambda: check_q_sample_at(lambda *a, **k: 1.0), CourseworkError, "Exercise 0.2"),
    ("W3", lambda: check_q_sample_at(lambda *a, **k: PTS.numpy()), CourseworkError, "Exercise 0.2"),
    ("W4", lambda: check_q_sample_at(lambda a: a), CourseworkError, "Exercise 0.2"),
    ("W5", lambda: check_q_sample_at(lambda *a, **k: None), CourseworkError, "Exercise 0.2"),
    ("W6", lambda: check_straight_through(42), TypeError, "learner_fn"),
    ("W7", lambda: check_straight_through(lambda z_e, z_q: (z_e, z_q)), CourseworkError, "Exercise 3.1"),
    ("W8", lambda: check_vq_losses(42), TypeError, "learner_fn"),
    ("W9", lambda: check_cross_attention(42), TypeError, "learner_fn"),
    ("W10", lambda: check_latent_round_trip(42, 42), TypeError, "encode_fn"),
    ("W10b", lambda: check_latent_round_trip(lambda ae, s, x: s * ae.encode(x), None), TypeError, "decode_fn"),
    ("W11", lambda: check_alphas_cumprod(lambda *a, **k: {}["x"]), CourseworkError, "Exercise 0.1"),
    ("W12", lambda: check_lfq_index(lambda q: [0]), CourseworkError, "Exercise 3.3"),
    ("W13", lambda: check_normalize_channels(None), TypeError, "learner_fn"),
    ("W14", lambda: check_adaptive_weight(42), TypeError, "learner_fn"),
    ("W15", lambda: check_hinge_d_loss(lambda a: 1.0), CourseworkError, "Exercise 5.2"),
    ("W16", lambda: check_lpips_distance(42), TypeError, "learner_fn"),
    ("W17", lambda: check_ddim_step(lambda *a, **k: torch.zeros(8, 2, dtype=torch.long)), CourseworkError,
     "Exercise 1.3"),
    # -- widgets and demos --------------------------------------------------------------------------------------
    ("U1", lambda: demos()[0].set(t=5000), ValueError, "t"),
    ("U2", lambda: demos()[0].set(t=-3), ValueError, "t"),
    ("U3", lambda: demos()[0].compute(t=5000), ValueError, "t"),
    ("U4", lambda: demos()[0].compute(t=-1), ValueError, "t"),
    ("U5", lambda: demos()[0].set(t=10.7), ValueError, "t"),
    ("U6", lambda: demos()[0].set(tt=10), ValueError, "values"),
    ("U7", lambda: _tiny_demo(a=(0, 10, 1, 20)), ValueError, "a"),
    ("U8", lambda: _tiny_demo(a=(0, 10, 1)), TypeError, "a"),
    ("U9", lambda: demos()[1].set(steps=7), ValueError, "steps"),
    ("U10", lambda: demos()[1].set(eta=3.0), ValueError, "eta"),
    ("U11", lambda: demos()[1].compute(model="exact", steps=7, tau="uniform", eta=3.0), ValueError, "steps"),
    ("U12", lambda: demos()[1].set(eta=0.123), VALID, lambda r: r is not None),  # off the 0.1 step: in range
    # -- latent diffusion and the GPT prior ---------------------------------------------------------------------
    ("L1", lambda: ldm().sample(torch.zeros(1, 20, dtype=torch.long), steps=2), ValueError, "tokens"),
    ("L2", lambda: ldm().sample(torch.zeros(1, 11), steps=2), TypeError, "tokens"),
    ("L3", lambda: ldm().sample(torch.full((1, 11), 999), steps=2), ValueError, "tokens"),
    ("L4", lambda: ldm().sample(torch.zeros(1, 11, dtype=torch.long), steps=0), ValueError, "steps"),
    ("L5", lambda: ldm().sample(torch.zeros(1, 11, dtype=torch.long), steps=2000), ValueError, "steps"),
    ("L6", lambda: ldm().sample(torch.zeros(1, 11, dtype=torch.long), steps=2, guidance_scale="3"), TypeError,
     "guidance_scale"),
    ("L7", lambda: ldm().sample(torch.zeros(1, 11, dtype=torch.long), steps=2, guidance_scale=1e6), VALID,
     lambda im: im.abs().max() <= 1),  # documented: decode clamps to the data range [-1, 1], as its docstring says
    ("L8", lambda: ldm().sample(torch.zeros(11, dtype=torch.long), steps=2), ValueError, "tokens"),
    ("L9", lambda: ldm().sample(torch.zeros(1, 11, dtype=torch.long), steps=2, z_T=torch.randn(1, 3, 32, 32)),
     ValueError, "z_T"),
    ("L10", lambda: ldm().decode(torch.randn(1, 3, 8, 8)), ValueError, "z"),
    ("G10", lambda: shipped("shapes_gpt32").sample(2, temperature=0), ValueError, "temperature"),
    ("G11", lambda: shipped("shapes_gpt32").sample(2, top_k=0), ValueError, "top_k"),
    # -- the training entry point (the CLI's argparse errors are in test_cli_bad_arguments) ----------------------
    ("T2", lambda: train("ring8_mlp", steps=0), ValueError, "steps"),
    ("T4", lambda: train("shapes_ae32_l2", steps=1, resume=True, save=False), ValueError, "resume"),
    ("T5", _no_cuda(lambda: train("ring8_mlp", steps=1, device="cuda", save=False)), ValueError, "device"),
    ("T6", lambda: train("ring8_mlp", steps=1, device="tpu", save=False), ValueError, "device"),
]


def _case_id(case):
    return case[0]


def _raised_by_course_lib(excinfo) -> bool:
    """The innermost frame that raised is a course_lib file (a check at our boundary, not deep in a dependency)."""
    return Path(str(excinfo.traceback[-1].path)).resolve().is_relative_to(COURSE_LIB)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_bad_input_gets_a_clear_error_or_a_documented_valid_result(case):
    cid, call, expected, detail = case
    if expected == VALID:
        assert detail(call()), f"{cid}: the valid result is not what the documentation says"
        return
    with pytest.raises(expected) as excinfo:
        call()
    msg = str(excinfo.value)
    assert re.search(rf"(^|[\s(]){re.escape(detail)}\)?:", msg), f"{cid}: the message does not name {detail!r}: {msg}"
    if not isinstance(excinfo.value, LearnerCodeRaised):  # the learner's own exception, reported with its case
        assert "expected" in msg, f"{cid}: the message does not say what was expected: {msg}"
    assert _raised_by_course_lib(excinfo), f"{cid}: raised deep in {excinfo.traceback[-1].path}, not at our boundary"


def test_the_table_covers_every_probed_call():
    ids = {c[0] for c in CASES}
    assert len(ids) == len(CASES), "duplicate ids"
    probe = {f"S{i}" for i in range(1, 17)} | {f"D{i}" for i in range(1, 43)} | {f"G{i}" for i in range(1, 12)} | \
        {f"Q{i}" for i in range(1, 20)} | {f"P{i}" for i in range(1, 14)} | {"P4b"} | {f"A{i}" for i in range(1, 9)} | \
        {f"C{i}" for i in range(1, 6)} | {f"X{i}" for i in range(1, 28)} | {f"N{i}" for i in range(1, 11)} | \
        {f"M{i}" for i in range(1, 7)} | {f"W{i}" for i in range(1, 18)} | {f"U{i}" for i in range(1, 13)} | \
        {f"L{i}" for i in range(1, 11)} | {f"T{i}" for i in range(1, 9)}
    # elsewhere: P7 and P9 need the ImageNet cache state (test_perceptual), T1/T3 are argparse (below), T7/T8 resume
    # (test_train)
    elsewhere = {"P7", "P9", "T1", "T3", "T7", "T8"}
    assert probe - elsewhere <= ids, sorted(probe - elsewhere - ids)


@pytest.mark.parametrize("argv, says", [(["nope"], "unknown model 'nope'"), (["ring8_mlp", "--steps", "abc"],
                                                                               "--steps: invalid int value")],
                         ids=["T1", "T3"])
def test_cli_bad_arguments(argv, says, capsys):
    from course_lib.train import main
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2 and says in capsys.readouterr().err


def test_a_slider_that_refused_a_value_keeps_the_value_it_had():
    forward, sampling = demos()
    forward.set(t=300)
    for bad in (5000, -3, 10.7):
        with pytest.raises(ValueError):
            forward.set(t=bad)
        assert forward.values()["t"] == 300
    before = sampling.values()
    with pytest.raises(ValueError):
        sampling.set(steps=7, eta=0.5)  # one bad value: nothing changes, not even the good one
    assert sampling.values() == before
