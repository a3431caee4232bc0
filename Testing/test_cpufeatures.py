"""bf16 chosen by the running CPU's flags: parsing /proc/cpuinfo and agreeing with torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from StrokePerfusionSegLib import cpufeatures


def test_flags_are_read_from_a_cpuinfo_file(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n"
                       "\nprocessor\t: 1\nflags\t\t: fpu\n")
    flags = cpufeatures._proc_cpuinfo_flags(str(cpuinfo))
    assert {"avx512_bf16", "amx_bf16", "amx_tile"} <= flags and "fpu" in flags
    assert cpufeatures._proc_cpuinfo_flags(str(tmp_path / "absent")) is None


def test_this_cpu_agrees_with_torch_and_the_note_says_so():
    native = bool(cpufeatures.native_bf16_flags())
    assert native == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    note = cpufeatures.describe_bf16()
    assert note.startswith("native bf16") == native
    assert all(flag in note for flag in cpufeatures.native_bf16_flags())


def test_usable_cores_follow_the_process_affinity(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert cpufeatures.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows: the machine's cores
    assert cpufeatures.usable_cores() == (os.cpu_count() or 1)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2,
                    reason="needs CPU affinity and two cores")
def test_a_process_limited_to_one_core_may_use_one():
    """taskset / a container's cpuset: thread pools are sized by the affinity, not the machine."""
    code = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        from StrokePerfusionSegLib import cpufeatures
        print(cpufeatures.usable_cores(), os.cpu_count())
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    usable, machine = map(int, run.stdout.split())
    assert usable == 1 and machine >= 2
