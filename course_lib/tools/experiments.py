"""Sweeps too heavy for a notebook cell; they write results the notebooks display.

    ./course experiments ddim --carry    # DDIM Tables 1 and 2 at toy scale (24 min on 2 busy cores; without --carry
                                         # the S = 1000 cells of most rows are left out, not copied)
    ./course experiments ddim --quick    # a reduced sweep (what the tests run)
    ./course experiments ddim-fill       # measure the S = 1000 cells that --carry copied, keep the rest (~40 min)
    ./course experiments ddim-speed      # wall clock of 1000-step DDPM against DDIM (~2.5 min)
    ./course experiments guidance        # guidance Table 4 at toy scale, Algorithms 1 and 2 (14 min on 2 busy cores)
    ./course experiments vq              # VQ beta / vocabulary / codebook-health sweeps, 3 seeds (42 runs of 600 steps)
    ./course experiments lpips           # LPIPS lin / tune / scratch on the synthetic 2AFC set
    ./course experiments ldm-compute     # FD against training FLOPs, latent vs pixel, 6 snapshots each (~45 min)
    ./course experiments controlnet      # notebook 07: the base without control, the strength sweep, composition
    ./course experiments imagen          # notebook 08: thresholding sweep, augmentation in the cascade, encoder grid
    ./course experiments dit             # notebook 09: scaling grid, conditioning ablation, steps vs model, vs UNet

Output: ``course_lib/results/ddim_tables.json`` (numbers) and ``course_lib/results/ddim_samples.safetensors``
(16 shapes samples per sampler configuration, for the notebook's slider).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import RESULTS_DIR, checkpoints
from ..data import HELD_OUT_SEEDS, generate_shapes, ring_mixture
from ..diffusion import ddim_invert, ddim_sample
from ..metrics import MMDToReference, image_quality, mixture_nll, real_vs_real, seed_range, sliced_wasserstein
from ..schedules import make_alphas_cumprod, timestep_subsequence

RESULTS = RESULTS_DIR  # course_lib/results: where results_path() reads them (not tools/results)

# DDIM paper, Table 1 (CIFAR10, FID, lower is better) and Table 2 (CIFAR10 reconstruction error per dimension),
# as printed in Song, Meng & Ermon (ICLR 2021).
PAPER_TABLE1_CIFAR10 = {
    "S": [10, 20, 50, 100, 1000],
    "eta=0.0": [13.36, 6.84, 4.67, 4.16, 4.04],
    "eta=0.2": [14.04, 7.11, 4.77, 4.25, 4.09],
    "eta=0.5": [16.66, 8.35, 5.25, 4.46, 4.29],
    "eta=1.0": [41.07, 18.36, 8.01, 5.78, 4.73],
    "sigma_hat": [367.43, 133.37, 32.72, 9.99, 3.17],
}
PAPER_TABLE2_CIFAR10 = {"S": [10, 20, 50, 100, 200, 500, 1000],
                        "error": [0.014, 0.0065, 0.0023, 0.0009, 0.0004, 0.0001, 0.0001]}
# LPIPS paper, Table 5 (2AFC agreement in %, BAPPS validation; Zhang et al., CVPR 2018): the rows that match ours
# (AlexNet for the backbone; ours is a shapes classifier) and two columns: "Trad." (the traditional distortions,
# what our synthetic set imitates; in-distribution for lin/tune/scratch, which trained on it) and "All".
PAPER_TABLE5_2AFC = {"columns": ["Trad.", "All"],
                     "rows": {"Human (oracle)": [80.8, 73.9], "L2": [59.9, 63.2], "SSIM": [60.3, 63.1],
                              "Random (Gaussian) net": [60.5, 64.3], "AlexNet (supervised)": [70.6, 68.9],
                              "Alex-lin": [73.9, 69.8], "Alex-tune": [77.7, 69.7], "Alex-scratch": [77.6, 70.2]},
                     "ours": {"L2": "L2", "SSIM": "SSIM", "random backbone, unweighted": "Random (Gaussian) net",
                              "features, unweighted": "AlexNet (supervised)",
                              "shipped lin weights": "Alex-lin", "lin": "Alex-lin", "tune": "Alex-tune",
                              "scratch": "Alex-scratch"}}

# VQGAN paper (Esser, Rombach & Ommer, CVPR 2021), Table 5: reconstruction FID on ImageNet, reconstructed
# validation images against the validation split (val) and the training split (train); None where not reported.
PAPER_VQGAN_TABLE5_RFID = [
    {"model": "VQVAE-2", "latent_grid": "64² & 32²", "codebook": 512, "fid_val": None, "fid_train": "~10"},
    {"model": "DALL-E dVAE", "latent_grid": "32²", "codebook": 8192, "fid_val": 32.01, "fid_train": 33.88},
    {"model": "VQGAN", "latent_grid": "16²", "codebook": 1024, "fid_val": 7.94, "fid_train": 10.54},
    {"model": "VQGAN", "latent_grid": "16²", "codebook": 16384, "fid_val": 4.98, "fid_train": 7.41},
    {"model": "VQGAN* (Gumbel)", "latent_grid": "32²", "codebook": 8192, "fid_val": 1.49, "fid_train": 3.24},
    {"model": "VQGAN", "latent_grid": "64² & 32²", "codebook": 512, "fid_val": 1.45, "fid_train": 2.78},
]

FULL = dict(steps=(10, 20, 50, 100, 1000), etas=(0.0, 0.2, 0.5, 1.0), n_points=2000, n_images=256,
            table2_steps=(10, 20, 50, 100, 200, 500, 1000), n_table2=32, ring_seeds=(7, 8, 9),
            quadratic_steps=(10, 20, 50, 100), quadratic_rows=("eta=0.0", "eta=1.0"), longest_rows=("eta=1.0",))
QUICK = dict(steps=(10, 50), etas=(0.0, 1.0), n_points=1000, n_images=48, table2_steps=(10, 50), n_table2=8,
             ring_seeds=(7, 8), quadratic_steps=(10,), quadratic_rows=("eta=0.0",), longest_rows=("eta=1.0",))


def _samplers(etas):
    return [(f"eta={eta:.1f}", dict(eta=eta)) for eta in etas] + [("sigma_hat", dict(variance="sigma_hat"))]


def _shapes_ddpm_cell(ddpm, clf, independent, real_imgs, n: int, S: int, kind: str, sampler: dict):
    """One shapes-DDPM cell of Table 1: n samples (x_T from seed 7, the asked classes cycling) with S steps of the
    ``kind`` sub-sequence, measured with 95% bootstrap intervals in both classifiers' features; (cell, samples)."""
    labels = torch.arange(n) % 4
    g = torch.Generator().manual_seed(7)
    xT = torch.randn(n, 3, 16, 16, generator=g)
    t0 = time.perf_counter()
    x = ddim_sample(lambda x, t: ddpm(x, t, labels), xT, make_alphas_cumprod(), timestep_subsequence(1000, S, kind),
                    generator=g, **sampler)
    secs = time.perf_counter() - t0
    return {**image_quality(x.clamp(-1, 1), real_imgs, clf, labels, intervals=True,
                            independent_classifier=independent), "seconds": round(secs, 2), "nfe": S}, x


def ddim_fill_carried(cfg: dict, carry: tuple[dict, dict], log=print) -> tuple[dict, dict]:
    """Measure the shapes-DDPM cells that a previous :func:`ddim_tables` run carried (the largest S of the rows
    outside ``longest_rows``: a point value without an interval), exactly as that run measures the others, and
    keep everything else of ``carry`` = (its results, its samples). ``filled_cells`` names what was measured;
    ``earlier_runs`` keeps the command and wall time of the run whose other cells these are."""
    import copy

    results, samples = copy.deepcopy(carry[0]), dict(carry[1])
    ddpm = checkpoints.load("shapes_ddpm16")
    clf = checkpoints.load("shapes_classifier16")
    independent = checkpoints.load("shapes_noisy_classifier16")
    real_imgs = generate_shapes(1000, 16, 1, seed=HELD_OUT_SEEDS["real16"]).images
    table, filled = results["table1_shapes_ddpm16"], []
    with torch.no_grad():
        for label, kw in _samplers(cfg["etas"]):
            for S, cell in table.get(label, {}).items():
                if not cell.get("carried"):
                    continue
                table[label][S], x = _shapes_ddpm_cell(ddpm, clf, independent, real_imgs, cfg["n_images"], int(S),
                                                       "uniform", kw)
                samples[f"{label}|S={S}"] = x[:16].contiguous()
                filled.append(f"{label}|S={S}")
                log(f"shapes_ddpm16 uniform {label} S={S}: {table[label][S]}")
    earlier = results.pop("earlier_runs", [])
    earlier.append({k: results.get(k) for k in ("command", "wall_time_s")})
    results.update(filled_cells=results.get("filled_cells", []) + filled, earlier_runs=earlier)
    return results, samples


def ddim_tables(cfg: dict, log=print, carry: tuple[dict, dict] | None = None) -> tuple[dict, dict]:
    """Table 1 (quality against S and eta, plus sigma-hat) for the exact-score ring, the trained ring MLP and the
    shapes DDPM, with the uniform sub-sequence and, for the shapes DDPM, the quadratic one the paper uses for its
    CIFAR10 rows; Table 2 (invert-then-decode error against S). Every number carries its spread: the ring's
    MMD, sliced W2 and NLL are the mean and range over ``ring_seeds`` (cheap to resample), the shapes DDPM's FD,
    precision, recall and accuracy a 95% bootstrap interval over its 256 samples, beside the real-vs-real floor
    (256 other real images, measured the same way). FD and precision/recall are also measured in the independent
    noise-aware classifier's features. On shapes, the largest S (1000 steps, about 10 minutes per row on 2 CPU
    cores) runs only for ``longest_rows`` (the DDPM reference, eta = 1) and the quadratic sub-sequence only for
    ``quadratic_rows``; those cells of the other rows are absent, or, with ``carry`` = (the results and samples of
    a previous run), copied from it and marked ``"carried": true`` (a point value without an interval).
    Returns (results, sample tensors)."""
    ac = make_alphas_cumprod()
    ring = ring_mixture()
    real_pts, _ = ring.sample(cfg["n_points"], torch.Generator().manual_seed(123))
    mlp = checkpoints.load("ring8_mlp")
    ddpm = checkpoints.load("shapes_ddpm16")
    clf = checkpoints.load("shapes_classifier16")
    independent = checkpoints.load("shapes_noisy_classifier16")
    real_imgs = generate_shapes(1000, 16, 1, seed=HELD_OUT_SEEDS["real16"]).images
    n = cfg["n_images"]
    out = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
           "paper_table1_cifar10_fid": PAPER_TABLE1_CIFAR10, "paper_table2_cifar10": PAPER_TABLE2_CIFAR10}
    samples = {}
    models = {
        "ring_exact": lambda x, t: ring.eps_fn(ac)(x, t),
        "ring8_mlp": lambda x, t: mlp(x, t),
    }
    with torch.no_grad():
        out["real_vs_real_shapes"] = real_vs_real(
            real_imgs, generate_shapes(n, 16, 1, seed=HELD_OUT_SEEDS["real16_floor"]).images, clf,
            independent_classifier=independent)
        log(f"real vs real: {out['real_vs_real_shapes']}")
        mmd_to_real = MMDToReference(real_pts)
        floor = [float(mmd_to_real(ring.sample(cfg["n_points"], torch.Generator().manual_seed(1000 + s))[0]))
                 for s in cfg["ring_seeds"]]
        iv = seed_range(floor)
        out["real_vs_real_ring"] = {"mmd": round(iv.value, 6), "mmd_range": [round(iv.low, 6), round(iv.high, 6)]}
        for name, eps_fn in models.items():
            table = {}
            for label, kw in _samplers(cfg["etas"]):
                row = {}
                for S in cfg["steps"]:
                    per_seed = {"mmd": [], "sliced_w2": [], "nll": [], "seconds": []}
                    for seed in cfg["ring_seeds"]:
                        g = torch.Generator().manual_seed(seed)
                        xT = torch.randn(cfg["n_points"], 2, generator=g)
                        t0 = time.perf_counter()
                        x = ddim_sample(eps_fn, xT, ac, timestep_subsequence(1000, S), generator=g, **kw)
                        per_seed["seconds"].append(time.perf_counter() - t0)
                        per_seed["mmd"].append(float(mmd_to_real(x)))
                        per_seed["sliced_w2"].append(float(sliced_wasserstein(x, real_pts)))
                        per_seed["nll"].append(float(mixture_nll(x, ring)))
                    cell = {"nfe": S, "seconds": round(per_seed["seconds"][0], 3), "seeds": list(cfg["ring_seeds"])}
                    for key, digits in (("mmd", 6), ("sliced_w2", 4), ("nll", 3)):
                        iv = seed_range(per_seed[key])
                        cell[key], cell[f"{key}_range"] = round(iv.value, digits), [round(iv.low, digits),
                                                                                    round(iv.high, digits)]
                    row[str(S)] = cell
                table[label] = row
                log(f"{name} {label}: " + ", ".join(f"S={s} mmd={v['mmd']}" for s, v in row.items()))
            out[f"table1_{name}"] = table
        longest = max(cfg["steps"])
        for kind, steps in (("uniform", cfg["steps"]), ("quadratic", cfg["quadratic_steps"])):
            table = {}
            for label, kw in _samplers(cfg["etas"]):
                if kind == "quadratic" and label not in cfg["quadratic_rows"]:
                    continue
                row = {}
                for S in steps:
                    if S == longest and label not in cfg["longest_rows"]:
                        previous = (carry[0].get("table1_shapes_ddpm16", {}).get(label, {}).get(str(S))
                                    if carry and kind == "uniform" else None)
                        if previous is not None and f"{label}|S={S}" in carry[1]:
                            row[str(S)] = {**previous, "carried": True}
                            samples[f"{label}|S={S}"] = carry[1][f"{label}|S={S}"]
                        continue
                    row[str(S)], x = _shapes_ddpm_cell(ddpm, clf, independent, real_imgs, n, S, kind, kw)
                    if kind == "uniform":
                        samples[f"{label}|S={S}"] = x[:16].contiguous()
                    log(f"shapes_ddpm16 {kind} {label} S={S}: {row[str(S)]}")
                table[label] = row
            out["table1_shapes_ddpm16" + ("" if kind == "uniform" else "_quadratic")] = table

        # Table 2: encode with the ODE, decode with the same S, mean squared error per dimension.
        # Images are mapped to [0, 1] first so the numbers compare with the paper's.
        x0_img = generate_shapes(cfg["n_table2"], 16, 1, seed=424242)
        x0_pts, _ = ring.sample(500, torch.Generator().manual_seed(9))
        t2 = {"S": list(cfg["table2_steps"]), "shapes_ddpm16": [], "ring_exact": []}
        for S in cfg["table2_steps"]:
            ts = timestep_subsequence(1000, S)
            y = x0_img.labels
            eps_fn = lambda x, t: ddpm(x, t, y)  # noqa: E731
            rec = ddim_sample(eps_fn, ddim_invert(eps_fn, x0_img.images, ac, ts), ac, ts)
            t2["shapes_ddpm16"].append(float(f"{(((rec - x0_img.images) / 2) ** 2).mean().item():.3g}"))
            e = ring.eps_fn(ac)
            rec = ddim_sample(e, ddim_invert(e, x0_pts, ac, ts), ac, ts)
            t2["ring_exact"].append(float(f"{((rec - x0_pts) ** 2).mean().item():.3g}"))
            log(f"table2 S={S}: shapes {t2['shapes_ddpm16'][-1]}, ring {t2['ring_exact'][-1]}")
        out["table2"] = t2
    return out, samples


def ddim_speed(num_images: int = 64, repeats: int = 3, steps=(1000, 50, 20, 10), log=print) -> dict:
    """Wall clock of 1000-step DDPM (eta = 1) against DDIM (eta = 0) at S steps on shapes_ddpm16: medians of
    ``repeats`` runs, and the ratios."""
    import statistics

    model = checkpoints.load("shapes_ddpm16")
    ac = make_alphas_cumprod()
    labels = torch.arange(num_images) % 4
    medians = {}
    with torch.no_grad():
        for S in steps:
            eta = 1.0 if S == max(steps) else 0.0  # the reference is DDPM: eta = 1 at the most steps
            times = []
            for r in range(repeats):
                g = torch.Generator().manual_seed(r)
                t0 = time.perf_counter()
                ddim_sample(lambda x, t: model(x, t, labels), torch.randn(num_images, 3, 16, 16, generator=g), ac,
                            timestep_subsequence(1000, S), eta=eta, generator=g)
                times.append(time.perf_counter() - t0)
            medians[S] = statistics.median(times)
            log(f"S={S} eta={eta}: median {medians[S]:.2f} s of {[round(t, 2) for t in times]}")
    ref = max(steps)
    out = {"num_images": num_images, "repeats": repeats, "median_seconds": medians,
           "speedup": {S: {"wall_clock": round(medians[ref] / medians[S], 1), "network_evaluations": ref / S}
                       for S in steps if S != ref}}
    for S, v in out["speedup"].items():
        log(f"{ref}-step DDPM / DDIM S={S}: {v['wall_clock']}x wall clock, {v['network_evaluations']:.0f}x evaluations")
    return out


# Dhariwal & Nichol (2021), Table 4: ImageNet 256x256, 250 sampling steps.
PAPER_TABLE4_IMAGENET256 = [
    {"conditional": False, "guidance": False, "scale": None, "fid": 26.21, "precision": 0.61, "recall": 0.63},
    {"conditional": False, "guidance": True, "scale": 1.0, "fid": 33.03, "precision": 0.56, "recall": 0.65},
    {"conditional": False, "guidance": True, "scale": 10.0, "fid": 12.00, "precision": 0.76, "recall": 0.44},
    {"conditional": True, "guidance": False, "scale": None, "fid": 10.94, "precision": 0.69, "recall": 0.63},
    {"conditional": True, "guidance": True, "scale": 1.0, "fid": 4.59, "precision": 0.82, "recall": 0.52},
    {"conditional": True, "guidance": True, "scale": 10.0, "fid": 9.11, "precision": 0.88, "recall": 0.32},
]
GUIDANCE_METHODS = {
    "cg_uncond": "classifier guidance (noise-aware classifier) on the unconditional model",
    "cg_cond": "classifier guidance (noise-aware classifier) on the conditional model",
    "cfg": "classifier-free guidance (scale = 1 + w)",
    "cg_uncond_clean": "classifier guidance with the *clean* classifier on the unconditional model",
    "cg_uncond_alg1": "Algorithm 1 (guided ancestral sampling, the same 50 steps) on the unconditional model",
    "cg_cond_alg1": "Algorithm 1 (guided ancestral sampling, the same 50 steps) on the conditional model",
}


def guidance_table(scales=(0.0, 0.5, 1.0, 2.0, 5.0, 10.0), n: int = 256, steps: int = 50,
                   methods=tuple(GUIDANCE_METHODS), log=print) -> tuple[dict, dict]:
    """The paper's Table 4 trend on shapes: class accuracy (clean classifier), FD, precision and recall of
    guided samples (the same x_T everywhere) for every method and scale, each with its 95% bootstrap interval
    over the ``n`` samples, and FD, precision and recall again in the independent noise-aware classifier's
    features at t = 0 (no guidance here follows its t = 0 features; the ``_clean`` rows follow the clean
    classifier's, the ruler of the first FD). Algorithm 2 (guided DDIM, eta = 0) for most rows; the ``_alg1`` rows
    run Algorithm 1 (guided ancestral sampling) at the same ``steps``, as the paper's Table 4 does at 250 steps."""
    from ..guidance import cfg_sample, classifier_log_prob_grad, guided_ddim_sample, guided_ddpm_sample

    ac = make_alphas_cumprod()
    ddpm = checkpoints.load("shapes_ddpm16")
    noisy = checkpoints.load("shapes_noisy_classifier16")
    clean = checkpoints.load("shapes_classifier16")
    real = generate_shapes(1000, 16, 1, seed=HELD_OUT_SEEDS["real16"]).images
    labels = torch.arange(n) % 4
    ts = timestep_subsequence(1000, steps)
    grads = {"noisy": lambda x, t, y: classifier_log_prob_grad(noisy, x, t, y),
             "clean": lambda x, t, y: classifier_log_prob_grad(lambda z, _t: clean(z), x, t, y)}
    out = {"config": {"scales": list(scales), "num_samples": n, "steps": steps,
                      "sampler": "DDIM eta=0 (Algorithm 2); the _alg1 rows: guided ancestral (Algorithm 1)",
                      "methods": {m: GUIDANCE_METHODS[m] for m in methods}},
           "paper_table4_imagenet256": PAPER_TABLE4_IMAGENET256}
    out["real_vs_real"] = real_vs_real(real, generate_shapes(n, 16, 1, seed=HELD_OUT_SEEDS["real16_floor"]).images,
                                       clean, independent_classifier=noisy)
    samples = {}
    for m in methods:
        rows = {}
        for s in scales:
            xT = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(7))
            t0 = time.perf_counter()
            if m == "cfg":
                with torch.no_grad():
                    x = cfg_sample(ddpm, xT, ac, ts, labels, s)
            else:
                cond = m.startswith("cg_cond")
                eps_fn = (lambda x, t: ddpm(x, t, labels)) if cond else (lambda x, t: ddpm(x, t))
                sampler = guided_ddpm_sample if m.endswith("alg1") else guided_ddim_sample
                kw = dict(generator=torch.Generator().manual_seed(8)) if m.endswith("alg1") else {}
                x = sampler(eps_fn, grads["clean" if m.endswith("clean") else "noisy"], xT, ac, ts, labels, s, **kw)
            rows[str(s)] = {**image_quality(x.detach().clamp(-1, 1), real, clean, labels, intervals=True,
                                            independent_classifier=noisy),
                            "seconds": round(time.perf_counter() - t0, 2)}
            samples[f"{m}|{s}"] = x[:16].detach().contiguous()
            log(f"{m} scale={s}: {rows[str(s)]}")
        out[m] = rows
    return out, samples


def vq_sweeps(steps: int = 600, batch_size: int = 64, betas=(0.1, 0.25, 0.5, 1.0, 2.0), bits=(4, 8, 12),
              seeds=(11, 12, 13), parts=("beta", "vocabulary", "health"), carry: tuple[dict, dict] | None = None,
              log=print) -> tuple[dict, dict]:
    """VQ-VAE's beta sweep (with dead-code restarts, the shipped recipe, so that no run sits in the dead-code
    regime), MAGVIT-v2's vocabulary sweep (VQ plain and with restarts against LFQ with and without the entropy
    penalty, D = log2 K for all) and codebook health over training (plain codebook loss, EMA codebook, dead-code
    restarts); every run has the same budget. The beta and vocabulary sweeps repeat every run over ``seeds``
    (initialisation and data order; plain VQ and LFQ without its entropy term only the first): each metric is
    the mean over seeds, with ``<metric>_range`` its smallest and largest and ``per_seed`` the runs. Only the sweeps named in ``parts`` run; with ``carry`` = (the results and
    samples of a previous run) the others are copied from it, and ``carried_parts`` names them. Returns (results,
    8 reconstructions per run, of the first seed)."""
    unknown = set(parts) - {"beta", "vocabulary", "health"}
    if unknown or not parts:
        raise ValueError(f"parts: expected some of 'beta', 'vocabulary', 'health', got {parts!r}")
    import tempfile

    from ..metrics import evaluate_autoencoder
    from ..recipes import Recipe
    from ..train import train

    device = torch.device("cpu")
    probe = generate_shapes(8, 16, 1, seed=777).images
    out = {"config": {"steps": steps, "batch_size": batch_size, "betas": list(betas), "bits": list(bits),
                      "seeds": list(seeds), "beta_sweep": "dead-code restarts on (the shipped recipe)"},
           "beta": {}, "vocabulary": {"vq": {}, "vq_restarts": {}, "lfq": {}, "lfq_no_entropy": {}}, "health": {}}
    samples = {"originals": probe}

    def run(name, config, key, seed=seeds[0]):
        recipe = Recipe(name, "VQVAE", config, task="autoencoder", data="shapes16", steps=steps,
                        batch_size=batch_size, lr=1e-3, seed=seed, description=f"sweep run {name}",
                        log_every=max(1, steps // 30))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            model, info = train(recipe, save=False, progress=False, evaluate=False, log=lambda *a: None,
                                runs_dir=tmp, device="cpu")
        metrics = {**evaluate_autoencoder(model, device), "seconds": round(time.perf_counter() - t0, 1)}
        if seed == seeds[0]:
            with torch.no_grad():
                samples[key] = model(probe).clamp(-1, 1)
        log(f"{name} seed {seed}: {metrics}")
        return metrics, info

    def over_seeds(name, config, key, seeds=seeds):
        runs = [run(name, config, key, seed)[0] for seed in seeds]
        cell = {"seeds": list(seeds), "per_seed": runs}
        for metric in ("psnr_db", "ssim", "usage", "perplexity"):
            if len(runs) == 1:  # one seed: its value, no range to give
                cell[metric] = runs[0][metric]
                continue
            iv = seed_range([r[metric] for r in runs])
            cell[metric], cell[f"{metric}_range"] = round(iv.value, 4), [iv.low, iv.high]
        return cell

    for b in betas if "beta" in parts else ():
        out["beta"][str(b)] = over_seeds(f"beta={b}", dict(num_codes=256, latent_dim=16, beta=b,
                                                            restart_dead_codes=True), f"beta|{b}")
    for n in bits if "vocabulary" in parts else ():
        for kind in ("vq", "vq_restarts", "lfq", "lfq_no_entropy"):
            cfg = dict(num_codes=2**n, latent_dim=n, quantizer="vq" if kind.startswith("vq") else "lfq",
                       entropy_weight=0.0 if kind == "lfq_no_entropy" else 0.1)
            if kind == "vq_restarts":
                cfg["restart_dead_codes"] = True
            # the comparison the notebook draws is VQ + restarts against LFQ + entropy: those over every seed;
            # plain VQ and LFQ without its entropy term collapse to a handful of codes whatever the seed: one
            out["vocabulary"][kind][str(n)] = over_seeds(f"{kind} K=2^{n}", cfg, f"{kind}|{n}",
                                                         seeds if kind in ("vq_restarts", "lfq") else seeds[:1])
    for kind, cfg in [("plain", {}), ("ema", {"ema": True}), ("restarts", {"restart_dead_codes": True})]:
        if "health" not in parts:
            break
        metrics, info = run(f"health {kind}", dict(num_codes=256, latent_dim=16, **cfg), f"health|{kind}")
        out["health"][kind] = {**metrics, "history": info["history"]}
    if carry is not None:
        out["carried_parts"] = [part for part in ("beta", "vocabulary", "health") if part not in parts]
        prefixes = {"beta": ("beta|",), "vocabulary": ("vq|", "vq_restarts|", "lfq|", "lfq_no_entropy|"),
                    "health": ("health|",)}
        for part in out["carried_parts"]:
            out[part] = carry[0][part]
            samples.update({k: v for k, v in carry[1].items() if k.startswith(prefixes[part])})
    return out, samples


def lpips_2afc(n_train: int = 4000, n_test: int = 1000, steps: int = 400, batch_size: int = 64, log=print):
    """LPIPS's lin / tune / scratch (:func:`course_lib.perceptual.lpips_variant`) trained on the course's synthetic
    2AFC set with the paper's G head and loss; held-out 2AFC agreement of every distance, the baselines (L2, SSIM,
    the unweighted feature distance) and the shipped weights (``shapes_lpips_lin``, the same lin run) included.
    Returns (results, None)."""
    from ..data.distortions import make_2afc
    from ..metrics import ssim
    from ..perceptual import LPIPS, VARIANTS
    from ..train.evaluate import two_afc_agreement
    from ..train.tasks import train_2afc

    train_set, test_set = make_2afc(n_train, seed=1), make_2afc(n_test, seed=2)
    agreement = lambda dist_fn: two_afc_agreement(dist_fn, test_set)  # noqa: E731
    out = {"config": {"n_train": n_train, "n_test": n_test, "steps": steps, "batch_size": batch_size,
                      "judgments": "synthetic: the patch with lower severity = strength x per-type weight is closer"},
           "agreement": {}, "paper_table5_2afc": PAPER_TABLE5_2AFC}
    out["agreement"]["L2"] = agreement(lambda a, b: ((a - b) ** 2).flatten(1).mean(1))
    out["agreement"]["SSIM"] = agreement(lambda a, b: 1 - ssim(a, b))
    out["agreement"]["features, unweighted"] = agreement(LPIPS("shapes", lin=False))
    out["agreement"]["shipped lin weights"] = agreement(LPIPS("shapes"))
    # the paper's "Random (Gaussian) net" row: the same trunk never trained, unweighted; three initialisations
    random_runs = [agreement(LPIPS("shapes", backbone="random", lin=False, seed=s)) for s in (0, 1, 2)]
    iv = seed_range(random_runs)
    out["agreement"]["random backbone, unweighted"] = round(iv.value, 4)
    out["random_backbone_seeds"] = {"seeds": [0, 1, 2], "agreement": random_runs, "range": [iv.low, iv.high]}
    log(f"random backbone: {random_runs}")
    for variant in VARIANTS:
        t0 = time.perf_counter()
        metric, _ = train_2afc(variant, train_set, steps, batch_size)
        out["agreement"][variant] = agreement(metric)
        out[f"{variant}_seconds"] = round(time.perf_counter() - t0, 1)
        log(f"{variant}: agreement {out['agreement'][variant]} ({out[f'{variant}_seconds']} s)")
    log(f"agreement: {out['agreement']}")
    return out, None


def vqgan_codebook(num_codes=(8,), steps: int = 2000, log=print) -> tuple[dict, dict]:
    """Notebook 05's three objectives again with a smaller codebook (same architecture, data, seed and budget as
    the shipped K=256 models): how the answer to "perceptual reconstruction loss?" changes when the code must
    leave more out. Returns (results by K and objective, reconstructions of the 8 snapshot images per run)."""
    import copy

    from ..metrics import evaluate_autoencoder32
    from ..recipes import RECIPES
    from ..train.tasks import _train_vqgan

    device = torch.device("cpu")
    out, samples = {"config": {"num_codes": list(num_codes), "steps": steps}}, {}
    for k in num_codes:
        for name in ("shapes_ae32_l2", "shapes_ae32_lpips", "shapes_vqgan32"):
            recipe = copy.deepcopy(RECIPES[name])
            recipe.config["num_codes"], recipe.steps = k, steps
            recipe.vqgan.snapshot_steps = (steps - 1,)
            recipe.vqgan.loss.disc_start = min(recipe.vqgan.loss.disc_start, steps * 3 // 10)
            t0 = time.perf_counter()
            model, info, logs = _train_vqgan(recipe, device, progress=False)
            metrics = {**evaluate_autoencoder32(model, device), "seconds": round(time.perf_counter() - t0, 1)}
            out.setdefault(str(k), {})[name] = metrics
            samples[f"{k}|{name}"] = logs["snapshots"][-1]
            samples["originals"] = logs["snapshot_images"]
            log(f"K={k} {name}: {metrics}")
    return out, samples


def ldm_compute(steps: int = 3000, snapshot_steps=(150, 300, 600, 1200, 2000, 3000), n: int = 256,
                models=("shapes_ldm32", "shapes_pixel32"), log=print) -> tuple[dict, dict]:
    """Notebook 06's FD against training compute, the LDM paper's Fig. 6 at toy scale. Each of ``models`` is
    trained with its own recipe but for ``steps`` steps (the shipped pixel recipe stops at 600; the latent one is
    the shipped run again), and each EMA snapshot at ``snapshot_steps`` is measured as the manifest measures the
    shipped models (``evaluate_ldm``: n held-out captions, 20 DDIM steps at guidance 3) with 95% bootstrap
    intervals. Compute is counted, not estimated: one training step's FLOPs (forward and backward; for the latent
    model with the frozen encoder's pass) by ``torch.utils.flop_counter``, times the steps; the autoencoder's own
    training is counted the same way and reported apart. Returns (results, samples: 8 per snapshot)."""
    import copy

    from ..ldm import LatentDiffusion
    from ..metrics import evaluate_ldm
    from ..recipes import RECIPES
    from ..train.tasks import _ldm_first_stage, _train_ldm, training_step_flops

    device = torch.device("cpu")
    out = {"config": {"steps": steps, "snapshot_steps": list(snapshot_steps), "num_samples": n,
                      "models": list(models)}, "models": {}}
    samples = {}
    for name in models:
        recipe = copy.deepcopy(RECIPES[name])
        recipe.steps = steps
        flops = training_step_flops(recipe, device)
        row = {"shipped_steps": RECIPES[name].steps, "step_flops": flops["step"],
               "first_stage_flops_per_step": flops["first_stage"], "autoencoder": recipe.autoencoder, "snapshots": []}
        if recipe.autoencoder:
            ae_recipe = RECIPES[recipe.autoencoder]
            row["autoencoder_training_flops"] = training_step_flops(ae_recipe, device)["step"] * ae_recipe.steps
        ae, scale = _ldm_first_stage(recipe, device)  # the same frozen first stage and scale the training uses

        def measure(done, ema_model):
            got = {}
            metrics = evaluate_ldm(LatentDiffusion(copy.deepcopy(ema_model).eval(), ae, scale), device, n=n,
                                   intervals=True, samples_out=got)
            row["snapshots"].append({"steps": done, "training_flops": done * flops["step"], **metrics})
            samples[f"{name}|{done}"] = got["samples"][:8].contiguous()
            log(f"{name} at {done} steps: FD {metrics['quality']['fd']} {metrics['quality']['fd_interval']}, "
                f"all {metrics['caption_following']['all']}")

        t0 = time.perf_counter()
        _, info, _ = _train_ldm(recipe, device, progress=False, snapshot_steps=tuple(snapshot_steps),
                                on_snapshot=measure)
        row.update(final_loss=info["final_loss"], training_seconds=info["wall_time_s"],
                   seconds_with_evaluation=round(time.perf_counter() - t0, 1))
        out["models"][name] = row
    return out, samples


def controlnet_table(n: int = 256, steps: int = 20, strengths=(0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
                     n_compose: int = 128, log=print) -> tuple[dict, dict]:
    """Notebook 07's measurements beyond the manifest's: the frozen base without control (colour-and-shape caption,
    and the full caption that says where in words), the IoU and FD of the shipped ControlNet against its
    conditioning scale, and two ControlNets composed on held-out two-object layouts (each mask to its own copy of
    the mask ControlNet, residuals added) against one ControlNet given both masks as one hint. n held-out hints,
    DDIM with ``steps`` steps at guidance 3, the same noise everywhere; 95% bootstrap intervals. Returns
    (results, samples: 8 per row)."""
    from torch.nn import functional as F

    from ..controlnet import (ControlledUNet, ControlPipeline, control_fidelity, held_out_controls, keep_words,
                              make_hint, mask_iou, object_mask)
    from ..ldm import LatentDiffusion
    from ..metrics import bootstrap_interval, caption_following, image_quality

    clf = checkpoints.load("shapes_classifier16")
    pipe = ControlPipeline.from_shipped("shapes_controlnet32")
    base = LatentDiffusion.from_shipped("shapes_ldm32")
    b, hints, tokens = held_out_controls(n)
    real = generate_shapes(1000, 32, 1, seed=HELD_OUT_SEEDS["control_real"]).images
    z_T = torch.randn((n, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    pool = lambda im: F.adaptive_avg_pool2d(im, 16)  # noqa: E731
    samples, out = {}, {"config": {"num_samples": n, "ddim_steps": steps, "guidance_scale": 3.0,
                                   "strengths": list(strengths), "num_compose": n_compose}}

    def row(x):
        follow = caption_following(x, b.attributes, clf, intervals=True)
        return {**control_fidelity(x, b.masks), **{k: v for k, v in follow.items() if k.startswith(("shape", "colour",
                                                                                                      "position"))},
                "quality": image_quality(pool(x), pool(real), clf, intervals=True)}

    rows = {}
    for name, caps in (("base, colour and shape caption", tokens), ("base, full caption", b.tokens)):
        x = base.sample(caps, steps, 3.0, z_T=z_T.clone())
        rows[name] = row(x)
        samples[name] = x[:8].contiguous()
        log(f"{name}: IoU {rows[name]['iou']} {rows[name]['iou_interval']}")
    out["base"] = rows
    sweep = {}
    for s in strengths:
        pipe.scales = [s]
        x = pipe.sample([hints], tokens, steps, 3.0, z_T=z_T.clone())
        sweep[str(s)] = row(x)
        samples[f"strength {s}"] = x[:8].contiguous()
        log(f"strength {s}: IoU {sweep[str(s)]['iou']}, FD {sweep[str(s)]['quality']['fd']}")
    out["strength"] = sweep
    pipe.scales = [1.0]

    # composition: held-out two-object layouts, one mask per object
    two = generate_shapes(n_compose, 32, 2, seed=HELD_OUT_SEEDS["control_hints"] + 1)
    a_hint, b_hint = make_hint((two.masks == 1).long()), make_hint((two.masks == 2).long())
    union = (two.masks > 0)
    zc = z_T[:n_compose].clone()
    cn = pipe.controlled.controlnets[0]
    compose = {}
    for label, caps in (("empty caption", torch.zeros_like(two.tokens)), ("both objects named", keep_words(two.tokens))):
        for how in ("two ControlNets, scales 1 and 1", "one ControlNet, both masks in one hint"):
            if how.startswith("two"):
                p2 = ControlPipeline(ControlledUNet(pipe.controlled.base, [cn, cn], [1.0, 1.0]), pipe.autoencoder,
                                     pipe.scale)
                x = p2.sample([a_hint, b_hint], caps, steps, 3.0, z_T=zc.clone())
            else:
                x = pipe.sample([make_hint(union.long())], caps, steps, 3.0, z_T=zc.clone())
            seg = object_mask(x)
            iou_u = mask_iou(seg, union)
            # each object's mask: the share of its pixels drawn (recall), so that "both objects there" is measured
            cover = torch.stack([(seg & (two.masks == k)).flatten(1).sum(1).double() /
                                 (two.masks == k).flatten(1).sum(1).clamp_min(1) for k in (1, 2)], 1)
            both = (cover > 0.5).all(1).double()
            key = f"{how}, {label}"
            compose[key] = {"iou_union": round(float(iou_u.mean()), 4),
                            "iou_union_interval": [round(v, 4) for v in bootstrap_interval(lambda v: v.mean(), iou_u)[1:]],
                            "both_drawn": round(float(both.mean()), 4),
                            "both_drawn_interval": [round(v, 4) for v in bootstrap_interval(lambda v: v.mean(), both)[1:]]}
            samples[f"compose|{key}"] = x[:8].contiguous()
            log(f"compose {key}: IoU with the union {compose[key]['iou_union']}, both drawn {compose[key]['both_drawn']}")
    samples["compose|hints"] = torch.stack([a_hint[:8, 0], b_hint[:8, 0]], 1).contiguous()
    out["compose"] = compose
    samples["hints"] = hints[:8].contiguous()
    return out, samples


def _mean_interval(values: torch.Tensor, digits: int = 4) -> tuple:
    """The mean of per-sample values and its 95% bootstrap interval, rounded to ``digits``: (mean, [low, high])."""
    from ..metrics import bootstrap_interval

    iv = bootstrap_interval(lambda v: v.mean(), values.double())
    return round(float(values.double().mean()), digits), [round(iv.low, digits), round(iv.high, digits)]


IMAGEN_GRID = ("shapes_base16_small_c16", "shapes_base16_small_c32", "shapes_base16_large_c16",
               "shapes_base16_large_c32", "shapes_base16_joint_c32")


def imagen_table(n: int = 256, steps: int = 20, weights=(1.0, 2.0, 4.0, 8.0, 16.0),
                 aug_levels=(0.0, 0.1, 0.2, 0.4, 0.6), cascade_w: float = 4.0, cascade_threshold: str = "static",
                 grid_w: float = 3.0, grid=IMAGEN_GRID, log=print) -> tuple[dict, dict]:
    """Notebook 08's measurements, on the captions of n held-out images (DDIM with ``steps`` steps, the same noise
    everywhere, 95% bootstrap intervals over the samples):

    1. thresholding: shapes_base16_large_c32 at each Imagen guidance weight w of ``weights`` with no, static and
       dynamic (p = 0.995) thresholding: saturation of the objects' colours, mean |x| (the shapes' black
       background keeps it near 1; a washed-out sample has less), caption following, FD at 16x16;
    2. noise-conditioning augmentation: the base model's own samples (w = ``cascade_w``, ``cascade_threshold``)
       super-resolved to 32x32 by shapes_sr32 at each of ``aug_levels``, by shapes_sr32_noaug and by the
       eps-predicting shapes_sr32_eps (level 0), beside
       the same models given the real images' pooled 16x16 views and plain bilinear upsampling
       (:func:`_super_resolution_rows`: content and detail FD, edge energy, caption following, PSNR to the input);
    3. the encoder / U-Net grid: each of ``grid`` at w = ``grid_w``, no thresholding: caption following and FD.

    Returns (results, samples: 8 per row)."""
    from ..imagen import ImagenCascade, downsample, saturation_fraction
    from ..metrics import caption_following, image_quality

    clf = checkpoints.load("shapes_classifier16")
    ref = generate_shapes(n, 32, 1, seed=HELD_OUT_SEEDS["ldm_captions"])
    real16 = generate_shapes(1000, 16, 1, seed=HELD_OUT_SEEDS["ldm_real"]).images
    z16 = torch.randn((n, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    ac = make_alphas_cumprod()

    mean_interval = _mean_interval

    def base_row(x):
        sat, sat_iv = mean_interval(saturation_fraction(x))
        contrast, contrast_iv = mean_interval(x.abs().mean(dim=(1, 2, 3)))
        follow = caption_following(x, ref.attributes, clf, intervals=True)
        return {"saturation": sat, "saturation_interval": sat_iv, "mean_abs": contrast,
                "mean_abs_interval": contrast_iv,
                "caption_following": follow,
                "quality": image_quality(x, real16, clf, intervals=True)}

    out = {"config": {"num_samples": n, "ddim_steps": steps, "guidance": "Imagen's w (w = 1: none)",
                      "percentile": 0.995, "weights": list(weights), "aug_levels": list(aug_levels),
                      "cascade_w": cascade_w, "cascade_threshold": cascade_threshold, "grid_w": grid_w}}
    real_sat, real_sat_iv = mean_interval(saturation_fraction(real16[:n]))
    out["real_images"] = {"saturation": real_sat, "saturation_interval": real_sat_iv,
                          "mean_abs": round(float(real16[:n].abs().mean()), 4),
                          "caption_following": caption_following(generate_shapes(n, 16, 1, seed=HELD_OUT_SEEDS[
                              "ldm_captions"]).images, ref.attributes, clf)}
    samples = {}

    # 1. thresholding
    base = checkpoints.load("shapes_base16_large_c32").eval()
    cascade = ImagenCascade(base, None, ac)
    table = {}
    for thr in (None, "static", "dynamic"):
        for w in weights:
            x = cascade.sample_base(ref.tokens, steps, w, thr, x_T=z16.clone())
            key = f"{thr or 'none'}|{w:g}"
            table[key] = base_row(x)
            samples[f"threshold|{key}"] = x[:8].contiguous()
            log(f"threshold {key}: saturation {table[key]['saturation']}, all-right "
                f"{table[key]['caption_following']['all']}, FD {table[key]['quality']['fd']}")
    out["thresholding"] = table

    # 2. noise-conditioning augmentation on the base model's own samples
    low = cascade.sample_base(ref.tokens, steps, cascade_w, cascade_threshold, x_T=z16.clone())
    real_low = downsample(ref.images, 2)
    samples["cascade|base samples"] = low[:8].contiguous()
    samples["cascade|real low-res"] = real_low[:8].contiguous()
    sr_models = {name: (checkpoints.load(name).eval(), aug_levels if name == "shapes_sr32" else (0.0,))
                 for name in ("shapes_sr32", "shapes_sr32_noaug", "shapes_sr32_eps")}
    out["augmentation"] = _super_resolution_rows({"base samples": low, "real low-res": real_low}, ref, sr_models,
                                                 steps, clf, samples, "cascade", log)

    # 3. the encoder / U-Net grid
    grid_rows = {}
    for name in grid:
        model = checkpoints.load(name).eval()
        x = ImagenCascade(model, None, ac).sample_base(ref.tokens, steps, grid_w, None, x_T=z16.clone())
        enc = sum(p.numel() for p in model.caption_encoder.parameters())
        grid_rows[name] = {**base_row(x), "encoder_params": enc,
                           "unet_params": sum(p.numel() for p in model.parameters()) - enc,
                           "caption_encoder": checkpoints.entry(name).get("caption_encoder") or "trained jointly"}
        samples[f"grid|{name}"] = x[:8].contiguous()
        log(f"grid {name}: all-right {grid_rows[name]['caption_following']['all']}, "
            f"FD {grid_rows[name]['quality']['fd']}")
    out["grid"] = grid_rows
    return out, samples


def _super_resolution_rows(sources: dict, ref, sr_models: dict, steps: int, clf, samples: dict, prefix: str,
                           log=print) -> dict:
    """Each source's 16x16 images ({name: (n, 3, 16, 16)}, for the captions of ``ref``) brought to 32x32 by plain
    bilinear upsampling and by each super-resolution model ({name: (model, levels)}) at each of its augmentation
    levels (DDIM with ``steps`` steps, w = 1, the same x_T for every row): FD of the result pooled to 16x16 (the
    content), FD at 32x32 (fine detail), gradient energy against real 32x32 images (1 = as much edge and texture;
    noise raises it, blur lowers it), caption following, and PSNR of the pooled result to the input it was given
    (how closely it keeps it), with 95% bootstrap intervals. Adds 8 images per row to ``samples``."""
    from torch.nn import functional as F

    from ..imagen import ImagenCascade, downsample, upsample
    from ..metrics import caption_following, gradient_energy, image_quality, psnr

    n = ref.tokens.shape[0]
    real32 = generate_shapes(1000, 32, 1, seed=HELD_OUT_SEEDS["ldm_real"]).images
    real16 = generate_shapes(1000, 16, 1, seed=HELD_OUT_SEEDS["ldm_real"]).images
    z32 = torch.randn((n, 3, 32, 32), generator=torch.Generator().manual_seed(1))
    energy_real = gradient_energy(real32).mean()

    mean_interval = _mean_interval

    def row(y, low):
        energy, energy_iv = mean_interval(gradient_energy(y) / energy_real, 3)
        kept, kept_iv = mean_interval(psnr(downsample(y, 2), low), 2)
        q16 = image_quality(F.adaptive_avg_pool2d(y, 16), real16, clf, intervals=True)
        q32 = image_quality(y, real32, clf, intervals=True)
        follow = caption_following(y, ref.attributes, clf, intervals=True)
        return {"fd16": q16["fd"], "fd16_interval": q16["fd_interval"], "fd32": q32["fd"],
                "fd32_interval": q32["fd_interval"], "gradient_energy": energy, "gradient_energy_interval": energy_iv,
                "psnr_to_input": kept, "psnr_to_input_interval": kept_iv,
                "all_right": follow["all"], "all_right_interval": follow["all_interval"]}

    rows = {}
    for source, lows in sources.items():
        y = upsample(lows, 32).clamp(-1, 1)
        rows[f"{source}|bilinear upsampling"] = row(y, lows)
        samples[f"{prefix}|{source}|bilinear upsampling"] = y[:8].contiguous()
        for name, (model, levels) in sr_models.items():
            for level in levels:
                sr = ImagenCascade(None, model)
                y = sr.super_resolve(lows, ref.tokens, level, steps, 1.0, generator=torch.Generator().manual_seed(2),
                                     x_T=z32.clone())
                key = f"{source}|{name}|{level:g}"
                rows[key] = row(y, lows)
                samples[f"{prefix}|{key}"] = y[:8].contiguous()
                log(f"{prefix} {key}: FD16 {rows[key]['fd16']}, FD32 {rows[key]['fd32']}, "
                    f"energy {rows[key]['gradient_energy']}, PSNR to input {rows[key]['psnr_to_input']}")
    return rows


def imagen_flawed(n: int = 256, steps: int = 20, aug_levels=(0.0, 0.2, 0.4, 0.6), log=print) -> tuple[dict, dict]:
    """Notebook 08's test of when noise-conditioning augmentation matters: the super-resolution models given
    *flawed* 16x16 samples, on the captions of n held-out images — the weak base shapes_base16_small_c16 at w = 3
    (FD 63 at 16x16), and the good base shapes_base16_large_c32 at w = 16 without thresholding (saturated) and at
    w = 4 with dynamic thresholding (washed out) — each brought to 32x32 by bilinear upsampling, by
    shapes_sr32_noaug and by shapes_sr32 at each of ``aug_levels`` (:func:`_super_resolution_rows`). Returns
    (results, samples: 8 per row)."""
    from ..imagen import ImagenCascade

    clf = checkpoints.load("shapes_classifier16")
    ref = generate_shapes(n, 32, 1, seed=HELD_OUT_SEEDS["ldm_captions"])
    z16 = torch.randn((n, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    flawed = {"weak base (small_c16, w = 3)": ("shapes_base16_small_c16", 3.0, None),
              "saturated (large_c32, w = 16, none)": ("shapes_base16_large_c32", 16.0, None),
              "washed out (large_c32, w = 4, dynamic)": ("shapes_base16_large_c32", 4.0, "dynamic")}
    sources, samples = {}, {}
    for source, (name, w, threshold) in flawed.items():
        sources[source] = ImagenCascade(checkpoints.load(name).eval(), None).sample_base(ref.tokens, steps, w, threshold,
                                                                                        x_T=z16.clone())
        samples[f"flawed|{source}"] = sources[source][:8].contiguous()
    sr_models = {"shapes_sr32_noaug": (checkpoints.load("shapes_sr32_noaug").eval(), (0.0,)),
                 "shapes_sr32": (checkpoints.load("shapes_sr32").eval(), aug_levels)}
    out = {"config": {"num_samples": n, "ddim_steps": steps, "aug_levels": list(aug_levels),
                      "sources": {k: {"model": m, "w": w, "threshold": t} for k, (m, w, t) in flawed.items()}},
           "rows": _super_resolution_rows(sources, ref, sr_models, steps, clf, samples, "flawed", log)}
    return out, samples


# notebook 09's model sizes: (width D, blocks, heads), the paper's S / B / L / XL at toy scale
DIT_SIZES = {"S": (64, 2, 4), "M": (96, 4, 4), "B": (128, 6, 4)}


def dit_table(steps: int = 2000, n: int = 256, sizes=("S", "M", "B"), patch_sizes=(4, 2, 1), skip=(("B", 1),),
              ablation_size: str = "M", sampling_steps=(5, 10, 20, 50, 100, 250), match_width: int = 144,
              match_steps: int = 3000, log=print) -> tuple[dict, dict]:
    """Notebook 09's measurements, every DiT trained like the shipped ``shapes_dit`` (its data, batch, learning rate,
    EMA and seed; the latents encoded once and shared) but for ``steps`` steps, and measured as the manifest measures
    the shipped model (:func:`course_lib.metrics.evaluate_ldm`: n held-out shape labels, DDIM 20 steps, the same
    noise) without guidance, as the paper's tables are, with 95% bootstrap intervals:

    - the scaling grid: adaLN-Zero at each of ``sizes`` x ``patch_sizes`` (less ``skip``), FD against Gflops
      (``dit_gflops``) and the Pearson correlation of FD with log Gflops, beside the paper's from its Table 4;
    - the conditioning ablation (the paper's Table 4 / Fig. 5): the four blocks at ``ablation_size``/2, loss curves;
    - more sampling steps against a bigger model: the /2 models sampled with each of ``sampling_steps``, FD against
      the sampling Gflops per image;
    - DiT against notebook 06's UNet ``shapes_ldm32`` at about its Gflops: a DiT of width ``match_width`` (4 blocks,
      2x2 patches) trained for ``match_steps`` steps (the UNet's), the shipped ``shapes_dit`` and the UNet, at
      guidance 1 and 3.

    Returns (results, samples: 8 per trained model)."""
    import copy

    from ..dit import PAPER_CONDITIONING_FID, PAPER_FID_GFLOPS, pearson, pearson_interval, sampling_gflops
    from ..ldm import LatentDiffusion
    from ..metrics import count_flops, evaluate_ldm
    from ..nets.dit import CONDITIONINGS, dit_gflops
    from ..recipes import RECIPES
    from ..train.tasks import _dit_step_loss, _ldm_first_stage, _train_ldm

    device = torch.device("cpu")
    base = RECIPES["shapes_dit"]
    ae, scale = _ldm_first_stage(base, device)
    samples, models = {}, {}

    def measure(model, guidance=1.0, ddim_steps=20, key=None):
        got = {}
        m = evaluate_ldm(LatentDiffusion(model, ae, scale), device, n=n, steps=ddim_steps, guidance_scale=guidance,
                         intervals=True, samples_out=got)
        if key is not None:
            samples[key] = got["samples"][:8].contiguous()
        q, f = m["quality"], m["caption_following"]
        return {"fd": q["fd"], "fd_interval": q["fd_interval"], "precision": q["precision"], "recall": q["recall"],
                "shape": f["shape"], "shape_interval": f["shape_interval"], "seconds_per_step": m["seconds_per_step"]}

    def train(label, size, patch, conditioning="adaln_zero", n_steps=steps):
        if label in models:
            return models[label]
        width, depth, heads = DIT_SIZES[size] if isinstance(size, str) else size
        recipe = copy.deepcopy(base)
        recipe.name, recipe.steps = f"dit_{label}", n_steps
        recipe.config = {**base.config, "hidden_size": width, "depth": depth, "num_heads": heads,
                         "patch_size": patch, "conditioning": conditioning}
        model, info, log_tensors = _train_ldm(recipe, device, progress=False, step_loss=_dit_step_loss)
        row = {"size": size if isinstance(size, str) else None, "hidden_size": width, "depth": depth,
               "patch_size": patch, "conditioning": conditioning, "tokens": (8 // patch) ** 2, "steps": n_steps,
               "gflops": round(dit_gflops(model), 6), "params": sum(p.numel() for p in model.parameters()),
               "final_loss": info["final_loss"], "training_seconds": info["wall_time_s"],
               "curve_steps": log_tensors["curve_steps"].tolist(),
               "curve_loss": [round(v, 5) for v in log_tensors["curve_loss"].tolist()],
               **measure(model, key=label)}
        log(f"{label}: {row['gflops']:.4f} Gflops, {row['params']} params, loss {row['final_loss']}, FD {row['fd']} "
            f"{row['fd_interval']}, shape {row['shape']}, {row['training_seconds']} s")
        models[label] = (model, row)
        return models[label]

    out = {"config": {"steps": steps, "num_samples": n, "ddim_steps": 20, "guidance_scale": 1.0,
                      "sizes": {k: DIT_SIZES[k] for k in sizes}, "patch_sizes": list(patch_sizes),
                      "skipped": [list(s) for s in skip], "ablation_size": ablation_size, "batch_size": base.batch_size,
                      "lr": base.lr, "seed": base.seed, "flops_convention": "torch FlopCounterMode: 2 per multiply-add"}}
    grid = {}
    for size in sizes:
        for patch in patch_sizes:
            if (size, patch) not in skip:
                grid[f"{size}/{patch}"] = train(f"{size}/{patch}", size, patch)[1]
    out["grid"] = grid
    logs = [math.log(r["gflops"]) for r in grid.values()]
    r = pearson(logs, [row["fd"] for row in grid.values()]) if len(grid) >= 2 else float("nan")
    paper_r = pearson([math.log(g) for g, _ in PAPER_FID_GFLOPS.values()], [f for _, f in PAPER_FID_GFLOPS.values()])
    out["correlation"] = {"pearson_log_gflops_fd": round(r, 4), "num_models": len(grid),
                          "interval": ([round(v, 4) for v in pearson_interval(r, len(grid))]
                                       if len(grid) >= 4 and abs(r) < 1 else None),
                          "paper_pearson_log_gflops_fid": round(paper_r, 4),
                          "paper_interval": [round(v, 4) for v in pearson_interval(paper_r, len(PAPER_FID_GFLOPS))]}
    log(f"Pearson(log Gflops, FD) = {r:.3f} over {len(grid)} models (paper, from its table: {paper_r:.3f})")

    ablation = {}
    for c in CONDITIONINGS:
        label = f"{ablation_size}/2" if c == "adaln_zero" else f"{ablation_size}/2 {c}"
        ablation[c] = dict(train(label, ablation_size, 2, c)[1])
        ablation[c]["paper_gflops_fid"] = list(PAPER_CONDITIONING_FID[c])
    out["ablation"] = ablation

    sweep = {}
    for size in sizes:
        label = f"{size}/2"
        if label not in models:
            continue
        model, row = models[label]
        sweep[label] = []
        for k in sampling_steps:
            m = measure(model, ddim_steps=k)
            sweep[label].append({"ddim_steps": k, "sampling_gflops": round(sampling_gflops(row["gflops"], k), 5), **m})
            log(f"{label} at {k} DDIM steps: FD {m['fd']} {m['fd_interval']}")
    out["sampling_steps"] = sweep

    unet = LatentDiffusion.from_shipped("shapes_ldm32").unet
    tokens = generate_shapes(1, 32, 1, seed=0).tokens
    with torch.no_grad():
        unet_flops, _ = count_flops(unet, torch.zeros(1, 4, 8, 8), torch.full((1,), 500), tokens)
    shipped = checkpoints.load("shapes_dit")
    match_model, match_row = train(f"D{match_width}/2", (match_width, 4, 4), 2, n_steps=match_steps)
    versus = {}
    for name, model, gflops in (("shapes_ldm32", unet, unet_flops / 1e9), ("shapes_dit", shipped, dit_gflops(shipped)),
                                (f"DiT D{match_width}/2, {match_steps} steps", match_model, match_row["gflops"])):
        versus[name] = {"gflops": round(gflops, 6), "params": sum(p.numel() for p in model.parameters()),
                        **{f"guidance_{w:g}": measure(model, guidance=w) for w in (1.0, 3.0)}}
        log(f"{name}: {versus[name]['gflops']:.4f} Gflops, FD at w=1 {versus[name]['guidance_1']['fd']}, at w=3 "
            f"{versus[name]['guidance_3']['fd']}")
    out["versus_unet"] = versus
    return out, samples


def ldm_scratch_table(n: int = 256, steps: int = 20, guidances=(3.0, 1.0),
                      models=("shapes_ldm32", "shapes_mini_ldm32"), log=print) -> tuple[dict, dict]:
    """Notebook 10's comparison: each shipped caption model on the same n held-out captions (DDIM ``steps``, the same
    starting noise) at each guidance scale: FD and caption following with their 95% bootstrap intervals; size and
    training cost from the manifest. Returns (results, samples: 16 per model and scale)."""
    from ..ldm import LatentDiffusion
    from ..metrics import evaluate_ldm

    out, samples = {"num_samples": n, "ddim_steps": steps, "guidance_scales": list(guidances)}, {}
    for name in models:
        pipe = LatentDiffusion.from_shipped(name)
        e = checkpoints.entry(name)
        out[name] = {"params": e["num_params"], "train_steps": e["steps"], "train_s": e["wall_time_s"]}
        for w in guidances:
            got = {}
            m = evaluate_ldm(pipe, "cpu", n=n, steps=steps, guidance_scale=w, intervals=True, samples_out=got)
            cf, q = m["caption_following"], m["quality"]
            out[name][f"guidance_{w:g}"] = {
                "sampling_s_per_step": m["seconds_per_step"], "fd": {"value": q["fd"], "interval": q["fd_interval"]},
                "caption_all": {"value": cf["all"], "interval": cf["all_interval"]},
                "words": {k: cf[k] for k in ("shape", "colour", "position")}}
            samples[f"{name}_guidance_{w:g}"] = got["samples"][:16].half()
            log(f"{name} at guidance {w:g}: FD {q['fd']} {q['fd_interval']}, all words {cf['all']} {cf['all_interval']}")
    return out, samples


# name -> (run(quick) -> (results, samples or None), file stem of the results, file stem of the samples)
SWEEPS = {
    "ddim": (lambda quick, carry=None: ddim_tables(QUICK if quick else FULL, carry=carry), "ddim_tables",
             "ddim_samples"),
    "ddim-fill": (lambda quick, carry: ddim_fill_carried(FULL, carry), "ddim_tables", "ddim_samples"),
    "ddim-speed": (lambda quick: (ddim_speed(repeats=1 if quick else 3, num_images=16 if quick else 64,
                                             steps=(100, 10) if quick else (1000, 50, 20, 10)), None),
                   "ddim_speed", None),
    "guidance": (lambda quick: guidance_table(**(dict(scales=(0.0, 5.0), n=32, steps=10) if quick else {})),
                 "guidance_table", "guidance_samples"),
    "lpips": (lambda quick: lpips_2afc(**(dict(n_train=256, n_test=128, steps=20, batch_size=16) if quick else {})),
              "lpips_2afc", None),
    "vqgan-codebook": (lambda quick: vqgan_codebook(steps=30 if quick else 2000), "vqgan_codebook", "vqgan_codebook_samples"),
    "ldm-compute": (lambda quick: ldm_compute(**(dict(steps=20, snapshot_steps=(10, 20), n=16) if quick else {})),
                    "ldm_compute", "ldm_compute_samples"),
    "controlnet": (lambda quick: controlnet_table(**(dict(n=16, steps=4, strengths=(0.0, 1.0), n_compose=8)
                                                     if quick else {})), "controlnet_table", "controlnet_samples"),
    "imagen": (lambda quick: imagen_table(**(dict(n=16, steps=4, weights=(1.0, 16.0), aug_levels=(0.0, 0.4))
                                             if quick else {})), "imagen_table", "imagen_samples"),
    "imagen-flawed": (lambda quick: imagen_flawed(**(dict(n=16, steps=4, aug_levels=(0.0, 0.4)) if quick else {})),
                      "imagen_flawed", "imagen_flawed_samples"),
    "dit": (lambda quick: dit_table(**(dict(steps=20, n=16, sizes=("S",), patch_sizes=(4, 2), ablation_size="S",
                                             sampling_steps=(5, 10), match_width=64, match_steps=20)
                                        if quick else {})), "dit_table", "dit_samples"),
    "ldm-scratch": (lambda quick: ldm_scratch_table(**(dict(n=16, steps=4) if quick else {})), "ldm_scratch_table",
                    "ldm_scratch_samples"),
    "vq": (lambda quick, carry=None, parts=("beta", "vocabulary", "health"): vq_sweeps(
        **(dict(steps=60, batch_size=32, betas=(0.25, 2.0), bits=(4, 8), seeds=(11, 12)) if quick else {}),
        parts=parts, carry=carry), "vq_sweeps", "vq_samples"),
}


def main(argv=None):
    p = argparse.ArgumentParser(prog="./course experiments")
    p.add_argument("name", choices=list(SWEEPS))
    p.add_argument("--quick", action="store_true", help="reduced sweep (a minute)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--carry", action="store_true",
                   help="ddim and vq: copy what this run skips (ddim: S = 1000 of most rows; vq: the parts not named "
                        "by --parts) from the shipped results, marked as carried")
    p.add_argument("--parts", nargs="+", choices=("beta", "vocabulary", "health"),
                   help="vq only: run these sweeps (default: all three)")
    a = p.parse_args(argv)
    if a.name == "ddim-fill" and a.quick:
        p.error("--quick: ddim-fill measures the carried cells of the shipped full tables; it has no reduced form")
    a.carry = a.carry or a.name == "ddim-fill"  # it only ever completes the shipped tables
    if a.carry and a.name not in ("ddim", "ddim-fill", "vq"):
        p.error(f"--carry: only the ddim and vq sweeps skip cells, got {a.name!r}")
    if a.parts and a.name != "vq":
        p.error(f"--parts: only the vq sweep has parts, got {a.name!r}")
    if a.parts and not a.carry:
        p.error("--parts: needs --carry, so that the sweeps not run come from the shipped results")
    torch.manual_seed(0)
    run, results_stem, samples_stem = SWEEPS[a.name]
    t0 = time.time()
    if a.carry:
        from safetensors.torch import load_file

        from .. import results_path

        previous = (json.loads(results_path(f"{results_stem}.json").read_text()),
                    load_file(str(results_path(f"{samples_stem}.safetensors"))))
        extra = dict(parts=tuple(a.parts)) if a.parts else {}
        results, samples = run(a.quick, carry=previous, **extra)
    else:
        results, samples = run(a.quick)
    results["wall_time_s"] = round(time.time() - t0, 1)
    results["command"] = f"./course experiments {a.name}" + (" --quick" if a.quick else "") + \
        (" --carry" if a.carry and a.name != "ddim-fill" else "") + (" --parts " + " ".join(a.parts) if a.parts else "")
    results["torch_threads"] = torch.get_num_threads()
    suffix = "_quick" if a.quick else ""
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{results_stem}{suffix}.json"
    checkpoints.write_atomic(path, lambda tmp: tmp.write_text(json.dumps(results, indent=1) + "\n"))
    if samples_stem is not None:
        tensors = {k: v.contiguous() for k, v in samples.items()}
        checkpoints.write_atomic(a.out / f"{samples_stem}{suffix}.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    print(f"wrote {path} in {results['wall_time_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
