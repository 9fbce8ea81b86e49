import copy

import pytest
import torch

from course_lib import checkpoints
from course_lib.train import EMA, RECIPES, main, train


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_smoke_trains_and_saves(name, tmp_path):
    model, info = train(name, steps=3, weights_dir=tmp_path, runs_dir=tmp_path / "runs", progress=False,
                        evaluate=False, log=lambda *a: None)
    assert info["steps"] == 3 and info["command"] == f"python -m course_lib.train {name} --steps 3"
    assert torch.isfinite(torch.tensor(info["final_loss"]))
    loaded = checkpoints.load(name, source=tmp_path)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_training_is_seeded_and_resumable(tmp_path):
    kw = dict(steps=6, save=False, progress=False, evaluate=False, log=lambda *a: None)
    a, _ = train("ring8_mlp", runs_dir=tmp_path / "a", **kw)
    b, _ = train("ring8_mlp", runs_dir=tmp_path / "b", save_every=3, **kw)  # leaves a state at step 3
    assert (tmp_path / "b" / "ring8_mlp" / "state.pt").exists()
    c, _ = train("ring8_mlp", runs_dir=tmp_path / "b", resume=True, **kw)  # continues from step 3
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        assert torch.allclose(pa, pc, atol=1e-6)


def test_ema_moves_towards_the_weights():
    lin = torch.nn.Linear(2, 2)
    ema = EMA(lin, 0.9)
    with torch.no_grad():
        lin.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(lin, step=1000)
    assert torch.allclose(ema.model.weight, 0.9 * before + 0.1 * lin.weight)


def test_bad_names_and_steps():
    with pytest.raises(ValueError, match="name"):
        train("nope")
    with pytest.raises(ValueError, match="steps"):
        train("ring8_mlp", steps=0)
    with pytest.raises(SystemExit):
        main(["nope"])


def test_cli_lists_recipes(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in RECIPES)


def test_resume_without_a_saved_state_or_with_a_truncated_one_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume: no saved state"):
        train("ring8_mlp", steps=2, resume=True, save=False, runs_dir=tmp_path, progress=False)
    state = tmp_path / "ring8_mlp" / "state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(RuntimeError, match="not a readable training state.*without --resume"):
        train("ring8_mlp", steps=2, resume=True, save=False, runs_dir=tmp_path, progress=False)


def _shipped_bytes():
    return {p.name: p.read_bytes() for p in checkpoints.WEIGHTS_DIR.iterdir() if p.is_file()}


def test_a_learners_retrain_goes_to_runs_and_is_used_only_when_asked_for(tmp_path, monkeypatch):
    """Probe defect 1: `train ring8_mlp --steps 5` replaced the shipped model (NLL 0.27 -> 5.5 million)."""
    monkeypatch.setattr(checkpoints, "RUNS_DIR", tmp_path)
    before = _shipped_bytes()
    assert main(["ring8_mlp", "--steps", "5"]) == 0  # the CLI a learner runs (through ./course train)
    assert _shipped_bytes() == before, "a retrain without --ship wrote into course_lib/weights/"
    ours = checkpoints.entry("ring8_mlp", "runs")
    assert ours["steps"] == 5 and (tmp_path / "ring8_mlp" / "ring8_mlp.safetensors").exists()
    shipped = checkpoints.load("ring8_mlp")
    assert shipped.source["folder"] == str(checkpoints.WEIGHTS_DIR)  # not named in RETRAINED: the shipped one
    try:
        line = checkpoints.use_retrained(["ring8_mlp"])
        assert "YOUR RETRAINS" in line and "ring8_mlp (5 steps" in line
        mine = checkpoints.load("ring8_mlp")
        assert mine.source["sha256"] == ours["sha256"] != shipped.source["sha256"]
    finally:
        assert "every one is the shipped one" in checkpoints.use_retrained([])
    assert checkpoints.load("ring8_mlp").source["sha256"] == shipped.source["sha256"]
    assert main(["ring8_mlp", "--eval-only"]) == 0  # re-measures the learner's model, into its own manifest
    assert _shipped_bytes() == before


def test_use_retrained_refuses_a_model_that_was_not_retrained(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "RUNS_DIR", tmp_path)
    with pytest.raises(checkpoints.CheckpointError, match="RETRAINED: there is no retrain of 'ring8_mlp'.*./course train ring8_mlp"):
        checkpoints.use_retrained(["ring8_mlp"])
    with pytest.raises(checkpoints.CheckpointError, match="RETRAINED: there is no retrain of 'nope'.*registered"):
        checkpoints.use_retrained("nope")


def test_eval_only_of_a_shipped_model_writes_nothing_without_ship(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "RUNS_DIR", tmp_path)  # no retrain there: eval-only measures the shipped model
    before = _shipped_bytes()
    assert main(["ring8_mlp", "--eval-only"]) == 0
    assert _shipped_bytes() == before


def test_ship_and_weights_dir_contradict():
    with pytest.raises(ValueError, match="ship"):
        train("ring8_mlp", steps=1, ship=True, weights_dir="/tmp/x", progress=False, evaluate=False)
    with pytest.raises(SystemExit):
        main(["ring8_mlp", "--ship", "--no-save"])


def test_every_dependent_model_records_its_parents_sha256_and_they_match_the_shipped_parents():
    from course_lib.train import recipe_parents

    for name, recipe in RECIPES.items():
        e = checkpoints.entry(name)
        assert set(e.get("parents", {})) == set(recipe_parents(recipe)), name
        for parent, rec in e["parents"].items():
            assert rec["sha256"] == checkpoints.entry(parent)["sha256"], f"{name} was built on another {parent}"
    assert set(checkpoints.entry("shapes_ldm32")["parents"]) == {"shapes_ae32_f4", "shapes_classifier16"}
    assert checkpoints.entry("shapes_gpt32")["parents"]["shapes_vqgan32"]["use"] == "autoencoder"


def test_every_recipe_is_typed_and_its_task_is_in_the_one_table():
    from course_lib.recipes import VQGANSection
    from course_lib.train.tasks import TASKS, task_of

    for name, recipe in RECIPES.items():
        assert task_of(recipe) is TASKS[recipe.task], name
        assert (recipe.vqgan is not None) == (recipe.task == "vqgan"), name
        if recipe.vqgan is not None:
            assert isinstance(recipe.vqgan, VQGANSection)
        assert (recipe.autoencoder is not None) == (recipe.task in ("prior", "controlnet", "dit") or
                                                    (recipe.task == "ldm" and recipe.config["in_channels"] == 4)), name
        assert (recipe.control is not None) == (recipe.base is not None) == (recipe.task == "controlnet"), name
    bad = copy.deepcopy(RECIPES["ring8_mlp"])
    bad.task = "difusion"
    with pytest.raises(ValueError, match="recipe.task: expected one of"):
        task_of(bad)


def test_ldm_snapshots_are_taken_after_the_named_step_counts_and_do_not_change_training():
    from course_lib.train.tasks import _train_ldm

    recipe = copy.deepcopy(RECIPES["shapes_ldm32"])
    recipe.steps, recipe.batch_size = 4, 8
    seen = []
    model, info, _ = _train_ldm(recipe, torch.device("cpu"), progress=False, snapshot_steps=(2, 4),
                                on_snapshot=lambda done, m: seen.append((done, copy.deepcopy(m.state_dict()))))
    assert [done for done, _ in seen] == [2, 4]
    assert all(torch.equal(v, seen[-1][1][k]) for k, v in model.state_dict().items()), "the last snapshot is the model"
    assert any(not torch.equal(v, seen[0][1][k]) for k, v in model.state_dict().items()), "2 more steps moved it"
    plain, _, _ = _train_ldm(recipe, torch.device("cpu"), progress=False)
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items()), \
        "taking snapshots must not change what is trained"
    with pytest.raises(ValueError, match=r"snapshot_steps: expected step counts in 1\.\.4.*\[0, 5\]"):
        _train_ldm(recipe, torch.device("cpu"), progress=False, snapshot_steps=(0, 2, 5))


def test_training_step_flops_counts_forward_backward_and_the_frozen_encoder():
    from course_lib.metrics import count_flops
    from course_lib.train.tasks import training_step_flops

    latent, pixel = (training_step_flops(RECIPES[n]) for n in ("shapes_ldm32", "shapes_pixel32"))
    assert latent == training_step_flops(RECIPES["shapes_ldm32"]), "a count, not a timing: the same every time"
    assert pixel["first_stage"] == 0 and latent["first_stage"] > 0
    assert latent["step"] > latent["first_stage"], "the step's count includes the encoder's pass"
    ae = checkpoints.load("shapes_ae32_f4")
    from course_lib.data import generate_shapes
    images = generate_shapes(RECIPES["shapes_ldm32"].batch_size, 32, 1, seed=1).images
    with torch.no_grad():
        assert latent["first_stage"] == count_flops(ae.encode, images)[0]
    # the pixel denoiser sees 12x more numbers per image; its step costs several times the latent one
    assert 3 * latent["step"] < pixel["step"] < 12 * latent["step"]
    assert training_step_flops(RECIPES["shapes_ae32_f4"])["step"] > 0
    with pytest.raises(ValueError, match=r"recipe.task: expected an 'ldm' or 'vqgan' recipe, got 'diffusion'"):
        training_step_flops(RECIPES["shapes_ddpm16"])


def test_a_pixel_model_at_16x16_trains_on_a_frozen_pretrained_caption_encoder(tmp_path):
    from course_lib.ldm import LatentDiffusion

    recipe = copy.deepcopy(RECIPES["shapes_pixel32"])
    recipe.name, recipe.data, recipe.caption_encoder = "imagen_probe16", "shapes16", "shapes_caption_large"
    recipe.config = dict(in_channels=3, base_channels=16, channel_mults=(1, 2), attention_levels=(True, True))
    model, info = train(recipe, steps=3, weights_dir=tmp_path, progress=False, evaluate=False, log=lambda *a: None)
    pretrained = checkpoints.load("shapes_caption_large").encoder.state_dict()
    mine = model.caption_encoder.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in pretrained.items()), "the encoder stayed as pretrained"
    assert info["image_size"] == 16 and info["caption_encoder"] == "shapes_caption_large"
    assert info["parents"]["shapes_caption_large"]["use"] == "base"
    pipe = LatentDiffusion.from_shipped("imagen_probe16", source=tmp_path)
    assert pipe.latent_shape == (3, 16, 16)
    from course_lib.data import generate_shapes
    x = pipe.sample(generate_shapes(2, 16, 1, seed=0).tokens, steps=2)
    assert x.shape == (2, 3, 16, 16)
