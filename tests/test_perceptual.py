import warnings

import lpips
import pytest
import torch

from course_lib.perceptual import LPIPS, imagenet_weights_path, lpips_distance, normalize_channels


def gen(s):
    return torch.Generator().manual_seed(s)


def _pair(n=2, size=64):
    x = torch.rand(n, 3, size, size, generator=gen(0)) * 2 - 1
    y = (x + 0.3 * torch.randn(x.shape, generator=gen(1))).clamp(-1, 1)
    return x, y


def _package(net):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    return ref


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_equals_the_lpips_package_with_identical_backbone_weights(net):
    torch.manual_seed(0)
    ref = _package(net).eval()
    ref_spatial = _package(net).eval()
    ref_spatial.load_state_dict(ref.state_dict())
    ref_spatial.spatial = True
    ours = LPIPS(net, backbone="random").copy_backbone_from(ref)  # the package's random backbone, slice by slice
    with pytest.raises(ValueError, match="package_model: expected an lpips.LPIPS with net='squeeze'"):
        LPIPS("squeeze", backbone="random").copy_backbone_from(ref)
    x, y = _pair(size=64 if net == "alex" else 32)
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
        assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5), (got, expected)
        assert torch.allclose(ours(x, y, spatial=True), ref_spatial(x, y)[:, 0], atol=1e-6)
        assert torch.allclose(ours((x + 1) / 2, (y + 1) / 2, normalize=True), expected, atol=1e-6, rtol=1e-5)


def test_identity_symmetry_and_positivity():
    m = LPIPS("alex", backbone="random")
    x, y = _pair()
    with torch.no_grad():
        assert torch.all(m(x, x) == 0)
        assert torch.allclose(m(x, y), m(y, x))
        assert torch.all(m(x, y) > 0)


def test_normalize_channels_unit_length_and_zero_vectors():
    f = torch.randn(2, 5, 3, 3, generator=gen(2))
    f[0, :, 0, 0] = 0
    n = normalize_channels(f)
    norms = n.pow(2).sum(1).sqrt()
    assert torch.all(n[0, :, 0, 0] == 0)
    norms[0, 0, 0] = 1
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-6)


def test_lpips_distance_by_hand():
    a = [torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)]
    b = [torch.tensor([0.0, 1.0]).view(1, 2, 1, 1)]
    assert lpips_distance(a, b).item() == pytest.approx(2.0)  # |e1 - e2|^2 = 2
    assert lpips_distance(a, b, weights=[torch.tensor([0.5, 0.0])]).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="weights"):
        lpips_distance(a, b, weights=[torch.tensor([-1.0, 1.0])])


def test_range_errors():
    m = LPIPS("alex", backbone="random")
    x, _ = _pair()
    with pytest.raises(ValueError, match="x0"):
        m(x, x * 255)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m(x, x, normalize=True)  # [-1, 1] images declared as [0, 1]
    with pytest.raises(ValueError, match="3 channels"):
        m(x[:, :1], x[:, :1])


def test_imagenet_path_offline_falls_back_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="not in the torch cache"):
        m = LPIPS("alex", backbone="auto")
    assert m.backbone_source.startswith("random")
    with pytest.raises(FileNotFoundError, match="backbone"):
        LPIPS("alex", backbone="imagenet")


def test_weights_present_path_uses_the_cached_file(tmp_path, monkeypatch):
    """Place a (random) state dict where torchvision's ImageNet weights would be cached: it is loaded."""
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(3)
    fake = torchvision.models.alexnet(weights=None).state_dict()
    path = imagenet_weights_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(fake, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning on this path
        m = LPIPS("alex", backbone="auto")
    assert m.backbone_source.startswith("ImageNet")
    assert torch.equal(m.layers[0][0].weight, fake["features.0.weight"])


def test_course_backbone_and_2afc_head():
    from course_lib.perceptual import TwoAFCHead
    m = LPIPS("shapes", lin=False)
    assert m.backbone_source == "course shapes classifier" and m.channels == [32, 64, 64]
    x, y = _pair(size=32)
    with torch.no_grad():
        assert torch.all(m(x, x) == 0) and torch.all(m(x, y) > 0)
    head = TwoAFCHead()
    logits = head(torch.rand(5), torch.rand(5))
    assert logits.shape == (5,)


def test_quick_2afc_training_runs_and_learned_variants_are_recorded():
    from course_lib.tools.experiments import lpips_2afc
    res, samples = lpips_2afc(n_train=128, n_test=64, steps=5, batch_size=16, log=lambda *a: None)
    assert samples is None  # the learned weights ship as the model shapes_lpips_lin, not as a result file
    assert set(res["agreement"]) == {"L2", "SSIM", "features, unweighted", "shipped lin weights",
                                     "random backbone, unweighted", "lin", "tune", "scratch"}
    assert all(0 <= v <= 1 for v in res["agreement"].values())
    rnd = res["random_backbone_seeds"]  # the paper's random-network row, over three initialisations
    assert rnd["seeds"] == [0, 1, 2] and len(rnd["agreement"]) == 3
    assert res["agreement"]["random backbone, unweighted"] == pytest.approx(sum(rnd["agreement"]) / 3, abs=1e-4)


def test_lin_trains_only_the_weights_and_keeps_them_non_negative():
    from course_lib.data.distortions import make_2afc
    from course_lib.perceptual import lpips_variant
    from course_lib.train.tasks import train_2afc

    metric, _ = train_2afc("lin", make_2afc(64, seed=5), steps=5, batch_size=16)
    frozen, _ = lpips_variant("lin")
    assert all(torch.equal(a, b) for a, b in zip(metric.backbone_parameters(), frozen.backbone_parameters()))
    assert all(bool((w >= 0).all()) for w in metric.weights)
    assert any(not torch.allclose(w, torch.ones_like(w)) for w in metric.weights)  # lin really trained them
    tuned, _ = train_2afc("tune", make_2afc(64, seed=5), steps=2, batch_size=16)
    assert any(not torch.equal(a, b) for a, b in zip(tuned.backbone_parameters(), frozen.backbone_parameters()))
    scratch, _ = lpips_variant("scratch")
    assert scratch.backbone_source.startswith("random")
    with pytest.raises(ValueError, match="variant: expected one of"):
        lpips_variant("linear")


def test_lpips_shapes_uses_the_shipped_learned_weights():
    from course_lib import checkpoints

    m = LPIPS("shapes")
    shipped = checkpoints.load("shapes_lpips_lin")()
    assert all(torch.equal(w.detach(), s) for w, s in zip(m.weights, shipped)) and m.lin
    assert m.weights_source.startswith("shapes_lpips_lin (sha256 ")
    assert all(torch.equal(w, torch.ones_like(w)) for w in LPIPS("shapes", lin=False).weights)


def test_distortion_lab_extremes_and_an_l2_lpips_disagreement():
    import matplotlib.pyplot as plt

    from course_lib.data import generate_shapes
    from course_lib.demos.lpips import distortion_lab

    imgs = generate_shapes(4, 32, (1, 2), seed=5).images
    demo = distortion_lab(imgs, LPIPS("shapes", lin=False))
    assert demo.set(kind="blur", strength=0.0)["lpips"] == 0.0
    shift, noise = demo.set(kind="shift", strength=1.0), demo.set(kind="noise", strength=1.0)
    # L2 calls the noisy images closer, the feature distance the shifted ones
    assert noise["l2"] < shift["l2"] and shift["lpips"] < noise["lpips"]
    assert demo.set(kind="contrast", strength=1.0)["map"].shape == (4, 32, 32)
    plt.close("all")


def test_set_weights_switches_to_the_weighted_distance_and_checks_input():
    m = LPIPS("shapes", lin=False)
    x, y = _pair(size=32)
    with torch.no_grad():
        unweighted = m(x, y)
        m.set_weights([torch.full((c,), 2.0) for c in m.channels])
        assert torch.allclose(m(x, y), 2 * unweighted)
    with pytest.raises(ValueError, match="weights"):
        m.set_weights([torch.ones(3)])
