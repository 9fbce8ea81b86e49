"""The notebook-10 denoiser: shapes, the zero start, the empty caption, the caption's reach, bad input."""
import pytest
import torch

from course_lib.coursework.pipeline import _random_mini_unet
from course_lib.nets import MiniUNet, MiniUNetConfig, build_model


def test_fresh_model_predicts_zero_and_none_is_the_empty_caption():
    torch.manual_seed(0)
    net = MiniUNet(MiniUNetConfig())
    z = torch.randn(3, 4, 8, 8)
    t = torch.tensor([0, 500, 999])
    tokens = torch.randint(1, 20, (3, 11))
    out = net(z, t, tokens)
    assert out.shape == z.shape and torch.equal(out, torch.zeros_like(z))  # conv_out starts at zero
    net = _random_mini_unet(1)
    assert torch.equal(net(z, t), net(z, t, net.null_condition(3)))
    assert not torch.allclose(net(z, t, tokens), net(z, t))  # the caption reaches the output
    assert not torch.allclose(net(z, t, tokens), net(z, t.flip(0), tokens))  # and so does t


def test_rebuilt_from_its_plain_config_and_its_size():
    net = build_model("MiniUNet", {"in_channels": 4, "channels": 32, "context_dim": 32})
    assert isinstance(net, MiniUNet) and net.config.channels == 32
    assert sum(p.numel() for p in net.parameters()) == 321732  # the recipe's model (README: 322 k)


def test_bad_inputs_are_named():
    net = _random_mini_unet(0)
    with pytest.raises(ValueError, match=r"z_t: expected a tensor of shape \(N, 4, H, W\)"):
        net(torch.randn(2, 3, 8, 8), 10)
    with pytest.raises(ValueError, match="z_t: expected H and W divisible by 2"):
        net(torch.randn(2, 4, 7, 7), 10)
    with pytest.raises(ValueError, match=r"tokens: expected one caption per latent \(2\)"):
        net(torch.randn(2, 4, 8, 8), 10, torch.ones(3, 11, dtype=torch.long))
    with pytest.raises(ValueError, match=r"t: expected timesteps in \[0, 999\]"):
        net(torch.randn(2, 4, 8, 8), 1000)
