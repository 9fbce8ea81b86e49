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
    loaded = checkpoints.load(name, weights_dir=tmp_path)
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
