"""course_lib.controlnet: y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2) on a CaptionUNet -- exact
equality to the base at initialisation, the first step's gradient pattern, the frozen base, residual shapes,
scales and composition, the hints and the exact segmentation that scores them."""
import copy

import pytest
import torch

from course_lib import checkpoints
from course_lib.controlnet import (ControlledUNet, ControlNet, HintEncoder, keep_words, make_hint, mask_iou,
                                   object_mask, zero_conv)
from course_lib.coursework.controlnet import _small_base as small_base
from course_lib.data import decode_tokens, encode_caption, generate_shapes
from course_lib.diffusion import diffusion_loss
from course_lib.nets import CaptionUNet, CaptionUNetConfig, build_model
from course_lib.nets.unet import encoder_pass
from course_lib.schedules import make_alphas_cumprod


def _base(seed=0):
    """A small CaptionUNet whose output depends on its input (a fresh one predicts 0: conv_out starts at zero)."""
    return small_base(seed)


def _inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    b = generate_shapes(n, 32, 1, seed=seed)
    return torch.randn(n, 4, 8, 8, generator=g), torch.randint(0, 1000, (n,), generator=g), b.tokens, make_hint(b.masks)


def _perturb_connectors(cn, seed=5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in cn.connectors().values():
            conv.weight.copy_(0.1 * torch.randn(conv.weight.shape, generator=g))
            conv.bias.copy_(0.1 * torch.randn(conv.bias.shape, generator=g))


def test_zero_conv_is_a_1x1_convolution_of_zeros():
    z = zero_conv(8, 5)
    assert z.kernel_size == (1, 1) and z.in_channels == 8 and z.out_channels == 5
    assert torch.count_nonzero(z.weight) == 0 and torch.count_nonzero(z.bias) == 0
    assert torch.count_nonzero(z(torch.randn(2, 8, 4, 4))) == 0
    with pytest.raises(ValueError, match="in_channels"):
        zero_conv(0, 5)


def test_hint_encoder_brings_32x32_to_the_8x8_grid_through_strided_convolutions():
    enc = HintEncoder(1, 24, downsamples=2)
    out = enc(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 24, 8, 8)
    assert torch.count_nonzero(out) == 0  # Z(c; Theta_z1) closes it
    assert [m.out_channels for m in enc.net if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64]
    assert [m.stride for m in enc.net if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (2, 2), (2, 2)]


def test_the_copy_starts_equal_to_the_base_encoder_and_trains_while_the_caption_encoder_is_locked():
    base = _base()
    cn = ControlNet(base, hint_channels=1)
    for name in ("time_mlp", "conv_in", "down", "mid1", "mid_attn", "mid2", "caption_encoder"):
        a, b = getattr(cn, name).state_dict(), getattr(base, name).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
        assert getattr(cn, name) is not getattr(base, name)
    assert all(p.requires_grad for n, p in cn.named_parameters() if not n.startswith("caption_encoder."))
    assert not any(p.requires_grad for p in cn.caption_encoder.parameters())


def test_residuals_have_the_shape_of_every_skip_and_of_the_middle_block():
    base = _base()
    x, t, tokens, hint = _inputs()
    for variant in ("copy", "lite"):
        down, mid = ControlNet(base, variant=variant)(x, t, hint, tokens)
        ctx, mask = base.caption_encoder(tokens)
        skips, h = encoder_pass(base, base.conv_in(x), base.time_mlp(t.float()), ctx, mask)
        assert [tuple(d.shape) for d in down] == [tuple(s.shape) for s in skips] == [(3, 16, 8, 8), (3, 32, 4, 4)]
        assert mid.shape == h.shape == (3, 32, 4, 4)


@pytest.mark.parametrize("variant", ["copy", "lite"])
def test_at_initialisation_the_controlled_model_is_the_base_bit_for_bit(variant):
    base = _base()
    x, t, tokens, _ = _inputs()
    with torch.no_grad():
        want = base(x, t, tokens)
        cns = [ControlNet(base, variant=variant), ControlNet(base, variant=variant)]
        for hint in (torch.rand(3, 1, 32, 32), torch.zeros(3, 1, 32, 32), torch.ones(3, 1, 32, 32) * 7):
            for scales in ([1.0], [0.5], [3.0]):
                assert torch.equal(ControlledUNet(base, cns[:1], scales)(x, t, [hint], tokens), want)
            assert torch.equal(ControlledUNet(base, cns, [1.0, 2.0])(x, t, [hint, 1 - hint], tokens), want)
        assert torch.equal(ControlledUNet(base, cns[:1])(x, t, [hint], None), base(x, t, None))


def test_gaussian_connectors_change_the_output_from_the_first_step():
    base = _base()
    x, t, tokens, hint = _inputs()
    torch.manual_seed(3)
    with torch.no_grad():
        out = ControlledUNet(base, [ControlNet(base, connector_init="gaussian")])(x, t, [hint], tokens)
        assert (out - base(x, t, tokens)).abs().max() > 1e-3


def test_first_step_gradient_reaches_only_the_output_zero_convolutions():
    base = _base()
    cn = ControlNet(base)
    model = ControlledUNet(base, [cn])
    b = generate_shapes(4, 32, 1, seed=2)
    z0 = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    loss = diffusion_loss(model.with_hints([make_hint(b.masks)]), z0, make_alphas_cumprod(), b.tokens, 0.5,
                          torch.Generator().manual_seed(1))
    loss.backward()
    out_convs = {id(p) for z in (*cn.controlnet_down_blocks, cn.controlnet_mid_block) for p in z.parameters()}
    for name, p in cn.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
        elif id(p) in out_convs:
            assert p.grad is not None and p.grad.abs().max() > 0, name      # dL/dW = dL/dy x^T, x != 0
        else:
            assert p.grad is None or torch.count_nonzero(p.grad) == 0, name  # behind W = 0: dL/dx = W^T dL/dy = 0
    assert all(p.grad is None for p in base.parameters())
    # the hint's own connector is behind the output connectors too: no gradient at step one
    assert torch.count_nonzero(cn.hint_encoder.zero_conv.weight.grad) == 0


def test_training_steps_move_the_controlnet_and_leave_the_base_untouched():
    base = _base()
    before = copy.deepcopy(base.state_dict())
    cn = ControlNet(base)
    model = ControlledUNet(base, [cn])
    opt = torch.optim.Adam([p for p in cn.parameters() if p.requires_grad], lr=1e-3)
    ac, g = make_alphas_cumprod(), torch.Generator().manual_seed(0)
    for step in range(3):
        b = generate_shapes(4, 32, 1, seed=10 + step)
        z0 = torch.randn(4, 4, 8, 8, generator=g)
        opt.zero_grad()
        diffusion_loss(model.with_hints([make_hint(b.masks)]), z0, ac, b.tokens, 0.5, g).backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert cn.controlnet_mid_block.weight.abs().max() > 0
    # after the first step the gradient flows behind the connectors: the copy has moved away from the base
    assert not torch.equal(cn.down[0]["res"].conv1.weight, base.down[0]["res"].conv1.weight)
    assert not torch.equal(cn.hint_encoder.zero_conv.weight, torch.zeros_like(cn.hint_encoder.zero_conv.weight))


def test_scales_weigh_and_sum_the_residuals_and_zero_is_the_base():
    base = _base()
    x, t, tokens, hint = _inputs()
    a, b = ControlNet(base), ControlNet(base)
    _perturb_connectors(a, 5)
    _perturb_connectors(b, 6)
    with torch.no_grad():
        assert torch.equal(ControlledUNet(base, [a], [0.0])(x, t, [hint], tokens), base(x, t, tokens))
        assert torch.equal(ControlledUNet(base, [a, b], [0.0, 0.0])(x, t, [hint, hint], tokens), base(x, t, tokens))
        assert not torch.allclose(ControlledUNet(base, [a], [1.0])(x, t, [hint], tokens), base(x, t, tokens))
        da, ma = a(x, t, hint, tokens)
        db, mb = b(x, t, 1 - hint, tokens)
        want = base(x, t, tokens, down_residuals=[0.7 * p + 1.5 * q for p, q in zip(da, db)],
                    mid_residual=0.7 * ma + 1.5 * mb)
        got = ControlledUNet(base, [a, b], [0.7, 1.5])(x, t, [hint, 1 - hint], tokens)
        assert torch.allclose(got, want, atol=1e-6)


def test_bound_hints_follow_the_doubled_batch_of_guidance():
    base = _base()
    cn = ControlNet(base)
    _perturb_connectors(cn)
    model = ControlledUNet(base, [cn])
    x, t, tokens, hint = _inputs()
    bound = model.with_hints([hint])
    null = bound.null_condition(3)
    with torch.no_grad():
        both = bound(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, tokens]))
        assert torch.allclose(both[:3], model(x, t, [hint], null), atol=1e-6)
        assert torch.allclose(both[3:], model(x, t, [hint], tokens), atol=1e-6)
    with pytest.raises(ValueError, match="multiple"):
        bound(x[:2], t[:2], tokens[:2])


def test_a_saved_controlnet_rebuilds_from_its_config(tmp_path):
    base = _base()
    cn = ControlNet(base, variant="copy")
    _perturb_connectors(cn)
    checkpoints.save("cn_test", cn, {}, tmp_path)
    e = checkpoints.entry("cn_test", tmp_path)
    again = build_model(e["model"], e["config"])
    again.load_state_dict(cn.state_dict())
    x, t, tokens, hint = _inputs()
    with torch.no_grad():
        d1, m1 = cn(x, t, hint, tokens)
        d2, m2 = again(x, t, hint, tokens)
    assert all(torch.equal(p, q) for p, q in zip(d1, d2)) and torch.equal(m1, m2)
    ControlledUNet(base, [again])  # the rebuilt config still matches the base's


def test_the_shipped_latent_diffusion_model_is_accepted_as_base():
    base = checkpoints.load("shapes_ldm32")
    cn = ControlNet(base, hint_channels=1)
    b = generate_shapes(2, 32, 1, seed=4)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.equal(ControlledUNet(base, [cn])(x, t, [make_hint(b.masks)], b.tokens), base(x, t, b.tokens))


def test_hints_are_the_mask_or_its_boundary():
    b = generate_shapes(16, 32, 1, seed=3)
    mask, edges = make_hint(b.masks), make_hint(b.masks, "edges")
    assert mask.shape == edges.shape == (16, 1, 32, 32) and mask.dtype == torch.float32
    assert torch.equal(mask[:, 0].bool(), b.masks > 0)
    assert bool((edges <= mask).all()) and 0 < edges.sum() < mask.sum()
    square = torch.zeros(1, 8, 8, dtype=torch.long)
    square[0, 2:6, 2:6] = 1
    assert make_hint(square, "edges")[0, 0].sum() == 12  # a 4x4 square: 16 pixels, 4 inside
    with pytest.raises(ValueError, match="kind"):
        make_hint(b.masks, "depth")
    with pytest.raises(TypeError, match="masks"):
        make_hint(b.masks.float())


def test_keep_words_leaves_colour_and_shape_at_their_slots():
    t = encode_caption("large red circle top left")[None]
    kept = keep_words(t)
    assert decode_tokens(kept) == ["red circle"]
    assert torch.equal(kept[0, 1:3], t[0, 1:3]) and kept[0, 0] == 0
    assert decode_tokens(keep_words(t, ("shape",))) == ["circle"]
    with pytest.raises(ValueError, match="keep"):
        keep_words(t, ("position",))


def test_segmentation_of_true_images_recovers_the_drawn_masks():
    b = generate_shapes(500, 32, 1, seed=7)
    iou = mask_iou(object_mask(b.images), b.masks > 0)
    # mean 0.975 here; a small cross loses most when an edge pixel's coverage sits near one half
    assert iou.shape == (500,) and iou.mean() >= 0.95 and iou.quantile(0.05) >= 0.85
    # and it is not a constant: a shifted mask scores much lower
    shifted = torch.roll(b.masks > 0, shifts=8, dims=2)
    assert mask_iou(object_mask(b.images), shifted).mean() < 0.5


def test_iou_by_hand():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True   # 4 pixels
    b[0, :2, :] = True    # 8 pixels, 4 shared
    assert mask_iou(a, b).tolist() == [0.5, 1.0]  # the second pair: both empty


def test_bad_inputs_name_the_argument():
    base = _base()
    cn = ControlNet(base)
    x, t, tokens, hint = _inputs()
    with pytest.raises(TypeError, match="base"):
        ControlNet(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="variant"):
        ControlNet(base, variant="big")
    with pytest.raises(ValueError, match="connector_init"):
        ControlNet(base, connector_init="ones")
    with pytest.raises(ValueError, match="hint: expected shape"):
        cn(x, t, hint[:, :, :16, :16], tokens)
    model = ControlledUNet(base, [cn])
    with pytest.raises(ValueError, match="hints: expected a list of 1"):
        model(x, t, [hint, hint], tokens)
    with pytest.raises(ValueError, match="scales"):
        model.scales = [1.0, 2.0]
    with pytest.raises(ValueError, match="scales"):
        model.scales = [float("nan")]
    with pytest.raises(ValueError, match="down_residuals"):
        base(x, t, tokens, down_residuals=[torch.zeros(3, 16, 8, 8)])
    with pytest.raises(ValueError, match="mid_residual"):
        base(x, t, tokens, mid_residual=torch.zeros(3, 32, 8, 8))
    other = CaptionUNet(CaptionUNetConfig(base_channels=8, context_dim=16))
    with pytest.raises(ValueError, match="controlnets"):
        ControlledUNet(other, [cn])
