"""course_lib.dit (the scaling correlation, the paper's numbers) and the DiT as a latent diffusion model: labels as
the condition, the "dit" training task."""
import math

import pytest
import torch

from course_lib.dit import (PAPER_CONDITIONING_FID, PAPER_FID_GFLOPS, pearson, pearson_interval, sampling_gflops)


def test_pearson_is_torch_corrcoef_and_the_papers_table_gives_minus_0_93():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(9, generator=g), torch.randn(9, generator=g)
    assert pearson(x, y) == pytest.approx(float(torch.corrcoef(torch.stack([x, y]))[0, 1]), abs=1e-6)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0) and pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    gflops, fid = zip(*PAPER_FID_GFLOPS.values())
    # ../shared/paper-results.md 8c: computed from the 12 rows, Pearson(log Gflops, FID) = -0.930, (Gflops, FID) -0.725
    assert round(pearson([math.log(v) for v in gflops], fid), 3) == -0.930
    assert round(pearson(gflops, fid), 3) == -0.725
    assert len(PAPER_FID_GFLOPS) == 12 and min(PAPER_CONDITIONING_FID.values(), key=lambda v: v[1])[1] == 19.47


def test_the_fisher_interval_contains_r_narrows_with_n_and_matches_its_closed_form():
    lo, hi = pearson_interval(-0.93, 12)
    half = 1.959964 / math.sqrt(9)
    assert (lo, hi) == pytest.approx((math.tanh(math.atanh(-0.93) - half), math.tanh(math.atanh(-0.93) + half)), abs=1e-5)
    assert lo < -0.93 < hi
    lo100, hi100 = pearson_interval(-0.93, 100)
    assert lo < lo100 < hi100 < hi
    assert pearson_interval(0.0, 7)[0] == pytest.approx(-pearson_interval(0.0, 7)[1])


def test_sampling_gflops_counts_steps_and_the_guidance_branch():
    assert sampling_gflops(0.02, 50) == pytest.approx(1.0)
    assert sampling_gflops(0.02, 50, guidance=True) == pytest.approx(2.0)


@pytest.mark.parametrize("call,match", [
    (lambda: pearson([1, 2, 3], [1, 2]), "x, y: expected two sequences of one length"),
    (lambda: pearson([1, 1, 1], [1, 2, 3]), "constant"),
    (lambda: pearson([1, float("nan")], [1, 2]), "x: expected finite"),
    (lambda: pearson_interval(0.5, 3), "n: expected at least 4"),
    (lambda: pearson_interval(1.0, 10), "r: expected a correlation strictly inside"),
    (lambda: pearson_interval(0.5, 10, confidence=1.5), "confidence"),
    (lambda: sampling_gflops(0.1, 0), "steps: expected a positive"),
    (lambda: sampling_gflops(-1.0, 10), "model_gflops"),
])
def test_bad_inputs_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _small_dit_pipe():
    from course_lib import checkpoints
    from course_lib.ldm import LatentDiffusion
    from course_lib.nets.dit import DiT, DiTConfig

    torch.manual_seed(0)
    model = DiT(DiTConfig(hidden_size=32, depth=1, num_heads=2, num_classes=4)).eval()
    # a fresh DiT predicts 0 and ignores its condition (zero final layer and gates): move it off its initialisation
    for layer in [model.final_layer.linear, model.final_layer.adaLN_modulation[-1],
                  *(b.adaLN_modulation[-1] for b in model.blocks)]:
        torch.nn.init.normal_(layer.weight, std=0.1)
    torch.nn.init.normal_(model.y_embedder.weight, std=1.0)
    return LatentDiffusion(model, checkpoints.load("shapes_ae32_f4"), 3.0)


def test_a_class_conditional_dit_samples_through_latent_diffusion_with_labels():
    from course_lib.data import generate_shapes

    pipe = _small_dit_pipe()
    b = generate_shapes(5, 32, 1, seed=0)
    labels = pipe.condition_of(b)
    assert pipe.class_conditional and torch.equal(labels, b.attributes["shape"][:, 0])
    z_T = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    x = pipe.sample(labels, steps=3, guidance_scale=2.0, z_T=z_T)
    assert x.shape == (5, 3, 32, 32) and x.abs().max() <= 1
    # the label reaches the samples, and guidance changes them
    other = pipe.sample((labels + 1) % 4, steps=3, guidance_scale=2.0, z_T=z_T)
    assert not torch.equal(x, other)
    assert not torch.equal(x, pipe.sample(labels, steps=3, guidance_scale=1.0, z_T=z_T))


@pytest.mark.parametrize("labels,error,match", [
    (torch.zeros(3), ValueError, "labels: expected \\(N,\\) long class labels"),
    (torch.zeros(3, 1, dtype=torch.long), ValueError, "labels: expected \\(N,\\) long"),
    (torch.tensor([0, 4]), ValueError, "labels: expected labels in \\[0, 4\\)"),
    (torch.tensor([-1, 0]), ValueError, "labels: expected labels in \\[0, 4\\)"),
])
def test_bad_labels_name_the_argument(labels, error, match):
    with pytest.raises(error, match=match):
        _small_dit_pipe().sample(labels, steps=2)


def test_the_dit_task_trains_on_shared_latents_and_the_labels_and_drops_some_labels():
    import copy

    from course_lib.recipes import RECIPES
    from course_lib.train.tasks import TASKS, _encoded_batch

    recipe = copy.deepcopy(RECIPES["shapes_dit"])
    recipe.steps, recipe.config = 6, {**recipe.config, "hidden_size": 32, "depth": 1, "num_heads": 2}
    _encoded_batch.cache_clear()
    model, info, log = TASKS["dit"].train(recipe, torch.device("cpu"), progress=False)
    assert info["latent_scale"] == pytest.approx(3.332131, abs=1e-5) and info["autoencoder"] == "shapes_ae32_f4"
    assert _encoded_batch.cache_info().currsize == 6  # one encoded batch per step
    again, _, _ = TASKS["dit"].train(recipe, torch.device("cpu"), progress=False)
    assert _encoded_batch.cache_info().hits >= 6  # a second model on the same data reads the cached latents
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    z0, labels = _encoded_batch("shapes_ae32_f4", "shapes32", recipe.seed, recipe.batch_size, 0, "cpu")
    assert z0.shape == (64, 4, 8, 8) and labels.dtype == torch.long and set(labels.tolist()) <= {0, 1, 2, 3}
    assert abs(float(z0.std()) - 1) < 0.2  # scaled latents: unit standard deviation


def test_the_shipped_dit_draws_the_asked_shape_and_guidance_sharpens_it():
    from course_lib import checkpoints
    from course_lib.ldm import LatentDiffusion
    from course_lib.metrics import caption_following

    pipe = LatentDiffusion.from_shipped("shapes_dit")
    labels = torch.arange(48) % 4
    z_T = torch.randn(48, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    attrs = {k: torch.zeros(48, 1, dtype=torch.long) for k in ("colour", "row", "column")}
    attrs["shape"] = labels[:, None]
    clf = checkpoints.load("shapes_classifier16")
    rate = {w: caption_following(pipe.sample(labels, steps=20, guidance_scale=w, z_T=z_T.clone()), attrs, clf)["shape"]
            for w in (1.0, 3.0)}
    assert rate[3.0] >= 0.85, rate  # the manifest: 0.96 of 256; chance is 0.25
    assert rate[3.0] >= rate[1.0], rate


def test_a_class_model_is_measured_on_its_shape_only():
    from course_lib.metrics import evaluate_ldm

    out = evaluate_ldm(_small_dit_pipe(), torch.device("cpu"), n=16, steps=2, intervals=True)
    assert set(out["caption_following"]) == {"shape", "shape_interval"} and set(out["real_images"]) == {"shape"}
    assert out["network_evaluations"] == 4 and out["quality"]["fd_interval"][0] <= out["quality"]["fd"]
