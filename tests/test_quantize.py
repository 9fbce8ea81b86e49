import math

import pytest
import torch

from course_lib.quantize import (VectorQuantizer, codebook_usage, lfq_codes, lfq_entropy_loss, lfq_index,
                                 lfq_quantize, nearest_code, straight_through, vq_losses)


def gen(s):
    return torch.Generator().manual_seed(s)


def test_nearest_code_matches_brute_force_and_breaks_ties_low():
    z = torch.randn(7, 5, 3, generator=gen(0))
    cb = torch.randn(40, 3, generator=gen(1))
    brute = ((z[..., None, :] - cb) ** 2).sum(-1).argmin(-1)
    assert torch.equal(nearest_code(z, cb), brute)
    assert torch.equal(nearest_code(z, cb, chunk=4), brute)  # chunking changes nothing
    tied = torch.cat([cb[:3], cb[:3]])  # codes 3..5 repeat codes 0..2
    assert int(nearest_code(cb[1:2], tied)[0]) == 1
    with pytest.raises(ValueError, match="z"):
        nearest_code(torch.zeros(4, 2), cb)


def test_straight_through_value_and_gradient():
    z_e = torch.randn(6, 4, generator=gen(2), requires_grad=True)
    z_q = torch.randn(6, 4, generator=gen(3), requires_grad=True)
    out = straight_through(z_e, z_q)
    assert torch.equal(out, z_q.detach() + 0 * out) or torch.allclose(out, z_q, atol=1e-7)
    w = torch.randn(6, 4, generator=gen(4))
    (out * w).sum().backward()
    assert torch.allclose(z_e.grad, w)      # the gradient at z_q is copied to z_e
    assert z_q.grad is None or torch.all(z_q.grad == 0)


def test_each_loss_term_trains_what_the_notes_say():
    torch.manual_seed(0)
    enc, dec = torch.nn.Linear(3, 2), torch.nn.Linear(2, 3)
    vq = VectorQuantizer(8, 2)
    x = torch.randn(32, 3, generator=gen(5))
    z_e = enc(x)
    out = vq(z_e)
    rec = ((dec(out.z_q) - x) ** 2).mean()
    params = {"encoder": list(enc.parameters()), "decoder": list(dec.parameters()), "codebook": [vq.codebook]}
    table = {}
    for name, term in [("reconstruction", rec), ("commitment", out.commitment_loss), ("codebook", out.codebook_loss)]:
        grads = torch.autograd.grad(term, [p for ps in params.values() for p in ps], retain_graph=True,
                                    allow_unused=True)
        it = iter(grads)
        per_group = {k: [next(it) for _ in ps] for k, ps in params.items()}  # consume in order, then test
        table[name] = {k: any(g is not None and bool(g.abs().sum() > 0) for g in gs) for k, gs in per_group.items()}
    assert table["reconstruction"] == {"encoder": True, "decoder": True, "codebook": False}
    assert table["commitment"] == {"encoder": True, "decoder": False, "codebook": False}
    assert table["codebook"] == {"encoder": False, "decoder": False, "codebook": True}


def test_vq_losses_values():
    z_e, z_q = torch.zeros(2, 2), torch.ones(2, 2)
    cb, commit = vq_losses(z_e, z_q, beta=0.5)
    assert cb.item() == 1.0 and commit.item() == 0.5
    with pytest.raises(ValueError, match="beta"):
        vq_losses(z_e, z_q, beta=-1)


def test_ema_update_follows_the_appendix_formulas():
    vq = VectorQuantizer(2, 1, ema=True, decay=0.9, eps=0.0)
    vq.codebook.data = torch.tensor([[0.0], [10.0]])
    vq.embed_sum.data = torch.tensor([[0.0], [10.0]])
    vq.cluster_size.data = torch.tensor([1.0, 1.0])
    z = torch.tensor([[1.0], [2.0], [9.0]])  # two go to code 0, one to code 1
    vq.train()
    vq(z)
    n = torch.tensor([2.0, 1.0])
    N = 0.9 * torch.tensor([1.0, 1.0]) + 0.1 * n
    m = 0.9 * torch.tensor([[0.0], [10.0]]) + 0.1 * torch.tensor([[3.0], [9.0]])
    assert torch.allclose(vq.cluster_size, N) and torch.allclose(vq.embed_sum, m)
    assert torch.allclose(vq.codebook, m / N[:, None])
    assert vq(z).codebook_loss.item() == 0.0


def test_dead_codes_are_restarted_onto_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, restart_dead_codes=True, restart_after=3)
    vq.codebook.data = torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 0.0], [0.0, 300.0]])
    z = torch.randn(64, 2, generator=gen(6))
    vq.train()
    for _ in range(3):
        vq(z)
    far = vq.codebook.data[1:]
    assert far.abs().max() < 10  # the three unused codes now sit on encoder outputs
    assert all(any(torch.equal(c, row) for row in z) for c in far)


def test_codebook_usage_on_known_index_sets():
    u = codebook_usage(torch.arange(8), 8)
    assert u["perplexity"] == pytest.approx(8.0) and u["usage"] == 1.0
    u = codebook_usage(torch.zeros(100, dtype=torch.long), 16)
    assert u["perplexity"] == pytest.approx(1.0) and u["usage"] == 1 / 16
    u = codebook_usage(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), 16)
    assert u["perplexity"] == pytest.approx(4.0) and u["usage"] == 0.25
    with pytest.raises(ValueError, match="indices"):
        codebook_usage(torch.tensor([0, 16]), 16)


def test_lfq_index_and_codes_round_trip():
    codes = lfq_codes(5)
    assert codes.shape == (32, 5)
    assert torch.equal(lfq_index(codes), torch.arange(32))
    assert lfq_index(torch.tensor([1.0, -1.0, -1.0])).item() == 1  # dimension 0 is the lowest bit
    assert lfq_index(torch.tensor([-1.0, -1.0, 1.0])).item() == 4
    z = torch.randn(10, 5, generator=gen(7))
    q, idx = lfq_quantize(z)
    assert torch.equal(q, torch.sign(z)) and torch.equal(codes[idx], q)
    # the sign pattern is the nearest code of {-1, 1}^d
    assert torch.equal(nearest_code(z, codes), idx)


def test_lfq_entropy_on_known_distributions():
    d = 3
    # confident and spread over all 8 codes: sample entropy ~0, codebook entropy = log 8
    z = lfq_codes(d).repeat(4, 1) * 10
    loss, parts = lfq_entropy_loss(z, temperature=1.0)
    assert parts["sample_entropy"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["codebook_entropy"].item() == pytest.approx(math.log(8), rel=1e-5)
    # z = 0: every assignment uniform, both entropies log 8, loss 0
    loss0, parts0 = lfq_entropy_loss(torch.zeros(5, d))
    assert parts0["sample_entropy"].item() == pytest.approx(math.log(8), rel=1e-6) and abs(loss0.item()) < 1e-6
    # confident but collapsed onto one code: codebook entropy ~0, loss ~0 (no reward)
    _, parts_c = lfq_entropy_loss(torch.full((6, d), 10.0))
    assert parts_c["codebook_entropy"].item() == pytest.approx(0.0, abs=1e-5)
    assert loss.item() < loss0.item()
    with pytest.raises(ValueError, match="temperature"):
        lfq_entropy_loss(z, temperature=0)
