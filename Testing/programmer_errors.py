"""``raises_programmer_error``: ``pytest.raises`` for a caller's mistake, not a user's.

:class:`~StrokePerfusionSegLib.errors.InputError` (a user's mistake) subclasses ValueError,
so ``pytest.raises(ValueError)`` alone would also pass for an InputError.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from StrokePerfusionSegLib.errors import InputError


@contextmanager
def raises_programmer_error(kind: type[Exception] = ValueError, match: str | None = None):
    """Expect ``kind`` (matching ``match``) that is not an InputError."""
    with pytest.raises(kind, match=match) as raised:
        yield raised
    assert not isinstance(raised.value, InputError), f"a user's InputError, expected a programmer's {kind.__name__}: {raised.value}"
