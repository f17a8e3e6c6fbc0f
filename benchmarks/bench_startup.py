"""Fixed costs per stage: Python imports and one Jupyter kernel start, measured separately.

Usage::

    .venv/bin/python benchmarks/bench_startup.py [--repeats 3]

Each import is timed in a fresh interpreter (what a new notebook kernel pays). Stages other than
04_fit must not import PyMC; the last column says whether PyMC got loaded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

IMPORTS = {
    "python (bare)": "pass",
    "01/02 validation+canonicalize": "import mmm_lib.raw_io, mmm_lib.validation, mmm_lib.canonicalize, mmm_lib.plots.data",
    "03 features": "import mmm_lib.features, mmm_lib.plots.features",
    "05 diagnostics": "import mmm_lib.diagnostics, mmm_lib.plots.fit",
    "06 contributions": "import mmm_lib.contributions, mmm_lib.plots.contributions",
    "04 fit (pymc)": "import mmm_lib.model_pymc, pymc",
}


def time_import(code: str) -> tuple[float, bool]:
    probe = f"{code}\nimport sys; print('pymc' in sys.modules)"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, out.stdout.strip().endswith("True")


def time_kernel_start() -> float:
    from jupyter_client.manager import start_new_kernel

    t0 = time.perf_counter()
    km, kc = start_new_kernel(kernel_name="python3", extra_arguments=["--IPKernelApp.log_level=ERROR"])
    dt = time.perf_counter() - t0
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"{'what':<32}{'median s':>10}  loads pymc")
    for name, code in IMPORTS.items():
        runs = [time_import(code) for _ in range(args.repeats)]
        print(f"{name:<32}{statistics.median(t for t, _ in runs):>10.2f}  {runs[0][1]}")
    k = statistics.median(time_kernel_start() for _ in range(args.repeats))
    print(f"{'kernel start (python3, ready)':<32}{k:>10.2f}")


if __name__ == "__main__":
    main()
