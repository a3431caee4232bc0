"""The running CPU: how many cores this process may use, and which bf16 it has.

Cores: the process's CPU affinity (a container's cpuset, ``taskset``) where the OS has one,
so that thread pools are not sized for cores the process cannot run on.

bf16: native (AVX512-BF16 or AMX) or emulated. CPUs differ between machines: where bf16 is
native, bf16 convolutions and matrix products run several times faster than fp32; where it is
emulated they run slower. The predictor and the trainer decide by the flags of the CPU they run
on and say which they chose.
"""

from __future__ import annotations

import os
from functools import lru_cache


def usable_cores() -> int:
    """Logical CPU cores this process may run on, at least 1.

    Its CPU affinity where the OS has it (Linux), else every core of the machine (macOS,
    Windows); ``os.process_cpu_count`` of Python 3.13.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

#: CPU flags (as Linux spells them in /proc/cpuinfo) that make bf16 arithmetic native.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _proc_cpuinfo_flags(path: str = "/proc/cpuinfo") -> set[str] | None:
    """Flags of the first CPU in ``path``; None where the file is absent (macOS, Windows)."""
    try:
        with open(path, encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return set()


@lru_cache(maxsize=1)
def native_bf16_flags() -> tuple[str, ...]:
    """The CPU flags that give native bf16 here, e.g. ``("avx512_bf16", "amx_bf16")``; empty
    when bf16 would be emulated.

    Read from /proc/cpuinfo on Linux; elsewhere from torch's own CPU capability checks.
    """
    flags = _proc_cpuinfo_flags()
    if flags is not None:
        return tuple(flag for flag in NATIVE_BF16_FLAGS if flag in flags)
    import torch

    found = (("avx512_bf16", torch.cpu._is_avx512_bf16_supported()), ("amx_bf16", torch.cpu._is_amx_tile_supported()))
    return tuple(name for name, present in found if present)


def describe_bf16() -> str:
    """What decided the automatic precision on this CPU, for notes and logs."""
    flags = native_bf16_flags()
    if flags:
        return f"native bf16 on this CPU ({', '.join(flags)})"
    return f"no native bf16 on this CPU (neither {' nor '.join(NATIVE_BF16_FLAGS)}): bf16 would be emulated"
