"""``strokeperfusionseg model-info`` through the real command line."""

from __future__ import annotations

import json

from StrokePerfusionSegLib.cli import main
from StrokePerfusionSegLib.errors import EXIT_USER_ERROR


def test_model_info_json_matches_the_reference_count(capsys):
    assert main(["model-info", "--arch", "SF", "--inputs", "cbf,cbv,ttp,tmax", "--nihss", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 85_296_236  # see test_flops.py
    assert 800 < info["gflops_per_slice"] < 900
    names = {component["name"] for component in info["components"]}
    assert names == {"trunks", "bottlenecks", "nihss_embedding", "decoder"}
    assert sum(c["parameters"] for c in info["components"]) == info["parameters"]


def test_model_info_table_for_small_inflated_model(capsys):
    assert main(["model-info", "--arch", "EFI", "--inputs", "cbf,cbv,ttp,tmax,mip",
                 "--width", "0.125", "--size", "256", "--classes", "3"]) == 0
    out = capsys.readouterr().out
    assert "EFI(cbf,cbv,ttp,tmax,mip)" in out and "GFLOPs/slice" in out and "total" in out


def test_model_info_bad_options_exit_2_with_one_line(capsys):
    for argv in (["--inputs", "cbf,adc"], ["--size", "100"], ["--width", "-1"]):
        assert main(["model-info", *argv]) == EXIT_USER_ERROR
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
