"""Checks of notebooks 00 and 01: the schedule, the forward process, the DDIM update."""
from __future__ import annotations

import functools

import torch

from .core import Case, CourseworkError, NotStarted, Verdict, announce, check_function, check_prediction
from ..diffusion import ddim_step, ddim_step_terms, predicted_x0, q_sample, q_sigma_posterior, sigma_eta
from ..schedules import alphas_cumprod, cosine_betas, linear_betas


# -- Exercise 0.1: alphas_cumprod -------------------------------------------------------------------------------
def _alphas_cumprod_cases() -> list[Case]:
    return [
        Case("linear schedule, T=1000", {"betas": linear_betas(1000)}),
        Case("cosine schedule, T=1000", {"betas": cosine_betas(1000)}),
        Case("linear schedule, T=10", {"betas": linear_betas(10, 0.01, 0.2)}),
        Case("a single step (T=1)", {"betas": torch.tensor([0.3], dtype=torch.float64)}),
        Case("random betas", {"betas": torch.rand(50, generator=torch.Generator().manual_seed(1),
                                                   dtype=torch.float64) * 0.5 + 0.01}),
    ]


def check_alphas_cumprod(fn) -> Verdict:
    """Exercise 0.1: ``fn(betas) -> alphas_cumprod``, abar_t = prod_{s<=t} (1 - beta_s)."""
    mistakes = {
        "you multiplied the betas, not (1 - beta): abar_t = prod (1 - beta_s)": lambda betas: torch.cumprod(betas, 0),
        "you summed instead of multiplying: abar_t is a cumulative *product*": lambda betas: torch.cumsum(1 - betas, 0),
        "off by one: abar_0 must already include beta_1, i.e. alphas_cumprod[0] = 1 - betas[0]":
            lambda betas: torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)[:-1]]),
        "you returned alpha_t = 1 - beta_t for each step alone; take the cumulative product":
            lambda betas: 1 - betas,
    }
    return check_function("alphas_cumprod", fn, alphas_cumprod, _alphas_cumprod_cases(), mistakes,
                          atol=1e-9, rtol=1e-7, exercise="Exercise 0.1", replaces=[alphas_cumprod])


# -- Exercise 0.2: q_sample at integer timesteps ----------------------------------------------------------------
def _q_sample_at_reference(x0, alphas_cumprod, t, noise):
    return q_sample(x0, alphas_cumprod[t].float(), noise)


def _q_sample_at_cases() -> list[Case]:
    g = torch.Generator().manual_seed(0)
    ac = alphas_cumprod(linear_betas(1000)).float()
    acc = alphas_cumprod(cosine_betas(1000)).float()
    cases = []
    for label, shape, t, table in [
        ("batch of 2-D points, random t", (64, 2), torch.randint(0, 1000, (64,), generator=g), ac),
        ("batch of images, random t", (8, 3, 16, 16), torch.randint(0, 1000, (8,), generator=g), ac),
        ("t = 0 (almost clean)", (16, 2), torch.zeros(16, dtype=torch.long), ac),
        ("t = T-1 (almost pure noise)", (16, 2), torch.full((16,), 999), ac),
        ("one sample", (1, 3, 8, 8), torch.tensor([500]), ac),
        ("cosine schedule", (32, 2), torch.randint(0, 1000, (32,), generator=g), acc),
        ("increasing t", (10, 2), torch.arange(0, 1000, 100), ac),
    ]:
        cases.append(Case(label, {"x0": torch.randn(shape, generator=g), "alphas_cumprod": table, "t": t,
                                  "noise": torch.randn(shape, generator=g)}))
    return cases


def _wrong_q(coef_x0, coef_eps, shift=0):
    def f(x0, alphas_cumprod, t, noise):
        a = alphas_cumprod[(t + shift).clamp(0, len(alphas_cumprod) - 1)].float()
        a = a.reshape(-1, *([1] * (x0.ndim - 1)))
        return coef_x0(a) * x0 + coef_eps(a) * noise
    return f


def check_q_sample_at(fn) -> Verdict:
    """Exercise 0.2: ``fn(x0, alphas_cumprod, t, noise) -> x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``."""
    sq, one_minus = torch.sqrt, (lambda a: torch.sqrt(1 - a))
    mistakes = {
        "sign flip: the noise term is + sqrt(1 - abar_t) * noise": _wrong_q(sq, lambda a: -torch.sqrt(1 - a)),
        "missing square roots: the coefficients are sqrt(abar_t) and sqrt(1 - abar_t), not abar_t and 1 - abar_t":
            _wrong_q(lambda a: a, lambda a: 1 - a),
        "missing square root on the x0 coefficient: sqrt(abar_t) * x0": _wrong_q(lambda a: a, one_minus),
        "missing square root on the noise coefficient: sqrt(1 - abar_t) * noise": _wrong_q(sq, lambda a: 1 - a),
        "x0 and noise coefficients are swapped": _wrong_q(one_minus, sq),
        "off-by-one timestep: use alphas_cumprod[t] (the table is 0-indexed), not alphas_cumprod[t - 1]":
            _wrong_q(sq, one_minus, shift=-1),
        "off-by-one timestep: use alphas_cumprod[t], not alphas_cumprod[t + 1]": _wrong_q(sq, one_minus, shift=1),
    }
    return check_function("q_sample_at", fn, _q_sample_at_reference, _q_sample_at_cases(), mistakes,
                          exercise="Exercise 0.2", replaces=[q_sample])


# -- Notebook 01: the DDIM update -------------------------------------------------------------------------------
def _abar_pairs(g: torch.Generator):
    """(label, shape, abar_t, abar_prev) cases: floats, per-sample tensors shaped to broadcast, and edges."""
    ac = alphas_cumprod(linear_betas(1000)).float()
    t = torch.randint(1, 1000, (32,), generator=g)
    s = (t * torch.rand(32, generator=g)).long()  # an earlier timestep, as a sub-sequence jumps
    return [
        ("floats, mid-way", (16, 2), 0.3, 0.6),
        ("per-sample tensors (N, 1), 2-D points", (32, 2), ac[t][:, None], ac[s][:, None]),
        ("per-sample tensors (N, 1, 1, 1), images", (32, 3, 4, 4), ac[t].view(-1, 1, 1, 1), ac[s].view(-1, 1, 1, 1)),
        ("almost pure noise to almost clean", (8, 2), float(ac[999]), float(ac[0])),
        ("last step, to alpha_bar_prev = 1", (8, 2), 0.9, 1.0),
        ("one DDPM step", (8, 2), float(ac[500]), float(ac[499])),
    ]


def _predicted_x0_cases() -> list[Case]:
    g = torch.Generator().manual_seed(10)
    return [Case(label, {"x_t": torch.randn(shape, generator=g), "eps": torch.randn(shape, generator=g),
                         "alpha_bar_t": a_t})
            for label, shape, a_t, _ in _abar_pairs(g)]


def check_predicted_x0(fn) -> Verdict:
    """Exercise 1.1: ``fn(x_t, eps, alpha_bar_t)`` = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
    def wrong(num, den):
        return lambda x_t, eps, alpha_bar_t: num(x_t, eps, torch.as_tensor(alpha_bar_t)) / den(torch.as_tensor(alpha_bar_t))
    mistakes = {
        "sign flip: subtract the noise, x_t - sqrt(1 - abar_t) * eps":
            wrong(lambda x, e, a: x + (1 - a).sqrt() * e, torch.sqrt),
        "missing square root in the denominator: divide by sqrt(abar_t)":
            wrong(lambda x, e, a: x - (1 - a).sqrt() * e, lambda a: a),
        "missing square root on the noise coefficient: sqrt(1 - abar_t) * eps":
            wrong(lambda x, e, a: x - (1 - a) * e, torch.sqrt),
        "you forgot to divide by sqrt(abar_t)": wrong(lambda x, e, a: x - (1 - a).sqrt() * e, lambda a: 1.0),
        "the noise coefficient is sqrt(1 - abar_t), not sqrt(abar_t)":
            wrong(lambda x, e, a: x - a.sqrt() * e, torch.sqrt),
    }
    return check_function("predicted_x0", fn, predicted_x0, _predicted_x0_cases(), mistakes, exercise="Exercise 1.1",
                          replaces=[predicted_x0])


def _sigma_cases() -> list[Case]:
    g = torch.Generator().manual_seed(11)
    cases = []
    for label, _, a_t, a_prev in _abar_pairs(g):
        for eta in (0.0, 0.5, 1.0):
            cases.append(Case(f"{label}, eta={eta}", {"alpha_bar_t": torch.as_tensor(a_t),
                                                       "alpha_bar_prev": torch.as_tensor(a_prev), "eta": eta}))
    return cases


def check_sigma_eta(fn) -> Verdict:
    """Exercise 1.2: ``fn(alpha_bar_t, alpha_bar_prev, eta)`` = eta sqrt((1-abar_prev)/(1-abar_t)) sqrt(1 - abar_t/abar_prev)."""
    def wrong(f):
        return lambda alpha_bar_t, alpha_bar_prev, eta: f(alpha_bar_t, alpha_bar_prev, eta)
    mistakes = {
        "eta is missing: sigma_t(eta) scales linearly with eta": wrong(lambda a, p, e: ((1 - p) / (1 - a) * (1 - a / p)).sqrt()),
        "you returned the variance sigma^2; take the square root": wrong(lambda a, p, e: e * (1 - p) / (1 - a) * (1 - a / p)),
        "the first ratio is upside down: sqrt((1 - abar_prev) / (1 - abar_t))":
            wrong(lambda a, p, e: e * ((1 - a) / (1 - p) * (1 - a / p)).sqrt()),
        "the second factor is sqrt(1 - abar_t / abar_prev), not sqrt(1 - abar_prev / abar_t)":
            wrong(lambda a, p, e: e * ((1 - p) / (1 - a) * (1 - p / a).clamp_min(0)).sqrt()),
        "eta multiplies the standard deviation, not the variance (eta^2 under the root)":
            wrong(lambda a, p, e: (e * (1 - p) / (1 - a) * (1 - a / p)).sqrt()),
    }
    return check_function("sigma_eta", fn, sigma_eta, _sigma_cases(), mistakes, exercise="Exercise 1.2",
                          replaces=[sigma_eta])


def _rounding_pairs(n: int = 8):
    """(abar_t, abar_prev) pairs of the linear schedule with the smallest float32 value of 1 - abar_prev - sigma_t^2
    at eta = 1: zero or barely positive in exact arithmetic, below zero after rounding on most machines (which pairs
    depends on the CPU's arithmetic, so they are found here rather than hard-coded)."""
    ac = alphas_cumprod(linear_betas(1000)).float()
    a = ac[1:, None].expand(-1, 1000).reshape(-1)
    p = ac[None, :].expand(999, -1).reshape(-1)
    keep = p > a
    a, p = a[keep], p[keep]
    room = 1 - p - sigma_eta(a, p, 1.0) ** 2
    idx = room.argsort()[:n]
    return a[idx][:, None], p[idx][:, None]


def _ddim_step_cases() -> list[Case]:
    g = torch.Generator().manual_seed(12)
    cases = []
    for label, shape, a_t, a_prev in _abar_pairs(g):
        for eta in (0.0, 1.0, 0.4):
            cases.append(Case(f"{label}, eta={eta}", {
                "x_t": torch.randn(shape, generator=g), "eps": torch.randn(shape, generator=g),
                "alpha_bar_t": a_t, "alpha_bar_prev": a_prev, "eta": eta, "noise": torch.randn(shape, generator=g)}))
    a_t, a_prev = _rounding_pairs()
    cases.append(Case("eta=1, big jumps where float32 rounds 1 - abar_prev - sigma^2 to about zero", {
        "x_t": torch.randn(8, 2, generator=g), "eps": torch.randn(8, 2, generator=g), "alpha_bar_t": a_t,
        "alpha_bar_prev": a_prev, "eta": 1.0, "noise": torch.randn(8, 2, generator=g)}))
    return cases


def _wrong_step(direction_room=None, noise_scale=None, x0_coef=None, sigma_fn=None, sign=1.0):
    def f(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise):
        a, p = torch.as_tensor(alpha_bar_t), torch.as_tensor(alpha_bar_prev)
        sig = (sigma_fn or sigma_eta)(a, p, eta)
        x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        room = direction_room(a, p, sig) if direction_room else (1 - p - sig**2)
        out = (x0_coef(a, p) if x0_coef else p.sqrt()) * x0 + sign * room.clamp_min(0).sqrt() * eps
        return out + (noise_scale(sig) if noise_scale else sig) * noise
    return f


def check_ddim_step(fn) -> Verdict:
    """Exercise 1.3: ``fn(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise)`` = DDIM eq. 12 (4), x_{t-1}."""
    mistakes = {
        "the direction term is sqrt(1 - abar_prev - sigma_t^2) * eps: you left out sigma_t^2":
            _wrong_step(direction_room=lambda a, p, s: 1 - p),
        "the direction uses abar_prev (where we go), not abar_t (where we are)":
            _wrong_step(direction_room=lambda a, p, s: 1 - a - s**2),
        "the random-noise term sigma_t * noise is missing": _wrong_step(noise_scale=lambda s: 0.0),
        "sign flip on the direction pointing to x_t": _wrong_step(sign=-1.0),
        "the predicted x0 is scaled by sqrt(abar_prev), not sqrt(abar_t)": _wrong_step(x0_coef=lambda a, p: a.sqrt()),
        "sigma_t is sigma_eta(abar_t, abar_prev, eta), not eta itself":
            _wrong_step(sigma_fn=lambda a, p, e: torch.as_tensor(float(e))),
        "the noise term is sigma_t * noise, not sigma_t^2 * noise": _wrong_step(noise_scale=lambda s: s**2),
    }
    nan_hint = ("With eta = 1 and a big jump, 1 - abar_prev - sigma_t^2 is zero in exact arithmetic but can come out "
                "slightly negative in float32: clamp it at 0 before the square root (`.clamp_min(0)`).")
    return check_function("ddim_step", fn, ddim_step, _ddim_step_cases(), mistakes, exercise="Exercise 1.3",
                          replaces=[ddim_step, ddim_step_terms, q_sigma_posterior],
                          nan_hint=nan_hint)




# -- Exercises 1.0 and 1.5: thinking with the sampler ------------------------------------------------------------
CONSISTENCY_CHOICES = {"a": "about 1/8 of the points, as by chance", "b": "about half of them",
                       "c": "nearly all of them"}


def check_consistency_prediction(prediction, same_mode_eta0: float, same_mode_eta1: float) -> Verdict:
    """Exercise 1.0 (predict, then run): which fraction of points sampled from the same x_T with 10 and with 1000
    DDIM steps (eta = 0, exact eps*) end in the same mode of the ring? ``same_mode_eta*`` are what the experiment
    cell measured (eta = 0, and eta = 1 against the eta = 0 run)."""
    for name, v in (("same_mode_eta0", same_mode_eta0), ("same_mode_eta1", same_mode_eta1)):
        if not isinstance(v, float) or not 0 <= v <= 1:
            raise CourseworkError(f"consistency (Exercise 1.0): {name}: expected a fraction in [0, 1] from the "
                                  f"experiment cell, got {v!r}; run the experiment cell first")
    outcome = "a" if same_mode_eta0 < 0.3 else "b" if same_mode_eta0 < 0.8 else "c"
    return check_prediction(
        "consistency", "Exercise 1.0", prediction, CONSISTENCY_CHOICES, outcome,
        f"{same_mode_eta0:.0%} with eta = 0 (and {same_mode_eta1:.0%} with eta = 1, chance being 12.5%)",
        "With eta = 0 the sampler integrates an ODE, so x_T alone decides where a point lands; fewer steps follow the "
        "same path more coarsely (the paper's consistency, section 5.2). With eta = 1 fresh noise at every step "
        "re-decides the mode, and x_T says almost nothing.")


SIGMA_HAT_STEPS = (10, 20, 50, 100, 200, 500, 1000)


@functools.lru_cache(maxsize=None)
def sigma_hat_ratios(seed: int = 0) -> dict:
    """{S: MMD of the sigma-hat sampler / MMD of DDIM (eta = 0)} on the ring with the exact eps*, 500 points from
    one x_T, against 1000 fresh ring samples: what Exercise 1.4 asks the learner to measure."""
    from ..data import ring_mixture
    from ..diffusion import ddim_sample
    from ..metrics import mmd_rbf
    from ..schedules import make_alphas_cumprod, timestep_subsequence

    ac, ring = make_alphas_cumprod(), ring_mixture()
    eps = ring.eps_fn(ac)
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(seed))
    reference, _ = ring.sample(1000, torch.Generator().manual_seed(5))
    out = {}
    for S in SIGMA_HAT_STEPS:
        ts = timestep_subsequence(1000, S)
        hat = ddim_sample(eps, x_T, ac, ts, variance="sigma_hat", generator=torch.Generator().manual_seed(2))
        ddim = ddim_sample(eps, x_T, ac, ts, eta=0.0)
        out[S] = float(mmd_rbf(hat, reference) / mmd_rbf(ddim, reference))
    return out


def check_sigma_hat_experiment(first_good_S) -> Verdict:
    """Exercise 1.4 (experiment): the smallest S of ``SIGMA_HAT_STEPS`` at which the sigma-hat sampler's MMD is at
    most twice DDIM's at the same S."""
    name, exercise = "sigma_hat", "Exercise 1.4"
    if first_good_S is None:
        raise NotStarted(f"{name} ({exercise}): first_good_S is still None - run your experiment and set it")
    if first_good_S not in SIGMA_HAT_STEPS:
        raise CourseworkError(f"{name} ({exercise}): first_good_S: expected one of {SIGMA_HAT_STEPS}, got "
                              f"{first_good_S!r}")
    ratios = sigma_hat_ratios()
    truth = next(S for S in SIGMA_HAT_STEPS if ratios[S] <= 2)
    table = ", ".join(f"S={S}: {ratios[S]:.1f}x" for S in SIGMA_HAT_STEPS)
    if first_good_S != truth:
        why = ("at that S the sigma-hat sampler is still more than twice as far from the data as DDIM"
               if first_good_S < truth else "a smaller S already passes: take the first S of the list that does")
        raise CourseworkError(f"{name} ({exercise}): first_good_S = {first_good_S}: {why}. Compare MMD(sigma-hat) "
                              "with MMD(eta = 0) at the same S, for the same x_T, using the cell's reference set.")
    return announce(f"{name}: S = {truth} is right (MMD ratio sigma-hat / DDIM: {table}). sigma-hat adds DDPM's larger "
                    "variance at every step; with few, large steps that noise is never removed. In the paper's Table 1 "
                    "(CIFAR10) sigma-hat is the worst sampler at S = 10 and the best at S = 1000; here, with the "
                    "exact eps*, it stays within 2x of DDIM from S = 50 on.")
