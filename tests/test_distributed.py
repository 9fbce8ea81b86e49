"""Training under torchrun: two gloo processes on the CPU against one process on the combined batch."""
import copy
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from course_lib.nets import build_model
from course_lib.schedules import make_alphas_cumprod
from course_lib.train import RECIPES, train
from course_lib.train.distributed import as_rank, rank_generator, shard, world
from course_lib.train.loops import EMA, _batch, _diffusion_step_loss, _lr_at, fit
from course_lib.train.tasks import _ldm_first_stage, _ldm_step_loss


def torchrun(name, runs_dir, steps, *extra):
    """``torchrun --standalone --nproc_per_node 2 -m course_lib.train NAME`` on the CPU; returns its output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "course_lib.train", name, "--steps", str(steps), "--no-eval", "--device", "cpu", "--runs-dir",
           str(runs_dir), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def two_rank_reference(recipe, step_loss, world_size=2, ranks=(0, 1), build=None):
    """One process, one model: each step's loss is the mean of the shard losses of ``ranks`` (each rank's rows
    of the batch and its generator), i.e. the mean loss over the combined batch; the trainer's optimizer, schedule,
    clipping and EMA. ``ranks=(0,)`` is rank 0's shard alone (what no gradient averaging would give). ``build()``:
    the model as the trainer initialises it (default: seeded, then built)."""
    if build is None:
        torch.manual_seed(recipe.seed)
        model = build_model(recipe.model, recipe.config)
    else:
        model = build()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    ema = EMA(model, recipe.ema_decay)
    gens = []
    for r in ranks:
        with as_rank(r, world_size):
            gens.append(rank_generator(recipe.seed))

    def loss_at(step):
        losses = []
        for r, gen in zip(ranks, gens):
            with as_rank(r, world_size):
                losses.append(step_loss(model, step, gen))
        return sum(losses) / len(losses)

    fit(model, loss_at, recipe.steps, lambda step: _lr_at(step, recipe), opt, ema=ema, progress=False)
    return ema.model.state_dict()


def max_difference(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_shard_takes_every_nth_row_and_refuses_uneven_batches():
    x = torch.arange(12).reshape(6, 2)
    with as_rank(1, 3):
        assert torch.equal(shard(x), x[1::3])
        parts = shard((x, {"a": x[:, 0]}, None))
        assert torch.equal(parts[1]["a"], torch.tensor([2, 8])) and parts[2] is None
        assert world() == (1, 3)
    assert world() == (0, 1) and shard(x) is x  # one process: the whole batch
    with as_rank(0, 4), pytest.raises(ValueError, match="divisible by the 4 processes, got 6 rows"):
        shard(x)
    with pytest.raises(ValueError, match="rank, world_size"):
        with as_rank(2, 2):
            pass


def test_rank_zero_draws_the_one_process_stream():
    with as_rank(0, 2):
        g0 = rank_generator(4)
    with as_rank(1, 2):
        g1 = rank_generator(4)
    one = torch.Generator().manual_seed(4)
    assert torch.equal(torch.rand(5, generator=g0), torch.rand(5, generator=one))
    assert not torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=torch.Generator().manual_seed(4)))


def test_train_refuses_what_cannot_run_on_several_processes():
    quiet = dict(save=False, evaluate=False, progress=False, log=lambda *a: None)
    with as_rank(0, 2), pytest.raises(ValueError, match="shapes_ae32_f4 is a 'vqgan' recipe, which trains in one "
                                                        "process only .*codebook"):
        train("shapes_ae32_f4", steps=1, **quiet)
    with as_rank(0, 3), pytest.raises(ValueError, match="dividing shapes_mini_ldm32's batch_size 64.*got 3"):
        train("shapes_mini_ldm32", steps=1, **quiet)


def test_two_gloo_processes_equal_one_process_on_the_combined_batch_and_resume(tmp_path):
    """ring8_mlp (the resumable loop): 6 steps on 2 ranks, weights against the one-process reference; then the
    same run stopped at its step-3 state and resumed on 2 ranks lands on the same weights."""
    recipe = copy.deepcopy(RECIPES["ring8_mlp"])
    recipe.steps = 6
    out = torchrun(recipe.name, tmp_path / "a", 6, "--save-every", "3")
    assert "2 processes (replicas differ by at most 0.0)" in out
    ddp = load_file(tmp_path / "a" / recipe.name / f"{recipe.name}.safetensors")
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)

    def step_loss(model, step, gen):
        x, y, attrs = (shard(part) for part in _batch(recipe, step))
        return _diffusion_step_loss(recipe, model, step, x, y, attrs, {"ac": ac, "gen": gen})

    combined = two_rank_reference(recipe, step_loss)
    assert max_difference(ddp, combined) <= 1e-5
    alone = two_rank_reference(recipe, step_loss, ranks=(0,))
    assert max_difference(ddp, alone) > 1e-4  # the comparison can fail: one shard's gradient is another step

    state = torch.load(tmp_path / "a" / recipe.name / "state.pt", weights_only=True)
    assert state["step"] == 3 and len(state["generators"]) == 2
    torchrun(recipe.name, tmp_path / "a", 6, "--resume")  # from the step-3 state, each rank its own stream
    resumed = load_file(tmp_path / "a" / recipe.name / f"{recipe.name}.safetensors")
    assert max_difference(resumed, ddp) <= 1e-6
    with pytest.raises(ValueError, match=r"saved by 2 process\(es\), this run has 1.*--nproc_per_node 2"):
        train(recipe.name, steps=6, resume=True, runs_dir=tmp_path / "a", save=False, evaluate=False,
              progress=False, log=lambda *a: None)


def test_two_gloo_processes_train_the_latent_model_as_one(tmp_path):
    """shapes_mini_ldm32 (frozen first stage, caption dropout, the notebook-10 denoiser): 10 steps on 2 ranks of 32
    rows each against one process on the 64 (10 steps: the warm-up's small learning rates must move the weights well
    beyond the tolerance, so that a missing average would show)."""
    recipe = copy.deepcopy(RECIPES["shapes_mini_ldm32"])
    recipe.steps = 10
    assert "2 processes (replicas differ by at most 0.0)" in torchrun(recipe.name, tmp_path, 10)
    ddp = load_file(tmp_path / recipe.name / f"{recipe.name}.safetensors")
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    first_stage = []

    def build():  # as _train_ldm: seed, load the first stage (it draws from the global generator), build
        torch.manual_seed(recipe.seed)
        first_stage.extend(_ldm_first_stage(recipe, torch.device("cpu")))
        return build_model(recipe.model, recipe.config)

    def step_loss(model, step, gen):
        ae, scale = first_stage
        return _ldm_step_loss(recipe, model, ae, scale, ac, gen, torch.device("cpu"), step)

    assert max_difference(ddp, two_rank_reference(recipe, step_loss, build=build)) <= 1e-5
    first_stage.clear()
    assert max_difference(ddp, two_rank_reference(recipe, step_loss, ranks=(0,), build=build)) > 1e-4
