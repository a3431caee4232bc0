"""The program keeps freed memory for reuse: large blocks freed and allocated again cost no new
page faults (glibc), where the C library's defaults map fresh pages for every one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not (getattr(os, "confstr_names", {}).get("CS_GNU_LIBC_VERSION") and os.confstr("CS_GNU_LIBC_VERSION")),
    reason="the allocator setting is made for glibc only",
)

#: Allocates (malloc, as PyTorch's CPU tensors do), fills and frees a 64 MiB block (16384 pages
#: of 4 KiB) four times, then prints the minor page faults of the last three rounds (the first
#: may grow the heap).
REUSE_ROUNDS = """
def reuse_faults():
    import ctypes
    import resource

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]

    def round_trip():
        block = libc.malloc(64 * 2**20)
        ctypes.memset(block, 1, 64 * 2**20)
        libc.free(block)

    round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        round_trip()
    print("faults", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, flush=True)
"""

PAGES_PER_ROUND = 64 * 2**20 // 4096


def faults_of(program: str, *args: str) -> int:
    done = subprocess.run([sys.executable, "-c", REUSE_ROUNDS + program, *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("faults")]
    return int(line.split()[1])


def test_freed_blocks_are_reused_once_retained():
    default = faults_of("reuse_faults()")
    retained = faults_of("from StrokePerfusionSegLib.processheap import retain_freed_memory\n"
                         "assert retain_freed_memory()\nreuse_faults()")
    assert default >= 3 * PAGES_PER_ROUND * 0.9  # each round maps its pages afresh
    assert retained < PAGES_PER_ROUND * 0.1


def test_the_program_retains_freed_memory():
    """``cli.run`` (the installed ``strokeperfusionseg``) makes the setting before any command;
    ``--version`` ends through SystemExit, so the interpreter's exit handlers still run."""
    program = "import atexit; atexit.register(reuse_faults); from StrokePerfusionSegLib.cli import run; run()"
    assert faults_of(program, "--version") < PAGES_PER_ROUND * 0.1
