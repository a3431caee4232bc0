"""Networks: shapes, gradients, NIHSS path, freezing, configs and ImageNet initialisation."""

from __future__ import annotations

import logging

import pytest
import torch
import torchvision

from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.networks import (
    ModelConfig,
    VGG16Trunk,
    build_model,
    set_trunk_trainable,
    torchvision_cache_file,
)

from autograd_graph import autograd_node_names
from programmer_errors import raises_programmer_error

PMS = ("cbf", "cbv", "ttp", "tmax")
SMALL = dict(width=1 / 16, image_size=64)


def images_for(config: ModelConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    return torch.randn(batch, len(config.inputs), 3, size, size, generator=generator)


@pytest.mark.parametrize("arch", ["SF", "EF", "EFI"])
@pytest.mark.parametrize("inputs", [PMS, PMS + ("mip",)], ids=["PMs", "PMs+M"])
@pytest.mark.parametrize("use_nihss", [False, True], ids=["", "N"])
def test_forward_shape_every_variant(arch, inputs, use_nihss):
    config = ModelConfig(arch=arch, inputs=inputs, use_nihss=use_nihss, **SMALL)
    model = build_model(config).eval()
    nihss = torch.tensor([4.0, 21.0]) if use_nihss else None
    with torch.no_grad():
        logits = model(images_for(config), nihss)
    assert logits.shape == (2, 4, 64, 64)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ["SF", "EF", "EFI"])
def test_three_classes_and_non_square_power_sizes(arch):
    config = ModelConfig(arch=arch, num_classes=3, width=1 / 16, image_size=96)
    with torch.no_grad():
        assert build_model(config).eval()(images_for(config, batch=1)).shape == (1, 3, 96, 96)


@pytest.mark.parametrize("arch", ["SF", "EF", "EFI"])
def test_gradients_reach_every_trunk_and_the_nihss_layers(arch):
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, use_nihss=True, dropout=0.0, **SMALL)
    model = build_model(config)
    logits = model(images_for(config), torch.tensor([5.0, 30.0]))
    logits.square().mean().backward()
    trunks = [m for m in model.modules() if isinstance(m, VGG16Trunk)]
    assert len(trunks) == (4 if arch == "SF" else 1)
    for trunk in trunks:
        first = trunk.convolutions()[0].weight.grad
        assert first is not None and first.abs().sum() > 0
    assert model.nihss_embedding.dense1.weight.grad.abs().sum() > 0


def test_nihss_changes_the_output():
    torch.manual_seed(0)
    config = ModelConfig(use_nihss=True, **SMALL)
    model = build_model(config).eval()
    images = images_for(config, batch=1)
    with torch.no_grad():
        low = model(images, torch.tensor([0.0]))
        high = model(images, torch.tensor([40.0]))
    assert not torch.allclose(low, high)


def trainable_trunk_blocks(model) -> set[tuple[int, int]]:
    trunks = [m for m in model.modules() if isinstance(m, VGG16Trunk)]
    return {
        (t, b)
        for t, trunk in enumerate(trunks)
        for b, block in enumerate(trunk.blocks)
        for p in block.parameters()
        if p.requires_grad
    }


@pytest.mark.parametrize("arch, trunks", [("SF", 4), ("EF", 1), ("EFI", 1)])
def test_freezing_by_stage(arch, trunks):
    model = build_model(ModelConfig(arch=arch, use_nihss=True, **SMALL))
    trunk_ids = {id(p) for m in model.modules() if isinstance(m, VGG16Trunk) for p in m.parameters()}
    others = [p for p in model.parameters() if id(p) not in trunk_ids]
    expected = {
        "frozen": set(),
        "later_half": {(t, b) for t in range(trunks) for b in (3, 4)},
        "all": {(t, b) for t in range(trunks) for b in range(5)},
    }
    for stage in ("frozen", "later_half", "all", "frozen"):
        set_trunk_trainable(model, stage)
        assert trainable_trunk_blocks(model) == expected[stage], stage
        assert all(p.requires_grad for p in others)
    set_trunk_trainable(model, "later_half")
    frozen = [p for p in model.parameters() if not p.requires_grad]
    # Blocks 1-3 of every trunk: 7 convolutions, weight and bias each.
    assert len(frozen) == trunks * 7 * 2
    with raises_programmer_error(ValueError, match="stage"):
        set_trunk_trainable(model, "half")
    with raises_programmer_error(TypeError, match="no VGG-16 trunk"):
        set_trunk_trainable(torch.nn.Linear(2, 2), "all")


def test_config_round_trip_and_validation():
    config = ModelConfig(arch="EFI", inputs=["cbf", "tmax", "mip"], use_nihss=True, width=0.25,
                         image_size=128, num_classes=3, encoding="scalar")
    assert config.inputs == ("cbf", "tmax", "mip")
    assert ModelConfig.from_dict(config.to_dict()) == config
    bad = [
        dict(arch="UNet"),
        dict(inputs=("cbf", "adc")),
        dict(inputs=()),
        dict(inputs=("cbf", "cbf")),
        dict(image_size=500),
        dict(num_classes=5),
        dict(width=0),
        dict(dropout=1.0),
        dict(encoding="hsv"),
    ]
    for values in bad:
        with pytest.raises(InputError):
            ModelConfig(**values)
    with pytest.raises(InputError, match="colour"):
        ModelConfig.from_dict({**config.to_dict(), "colour": True})


def test_wrong_tensor_shapes_are_value_errors():
    config = ModelConfig(use_nihss=True, **SMALL)
    model = build_model(config).eval()
    with raises_programmer_error(ValueError, match="shape"):
        model(torch.zeros(1, 3, 3, 64, 64), torch.tensor([1.0]))
    with raises_programmer_error(ValueError, match="NIHSS"):
        model(images_for(config, batch=1), None)


@pytest.fixture(scope="module")
def vgg16_state_file(tmp_path_factory):
    """A torchvision VGG-16 state dict (untrained: the ImageNet file cannot be downloaded)."""
    torch.manual_seed(1)
    state = torchvision.models.vgg16(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("arch", ["SF", "EFI"])
def test_imagenet_weights_load_from_file(vgg16_state_file, arch):
    path, state = vgg16_state_file
    config = ModelConfig(arch=arch, inputs=("cbf",), width=1.0, image_size=32)
    model = build_model(config, imagenet_weights=path)
    trunk = next(m for m in model.modules() if isinstance(m, VGG16Trunk))
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    for conv, index in zip(trunk.convolutions(), conv_indices):
        weight = state[f"features.{index}.weight"]
        if arch == "EFI":
            assert torch.allclose(conv.weight.sum(dim=2), weight, atol=1e-6)
            assert torch.equal(conv.weight[:, :, 0], conv.weight[:, :, 2])
        else:
            assert torch.equal(conv.weight, weight)
        assert torch.equal(conv.bias, state[f"features.{index}.bias"])


def test_imagenet_auto_uses_torchvision_cache_or_says_it_is_absent(vgg16_state_file, tmp_path, caplog):
    path, state = vgg16_state_file
    config = ModelConfig(inputs=("cbf",), width=1.0, image_size=32)
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with caplog.at_level(logging.WARNING):
            model = build_model(config, imagenet_weights="auto")
        assert "not found" in caplog.text and "random" in caplog.text
        first = model.trunks["cbf"].convolutions()[0].weight
        assert not torch.equal(first, state["features.0.weight"])

        torchvision_cache_file().parent.mkdir(parents=True)
        torchvision_cache_file().write_bytes(path.read_bytes())
        model = build_model(config, imagenet_weights="auto")
        assert torch.equal(model.trunks["cbf"].convolutions()[0].weight, state["features.0.weight"])
    finally:
        torch.hub.set_dir(previous)


def test_imagenet_bad_requests_are_input_errors(vgg16_state_file, tmp_path):
    path, _ = vgg16_state_file
    with pytest.raises(InputError, match="not found"):
        build_model(ModelConfig(inputs=("cbf",), image_size=32), imagenet_weights=tmp_path / "none.pth")
    with pytest.raises(InputError, match="width 1.0"):
        build_model(ModelConfig(inputs=("cbf",), width=0.5, image_size=32), imagenet_weights=path)
    vgg11 = tmp_path / "vgg11.pth"
    torch.save(torchvision.models.vgg11(weights=None).state_dict(), vgg11)
    with pytest.raises(InputError, match="13"):
        build_model(ModelConfig(inputs=("cbf",), image_size=32), imagenet_weights=vgg11)


def _concatenating_forward(model, images, nihss):
    """SF written the plain way: every level's skips concatenated across branches, then with
    the decoder's up-convolution (what :func:`fused_skips` lays out without the extra copy)."""
    branch_skips, features = [], []
    for index, name in enumerate(model.config.inputs):
        skips, pooled = model.trunks[name](images[:, index])
        branch_skips.append(skips)
        features.append(model.bottlenecks[name](pooled))
    skips = [torch.cat(level, dim=1) for level in zip(*branch_skips)]
    decoder = model.decoder
    x = torch.cat([decoder.first_up(model.fuse_bottleneck(features, nihss)), skips[4]], dim=1)
    for stage, skip in zip(decoder.stages, reversed(skips[:4])):
        x = torch.cat([stage.up(stage.convs(x)), skip], dim=1)
    return decoder.head(x)


@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_skips_give_the_concatenating_forward(channels_last):
    torch.manual_seed(0)
    config = ModelConfig(arch="SF", inputs=PMS, use_nihss=True, **SMALL)
    model = build_model(config).eval()
    images, nihss = images_for(config), torch.tensor([3.0, 20.0])
    if channels_last:
        model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(model(images, nihss), _concatenating_forward(model, images, nihss),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_training_forward_concatenates_skips_and_gives_the_concatenating_gradients(channels_last):
    """With autograd the skips are joined by ``cat``, whose backward hands out views: a write into
    a preallocated buffer (the inference layout) costs the backward a copy of the whole buffer's
    gradient per write (one ``CopySlices`` node each)."""
    torch.manual_seed(0)
    config = ModelConfig(arch="SF", inputs=PMS, use_nihss=True, dropout=0.0, **SMALL)
    model = build_model(config)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images, nihss = images_for(config), torch.tensor([3.0, 20.0])
    logits = model(images, nihss)
    names = autograd_node_names(logits)
    assert "CopySlices" not in names and "CatBackward0" in names
    logits.square().mean().backward()
    gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    _concatenating_forward(model, images, nihss).square().mean().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(gradients[name], p.grad, rtol=1e-5, atol=1e-7, msg=name)
