"""nets/blocks.py: the sinusoidal time embedding and its MLP."""
import pytest
import torch

from course_lib.nets import TimeEmbedding, timestep_embedding


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 10, 999]), 32)
    assert e.shape == (3, 32)
    assert torch.allclose(e[0, :16], torch.ones(16)) and torch.allclose(e[0, 16:], torch.zeros(16))
    assert not torch.allclose(e[1], e[2])
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(torch.tensor([1]), 7)


def test_time_embedding_is_the_mlp_of_the_sinusoidal_features_with_the_checkpoint_names():
    torch.manual_seed(0)
    emb = TimeEmbedding(8, 32)
    t = torch.tensor([0, 10, 999])
    manual = emb[2](torch.nn.functional.silu(emb[0](timestep_embedding(t, 8))))
    assert torch.allclose(emb(t), manual)
    assert sorted(emb.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]  # as the shipped time_mlp keys
