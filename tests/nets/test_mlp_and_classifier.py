"""nets/mlp.py and nets/classifier.py."""
import pytest
import torch

from course_lib.nets import Classifier, ClassifierConfig, MLPConfig, MLPDenoiser


def test_mlp_and_classifiers():
    mlp = MLPDenoiser(MLPConfig())
    assert mlp(torch.randn(10, 2), torch.arange(10)).shape == (10, 2)
    with pytest.raises(ValueError, match="x"):
        mlp(torch.randn(10, 3), 0)
    noisy = Classifier(ClassifierConfig(time_conditional=True))
    assert noisy(torch.randn(4, 3, 16, 16), torch.arange(4)).shape == (4, 4)
    with pytest.raises(ValueError, match="t"):
        noisy(torch.randn(4, 3, 16, 16))
    clean = Classifier(ClassifierConfig(time_conditional=False, attribute_heads=(6, 3)))
    heads = clean.attribute_logits(torch.randn(4, 3, 32, 32))
    assert [h.shape[1] for h in heads] == [4, 6, 3]
    assert clean.features(torch.randn(4, 3, 16, 16)).shape == (4, clean.feature_dim)


@pytest.mark.parametrize("num_classes", [None, 4])
def test_mlp_shared_timestep_is_embedded_once_with_the_same_result(num_classes):
    """A batch with one timestep (how samplers call it) takes the embed-once path; it must equal the per-point
    computation, and a batch of mixed timesteps must not take it."""
    torch.manual_seed(0)
    mlp = MLPDenoiser(MLPConfig(num_classes=num_classes)).eval()
    x = torch.randn(64, 2)
    y = torch.randint(0, 4, (64,)) if num_classes else None
    with torch.no_grad():
        shared = mlp(x, torch.full((64,), 321), y)
        one_by_one = torch.cat([mlp(x[i:i + 1], torch.tensor([321]), None if y is None else y[i:i + 1])
                                for i in range(64)])
        assert shared.shape == (64, 2)
        torch.testing.assert_close(shared, one_by_one, rtol=1e-5, atol=1e-6)
        mixed_t = torch.arange(64) * 15
        mixed = mlp(x, mixed_t, y)
        torch.testing.assert_close(mixed[5:6], mlp(x[5:6], mixed_t[5:6], None if y is None else y[5:6]),
                                   rtol=1e-5, atol=1e-6)
        assert not torch.allclose(mixed, shared)
