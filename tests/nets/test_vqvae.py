"""nets.VQVAE.objective: the one VQ objective that VQ-VAE trains on and VQGAN extends."""
import torch
from torch.nn import functional as F

from course_lib.nets import VQVAE, VQVAEConfig
from course_lib.quantize import vq_losses


def test_objective_is_reconstruction_plus_codebook_plus_commitment():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(base_channels=8, channel_mults=(1, 2), latent_dim=4, num_codes=16, beta=0.25))
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    out = model.objective(x)
    z_e = model.encode(x)
    z_q, idx, _ = model.quantize(z_e)
    x_hat = model.decode(z_q)
    codebook, commitment = vq_losses(z_e.permute(0, 2, 3, 1), model.quantizer.codebook[idx], 0.25)
    expected = F.mse_loss(x_hat, x) + codebook + commitment
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert torch.equal(out.indices, idx) and torch.allclose(out.x_hat, x_hat)
    assert set(out.parts) == {"reconstruction", "codebook", "commitment"}
    # training_loss is the same objective, parts as floats
    loss, parts, _ = model.training_loss(x)
    assert torch.allclose(loss, out.loss) and parts["codebook"] == float(out.parts["codebook"].detach())
    # VQGAN's reconstruction term replaces the squared error and nothing else
    l1 = lambda a, b: ((a - b).abs().mean(), {"l1": (a - b).abs().mean()})  # noqa: E731
    vqgan = model.objective(x, l1)
    assert torch.allclose(vqgan.loss, (x_hat - x).abs().mean() + codebook + commitment, atol=1e-6)
    assert torch.equal(vqgan.reconstruction, (x_hat - x).abs().mean())
    assert set(vqgan.parts) == {"l1", "codebook", "commitment"}
