"""Checks of notebook 10, where the learner writes the latent diffusion pipeline stage by stage: the latent scale,
L_LDM with caption dropout, the denoiser's forward pass, the training loop, the guided DDIM sampler, the
evaluation's verdict and the timer. Each stage the notebook runs afterwards uses the learner's function once its
check has passed (:func:`yours_or_library`) and the library's until then, so a student copy runs top to bottom
with any stage unfinished."""
from __future__ import annotations

import copy
import statistics

import torch
from torch import nn

from .core import (Case, CourseworkError, NotStarted, Verdict, announce, check_choice, check_function,
                   expect_function)

_PASSED: dict[str, object] = {}  # exercise -> the learner's function(s) whose check passed in this kernel


def _passed(exercise: str, *fns) -> None:
    _PASSED[exercise] = fns


def yours_or_library(exercise: str, yours, library):
    """``yours`` once the check of ``exercise`` passed on that very function in this kernel, else ``library``
    (printing which runs): the notebook's later stages run either way."""
    if _PASSED.get(exercise, ())[:1] == (yours,):
        print(f"Exercise {exercise}: your {getattr(yours, '__name__', 'function')} runs from here on")
        return yours
    print(f"Exercise {exercise} has not passed its check yet: the cells below use course_lib's "
          f"{getattr(library, '__qualname__', library)} instead")
    return library


def _tensor_of(fn):
    """fn's float result as a 0-d tensor (check_function compares tensors)."""
    def g(*args):
        out = fn(*args)
        if isinstance(out, torch.Tensor):
            return out
        if isinstance(out, bool) or not isinstance(out, (int, float)):
            raise CourseworkError(f"expected a number (a Python float), got {type(out).__name__}")
        return torch.tensor(float(out), dtype=torch.float64)
    return g


def _small_autoencoder(seed: int):
    from ..nets import VQVAE, VQVAEConfig

    torch.manual_seed(seed)
    ae = VQVAE(VQVAEConfig(base_channels=8, channel_mults=(1, 2), latent_dim=4, num_codes=16)).eval()
    with torch.no_grad():  # codes spread like trained ones (a fresh codebook sits near 0, where only directions count)
        ae.quantizer.codebook.normal_()
    return ae


# -- Exercise 10.1: the latent scale ------------------------------------------------------------------------------
def check_latent_scale(fn) -> Verdict:
    """Exercise 10.1: ``fn(autoencoder, images)`` = 1 / std of the encoder's output E(x) over every value (before
    quantization): :func:`course_lib.ldm.latent_scale`."""
    from ..ldm import latent_scale

    expect_function(fn, "fn")
    g = torch.Generator().manual_seed(101)
    cases = [Case(label, {"seed": seed, "images": torch.rand(n, 3, 16, 16, generator=g) * 2 - 1})
             for label, seed, n in (("8 images", 0, 8), ("one image", 1, 1), ("32 images, another encoder", 2, 32))]

    def run(f):
        def g_(seed, images):
            with torch.no_grad():
                return _tensor_of(f)(_small_autoencoder(seed), images)
        return g_

    def quantized(a, x):
        return 1 / float(a.quantize(a.encode(x))[0].flatten().std())

    mistakes = {
        "the scale is 1 / std, so that s * E(x) has unit variance: you returned the std itself":
            lambda a, x: float(a.encode(x).flatten().std()),
        "divide by the standard deviation, not the variance": lambda a, x: 1 / float(a.encode(x).flatten().var()),
        "take the encoder's output before quantization (autoencoder.encode), not the quantized codes": quantized,
        "the spread is the standard deviation around the mean, not the mean absolute value":
            lambda a, x: 1 / float(a.encode(x).abs().mean()),
    }
    line = check_function("latent_scale", run(fn), run(latent_scale), cases,
                          {k: run(v) for k, v in mistakes.items()}, exercise="Exercise 10.1",
                          replaces=[latent_scale], learner=fn)
    _passed("10.1", fn)
    return line


# -- Exercise 10.2: L_LDM with caption dropout --------------------------------------------------------------------
class _TinyCaptioned(nn.Module):
    """A stand-in denoiser for the loss check: cheap, deterministic, and it reads x_t, t and the caption."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.Embedding(20, 4)
        self.mix = nn.Conv2d(4, 4, 1)

    def null_condition(self, n, device=None):
        return torch.zeros(n, 11, dtype=torch.long, device=device)

    def forward(self, x, t, tokens):
        cap = self.emb(tokens).mean(1)[:, :, None, None]
        return self.mix(x) + cap + (t.float() / 1000)[:, None, None, None]


def check_ldm_loss(fn) -> Verdict:
    """Exercise 10.2: ``fn(model, z0, alphas_cumprod, tokens, drop_prob, generator)`` = L_LDM, drawing from
    ``generator`` in this order: t ~ U{0..T-1} (B,), eps ~ N(0, I) like z0, then u ~ U[0, 1) (B,) with the caption
    replaced by ``model.null_condition`` where u < drop_prob: :func:`course_lib.diffusion.diffusion_loss`."""
    from ..diffusion import diffusion_loss, q_sample
    from ..schedules import make_alphas_cumprod

    expect_function(fn, "fn")
    ac = make_alphas_cumprod()
    g = torch.Generator().manual_seed(102)
    cases = []
    for label, n, p in (("no dropout", 6, 0.0), ("half the captions dropped", 8, 0.5),
                        ("every caption dropped", 5, 1.0), ("10% dropped, one latent", 1, 0.1)):
        cases.append(Case(label, {"seed": len(cases), "z0": torch.randn(n, 4, 8, 8, generator=g),
                                  "tokens": torch.randint(1, 20, (n, 11), generator=g), "drop_prob": p}))

    def run(f):
        def g_(seed, z0, tokens, drop_prob):
            with torch.no_grad():
                return f(_TinyCaptioned(seed), z0, ac, tokens, drop_prob, torch.Generator().manual_seed(seed + 7))
        return g_

    def wrong(keep="lt", mix="sqrt", target="eps", t_from=0):
        def f(model, z0, a, tokens, p, gen):
            n = z0.shape[0]
            t = torch.randint(t_from, len(a) + t_from, (n,), generator=gen).clamp_max(len(a) - 1)
            eps = torch.randn(z0.shape, generator=gen)
            ab = a[t].reshape(-1, 1, 1, 1)
            z_t = q_sample(z0, ab, eps) if mix == "sqrt" else ab * z0 + (1 - ab) * eps
            u = torch.rand(n, generator=gen)
            drop = {"lt": u < p, "ge": u >= p, "none": torch.zeros(n, dtype=torch.bool)}[keep]
            tok = torch.where(drop[:, None], model.null_condition(n), tokens)
            return ((model(z_t, t, tok) - (eps if target == "eps" else z0)) ** 2).mean()
        return f

    mistakes = {
        "drop the caption where u < drop_prob (drop_prob is the share dropped), not where u >= drop_prob":
            wrong(keep="ge"),
        "no caption was dropped: replace the captions where u < drop_prob by model.null_condition(n)": wrong(keep="none"),
        "z_t = sqrt(alpha_bar) z0 + sqrt(1 - alpha_bar) eps: the square roots are missing": wrong(mix="lin"),
        "the target is the noise eps, not z0": wrong(target="x0"),
        "t is drawn from 0..T-1 (torch.randint(0, T, ...)), not 1..T": wrong(t_from=1),
    }
    line = check_function("ldm_loss", run(fn), run(diffusion_loss), cases, {k: run(v) for k, v in mistakes.items()},
                          exercise="Exercise 10.2", replaces=[diffusion_loss], learner=fn,
                          nan_hint="Check the order of the draws: t, then eps, then u.")
    _passed("10.2", fn)
    return line


# -- Exercise 10.3: the denoiser's forward pass -------------------------------------------------------------------
def _random_mini_unet(seed: int):
    """A small MiniUNet with its zero-initialised output layers made random (else every forward pass is 0)."""
    from ..nets import MiniUNet, MiniUNetConfig

    torch.manual_seed(seed)
    net = MiniUNet(MiniUNetConfig(channels=16, context_dim=16, num_heads=2)).eval()
    with torch.no_grad():
        for m in (net.conv_out, net.attn_in.proj_out, net.attn_mid.proj_out, net.attn_out.proj_out):
            nn.init.normal_(m.weight, std=0.2)
            nn.init.normal_(m.bias, std=0.2)
    return net


def check_denoiser_forward(fn) -> Verdict:
    """Exercise 10.3: ``fn(net, z_t, t, tokens)`` equals :class:`course_lib.nets.MiniUNet`'s forward pass (the
    modules of ``net`` wired as its docstring draws them)."""
    import torch.nn.functional as F

    from ..nets import MiniUNet

    expect_function(fn, "fn")
    g = torch.Generator().manual_seed(103)
    cases = []
    for label, n in (("4 latents", 4), ("one latent", 1), ("6 latents, some empty captions", 6)):
        tokens = torch.randint(1, 20, (n, 11), generator=g)
        tokens[:, 6:] = 0
        if n == 6:
            tokens[::2] = 0
        cases.append(Case(label, {"seed": len(cases), "z_t": torch.randn(n, 4, 8, 8, generator=g),
                                  "t": torch.randint(0, 1000, (n,), generator=g), "tokens": tokens}))

    def run(f):
        def g_(seed, z_t, t, tokens):
            with torch.no_grad():
                return f(_random_mini_unet(seed), z_t, t, tokens)
        return g_

    def wrong(mask=True, skip_after_attn=True, emb=True, up_first=False):
        def f(net, z_t, t, tokens):
            e = net.time_mlp(t) if emb else torch.zeros(z_t.shape[0], 4 * net.config.channels)
            context, m = net.caption_encoder(tokens)
            m = m if mask else None
            h = net.res_in(net.conv_in(z_t), e)
            skip = h if not skip_after_attn else None
            h = net.attn_in(h, context, m)
            skip = h if skip is None else skip
            h = net.attn_mid(net.res_mid(net.down(h), e), context, m)
            h = F.interpolate(net.up(h), scale_factor=2) if up_first else net.up(F.interpolate(h, scale_factor=2))
            h = net.attn_out(net.res_out(torch.cat([h, skip], dim=1), e), context, m)
            return net.conv_out(F.silu(net.norm_out(h)))
        return f

    mistakes = {
        "pass the caption's key mask to every cross-attention: without it the image attends to <pad> tokens":
            wrong(mask=False),
        "the skip is the 8x8 features after attn_in (the whole first level), not after res_in alone":
            wrong(skip_after_attn=False),
        "every ResBlock takes the time embedding net.time_mlp(t)": wrong(emb=False),
        "upsample first (F.interpolate, nearest, x2), then net.up's convolution": wrong(up_first=True),
    }
    line = check_function("denoiser forward", run(fn), run(lambda net, z_t, t, tokens: net(z_t, t, tokens)), cases,
                          {k: run(v) for k, v in mistakes.items()}, exercise="Exercise 10.3",
                          replaces=[(MiniUNet, "forward")], learner=fn)
    _passed("10.3", fn)
    return line


# -- Exercise 10.4: the training loop -----------------------------------------------------------------------------
def _train_case(seed: int, steps: int, decay: float, max_norm: float):
    """A small regression whose gradients are large at the start (so clipping matters) and a loss_at(step) that is
    a pure function of the step."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    w_true = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed + 50)) * 4

    def loss_at(step):
        x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1000 * seed + step))
        return ((model(x) - x @ w_true) ** 2).mean()

    return model, loss_at, (lambda step: 0.05 * min(1.0, (step + 1) / 5))


def check_train_loop(fn) -> Verdict:
    """Exercise 10.4: ``fn(model, loss_at, steps, lr_at, ema_decay, max_grad_norm)`` trains ``model`` with AdamW
    (weight decay 0) and returns the EMA model: :func:`course_lib.train.loops.fit_with_ema` (:func:`~course_lib.train.fit`
    with an :class:`~course_lib.train.EMA`):
    per step set the learning rate lr_at(step), zero the gradients, backpropagate loss_at(step), clip the gradient
    norm to max_grad_norm, step, then update the EMA with decay min(ema_decay, (1 + step) / (10 + step))."""
    from ..train.loops import EMA, fit, fit_with_ema

    expect_function(fn, "fn")
    cases = [Case(label, {"seed": seed, "steps": steps, "decay": decay, "max_norm": norm})
             for label, seed, steps, decay, norm in (("20 steps", 0, 20, 0.9, 1.0),
                                                     ("40 steps, a slow EMA", 1, 40, 0.99, 1.0),
                                                     ("clipping at 0.1", 2, 15, 0.9, 0.1))]

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    def run(f):
        def g_(seed, steps, decay, max_norm):
            model, loss_at, lr_at = _train_case(seed, steps, decay, max_norm)
            ema_model = f(model, loss_at, steps, lr_at, decay, max_norm)
            if not isinstance(ema_model, nn.Module):
                raise CourseworkError(f"train loop (Exercise 10.4): expected the EMA model (an nn.Module) to be "
                                      f"returned, got {type(ema_model).__name__}")
            if ema_model is model:
                raise CourseworkError("train loop (Exercise 10.4): you returned the trained model itself; return "
                                      "its EMA copy (copy.deepcopy(model) before training, then updated every step)")
            return flat(ema_model)
        return g_

    def wrong(clip=True, warm=True, zero=True, lerp_d=False):
        def f(model, loss_at, steps, lr_at, decay, max_norm):
            opt = torch.optim.AdamW(model.parameters(), lr=lr_at(0), weight_decay=0.0)
            ema = copy.deepcopy(model)
            for step in range(steps):
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                if zero:
                    opt.zero_grad()
                loss_at(step).backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                opt.step()
                d = min(decay, (1 + step) / (10 + step)) if warm else decay
                with torch.no_grad():
                    for pe, p in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(p, d if lerp_d else 1 - d)
            return ema
        return f

    mistakes = {
        "clip the gradient norm (torch.nn.utils.clip_grad_norm_) after backward and before opt.step() (clipping "
        "after the step changes nothing)": wrong(clip=False),
        "zero the gradients every step: otherwise backward adds this step's gradient to the last one's":
            wrong(zero=False),
        "the EMA decay warms up: d = min(ema_decay, (1 + step) / (10 + step)), else the EMA stays near the random "
        "initial weights for hundreds of steps": wrong(warm=False),
        "the EMA moves a fraction 1 - d towards the weights (theta_ema = d theta_ema + (1 - d) theta), not d":
            wrong(lerp_d=True),
    }
    line = check_function("train loop", run(fn), run(fit_with_ema), cases, {k: run(v) for k, v in mistakes.items()},
                          atol=1e-5, rtol=1e-4, exercise="Exercise 10.4", replaces=[fit, fit_with_ema, (EMA, "update")],
                          learner=fn)
    _passed("10.4", fn)
    return line


# -- Exercise 10.5: guided DDIM in latent space, decoded ----------------------------------------------------------
def check_sampler(fn) -> Verdict:
    """Exercise 10.5: ``fn(denoiser, autoencoder, scale, tokens, z_T, alphas_cumprod, steps, guidance_scale)`` =
    deterministic DDIM (eta = 0) along timestep_subsequence(T, steps) with classifier-free guidance
    eps_u + w (eps_c - eps_u) (the empty caption's prediction eps_u), then x = D(quantize(z_0 / s)) clamped to
    [-1, 1]: :func:`course_lib.ldm.sample_images` (:meth:`course_lib.ldm.LatentDiffusion.sample`)."""
    from .. import diffusion, guidance
    from ..ldm import LatentDiffusion, sample_images
    from ..schedules import make_alphas_cumprod, timestep_subsequence

    expect_function(fn, "fn")
    ac = make_alphas_cumprod()
    g = torch.Generator().manual_seed(105)
    cases = []
    for label, n, steps, w in (("3 steps, guidance 3", 2, 3, 3.0), ("1 step, guidance 3", 2, 1, 3.0),
                               ("5 steps, no guidance (w = 1)", 3, 5, 1.0), ("4 steps, unconditional (w = 0)", 1, 4, 0.0),
                               ("2 steps, guidance 7.5", 2, 2, 7.5)):
        cases.append(Case(label, {"seed": len(cases), "tokens": torch.randint(1, 20, (n, 11), generator=g),
                                  "z_T": torch.randn(n, 4, 4, 4, generator=g), "steps": steps, "w": w}))

    def run(f):
        def g_(seed, tokens, z_T, steps, w):
            with torch.no_grad():
                return f(_random_mini_unet(seed), _small_autoencoder(seed), 1.7, tokens, z_T, ac, steps, w)
        return g_

    def wrong(ho_w=False, unscale=True, quantize=True, to_x0=True):
        def f(unet, ae, s, tokens, z_T, a, steps, w):
            ts = timestep_subsequence(len(a), steps).tolist()
            z, n = z_T, z_T.shape[0]
            for i, t in enumerate(ts):
                ab = float(a[t])
                ab_prev = float(a[ts[i + 1]]) if i + 1 < len(ts) else (1.0 if to_x0 else float(a[0]))
                tt = torch.full((n,), t)
                e_u, e_c = unet(z, tt, unet.null_condition(n)), unet(z, tt, tokens)
                eps = e_c + w * (e_c - e_u) if ho_w else e_u + w * (e_c - e_u)
                x0 = (z - (1 - ab) ** 0.5 * eps) / ab ** 0.5
                z = ab_prev ** 0.5 * x0 + (1 - ab_prev) ** 0.5 * eps
            z = z / s if unscale else z
            return ae.decode(ae.quantize(z)[0] if quantize else z).clamp(-1, 1)
        return f

    mistakes = {
        "the guided noise is eps_u + w (eps_c - eps_u) (w = 1: the conditional model alone); you used Ho & "
        "Salimans' eps_c + w (eps_c - eps_u)": wrong(ho_w=True),
        "divide the latent by the scale s before decoding: the decoder was trained on unscaled latents":
            wrong(unscale=False),
        "quantize z / s (autoencoder.quantize) before the decoder, as the autoencoder does": wrong(quantize=False),
        "after the last timestep the step goes to alpha_bar = 1 (the predicted z_0), not to alphas_cumprod[0]":
            wrong(to_x0=False),
    }
    library = [diffusion.ddim_sample, diffusion.ddim_step, diffusion.ddim_update, guidance.cfg_eps,
               guidance.cfg_eps_fn, sample_images, (LatentDiffusion, "sample"), (LatentDiffusion, "decode")]
    line = check_function("sampler", run(fn), run(sample_images), cases, {k: run(v) for k, v in mistakes.items()},
                          atol=1e-4, rtol=1e-4, exercise="Exercise 10.5", replaces=library, learner=fn)
    _passed("10.5", fn)
    return line


# -- Exercise 10.6: which model is better, beyond noise? ----------------------------------------------------------
MODEL_VERDICTS = ("shapes_ldm32", "shapes_mini_ldm32", "within noise")
LIVE_VERDICTS = ("shapes_mini_ldm32", "your live run", "within noise")


def _verdict(a: dict, b: dict, names: tuple, lower_is_better: bool) -> str:
    """names[0] or names[1], whichever measured interval lies wholly on the better side of the other's, else
    "within noise" (the intervals overlap)."""
    (alo, ahi), (blo, bhi) = a["interval"], b["interval"]
    if ahi < blo or bhi < alo:
        a_lower = ahi < blo
        return names[0] if a_lower == lower_is_better else names[1]
    return "within noise"


def _shown(name: str, m: dict) -> str:
    return f"{name} {m['value']:.3g} [{m['interval'][0]:.3g}, {m['interval'][1]:.3g}]"


def check_evaluation_experiment(fd_verdict, caption_verdict, live_verdict, results: dict, live: dict) -> Verdict:
    """Exercise 10.6 (experiment): from the stored evaluation (``results``: shapes_ldm32 and shapes_mini_ldm32 on 256
    held-out captions, 95% intervals) and the learner's evaluation of their live run (``live``: {"fd": {"value",
    "interval"}} at guidance 3): which model has the better FD at guidance 3, which follows all caption words more
    often without guidance (w = 1), and whether the shipped MiniUNet's FD beats the live run's - or is each
    difference within noise (the intervals overlap)?"""
    name, exercise = "which model is better", "Exercise 10.6"
    if fd_verdict is None or caption_verdict is None or live_verdict is None:
        raise NotStarted(f"{name} ({exercise}): set fd_verdict, caption_verdict and live_verdict from the intervals")
    check_choice(name, exercise, "fd_verdict", fd_verdict, MODEL_VERDICTS)
    check_choice(name, exercise, "caption_verdict", caption_verdict, MODEL_VERDICTS)
    check_choice(name, exercise, "live_verdict", live_verdict, LIVE_VERDICTS)
    if not (isinstance(live, dict) and isinstance(live.get("fd"), dict) and "interval" in live["fd"]):
        raise CourseworkError(f"{name} ({exercise}): live: expected your run's evaluation {{'fd': {{'value': ..., "
                              f"'interval': [low, high]}}}} from the cell above, got {live!r}")
    big, mini = results["shapes_ldm32"], results["shapes_mini_ldm32"]
    rows = (("fd_verdict", fd_verdict, big["guidance_3"]["fd"], mini["guidance_3"]["fd"], MODEL_VERDICTS, True,
             "FD at guidance 3, lower is better"),
            ("caption_verdict", caption_verdict, big["guidance_1"]["caption_all"], mini["guidance_1"]["caption_all"],
             MODEL_VERDICTS, False, "all words followed without guidance, higher is better"),
            ("live_verdict", live_verdict, mini["guidance_3"]["fd"], live["fd"], LIVE_VERDICTS, True,
             "FD at guidance 3, lower is better"))
    said = []
    for arg, got, a, b, names, lower, what in rows:
        want = _verdict(a, b, names, lower)
        shown = f"{_shown(names[0], a)}, {_shown(names[1], b)}"
        if got != want:
            raise CourseworkError(f"{name} ({exercise}): {arg} = {got!r}: {what}: {shown}; a model is better only "
                                  "where its interval lies wholly beyond the other's, else the difference is within "
                                  "noise")
        said.append(f"{what.split(',')[0]}: {want} ({shown})")
    return announce(f"{name}: right - " + "; ".join(said) + ".")


# -- Exercise 10.7: a fair timer ----------------------------------------------------------------------------------
class _FakeClock:
    """A clock whose readings are given: each call returns the next one (the check knows every duration)."""

    def __init__(self, readings):
        self.readings, self.calls = list(readings), 0

    def __call__(self):
        if self.calls >= len(self.readings):
            raise CourseworkError("timer (Exercise 10.7): you read the clock more often than twice per timed call "
                                  "(read it right before and right after fn())")
        self.calls += 1
        return self.readings[self.calls - 1]


def check_median_time(fn) -> Verdict:
    """Exercise 10.7: ``fn(f, repeats, warmup, clock)`` calls f ``warmup`` times untimed, then ``repeats`` times,
    each between two readings of ``clock``, and returns the median duration: :func:`course_lib.timing.median_wall_time`.
    Checked with a clock whose readings are known."""
    from ..timing import median_wall_time

    expect_function(fn, "fn")
    cases = []
    for label, durations, warmup in (("5 runs, one slow (a busy machine)", [0.2, 0.21, 3.0, 0.19, 0.2], 1),
                                     ("4 runs: the median of an even count", [1.0, 2.0, 4.0, 8.0], 2),
                                     ("no warm-up", [0.5, 0.1, 0.3], 0)):
        readings, now = [], 100.0
        for d in durations:
            readings += [now, now + d]
            now += d + 0.05  # time passes between runs too
        cases.append(Case(label, {"readings": readings, "repeats": len(durations), "warmup": warmup}))

    def run(f):
        def g_(readings, repeats, warmup):
            calls = []
            out = f(lambda: calls.append(1), repeats, warmup, _FakeClock(readings))
            if isinstance(out, bool) or not isinstance(out, (int, float)):
                raise CourseworkError(f"timer (Exercise 10.7): expected the median in seconds (a float), got "
                                      f"{type(out).__name__}")
            if len(calls) != repeats + warmup:
                raise CourseworkError(f"timer (Exercise 10.7): fn was called {len(calls)} times; expected warmup + "
                                      f"repeats = {warmup} + {repeats}")
            return torch.tensor(float(out), dtype=torch.float64)
        return g_

    def durations(readings):
        return [b - a for a, b in zip(readings[::2], readings[1::2])]

    mistakes = {
        "return the median of the timed runs, not the mean: one slow run would move the mean":
            lambda readings, repeats, warmup: torch.tensor(statistics.mean(durations(readings)), dtype=torch.float64),
        "return the median, not the fastest run (the minimum hides how long a run usually takes)":
            lambda readings, repeats, warmup: torch.tensor(min(durations(readings)), dtype=torch.float64),
        "the result is in seconds, as the clock gives it, not milliseconds":
            lambda readings, repeats, warmup: torch.tensor(1000 * statistics.median(durations(readings)),
                                                           dtype=torch.float64),
    }
    line = check_function("timer", run(fn), run(median_wall_time), cases, mistakes, atol=1e-9, rtol=1e-9,
                          exercise="Exercise 10.7", replaces=[median_wall_time], learner=fn)
    _passed("10.7", fn)
    return line
