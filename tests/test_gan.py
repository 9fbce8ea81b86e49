"""course_lib.gan: losses by hand, the adaptive weight against both gradient norms, the patch map's size, and a
training step that touches only the parameters it should."""
import math

import pytest
import torch
from torch import nn

from course_lib.gan import (PatchDiscriminator, VQGANLossConfig, VQGANTrainer, adaptive_weight, generator_loss,
                            hinge_d_loss, vanilla_d_loss)
from course_lib.nets import VQVAE, VQVAEConfig


def test_hinge_d_loss_by_hand():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: max(0, 1-2)=0, max(0, 1-0.5)=0.5 -> 0.25; fake: max(0, 1-2)=0, max(0, 1+0)=1 -> 0.5
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.5))
    assert hinge_d_loss(torch.tensor([1.5]), torch.tensor([-1.2])).item() == 0.0  # beyond the margins: free


def test_vanilla_d_loss_is_the_notes_log_form():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(4, 1, 3, 3, generator=g), torch.randn(4, 1, 3, 3, generator=g)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -0.5 * (torch.log(d_real).mean() + torch.log(1 - d_fake).mean())
    assert vanilla_d_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    assert vanilla_d_loss(torch.zeros(1), torch.zeros(1)).item() == pytest.approx(math.log(2))
    # stable where sigmoid saturates
    assert torch.isfinite(vanilla_d_loss(torch.tensor([-200.0]), torch.tensor([200.0])))


def test_generator_losses():
    fake = torch.tensor([1.0, -3.0])
    assert generator_loss(fake).item() == pytest.approx(1.0)  # -mean
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(
        (-torch.log(torch.sigmoid(fake))).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="kind"):
        generator_loss(fake, "wasserstein")


def _tiny_decoder_losses():
    torch.manual_seed(0)
    dec = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6))
    z, target = torch.randn(5, 4), torch.randn(5, 6)
    critic = nn.Linear(6, 1)
    out = dec(z)
    return dec, (out - target).abs().mean(), -critic(out).mean()


def test_adaptive_weight_equals_ratio_of_gradient_norms():
    dec, rec, gan = _tiny_decoder_losses()
    last = dec[-1].weight
    # the direct computation: two separate backward passes
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
    lam, rn, gn = adaptive_weight(rec, gan, last, delta=1e-6, return_norms=True)
    assert rn.item() == pytest.approx(g_rec.norm().item(), rel=1e-6)
    assert gn.item() == pytest.approx(g_gan.norm().item(), rel=1e-6)
    assert lam.item() == pytest.approx((g_rec.norm() / (g_gan.norm() + 1e-6)).item(), rel=1e-6)
    assert not lam.requires_grad
    # delta pulls lambda down; the clamp caps it
    assert adaptive_weight(rec, gan, last, delta=10.0).item() < lam.item()
    assert adaptive_weight(rec, gan, last, max_weight=1e-3).item() == pytest.approx(1e-3)
    # the graphs survive: the caller can still backpropagate both losses
    (rec + lam * gan).backward()
    assert last.grad is not None


def test_adaptive_weight_scale_invariance():
    # scaling the GAN loss by c scales its gradient by c, so lambda * L_GAN is unchanged (delta aside)
    dec, rec, gan = _tiny_decoder_losses()
    lam1 = adaptive_weight(rec, gan, dec[-1].weight, delta=0.0)
    lam10 = adaptive_weight(rec, 10 * gan, dec[-1].weight, delta=0.0)
    assert (lam10 * 10).item() == pytest.approx(lam1.item(), rel=1e-5)


def test_adaptive_weight_bad_input():
    dec, rec, gan = _tiny_decoder_losses()
    with pytest.raises(ValueError, match="gan_loss"):
        adaptive_weight(rec, gan.detach(), dec[-1].weight)
    with pytest.raises(ValueError, match="rec_loss"):
        adaptive_weight(torch.ones(3, requires_grad=True), gan, dec[-1].weight)
    with pytest.raises(ValueError, match="delta"):
        adaptive_weight(rec, gan, dec[-1].weight, delta=-1.0)


@pytest.mark.parametrize("size", [16, 32, 48, 64])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_patch_discriminator_output_shape(size, num_layers):
    d = PatchDiscriminator(channels=16, num_layers=num_layers)
    expected = d.output_size(size, size)
    if min(expected) < 1:
        with pytest.raises(ValueError, match="too small"):
            d(torch.zeros(2, 3, size, size))
        return
    out = d(torch.zeros(2, 3, size, size))
    assert out.shape == (2, 1, *expected)
    assert expected[0] == size // 2 ** num_layers - 2


def test_patch_discriminator_bad_input():
    d = PatchDiscriminator(channels=16)
    with pytest.raises(ValueError, match="channels"):
        d(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="too small"):
        d(torch.zeros(1, 3, 8, 8))


def _trainer(disc_start=2, gan=True):
    torch.manual_seed(0)
    ae = VQVAE(VQVAEConfig(base_channels=8, channel_mults=(1, 2), latent_dim=4, num_codes=16))
    lp = nn.Conv2d(3, 4, 3)  # a stand-in perceptual net: its weights must never move
    perceptual = lambda a, b: (lp(a) - lp(b)).pow(2).mean(dim=(1, 2, 3))  # noqa: E731
    cfg = VQGANLossConfig(disc_start=disc_start, gan=gan)
    return VQGANTrainer(ae, cfg, PatchDiscriminator(channels=8, num_layers=1) if gan else None, perceptual), lp


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


def test_training_step_phases_touch_only_intended_parameters():
    tr, lp = _trainer(disc_start=2)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    lp_before = _snapshot(lp)
    # warm-up: lambda = 0, the discriminator is not updated
    ae0, d0 = _snapshot(tr.ae), _snapshot(tr.disc)
    logs = tr.step(x)
    assert logs["lambda_"] == 0.0 and "d_loss" not in logs
    assert _changed(d0, tr.disc) == set()
    assert _changed(ae0, tr.ae)  # the autoencoder learned
    tr.step(x)
    assert tr.disc_active()
    # the autoencoder half changes no discriminator weight and leaves no gradient on it
    d1 = _snapshot(tr.disc)
    x_hat, logs = tr.autoencoder_step(x)
    assert logs["lambda_"] > 0 and _changed(d1, tr.disc) == set()
    assert all(p.grad is None for p in tr.disc.parameters())
    # the discriminator half changes no autoencoder weight
    ae1 = _snapshot(tr.ae)
    tr.discriminator_step(x, x_hat)
    assert _changed(ae1, tr.ae) == set() and _changed(d1, tr.disc)
    assert _changed(lp_before, lp) == set()


def test_trainer_config_errors():
    ae = VQVAE(VQVAEConfig(base_channels=8, channel_mults=(1, 2), latent_dim=4, num_codes=16))
    with pytest.raises(ValueError, match="discriminator"):
        VQGANTrainer(ae, VQGANLossConfig(perceptual_weight=0.0), None)
    with pytest.raises(ValueError, match="perceptual"):
        VQGANTrainer(ae, VQGANLossConfig(gan=False), None, None)
    with pytest.raises(ValueError, match="config.rec"):
        VQGANTrainer(ae, VQGANLossConfig(rec="l3", gan=False, perceptual_weight=0.0))


def test_receptive_field():
    # 4x4 convs: stride 2 then two stride 1 -> 4, 4 + 3*2, 10 + 3*2
    assert PatchDiscriminator(num_layers=1).receptive_field() == 16
    assert PatchDiscriminator(num_layers=3).receptive_field() == 70  # pix2pix's 70x70 PatchGAN
    # empirically: a change outside the receptive field of a corner logit leaves it alone, once the GroupNorms
    # (whose statistics span the whole image) are taken out; with them every logit feels every pixel a little
    d = PatchDiscriminator(channels=8, num_layers=1).eval()
    d.net = torch.nn.Sequential(*[torch.nn.Identity() if isinstance(m, torch.nn.GroupNorm) else m for m in d.net])
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()
    y[..., 20:, 20:] = 1.0
    with torch.no_grad():
        assert torch.equal(d(x)[..., 0, 0], d(y)[..., 0, 0])
