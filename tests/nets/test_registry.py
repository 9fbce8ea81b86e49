"""nets/__init__.py: the registry that rebuilds a model from its manifest config."""
import pytest
import torch

from course_lib.nets import MODELS, UNet, UNetConfig, build_model


def test_build_model_round_trips_config():
    from dataclasses import asdict
    import json
    net = UNet(UNetConfig(num_classes=4, base_channels=16))
    cfg = json.loads(json.dumps(asdict(net.config)))
    rebuilt = build_model("UNet", cfg)
    assert rebuilt.config == net.config
    with pytest.raises(ValueError, match="kind"):
        build_model("ResNet", {})


def test_every_registered_family_rebuilds_from_its_default_config_and_refuses_unknown_fields():
    from dataclasses import asdict
    for kind, (cls, cfg_cls) in MODELS.items():
        model = build_model(kind, asdict(cfg_cls()))
        assert isinstance(model, cls) and model.config == cfg_cls()
        assert sum(p.numel() for p in model.parameters()) > 0 and isinstance(next(model.parameters()), torch.Tensor)
    with pytest.raises(TypeError, match=r"config: expected fields of UNetConfig.*'base_chanels' \(did you mean 'base_channels'\?\)"):
        build_model("UNet", {"base_chanels": 8})
