"""Peak memory of a training fit, cases in memory vs streamed from disk, beside the cohort's size.

    python -m benchmarks.training_memory                          # 40 cases of 256 x 256 x 20 (built here)
    python -m benchmarks.training_memory --copies 80 --size 256
    python -m benchmarks.training_memory --cohort runs/isles2024  # a cohort of your own (read only;
                                                                  # the slice cache goes to a temp folder)

Without ``--cohort`` it writes three phantom patients (maps as the generator's truth, no CTP)
and copies their input maps and labels into ``--copies`` case folders of a cohort (80 % train,
20 % val): the memory a fit needs depends on the number and size of the cases, not on their
content. It then runs one-epoch fits of the same small model (``default_model`` at 32 pixels,
one process, no workers) in fresh processes: a bare process that only builds the model (the
floor), the in-memory fit, the first streaming fit (which builds the slice cache), a second one
(the cache reused) and a third whose in-memory slice cache is 16 MiB instead of the default. Each prints its peak resident memory (``VmHWM``, Linux). Printed: the
cohort's size on disk (the files training reads: gzip NIfTI), their size decompressed (what the
in-memory path holds) and the slice cache's size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

INPUTS = ("cbf", "cbv", "ttp", "tmax")
#: A child process: run ``strokeperfusionseg-train`` with the given arguments (or only build the
#: model) and print its peak resident set in MiB as the last line.
CHILD = """
import json, sys, torch
torch.set_num_threads(1)
arguments = json.loads(sys.argv[1])
if arguments:
    from strokeperfusionseg_training.__main__ import main
    assert main(arguments) == 0
else:
    from strokeperfusionseg_training.experiments import plan_experiment
    from StrokePerfusionSegLib.networks import build_model
    _, (run,) = plan_experiment("default_model", {"model.image_size": 32, "model.use_nihss": True})
    build_model(run.config.model_config(), imagenet_weights=None)
# VmHWM: the high-water mark of this process's own memory (ru_maxrss would carry the parent's over exec).
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(hwm.split()[1]) / 1024)
"""


def _folder_mib(folder: Path, names=None) -> float:
    files = [p for p in folder.rglob("*") if p.is_file() and (names is None or p.name in names)]
    return sum(p.stat().st_size for p in files) / 2**20


def build_cohort(out: Path, copies: int, size: int, slices: int) -> Path:
    """``copies`` case folders copied from three phantom patients, and ``cohort.json``."""
    from StrokePerfusionSegLib.casefolder import save_cohort_index
    from StrokePerfusionSegLib.phantom import PhantomConfig, generate_cohort

    patients = generate_cohort(out / "phantom", 3, 7, PhantomConfig(size=size, slices=slices, frames=20, maps="truth",
                                                                       with_ctp=False, with_rgb=False),
                               groups=("LVO", "NonLVO", "WIS"))
    sources = sorted(p for p in patients.iterdir() if p.is_dir())
    cohort, entries = out / "cohort", []
    for index in range(copies):
        source = sources[index % len(sources)]
        meta = json.loads((source / "case.json").read_text())
        case_id = f"C{index:04d}"
        (cohort / case_id).mkdir(parents=True)
        for name in [*(f"{n}.nii.gz" for n in INPUTS), "label.nii.gz", "case.json"]:
            shutil.copy2(source / name, cohort / case_id / name)
        entries.append({"id": case_id, "group": meta["group"], "nihss": meta["nihss"],
                        "split": "val" if index % 5 == 4 else "train"})
    save_cohort_index(cohort, entries)
    shutil.rmtree(patients)
    return cohort


def peak_mib(arguments: list[str]) -> float:
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arguments)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return float(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cohort", help="a cohort folder to measure (default: build one)")
    parser.add_argument("--copies", type=int, default=40, help="cases of the built cohort")
    parser.add_argument("--size", type=int, default=256, help="in-plane pixels of the built cohort")
    parser.add_argument("--slices", type=int, default=20)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="training-memory-") as scratch:
        scratch = Path(scratch)
        cohort = Path(args.cohort) if args.cohort else build_cohort(scratch, args.copies, args.size, args.slices)
        from strokeperfusionseg_training.data import load_records, load_training_case

        records = [r for r in load_records(cohort) if r.split in ("train", "val")]
        on_disk = sum(_folder_mib(r.folder, {*(f"{n}.nii.gz" for n in INPUTS), "label.nii.gz"}) for r in records)
        first = load_training_case(records[0], INPUTS, use_nihss=False).slices
        per_case = (first.label.nbytes + sum(a.nbytes for a in first.images.values())) / 2**20
        shape = "x".join(map(str, first.shape))
        del first
        common = ["fit", "default_model", "--cohort", str(cohort), "--device", "cpu", "--no-progress",
                  "--set", "model.image_size=32", "--set", "max_epochs=1", "--set", "precision=\"fp32\""]
        cache = scratch / "slice-cache"
        runs = {
            "model only (floor)": [],
            "in memory": common + ["--out", str(scratch / "fit-memory")],
            "streaming, building the cache": common + ["--out", str(scratch / "fit-stream-1"), "--set", "streaming=true",
                                                       "--set", f"slice_cache_dir=\"{cache}\""],
            "streaming, cache reused": common + ["--out", str(scratch / "fit-stream-2"), "--set", "streaming=true",
                                                 "--set", f"slice_cache_dir=\"{cache}\""],
            "streaming, cache_mb=16": common + ["--out", str(scratch / "fit-stream-3"), "--set", "streaming=true",
                                                "--set", f"slice_cache_dir=\"{cache}\"", "--set", "cache_mb=16"],
        }
        peaks = {name: peak_mib(arguments) for name, arguments in runs.items()}
        print(f"cohort: {len(records)} train+val cases of {shape} voxels (z, y, x)")
        print(f"on disk (gzip NIfTI, inputs + labels): {on_disk:8.1f} MiB")
        print(f"decompressed (what in-memory holds):   {per_case * len(records):8.1f} MiB  (~{per_case:.1f} MiB per case)")
        print(f"slice cache on disk:                   {_folder_mib(cache):8.1f} MiB")
        for name, peak in peaks.items():
            print(f"peak RSS, {name:30s} {peak:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
