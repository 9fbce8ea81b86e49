r"""Sample-quality measures for the course's toy data and shapes world.

2-D samples: sliced Wasserstein-2, MMD with an RBF kernel, NLL under the exact mixture.
Images: Fréchet distance and precision/recall (Kynkäänniemi et al. 2019) in the feature
space of the course's clean shapes classifier (the role Inception plays for FID), PSNR, SSIM.
Uncertainty: :func:`bootstrap_interval` (any of these over resampled samples) and :func:`seed_range` (a sweep
repeated over seeds), both an :class:`Interval`.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from ._checks import check_positive_int, check_tensor

__all__ = [
    "sliced_wasserstein", "mmd_rbf", "MMDToReference", "mixture_nll", "frechet_distance_from_stats", "frechet_distance",
    "precision_recall", "psnr", "ssim", "shapes_features", "image_quality", "gradient_energy", "edge_sharpness", "reconstruction_report",
    "Interval", "bootstrap_interval", "seed_range", "real_vs_real", "caption_following", "count_flops",
    "training_memory",
]


class Interval(NamedTuple):
    """A measured ``value`` with the ``low`` and ``high`` ends of its interval."""

    value: float
    low: float
    high: float

    def __str__(self):
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"

    def overlaps(self, other: "Interval") -> bool:
        """Whether the two intervals share a point: the difference of the values is then within noise."""
        return self.low <= other.high and other.low <= self.high


def bootstrap_interval(statistic, *samples: torch.Tensor, num_resamples: int = 200, confidence: float = 0.95,
                       seed: int = 0, recentre: bool = False, lower_bound: float | None = None) -> Interval:
    r"""The percentile bootstrap (Efron 1979): ``statistic(*samples)`` and the interval of the same statistic over
    ``num_resamples`` resamplings, each sample's rows drawn with replacement and independently of the others:

    .. math:: \big[\hat\theta^*_{(1-c)/2},\ \hat\theta^*_{(1+c)/2}\big],\qquad
              \hat\theta^{*}_b = \theta\big(x^{*b}_1, \dots, x^{*b}_k\big),\quad x^{*b}_j \sim \text{rows of } x_j

    It measures how much the number would move with other draws of the same size (here: 256 samples or 1000 test
    images), not the error of the model or of the metric itself. ``statistic`` returns a number or a 0-d tensor.

    ``recentre=True`` moves the interval by the bootstrap's estimate of the statistic's bias,
    :math:`\hat\theta - \overline{\theta^*}` (Efron & Tibshirani 1993, ch. 10), for statistics that a resample's
    repeated rows push one way: a Fréchet distance of resampled features is larger than the distance it resamples
    (repeats lower the rank of the covariance), so the plain percentile interval can miss the value itself.
    ``lower_bound`` is the smallest value the statistic can take (a distance: 0); a recentred interval's lower end
    is cut there rather than reported below it.
    """
    check_positive_int(num_resamples, "num_resamples")
    if not (isinstance(confidence, float) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence: expected a float in (0, 1), e.g. 0.95, got {confidence!r}")
    if not samples:
        raise ValueError("samples: expected at least one tensor to resample, got none")
    for j, x in enumerate(samples):
        check_tensor(x, f"samples[{j}]")
        if x.ndim == 0 or x.shape[0] < 2:
            raise ValueError(f"samples[{j}]: expected at least 2 rows to resample, got shape {tuple(x.shape)}")
    value = float(statistic(*samples))
    g = torch.Generator().manual_seed(seed)
    stats = torch.tensor([float(statistic(*(x[torch.randint(0, x.shape[0], (x.shape[0],), generator=g).to(x.device)]
                                             for x in samples))) for _ in range(num_resamples)], dtype=torch.float64)
    low, high = torch.quantile(stats, torch.tensor([(1 - confidence) / 2, (1 + confidence) / 2], dtype=torch.float64))
    shift = value - float(stats.mean()) if recentre else 0.0
    low, high = float(low) + shift, float(high) + shift
    if lower_bound is not None:
        low = max(low, float(lower_bound))
    return Interval(value, low, high)


def seed_range(values) -> Interval:
    """A sweep repeated over seeds: the mean of ``values`` and their smallest and largest (with 3 seeds the range,
    not a confidence interval: say "within noise" when two ranges overlap)."""
    v = torch.as_tensor(list(values) if not isinstance(values, torch.Tensor) else values, dtype=torch.float64).flatten()
    if v.numel() < 2 or not bool(v.isfinite().all()):
        raise ValueError(f"values: expected at least two finite numbers (one per seed), got {v.tolist()}")
    return Interval(float(v.mean()), float(v.min()), float(v.max()))


def _check_samples(x, y, name_x="x", name_y="y"):
    check_tensor(x, name_x, ndim=2)
    check_tensor(y, name_y, ndim=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{name_y}: expected dimension {x.shape[1]} like {name_x}, got {y.shape[1]}")


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, num_projections: int = 256, seed: int = 0) -> torch.Tensor:
    r"""Sliced Wasserstein-2 distance between two point clouds (N, D) and (M, D).

    .. math:: SW_2(x, y) = \Big(\mathbb E_{\theta \sim U(S^{D-1})}\, W_2^2(\theta^\top x, \theta^\top y)\Big)^{1/2}

    1-D W_2 compares sorted projections (quantiles, so N and M may differ). Projections are
    drawn from ``seed``: the same call gives the same number.
    """
    _check_samples(x, y)
    check_positive_int(num_projections, "num_projections")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], num_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = (x.double() @ theta).sort(dim=0)
    py, _ = (y.double() @ theta).sort(dim=0)
    q = torch.linspace(0, 1, max(len(x), len(y)), dtype=torch.float64)
    qx = _quantiles(px, q)
    qy = _quantiles(py, q)
    return ((qx - qy) ** 2).mean().sqrt().float()


def _quantiles(sorted_vals: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    n = sorted_vals.shape[0]
    if n == len(q):
        return sorted_vals
    pos = q * (n - 1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo)[:, None]
    return sorted_vals[lo] * (1 - w) + sorted_vals[hi] * w


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0)) -> torch.Tensor:
    r"""Maximum mean discrepancy, squared, biased (V-statistic) estimate, summed over RBF bandwidths h:

    .. math:: \mathrm{MMD}^2 = \overline{k(x,x')} + \overline{k(y,y')} - 2\,\overline{k(x,y)},\quad
              k(a,b) = \sum_h \exp(-\|a-b\|^2 / 2h^2)

    Zero for identical samples, positive otherwise.
    """
    _check_samples(x, y)
    x, y = x.double(), y.double()

    def k(a, b):
        d2 = torch.cdist(a, b) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    return (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()).clamp_min(0).float()


class MMDToReference:
    """``mmd_rbf(x, reference)`` for many x against one fixed reference set, with the reference-only term
    computed once (what a slider demo needs to stay interactive)."""

    def __init__(self, reference: torch.Tensor, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0)):
        check_tensor(reference, "reference", ndim=2)
        self.reference, self.bandwidths = reference.double(), bandwidths
        self._yy = self._k(self.reference, self.reference).mean()

    def _k(self, a, b):
        d2 = torch.cdist(a, b) ** 2
        return sum(torch.exp(-d2 / (2 * h * h)) for h in self.bandwidths)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _check_samples(x, self.reference)
        x = x.double()
        return (self._k(x, x).mean() + self._yy - 2 * self._k(x, self.reference).mean()).clamp_min(0).float()


def mixture_nll(samples: torch.Tensor, mixture) -> torch.Tensor:
    """Mean negative log-likelihood of ``samples`` under the exact data mixture (nats per point)."""
    return -mixture.log_prob(samples).mean()


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> torch.Tensor:
    r"""Fréchet (Wasserstein-2) distance between Gaussians :math:`\mathcal N(\mu_1,\Sigma_1)`, :math:`\mathcal N(\mu_2,\Sigma_2)`:

    .. math:: d^2 = \|\mu_1-\mu_2\|^2 + \mathrm{tr}\big(\Sigma_1 + \Sigma_2 - 2(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2})^{1/2}\big)

    (the symmetric form of :math:`\mathrm{tr}(\Sigma_1\Sigma_2)^{1/2}`, computed with eigendecompositions in float64).
    """
    mu1, mu2, cov1, cov2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, mu2, cov1, cov2))
    s1 = _psd_sqrt(cov1)
    middle = _psd_sqrt(s1 @ cov2 @ s1)
    return (((mu1 - mu2) ** 2).sum() + torch.trace(cov1 + cov2 - 2 * middle)).float()


def _psd_sqrt(a: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((a + a.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_distance(feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, F) and (M, F)."""
    _check_samples(feats_a, feats_b, "feats_a", "feats_b")
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("feats_a, feats_b: expected at least 2 samples each to estimate a covariance")
    a, b = feats_a.double(), feats_b.double()
    return frechet_distance_from_stats(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def frechet_distance_interval(feats_ref: torch.Tensor, feats: torch.Tensor, num_resamples: int = 200) -> Interval:
    """FD of ``feats`` to the fixed reference ``feats_ref`` and its 95% bootstrap interval over resamplings of
    ``feats``, recentred (resampled rows bias an FD upward, :func:`bootstrap_interval`) and cut at 0."""
    return bootstrap_interval(lambda f: frechet_distance(feats_ref, f), feats, num_resamples=num_resamples,
                              recentre=True, lower_bound=0.0)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls in feature space.

    precision: fraction of fake samples inside the union of the real samples' k-NN balls (fidelity);
    recall:    fraction of real samples inside the union of the fake samples' k-NN balls (coverage).
    """
    _check_samples(real, fake, "real", "fake")
    check_positive_int(k, "k")
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"k: expected fewer than the number of samples ({len(real)}, {len(fake)}), got {k}")

    return _coverage(real, _knn_radius(real, k), fake), _coverage(fake, _knn_radius(fake, k), real)


def _knn_radius(ref: torch.Tensor, k: int) -> torch.Tensor:
    """Each reference point's distance to its k-th nearest other reference point (k+1: itself is at 0)."""
    return torch.cdist(ref.double(), ref.double()).kthvalue(k + 1, dim=1).values


def _coverage(ref: torch.Tensor, radius: torch.Tensor, query: torch.Tensor) -> float:
    """The fraction of ``query`` inside the union of the balls around ``ref`` with these radii."""
    return (torch.cdist(query.double(), ref.double()) <= radius[None]).any(dim=1).double().mean().item()


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    r"""Peak signal-to-noise ratio per image, :math:`10\log_{10}(R^2/\mathrm{MSE})` dB; R = 2 for images in [-1, 1]."""
    check_tensor(x, "x")
    if x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, window_size: int = 7, sigma: float = 1.5):
    r"""Structural similarity (Wang et al. 2004) per image, Gaussian window, averaged over channels and valid positions.

    .. math:: \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2+\mu_y^2+C_1)(\sigma_x^2+\sigma_y^2+C_2)},
              \ C_1 = (0.01R)^2,\ C_2 = (0.03R)^2

    The window defaults to 7 (not 11) because the course's images are 16 to 32 pixels wide.
    """
    check_tensor(x, "x", ndim=4)
    if x.shape != y.shape:
        raise ValueError(f"y: expected the shape of x {tuple(x.shape)}, got {tuple(y.shape)}")
    if min(x.shape[-2:]) < window_size:
        raise ValueError(f"window_size: expected at most the image side {min(x.shape[-2:])}, got {window_size}")
    c = x.shape[1]
    coords = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(c, 1, window_size, window_size).contiguous()
    x, y = x.double(), y.double()
    filt = lambda z: F.conv2d(z, win, groups=c)  # noqa: E731
    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1).float()


@torch.no_grad()
def shapes_features(images: torch.Tensor, classifier, batch_size: int = 512,
                    timestep: int | None = None) -> torch.Tensor:
    """Pooled features of a shapes classifier for images in [-1, 1], shape (N, F): the clean classifier's, or with
    ``timestep`` a noise-aware classifier's read at that t (0: clean images)."""
    check_tensor(images, "images", ndim=4)
    dev = next(classifier.parameters()).device

    def feats(x):
        if timestep is None:
            return classifier.features(x)
        return classifier.features(x, torch.full((len(x),), timestep, dtype=torch.long, device=dev))

    out = [feats(images[i:i + batch_size].to(dev)).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def image_quality(fake: torch.Tensor, real: torch.Tensor, classifier, labels: torch.Tensor | None = None, k: int = 3,
                  intervals: bool = False, independent_classifier=None, num_resamples: int = 200) -> dict:
    """FD, precision and recall of ``fake`` against ``real`` in the classifier's feature space; with
    ``labels`` (the classes the fake images were asked to show) also the classifier's accuracy on them.

    ``intervals=True`` adds ``<metric>_interval = [low, high]``, the 95% bootstrap interval of each number over
    resamplings of the fake samples (the real reference fixed): how far the number would move with another draw
    of as many samples from the same model. Duplicates of a resample are counted once where they would shrink
    a k-NN ball (recall's fake manifold); FD's interval is recentred (:func:`bootstrap_interval`), and checked
    against fresh draws it is conservative: for 256 real images, 12 fresh draws spread with a standard deviation
    of 0.19 where the recentred interval is about 1.4 wide (tests/test_metrics.py measures this).

    ``independent_classifier`` (the separately trained noise-aware classifier, read at t = 0) adds
    ``fd_independent``, ``precision_independent`` and ``recall_independent`` in a second feature space. Which of
    the two rulers is independent depends on what made the samples: a sampler guided by one classifier is read in
    the other's features (notebook 02). The noise-aware one was trained on noisy images and barely sees noise."""
    ff, fr = shapes_features(fake, classifier), shapes_features(real, classifier)
    out = _quality_numbers(ff, fr, "", k, intervals, num_resamples)
    if labels is not None:
        pred = classifier.head(ff.to(next(classifier.parameters()).device)).argmax(1).cpu()
        hits = (pred == labels.cpu()).double()
        out["accuracy"] = round(float(hits.mean()), 4)
        if intervals:
            iv = bootstrap_interval(lambda h: h.mean(), hits, num_resamples=num_resamples)
            out["accuracy_interval"] = [round(iv.low, 4), round(iv.high, 4)]
    if independent_classifier is not None:
        fi, ri = (shapes_features(im, independent_classifier, timestep=0) for im in (fake, real))
        out.update(_quality_numbers(fi, ri, "_independent", k, intervals, num_resamples))
    return out


def _quality_numbers(ff, fr, suffix, k, intervals, num_resamples):
    p, r = precision_recall(fr, ff, k)
    out = {f"fd{suffix}": round(float(frechet_distance(fr, ff)), 4), f"precision{suffix}": round(p, 4),
           f"recall{suffix}": round(r, 4)}
    if intervals:
        real_radius = _knn_radius(fr, k)  # the real manifold is fixed: its balls once, not per resample

        def recall(f):
            # a resample's repeats would each be a k-NN neighbour at distance 0: the fake manifold of recall is
            # built from the distinct rows
            f = torch.unique(f, dim=0)
            return _coverage(f, _knn_radius(f, k), fr)

        iv = frechet_distance_interval(fr, ff, num_resamples)
        out[f"fd{suffix}_interval"] = [round(iv.low, 4), round(iv.high, 4)]
        for name, stat in {"precision": lambda f: _coverage(fr, real_radius, f), "recall": recall}.items():
            iv = bootstrap_interval(stat, ff, num_resamples=num_resamples)
            out[f"{name}{suffix}_interval"] = [round(iv.low, 4), round(iv.high, 4)]
    return out


def real_vs_real(real: torch.Tensor, other_real: torch.Tensor, classifier, k: int = 3, independent_classifier=None,
                 num_resamples: int = 200) -> dict:
    """The noise floor of :func:`image_quality`: the same numbers, with intervals, for a second set of real images
    (as many as the generated sets) against the reference. A model scoring within this interval is as close to the
    data as a fresh draw of the data itself, at this sample size."""
    return image_quality(other_real, real, classifier, k=k, intervals=True,
                         independent_classifier=independent_classifier, num_resamples=num_resamples)


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    r"""Per image, :math:`\sum |\nabla x|`: the absolute forward differences in both directions summed over pixels
    and channels, (N,). Edges and noise raise it; blur and flat regions lower it."""
    check_tensor(images, "images", ndim=4)
    return (images[..., 1:, :] - images[..., :-1, :]).abs().sum(dim=(1, 2, 3)) + \
        (images[..., :, 1:] - images[..., :, :-1]).abs().sum(dim=(1, 2, 3))


def edge_sharpness(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""Gradient energy of reconstructions relative to their originals, per image:
    :math:`\sum |\nabla \hat x| / \sum |\nabla x|` with forward differences in both directions.
    1 means edges as crisp as the original; blur lowers it below 1, noise or ringing raise it above."""
    check_tensor(x, "x", ndim=4)
    check_tensor(x_hat, "x_hat", ndim=4)
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    return gradient_energy(x_hat) / gradient_energy(x).clamp_min(1e-8)


@torch.no_grad()
def reconstruction_report(x_hat: torch.Tensor, x: torch.Tensor, indices=None, num_codes: int | None = None,
                          intervals: bool = False, num_resamples: int = 200) -> dict:
    """Notebook 05's comparison of autoencoders on the same held-out images in [-1, 1]: PSNR, SSIM, LPIPS (course
    backbone, unweighted: the perceptual loss's own measure), edge sharpness, and two Fréchet distances of the
    reconstructions to the originals: in the clean classifier's features (its trunk is the LPIPS backbone) and in
    the independently trained noise-aware classifier's features at t = 0 (a network no loss here has seen).
    Images larger than 16x16 are average-pooled to 16x16 for the classifiers, which were trained at that size.

    ``intervals=True`` adds ``<metric>_interval``: 95% bootstrap intervals over the held-out images, each resample
    keeping an original with its own reconstruction (paired; FD recentred as in :func:`image_quality`). They
    measure the choice of test images, not the training run: a second training seed moves the numbers too."""
    from . import checkpoints
    from .perceptual import LPIPS
    from .quantize import codebook_usage

    lp = LPIPS(net="shapes", lin=False).to(x.device)
    dist = torch.cat([lp(x_hat[i:i + 250], x[i:i + 250]) for i in range(0, len(x), 250)])
    small = (lambda im: F.adaptive_avg_pool2d(im, 16)) if x.shape[-1] != 16 else (lambda im: im)
    clean = checkpoints.load("shapes_classifier16", device=x.device)
    noisy = checkpoints.load("shapes_noisy_classifier16", device=x.device)
    t0 = torch.zeros(len(x), dtype=torch.long, device=x.device)
    per_image = {"psnr_db": psnr(x_hat, x), "ssim": ssim(x_hat, x), "lpips": dist,
                 "sharpness": edge_sharpness(x_hat, x)}
    feats = {"fd_clean_classifier": (clean.features(small(x)), clean.features(small(x_hat))),
             "fd_noisy_classifier": (noisy.features(small(x), t0), noisy.features(small(x_hat), t0))}
    digits = {"psnr_db": 2, "ssim": 4, "lpips": 4, "sharpness": 3, "fd_clean_classifier": 4, "fd_noisy_classifier": 4}
    out = {k: round(float(v.mean()), digits[k]) for k, v in per_image.items()}
    out.update({k: round(float(frechet_distance(a, b)), digits[k]) for k, (a, b) in feats.items()})
    if intervals:
        for k, v in per_image.items():
            iv = bootstrap_interval(lambda s: s.mean(), v.detach().cpu(), num_resamples=num_resamples)
            out[f"{k}_interval"] = [round(iv.low, digits[k]), round(iv.high, digits[k])]
        for k, (a, b) in feats.items():
            pairs = torch.stack([a.cpu(), b.cpu()], dim=1)  # (N, 2, F): an original beside its reconstruction
            iv = bootstrap_interval(lambda p: frechet_distance(p[:, 0], p[:, 1]), pairs, num_resamples=num_resamples,
                                    recentre=True, lower_bound=0.0)
            out[f"{k}_interval"] = [round(iv.low, digits[k]), round(iv.high, digits[k])]
    if indices is not None:
        use = codebook_usage(indices, num_codes)
        out.update(perplexity=round(use["perplexity"], 1), usage=round(use["usage"], 4))
    return out


# -- the measurements of the shipped models (their manifest metrics) ---------------------------------------------
@torch.no_grad()
def caption_following(images: torch.Tensor, attributes: dict, classifier, intervals: bool = False,
                      num_resamples: int = 200) -> dict:
    """How often the clean shapes classifier (on 16x16 average-pooled images) reads the requested shape, colour and
    position (row and column) off ``images``; ``attributes`` as from :func:`generate_shapes` (first object).
    ``intervals=True`` adds ``<rate>_interval``, the 95% bootstrap interval of each rate over the images."""
    small = F.adaptive_avg_pool2d(images, 16) if images.shape[-1] != 16 else images
    logits = classifier.attribute_logits(small.to(next(classifier.parameters()).device))
    pred = {name: lg.argmax(1).cpu() for name, lg in zip(("shape", "colour", "row", "column"), logits[:4])}
    ok = {name: pred[name] == attributes[name][:, 0] for name in pred}
    both = ok["shape"] & ok["colour"]
    hits = {"shape": ok["shape"], "colour": ok["colour"], "position": ok["row"] & ok["column"],
            "shape_and_colour": both, "all": both & ok["row"] & ok["column"]}
    out = {k: round(float(h.double().mean()), 4) for k, h in hits.items()}
    if intervals:
        for k, h in hits.items():
            iv = bootstrap_interval(lambda v: v.mean(), h.double(), num_resamples=num_resamples)
            out[f"{k}_interval"] = [round(iv.low, 4), round(iv.high, 4)]
    return out


def count_flops(fn, *args, **kwargs) -> tuple[int, object]:
    """The floating-point operations of ``fn(*args, **kwargs)`` as PyTorch's own counter
    (``torch.utils.flop_counter.FlopCounterMode``) tallies them: every matrix multiply and convolution, forward
    and, if ``fn`` calls ``backward()``, backward (2 FLOPs per multiply-add; element-wise operations are not
    counted). Returns (total FLOPs, what ``fn`` returned)."""
    from torch.utils.flop_counter import FlopCounterMode

    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    with FlopCounterMode(display=False) as counter:
        result = fn(*args, **kwargs)
    return int(counter.get_total_flops()), result


def training_memory(loss_fn, trainable, frozen=()) -> dict:
    """The bytes one Adam training step holds, counted rather than sampled (so the same on every machine):
    ``weights`` of all parameters (``trainable`` and ``frozen``), their ``gradients`` and Adam's two moments
    (``optimizer``) for the trainable ones only, and the ``activations`` autograd saves for the backward pass of
    ``loss_fn()`` (each storage once, parameters excluded). Allocator slack and temporaries freed during the
    forward pass are not counted: this is what a step must keep, the floor of its peak memory."""
    trainable, frozen = list(trainable), list(frozen)
    for name, ps in (("trainable", trainable), ("frozen", frozen)):
        if not all(isinstance(p, torch.Tensor) for p in ps):
            raise TypeError(f"{name}: expected parameters (tensors), got {sorted({type(p).__name__ for p in ps})}")
    nbytes = lambda ps: sum(p.numel() * p.element_size() for p in ps)  # noqa: E731
    params = {p.untyped_storage().data_ptr() for p in trainable + frozen}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    for p in trainable:
        p.grad = None
    out = {"weights": nbytes(trainable + frozen), "gradients": nbytes(trainable), "optimizer": 2 * nbytes(trainable),
           "activations": sum(saved.values())}
    out["total"] = sum(out.values())
    return out


@torch.no_grad()
def evaluate_ldm(pipe, device, n: int = 256, steps: int = 20, guidance_scale: float = 3.0, intervals: bool = False,
                 samples_out: dict | None = None) -> dict:
    """Captions (or shape labels, for a class-conditional denoiser) of n held-out images -> samples (DDIM,
    classifier-free guidance); caption-following rates (a class model: the shape's only), FD to
    real images (clean classifier features at 16x16), and sampling time per step (batch n). ``intervals=True``
    adds the 95% bootstrap intervals over the n samples; a ``samples_out`` dict receives the samples ("samples")."""
    import time

    from . import checkpoints
    from .data import HELD_OUT_SEEDS, generate_shapes

    clf = checkpoints.load("shapes_classifier16", device=device)
    side = getattr(pipe, "image_size", 32)
    ref = generate_shapes(n, side, 1, seed=HELD_OUT_SEEDS["ldm_captions"])
    real = generate_shapes(1000, side, 1, seed=HELD_OUT_SEEDS["ldm_real"]).images
    keep = ("shape", "shape_interval") if getattr(pipe, "class_conditional", False) else None

    def asked(rates):  # a class-conditional model is asked for the shape only
        return rates if keep is None else {k: v for k, v in rates.items() if k in keep}

    out = {"num_samples": n, "ddim_steps": steps, "guidance_scale": guidance_scale,
           "real_images": asked(caption_following(ref.images, ref.attributes, clf))}
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    x = pipe.sample(pipe.condition_of(ref), steps=steps, guidance_scale=guidance_scale, generator=g).cpu()
    out["seconds_per_step"] = round((time.time() - t0) / steps, 4)
    out["network_evaluations"] = steps * (2 if guidance_scale != 1.0 else 1)
    out["caption_following"] = asked(caption_following(x, ref.attributes, clf, intervals=intervals))
    pool = lambda im: F.adaptive_avg_pool2d(im, 16)  # noqa: E731
    out["quality"] = image_quality(pool(x), pool(real), clf, intervals=intervals)
    if samples_out is not None:
        samples_out["samples"] = x
    return out


# -- evaluation of each kind of model --------------------------------------------------------------------------


@torch.no_grad()
def evaluate_autoencoder(model, device, n: int = 1000) -> dict:
    """PSNR / SSIM of reconstructions of held-out 16x16 shapes, and codebook usage over them."""
    from .data import HELD_OUT_SEEDS, generate_shapes
    from .quantize import codebook_usage

    x = generate_shapes(n, 16, 1, seed=HELD_OUT_SEEDS["autoencoder16"]).images.to(device)
    z_q, idx, _ = model.quantize(model.encode(x))
    x_hat = model.decode(z_q).clamp(-1, 1)
    use = codebook_usage(idx, model.config.num_codes)
    return {"psnr_db": round(float(psnr(x_hat, x).mean()), 2), "ssim": round(float(ssim(x_hat, x).mean()), 4),
            "perplexity": round(use["perplexity"], 1), "usage": round(use["usage"], 4)}


@torch.no_grad()
def evaluate_autoencoder32(model, device, n: int = 500) -> dict:
    """Notebook 05's comparison on held-out 32x32 shapes; see :func:`course_lib.metrics.reconstruction_report`."""

    from .data import HELD_OUT_SEEDS, generate_shapes

    x = generate_shapes(n, 32, 1, seed=HELD_OUT_SEEDS["autoencoder32"]).images.to(device)
    z_q, idx, _ = model.quantize(model.encode(x))
    return reconstruction_report(model.decode(z_q).clamp(-1, 1), x, idx, model.config.num_codes)
