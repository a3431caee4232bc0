"""Map specifications: names, units, windows."""

import pytest

from StrokePerfusionSegLib import mapspecs
from StrokePerfusionSegLib.errors import InputError


def test_unknown_map_name_lists_known_ones():
    with pytest.raises(InputError, match="cbf, cbv"):
        mapspecs.map_spec("rcbf")
