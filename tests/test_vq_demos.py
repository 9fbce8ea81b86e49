import matplotlib.pyplot as plt
import pytest
import torch

from course_lib import checkpoints
from course_lib.data import generate_shapes, ring_mixture
from course_lib.demos import vq as demos
from course_lib.nets import VQVAE, VQVAEConfig


def test_codebook_training_snapshots_and_voronoi_extremes():
    pts, _ = ring_mixture(8, 2.0, 0.3).sample(300, torch.Generator().manual_seed(0))
    snaps = demos.train_codebook_2d(pts, num_codes=16, steps=100, snapshot_every=10)
    assert snaps.shape == (11, 16, 2)
    demo = demos.voronoi_demo(pts, snaps, n=50)
    first, last = demo.set(snapshot=0), demo.set(snapshot=10)
    assert last["perplexity"] > first["perplexity"]  # training spreads the points over more codes
    assert first["cells"].shape == (50, 50) and int(first["cells"].max()) < 16
    plt.close("all")


def test_sweep_reconstruction_demo():
    samples = {"originals": torch.zeros(8, 3, 16, 16), "beta|0.25": torch.ones(8, 3, 16, 16)}
    results = {"0.25": {"psnr_db": 30.0, "usage": 0.5}}
    demo = demos.sweep_reconstruction_demo(samples, results, "beta", "beta")
    assert demo.set(beta="0.25")["psnr_db"] == 30.0
    plt.close("all")
    # a sweep over seeds: the images are the first seed's, so the title gives that run's numbers, not the mean
    results = {"0.25": {"psnr_db": 30.0, "usage": 0.5, "seeds": [11, 12],
                        "per_seed": [{"psnr_db": 31.0, "usage": 0.75}, {"psnr_db": 29.0, "usage": 0.25}]}}
    fig = demos.sweep_reconstruction_demo(samples, results, "beta", "beta").figure(beta="0.25")
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "seed 11" in titles and "31.0 dB" in titles and "75%" in titles, titles
    plt.close("all")


def test_shipped_vqvae_reconstructs_and_uses_its_codebook():
    model = checkpoints.load("shapes_vqvae16")
    x = generate_shapes(64, 16, 1, seed=99).images
    with torch.no_grad():
        z_q, idx, _ = model.quantize(model.encode(x))
        x_hat = model.decode(z_q)
    assert idx.shape == (64, 4, 4)
    mse = ((x_hat - x) ** 2).mean().item()
    assert 10 * torch.log10(torch.tensor(4 / mse)).item() > 28  # PSNR in dB, images in [-1, 1]
    assert len(idx.unique()) > 64
    with torch.no_grad():  # codes_to_latents inverts the quantizer's look-up
        assert torch.allclose(model.codes_to_latents(idx), z_q, atol=1e-6)


@pytest.mark.parametrize("quantizer", ["vq", "lfq"])
def test_vqvae_shapes_and_losses(quantizer):
    cfg = VQVAEConfig(quantizer=quantizer, latent_dim=6, num_codes=64, base_channels=16, channel_mults=(1, 2))
    m = VQVAE(cfg)
    loss, parts, idx = m.training_loss(torch.randn(4, 3, 16, 16))
    assert idx.shape == (4, 4, 4) and int(idx.max()) < 64
    assert set(parts) >= {"reconstruction", "commitment"} and torch.isfinite(loss)
    loss.backward()
    assert m.encoder[0].weight.grad is not None  # straight-through reaches the encoder
    with pytest.raises(ValueError, match="num_codes"):
        VQVAE(VQVAEConfig(quantizer="lfq", latent_dim=6, num_codes=100))
