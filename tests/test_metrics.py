import math

import pytest
import torch

from course_lib.data import ring_mixture
from course_lib.metrics import (edge_sharpness, frechet_distance, frechet_distance_from_stats, mixture_nll, mmd_rbf,
                                precision_recall, psnr, sliced_wasserstein, ssim)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_sliced_wasserstein_of_a_shift_is_its_length_over_sqrt_d():
    x = torch.randn(5000, 2, generator=gen(0))
    c = torch.tensor([0.6, -0.8])  # |c| = 1; E[(c.theta)^2] = |c|^2 / D
    sw = sliced_wasserstein(x, x + c, num_projections=4000)
    assert sw.item() == pytest.approx(1 / math.sqrt(2), rel=0.03)
    assert sliced_wasserstein(x, x).item() == pytest.approx(0.0, abs=1e-7)
    assert sliced_wasserstein(x, x[:1000]).item() < 0.1  # different sizes compare by quantiles
    assert sliced_wasserstein(x, x + c).item() == sliced_wasserstein(x, x + c).item()  # seeded


def test_mmd_zero_for_same_sample_and_grows_with_shift():
    x = torch.randn(800, 2, generator=gen(1))
    y = torch.randn(800, 2, generator=gen(2))
    assert mmd_rbf(x, x).item() == pytest.approx(0.0, abs=1e-6)
    small, big = mmd_rbf(x, y + 0.2).item(), mmd_rbf(x, y + 1.0).item()
    assert mmd_rbf(x, y).item() < small < big


def test_mixture_nll_is_the_entropy_on_its_own_samples():
    mix = ring_mixture(8, 2.0, 0.1)
    x, _ = mix.sample(20000, gen(3))
    # well-separated modes: H = log 8 + (D/2) log(2 pi e s^2)
    h = math.log(8) + math.log(2 * math.pi * math.e * 0.01)
    assert mixture_nll(x, mix).item() == pytest.approx(h, abs=0.02)
    assert mixture_nll(x * 1.2, mix).item() > h + 1


def test_frechet_distance_closed_form():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((s1.sqrt() - s2.sqrt()) ** 2).sum()  # diagonal covariances
    assert frechet_distance_from_stats(mu1, torch.diag(s1), mu2, torch.diag(s2)).item() == pytest.approx(
        expected.item(), rel=1e-6)
    # non-diagonal: rotation invariance
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen(4), dtype=torch.float64))
    fd_rot = frechet_distance_from_stats(q @ mu1.double(), q @ torch.diag(s1).double() @ q.T,
                                         q @ mu2.double(), q @ torch.diag(s2).double() @ q.T)
    assert fd_rot.item() == pytest.approx(expected.item(), rel=1e-5)


def test_frechet_distance_from_samples():
    a = torch.randn(20000, 4, generator=gen(5))
    b = torch.randn(20000, 4, generator=gen(6)) * 2 + 1
    assert frechet_distance(a, b).item() == pytest.approx(4 * 1 + 4 * 1, rel=0.03)
    with pytest.raises(ValueError, match="feats_b"):
        frechet_distance(a, b[:, :3])


def test_precision_recall():
    real = torch.randn(1000, 2, generator=gen(7))
    same = torch.randn(1000, 2, generator=gen(8))
    p, r = precision_recall(real, same)
    assert p > 0.9 and r > 0.9
    collapsed = torch.randn(1000, 2, generator=gen(9)) * 0.1  # high fidelity, low coverage
    p, r = precision_recall(real, collapsed)
    assert p > 0.95 and r < 0.3
    far = torch.randn(1000, 2, generator=gen(10)) + 10  # neither
    assert precision_recall(real, far) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k"):
        precision_recall(real[:3], same[:3], k=3)


def test_psnr_known_value():
    x = torch.zeros(2, 3, 8, 8)
    y = x + 0.1  # mse 0.01, range 2: 10 log10(4 / 0.01) = 26.02 dB
    assert torch.allclose(psnr(x, y), torch.full((2,), 10 * math.log10(400)))
    with pytest.raises(ValueError, match="y"):
        psnr(x, y[:1])


def test_ssim_properties():
    x = torch.rand(4, 3, 16, 16, generator=gen(11)) * 2 - 1
    assert torch.allclose(ssim(x, x), torch.ones(4))
    noisy = (x + 0.1 * torch.randn(x.shape, generator=gen(12)))
    noisier = (x + 0.5 * torch.randn(x.shape, generator=gen(12)))
    assert bool((ssim(x, noisy) > ssim(x, noisier)).all())
    assert torch.allclose(ssim(x, noisy), ssim(noisy, x))
    # constant images: SSIM reduces to the luminance term (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)
    a, b = torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), -0.4)
    c1 = 0.02**2
    assert ssim(a, b).item() == pytest.approx((2 * 0.2 * -0.4 + c1) / (0.04 + 0.16 + c1), rel=1e-5)
    with pytest.raises(ValueError, match="window_size"):
        ssim(torch.zeros(1, 3, 5, 5), torch.zeros(1, 3, 5, 5))


def test_mmd_to_reference_equals_mmd_rbf():
    from course_lib.metrics import MMDToReference
    ref = torch.randn(300, 2, generator=gen(20))
    m = MMDToReference(ref)
    for s in (21, 22):
        x = torch.randn(200, 2, generator=gen(s)) + 0.3
        assert m(x).item() == pytest.approx(mmd_rbf(x, ref).item(), rel=1e-5)


def test_edge_sharpness():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(edge_sharpness(x, x), torch.ones(2))
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    assert (edge_sharpness(blurred, x) < 0.8).all()
    assert torch.allclose(edge_sharpness(2 * x, x), torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="x_hat"):
        edge_sharpness(x[:, :, :8], x)


# -- uncertainty ----------------------------------------------------------------------------------------------------
def test_bootstrap_interval_of_a_mean_is_the_normal_interval():
    from course_lib.metrics import bootstrap_interval

    x = torch.randn(2000, generator=torch.Generator().manual_seed(0)) * 2.0 + 1.0
    iv = bootstrap_interval(lambda a: a.mean(), x, num_resamples=400)
    half = 1.96 * x.std().item() / 2000 ** 0.5  # the textbook 95% interval of a mean
    assert iv.value == pytest.approx(x.mean().item())
    assert iv.low < iv.value < iv.high
    assert (iv.high - iv.low) / 2 == pytest.approx(half, rel=0.15)
    assert bootstrap_interval(lambda a: a.mean(), x, num_resamples=400) == iv, "seeded: the same interval again"
    assert bootstrap_interval(lambda a: a.mean(), x, num_resamples=400, seed=1) != iv


def test_bootstrap_interval_resamples_each_sample_and_narrows_with_more_data():
    from course_lib.metrics import bootstrap_interval, frechet_distance

    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1024, 4, generator=g), torch.randn(1024, 4, generator=g) + 0.5
    wide = bootstrap_interval(frechet_distance, a[:128], b[:128], num_resamples=100)
    narrow = bootstrap_interval(frechet_distance, a, b, num_resamples=100)
    assert wide.low <= wide.value <= wide.high and narrow.low <= narrow.value <= narrow.high
    assert narrow.high - narrow.low < 0.6 * (wide.high - wide.low)  # width falls like 1/sqrt(n): 1/sqrt(8) = 0.35
    assert narrow.low < 4 * 0.25 < narrow.high * 1.5  # FD of a mean shift of 0.5 in 4 dims is 1.0


def test_interval_helpers_and_bad_input():
    from course_lib.metrics import Interval, bootstrap_interval, seed_range

    r = seed_range([26.5, 27.0, 26.8])
    assert r == Interval(pytest.approx(26.766666, abs=1e-5), 26.5, 27.0)
    assert r.overlaps(Interval(27.0, 26.9, 27.3)) and not r.overlaps(Interval(28.0, 27.5, 28.5))
    assert str(Interval(1.4812, 1.31, 1.66)) == "1.48 [1.31, 1.66]"
    x = torch.randn(10)
    with pytest.raises(ValueError, match="confidence: expected a float in \\(0, 1\\)"):
        bootstrap_interval(torch.mean, x, confidence=95)
    with pytest.raises(ValueError, match="num_resamples"):
        bootstrap_interval(torch.mean, x, num_resamples=0)
    with pytest.raises(ValueError, match="samples: expected at least one tensor"):
        bootstrap_interval(torch.mean)
    with pytest.raises(ValueError, match="samples\\[0\\]: expected at least 2 rows"):
        bootstrap_interval(torch.mean, torch.ones(1, 3))
    with pytest.raises(ValueError, match="values: expected at least two finite numbers"):
        seed_range([1.0])
    with pytest.raises(ValueError, match="values: expected at least two finite numbers"):
        seed_range([1.0, float("nan")])


def test_recentred_fd_interval_holds_its_value_and_covers_fresh_draws():
    """A resample repeats rows and that alone raises FD: the plain percentile interval of one draw of real images
    misses its own value; recentred, it holds the value and is at least as wide as the spread of fresh draws."""
    from course_lib import checkpoints
    from course_lib.data import generate_shapes
    from course_lib.metrics import bootstrap_interval, shapes_features

    clf = checkpoints.load("shapes_classifier16")
    real = shapes_features(generate_shapes(1000, 16, 1, seed=30_000_000).images, clf)
    draws = [shapes_features(generate_shapes(256, 16, 1, seed=30_000_001 + s).images, clf) for s in range(8)]
    fresh = torch.tensor([float(frechet_distance(real, f)) for f in draws])
    stat = lambda f: frechet_distance(real, f)  # noqa: E731
    plain = bootstrap_interval(stat, draws[0], num_resamples=100)
    recentred = bootstrap_interval(stat, draws[0], num_resamples=100, recentre=True)
    assert plain.low > plain.value, "the bias the recentring removes"
    assert recentred.low < recentred.value < recentred.high
    assert recentred.high - recentred.low == pytest.approx(plain.high - plain.low)
    assert recentred.high - recentred.low > 2 * 1.96 * float(fresh.std())  # conservative, never narrower
    # a distance cannot be negative: near 0 the recentred interval's lower end is cut at the bound
    same = shapes_features(generate_shapes(256, 16, 1, seed=30_000_000).images[:256], clf)
    near_zero = bootstrap_interval(lambda f: frechet_distance(same, f), same, num_resamples=50, recentre=True)
    assert near_zero.low < 0 <= bootstrap_interval(lambda f: frechet_distance(same, f), same, num_resamples=50,
                                                   recentre=True, lower_bound=0.0).low


def test_image_quality_intervals_and_the_independent_ruler():
    from course_lib import checkpoints
    from course_lib.data import generate_shapes
    from course_lib.metrics import image_quality, real_vs_real

    clf, noisy = checkpoints.load("shapes_classifier16"), checkpoints.load("shapes_noisy_classifier16")
    real = generate_shapes(400, 16, 1, seed=30_000_100).images
    batch = generate_shapes(96, 16, 1, seed=30_000_101)
    blurred = torch.nn.functional.avg_pool2d(batch.images, 3, 1, 1)
    q = image_quality(blurred, real, clf, batch.labels, intervals=True, independent_classifier=noisy,
                      num_resamples=40)
    plain = image_quality(blurred, real, clf, batch.labels)
    assert {k: q[k] for k in plain} == plain, "intervals add keys, never change the numbers"
    for key in ("fd", "precision", "recall", "accuracy", "fd_independent", "precision_independent",
                "recall_independent"):
        low, high = q[f"{key}_interval"]
        assert low <= q[key] <= high or key.startswith("recall"), key  # recall's resample drops repeats
        assert low < high, key
    floor = real_vs_real(real, generate_shapes(96, 16, 1, seed=30_000_102).images, clf,
                         independent_classifier=noisy, num_resamples=40)
    assert floor["fd"] < q["fd_interval"][0], "blur is far outside the real-vs-real floor"
    assert floor["fd_independent"] < q["fd_independent_interval"][0], "in the independent features too"


def test_reconstruction_report_intervals_are_paired_and_leave_the_numbers_alone():
    from course_lib.data import generate_shapes
    from course_lib.metrics import reconstruction_report

    x = generate_shapes(64, 32, 1, seed=30_000_200).images
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    plain = reconstruction_report(blurred, x)
    rep = reconstruction_report(blurred, x, intervals=True, num_resamples=40)
    assert {k: rep[k] for k in plain} == plain
    for key in plain:
        low, high = rep[f"{key}_interval"]
        assert low <= rep[key] <= high and low < high, key
    self_pair = reconstruction_report(x, x, intervals=True, num_resamples=20)
    assert self_pair["psnr_db"] > 100 and self_pair["fd_noisy_classifier_interval"][1] < 1e-6


def test_count_flops_is_twice_the_multiply_adds_forward_and_counts_backward():
    from course_lib.metrics import count_flops

    lin = torch.nn.Linear(7, 5)
    x = torch.randn(3, 7)
    flops, y = count_flops(lin, x)
    assert flops == 2 * 3 * 7 * 5 and y.shape == (3, 5)
    # backward of y = x W^T with only W trainable: dW = dy^T x, one more matmul of the same size
    flops_fb, _ = count_flops(lambda: lin(x).sum().backward())
    assert flops_fb == 2 * flops
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    assert count_flops(conv, torch.randn(1, 2, 6, 6))[0] == 2 * (6 * 6) * 4 * (2 * 3 * 3)
    with pytest.raises(TypeError, match="fn: expected a callable, got Tensor"):
        count_flops(x)


def test_caption_following_intervals_hold_each_rate():
    from course_lib import checkpoints
    from course_lib.data import generate_shapes
    from course_lib.metrics import caption_following

    clf = checkpoints.load("shapes_classifier16")
    ref = generate_shapes(64, 32, 1, seed=5)
    real = caption_following(ref.images, ref.attributes, clf, intervals=True)
    wrong = generate_shapes(64, 32, 1, seed=6).images  # other images for the same captions: about chance
    other = caption_following(wrong, ref.attributes, clf, intervals=True)
    for rates in (real, other):
        for k in ("shape", "colour", "position", "shape_and_colour", "all"):
            low, high = rates[f"{k}_interval"]
            assert 0.0 <= low <= rates[k] <= high <= 1.0, k
    assert real["all"] > 0.9 and other["all"] < 0.2
    assert other["all_interval"][1] < real["all_interval"][0], "matched and unmatched captions are told apart"
    assert caption_following(ref.images, ref.attributes, clf) == {k: v for k, v in real.items() if "interval" not in k}
