"""nets/gpt.py: the VQGAN stage-two prior."""
import pytest
import torch

from course_lib.nets import GPTConfig, GPTPrior


def _gpt():
    torch.manual_seed(0)
    return GPTPrior(GPTConfig(vocab_size=10, block_size=12, n_layer=2, n_head=2, n_embd=16)).eval()


def test_causal_mask_a_token_never_sees_later_tokens():
    model = _gpt()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, 10, (3, 12), generator=g)
    base = model(idx)
    for j in range(12):
        changed = idx.clone()
        changed[:, j] = (changed[:, j] + 1) % 10
        out = model(changed)
        # position i predicts code i from codes < i: positions <= j cannot depend on code j
        assert torch.allclose(out[:, : j + 1], base[:, : j + 1], atol=1e-6), j
        if j < 11:
            assert not torch.allclose(out[:, j + 1], base[:, j + 1]), j  # the next position does see it


def test_loss_is_mean_nll_and_starts_near_uniform():
    model = _gpt()
    idx = torch.randint(0, 10, (4, 12), generator=torch.Generator().manual_seed(2))
    logp = model(idx).log_softmax(-1)
    nll = -logp.gather(-1, idx[..., None]).mean()
    assert model.loss(idx).item() == pytest.approx(nll.item(), rel=1e-5)
    assert abs(model.loss(idx).item() - torch.log(torch.tensor(10.0)).item()) < 0.5


def test_sampling_shapes_determinism_and_top_k():
    model = _gpt()
    a = model.sample(3, generator=torch.Generator().manual_seed(0))
    b = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (3, 12) and torch.equal(a, b) and a.min() >= 0 and a.max() < 10
    greedy = model.sample(2, top_k=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(greedy[0], greedy[1])  # top-1 is argmax decoding: no randomness left
    # each greedy code is the argmax given its prefix
    logits = model(greedy[:1])
    assert torch.equal(logits.argmax(-1)[0], greedy[0])


def test_gpt_bad_input():
    model = _gpt()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        model(torch.full((1, 3), 10))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(1, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        model.sample(1, top_k=11)
