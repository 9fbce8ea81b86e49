"""Measure the course on this machine: ``./course bench`` (``--quick`` for a smoke run).

Prints one table and writes it as ``img/bench.json`` and ``img/bench.md`` (the README includes the latter between
its ``bench`` markers, refreshed by this command). Every time is a median of several runs; every ratio is measured
within one run. What is measured:

* each notebook executed top to bottom in a fresh kernel, as nbval runs it, and the whole course;
* every slider demo's callback (compute + redraw + PNG render), cold and cached: median and 95th percentile; for
  a demo that shows a preview of a new setting first, also the time until the asked picture replaces it;
* ``import course_lib`` (and all its modules) beyond ``import torch``, in fresh interpreters;
* DDIM against 1000-step ancestral sampling on the shipped shapes DDPM: network evaluations, wall clock and
  Fréchet distance at S = 10, 20, 50;
* our DDIM loop against diffusers' ``DDIMScheduler`` on the same noise predictions and inputs: time and max |diff|;
* pixel-space against latent-space diffusion (notebook 06's models): time per guided step and sample quality;
* how fast the shapes world is generated (images per second);
* a training step in one process against two gloo processes under torchrun (the same global batch).

Budgets live here, not in the test suite (a test that times itself fails on any busy machine): the table says
for each line whether it is within its budget, and ``--check`` exits non-zero when one is over.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parent.parent  # course_lib itself (its modules are timed on import)
# A slider's p95 (cold: the first picture of a new setting; cached) must be at most the demo's budget. 50 ms for a
# 2-D or analytic demo is three 60 Hz frames; 300 ms for a move that samples or decodes images is about where a
# learner starts to feel lag (a preview may answer first, marked as one: the asked picture follows); notebook 01's
# 1000-step sampler view keeps 1 s, its slowness is what the notebook shows.
BUDGETS = {"notebook_s": 60, "analytic_demo_p95_ms": 50, "image_demo_p95_ms": 300, "sampler_demo_p95_ms": 1000,
           "import_s": 1.0}


def demo_budget_ms(kind: str) -> int:
    """A slider demo's p95 budget by the kind its ``notebook_demos()`` gives it (``demos.Measured.budget``): 50 ms
    for 2-D and analytic demos ("analytic"), 300 ms for moves that sample or decode images ("images", to the first
    picture: a marked preview may come first), 1 s for notebook 01's long sampler shown on purpose ("sampler")."""
    from ..demos import BUDGET_KINDS

    if kind not in BUDGET_KINDS:
        raise ValueError(f"kind: expected one of {BUDGET_KINDS}, got {kind!r}")
    return BUDGETS[{"analytic": "analytic_demo_p95_ms", "images": "image_demo_p95_ms",
                    "sampler": "sampler_demo_p95_ms"}[kind]]


def _median(xs):
    return statistics.median(xs)


def over_budget(r: dict) -> list[str]:
    """Every measured line of ``r`` that is over its budget, as sentences naming the budget."""
    over = []
    for nb, secs in r.get("notebooks", {}).items():
        if secs >= BUDGETS["notebook_s"]:
            over.append(f"notebook {nb}: {secs} s, budget < {BUDGETS['notebook_s']} s")
    if r.get("notebooks") and sum(r["notebooks"].values()) >= 600:
        over.append(f"the whole course: {round(sum(r['notebooks'].values()), 1)} s, budget < 600 s")
    for label, v in r.get("import", {}).items():
        if v["beyond_torch_s"] >= BUDGETS["import_s"]:
            over.append(f"import {label}: {v['beyond_torch_s']} s beyond torch, budget < {BUDGETS['import_s']} s")
    for name, v in r.get("demos", {}).items():
        budget = demo_budget_ms(v["budget"])
        for phase in ("cold", "cached"):
            if v[phase][1] > budget:
                over.append(f"slider {name} ({phase}): p95 {v[phase][1]} ms, budget <= {budget} ms")
    return over


def generation_rate(n: int = 20000, repeats: int = 3) -> dict:
    """Images per second of ``generate_shapes(n, 16, (1, 2))``, median of ``repeats`` runs after a warm-up."""
    from ..data import generate_shapes

    generate_shapes(1000, 16, (1, 2), seed=0)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate_shapes(n, 16, (1, 2), seed=0)
        times.append(time.perf_counter() - t0)
    return {"images": n, "images_per_s": round(n / _median(times))}


def notebook_times(notebooks: Path, repeats: int = 3, names=None) -> dict:
    """{notebook: median seconds} executing each of ``notebooks/NN_*.ipynb`` in a fresh kernel, in that folder."""
    import nbformat
    from nbclient import NotebookClient

    out = {}
    for path in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        if names and path.stem not in names:
            continue
        times = []
        for _ in range(repeats):
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=600, kernel_name="python3",
                                    resources={"metadata": {"path": str(notebooks)}})
            t0 = time.perf_counter()
            client.execute()
            times.append(time.perf_counter() - t0)
        out[path.stem] = round(_median(times), 1)
    return out


_IMPORT = """
import time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import {what}
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def import_times(repeats: int = 5) -> dict:
    """Seconds to import torch, then ``course_lib`` and then every course_lib module, each in a fresh interpreter."""
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("_") and p.stem != "bench")
    out = {}
    for label, what in (("course_lib", "course_lib"),
                        ("all modules", ", ".join(f"course_lib.{m}" for m in modules))):
        torch_s, extra = [], []
        for _ in range(repeats):
            r = subprocess.run([sys.executable, "-c", _IMPORT.format(what=what)], capture_output=True, text=True,
                               check=True, cwd=PACKAGE.parent)
            a, b = map(float, r.stdout.split())
            torch_s.append(a)
            extra.append(b)
        out[label] = {"torch_s": round(_median(torch_s), 2), "beyond_torch_s": round(_median(extra), 3)}
    return out


def demo_latency() -> dict:
    from .latency import measure

    return measure()


@torch.no_grad()
def ddim_against_ancestral(n: int = 64, steps=(10, 20, 50)) -> dict:
    """One run: the shipped DDPM, 1000-step ancestral (eta = 1) and DDIM (eta = 0) at each S from the same x_T;
    wall clock, network evaluations and FD to 1000 held-out images in the clean classifier's features."""
    from .. import checkpoints
    from ..data import HELD_OUT_SEEDS, generate_shapes
    from ..diffusion import ddim_sample
    from ..metrics import image_quality
    from ..schedules import make_alphas_cumprod, timestep_subsequence

    model, clf = checkpoints.load("shapes_ddpm16"), checkpoints.load("shapes_classifier16")
    ac = make_alphas_cumprod()
    labels = torch.arange(n) % 4
    real = generate_shapes(1000, 16, 1, seed=HELD_OUT_SEEDS["real16"]).images
    x_T = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = {}
    for label, s, eta in [("ancestral", 1000, 1.0)] + [(f"ddim{s}", s, 0.0) for s in steps]:
        t0 = time.perf_counter()
        x = ddim_sample(lambda x, t: model(x, t, labels), x_T, ac, timestep_subsequence(1000, s), eta=eta,
                        generator=torch.Generator().manual_seed(1))
        sec = time.perf_counter() - t0
        out[label] = {"nfe": s, "seconds": round(sec, 2), "fd": image_quality(x.clamp(-1, 1), real, clf)["fd"]}
    base = out["ancestral"]
    for s in steps:
        r = out[f"ddim{s}"]
        r["speedup"] = round(base["seconds"] / r["seconds"], 1)
        r["fd_ratio"] = round(r["fd"] / base["fd"], 2)
    out["num_images"] = n
    return out


@torch.no_grad()
def ddim_against_diffusers(n: int = 64, steps: int = 50, repeats: int = 3) -> dict:
    """Our ddim_sample against a loop over diffusers' DDIMScheduler.step with the same betas, timesteps, noise
    predictions (the shipped DDPM) and x_T: median time of each and the largest difference of the outputs."""
    try:
        from diffusers import DDIMScheduler
    except ImportError:
        return {"skipped": "diffusers is not installed (pip install -r requirements.txt installs it)"}
    from .. import checkpoints
    from ..diffusion import ddim_sample
    from ..schedules import linear_betas, timestep_subsequence

    model = checkpoints.load("shapes_ddpm16")
    labels = torch.arange(n) % 4
    ref = DDIMScheduler(num_train_timesteps=1000, trained_betas=linear_betas(1000).float().numpy(), clip_sample=False,
                        set_alpha_to_one=True, timestep_spacing="leading", steps_offset=0)
    ref.set_timesteps(steps)
    ac = ref.alphas_cumprod
    ts = timestep_subsequence(1000, steps)
    x_T = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))

    def eps_fn(x, t):
        return model(x, t, labels)

    def theirs():
        x = x_T
        for t in ts.tolist():
            x = ref.step(eps_fn(x, torch.full((n,), t)), t, x, eta=0.0).prev_sample
        return x

    def ours():
        return ddim_sample(eps_fn, x_T, ac, ts, eta=0.0)

    t_ours, t_theirs = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a = ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = theirs()
        t_theirs.append(time.perf_counter() - t0)
    return {"steps": steps, "num_images": n, "ours_s": round(_median(t_ours), 3),
            "diffusers_s": round(_median(t_theirs), 3), "time_ratio_ours_over_diffusers":
                round(_median(t_ours) / _median(t_theirs), 3), "max_abs_diff": float((a - b).abs().max())}


@torch.no_grad()
def pixel_against_latent(n: int = 16, repeats: int = 5) -> dict:
    """Notebook 06: one guided DDIM step (batch n) in each space, median of ``repeats``; quality and training
    budget from the manifest (measured by the training command on 256 held-out captions)."""
    from .. import checkpoints
    from ..data import encode_caption
    from ..ldm import LatentDiffusion

    out = {}
    m = checkpoints.manifest()
    for name in ("shapes_ldm32", "shapes_pixel32"):
        if name not in m:
            out[name] = {"skipped": f"{name} is not shipped"}
            continue
        pipe = LatentDiffusion.from_shipped(name)
        z, t = torch.randn(n, *pipe.latent_shape), torch.full((n,), 500)
        eps = pipe.guided_eps(3.0, encode_caption("large red circle top left")[None].repeat(n, 1))
        eps(z, t)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            eps(z, t)
            times.append(time.perf_counter() - t0)
        e = m[name]
        out[name] = {"denoiser_input": list(pipe.latent_shape), "ms_per_guided_step": round(1000 * _median(times), 1),
                     "train_steps": e["steps"], "train_s": e["wall_time_s"],
                     "fd": e["metrics"]["quality"]["fd"],
                     "caption_following_all": e["metrics"]["caption_following"]["all"]}
    if all("ms_per_guided_step" in v for v in out.values()):
        out["step_time_ratio_pixel_over_latent"] = round(out["shapes_pixel32"]["ms_per_guided_step"]
                                                         / out["shapes_ldm32"]["ms_per_guided_step"], 1)
    return out


def distributed_step_time(name: str = "shapes_mini_ldm32", steps: int = 60, repeats: int = 3) -> dict:
    """Seconds per training step of ``name`` in one process (all cores) and in two gloo processes under torchrun
    (one thread each, torchrun's default), the same global batch: median over ``repeats`` runs of the trainer's own
    wall time (process start and imports excluded). On a 2-core machine no gain is expected: both use the same two
    cores, and two processes add an all-reduce per step."""
    import re

    base = ["-m", "course_lib.train", name, "--steps", str(steps), "--no-save", "--no-eval", "--device", "cpu"]
    runs = {"one_process": [sys.executable, *base],
            "two_processes": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                              *base]}
    out = {"recipe": name, "steps": steps}
    for label, cmd in runs.items():
        per_step = []
        for _ in range(repeats):
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
            found = re.search(rf"^{name}: ([0-9.]+) s training", run.stdout, re.M)
            if run.returncode or not found:
                return {"skipped": f"{label} failed: {(run.stderr or run.stdout)[-300:]}"}
            per_step.append(float(found.group(1)) / steps)
        out[label] = {"s_per_step": round(_median(per_step), 4), "spread": [round(min(per_step), 4),
                                                                             round(max(per_step), 4)]}
    out["speedup_two_over_one"] = round(out["one_process"]["s_per_step"] / out["two_processes"]["s_per_step"], 2)
    return out


def markdown(r: dict) -> str:
    """The README's table."""
    lines = [f"Measured by `./course bench` on {r['machine']} ({r['date']}); "
             f"times are medians of {r['repeats']} runs.", "",
             "| what | measured | budget |", "|---|---|---|"]
    if "generation" in r:
        g = r["generation"]
        lines.append(f"| shapes world, 16x16, one or two shapes | {g['images_per_s']:,} images/s | — |")
    if "notebooks" in r:
        for nb, s in r["notebooks"].items():
            lines.append(f"| notebook `{nb}` top to bottom, fresh kernel | {s} s | < {BUDGETS['notebook_s']} s |")
        lines.append(f"| the whole course (sum) | {round(sum(r['notebooks'].values()), 1)} s | < 600 s |")
    for label, v in r.get("import", {}).items():
        lines.append(f"| `import {label}` beyond `import torch` ({v['torch_s']} s) | {v['beyond_torch_s']} s | "
                     f"< {BUDGETS['import_s']} s |")
    for name, v in r.get("demos", {}).items():
        budget = demo_budget_ms(v["budget"])
        if v.get("previews"):  # the first picture may be a preview: say how often, and when the asked one came
            lines.append(f"| slider `{name}`: cold (first picture) median / p95, asked picture median / p95, cached "
                         f"median / p95 | {v['cold'][0]} / {v['cold'][1]} ms (a preview on {100 * v['previews']:.0f}% "
                         f"of new settings), {v['asked'][0]} / {v['asked'][1]} ms, {v['cached'][0]} / "
                         f"{v['cached'][1]} ms | p95 ≤ {budget} ms |")
        else:
            lines.append(f"| slider `{name}`: cold median / p95, cached median / p95 | {v['cold'][0]} / {v['cold'][1]} "
                         f"ms, {v['cached'][0]} / {v['cached'][1]} ms | p95 ≤ {budget} ms |")
    d = r.get("ddim", {})
    if d:
        a = d["ancestral"]
        lines.append(f"| 1000-step ancestral, {d['num_images']} images | {a['seconds']} s, FD {a['fd']} | — |")
        for k, v in d.items():
            if k.startswith("ddim"):
                lines.append(f"| DDIM S={v['nfe']}: NFE, speed-up, FD (ratio to ancestral) | {v['nfe']}, "
                             f"{v['speedup']}x, {v['fd']} ({v['fd_ratio']}x) | — |")
    ref = r.get("diffusers", {})
    if "ours_s" in ref:
        lines.append(f"| our DDIM loop vs diffusers' DDIMScheduler, S={ref['steps']}: time ratio, max diff | "
                     f"{ref['time_ratio_ours_over_diffusers']}x ({ref['ours_s']} s vs {ref['diffusers_s']} s), "
                     f"{ref['max_abs_diff']:.1e} | — |")
    elif ref:
        lines.append(f"| our DDIM loop vs diffusers | {ref['skipped']} | — |")
    pl = r.get("pixel_latent", {})
    for name in ("shapes_ldm32", "shapes_pixel32"):
        v = pl.get(name)
        if v and "ms_per_guided_step" in v:
            lines.append(f"| `{name}` on {tuple(v['denoiser_input'])}: ms per guided step (batch 16), FD, all "
                         f"caption words followed | {v['ms_per_guided_step']} ms, {v['fd']}, "
                         f"{v['caption_following_all']} | — |")
        elif v:
            lines.append(f"| `{name}` | {v['skipped']} | — |")
    dd = r.get("distributed", {})
    if "speedup_two_over_one" in dd:
        one, two = dd["one_process"], dd["two_processes"]
        lines.append(f"| `{dd['recipe']}` training step (batch 64, {dd['steps']} steps): one process vs two gloo "
                     f"processes (torchrun, 1 thread each) | {one['s_per_step']} s vs {two['s_per_step']} s "
                     f"(range {one['spread'][0]}-{one['spread'][1]} vs {two['spread'][0]}-{two['spread'][1]}): "
                     f"{dd['speedup_two_over_one']}x | — (the same 2 cores either way: little gain expected) |")
    elif dd:
        lines.append(f"| two-process training step | {dd['skipped']} | — |")
    over = over_budget(r)
    lines += ["", "Over budget: " + "; ".join(over) + "." if over else "Every line with a budget is within it."]
    return "\n".join(lines) + "\n"


def update_readme(md: str, readme: Path) -> bool:
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + start + "\n" + md + end + tail)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="./course bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", type=Path, default=Path.cwd(),
                   help="the course repository (notebooks/, img/, README.md; default: the working directory)")
    p.add_argument("--quick", action="store_true", help="one repeat, no notebooks, small batches (a smoke run)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-notebooks", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="where bench.json and bench.md go (default: REPO/img)")
    p.add_argument("--no-readme", action="store_true", help="do not refresh the README's table")
    p.add_argument("--check", action="store_true", help="exit 1 when any measured line is over its budget")
    a = p.parse_args(argv)
    a.out = a.out or a.repo / "img"
    import platform

    repeats = 1 if a.quick else a.repeats
    r = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
         f"torch {torch.__version__}", "repeats": repeats}
    if not (a.quick or a.skip_notebooks):
        r["notebooks"] = notebook_times(a.repo / "notebooks", repeats)
    r["import"] = import_times(max(repeats, 3))
    if not a.quick:
        r["demos"] = demo_latency()
    r["ddim"] = ddim_against_ancestral(n=8 if a.quick else 64, steps=(10,) if a.quick else (10, 20, 50))
    r["diffusers"] = ddim_against_diffusers(n=8 if a.quick else 64, steps=10 if a.quick else 50, repeats=repeats)
    r["pixel_latent"] = pixel_against_latent(repeats=max(repeats, 3))
    r["generation"] = generation_rate(repeats=max(repeats, 3))
    r["distributed"] = distributed_step_time(steps=10 if a.quick else 60, repeats=repeats)
    md = markdown(r)
    print(md)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "bench.json").write_text(json.dumps(r, indent=1) + "\n")
    (a.out / "bench.md").write_text(md)
    if not (a.quick or a.no_readme):
        print("README table refreshed" if update_readme(md, a.repo / "README.md")
              else "README has no bench markers; table not copied")
    over = over_budget(r)
    if a.check and over:
        print("bench --check: over budget:\n  " + "\n  ".join(over), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
