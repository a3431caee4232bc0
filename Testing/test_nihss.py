"""NIHSS scores: whole numbers 0..42, anything else refused naming the value's source."""

import pytest

from StrokePerfusionSegLib.errors import InputError
from StrokePerfusionSegLib.nihss import check_nihss


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), (0, 0), ("14", 14), (14.0, 14), (42, 42)])
def test_nihss_accepts_whole_scores(value, expected):
    assert check_nihss(value) == expected


@pytest.mark.parametrize("value", [-1, 43, 7.5, "seven", float("nan")])
def test_nihss_refuses_other_values_naming_them(value):
    with pytest.raises(InputError, match="case P9: NIHSS .*0..42"):
        check_nihss(value, what="case P9: NIHSS")
