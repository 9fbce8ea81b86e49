"""The shipped models do their jobs (small, fast versions of the manifest's measurements)."""
import pytest
import torch

from course_lib import checkpoints
from course_lib.data import generate_shapes, ring_mixture
from course_lib.diffusion import ddim_sample, q_sample
from course_lib.metrics import frechet_distance, mixture_nll, shapes_features
from course_lib.schedules import make_alphas_cumprod, timestep_subsequence
from course_lib.train import corrupt

AC = make_alphas_cumprod()


@pytest.fixture(scope="module")
def clf():
    return checkpoints.load("shapes_classifier16")


def test_ddpm_samples_show_the_requested_shapes(clf):
    ddpm = checkpoints.load("shapes_ddpm16")
    labels = torch.arange(4).repeat(8)
    g = torch.Generator().manual_seed(0)
    x = ddim_sample(lambda x, t: ddpm(x, t, labels), torch.randn(32, 3, 16, 16, generator=g), AC,
                    timestep_subsequence(1000, 20), generator=g)
    assert x.min() > -1.5 and x.max() < 1.5
    with torch.no_grad():
        heads = clf.attribute_logits(x.clamp(-1, 1))
    assert (heads[0].argmax(1) == labels).float().mean() >= 0.9
    assert (heads[-1].argmax(1) == 0).float().mean() >= 0.8  # the classifier sees clean images, not noise


def test_unconditional_sampling_covers_every_class(clf):
    ddpm = checkpoints.load("shapes_ddpm16")
    g = torch.Generator().manual_seed(1)
    x = ddim_sample(lambda x, t: ddpm(x, t), torch.randn(64, 3, 16, 16, generator=g), AC,
                    timestep_subsequence(1000, 20), generator=g)
    with torch.no_grad():
        counts = torch.bincount(clf(x.clamp(-1, 1)).argmax(1), minlength=4)
    assert counts.min() >= 5, counts


def test_metric_features_register_noise_and_blur(clf):
    real = generate_shapes(1000, 16, 1, seed=10).images
    held = generate_shapes(256, 16, 1, seed=11).images
    g = torch.Generator().manual_seed(0)
    f_real = shapes_features(real, clf)
    floor = frechet_distance(f_real, shapes_features(held, clf))
    noisy = frechet_distance(f_real, shapes_features(held + 0.15 * torch.randn(held.shape, generator=g), clf))
    blurred = frechet_distance(f_real, shapes_features(corrupt(held, g, p=1.0)[0], clf))
    assert noisy > 3 * floor and blurred > 3 * floor, (floor, noisy, blurred)


def test_noise_aware_classifier_knows_less_as_noise_grows():
    noisy_clf = checkpoints.load("shapes_noisy_classifier16")
    b = generate_shapes(500, 16, 1, seed=12)
    g = torch.Generator().manual_seed(0)
    acc = {}
    for t in (0, 200, 999):
        tt = torch.full((500,), t)
        x_t = q_sample(b.images, AC[tt], torch.randn(b.images.shape, generator=g))
        with torch.no_grad():
            acc[t] = (noisy_clf(x_t, tt).argmax(1) == b.labels).float().mean().item()
    assert acc[0] > 0.97 and acc[200] > 0.6 and acc[999] < 0.4, acc


def test_ring_mlp_samples_match_the_ring():
    mlp = checkpoints.load("ring8_mlp")
    ring = ring_mixture()
    g = torch.Generator().manual_seed(0)
    x = ddim_sample(lambda x, t: mlp(x, t), torch.randn(2000, 2, generator=g), AC,
                    timestep_subsequence(1000, 50), generator=g)
    assert mixture_nll(x, ring) < 1.0  # the exact entropy is 0.31 nats; pure noise scores > 100
    assert torch.allclose(x.norm(dim=1).median(), torch.tensor(2.0), atol=0.1)
