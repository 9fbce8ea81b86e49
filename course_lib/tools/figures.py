"""Regenerate the README's figures in img/: ``./course figures [NAME.png ...]`` (all by default)."""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .. import checkpoints, viz  # noqa: E402
from ..data import HELD_OUT_SEEDS, generate_shapes  # noqa: E402
from ..diffusion import ddim_sample  # noqa: E402
from ..schedules import make_alphas_cumprod, timestep_subsequence  # noqa: E402



def shapes_world(path: Path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 4.4), gridspec_kw={"width_ratios": [1.1, 1]})
    for row, size in enumerate((16, 32)):
        b = generate_shapes(8, size, (1, 2), seed=row)
        axes[row, 0].imshow(viz.image_grid(b.images, nrow=8), interpolation="nearest")
        axes[row, 0].set_title(f"{size}x{size}", fontsize=9)
        axes[row, 0].set_axis_off()
        axes[row, 1].set_axis_off()
        axes[row, 1].text(0, 0.5, "\n".join(f"{i}: {c}" for i, c in enumerate(b.captions)), fontsize=7.5,
                          va="center", family="monospace", transform=axes[row, 1].transAxes)
    fig.suptitle("shapes world: images and their captions (generated from a seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ddpm_samples(path: Path):
    model = checkpoints.load("shapes_ddpm16")
    ac = make_alphas_cumprod()
    labels = torch.arange(4).repeat_interleave(8)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.2))
    for ax, (title, steps, eta) in zip(axes, [("1000-step ancestral (eta=1)", 1000, 1.0),
                                             ("DDIM 50 steps (eta=0)", 50, 0.0), ("DDIM 20 steps (eta=0)", 20, 0.0)]):
        g = torch.Generator().manual_seed(0)
        xT = torch.randn(32, 3, 16, 16, generator=g)
        x = ddim_sample(lambda x, t: model(x, t, labels), xT, ac, timestep_subsequence(1000, steps), eta=eta,
                        generator=g)
        viz.show_images(x, nrow=8, ax=ax, title=title)
    fig.suptitle("shapes_ddpm16, rows asked for: circle, square, triangle, cross")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ddim_trajectories(path: Path):
    """Notebook 01: paths of the exact-score sampler on the ring of 8 Gaussians, deterministic DDIM against eta = 1."""
    from ..data import ring_mixture

    mix, ac = ring_mixture(), make_alphas_cumprod()
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax, eta, title in ((axes[0], 0.0, "DDIM, eta = 0 (deterministic)"), (axes[1], 1.0, "eta = 1 (DDPM-like)")):
        g = torch.Generator().manual_seed(0)
        x_T = torch.randn(300, 2, generator=g, dtype=torch.float64)
        _, traj = ddim_sample(mix.eps_fn(ac), x_T, ac, timestep_subsequence(1000, 50), eta=eta, generator=g,
                              return_trajectory=True)
        viz.density_contours(ax, mix.log_prob)
        viz.plot_trajectories(traj, ax=ax, max_paths=60)
        ax.set_title(title, fontsize=10)
    fig.suptitle("sampling paths, 50 steps, exact eps* of the ring of 8 Gaussians")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def guidance_sweep(path: Path):
    """Notebook 02: classifier-free guidance on shapes_ddpm16, one row per scale."""
    from ..guidance import cfg_sample

    model, ac = checkpoints.load("shapes_ddpm16"), make_alphas_cumprod()
    y = torch.arange(4).repeat_interleave(4)
    scales = (0.0, 1.0, 3.0, 7.0)
    fig, axes = plt.subplots(len(scales), 1, figsize=(8, 1.2 * len(scales) + 0.4))
    for ax, s in zip(axes, scales):
        g = torch.Generator().manual_seed(0)
        x = cfg_sample(model, torch.randn(16, 3, 16, 16, generator=g), ac, timestep_subsequence(1000, 20), y, s)
        viz.show_images(x, nrow=16, ax=ax, title=f"guidance scale {s:g}")
    fig.suptitle("classifier-free guidance; columns ask for circle, square, triangle, cross (4 each)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def codebook_usage(path: Path):
    """Notebook 03/05: how often each code is used on 1000 held-out images, sorted."""
    from ..quantize import codebook_usage as usage

    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    for ax, (name, size) in zip(axes, (("shapes_vqvae16", 16), ("shapes_vqgan32", 32))):
        model = checkpoints.load(name)
        x = generate_shapes(1000, size, 1, seed=HELD_OUT_SEEDS["autoencoder16"]).images
        with torch.no_grad():
            _, idx, _ = model.quantize(model.encode(x))
        counts = torch.bincount(idx.flatten(), minlength=model.config.num_codes).sort(descending=True).values
        u = usage(idx, model.config.num_codes)
        ax.bar(range(len(counts)), counts.numpy(), width=1.0, color=viz.TERM_COLORS["codebook"])
        ax.set_yscale("log")
        ax.set_title(f"{name}: perplexity {u['perplexity']:.0f} of {model.config.num_codes} codes", fontsize=9)
        ax.set_xlabel("code, by frequency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def lpips_maps(path: Path):
    """Notebook 04: LPIPS's spatial map for three distortions of the same image."""
    from ..data.distortions import distort
    from ..perceptual import LPIPS

    metric = LPIPS("shapes", lin=False)
    x = generate_shapes(1, 32, (1, 2), seed=12).images
    fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
    axes[0, 0].imshow(viz.to_image(x[0]), interpolation="nearest")
    axes[0, 0].set_title("reference", fontsize=9)
    axes[1, 0].set_axis_off()
    for col, kind in enumerate(("blur", "noise", "shift"), start=1):
        d = distort(x, kind, 0.6, torch.Generator().manual_seed(0))
        with torch.no_grad():
            m = metric(x, d, spatial=True)[0]
            dist = metric(x, d).item()
        axes[0, col].imshow(viz.to_image(d[0]), interpolation="nearest")
        axes[0, col].set_title(f"{kind}: L2 {((d - x) ** 2).mean():.3f}", fontsize=9)
        axes[1, col].imshow(m, cmap="magma", interpolation="nearest")
        axes[1, col].set_title(f"LPIPS map, d = {dist:.3f}", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def vqgan_reconstructions(path: Path):
    """Notebook 05: the three objectives on the same held-out images."""
    from ..demos.vqgan import AUTOENCODERS

    x = generate_shapes(8, 32, 1, seed=HELD_OUT_SEEDS["autoencoder32"]).images
    fig, axes = plt.subplots(len(AUTOENCODERS) + 1, 1, figsize=(8, 5))
    viz.show_images(x, nrow=8, ax=axes[0], title="originals")
    m = checkpoints.manifest()
    for ax, (name, label) in zip(axes[1:], AUTOENCODERS.items()):
        with torch.no_grad():
            r = checkpoints.load(name)(x).clamp(-1, 1)
        viz.show_images(r, nrow=8, ax=ax, title=f"{label}: held-out PSNR {m[name]['metrics']['psnr_db']} dB, "
                                                 f"LPIPS {m[name]['metrics']['lpips']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def attention_maps(path: Path):
    """Notebook 06: where each word of a caption looks, in the latent diffusion model's first cross-attention."""
    from ..data import VOCAB, encode_caption
    from ..ldm import LatentDiffusion

    pipe = LatentDiffusion.from_shipped("shapes_ldm32")
    caption = "large red circle top left"
    tokens = encode_caption(caption)[None]
    image, maps = pipe.sample_with_attention(tokens, steps=20, generator=torch.Generator().manual_seed(1))
    words = [VOCAB[i] for i in tokens[0].tolist() if i]
    fig, axes = plt.subplots(1, len(words) + 1, figsize=(12, 2.6))
    axes[0].imshow(viz.to_image(image[0]), interpolation="nearest")
    axes[0].set_title(f"'{caption}'", fontsize=8)
    for ax, (pos, w) in zip(axes[1:], enumerate(words, start=1)):
        viz.attention_overlay(ax, image[0], maps["up0"][0, -1, pos])
        ax.set_title(f"'{w}'", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle("cross-attention of each word (last layer, up0 at 8x8; last DDIM step; mean over heads)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def controlnet_masks(path: Path):
    """Notebook 07: held-out masks, the frozen latent diffusion model without and with the shipped ControlNet."""
    from ..controlnet import ControlPipeline, control_fidelity, held_out_controls

    pipe = ControlPipeline.from_shipped("shapes_controlnet32")
    held, hints, tokens = held_out_controls(8)
    z_T = torch.randn((8, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    rows = [(hints * 2 - 1, "hint: a held-out object's mask (caption: its colour and shape only)")]
    for s, label in ((0.0, "frozen shapes_ldm32 (strength 0)"), (1.0, "with the ControlNet")):
        pipe.scales = [s]
        x = pipe.sample([hints], tokens, steps=20, z_T=z_T.clone())
        rows.append((x, f"{label}: IoU {control_fidelity(x, held.masks, intervals=False)['iou']:.2f}"))
    fig, axes = plt.subplots(3, 1, figsize=(8, 3.6))
    for ax, (x, title) in zip(axes, rows):
        viz.show_images(x, nrow=8, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def imagen_cascade(path: Path):
    """Notebook 08: the base model at w = 16 without, with static and with dynamic thresholding (the same captions
    and noise), and the cascade's 32x32 results from the w = 4 static samples."""
    from ..imagen import ImagenCascade, saturation_fraction

    cascade = ImagenCascade(checkpoints.load("shapes_base16_large_c32"), checkpoints.load("shapes_sr32"))
    ref = generate_shapes(8, 16, 1, seed=HELD_OUT_SEEDS["ldm_captions"])
    z16 = torch.randn((8, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    rows = []
    for thr in (None, "static", "dynamic"):
        x = cascade.sample_base(ref.tokens, 20, 16.0, thr, x_T=z16.clone())
        rows.append((viz.enlarge(x, 32),
                     f"16x16 base, w = 16, {thr or 'no'} thresholding: saturation {saturation_fraction(x).mean():.2f}, "
                     f"mean |x| {x.abs().mean():.2f}"))
    low = cascade.sample_base(ref.tokens, 20, 4.0, "static", x_T=z16.clone())
    high = cascade.super_resolve(low, ref.tokens, 0.2, 20, generator=torch.Generator().manual_seed(1))
    rows += [(viz.enlarge(low, 32), "16x16 base, w = 4, static"),
             (high, "32x32: shapes_sr32 on those samples, augmentation level 0.2")]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.3 * len(rows)))
    for ax, (x, title) in zip(axes, rows):
        viz.show_images(x, nrow=8, ax=ax, title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dit_scaling(path: Path):
    """Notebook 09: FD against Gflops of the scaling grid (``./course experiments dit``'s stored results), and the
    shipped DiT's samples of each class."""
    import json

    from .. import results_path
    from ..data import SHAPES
    from ..ldm import LatentDiffusion

    res = json.loads(results_path("dit_table.json").read_text())
    pipe = LatentDiffusion.from_shipped("shapes_dit")
    labels = torch.arange(12) % len(SHAPES)
    x = pipe.sample(labels, steps=20, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    fig, (ax_g, ax_s) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 1.6]})
    for key, r in res["grid"].items():
        viz.interval_errorbar(ax_g, [r["gflops"]], [r["fd"]], [r["fd_interval"]],
                              fmt={4: "s", 2: "o", 1: "^"}[r["patch_size"]],
                              color={"S": "C0", "M": "C1", "B": "C2"}[r["size"]], capsize=2)
        ax_g.annotate(key, (r["gflops"], r["fd"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax_g.set_xscale("log")
    ax_g.set_xlabel("Gflops per forward pass (log)", fontsize=8)
    ax_g.set_ylabel("FD, 95% interval", fontsize=8)
    corr = res["correlation"]
    ax_g.set_title(f"DiT grid at equal steps: r(log Gflops, FD) = {corr['pearson_log_gflops_fd']:.2f} "
                   f"(paper {corr['paper_pearson_log_gflops_fid']:.2f})", fontsize=9)
    viz.show_images(x, nrow=6, ax=ax_s, title="shapes_dit, guidance 3: " + ", ".join(SHAPES) + ", ...")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


FIGURES = {"shapes_world.png": shapes_world, "shapes_ddpm16_samples.png": ddpm_samples,
           "ddim_trajectories.png": ddim_trajectories, "guidance_sweep.png": guidance_sweep,
           "codebook_usage.png": codebook_usage, "lpips_maps.png": lpips_maps,
           "vqgan_reconstructions.png": vqgan_reconstructions, "attention_maps.png": attention_maps,
           "controlnet_masks.png": controlnet_masks, "imagen_cascade.png": imagen_cascade,
           "dit_scaling.png": dit_scaling}


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="./course figures", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help=f"figures to draw (default: all): {', '.join(FIGURES)}")
    p.add_argument("--out", type=Path, default=Path.cwd() / "img", help="folder to write (default: ./img)")
    a = p.parse_args(argv)
    names = a.names or list(FIGURES)
    unknown = set(names) - set(FIGURES)
    if unknown:
        print(f"unknown figure(s) {sorted(unknown)}; choose from {sorted(FIGURES)}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        torch.manual_seed(0)
        FIGURES[name](a.out / name)
        print(f"wrote {a.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
