"""course_lib.imagen: static and dynamic thresholding (against a direct per-sample quantile and against diffusers),
the samplers' threshold option, noise-conditioning augmentation and the three guidance conventions."""
import pytest
import torch

from course_lib.data import ring_mixture
from course_lib.diffusion import ddim_sample
from course_lib.guidance import cfg_eps
from course_lib.imagen import (GUIDANCE_CONVENTIONS, augmentation_alpha_bar, dynamic_threshold, guidance_scale,
                               imagen_guided_eps, noise_augment, static_threshold, threshold_fn)
from course_lib.schedules import linear_betas, timestep_subsequence


def gen(seed):
    return torch.Generator().manual_seed(seed)


def _x0(shape, scale, seed=0):
    return scale * torch.randn(shape, generator=gen(seed))


@pytest.mark.parametrize("shape", [(4, 3, 16, 16), (2, 4, 8, 8), (3, 1, 5, 7)])
@pytest.mark.parametrize("p", [0.9, 0.995, 1.0])
def test_dynamic_threshold_is_the_per_sample_quantile_rule(shape, p):
    x0 = _x0(shape, 2.5)
    x0[0] *= 0.2  # one sample inside [-1, 1]: left alone
    got = dynamic_threshold(x0, p)
    for i in range(shape[0]):
        s = max(torch.quantile(x0[i].abs().flatten(), p).item(), 1.0)
        assert torch.allclose(got[i], x0[i].clamp(-s, s) / s, atol=1e-6)
    assert got.abs().max() <= 1.0 + 1e-6
    assert torch.equal(got[0], x0[0]) or x0[0].abs().max() > 1


@pytest.mark.parametrize("shape", [(4, 3, 16, 16), (2, 4, 8, 8)])
@pytest.mark.parametrize("p", [0.9, 0.995])
def test_dynamic_threshold_agrees_with_diffusers(shape, p):
    from diffusers import DDPMScheduler

    # diffusers caps s at sample_max_value (1.0 by default, which would make it static): lifted to follow the paper
    ref = DDPMScheduler(thresholding=True, dynamic_thresholding_ratio=p, sample_max_value=1e6)
    x0 = _x0(shape, 3.0, seed=1)
    assert torch.allclose(dynamic_threshold(x0, p), ref._threshold_sample(x0.clone()), atol=1e-6)


def test_inside_the_data_range_nothing_changes_and_static_equals_dynamic_at_the_maximum():
    x0 = torch.rand(3, 3, 8, 8, generator=gen(2)) * 2 - 1
    assert torch.equal(dynamic_threshold(x0), x0)
    assert torch.equal(static_threshold(x0), x0) and torch.equal(dynamic_threshold(x0, 1.0), static_threshold(x0))
    big = _x0((2, 3, 8, 8), 4.0, seed=3)
    assert torch.equal(static_threshold(big), big.clamp(-1, 1))
    # at p = 1 dynamic divides by the largest |x0|: the sample shrinks, keeping its proportions, not flattened at 1
    d = dynamic_threshold(big, 1.0)
    assert torch.allclose(d * big.abs().flatten(1).amax(1).view(-1, 1, 1, 1), big, atol=1e-5)
    assert (d.abs() >= 1 - 1e-6).float().mean() < 0.01 < (static_threshold(big).abs() == 1).float().mean()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="percentile"):
        dynamic_threshold(torch.randn(2, 3), 0.0)
    with pytest.raises(TypeError, match="percentile"):
        dynamic_threshold(torch.randn(2, 3), "0.99")
    with pytest.raises(ValueError, match="x0"):
        dynamic_threshold(torch.randn(5), 0.99)
    with pytest.raises(ValueError, match="threshold"):
        threshold_fn("soft")
    with pytest.raises(ValueError, match="aug_level"):
        noise_augment(torch.zeros(2, 3, 4, 4), 1.5)
    with pytest.raises(ValueError, match="aug_level"):
        noise_augment(torch.zeros(2, 3, 4, 4), torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="convention"):
        guidance_scale(2.0, "glide")


def test_the_sampler_thresholds_the_predicted_x0_at_every_step():
    ac = torch.cumprod(1 - linear_betas(1000), 0)
    mix = ring_mixture(8, 2.0, 0.1)  # points at radius 2: outside [-1, 1], so thresholding changes the result
    eps_fn, ts = mix.eps_fn(ac), timestep_subsequence(1000, 20)
    x_T = torch.randn(256, 2, generator=gen(4))
    plain = ddim_sample(eps_fn, x_T, ac, ts)
    static = ddim_sample(eps_fn, x_T, ac, ts, threshold="static")
    assert torch.equal(static, ddim_sample(eps_fn, x_T, ac, ts, clip_x0=1.0))  # static = the clamp
    dynamic = ddim_sample(eps_fn, x_T, ac, ts, threshold="dynamic", percentile=0.995)
    assert plain.abs().max() > 1.5 and static.abs().max() <= 1 + 1e-6 and dynamic.abs().max() <= 1 + 1e-6
    assert not torch.allclose(static, dynamic)
    assert torch.equal(ddim_sample(eps_fn, x_T, ac, ts, threshold=None), plain)
    # watching the sampler: every step's predicted x0 before and after, the samples unchanged
    seen = []
    watched = ddim_sample(eps_fn, x_T, ac, ts, threshold="dynamic", percentile=0.995,
                          on_x0=lambda i, raw, used: seen.append((i, raw.clone(), used.clone())))
    assert torch.equal(watched, dynamic) and [i for i, _, _ in seen] == list(range(20))
    assert all(torch.equal(used, dynamic_threshold(raw, 0.995)) for _, raw, used in seen)
    assert not torch.equal(seen[-1][1], seen[-1][2])  # the last prediction still leaves [-1, 1] before it
    seen.clear()
    unwatched = ddim_sample(eps_fn, x_T, ac, ts, on_x0=lambda i, raw, used: seen.append(torch.equal(raw, used)))
    assert all(seen) and len(seen) == 20 and torch.allclose(unwatched, plain, atol=1e-5)
    with pytest.raises(TypeError, match="on_x0"):
        ddim_sample(eps_fn, x_T, ac, ts, on_x0="histogram")


def test_thresholded_ddim_agrees_with_diffusers_ddim_scheduler():
    """diffusers' DDIMScheduler with thresholding and the clipped model output (eps re-derived from the thresholded
    x0, as our sampler does): the same steps to 1e-5."""
    from diffusers import DDIMScheduler

    betas = linear_betas(1000).float()
    ref = DDIMScheduler(num_train_timesteps=1000, trained_betas=betas.numpy(), clip_sample=False,
                        set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0, thresholding=True,
                        dynamic_thresholding_ratio=0.9, sample_max_value=1e6)
    ref.set_timesteps(10)
    ts = timestep_subsequence(1000, 10)
    ac = ref.alphas_cumprod
    eps_fn = ring_mixture(8, 2.0, 0.1).eps_fn(ac)
    x_T = torch.randn(64, 1, 1, 2, generator=gen(5))  # diffusers thresholds over dims 1.. of a 4-D sample
    ours = ddim_sample(lambda x, t: eps_fn(x.view(-1, 2), t).view(x.shape), x_T, ac, ts, threshold="dynamic",
                       percentile=0.9)
    x = x_T
    for t in ts.tolist():
        eps = eps_fn(x.view(-1, 2), torch.full((64,), t)).view(x.shape)
        x = ref.step(eps, t, x, eta=0.0, use_clipped_model_output=True).prev_sample
    assert torch.allclose(ours, x, atol=1e-5), (ours - x).abs().max()


def test_v_prediction_round_trips_and_its_ddim_agrees_with_diffusers():
    """v = sqrt(a) eps - sqrt(1 - a) x0 (Salimans & Ho): eps_from_v inverts it; a v-predictor's samples through
    eps_fn_from_v equal diffusers' DDIMScheduler(prediction_type="v_prediction") on the same model."""
    from diffusers import DDIMScheduler

    from course_lib.diffusion import diffusion_loss, eps_fn_from_v, eps_from_v, q_sample, v_target

    ac = torch.cumprod(1 - linear_betas(1000), 0)
    x0, eps = torch.randn(6, 3, 4, 4, generator=gen(20)), torch.randn(6, 3, 4, 4, generator=gen(21))
    a = ac[torch.tensor([0, 10, 300, 600, 900, 999])].view(-1, 1, 1, 1)
    x_t, v = q_sample(x0, a, eps), v_target(x0, eps, a)
    assert torch.allclose(eps_from_v(x_t, v, a), eps, atol=1e-5)
    assert torch.allclose(v[-1], -x0[-1], atol=0.03)  # at the last step v is -x0 up to sqrt(4e-5) eps
    # the loss: the same draws as the eps loss, the v target
    model = lambda x, t: 0.5 * x  # noqa: E731
    g_eps, g_v = gen(22), gen(22)
    got = diffusion_loss(model, x0, ac, generator=g_v, prediction="v")
    g = gen(22)
    t = torch.randint(0, 1000, (6,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    at = ac[t].view(-1, 1, 1, 1)
    expected = ((0.5 * q_sample(x0, at, noise) - v_target(x0, noise, at)) ** 2).mean()
    assert torch.allclose(got, expected, atol=1e-6) and not torch.allclose(
        got, diffusion_loss(model, x0, ac, generator=g_eps))
    with pytest.raises(ValueError, match="prediction"):
        diffusion_loss(model, x0, ac, prediction="x0")
    # sampling: a v-predictor from the ring's exact eps, through our sampler and through diffusers'
    ref = DDIMScheduler(num_train_timesteps=1000, trained_betas=linear_betas(1000).float().numpy(),
                        clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0,
                        prediction_type="v_prediction")
    ref.set_timesteps(10)
    acf = ref.alphas_cumprod
    eps_fn = ring_mixture(8, 2.0, 0.1).eps_fn(acf)

    def v_fn(x, t):  # v from the exact eps: x0 = (x - sqrt(1-a) eps)/sqrt(a), v = sqrt(a) eps - sqrt(1-a) x0
        a_t = acf[t].view(-1, 1)
        e = eps_fn(x, t)
        return v_target((x - (1 - a_t).sqrt() * e) / a_t.sqrt(), e, a_t)
    x_T = torch.randn(64, 2, generator=gen(23))
    ours = ddim_sample(eps_fn_from_v(v_fn, acf), x_T, acf, timestep_subsequence(1000, 10))
    x = x_T
    for step in ref.timesteps.tolist():
        x = ref.step(v_fn(x, torch.full((64,), step)), step, x, eta=0.0).prev_sample
    assert torch.allclose(ours, x, atol=1e-4), (ours - x).abs().max()
    assert torch.allclose(ours, ddim_sample(eps_fn, x_T, acf, timestep_subsequence(1000, 10)), atol=1e-3)


def test_noise_augment_is_the_forward_process_at_the_level():
    x = torch.rand(4, 3, 16, 16, generator=gen(6)) * 2 - 1
    same, levels = noise_augment(x, 0.0, generator=gen(7))
    assert torch.equal(same, x) and torch.equal(levels, torch.zeros(4))
    noise = torch.randn(x.shape, generator=gen(8))
    u = torch.tensor([0.0, 0.1, 0.3, 1.0])
    out, levels = noise_augment(x, u, noise=noise)
    a = augmentation_alpha_bar(u).float().view(4, 1, 1, 1)
    assert torch.allclose(out, a.sqrt() * x + (1 - a).sqrt() * noise, atol=1e-6) and torch.equal(levels, u)
    assert torch.allclose(out[3], noise[3], atol=1e-6)  # level 1: pure noise
    assert augmentation_alpha_bar(0.0) == 1 and float(augmentation_alpha_bar(1.0)) < 1e-30
    # the signal kept falls monotonically with the level
    ab = augmentation_alpha_bar(torch.linspace(0, 1, 11))
    assert bool((ab[1:] < ab[:-1]).all())


def test_the_three_guidance_conventions_are_one_function():
    u, c = torch.randn(3, 5, generator=gen(9)), torch.randn(3, 5, generator=gen(10))
    for w in (0.0, 1.0, 1.35, 4.0, 16.0):
        assert torch.allclose(imagen_guided_eps(u, c, w), w * c + (1 - w) * u, atol=1e-6)
        assert torch.allclose(cfg_eps(u, c, guidance_scale(w, "ho_salimans")), (1 + w) * c - w * u, atol=1e-6)
        assert guidance_scale(w, "course") == w
    # Imagen's w = 1: no guidance, the conditional model (u + 1 (c - u): c up to one rounding)
    assert torch.allclose(imagen_guided_eps(u, c, 1.0), c, atol=1e-6)
    assert guidance_scale(0.0, "ho_salimans") == guidance_scale(1.0, "imagen") == 1.0
    assert set(GUIDANCE_CONVENTIONS) == {"course", "imagen", "ho_salimans"}


def _tiny(**kw):
    from course_lib.nets import CaptionUNet, CaptionUNetConfig

    torch.manual_seed(0)
    unet = CaptionUNet(CaptionUNetConfig(base_channels=16, context_dim=16, **kw)).eval()
    torch.nn.init.normal_(unet.conv_out.weight, std=0.05)
    return unet


def test_the_cascade_has_the_shapes_of_its_stages_and_the_sr_model_reads_the_level():
    from course_lib.data import generate_shapes
    from course_lib.imagen import ImagenCascade, LowResConditioned, upsample

    base, sr = _tiny(in_channels=3), _tiny(in_channels=6, out_channels=3, level_embedding=True)
    cascade = ImagenCascade(base, sr)
    tokens = generate_shapes(3, 16, 1, seed=1).tokens
    low, high = cascade.sample(tokens, aug_level=0.2, steps=3, w=2.0, threshold="dynamic", generator=gen(2))
    assert low.shape == (3, 3, 16, 16) and high.shape == (3, 3, 32, 32)
    assert low.abs().max() <= 1 and high.abs().max() <= 1
    up = upsample(low, 32)
    assert up.shape == (3, 3, 32, 32)
    x_t, t = torch.randn(3, 3, 32, 32, generator=gen(3)), torch.tensor([10, 500, 990])
    with torch.no_grad():
        a = LowResConditioned(sr, up, torch.zeros(3))(x_t, t, tokens)
        b = LowResConditioned(sr, up, torch.full((3,), 0.9))(x_t, t, tokens)
        doubled = LowResConditioned(sr, up, torch.zeros(3))(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                                            torch.cat([tokens, tokens]))
    assert a.shape == (3, 3, 32, 32) and not torch.allclose(a, b)  # the level is an input
    assert torch.allclose(doubled[:3], a, atol=1e-6) and torch.allclose(doubled[3:], a, atol=1e-6)
    with pytest.raises(ValueError, match="level"):
        sr(torch.cat([x_t, up], 1), t, tokens)  # a level-conditioned UNet without a level
    with pytest.raises(ValueError, match="level"):
        base(torch.randn(3, 3, 16, 16), t, tokens, level=torch.zeros(3))
    with pytest.raises(ValueError, match="super-resolution"):
        LowResConditioned(base, up, torch.zeros(3))


def test_a_caption_encoder_learns_the_attributes_from_captions_alone_and_frozen_it_takes_no_gradient():
    from course_lib.data import generate_shapes
    from course_lib.nets import CaptionAttributes, CaptionAttributesConfig, CaptionUNet, CaptionUNetConfig

    torch.manual_seed(0)
    model = CaptionAttributes(CaptionAttributesConfig(dim=32, layers=1))
    held = generate_shapes(500, 8, (1, 2), seed=123_456)
    target = CaptionAttributes.targets(held.attributes)
    assert int(target["shape"][held.num_objects == 1, 1].unique()) == 4  # a missing second object is "absent"
    before = model.accuracy(held.tokens, held.attributes)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for step in range(150):
        b = generate_shapes(128, 8, (1, 2), seed=step)
        opt.zero_grad()
        model.loss(b.tokens, b.attributes).backward()
        opt.step()
    after = model.accuracy(held.tokens, held.attributes)
    assert before < 0.01 and after > 0.3, (before, after)
    # frozen inside a denoiser: the UNet trains, the encoder does not
    unet = CaptionUNet(CaptionUNetConfig(in_channels=3, base_channels=16, context_dim=32, caption_layers=1))
    unet.caption_encoder.load_state_dict(model.encoder.state_dict())
    unet.caption_encoder.requires_grad_(False)
    torch.nn.init.normal_(unet.conv_out.weight, std=0.05)
    out = unet(torch.randn(4, 3, 16, 16), torch.tensor([1, 2, 3, 4]), held.tokens[:4])
    out.square().mean().backward()
    assert all(p.grad is None for p in unet.caption_encoder.parameters())
    assert unet.conv_out.weight.grad is not None


def test_the_sr_condition_is_the_upsampled_low_res_image_augmented_and_downsample_pools():
    from course_lib.data import generate_shapes
    from course_lib.imagen import downsample, sr_condition, upsample

    b32, b16 = generate_shapes(8, 32, 1, seed=4), generate_shapes(8, 16, 1, seed=4)
    low = downsample(b32.images, 2)
    assert low.shape == (8, 3, 16, 16)
    # 2 x 2 average pooling, by hand
    assert torch.allclose(low, b32.images.view(8, 3, 16, 2, 16, 2).mean(dim=(3, 5)), atol=1e-6)
    # the same scene as rendering at 16x16 (anti-aliasing differs at the edges only)
    assert (low - b16.images).abs().mean() < 0.01
    clean, levels = sr_condition(low, 32, 0.0, gen(1))
    assert torch.equal(clean, upsample(low, 32)) and torch.equal(levels, torch.zeros(8))
    u = torch.linspace(0, 1, 8)
    noisy, levels = sr_condition(low, 32, u, gen(2))
    expected, _ = noise_augment(upsample(low, 32), u, generator=gen(2))
    assert torch.equal(noisy, expected) and torch.equal(levels, u)
    for bad in (0, 3, 2.0, True):
        with pytest.raises(ValueError, match="factor"):
            downsample(b32.images, bad)


def test_saturation_counts_the_objects_extreme_values_not_the_background():
    from course_lib.imagen import saturation_fraction

    x = torch.full((3, 3, 4, 4), -1.0)        # black background everywhere
    x[0, :, 0, 0] = torch.tensor([1.0, -1.0, -1.0])  # one pure red pixel: 3 of its 3 values at the ends
    x[1, :, :2, :2] = torch.tensor([0.5, 0.2, 0.1]).view(3, 1, 1)  # four unsaturated pixels
    x[1, 0, 0, 0] = 0.99                                              # one value at the end among 12
    frac = saturation_fraction(x)
    assert torch.allclose(frac, torch.tensor([1.0, 1 / 12, 0.0], dtype=torch.float64))
    # the real shapes sit far below a clipped-to-the-extremes image
    from course_lib.data import generate_shapes

    real = saturation_fraction(generate_shapes(256, 16, 1, seed=5).images).mean()
    assert 0.0 < real < 0.1
    assert saturation_fraction(generate_shapes(256, 16, 1, seed=5).images.mul(4).clamp(-1, 1)).mean() > 0.5


def test_gradient_energy_is_the_summed_absolute_differences():
    from course_lib.metrics import edge_sharpness, gradient_energy

    x = torch.zeros(2, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0  # one bright pixel: 4 unit steps
    assert torch.equal(gradient_energy(x), torch.tensor([4.0, 0.0]))
    y = torch.randn(4, 3, 8, 8, generator=gen(3))
    assert torch.allclose(edge_sharpness(2 * y, y), torch.full((4,), 2.0))
    with pytest.raises(ValueError, match="images"):
        gradient_energy(torch.zeros(3, 8, 8))


class _RecordingSR(torch.nn.Module):
    """A stand-in super-resolution UNet that records what the training step feeds it and predicts 0."""

    def __init__(self):
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(in_channels=6, out_channels=3, level_embedding=True, prediction="eps")
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def null_condition(self, n, device=None):
        return torch.zeros(n, 11, dtype=torch.long)

    def forward(self, x, t, tokens, level=None):
        self.seen.append((x.detach().clone(), level.clone()))
        return self.w * x[:, :3]


@pytest.mark.parametrize("augment", [False, True])
def test_the_sr_training_step_conditions_on_the_real_images_pooled_view_augmented_at_random_levels(augment):
    from dataclasses import replace

    from course_lib.imagen import downsample, upsample
    from course_lib.recipes import RECIPES
    from course_lib.schedules import make_alphas_cumprod
    from course_lib.train.tasks import _ldm_batch, _sr_step_loss

    recipe = replace(RECIPES["shapes_sr32" if augment else "shapes_sr32_noaug"], batch_size=6)
    assert recipe.noise_augmentation is augment
    model = _RecordingSR()
    loss = _sr_step_loss(recipe, model, None, 1.0, make_alphas_cumprod(), gen(0), "cpu", 5)
    assert torch.isfinite(loss)
    (x, level), = model.seen
    x0 = _ldm_batch(recipe, 5).images
    clean_low = upsample(downsample(x0, 2), 32)
    assert x.shape == (6, 6, 32, 32)
    if augment:  # u ~ U[0, 1] per image, and the condition is the forward process at u
        assert level.unique().numel() == 6 and bool(((level > 0) & (level < 1)).all())
        assert not torch.allclose(x[:, 3:], clean_low)
    else:
        assert torch.equal(level, torch.zeros(6)) and torch.equal(x[:, 3:], clean_low)
