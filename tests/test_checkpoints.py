import shutil

import pytest
import torch

from course_lib import checkpoints
from course_lib.checkpoints import CheckpointError
from course_lib.nets import MLPConfig, MLPDenoiser
from course_lib.train import RECIPES

SHIPPED = checkpoints.manifest()


def test_every_recipe_is_shipped_and_the_manifest_is_complete():
    assert set(SHIPPED) == set(RECIPES), "a registered model is not shipped, or a shipped one has no recipe"
    for name, e in SHIPPED.items():
        for key in ("file", "sha256", "model", "config", "seed", "command", "wall_time_s", "device", "metrics",
                    "steps", "num_params"):
            assert key in e, f"{name}: manifest lacks {key}"
        assert e["command"].startswith(f"python -m course_lib.train {name}")
        assert (checkpoints.WEIGHTS_DIR / e["file"]).stat().st_size == e["size_bytes"]
        assert e["size_bytes"] < 5 * 2**20, f"{name} is over 5 MB"
    total = sum(e["size_bytes"] for e in SHIPPED.values())
    assert total < 100 * 2**20  # COURSE_DESIGN.md, "Weights": a few MB each, all together under 100 MB


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_model_loads_and_runs(name):
    model = checkpoints.load(name)
    assert not model.training
    e = SHIPPED[name]
    assert sum(p.numel() for p in model.parameters()) == e["num_params"]
    with torch.no_grad():
        if e["model"] == "UNet":
            out = model(torch.randn(2, 3, 16, 16), torch.tensor([10, 900]), torch.tensor([0, 3]))
            assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
        elif e["model"] == "MLPDenoiser":
            assert model(torch.randn(5, 2), torch.arange(5)).shape == (5, 2)
        elif e["model"] == "VQVAE":
            assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3, 16, 16)
        elif e["model"] == "CaptionUNet":
            cfg = model.config
            c, out_c = cfg.in_channels, cfg.out_channels or cfg.in_channels
            side = 8 if c == 4 else e.get("image_size", 32)
            level = {"level": torch.tensor([0.0, 0.5])} if cfg.level_embedding else {}  # a super-resolution model
            out = model(torch.randn(2, c, side, side), torch.tensor([10, 900]), torch.zeros(2, 11, dtype=torch.long),
                        **level)
            assert out.shape == (2, out_c, side, side) and torch.isfinite(out).all()
            if e.get("caption_encoder"):  # Imagen's frozen encoder: the pretrained one, unchanged by the training
                pre = checkpoints.load(e["caption_encoder"]).encoder.state_dict()
                assert all(torch.equal(v, pre[k]) for k, v in model.caption_encoder.state_dict().items())
        elif e["model"] == "GPTPrior":
            codes = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
            assert model(codes).shape == (2, model.config.block_size, model.config.vocab_size)
        elif e["model"] == "LPIPSWeights":
            weights = model()
            assert [w.shape[0] for w in weights] == list(model.config.channels)
            assert all(bool((w >= 0).all()) for w in weights)  # the paper's constraint held through training
        elif e["model"] == "CaptionAttributes":
            from course_lib.data import generate_shapes

            b = generate_shapes(64, 8, (1, 2), seed=5)
            logits = model(b.tokens)
            assert logits["colour"].shape == (64, 2, 7)  # 6 colours + "absent", for each of two objects
            assert model.accuracy(b.tokens, b.attributes) > 0.5  # trained: most captions fully named
        elif e["model"] == "ControlNet":
            down, mid = model(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.rand(2, 1, 32, 32),
                              torch.zeros(2, 11, dtype=torch.long))
            assert [d.shape for d in down] == [(2, 32, 8, 8), (2, 64, 4, 4)] and mid.shape == (2, 64, 4, 4)
            assert all(torch.isfinite(d).all() for d in down) and mid.abs().max() > 0  # trained: no longer zero
        elif e["model"] == "MiniUNet":
            out = model(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.zeros(2, 11, dtype=torch.long))
            assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all() and out.abs().max() > 0  # trained
        elif e["model"] == "DiT":
            out = model(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), torch.tensor([0, 3]))
            assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all() and out.abs().max() > 0  # trained
            assert torch.equal(model.null_condition(2), torch.tensor([4, 4]))
        else:
            t = torch.zeros(2, dtype=torch.long) if model.config.time_conditional else None
            assert model(torch.randn(2, 3, 16, 16), t).shape == (2, 4)


def _copy_weights(tmp_path, name):
    for f in (checkpoints.MANIFEST, checkpoints.WEIGHTS_DIR / SHIPPED[name]["file"]):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / SHIPPED[name]["file"]


def test_corrupted_file_is_refused_with_the_retrain_command(tmp_path):
    name = "ring8_mlp"
    path = _copy_weights(tmp_path, name)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoints.CheckpointError, match=f"python -m course_lib.train {name}"):
        checkpoints.load(name, source=tmp_path)


def test_missing_file_and_unknown_name(tmp_path):
    name = "ring8_mlp"
    path = _copy_weights(tmp_path, name)
    path.unlink()
    with pytest.raises(checkpoints.CheckpointError, match="missing.*python -m course_lib.train ring8_mlp"):
        checkpoints.load(name, source=tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="name: expected one of the models in .*got 'nope'"):
        checkpoints.load("nope")


def test_save_then_load_round_trip(tmp_path):
    model = MLPDenoiser(MLPConfig(hidden=16, num_layers=1))
    e = checkpoints.save("tiny", model, {"seed": 0}, weights_dir=tmp_path)
    assert e["sha256"] == checkpoints.sha256(tmp_path / "tiny.safetensors")
    loaded = checkpoints.load("tiny", source=tmp_path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(n for n, e in SHIPPED.items() if "log_file" in e))
def test_shipped_training_logs_match_the_manifest(name):
    e = SHIPPED[name]["log_file"]
    path = checkpoints.WEIGHTS_DIR / e["file"]
    assert checkpoints.sha256(path) == e["sha256"] and path.stat().st_size == e["size_bytes"] < 5 * 2**20
    log = checkpoints.load_log(name)
    assert len(log["curve_steps"]) > 10


def test_save_log_round_trip_and_errors(tmp_path):
    model = MLPDenoiser(MLPConfig())
    with pytest.raises(checkpoints.CheckpointError, match="before its log"):
        checkpoints.save_log("toy", {"a": torch.zeros(2)}, tmp_path)
    checkpoints.save("toy", model, {"seed": 0}, tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="expected a training log"):
        checkpoints.load_log("toy", tmp_path)
    checkpoints.save_log("toy", {"a": torch.arange(3.0)}, tmp_path)
    assert torch.equal(checkpoints.load_log("toy", tmp_path)["a"], torch.arange(3.0))
    (tmp_path / "toy.log.safetensors").write_bytes(b"broken")
    with pytest.raises(checkpoints.CheckpointError, match="differs from the manifest"):
        checkpoints.load_log("toy", tmp_path)


def test_a_missing_or_truncated_manifest_is_a_checkpoint_error_that_says_how_to_restore_it(tmp_path):
    with pytest.raises(CheckpointError, match="manifest: expected a manifest at .*found none"):
        checkpoints.manifest(tmp_path / "manifest.json")
    assert checkpoints.manifest(tmp_path / "manifest.json", missing_ok=True) == {}
    text = checkpoints.MANIFEST.read_text()
    (tmp_path / "manifest.json").write_text(text[: len(text) // 2])  # a write killed half-way, as before
    with pytest.raises(CheckpointError, match="expected readable JSON"):
        checkpoints.load("ring8_mlp", source=tmp_path)


def test_an_interrupted_save_leaves_the_old_weights_and_manifest_whole(tmp_path, monkeypatch):
    model = MLPDenoiser(MLPConfig(hidden=16, num_layers=1))
    checkpoints.save("tiny", model, {"seed": 0}, weights_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def killed(src, dst):
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(checkpoints.os, "replace", killed)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save("tiny", model, {"seed": 1}, weights_dir=tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no half file, no temporary left
    monkeypatch.undo()
    checkpoints.load("tiny", source=tmp_path)


def _self_contained(tmp_path, names):
    m = checkpoints.manifest()
    checkpoints.write_manifest({n: m[n] for n in names}, tmp_path / "manifest.json")
    for n in names:
        shutil.copy(checkpoints.WEIGHTS_DIR / m[n]["file"], tmp_path / m[n]["file"])
    return m


def test_a_dependent_refuses_a_parent_that_changed_naming_both_and_the_command(tmp_path):
    m = _self_contained(tmp_path, ["shapes_ldm32", "shapes_ae32_f4", "shapes_classifier16"])
    checkpoints.load("shapes_ldm32", source=tmp_path)  # consistent folder: loads
    other = MLPDenoiser(MLPConfig(hidden=16, num_layers=1))  # stands in for a retrained autoencoder
    fake = checkpoints.save("shapes_ae32_f4", other, {"seed": 0}, tmp_path)
    assert fake["sha256"] != m["shapes_ae32_f4"]["sha256"]
    with pytest.raises(CheckpointError, match=r"shapes_ldm32: it was trained with shapes_ae32_f4 \(autoencoder\).*"
                                              r"retrain shapes_ldm32 with `python -m course_lib.train shapes_ldm32`"):
        checkpoints.load("shapes_ldm32", source=tmp_path)
    from course_lib.ldm import LatentDiffusion
    with pytest.raises(CheckpointError, match="shapes_ae32_f4"):
        LatentDiffusion.from_shipped("shapes_ldm32", source=tmp_path)
    checkpoints.load("shapes_ldm32", source=tmp_path, parents=False)  # re-measuring it is still possible


def test_a_changed_metrics_classifier_asks_for_a_re_measure(tmp_path):
    _self_contained(tmp_path, ["shapes_ddpm16", "shapes_classifier16"])
    e = checkpoints.manifest(tmp_path / "manifest.json")
    e["shapes_ddpm16"]["parents"]["shapes_classifier16"]["sha256"] = "0" * 64
    checkpoints.write_manifest(e, tmp_path / "manifest.json")
    with pytest.raises(CheckpointError, match="measured with shapes_classifier16.*--eval-only"):
        checkpoints.load("shapes_ddpm16", source=tmp_path)


def test_weights_whose_shapes_do_not_fit_the_config_are_a_checkpoint_error(tmp_path):
    """Probe F8: same keys, one tensor of another shape, sha updated: was a raw RuntimeError."""
    model = MLPDenoiser(MLPConfig(hidden=16, num_layers=1))
    checkpoints.save("tiny", model, {"seed": 0}, tmp_path)
    m = checkpoints.manifest(tmp_path / "manifest.json")
    m["tiny"]["config"]["hidden"] = 32
    checkpoints.write_manifest(m, tmp_path / "manifest.json")
    with pytest.raises(CheckpointError, match=r"tiny: weights do not match the config.*wrong shapes.*config wants"):
        checkpoints.load("tiny", source=tmp_path)


def test_unknown_names_get_a_useful_hint():
    with pytest.raises(CheckpointError, match="did you mean 'shapes_ddpm16'"):
        checkpoints.load("shapes_ddpm")
    with pytest.raises(TypeError, match="source: expected 'shipped', 'runs' or a folder path, got int"):
        checkpoints.load("ring8_mlp", source=3)
