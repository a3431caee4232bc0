"""Keep the memory a program frees for its own reuse instead of handing it back to the system.

With glibc's default settings every allocation above the mmap threshold (128 KiB at first,
adapting up to 32 MiB) gets fresh pages from the kernel and gives them back when freed. A
network's feature maps are far larger (one VGG block-1 output of a 512 x 512 slice is 64 MiB in
fp32), so every layer of every batch pays the kernel to map, zero and unmap its output again: on
a CPU that is a large share of the forward pass (docs/networks.md has the measured figures).
Serving large requests from the heap and not trimming it lets later layers and batches reuse the
pages already touched, which is what a caching allocator (jemalloc, tcmalloc, or PyTorch's own on
the GPU) does.

The setting is process-wide and keeps the process's memory at its peak until it exits, so it is
made by the command-line program for its own short-lived process (:func:`cli.run`), never by the
library on import nor in a host application such as Slicer.
"""

from __future__ import annotations

import ctypes
import os

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
#: Free memory at the top of the heap above this is returned to the system (mallopt takes an
#: int, so 2 GiB - 1 is the largest threshold it can express).
_TRIM_THRESHOLD_BYTES = 2**31 - 1


def retain_freed_memory() -> bool:
    """Serve every allocation from the heap and keep freed memory there for reuse (glibc only).

    Large requests stop being mapped and unmapped one by one; freed memory stays in the process
    for the next allocation, and requests that the heap cannot take still fall back to mmap. Use
    it only for a whole program run: the setting applies to the entire process and to its
    end (glibc offers no way back to its adaptive defaults).

    Returns
    -------
    bool
        True when set; False where the C library is not glibc (macOS, Windows, musl), in
        which case nothing is changed.
    """
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"; absent off glibc
    except (AttributeError, ValueError, OSError):
        return False
    if not (libc_version or "").startswith("glibc"):
        return False
    libc = ctypes.CDLL(None)
    # mallopt returns 1 on success, 0 on failure.
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
