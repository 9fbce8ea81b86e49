"""Notebook 10's checks: own versions pass, each known mistake gets its hint, the library is refused, and the
notebook's later stages switch to the learner's function only once its check passed."""
import copy
import statistics

import pytest
import torch
import torch.nn.functional as F

from course_lib.coursework import (CourseworkError, LibraryCalled, NotStarted, check_denoiser_forward,
                                   check_evaluation_experiment, check_latent_scale, check_ldm_loss, check_median_time,
                                   check_sampler, check_train_loop, yours_or_library)
from course_lib.coursework import pipeline


def own_latent_scale(autoencoder, images):
    with torch.no_grad():
        z = autoencoder.encode(images).double()
    return float(((z - z.mean()) ** 2).sum().div(z.numel() - 1).rsqrt())


def own_ldm_loss(model, z0, alphas_cumprod, tokens, drop_prob, generator, *, keep="lt", sqrt=True, target="eps"):
    n = z0.shape[0]
    t = torch.randint(0, len(alphas_cumprod), (n,), generator=generator)
    eps = torch.randn(z0.shape, generator=generator)
    a = alphas_cumprod[t][:, None, None, None]
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps if sqrt else a * z0 + (1 - a) * eps
    u = torch.rand(n, generator=generator)
    drop = u < drop_prob if keep == "lt" else u >= drop_prob
    tokens = torch.where(drop[:, None], model.null_condition(n), tokens)
    return F.mse_loss(model(z_t, t, tokens), eps if target == "eps" else z0)


def own_forward(net, z_t, t, tokens, *, mask=True, up_first=False):
    emb = net.time_mlp(t)
    context, m = net.caption_encoder(tokens)
    m = m if mask else None
    skip = net.attn_in(net.res_in(net.conv_in(z_t), emb), context, m)
    h = net.attn_mid(net.res_mid(net.down(skip), emb), context, m)
    h = F.interpolate(net.up(h), scale_factor=2) if up_first else net.up(F.interpolate(h, scale_factor=2.0))
    h = net.attn_out(net.res_out(torch.cat((h, skip), 1), emb), context, m)
    return net.conv_out(F.silu(net.norm_out(h)))


def own_train(model, loss_at, steps, lr_at, ema_decay, max_grad_norm, *, clip=True, warm=True):
    opt = torch.optim.Adam(model.parameters(), lr=lr_at(0))  # Adam = AdamW without weight decay
    ema = copy.deepcopy(model)
    for step in range(steps):
        opt.param_groups[0]["lr"] = lr_at(step)
        opt.zero_grad()
        loss_at(step).backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        opt.step()
        d = min(ema_decay, (1 + step) / (10 + step)) if warm else ema_decay
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_((1 - d) * p)
    return ema


def own_sample(denoiser, autoencoder, scale, tokens, z_T, alphas_cumprod, steps, guidance_scale, *, unscale=True):
    T = len(alphas_cumprod)
    ts = [int(T / steps * i) for i in range(steps)][::-1]
    z = z_T
    for i, t in enumerate(ts):
        a = alphas_cumprod[t]
        a_prev = alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
        tt = torch.full((len(z),), t)
        e_u = denoiser(z, tt, torch.zeros_like(tokens))
        e_c = denoiser(z, tt, tokens)
        eps = e_u + guidance_scale * (e_c - e_u)
        z0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
        z = a_prev.sqrt() * z0 + (1 - a_prev).sqrt() * eps
    zq = autoencoder.quantize(z / scale if unscale else z)[0]
    return autoencoder.decode(zq).clamp(-1, 1)


def own_median(fn, repeats, warmup, clock, *, mean=False):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.mean(times) if mean else statistics.median(times)


def test_own_versions_pass_with_one_line_each(capsys):
    assert check_latent_scale(own_latent_scale) == "latent_scale: 3/3 cases match"
    assert check_ldm_loss(own_ldm_loss) == "ldm_loss: 4/4 cases match"
    assert check_denoiser_forward(own_forward) == "denoiser forward: 3/3 cases match"
    assert check_train_loop(own_train) == "train loop: 3/3 cases match"
    assert check_sampler(own_sample) == "sampler: 5/5 cases match"
    assert check_median_time(own_median) == "timer: 3/3 cases match"
    assert capsys.readouterr().out.count("cases match") == 6


@pytest.mark.parametrize("label", ["std", "quantized", "keep", "sqrt", "target", "mask", "up", "clip", "warm",
                                   "unscale", "mean"])
def test_each_known_mistake_gets_its_hint(label):
    from functools import partial as p

    def std_not_inverse(a, x):
        return 1 / own_latent_scale(a, x)

    def of_quantized(a, x):
        with torch.no_grad():
            return 1 / float(a.quantize(a.encode(x))[0].std())

    wrong = {"std": (check_latent_scale, std_not_inverse, "you returned the std itself"),
             "quantized": (check_latent_scale, of_quantized, "before quantization"),
             "keep": (check_ldm_loss, p(own_ldm_loss, keep="ge"), "not where u >= drop_prob"),
             "sqrt": (check_ldm_loss, p(own_ldm_loss, sqrt=False), "the square roots are missing"),
             "target": (check_ldm_loss, p(own_ldm_loss, target="x0"), "the target is the noise eps"),
             "mask": (check_denoiser_forward, p(own_forward, mask=False), "key mask"),
             "up": (check_denoiser_forward, p(own_forward, up_first=True), "upsample first"),
             "clip": (check_train_loop, p(own_train, clip=False), "clip the gradient norm"),
             "warm": (check_train_loop, p(own_train, warm=False), "the EMA decay warms up"),
             "unscale": (check_sampler, p(own_sample, unscale=False), "divide the latent by the scale s"),
             "mean": (check_median_time, p(own_median, mean=True), "not the mean")}
    check, fn, hint = wrong[label]
    with pytest.raises(CourseworkError, match=hint):
        check(fn)


def test_not_started_and_library_calls_are_named():
    def stub(*args):
        raise NotImplementedError("Exercise 10.2: write this")

    with pytest.raises(NotStarted, match=r"ldm_loss \(Exercise 10.2\): not implemented yet"):
        check_ldm_loss(stub)
    from course_lib.ldm import sample_images
    from course_lib.nets import MiniUNet
    from course_lib.train.loops import fit_with_ema

    with pytest.raises(LibraryCalled, match="Exercise 10.3 asks you to write this yourself"):
        check_denoiser_forward(lambda net, z_t, t, tokens: MiniUNet.forward(net, z_t, t, tokens))
    with pytest.raises(LibraryCalled, match="Exercise 10.4 asks you to write this yourself"):
        check_train_loop(lambda *args: fit_with_ema(*args))
    with pytest.raises(LibraryCalled, match="Exercise 10.5 asks you to write this yourself"):
        check_sampler(lambda *args: sample_images(*args))
    with pytest.raises(CourseworkError, match="return its EMA copy"):
        check_train_loop(lambda model, loss_at, steps, lr_at, d, n: model)
    with pytest.raises(TypeError, match="fn: expected your function"):
        check_latent_scale(3.3)


def test_a_timer_must_call_fn_warmup_plus_repeats_times_and_return_seconds():
    def skips_warmup(fn, repeats, warmup, clock):
        return own_median(fn, repeats, 0, clock)

    with pytest.raises(CourseworkError, match="fn was called 5 times; expected warmup \\+ repeats = 1 \\+ 5"):
        check_median_time(skips_warmup)
    with pytest.raises(CourseworkError, match="not milliseconds"):
        check_median_time(lambda fn, r, w, clock: 1000 * own_median(fn, r, w, clock))


def test_later_stages_use_the_learners_function_only_after_its_check_passed(capsys):
    def mine(autoencoder, images):
        return own_latent_scale(autoencoder, images)

    library = object()
    pipeline._PASSED.pop("10.1", None)
    assert yours_or_library("10.1", mine, library) is library
    assert "has not passed its check yet" in capsys.readouterr().out
    check_latent_scale(mine)
    assert yours_or_library("10.1", mine, library) is mine
    assert yours_or_library("10.1", own_latent_scale, library) is library  # another function than the checked one
    pipeline._PASSED.pop("10.1", None)


def _m(value, low, high):
    return {"value": value, "interval": [low, high]}


RESULTS = {"shapes_ldm32": {"guidance_3": {"fd": _m(1.5, 1.2, 1.9)}, "guidance_1": {"caption_all": _m(0.9, 0.86, 0.94)}},
           "shapes_mini_ldm32": {"guidance_3": {"fd": _m(4.0, 3.1, 4.8)},
                                 "guidance_1": {"caption_all": _m(0.88, 0.84, 0.92)}}}
LIVE = {"fd": _m(60.0, 55.0, 66.0)}


def test_evaluation_verdict_follows_the_intervals():
    line = check_evaluation_experiment("shapes_ldm32", "within noise", "shapes_mini_ldm32", RESULTS, LIVE)
    assert "FD at guidance 3: shapes_ldm32" in line and "all words followed without guidance: within noise" in line
    with pytest.raises(CourseworkError, match="caption_verdict = 'shapes_ldm32': all words followed without guidance"):
        check_evaluation_experiment("shapes_ldm32", "shapes_ldm32", "shapes_mini_ldm32", RESULTS, LIVE)
    with pytest.raises(CourseworkError, match="live_verdict = 'within noise'"):
        check_evaluation_experiment("shapes_ldm32", "within noise", "within noise", RESULTS, LIVE)
    with pytest.raises(CourseworkError, match="fd_verdict: expected one of"):
        check_evaluation_experiment("ldm32", "within noise", "within noise", RESULTS, LIVE)
    with pytest.raises(CourseworkError, match="live: expected your run's evaluation"):
        check_evaluation_experiment("shapes_ldm32", "within noise", "shapes_mini_ldm32", RESULTS, {"fd": 3.0})
    with pytest.raises(NotStarted):
        check_evaluation_experiment(None, None, None, RESULTS, LIVE)
    flipped = copy.deepcopy(RESULTS)
    flipped["shapes_mini_ldm32"]["guidance_3"]["fd"] = _m(1.05, 1.0, 1.1)
    assert "FD at guidance 3: shapes_mini_ldm32" in check_evaluation_experiment(
        "shapes_mini_ldm32", "within noise", "within noise", flipped, {"fd": _m(1.2, 1.0, 1.4)})


def test_median_wall_time_is_the_median_after_the_warmup():
    from course_lib.timing import median_wall_time

    readings = iter([0.0, 5.0, 10.0, 11.0, 20.0, 22.0, 30.0, 39.0])
    calls = []
    assert median_wall_time(lambda: calls.append(1), repeats=4, warmup=1, clock=lambda: next(readings)) == 3.5
    assert len(calls) == 5
    with pytest.raises(ValueError, match="warmup: expected a number of untimed calls >= 0, got -1"):
        median_wall_time(lambda: None, warmup=-1)
    with pytest.raises(TypeError, match="fn: expected a function"):
        median_wall_time(3)


def test_sample_images_is_the_pipelines_sampler():
    from course_lib.ldm import LatentDiffusion, sample_images
    from course_lib.schedules import make_alphas_cumprod

    unet, ae = pipeline._random_mini_unet(0), pipeline._small_autoencoder(0)
    ac = make_alphas_cumprod()
    tokens = torch.randint(1, 20, (2, 11), generator=torch.Generator().manual_seed(0))
    z_T = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    pipe = LatentDiffusion(unet, ae, 1.3, ac, image_size=16)
    assert torch.equal(sample_images(unet, ae, 1.3, tokens, z_T, ac, 3, 2.0), pipe.sample(tokens, 3, 2.0, z_T=z_T))
    assert sample_images(unet, ae, 1.3, tokens, z_T, ac, 3, 2.0).shape == (2, 3, 16, 16)
