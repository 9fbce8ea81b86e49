"""nets/unet.py: the class-conditional UNet (the CaptionUNet is tested with notebook 06, tests/test_ldm.py)."""
import pytest
import torch

from course_lib.nets import UNet, UNetConfig


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
