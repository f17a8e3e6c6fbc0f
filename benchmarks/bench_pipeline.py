"""End-to-end timing of `mmm run`: cold and warm compile cache, per-stage times, peak RSS.

Usage (from the repo root, after `make env`)::

    .venv/bin/python benchmarks/bench_pipeline.py [--spec params/example.yaml] [--cold-runs 1] [--warm-runs 1]

"Cold" uses a fresh, empty compile cache ($MMM_CACHE in a temp folder), a new one for each cold run; "warm" reruns
with the last cold run's cache. With more than one run of a kind, the median is printed too (this machine's
timings vary by several seconds from run to run: the cold target, <= 30 s for params/baseline.yaml, is read
from the median). A run keeps its kernel server for the next (``mmm_lib.kernel_keeper``, in a folder of this
benchmark's own, stopped at the end): a cold run (a new compile cache) has none to use, each warm run uses the one
the run before kept, as a user's reruns within ``MMM_KEEP_KERNELS`` minutes do (the row ``kept server``: ``handed
over``, the whole run was forked from it; ``kernels``, only the kernels; ``no``). After a run that kept its server,
the next starts once that server listens (1-3 s: it imports what ``mmm run`` needs first). Peak RSS is the largest resident set of one process of the run (the runner or one of
its stage kernels), sampled every 0.5 s. Timings on a shared machine are noisy: compare ratios.

Then, per stage, the median over the warm runs of the stage overhead: its critical-path wall (from the previous
stage's end) minus the time inside its code cells (``stage_timeline.py``); target ≤ 0.5 s per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from stage_timeline import KEPT_DIR_ENV, kept_kernel_servers, kept_server_use, stage_timeline, timed, wait_until_kept

REPO = Path(__file__).resolve().parent.parent


def run_once(spec: str, run_id: str, env: dict[str, str]) -> dict:
    mmm = str(Path(sys.executable).parent / "mmm")
    proc, when = timed([mmm, "run", spec, "--run-id", run_id], env, REPO)
    if proc.returncode != 0:
        sys.exit(f"run {run_id} failed:\n{proc.stderr[-3000:]}")
    wait_until_kept(proc.stderr, env.get(KEPT_DIR_ENV))
    status = json.loads((Path(env["MMM_OUTPUTS"]) / "runs" / run_id / "status.json").read_text())
    meta = json.loads((Path(env["MMM_OUTPUTS"]) / "runs" / run_id / "model_metadata.json").read_text())
    run = {"run_dir": str(Path(env["MMM_OUTPUTS"]) / "runs" / run_id), **when}
    return {
        "wall_s": when["wall_s"],
        "peak_rss_mb": when["peak_rss_mb"],
        "kept_server": kept_server_use(proc.stderr),
        "stages": {s: v["duration_s"] for s, v in status["stages"].items()},
        "sampling_s": meta.get("sampling_time_s"),
        "timeline": stage_timeline(run),  # read now: the temp folder goes at the end
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default="params/example.yaml")
    ap.add_argument("--cold-runs", type=int, default=1, help="runs each with a new, empty compile cache")
    ap.add_argument("--warm-runs", type=int, default=1, help="runs with the last cold run's cache")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mmm-bench-") as tmp, kept_kernel_servers(Path(tmp)) as kept:
        env = dict(os.environ, MMM_OUTPUTS=str(Path(tmp) / "outputs"), **{KEPT_DIR_ENV: kept})
        env.pop("PYTENSOR_FLAGS", None)
        results = {}
        for i in range(max(args.cold_runs, 1)):
            env["MMM_CACHE"] = str(Path(tmp) / f"cache{i + 1}")
            results[f"cold{i + 1}"] = run_once(args.spec, f"bench_cold{i + 1}", env)
        for i in range(args.warm_runs):
            results[f"warm{i + 1}"] = run_once(args.spec, f"bench_warm{i + 1}", env)

    names = list(results)
    colds = [n for n in names if n.startswith("cold")]
    warms = [n for n in names if n.startswith("warm")]
    stages = list(results[colds[0]]["stages"])
    print(f"spec: {args.spec}   machine: {os.cpu_count()} CPUs   python {sys.version.split()[0]}")
    print(f"{'stage':<18}" + "".join(f"{n:>12}" for n in names))
    for s in stages:
        print(f"{s:<18}" + "".join(f"{results[n]['stages'][s]:>11.1f}s" for n in names))
    print(f"{'total (wall)':<18}" + "".join(f"{results[n]['wall_s']:>11.1f}s" for n in names))
    print(f"{'  of which NUTS':<18}" + "".join(f"{(results[n]['sampling_s'] or 0):>11.1f}s" for n in names))
    print(f"{'peak RSS':<18}" + "".join(f"{results[n]['peak_rss_mb']:>10.0f}MB" for n in names))
    print(f"{'kept server':<18}" + "".join(f"{results[n]['kept_server']:>12}" for n in names))
    cold = statistics.median(results[n]["wall_s"] for n in colds)
    print(f"cold total, median of {len(colds)}: {cold:.1f} s")
    if not warms:
        return
    warm = statistics.median(results[n]["wall_s"] for n in warms)
    print(f"warm total, median of {len(warms)}: {warm:.1f} s   warm / cold: {warm / cold:.2f}")
    print(f"\nstage overhead, median of the {len(warms)} warm run(s) (wall from the previous stage's end, minus time in "
          "cells; target <= 0.5 s):")
    print(f"{'stage':<20}{'wall':>9}{'in cells':>10}{'overhead':>10}")
    rows = [results[n]["timeline"] for n in warms]
    for i, row in enumerate(rows[0]):
        med = {k: statistics.median(r[i][k] for r in rows) for k in ("wall_s", "cells_s", "overhead_s")}
        print(f"{row['stage']:<20}{med['wall_s']:>8.1f}s{med['cells_s']:>9.1f}s{med['overhead_s']:>9.1f}s")


if __name__ == "__main__":
    main()
