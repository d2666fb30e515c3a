"""The GPU check: everything otflows claims on a GPU, measured in one command (under 8 minutes
on one H200-class GPU) and written to one JSON.

    python benchmarks/gpu_check.py --w2bench ../w2bench \
        --out benchmarks/results/gpu_check.json

1. The CUDA tests (``pytest -m cuda``: the contract, maps, flows and checkpoints on the GPU).
2. ``python benchmarks/step_speed.py --device cuda``: BrenierMap's training steps per second at
   d = 8, 64 and 128, batch 256 and 1024, with the conjugates' first Newton steps masked
   (the GPU's default) and adaptive, and the host reads per step.
3. ``otflows bench peers --device cuda`` at d = 64 and 128: L2-UVP against GPU wall-clock
   seconds of ``BrenierMap(max_time=)`` and, where OTT-JAX is installed, its
   ``ExpectileNeuralDual``, on the same samples (``--budget`` seconds each; the 75-second and
   5-minute comparisons are longer runs of the same command).
4. ``otflows bench logdet --device cuda`` at d = 1024: a training step's log-det by each
   method, and the inverse.

``--device cpu --quick`` dry-runs every section in a minute on a CPU (its numbers mean
nothing): run it before spending GPU time.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import step_speed

from otflows.bench import logdet, peers
from otflows.bench.common import machine, write_json


def _tests(device: str) -> dict:
    """The CUDA-marked tests, or (on the CPU) the same tests' CPU cases."""
    marker = "cuda" if device != "cpu" else "not cuda"
    command = [sys.executable, "-m", "pytest", "-q", "-m", marker, "tests/test_devices.py"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    return {
        "command": " ".join(command[1:]),
        "returncode": done.returncode,
        "summary": lines[-1] if lines else done.stderr[-2000:],
        "seconds": time.perf_counter() - start,
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--w2bench", type=Path, required=True, help="the W2 benchmark folder")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=45.0, help="seconds per peers run")
    parser.add_argument("--quick", action="store_true", help="a dry run: tiny sizes")
    parser.add_argument("--out", type=Path, default=Path("otflows-results/gpu_check.json"))
    args = parser.parse_args()
    quick = ["--quick"] if args.quick else []
    device = ["--device", args.device]
    scratch = Path(tempfile.mkdtemp())
    sections: dict = {}
    timings: dict = {}

    def section(name: str, run) -> None:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        sections[name] = run()
        timings[name] = time.perf_counter() - start

    w2bench = ["--w2bench", str(args.w2bench)]
    speeds = [] if args.quick else ["--dims", "8", "64", "128", "--steps", "40", "--repeats", "1"]
    speeds += [] if args.quick else ["--batch-sizes", "256", "1024"]
    methods = ["otflows-timed"] + (["ott-enot"] if importlib.util.find_spec("ott") else [])
    race = ["--dims", "64", "128", "--budget", str(args.budget), "--samples", "200000"]
    logdets = [] if args.quick else ["--dims", "1024", "--warm", "5"]
    section("tests", lambda: _tests(args.device))
    section(
        "step_speed",
        lambda: step_speed.main([*device, *w2bench, *quick, *speeds, "--out", f"{scratch}/s"]),
    )
    section(
        "peers",
        lambda: peers.main(
            [*device, *w2bench, "--methods", *methods, *race, *quick, "--out", f"{scratch}/p"]
        ),
    )
    section("logdet", lambda: logdet.main([*device, *quick, *logdets, "--out", f"{scratch}/l"]))
    payload = {
        "machine": machine(),
        "device": args.device,
        "budget": args.budget,
        "section_seconds": timings,
        **sections,
    }
    write_json(args.out, payload, smoke=args.quick)
    return payload


if __name__ == "__main__":
    main()
