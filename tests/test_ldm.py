"""course_lib.ldm: the scale factor, L_LDM, guided sampling in latent space, attention recording."""
import pytest
import torch

from course_lib.data import CAPTION_LENGTH, generate_shapes
from course_lib.diffusion import diffusion_loss
from course_lib.ldm import LatentDiffusion, attention_on_object, latent_scale
from course_lib.nets import VQVAE, CaptionUNet, CaptionUNetConfig, VQVAEConfig
from course_lib.schedules import make_alphas_cumprod


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    ae = VQVAE(VQVAEConfig(base_channels=8, channel_mults=(1, 2), latent_dim=4, num_codes=16)).eval()
    unet = CaptionUNet(CaptionUNetConfig(base_channels=16, context_dim=16)).eval()
    torch.nn.init.normal_(unet.conv_out.weight, std=0.05)
    for st in unet.transformers().values():
        torch.nn.init.normal_(st.proj_out.weight, std=0.05)
    return LatentDiffusion(unet, ae, latent_scale(ae, generate_shapes(200, 32, 1, seed=1).images))


def test_scale_factor_gives_unit_variance(small):
    x = generate_shapes(200, 32, 1, seed=1).images
    assert small.encode(x).std().item() == pytest.approx(1.0, rel=1e-4)
    assert small.latent_shape == (4, 8, 8)


def test_decode_quantizes_the_unscaled_latent(small):
    x = generate_shapes(4, 32, 1, seed=2).images
    z = small.encode(x)
    with torch.no_grad():
        expected = small.autoencoder.decode(small.autoencoder.quantize(z / small.scale)[0]).clamp(-1, 1)
        assert torch.equal(small.decode(z), expected)
        # a small perturbation of z stays in the same code cells and decodes identically: the decoder quantizes
        assert torch.allclose(small.decode(z + 1e-5 * torch.randn_like(z)), expected, atol=1e-5)


def test_l_ldm_is_the_one_diffusion_loss_on_latents_and_drops_captions_to_the_models_null(small):
    ac = make_alphas_cumprod()
    z0 = torch.randn(6, 4, 8, 8)
    tokens = generate_shapes(6, 32, 1, seed=3).tokens
    calls = []

    class Spy(torch.nn.Module):
        def forward(self, z, t, tok):
            calls.append(tok.clone())
            return torch.zeros_like(z)

        def null_condition(self, n, device=None):
            return small.unet.null_condition(n, device)

    g = torch.Generator().manual_seed(0)
    loss = diffusion_loss(Spy(), z0, ac, tokens, drop_prob=0.0, generator=g)
    g2 = torch.Generator().manual_seed(0)
    torch.randint(0, 1000, (6,), generator=g2)
    noise = torch.randn(z0.shape, generator=g2)
    assert loss.item() == pytest.approx((noise ** 2).mean().item(), rel=1e-6)  # zero prediction: E||eps||^2
    assert torch.equal(calls[-1], tokens)
    diffusion_loss(Spy(), z0, ac, tokens, drop_prob=1.0, generator=torch.Generator().manual_seed(0))
    assert (calls[-1] == 0).all()  # every caption replaced by the empty one


def test_guidance_scale_one_is_the_conditional_model(small):
    tokens = generate_shapes(2, 32, 1, seed=4).tokens
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 700])
    with torch.no_grad():
        assert torch.allclose(small.guided_eps(1.0, tokens)(z, t), small.unet(z, t, tokens), atol=1e-6)
        e_u, e_c = small.unet(z, t, None), small.unet(z, t, tokens)
        assert torch.allclose(small.guided_eps(3.0, tokens)(z, t), e_u + 3.0 * (e_c - e_u), atol=1e-5)


def test_sampling_is_deterministic_and_recording_attention_changes_nothing(small):
    tokens = generate_shapes(2, 32, 1, seed=5).tokens
    a = small.sample(tokens, steps=4, generator=torch.Generator().manual_seed(0))
    b, maps = small.sample_with_attention(tokens, steps=4, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 32, 32) and torch.equal(a, b)
    assert set(maps) == {"down0", "down1", "mid", "up1", "up0"}
    assert maps["down0"].shape == (2, 4, CAPTION_LENGTH + 1, 8, 8) and maps["mid"].shape[-1] == 4
    # attention over the caption positions sums to one at every pixel (a softmax over keys)
    assert torch.allclose(maps["down0"].sum(2), torch.ones(2, 4, 8, 8), atol=1e-5)
    # the maps are the conditional branch's: a direct forward of the conditional model at the first step agrees
    from course_lib.attention import AttentionRecorder
    z_T = torch.randn((2, *small.latent_shape), generator=torch.Generator().manual_seed(0))
    rec = AttentionRecorder()
    with torch.no_grad():
        small.unet(z_T, torch.full((2,), int(small_first_timestep(small, 4))), tokens, recorder=rec)
    first = rec.maps["down0"][0].mean(1).transpose(1, 2).reshape(2, CAPTION_LENGTH + 1, 8, 8)
    assert torch.allclose(maps["down0"][:, 0], first, atol=1e-5)


def small_first_timestep(model, steps):
    from course_lib.schedules import timestep_subsequence

    return timestep_subsequence(len(model.alphas_cumprod), steps, "uniform")[0]  # the first (largest) timestep


def test_attention_on_object():
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, :16, :16] = True  # a quarter of the image
    even = torch.full((2, 8, 8), 1 / 64)
    assert torch.allclose(attention_on_object(even, masks), torch.ones(2))
    on = torch.zeros(2, 8, 8)
    on[:, :4, :4] = 1 / 16
    assert torch.allclose(attention_on_object(on, masks), torch.full((2,), 4.0))
    with pytest.raises(ValueError, match="masks"):
        attention_on_object(even, masks[:1])


def test_shipped_latent_model_follows_its_captions():
    """The shapes classifier reads the requested shape, colour and position off fresh samples (measured at training
    time on 256 held-out captions: 1.00 on each); here 48 other captions, a fresh draw."""
    from course_lib import checkpoints
    from course_lib.metrics import caption_following

    pipe = LatentDiffusion.from_shipped("shapes_ldm32")
    ref = generate_shapes(48, 32, 1, seed=4242)
    images = pipe.sample(ref.tokens, steps=20, guidance_scale=3.0, generator=torch.Generator().manual_seed(3))
    rates = caption_following(images, ref.attributes, checkpoints.load("shapes_classifier16"))
    print("caption following of shapes_ldm32 on 48 fresh captions:", rates)
    assert rates["shape_and_colour"] >= 0.9 and rates["all"] >= 0.85, rates
