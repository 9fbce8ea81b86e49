"""nets/dit.py: patchify, the position table, adaLN-Zero and the DiT model (Peebles & Xie)."""
import math

import pytest
import torch
from einops import rearrange

from course_lib.nets.dit import (CONDITIONINGS, DiT, DiTBlock, DiTConfig, dit_gflops, modulate, patchify,
                                 sincos_pos_embed_1d, sincos_pos_embed_2d, unpatchify)


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape,p", [((2, 4, 8, 8), 1), ((2, 4, 8, 8), 2), ((3, 4, 8, 8), 4), ((1, 3, 6, 10), 2),
                                     ((2, 1, 9, 3), 3)])
def test_patchify_is_raster_order_with_pqc_tokens_and_unpatchify_inverts_it(shape, p):
    x = torch.randn(shape, generator=gen(0))
    b, c, h, w = shape
    tokens = patchify(x, p)
    assert tokens.shape == (b, (h // p) * (w // p), p * p * c)
    # token (i, j) in raster order holds the patch x[:, :, i p:(i+1) p, j p:(j+1) p] laid out (p, p, C)
    i, j = (h // p) - 1, 0
    patch = x[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p].permute(0, 2, 3, 1).reshape(b, -1)
    assert torch.equal(tokens[:, i * (w // p) + j], patch)
    # the reference code's unpatchify: reshape (n, h, w, p, q, c), einsum nhwpqc -> nchpwq
    ref = torch.einsum("nhwpqc->nchpwq", tokens.reshape(b, h // p, w // p, p, p, c)).reshape(b, c, h, w)
    assert torch.equal(ref, x)
    assert torch.equal(unpatchify(tokens, p, c, h, w), x)
    assert torch.equal(tokens, rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p))


def test_patchify_and_unpatchify_refuse_bad_shapes():
    with pytest.raises(ValueError, match="patch_size: expected a divisor"):
        patchify(torch.zeros(1, 4, 8, 8), 3)
    with pytest.raises(TypeError, match="patch_size"):
        patchify(torch.zeros(1, 4, 8, 8), 2.0)
    with pytest.raises(ValueError, match="x"):
        patchify(torch.zeros(4, 8, 8), 2)
    with pytest.raises(ValueError, match=r"tokens: expected \(B, 16, 16\)"):
        unpatchify(torch.zeros(1, 16, 12), 2, 4, 8, 8)


def test_the_position_table_is_the_closed_form():
    dim, grid = 16, 3
    table = sincos_pos_embed_2d(dim, grid)
    assert table.shape == (grid * grid, dim)
    for i in range(grid):
        for j in range(grid):
            row = table[i * grid + j]
            for k in range(dim // 4):  # each half: sin then cos of the position times 10000^(-k / (d/4))
                omega = 10000 ** (-k / (dim / 4))
                assert math.isclose(row[k], math.sin(i * omega), abs_tol=1e-6)
                assert math.isclose(row[dim // 4 + k], math.cos(i * omega), abs_tol=1e-6)
                assert math.isclose(row[dim // 2 + k], math.sin(j * omega), abs_tol=1e-6)
                assert math.isclose(row[3 * dim // 4 + k], math.cos(j * omega), abs_tol=1e-6)
    assert torch.equal(sincos_pos_embed_1d(8, torch.arange(3))[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="dim: expected a multiple of 4"):
        sincos_pos_embed_2d(10, 2)


def test_modulate_is_x_times_one_plus_scale_plus_shift():
    x = torch.randn(2, 5, 6, generator=gen(1))
    shift, scale = torch.randn(2, 6, generator=gen(2)), torch.randn(2, 6, generator=gen(3))
    assert torch.allclose(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])
    assert torch.equal(modulate(x, torch.zeros(2, 6), torch.zeros(2, 6)), x)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_only_adaln_zero_starts_as_the_identity(conditioning):
    torch.manual_seed(0)
    block = DiTBlock(32, 4, 2.0, conditioning)
    x, c = torch.randn(3, 7, 32, generator=gen(4)), torch.randn(3, 32, generator=gen(5))
    out = block(x, c)
    assert out.shape == x.shape
    if conditioning == "adaln_zero":
        assert torch.equal(out, x)
        # and a gradient still reaches the modulation: the gates start at zero, their gradient does not
        out.square().sum().backward()
        assert block.adaLN_modulation[-1].weight.grad.abs().sum() > 0
    else:
        assert not torch.allclose(out, x, atol=1e-3)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_the_whole_dit_outputs_zero_at_init_and_learns(conditioning):
    torch.manual_seed(0)
    model = DiT(DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                          num_classes=3, conditioning=conditioning))
    x, t, y = torch.randn(4, 4, 8, 8, generator=gen(6)), torch.tensor([0, 10, 500, 999]), torch.tensor([0, 1, 2, 3])
    out = model(x, t, y)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    target = torch.randn(4, 4, 8, 8, generator=gen(7))
    first = None
    for _ in range(5):
        loss = (model(x, t, y) - target).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    # the label matters after training, and y = None is the null label
    with torch.no_grad():
        assert not torch.allclose(model(x, t, y), model(x, t, torch.zeros(4, dtype=torch.long)))
        assert torch.equal(model(x, t), model(x, t, model.null_condition(4)))


def test_gflops_are_counted_and_grow_as_the_tokens_when_the_patch_shrinks():
    d, c, depth, size = 64, 4, 2, 8

    def counted(p):
        return dit_gflops(DiT(DiTConfig(input_size=size, patch_size=p, in_channels=c, hidden_size=d, depth=depth,
                                        num_heads=4, num_classes=3)))

    def by_hand(p):  # 2 flops per multiply-add, N = (size / p)^2 tokens of p*p*c values
        n = (size // p) ** 2
        fixed = 2 * (256 * d + d * d) + depth * 2 * d * 6 * d + 2 * d * 2 * d  # time MLP, adaLN regressions
        per_token = 2 * p * p * c * d + depth * 2 * (3 * d * d + d * d + 2 * 4 * d * d) + 2 * d * p * p * c
        attention = depth * 2 * 2 * n * n * d  # QK^T and the weighted sum of V, every head together
        return (fixed + n * per_token + attention) / 1e9

    for p in (1, 2, 4):
        assert counted(p) == pytest.approx(by_hand(p), rel=1e-12), p
    g1, g2, g4 = counted(1), counted(2), counted(4)
    assert g1 > g2 > g4 > 0
    # the token-dependent part grows 4x per halving of p (N ~ p^-2), attention's N^2 part 16x
    assert by_hand(1) - by_hand(2) > 3 * (by_hand(2) - by_hand(4))


def test_odd_configurations_run():
    torch.manual_seed(0)
    for cfg in (DiTConfig(input_size=6, patch_size=3, in_channels=1, hidden_size=12, depth=1, num_heads=3),
                DiTConfig(input_size=4, patch_size=1, in_channels=2, hidden_size=8, depth=3, num_heads=1,
                          mlp_ratio=1.5, num_classes=1, conditioning="in_context"),
                DiTConfig(input_size=10, patch_size=5, in_channels=3, hidden_size=20, depth=1, num_heads=5,
                          conditioning="cross_attention")):
        model = DiT(cfg)
        x = torch.randn(2, cfg.in_channels, cfg.input_size, cfg.input_size, generator=gen(8))
        torch.nn.init.normal_(model.final_layer.linear.weight)  # leave init: a non-zero output shows the flow
        out = model(x, torch.tensor([3, 700]))
        assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().sum() > 0


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="conditioning: expected one of"):
        DiTBlock(32, 4, conditioning="film")
    with pytest.raises(ValueError, match="num_heads: expected a divisor of hidden_size 30"):
        DiTBlock(30, 4)
    with pytest.raises(ValueError, match="patch_size: expected a divisor of input_size 8"):
        DiT(DiTConfig(input_size=8, patch_size=3))
    model = DiT(DiTConfig(input_size=8, patch_size=2, hidden_size=32, depth=1, num_heads=4, num_classes=3))
    with pytest.raises(ValueError, match=r"x: expected \(B, 4, 8, 8\)"):
        model(torch.zeros(2, 3, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"y: expected labels in \[0, 3\]"):
        model(torch.zeros(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="t: expected timesteps"):
        model(torch.zeros(2, 4, 8, 8), torch.tensor([1, 2000]))
    unlabelled = DiT(DiTConfig(input_size=8, patch_size=2, hidden_size=32, depth=1, num_heads=4))
    with pytest.raises(ValueError, match="y: this DiT has no labels"):
        unlabelled(torch.zeros(2, 4, 8, 8), torch.tensor([1, 2]), torch.tensor([0, 1]))


def test_the_adaln_zero_block_is_two_gated_residuals_with_its_regressed_modulation():
    from course_lib.nets.dit import gated_residual

    torch.manual_seed(0)
    block = DiTBlock(16, 2, conditioning="adaln_zero")
    torch.nn.init.normal_(block.adaLN_modulation[-1].weight, std=0.3)  # away from init: gates, shifts, scales != 0
    x, c = torch.randn(3, 5, 16, generator=gen(1)), torch.randn(3, 16, generator=gen(2))
    m = block.modulation(c)
    assert list(m) == ["shift1", "scale1", "gate1", "shift2", "scale2", "gate2"] and m["gate1"].shape == (3, 16)
    by_hand = x + m["gate1"][:, None] * block.attn(block.norm1(x) * (1 + m["scale1"][:, None]) + m["shift1"][:, None])
    by_hand = by_hand + m["gate2"][:, None] * block.mlp(block.norm2(by_hand) * (1 + m["scale2"][:, None])
                                                        + m["shift2"][:, None])
    torch.testing.assert_close(block(x, c), by_hand)
    y = gated_residual(x, block.mlp, block.norm2, m["shift2"], m["scale2"], torch.zeros(3, 16))
    assert torch.equal(y, x)  # a zero gate: the identity whatever the branch
    assert list(DiTBlock(16, 2, conditioning="adaln").modulation(c)) == ["shift1", "scale1", "shift2", "scale2"]
    assert DiTBlock(16, 2, conditioning="in_context").modulation(c) == {}
