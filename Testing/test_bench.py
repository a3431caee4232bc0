"""``strokeperfusionseg bench`` on a tiny configuration (figures, not timings, are checked)."""

from __future__ import annotations

import json

from StrokePerfusionSegLib.cli import main
from StrokePerfusionSegLib.cpufeatures import usable_cores


def test_bench_prints_every_figure(capsys):
    argv = ["bench", "--width", "0.0625", "--size", "32", "--slices", "2", "--device", "cpu",
            "--precisions", "fp32", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["parameters"] > 0 and result["gflops_per_slice"] > 0
    (run,) = result["runs"]
    assert run["precision"] == "fp32" and run["seconds_per_study"] > 0
    assert run["matmul_gflops"] > 0 and 0 < run["fraction_of_matmul"]
    assert run["peak_memory_mb"] >= result["memory_before_model_mb"] > 0
    assert run["slices_per_batch"] >= 1
    assert result["threads"] == usable_cores()  # the cores this process may use, not the machine's


def test_bench_rejects_unknown_precision(capsys):
    assert main(["bench", "--width", "0.0625", "--size", "32", "--slices", "1", "--device", "cpu",
                 "--precisions", "int4"]) == 2
    assert "precision" in capsys.readouterr().err
