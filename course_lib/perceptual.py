r"""LPIPS (Zhang et al. 2018) from its parts, compatible with the ``lpips`` package's learned weights.

.. math:: d(x, x_0) = \sum_l \frac{1}{H_l W_l} \sum_{h,w} \big\| w_l \odot (\hat y^l_{hw} - \hat y^l_{0hw}) \big\|_2^2

:math:`\hat y^l` are the layer-l features of a backbone (AlexNet, VGG16 or SqueezeNet), unit-normalised over
channels at every position; :math:`w_l` are non-negative per-channel weights. As in the reference code, the
weight vector multiplies the *squared* difference, :math:`\sum_c w_{lc}(\hat y - \hat y_0)_c^2` (the paper's
:math:`\|w \odot \cdot\|^2` with :math:`w_{lc}` standing for the square of the paper's weight).

Backbone weights: the ImageNet weights come from torchvision's download, which needs a network. They are used
when already in the torch cache (``$TORCH_HOME/hub/checkpoints``) or when ``allow_download=True``; offline the
module says so with a warning and falls back to a seeded random backbone (``backbone_source`` records which ran).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ._checks import check_tensor

__all__ = ["normalize_channels", "lpips_distance", "LPIPS", "BACKBONES", "imagenet_weights_path", "ShapesTrunk",
           "TwoAFCHead", "VARIANTS", "lpips_variant", "two_afc_loss", "clamp_weights_", "SHAPES_WEIGHTS"]

SHAPES_WEIGHTS = "shapes_lpips_lin"  # the shipped w_l of LPIPS(net="shapes"), trained by the "lin" set-up below

# name -> (torchvision constructor, slices of .features ending at each tapped layer, channels, cache file)
BACKBONES = {
    "alex": ("alexnet", [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)], [64, 192, 384, 256, 256],
             "alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16", [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)], [64, 128, 256, 512, 512], "vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1", [(0, 2), (2, 5), (5, 8), (8, 10), (10, 11), (11, 12), (12, 13)],
                [64, 128, 256, 384, 384, 512, 512], "squeezenet1_1-b8a52dc0.pth"),
}
# the ScalingLayer of lpips v0.1: ImageNet statistics expressed for inputs in [-1, 1]
_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


def normalize_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    r""":math:`\hat y_{hw} = y_{hw} / (\|y_{hw}\|_2 + \epsilon)`: unit length over channels (dim 1) at every position.
    A zero vector stays zero (the eps keeps it from dividing by zero)."""
    check_tensor(f, "f", ndim=4)
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def lpips_distance(feats_x, feats_x0, weights=None, spatial: bool = False, out_size=None):
    r"""The LPIPS equation (Zhang et al. eq. 1) on lists of per-layer features (N, C_l, H_l, W_l), normalised here:

    .. math:: d(x, x_0) = \sum_l \frac{1}{H_l W_l} \sum_{h,w} \sum_c w_{lc}\,(\hat y^l_{hwc} - \hat y^l_{0hwc})^2

    weights: list of per-channel non-negative vectors :math:`w_l` (C_l,) (None: all ones, the paper's unweighted
    baseline). Returns one distance per image (N,), or with ``spatial=True`` a list of per-layer maps (N, H_l, W_l)
    (upsampled bilinearly to ``out_size`` if given, as the package does).
    """
    if len(feats_x) != len(feats_x0):
        raise ValueError(f"feats_x0: expected {len(feats_x)} layers like feats_x, got {len(feats_x0)}")
    if weights is not None and len(weights) != len(feats_x):
        raise ValueError(f"weights: expected one vector per layer ({len(feats_x)}), got {len(weights)}")
    total, maps = 0.0, []
    for l, (a, b) in enumerate(zip(feats_x, feats_x0)):
        check_tensor(a, f"feats_x[{l}]", ndim=4)
        if a.shape != b.shape:
            raise ValueError(f"feats_x0[{l}]: expected shape {tuple(a.shape)}, got {tuple(b.shape)}")
        diff = (normalize_channels(a) - normalize_channels(b)) ** 2  # (N, C, H, W)
        if weights is None:
            layer = diff.sum(1)
        else:
            w = torch.as_tensor(weights[l], dtype=diff.dtype, device=diff.device).reshape(-1)
            if w.shape[0] != diff.shape[1] or bool((w < 0).any()):
                raise ValueError(f"weights[{l}]: expected {diff.shape[1]} non-negative values, got shape "
                                 f"{tuple(w.shape)}, min {w.min().item() if w.numel() else 'n/a'}")
            layer = torch.einsum("nchw,c->nhw", diff, w)  # sum_c w_c (y - y0)_c^2
        if spatial:
            if out_size is not None:
                layer = F.interpolate(layer[:, None], size=out_size, mode="bilinear", align_corners=False)[:, 0]
            maps.append(layer)
        else:
            total = total + layer.mean(dim=(1, 2))  # 1 / (H_l W_l) sum_{h,w}
    return maps if spatial else total


def imagenet_weights_path(net: str) -> Path:
    """Where torchvision keeps the ImageNet weights of ``net``'s backbone in the torch cache."""
    if net not in BACKBONES:
        raise ValueError(f"net: expected one of {sorted(BACKBONES)}, got {net!r}")
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[net][3]


# the smallest image side each backbone takes (measured: below it a convolution's kernel is larger than its input;
# the shapes trunk was trained on 16x16 and is documented for 16 to 64)
MIN_SIDE = {"alex": 31, "vgg": 16, "squeeze": 17, "shapes": 16}


class ShapesTrunk(nn.Module):
    """The course's own backbone: the convolutional trunk of a shapes classifier (by default the shipped
    ``shapes_classifier16``), tapped after each residual block. Works offline on 16x16 to 64x64 images in [-1, 1]."""

    def __init__(self, classifier=None, pretrained: bool = True):
        super().__init__()
        from .nets import Classifier, ClassifierConfig

        if classifier is None:
            if pretrained:
                from . import checkpoints

                classifier = checkpoints.load("shapes_classifier16")
            else:
                cfg = ClassifierConfig(time_conditional=False)
                classifier = Classifier(cfg)
        self.conv_in, self.blocks, self.downsample = classifier.conv_in, classifier.blocks, classifier.downsample
        self.channels = [b.conv2.out_channels for b in self.blocks]

    def forward(self, x):
        h, out = self.conv_in(x), []
        for block, down in zip(self.blocks, self.downsample):
            h = block(h)
            out.append(h)
            h = down(h)
        return out


class TwoAFCHead(nn.Module):
    """The paper's G: from the distances d0 = d(x, p0), d1 = d(x, p1) to the probability that p1 is judged closer,
    through (d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)) and two hidden layers of 32 (LeakyReLU)."""

    def __init__(self, hidden: int = 32, eps: float = 0.1):
        super().__init__()
        self.eps = eps
        self.net = nn.Sequential(nn.Linear(5, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, 1))

    def forward(self, d0, d1):
        feats = torch.stack([d0, d1, d0 - d1, d0 / (d1 + self.eps), d1 / (d0 + self.eps)], dim=-1)
        return self.net(feats).squeeze(-1)  # a logit; sigmoid gives P(p1 closer)


VARIANTS = ("lin", "tune", "scratch")


def lpips_variant(variant: str, net: str = "shapes", seed: int = 0, lr: float | None = None):
    r"""One of the paper's three ways of training LPIPS (§3, "Learned metrics"), set up for training:

    - ``lin``: the pretrained backbone :math:`\mathcal F` frozen, only the weights :math:`w_l` learned;
    - ``tune``: the pretrained backbone fine-tuned together with :math:`w_l`;
    - ``scratch``: a randomly initialised backbone trained from scratch with :math:`w_l`.

    :math:`w_l` start at 1 (the unweighted distance). Returns (metric, optimizer parameter groups): the weights at
    lr (default) 1e-2 for ``lin`` (the only thing that moves), 1e-3 with the backbone otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    metric = LPIPS(net, backbone="random" if variant == "scratch" else "auto", lin=False, seed=seed)
    metric.set_weights([torch.ones(c) for c in metric.channels])
    for w in metric.weights:
        w.requires_grad_(True)
    params = list(metric.weights)
    if variant != "lin":
        for p in metric.backbone_parameters():
            p.requires_grad_(True)
        params += list(metric.backbone_parameters())
    lr = (1e-2 if variant == "lin" else 1e-3) if lr is None else lr
    return metric, [{"params": params, "lr": lr}]


def two_afc_loss(metric, head: TwoAFCHead, ref, p0, p1, judge) -> torch.Tensor:
    r"""The paper's training loss on a 2AFC triplet: :math:`d_0 = d(x, x_0)`, :math:`d_1 = d(x, x_1)` and the
    cross-entropy of the judgment :math:`h \in [0, 1]` (fraction judging :math:`x_1` closer) against
    :math:`\mathcal G(d_0, d_1)`:

    .. math:: \mathcal L = -h \log \mathcal G(d_0, d_1) - (1 - h) \log\big(1 - \mathcal G(d_0, d_1)\big)"""
    d0, d1 = metric(ref, p0), metric(ref, p1)
    return F.binary_cross_entropy_with_logits(head(d0, d1), judge)


@torch.no_grad()
def clamp_weights_(metric) -> None:
    r"""Project :math:`w_l` back to :math:`w_l \ge 0` after a step (the paper keeps the weights non-negative)."""
    for w in metric.weights:
        w.clamp_(min=0)


class LPIPS(nn.Module):
    """LPIPS with a torchvision backbone and the ``lpips`` package's linear weights (``lin=True``), or on the
    course's own backbone (``net="shapes"``) with the shipped weights learned on the synthetic 2AFC set
    (:data:`SHAPES_WEIGHTS`, loaded through the hashed manifest); ``lin=False`` is the unweighted distance.

    backbone: "auto" (ImageNet weights if cached, else a warning and a seeded random backbone), "imagenet"
    (cached or, with allow_download, downloaded; else an error), "random", or a state dict of the torchvision
    model. Inputs are N x 3 x H x W in [-1, 1] (``normalize=True``: in [0, 1]); values clearly outside raise.
    """

    def __init__(self, net: str = "alex", backbone="auto", lin: bool = True, allow_download: bool = False,
                 seed: int = 0):
        super().__init__()
        import torchvision

        if net not in BACKBONES and net != "shapes":
            raise ValueError(f"net: expected one of {sorted(BACKBONES) + ['shapes']}, got {net!r}")
        self.net_name = net
        torch.manual_seed(seed)
        if net == "shapes":  # the course's own backbone: no scaling layer, no package weights
            self.trunk = ShapesTrunk(pretrained=backbone != "random")
            self.backbone_source = "course shapes classifier" if backbone != "random" else "random (seeded)"
            self.channels, self.layers = self.trunk.channels, None
            shift, scale = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
        else:
            ctor, slices, self.channels, _ = BACKBONES[net]
            model = getattr(torchvision.models, ctor)(weights=None)
            state, self.backbone_source = self._backbone_state(net, backbone, allow_download)
            if state is not None:
                model.load_state_dict(state)
            features = model.features
            self.layers = nn.ModuleList(nn.Sequential(*[features[i] for i in range(a, b)]) for a, b in slices)
            self.trunk = None
            shift, scale = _SHIFT.clone(), _SCALE.clone()
        for p in self.backbone_parameters():
            p.requires_grad_(False)
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)
        self.weights = nn.ParameterList(nn.Parameter(torch.ones(c), requires_grad=False) for c in self.channels)
        self.lin = lin
        self.weights_source = "none (unweighted: every w_l = 1)"
        if lin and net == "shapes":
            from . import checkpoints

            shipped = checkpoints.load(SHAPES_WEIGHTS)  # sha256-checked; a retrain if use_retrained named it
            for l, w in enumerate(shipped()):
                self.weights[l].data.copy_(w)
            self.weights_source = f"{SHAPES_WEIGHTS} (sha256 {shipped.source['sha256'][:10]})"
        elif lin:
            import lpips as lpips_pkg

            path = Path(lpips_pkg.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
            lin_state = torch.load(path, map_location="cpu", weights_only=True)
            for l in range(len(self.channels)):
                self.weights[l].data.copy_(lin_state[f"lin{l}.model.1.weight"].reshape(-1))
            self.weights_source = f"lpips package v0.1 ({net}.pth)"
        self.eval()

    @staticmethod
    def _backbone_state(net, backbone, allow_download):
        if isinstance(backbone, dict):
            return backbone, "given state dict"
        if backbone == "random":
            return None, "random (seeded)"
        path = imagenet_weights_path(net)
        if backbone in ("auto", "imagenet"):
            if path.exists():
                return torch.load(path, map_location="cpu", weights_only=True), f"ImageNet ({path.name}, torch cache)"
            if allow_download:
                from torch.hub import load_state_dict_from_url

                url = f"https://download.pytorch.org/models/{path.name}"
                return load_state_dict_from_url(url, map_location="cpu", weights_only=True), "ImageNet (downloaded)"
            msg = (f"the ImageNet weights of the {net} backbone are not in the torch cache ({path}); "
                   f"pass allow_download=True where a network is available")
            if backbone == "imagenet":
                raise FileNotFoundError(f"backbone: {msg}")
            warnings.warn(f"LPIPS: {msg}. Falling back to a seeded random backbone: distances are NOT the "
                          "published LPIPS.", stacklevel=3)
            return None, "random (seeded) - ImageNet weights not cached"
        raise ValueError(f"backbone: expected 'auto', 'imagenet', 'random' or a state dict, got {backbone!r}")

    def set_weights(self, weights) -> "LPIPS":
        """Use the per-channel weights ``weights`` (one non-negative vector per layer) from now on."""
        if len(weights) != len(self.weights):
            raise ValueError(f"weights: expected {len(self.weights)} vectors, one per layer, got {len(weights)}")
        for l, (w, new) in enumerate(zip(self.weights, weights)):
            new = torch.as_tensor(new, dtype=w.dtype).reshape(-1)
            if new.shape != w.shape or bool((new < 0).any()):
                raise ValueError(f"weights[{l}]: expected {w.numel()} non-negative values, got shape {tuple(new.shape)}")
            w.data.copy_(new)
        self.lin = True
        self.weights_source = "set_weights"
        return self

    def copy_backbone_from(self, package_model) -> "LPIPS":
        """Load the backbone of an ``lpips`` package model (``lpips.LPIPS(net=...)``) into this one, slice by slice;
        the two then compute the same distances (how notebook 04 and the tests compare with the package offline)."""
        theirs = getattr(package_model, "pnet_type", None)
        if self.layers is None or theirs != self.net_name:
            raise ValueError(f"package_model: expected an lpips.LPIPS with net={self.net_name!r} (a torchvision "
                             f"backbone), got net={theirs!r}")
        slices = [getattr(package_model.net, f"slice{i + 1}") for i in range(len(self.layers))]
        for mine, slice_ in zip(self.layers, slices):
            for a, b in zip(mine, slice_):
                a.load_state_dict(b.state_dict())
        return self

    def backbone_parameters(self):
        return (self.trunk if self.trunk is not None else self.layers).parameters()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The tapped layers' activations for images already in [-1, 1]."""
        h = (x - self.shift) / self.scale
        if self.trunk is not None:
            return self.trunk(h)
        out = []
        for layer in self.layers:
            h = layer(h)
            out.append(h)
        return out

    def _check_input(self, x, name, normalize, check_range=True):
        check_tensor(x, name, ndim=4, floating=True)
        if x.shape[1] != 3:
            raise ValueError(f"{name}: expected 3 channels (N, 3, H, W), got shape {tuple(x.shape)}")
        side = MIN_SIDE[self.net_name]
        if min(x.shape[-2:]) < side:
            raise ValueError(f"{name}: expected images of at least {side}x{side} for the {self.net_name} backbone "
                             f"(its receptive field), got {tuple(x.shape[-2:])}")
        if not check_range:
            return
        check_tensor(x, name, finite=True)
        lo, hi = (0.0, 1.0) if normalize else (-1.0, 1.0)
        x_min, x_max = float(x.detach().min()), float(x.detach().max())
        if x_min < lo - 0.05 or x_max > hi + 0.05:
            raise ValueError(f"{name}: expected values in [{lo:g}, {hi:g}] (normalize={normalize}), got "
                             f"{x_min:.3g}..{x_max:.3g}" + ("; images in [0, 255] must be scaled first" if x_max > 2 else ""))

    def forward(self, x, x0, normalize: bool = False, spatial: bool = False, check_range: bool = True):
        """d(x, x0): (N,) distances, or (N, H, W) summed spatial maps with ``spatial=True``.

        ``check_range=False`` skips the value-range check, for LPIPS used as a training loss on a decoder's raw
        output, which may overshoot [-1, 1] early in training (the images still have to be 3-channel and 4-d)."""
        self._check_input(x, "x", normalize, check_range)
        self._check_input(x0, "x0", normalize, check_range)
        if x.shape != x0.shape:
            raise ValueError(f"x0: expected the shape of x {tuple(x.shape)}, got {tuple(x0.shape)}")
        if check_range and not normalize and float(x.detach().min()) >= 0 and float(x0.detach().min()) >= 0:
            # a learner's likeliest mistake: [0, 1] images lie inside [-1, 1] and would be measured as washed-out
            raise ValueError("x: expected images in [-1, 1], but every value of x and x0 is >= 0: images in [0, 1] "
                             "need normalize=True (if they really are [-1, 1] images without a dark value, pass "
                             "check_range=False)")
        if normalize:
            x, x0 = 2 * x - 1, 2 * x0 - 1
        weights = list(self.weights) if self.lin else None
        if spatial:
            maps = lpips_distance(self.features(x), self.features(x0), weights, spatial=True, out_size=x.shape[-2:])
            return sum(maps)
        return lpips_distance(self.features(x), self.features(x0), weights)
