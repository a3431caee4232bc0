"""Map colour coding: round trip within one table step, clipping, refusals."""

import numpy as np
import pytest

from StrokePerfusionSegLib import colourcoding, mapspecs
from StrokePerfusionSegLib.errors import InputError


@pytest.mark.parametrize("name", mapspecs.MAP_NAMES)
def test_rgb_round_trip_recovers_values_within_one_lut_step(name):
    low, high = mapspecs.MAP_SPECS[name].window
    values = np.linspace(low, high, 1000, dtype=np.float32).reshape(10, 10, 10)
    decoded = colourcoding.decode_rgb(colourcoding.encode_rgb(values, name), name)
    step = (high - low) / 255.0
    # Where neighbouring table entries round to the same colour the decoder picks either one.
    assert np.median(np.abs(decoded - values)) <= step
    assert np.abs(decoded - values).max() <= 4 * step


def test_encoding_clips_to_window_and_tolerates_nan():
    rgb = colourcoding.encode_rgb(np.array([-5.0, np.nan, 1e6]), "cbf")
    assert (rgb[0] == colourcoding.PERFUSION_LUT[0]).all() and (rgb[1] == colourcoding.PERFUSION_LUT[0]).all()
    assert (rgb[2] == colourcoding.PERFUSION_LUT[255]).all()


def test_decode_rejects_images_without_three_components():
    with pytest.raises(InputError, match="3 colour components"):
        colourcoding.decode_rgb(np.zeros((4, 4, 4), np.uint8), "cbf")
