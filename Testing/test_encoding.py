"""Network input encoding: both encodings from scalar and colour-coded maps, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from StrokePerfusionSegLib import colourcoding, mapspecs
from StrokePerfusionSegLib.encoding import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    encode_inputs,
    encoding_manifest,
)
from StrokePerfusionSegLib.errors import InputError

from programmer_errors import raises_programmer_error

INPUTS = ("cbf", "cbv", "ttp", "tmax")
SHAPE = (2, 8, 6)


def _scalar_maps(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = {}
    for name in (*INPUTS, "mip"):
        low, high = mapspecs.map_spec(name).window
        # Values reach past both window ends so clipping is exercised.
        images[name] = rng.uniform(low - 0.2 * (high - low), high * 1.2, SHAPE).astype(np.float32)
    return images


def _unnormalise(encoded: np.ndarray) -> np.ndarray:
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    return encoded * std + mean


def test_rgb_encoding_is_the_lut_colour_normalised():
    images = _scalar_maps()
    encoded = encode_inputs(images, INPUTS, "rgb")
    assert encoded.shape == (SHAPE[0], len(INPUTS), 3) + SHAPE[1:]
    assert encoded.dtype == np.float32
    for branch, name in enumerate(INPUTS):
        expected = np.moveaxis(colourcoding.encode_rgb(images[name], name), -1, 1) / 255.0
        np.testing.assert_allclose(_unnormalise(encoded[:, branch]), expected, atol=1e-6)
    # The top of the CBF window is white: (1 - mean) / std on every channel.
    top = encode_inputs({"cbf": np.full((1, 1, 1), 200.0)}, ["cbf"], "rgb")[0, 0, :, 0, 0]
    np.testing.assert_allclose(top, (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD), rtol=1e-6)


def test_rgb_encoding_same_from_scalar_or_colour_coded_input():
    images = _scalar_maps(1)
    colour_coded = {name: colourcoding.encode_rgb(values, name) for name, values in images.items()}
    np.testing.assert_array_equal(
        encode_inputs(images, INPUTS, "rgb"), encode_inputs(colour_coded, INPUTS, "rgb")
    )


def test_scalar_encoding_windows_and_repeats_channels():
    images = _scalar_maps(2)
    encoded = _unnormalise(encode_inputs(images, (*INPUTS, "mip"), "scalar"))
    for branch, name in enumerate((*INPUTS, "mip")):
        low, high = mapspecs.map_spec(name).window
        expected = np.clip((images[name] - low) / (high - low), 0, 1)
        for channel in range(3):
            np.testing.assert_allclose(encoded[:, branch, channel], expected, atol=1e-6)


def test_scalar_encoding_from_colour_coded_input_decodes_within_one_lut_step():
    images = _scalar_maps(3)
    colour_coded = {name: colourcoding.encode_rgb(values, name) for name, values in images.items()}
    from_scalar = _unnormalise(encode_inputs(images, INPUTS, "scalar"))
    from_rgb = _unnormalise(encode_inputs(colour_coded, INPUTS, "scalar"))
    assert np.abs(from_scalar - from_rgb).max() <= 0.5 / 255 + 1e-6


def test_mip_is_grey_in_rgb_encoding():
    encoded = _unnormalise(encode_inputs(_scalar_maps(4), ["mip"], "rgb"))[:, 0]
    np.testing.assert_allclose(encoded[:, 0], encoded[:, 1], atol=1e-6)
    np.testing.assert_allclose(encoded[:, 1], encoded[:, 2], atol=1e-6)


def test_branch_order_follows_inputs_and_extra_maps_are_ignored():
    images = _scalar_maps(5)
    forward = encode_inputs(images, ["cbf", "tmax"], "rgb")
    backward = encode_inputs(images, ["tmax", "cbf"], "rgb")
    np.testing.assert_array_equal(forward[:, 0], backward[:, 1])
    assert forward.shape[1] == 2


def test_manifest_is_json_and_names_windows_and_luts():
    manifest = json.loads(json.dumps(encoding_manifest((*INPUTS, "mip"), "rgb")))
    assert [entry["name"] for entry in manifest["inputs"]] == [*INPUTS, "mip"]
    assert manifest["inputs"][0]["window"] == list(mapspecs.MAP_SPECS["cbf"].window)
    assert manifest["inputs"][0]["lut"] == "perfusion" and manifest["inputs"][-1]["lut"] == "grey"
    assert encoding_manifest(INPUTS, "scalar")["inputs"][0]["lut"] == "grey"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda m: m.pop("cbv"), "missing input map"),
        (lambda m: m.update(cbf=np.zeros((2, 8, 5), np.float32)), "differ in shape"),
        (lambda m: m["ttp"].__setitem__((0, 0, 0), np.nan), "NaN/inf"),
        (lambda m: m["tmax"].__setitem__((1, 2, 3), np.inf), "NaN/inf"),
        (lambda m: m.update(cbf=np.zeros((8, 6), np.float32)), "3D scalar map"),
        (lambda m: m.update(cbf=np.zeros((2, 8, 6, 3), np.float32)), "uint8"),
        (lambda m: m.update(cbf=np.zeros((2, 8, 6, 4), np.uint8)), "3D scalar map"),
    ],
)
def test_bad_input_names_the_map(mutate, message):
    images = _scalar_maps(6)
    mutate(images)
    with pytest.raises(InputError, match=message):
        encode_inputs(images, INPUTS, "rgb")


def test_bad_encoding_or_map_name():
    with raises_programmer_error(ValueError, match="unknown input encoding"):
        encode_inputs(_scalar_maps(), INPUTS, "hsv")
    with pytest.raises(InputError, match="unknown map"):
        encode_inputs({"adc": np.zeros(SHAPE)}, ["adc"], "rgb")
    with raises_programmer_error(ValueError, match="no input maps"):
        encode_inputs(_scalar_maps(), [], "rgb")
