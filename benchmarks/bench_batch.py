"""``mmm batch`` against ``mmm run`` one after another, and what 1,000 runs would cost.

Runs N example-sized runs (``params/example.yaml``, ``random_seed`` 1..N so each is a distinct fit) twice:
as one batch on an embedded LocalCluster, then one ``mmm run`` after another in this process; prints both wall
times and their ratio, then a cost model from the batch's own measurements: per-run time and peak memory
(worker process + stage kernels) → runs per hour per worker → hours for 1,000 runs on W workers, and the
memory a host needs for its workers.

    .venv/bin/python benchmarks/bench_batch.py                      # 6 runs, the example's draws
    .venv/bin/python benchmarks/bench_batch.py --runs 4 --draws 100 --tune 100 --workers 2

Both halves share the compile cache (``$MMM_CACHE``, warmed first by one run that is not timed), so the
comparison is warm against warm: what a user who has run the suite before sees.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--spec", default=str(REPO / "params" / "example.yaml"))
    ap.add_argument("--draws", type=int, default=None, help="override draws (default: the spec's)")
    ap.add_argument("--tune", type=int, default=None, help="override tune (default: the spec's)")
    ap.add_argument("--workers", type=int, default=None, help="batch workers (default cores // chains)")
    ap.add_argument("--cache", choices=["shared", "per-worker"], default="shared")
    ap.add_argument("--target-runs", type=int, default=1000)
    ap.add_argument("--target-workers", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--skip-sequential", action="store_true", help="only the batch (the cost model needs only it)")
    a = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    os.environ["MMM_OUTPUTS"] = str(root / "outputs")
    from mmm_lib.batch import execute_batch, plan_batch
    from mmm_lib.batch.execute import local_workers
    from mmm_lib.runtime import machine_cores
    from mmm_lib.cli import main as mmm

    common = {k: v for k, v in (("draws", a.draws), ("tune", a.tune)) if v is not None}
    manifest = root / "bench.yaml"
    manifest.write_text(yaml.safe_dump({"name": "bench", "spec": a.spec, "set": common,
                                        "runs": [{"name": f"r{i}", "set": {"random_seed": i}} for i in range(1, a.runs + 1)]},
                                       sort_keys=False), encoding="utf-8")  # fmt: skip
    plan = plan_batch(manifest)
    chains = plan.max_chains
    workers = a.workers or local_workers(chains)
    sets = [x for k, v in common.items() for x in ("--set", f"{k}={v}")]
    print(f"{a.runs} runs of {a.spec} {common or '(spec draws)'}; {machine_cores()} cores, {chains} chains, "
          f"batch on {workers} worker(s), cache {a.cache}; outputs {root}", file=sys.stderr)

    t = time.perf_counter()  # warm the compile cache for this model (not timed in either half)
    assert mmm(["run", a.spec, "--run-id", "warm", *sets, "--set", "random_seed=99"]) == 0
    warm_s = time.perf_counter() - t

    t = time.perf_counter()
    rec = execute_batch(plan, workers=workers, cache=a.cache, log=lambda m: print(m, file=sys.stderr),
                        dashboard_address=":0")
    batch_s = time.perf_counter() - t
    done = [r for r in rec["runs"] if r["status"] == "completed"]

    seq_s = None
    if not a.skip_sequential:
        t = time.perf_counter()
        for i in range(1, a.runs + 1):
            assert mmm(["run", a.spec, "--run-id", f"seq-r{i}", *sets, "--set", f"random_seed={i}"]) == 0
        seq_s = time.perf_counter() - t

    per_run = sorted(r["wall_s"] for r in done if r.get("wall_s"))
    mem = max((r["peak_rss_mb"] or 0) for r in done) if done else 0
    mean_run = sum(per_run) / len(per_run) if per_run else float("nan")
    per_worker_h = 3600 / mean_run if per_run else float("nan")
    out = {
        "runs": a.runs, "completed": len(done), "workers": workers, "chains": chains, "cores": machine_cores(),
        "draws_tune": common or "spec", "cache": a.cache, "warmup_run_s": round(warm_s, 1),
        "batch_wall_s": round(batch_s, 1), "sequential_wall_s": None if seq_s is None else round(seq_s, 1),
        "speedup_batch_vs_sequential": None if seq_s is None else round(seq_s / batch_s, 2),
        "per_run_s_in_batch": {"mean": round(mean_run, 1), "min": per_run[0] if per_run else None,
                               "max": per_run[-1] if per_run else None},
        "sequential_per_run_s": None if seq_s is None else round(seq_s / a.runs, 1),
        "peak_rss_mb_per_worker": mem,
        "runs_per_hour_per_worker": round(per_worker_h, 1),
        "hours_for_target": {f"{w} workers": round(a.target_runs / (per_worker_h * w), 2) for w in a.target_workers},
        # Each worker on its own `chains` cores: a run takes about what it takes alone (the sequential per-run time).
        "runs_per_hour_per_worker_dedicated_cores": None if seq_s is None else round(3600 * a.runs / seq_s, 1),
        "hours_for_target_dedicated_cores": None if seq_s is None else {
            f"{w} workers": round(a.target_runs * seq_s / a.runs / 3600 / w, 2) for w in a.target_workers},
        "note": (f"cost model: a worker runs one run at a time using {chains} cores; per-run time measured with "
                 f"{workers} workers sharing {machine_cores()} cores (on dedicated cores it is nearer the sequential "
                 "per-run time); a host needs cores >= workers x chains and memory >= workers x peak_rss_mb."),
    }
    print(json.dumps(out, indent=2))
    print(f"\nbatch {batch_s:.0f} s vs one mmm run after another {seq_s or float('nan'):.0f} s "
          f"(ratio sequential/batch {out['speedup_batch_vs_sequential']}); {out['runs_per_hour_per_worker']} runs/h per worker, "
          f"peak {mem:.0f} MB per worker; {a.target_runs} runs: "
          + ", ".join(f"{k}: {v} h" for k, v in out["hours_for_target"].items()), file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
