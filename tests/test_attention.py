"""course_lib.attention and the caption encoder: the equations against PyTorch's attention and an explicit softmax,
the key mask, self-attention, the spatial wrapper, the swapped layer's shapes, the padding mask."""
import math

import pytest
import torch
from torch.nn import functional as F

from einops import rearrange

from course_lib.attention import (AttentionRecorder, CrossAttention, SpatialTransformer, SwappedCrossAttention,
                                  TransformerBlock)
from course_lib.data import CAPTION_LENGTH, VOCAB, generate_shapes
from course_lib.nets import CaptionEncoder, CaptionUNet, CaptionUNetConfig


def _attn(heads=4, dim_head=8, query_dim=16, context_dim=12):
    torch.manual_seed(0)
    return CrossAttention(query_dim, context_dim, heads, dim_head)


def test_cross_attention_equals_sdpa_and_the_explicit_formula():
    attn = _attn()
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(2, 10, 16, generator=g), torch.randn(2, 5, 12, generator=g)
    out, weights = attn(x, ctx, return_attention=True)
    split = lambda t: t.view(2, -1, 4, 8).transpose(1, 2)  # noqa: E731  (B, heads, tokens, d)
    q, k, v = split(attn.to_q(x)), split(attn.to_k(ctx)), split(attn.to_v(ctx))
    ref = F.scaled_dot_product_attention(q, k, v)
    explicit_w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    assert torch.allclose(weights, explicit_w, atol=1e-6)
    for r in (ref, explicit_w @ v):
        assert torch.allclose(out, attn.to_out(r.transpose(1, 2).reshape(2, 10, 32)), atol=1e-5)
    assert out.shape == (2, 10, 16) and weights.shape == (2, 4, 10, 5)  # one row per image token, one column per caption token


def test_key_mask_hides_tokens():
    attn = _attn()
    g = torch.Generator().manual_seed(2)
    x, ctx = torch.randn(1, 6, 16, generator=g), torch.randn(1, 5, 12, generator=g)
    mask = torch.tensor([[True, True, False, True, False]])
    out, w = attn(x, ctx, mask=mask, return_attention=True)
    assert torch.all(w[..., ~mask[0]] == 0)
    changed = ctx.clone()
    changed[:, ~mask[0]] = 100.0  # whatever sits behind the mask does not matter
    assert torch.allclose(attn(x, changed, mask=mask), out, atol=1e-6)
    q, k, v = (t.view(1, -1, 4, 8).transpose(1, 2) for t in (attn.to_q(x), attn.to_k(ctx), attn.to_v(ctx)))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    assert torch.allclose(out, attn.to_out(ref.transpose(1, 2).reshape(1, 6, 32)), atol=1e-5)


def test_self_attention_when_context_is_none():
    torch.manual_seed(0)
    attn = CrossAttention(16, None, 4, 8)
    x = torch.randn(2, 7, 16)
    assert torch.equal(attn(x), attn(x, x))


def test_bad_input():
    attn = _attn()
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(1, 3, 16), torch.randn(1, 5, 12), mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        attn(torch.randn(1, 3, 16), torch.randn(1, 5, 12), mask=torch.zeros(1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="same B"):
        attn(torch.randn(2, 3, 16), torch.randn(1, 5, 12))


def test_spatial_transformer_round_trip_and_identity_at_init():
    torch.manual_seed(0)
    st = SpatialTransformer(16, 12, heads=4)
    x, ctx = torch.randn(2, 16, 5, 7), torch.randn(2, 3, 12)
    assert torch.equal(st(x, ctx), x)  # proj_out starts at zero: the block is the identity
    torch.nn.init.normal_(st.proj_out.weight)
    out = st(x, ctx)
    assert out.shape == x.shape and not torch.equal(out, x)
    # one token per pixel in raster order, one key per context token: the recorder receives (B, heads, H*W, M)
    recorder = AttentionRecorder()
    st(x, ctx, record=recorder.layer("st"))
    assert list(recorder.maps) == ["st"] and recorder.maps["st"][0].shape == (2, 4, 35, 3)
    # the raster order: pixel (r, c) is token r * W + c, so permuting the map's pixels permutes the output the same way
    perm = torch.randperm(35)
    flat = x.flatten(2)
    out_perm = st(flat[:, :, perm].view_as(x), ctx).flatten(2)
    assert torch.allclose(out_perm, out.flatten(2)[:, :, perm], atol=1e-5)


def test_transformer_block_is_pre_norm_residual():
    torch.manual_seed(0)
    blk = TransformerBlock(16, 12, heads=4, dim_head=4)
    x, ctx = torch.randn(1, 6, 16), torch.randn(1, 3, 12)
    h = x + blk.self_attn(blk.norm1(x))
    h = h + blk.cross_attn(blk.norm2(h), ctx)
    assert torch.allclose(blk(x, ctx), h + blk.ff(blk.norm3(h)), atol=1e-6)


def test_swapped_attention_returns_one_vector_per_caption_token():
    torch.manual_seed(0)
    sw = SwappedCrossAttention(16, 12, heads=4, dim_head=8)
    x, ctx = torch.randn(2, 10, 16), torch.randn(2, 5, 12)
    per_token = sw(x, ctx, return_per_token=True)
    assert per_token.shape == (2, 5, 16)  # M caption tokens, not N pixels
    out, w = sw(x, ctx, return_attention=True)
    assert w.shape == (2, 4, 5, 10) and torch.allclose(w.sum(-1), torch.ones(2, 4, 5))  # softmax over pixels
    assert out.shape == (2, 10, 16) and torch.equal(out[:, 0], out[:, 7])  # every pixel gets the same vector
    mask = torch.tensor([[True, True, False, False, False], [True] * 5])
    pooled = sw(x, ctx, mask=mask)[:, 0]
    assert torch.allclose(pooled[0], per_token[0, :2].mean(0), atol=1e-6)



def test_swapped_scatter_route_sends_each_word_where_it_looked():
    """o_n = (1/M') sum_m N A_mn u_m, computed here from the layer's own A and u, against the layer's output."""
    torch.manual_seed(0)
    sw = SwappedCrossAttention(16, 12, heads=4, dim_head=8, route="scatter")
    x, ctx = torch.randn(2, 10, 16), torch.randn(2, 5, 12)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    out, attn = sw(x, ctx, mask=mask, return_attention=True)
    u = sw(x, ctx, mask=mask, return_per_token=True)
    for b, real in enumerate((3, 5)):
        a = attn[b].mean(0)[:real]  # (M', N), averaged over heads; the pad tokens send nothing
        expected = (10 * a.T @ u[b, :real]) / real
        assert torch.allclose(out[b], expected, atol=1e-5)
    assert not torch.allclose(out[:, 0], out[:, 7])  # per pixel, unlike the mean route
    mean = SwappedCrossAttention(16, 12, heads=4, dim_head=8, route="mean")
    mean.load_state_dict(sw.state_dict())
    with torch.no_grad():  # uniform attention (zero queries): N A_mn = 1 and the two routes agree
        sw.to_q.weight.zero_()
        mean.to_q.weight.zero_()
    assert torch.allclose(sw(x, ctx, mask=mask), mean(x, ctx, mask=mask), atol=1e-6)
    with pytest.raises(ValueError, match="route"):
        SwappedCrossAttention(16, 12, route="per-pixel")

def test_caption_encoder_padding_mask():
    torch.manual_seed(0)
    enc = CaptionEncoder(len(VOCAB), CAPTION_LENGTH, 16, layers=2, heads=4)
    tokens = generate_shapes(3, 32, 1, seed=0).tokens  # one object: 5 words, then <pad>
    ctx, mask = enc(tokens)
    assert ctx.shape == (3, CAPTION_LENGTH + 1, 16) and mask.shape == (3, CAPTION_LENGTH + 1)
    assert mask[:, 0].all() and torch.equal(mask[:, 1:], tokens != 0)
    with torch.no_grad():  # the real tokens do not see the padding: change the <pad> embedding, nothing changes
        enc.tok_emb.weight[0] += 5.0
    ctx2, _ = enc(tokens)
    assert torch.allclose(ctx2[mask], ctx[mask], atol=1e-5)
    empty, m = enc(torch.zeros(2, CAPTION_LENGTH, dtype=torch.long))
    assert m.sum().item() == 2 and torch.isfinite(empty).all()  # the empty caption: only the start token
    with pytest.raises(ValueError, match="tokens"):
        enc(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="ids"):
        enc(torch.full((1, CAPTION_LENGTH), len(VOCAB)))


@pytest.mark.parametrize("attention", ["standard", "swapped", "swapped_scatter"])
def test_caption_unet_shapes_and_attention_maps(attention):
    torch.manual_seed(0)
    unet = CaptionUNet(CaptionUNetConfig(attention=attention))
    tokens = generate_shapes(2, 32, 1, seed=1).tokens
    torch.nn.init.normal_(unet.conv_out.weight, std=0.1)  # zero at init ("predict no noise"): wake it up
    for st in unet.transformers().values():
        torch.nn.init.normal_(st.proj_out.weight, std=0.1)
    recorder = AttentionRecorder()
    out = unet(torch.randn(2, 4, 8, 8), torch.tensor([3, 900]), tokens, recorder=recorder)
    assert out.shape == (2, 4, 8, 8)
    names = list(unet.transformers())
    assert names == ["down0", "down1", "mid", "up1", "up0"] == list(recorder.maps)  # the forward pass's order
    assert all(len(v) == 1 for v in recorder.maps.values())
    w = recorder.maps["down0"][0]
    assert w.shape == ((2, 4, 64, CAPTION_LENGTH + 1) if attention == "standard" else (2, 4, CAPTION_LENGTH + 1, 64))
    # the caption matters, and None is the empty caption
    assert not torch.allclose(unet(torch.zeros(2, 4, 8, 8), 5, tokens), unet(torch.zeros(2, 4, 8, 8), 5, None))
    assert torch.equal(unet(torch.zeros(2, 4, 8, 8), 5, None),
                       unet(torch.zeros(2, 4, 8, 8), 5, torch.zeros_like(tokens)))
    with pytest.raises(ValueError, match="attention"):
        CaptionUNet(CaptionUNetConfig(attention="sideways"))


@pytest.mark.parametrize("context_dim", [32, None])
def test_cross_attention_equals_diffusers_attention_with_the_same_weights(context_dim):
    """Reference: diffusers' Attention (the latent-diffusion layer's names to_q, to_k, to_v, to_out map one to one)."""
    attention_processor = pytest.importorskip("diffusers.models.attention_processor")
    torch.manual_seed(0)
    ours = CrossAttention(64, context_dim, heads=4, dim_head=16)
    theirs = attention_processor.Attention(query_dim=64, cross_attention_dim=context_dim, heads=4, dim_head=16,
                                           bias=False, out_bias=True)
    theirs.set_processor(attention_processor.AttnProcessor())  # the plain softmax(QK^T / sqrt d) V processor
    with torch.no_grad():
        for name in ("to_q", "to_k", "to_v"):
            getattr(theirs, name).weight.copy_(getattr(ours, name).weight)
        theirs.to_out[0].weight.copy_(ours.to_out.weight)
        theirs.to_out[0].bias.copy_(ours.to_out.bias)
    x = torch.randn(2, 10, 64)
    context = torch.randn(2, 5, context_dim) if context_dim else None
    with torch.no_grad():
        assert torch.allclose(ours(x, context), theirs(x, encoder_hidden_states=context), atol=1e-5)


def test_causal_self_attention_never_looks_ahead():
    torch.manual_seed(0)
    attn = CrossAttention(16, None, heads=2, dim_head=8, causal=True)
    x = torch.randn(2, 7, 16)
    out, w = attn(x, return_attention=True)
    assert torch.equal(w.triu(1), torch.zeros_like(w))  # weight 0 on every later position
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 7))
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 3, 16)  # changing positions >= 4 leaves outputs 0..3 as they were
    assert torch.allclose(attn(changed)[:, :4], out[:, :4], atol=1e-6)
    q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=2) for f in (attn.to_q, attn.to_k, attn.to_v))
    ref = attn.to_out(rearrange(F.scaled_dot_product_attention(q, k, v, is_causal=True), "b h n d -> b n (h d)"))
    assert torch.allclose(out, ref, atol=1e-5)
    with pytest.raises(ValueError, match="causal"):
        CrossAttention(16, 12, causal=True)


def test_the_one_block_in_its_three_forms():
    torch.manual_seed(0)
    # self-attention only (the caption encoder, the GPT prior): no cross-attention parameters at all
    enc = TransformerBlock(16, None, heads=4)
    assert enc.cross_attn is None and enc.norm2 is None
    x = torch.randn(2, 5, 16)
    h = x + enc.self_attn(enc.norm1(x))
    assert torch.allclose(enc(x), h + enc.ff(enc.norm3(h)), atol=1e-6)
    # the pixel UNet's middle block: x + GN x + SelfAttn(GN x), nothing else
    st = SpatialTransformer(16, None, heads=4, groups=4, projections=False, layer_norm=False, feed_forward=False)
    fmap = torch.randn(2, 16, 3, 3)
    g = rearrange(st.norm(fmap), "b c h w -> b (h w) c")
    expected = fmap + rearrange(g + st.blocks[0].self_attn(g), "b (h w) c -> b c h w", h=3)
    assert torch.allclose(st(fmap), expected, atol=1e-6)
    assert sorted(n for n, _ in st.named_parameters()) == sorted(
        ["norm.weight", "norm.bias"] + [f"blocks.0.self_attn.{p}" for p in
                                        ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.weight", "to_out.bias")])


def test_recorder_rows_keep_the_conditional_half_of_a_guided_batch():
    from course_lib.guidance import cfg_eps_fn

    torch.manual_seed(0)
    unet = CaptionUNet(CaptionUNetConfig(channel_mults=(1,), attention_levels=(True,), base_channels=16,
                                         context_dim=16))
    tokens = generate_shapes(3, 32, 1, seed=2).tokens
    z, t = torch.randn(3, 4, 8, 8), torch.full((3,), 500)
    direct = AttentionRecorder()
    unet(z, t, tokens, recorder=direct)  # the conditional branch alone
    guided = AttentionRecorder()
    cfg_eps_fn(unet, tokens, 3.0, recorder=guided)(z, t)  # a batch of 6: null captions first, then the captions
    for name in direct.maps:
        assert guided.maps[name][0].shape == direct.maps[name][0].shape
        assert torch.allclose(guided.maps[name][0], direct.maps[name][0], atol=1e-5)
