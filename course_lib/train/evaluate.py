"""How each task's model is measured for its manifest entry (the numbers the notebooks print beside the paper's)."""
from __future__ import annotations

import math
import time

import torch

from .. import checkpoints
from ..data import HELD_OUT_SEEDS, SHAPES, generate_shapes, ring_mixture
from ..diffusion import ddim_sample, q_sample
from ..metrics import evaluate_ldm
from ..recipes import Recipe
from ..schedules import make_alphas_cumprod, timestep_subsequence
from .loops import _batch, _prior_codes, corrupt

__all__ = ["two_afc_agreement", "TWO_AFC_SETS"]


def two_afc_agreement(metric, test_set: dict) -> float:
    """Held-out 2AFC agreement: the fraction of triplets where the distance calls the judged-closer patch closer
    (ties count half)."""
    with torch.no_grad():
        d0, d1 = metric(test_set["ref"], test_set["p0"]), metric(test_set["ref"], test_set["p1"])
    pred = (d1 < d0).float() + 0.5 * (d1 == d0).float()
    return round(float(1 - (pred - test_set["judge"]).abs().mean()), 4)


TWO_AFC_SETS = {"train": (4000, 1), "test": (1000, 2)}  # (size, seed of data.distortions.make_2afc)


@torch.no_grad()
def _evaluate_lpips_weights(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    from ..data.distortions import make_2afc
    from ..perceptual import LPIPS

    n, seed = TWO_AFC_SETS["test"]
    metric = LPIPS("shapes", lin=False).set_weights(model())
    return {"two_afc_agreement": two_afc_agreement(metric, make_2afc(n, seed=seed)), "test_set": [n, seed]}


@torch.no_grad()
def _evaluate_ldm(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    from ..ldm import LatentDiffusion

    info = info or checkpoints.entry(recipe.name)
    ae = checkpoints.load(info["autoencoder"], device=device) if info.get("autoencoder") else None
    return evaluate_ldm(LatentDiffusion(model, ae, info.get("latent_scale", 1.0),
                                        image_size=info.get("image_size", 32)), device)


@torch.no_grad()
def _evaluate_sr(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    """A super-resolution model on 256 held-out real 32x32 images from their pooled 16x16 views (DDIM, 20 steps, no
    guidance), at augmentation levels 0 and 0.2: PSNR to the originals and edge sharpness (1 = as crisp)."""
    from ..imagen import ImagenCascade, downsample
    from ..metrics import edge_sharpness, psnr

    ref = generate_shapes(256, 32, 1, seed=HELD_OUT_SEEDS["ldm_captions"])
    x, tokens = ref.images.to(device), ref.tokens.to(device)
    cascade = ImagenCascade(None, model, make_alphas_cumprod(recipe.schedule, recipe.num_timesteps), size=32)
    out = {"num_images": 256, "ddim_steps": 20}
    for level in (0.0, 0.2):
        g = torch.Generator().manual_seed(0)
        y = cascade.super_resolve(downsample(x, 2), tokens, aug_level=level, steps=20, w=1.0, generator=g)
        out[f"psnr_db_aug{level}"] = round(float(psnr(y, x).mean()), 2)
        out[f"sharpness_aug{level}"] = round(float(edge_sharpness(y, x).mean()), 3)
    return out


@torch.no_grad()
def _evaluate_prior(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    codes = _prior_codes(recipe, HELD_OUT_SEEDS["eval"], device, n=1000)
    return {"held_out_nll_nats_per_code": round(float(model.loss(codes)), 4),
            "uniform_nll_nats_per_code": round(math.log(model.config.vocab_size), 4)}


@torch.no_grad()
def _evaluate_classifier(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    x, y, attrs = _batch(recipe, HELD_OUT_SEEDS["eval"], n=2000)
    x, y = x.to(device), y.to(device)
    out = {}
    for tt in ([0, 250, 500, 750, 999] if recipe.noise_aware else [None]):
        if tt is None:
            logits = model.attribute_logits(x)
            out["accuracy"] = round(float((logits[0].argmax(1) == y).float().mean()), 4)
            for name, lg in zip(("colour", "row", "column", "size"), logits[1:]):
                out[f"{name}_accuracy"] = round(float((lg.argmax(1).cpu() == attrs[name][:, 0]).float().mean()), 4)
            xc, kind = corrupt(x.cpu(), torch.Generator().manual_seed(0))
            logits = model.attribute_logits(xc.to(device))
            out["accuracy_on_corrupted"] = round(float((logits[0].argmax(1) == y).float().mean()), 4)
            out["corruption_accuracy"] = round(float((logits[-1].argmax(1).cpu() == kind).float().mean()), 4)
        else:
            ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
            g = torch.Generator().manual_seed(0)
            t = torch.full((len(x),), tt, dtype=torch.long)
            x_t = q_sample(x, ac[t].to(device), torch.randn(x.shape, generator=g).to(device))
            out[f"accuracy_t{tt}"] = round(float((model(x_t, t.to(device)).argmax(1) == y).float().mean()), 4)
    return out


@torch.no_grad()
def _evaluate_diffusion(recipe: Recipe, model, device, log=print, info: dict | None = None) -> dict:
    ac = make_alphas_cumprod(recipe.schedule, recipe.num_timesteps)
    if recipe.data == "ring8":
        from ..metrics import mixture_nll, mmd_rbf, sliced_wasserstein
        mix = ring_mixture()
        real, _ = mix.sample(2000, torch.Generator().manual_seed(123))
        out = {}
        for label, steps, eta in (("ancestral1000", 1000, 1.0), ("ddim20", 20, 0.0), ("ddim50", 50, 0.0)):
            g = torch.Generator().manual_seed(7)
            xT = torch.randn(2000, 2, generator=g)
            ts = timestep_subsequence(recipe.num_timesteps, steps, "uniform")
            x = ddim_sample(lambda x, t: model(x, t), xT, ac, ts, eta=eta, generator=g)
            out[label] = {"sliced_w2": round(float(sliced_wasserstein(x, real)), 4),
                          "mmd": round(float(mmd_rbf(x, real)), 5), "nll": round(float(mixture_nll(x, mix)), 4)}
        return out
    from ..metrics import image_quality
    clf = checkpoints.load("shapes_classifier16", device=device)
    real, _, _ = _batch(recipe, HELD_OUT_SEEDS["eval"], n=1000)
    n = 256
    labels = torch.arange(n) % len(SHAPES)
    out = {"num_samples": n, "reference": "1000 held-out shapes; features of shapes_classifier16"}
    # the floor: held-out real images measured the same way (FD is biased upwards at small n)
    real_n, _, _ = _batch(recipe, HELD_OUT_SEEDS["eval_floor"], n=n)
    out["real_images"] = image_quality(real_n, real, clf, _batch(recipe, HELD_OUT_SEEDS["eval_floor"], n=n)[1])
    for label, steps, eta in (("ancestral1000", 1000, 1.0), ("ddim20", 20, 0.0), ("ddim50", 50, 0.0)):
        g = torch.Generator().manual_seed(7)
        xT = torch.randn(n, 3, 16, 16, generator=g).to(device)
        ts = timestep_subsequence(recipe.num_timesteps, steps, "uniform")
        y = labels.to(device)
        t0 = time.time()
        x = ddim_sample(lambda x, t: model(x, t, y), xT, ac, ts, eta=eta, generator=g)
        out[label] = {**image_quality(x.cpu().clamp(-1, 1), real, clf, labels), "seconds": round(time.time() - t0, 1)}
        log(f"{label}: {out[label]}")
    return out
