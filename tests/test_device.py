"""course_lib.device: one place picks the device."""
import pytest
import torch

from course_lib.device import default_device


def test_default_device(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert default_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            default_device("cuda")
