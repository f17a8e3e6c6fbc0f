"""Which NUTS sampler/backend to default to: each one cold and warm, in a new process per fit.

Usage (after a completed run, e.g. `make run`)::

    .venv/bin/python benchmarks/bench_samplers.py RUN_ID [--samplers pymc,nutpie,numpyro]

For each sampler: a fit in a new process with an empty compile cache ("cold"), then a second new
process with the cache it left ("warm") — what a papermill fit stage pays. The fit is the suite's
own (``model_pymc.build_model`` + ``fit``) on the run's ``features.parquet`` with the run's spec.
Samplers whose packages are missing (numpyro needs jax) are reported and skipped. Printed: wall time
of the whole process, time spent sampling, and min bulk ESS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from mmm_lib import model_pymc
from mmm_lib.diagnostics import compute_diagnostics
from mmm_lib.storage import open_run, run_dir
run = open_run(run_dir(sys.argv[1]) / "run_spec.json", sys.argv[1])
spec = run.spec.model_copy(update={"nuts_sampler": sys.argv[2]})
model, _ = model_pymc.build_model(run.read_parquet("features.parquet"), run.read_json("feature_metadata.json"),
                                  run.read_json("feature_scaler.json"), run.spec.model)
idata = model_pymc.fit(model, spec, progress=False)
a = idata["posterior"].attrs
print(json.dumps({"wall": time.perf_counter() - t0, "sampling": a["mmm_sampling_time_s"],
                  "ess": compute_diagnostics(idata)["metrics"]["min_ess_bulk"]}))
"""


def one(run_id: str, sampler: str, env: dict[str, str]) -> dict | str:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", CHILD, run_id, sampler], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return p.stderr.strip().splitlines()[-1][:120]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_id")
    ap.add_argument("--samplers", default="pymc,nutpie,numpyro")
    args = ap.parse_args()
    print(f"{'sampler':<9}{'cold s':>9}{'warm s':>9}{'sampling s':>12}{'min ESS':>9}")
    for sampler in args.samplers.split(","):
        with tempfile.TemporaryDirectory(prefix="mmm-sampler-") as cache:
            env = dict(os.environ, MMM_CACHE=cache)
            env.pop("PYTENSOR_FLAGS", None)
            cold = one(args.run_id, sampler, env)
            if isinstance(cold, str):
                print(f"{sampler:<9} skipped: {cold}")
                continue
            warm = one(args.run_id, sampler, env)
        print(f"{sampler:<9}{cold['process']:>9.1f}{warm['process']:>9.1f}{warm['sampling']:>12.1f}{warm['ess']:>9.0f}")


if __name__ == "__main__":
    main()
