import pytest
import torch

from course_lib.data import generate_shapes
from course_lib.data.distortions import DISTORTIONS, SEVERITY_WEIGHTS, distort, make_2afc


@pytest.fixture(scope="module")
def images():
    return generate_shapes(16, 32, (1, 2), seed=0).images


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_strength_zero_is_identity_and_more_strength_distorts_more(images, kind):
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.allclose(distort(images, kind, 0.0, g()), images, atol=1e-6)
    errs = [((distort(images, kind, s, g()) - images) ** 2).mean().item() for s in (0.25, 0.5, 1.0)]
    assert errs[0] < errs[1] < errs[2] or kind == "shift" and errs[0] <= errs[1] <= errs[2]
    out = distort(images, kind, 1.0, g())
    assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1


def test_bad_arguments(images):
    with pytest.raises(ValueError, match="kind"):
        distort(images, "rain", 0.5)
    with pytest.raises(ValueError, match="strength"):
        distort(images, "blur", 1.5)


def test_2afc_judgments_follow_the_stated_severity_and_are_deterministic():
    a, b = make_2afc(64, seed=3), make_2afc(64, seed=3)
    assert torch.equal(a["p0"], b["p0"]) and torch.equal(a["judge"], b["judge"])
    w = torch.tensor([SEVERITY_WEIGHTS[k] for k in DISTORTIONS])
    sev = w[a["kinds"]] * a["strengths"]
    assert torch.equal(a["judge"], (sev[:, 1] < sev[:, 0]).float())
    assert 0.2 < a["judge"].mean() < 0.8
    # a single distortion type: the weaker one is judged closer
    same = a["kinds"][:, 0] == a["kinds"][:, 1]
    assert torch.equal(a["judge"][same], (a["strengths"][same, 1] < a["strengths"][same, 0]).float())


def test_translate_moves_without_wrapping_and_fills_the_border():
    from course_lib.data.distortions import translate

    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.float32).view(2, 1, 4, 5)
    right = translate(x, 0, 2)
    assert torch.equal(right[..., 2:], x[..., :3]) and bool((right[..., :2] == -1).all())
    up = translate(x, -1, 0, fill=0.5)
    assert torch.equal(up[..., :3, :], x[..., 1:, :]) and bool((up[..., 3, :] == 0.5).all())
    assert torch.equal(translate(x, 0, 0), x)
    assert torch.equal(translate(translate(x, 1, -1), -1, 1)[..., :3, 1:], x[..., :3, 1:])  # back, border lost
    with pytest.raises(ValueError, match=r"dx: expected an int with \|dx\| < 5"):
        translate(x, 0, 5)
    with pytest.raises(ValueError, match="dy: expected an int"):
        translate(x, 0.5, 0)
