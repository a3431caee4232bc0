"""bf16 chosen by the running CPU's flags: parsing /proc/cpuinfo and agreeing with torch."""

from __future__ import annotations

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
