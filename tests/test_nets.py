import pytest
import torch

from course_lib.device import default_device
from course_lib.nets import (Classifier, ClassifierConfig, MLPConfig, MLPDenoiser, UNet, UNetConfig, build_model,
                             timestep_embedding)


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 10, 999]), 32)
    assert e.shape == (3, 32)
    assert torch.allclose(e[0, :16], torch.ones(16)) and torch.allclose(e[0, 16:], torch.zeros(16))
    assert not torch.allclose(e[1], e[2])
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(torch.tensor([1]), 7)


@pytest.mark.parametrize("size", [16, 32])
def test_unet_shapes_and_conditioning(size):
    torch.manual_seed(0)
    net = UNet(UNetConfig(num_classes=4, base_channels=16, num_res_blocks=1))
    for p in net.conv_out.parameters():  # zero-initialised output: make it non-trivial for the test
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(3, 3, size, size), torch.tensor([0, 500, 999])
    out_null = net(x, t)
    assert out_null.shape == x.shape
    assert torch.allclose(out_null, net(x, t, torch.full((3,), 4)))  # y=None is the null label
    assert not torch.allclose(out_null, net(x, t, torch.tensor([0, 1, 2])))
    assert torch.allclose(net(x, 7), net(x, torch.full((3,), 7)))  # scalar t broadcasts


def test_unet_with_cross_attention_context():
    net = UNet(UNetConfig(base_channels=16, num_res_blocks=1, context_dim=24))
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    x = torch.randn(2, 3, 16, 16)
    c1, c2 = torch.randn(2, 5, 24), torch.randn(2, 5, 24)
    assert not torch.allclose(net(x, 3, context=c1), net(x, 3, context=c2))


def test_unet_bad_input():
    net = UNet(UNetConfig(num_classes=4, base_channels=16, num_res_blocks=1))
    with pytest.raises(ValueError, match="x"):
        net(torch.randn(2, 1, 16, 16), 0)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(2, 3, 15, 15), 0)
    with pytest.raises(ValueError, match="y"):
        net(torch.randn(2, 3, 16, 16), 0, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="t"):
        net(torch.randn(2, 3, 16, 16), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="y"):
        UNet(UNetConfig(base_channels=16))(torch.randn(2, 3, 16, 16), 0, torch.tensor([0, 1]))


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


def test_build_model_round_trips_config():
    from dataclasses import asdict
    import json
    net = UNet(UNetConfig(num_classes=4, base_channels=16))
    cfg = json.loads(json.dumps(asdict(net.config)))
    rebuilt = build_model("UNet", cfg)
    assert rebuilt.config == net.config
    with pytest.raises(ValueError, match="kind"):
        build_model("ResNet", {})


def test_default_device(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            default_device("cuda")


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
