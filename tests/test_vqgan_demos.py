"""Notebook 05's demos on the shipped models: what each slider computes, and how fast."""
import matplotlib.pyplot as plt
import pytest
import torch

from course_lib import checkpoints
from course_lib.data import generate_shapes
from course_lib.demos import vqgan as Q
from course_lib.gan import load_discriminator


@pytest.fixture(scope="module")
def vqgan():
    return checkpoints.load("shapes_vqgan32")


def test_snapshot_scrubber_shows_each_models_logged_reconstructions():
    demo = Q.snapshot_scrubber()
    last = len(demo.steps) - 1
    r = demo.set(snapshot=last)
    for name in Q.AUTOENCODERS:
        assert torch.equal(r[name], checkpoints.load_log(name)["snapshots"][last])
    # training helps: the last snapshot is closer to the originals than the first
    orig = checkpoints.load_log("shapes_ae32_l2")["snapshot_images"]
    first = demo.set(snapshot=0)
    for name in Q.AUTOENCODERS:
        assert ((r[name] - orig) ** 2).mean() < ((first[name] - orig) ** 2).mean()
    plt.close("all")


def test_lambda_demo_balances_the_gradients_until_delta_or_the_clamp_interfere(vqgan):
    lp_calls = []

    def rec(a, b):
        lp_calls.append(1)
        return (a - b).abs().mean()

    demo = Q.lambda_demo(vqgan, load_discriminator(), generate_shapes(8, 32, 1, seed=3).images, rec)
    assert demo.rec_norm > 0 and demo.gan_norm > 0 and len(lp_calls) == 1  # the norms are measured once
    for c in (-3.0, 0.0, 2.0):  # small delta: lambda * |grad L_GAN| = |grad L_rec| whatever the GAN loss's scale
        r = demo.compute(log10_delta=-8.0, log10_max_weight=4.0, log10_gan_scale=c)
        assert r["balanced"] == pytest.approx(demo.rec_norm, rel=1e-3)
    big = demo.compute(log10_delta=2.0, log10_max_weight=4.0, log10_gan_scale=0.0)
    assert big["balanced"] < 0.5 * demo.rec_norm  # delta >> |grad L_GAN|: the GAN term is muted
    capped = demo.compute(log10_delta=-8.0, log10_max_weight=-1.0, log10_gan_scale=-6.0)
    assert capped["lambda"] == pytest.approx(0.1)
    demo.set(log10_delta=-2.0)
    plt.close("all")


def test_prior_sampler_decodes_deterministic_samples(vqgan):
    gpt = checkpoints.load("shapes_gpt32")
    demo = Q.prior_sampler(gpt, vqgan, n=4)
    a = demo.set(temperature=1.0, top_k=256, seed=3)
    assert a["images"].shape == (4, 3, 32, 32) and a["codes"].shape == (4, 16)
    b = Q.prior_sampler(gpt, vqgan, n=4).compute(temperature=1.0, top_k=256, seed=3)
    assert torch.equal(a["codes"], b["codes"])
    greedy = demo.compute(temperature=1.0, top_k=1, seed=0)
    assert (greedy["codes"] == greedy["codes"][0]).all()  # top-1: every sample is the same argmax sequence
    plt.close("all")


def test_shipped_prior_beats_the_uniform_prior():
    e = checkpoints.manifest()["shapes_gpt32"]["metrics"]
    assert e["held_out_nll_nats_per_code"] < 0.5 * e["uniform_nll_nats_per_code"]
