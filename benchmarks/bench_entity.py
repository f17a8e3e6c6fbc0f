"""Speed of the learned-entity model on a Meridian-sized panel: cold and warm compile cache, per sampler.

Usage::

    .venv/bin/python benchmarks/bench_entity.py [--sampler pymc|nutpie|numpyro|all] [--draws 1000] [--tune 1000]

Data: ``mmm_lib.sample.meridian_like_panel()`` (20 geos × 156 weeks × 4 channels). Spec:
``panel_spec(df)`` with ``model: {transforms: learned, level: entity}``, 2 chains, the given
draws/tune and ``nuts_sampler`` = the sampler. Each measurement is a fresh Python process running
this script with an internal flag: "cold" with ``MMM_CACHE`` (the compile cache, read by
``mmm_lib.runtime`` before PyTensor is imported) and ``NUMBA_CACHE_DIR`` in a new empty temp dir,
"warm" a second process on the cache the cold one left.

Printed per sampler and cache state: wall of the child process and of ``fit_model`` (compile +
sampling + prior draws + summary), compile/setup and sampling seconds (``res["metadata"]``), max R-hat
and min bulk ESS over ``res["summary"]["parameters"]``, and peak memory of the child's process tree
(chains in worker processes count), sampled every 0.2 s: summed RSS (double counts pages a forked
worker shares with its parent) and summed PSS (shared pages split: the real footprint, checked
against the target), plus ``ru_maxrss`` (largest single process). Targets are printed for comparison. numpyro is skipped when jax/numpyro are not
installed. The machine's load average is printed too: other work on the box slows every number.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

TARGETS = {"fit_s": 110.0, "rhat": 1.01, "ess": 400.0, "rss_gb": 1.5}
SAMPLERS = ("pymc", "nutpie", "numpyro")


def child(sampler: str, draws: int, tune: int) -> None:
    """One measurement, in this (fresh) process: build the data and spec, fit, print a JSON line."""
    t0 = time.perf_counter()
    from mmm_lib import model_pymc as mp
    from mmm_lib.canonicalize import canonicalize
    from mmm_lib.features import build_features
    from mmm_lib.sample import meridian_like_panel, panel_spec
    from mmm_lib.spec import parse_spec

    df, _ = meridian_like_panel()
    raw = panel_spec(df, model={"transforms": "learned", "level": "entity"}, draws=draws, tune=tune, chains=2,
                     nuts_sampler=sampler)  # fmt: skip
    spec = parse_spec(raw, check_path=False)
    can, info = canonicalize(df, spec)
    f, m, sc = build_features(can, info, spec)
    t1 = time.perf_counter()
    res = mp.fit_model(f, m, sc, spec, progress=False)
    fit_s = time.perf_counter() - t1
    params = res["summary"]["parameters"]
    md = res["metadata"]
    ss = res["idata"]["sample_stats"]
    ru_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru_kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({
        "fit_s": fit_s,
        "process_s": time.perf_counter() - t0,
        "compile_s": md["sampler"]["compile_time_s"],
        "sampler_wall_s": md["sampler"]["wall_time_s"],
        "sampling_s": md["sampling_time_s"],
        "rhat_max": max(p["r_hat"] for p in params),
        "ess_min": min(p["ess_bulk"] for p in params),
        "n_params": len(params),
        "divergences": int(ss["diverging"].values.sum()) if "diverging" in ss else None,
        "ru_maxrss_mb": max(ru_self, ru_kids) / 1024,  # Linux: KiB
    }), flush=True)


def _tree_mem(pid: int) -> tuple[int, int]:
    """(RSS, PSS) summed over process ``pid`` and its descendants; PSS splits shared pages, so it does not double count forks."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    rss = pss = 0
    for q in procs:
        try:
            mi = q.memory_full_info()
            rss, pss = rss + mi.rss, pss + getattr(mi, "pss", mi.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss, pss


def measure(sampler: str, draws: int, tune: int, cache: str) -> dict[str, Any]:
    """Run :func:`child` in a new process on compile cache ``cache``; its JSON plus the sampled peak tree RSS."""
    env = dict(os.environ, MMM_CACHE=cache, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
    env.pop("PYTENSOR_FLAGS", None)  # let mmm_lib.runtime point base_compiledir into MMM_CACHE
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--sampler", sampler, "--draws", str(draws), "--tune", str(tune)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0, 0]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            rss, pss = _tree_mem(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            done.wait(0.2)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}", "stderr": err, "stdout": out, "wall_s": wall}
    res = json.loads(out.strip().splitlines()[-1])
    res.update(wall_s=wall, tree_rss_mb=peak[0] / 2**20, tree_pss_mb=peak[1] / 2**20, load1=load)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sampler", default="all", choices=[*SAMPLERS, "all"])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args.sampler, args.draws, args.tune)
        return

    samplers = SAMPLERS if args.sampler == "all" else (args.sampler,)
    print(f"learned-entity model on meridian_like_panel() (20 geos × 156 weeks × 4 channels), 2 chains, "
          f"{args.draws} draws + {args.tune} tune, {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    results: list[tuple[str, str, dict[str, Any]]] = []
    for sampler in samplers:
        if sampler == "numpyro" and (importlib.util.find_spec("jax") is None or importlib.util.find_spec("numpyro") is None):
            print("numpyro: skipped, jax/numpyro are not installed", flush=True)
            continue
        with tempfile.TemporaryDirectory(prefix="mmm-bench-entity-") as cache:
            for state in ("cold", "warm"):
                print(f"{sampler} {state} …", flush=True)
                r = measure(sampler, args.draws, args.tune, cache)
                results.append((sampler, state, r))
                if "error" in r:
                    print(f"{sampler} {state} FAILED ({r['error']}):\n{r['stderr'][-6000:]}", flush=True)
                    break
                print(f"  {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})}", flush=True)

    head = (f"{'sampler':<8}{'cache':<6}{'process s':>10}{'fit_model s':>12}{'compile s':>10}{'sampling s':>11}"
            f"{'max Rhat':>9}{'min ESS':>8}{'div':>5}{'tree RSS MB':>12}{'tree PSS MB':>12}{'maxrss MB':>10}{'load1':>6}")  # fmt: skip
    print("\n" + head + "\n" + "-" * len(head))
    for sampler, state, r in results:
        if "error" in r:
            print(f"{sampler:<8}{state:<6} FAILED: {r['error']}")
            continue
        print(f"{sampler:<8}{state:<6}{r['wall_s']:>10.1f}{r['fit_s']:>12.1f}{r['compile_s']:>10.1f}{r['sampling_s']:>11.1f}"
              f"{r['rhat_max']:>9.3f}{r['ess_min']:>8.0f}{r['divergences']:>5}{r['tree_rss_mb']:>12.0f}{r['tree_pss_mb']:>12.0f}"
              f"{r['ru_maxrss_mb']:>10.0f}{r['load1']:>6.1f}")  # fmt: skip
    t = TARGETS
    print(f"targets: fit_model ≤ {t['fit_s']:.0f} s, max R-hat ≤ {t['rhat']}, min bulk ESS ≥ {t['ess']:.0f}, "
          f"peak RSS ≤ {t['rss_gb']} GB ({t['rss_gb'] * 1024:.0f} MB)")
    for sampler, state, r in results:
        if "error" in r:
            continue
        checks = {"time": r["fit_s"] <= t["fit_s"], "R-hat": r["rhat_max"] <= t["rhat"], "ESS": r["ess_min"] >= t["ess"],
                  "RSS (tree PSS)": r["tree_pss_mb"] <= t["rss_gb"] * 1024}  # fmt: skip
        print(f"  {sampler} {state}: " + ", ".join(f"{k} {'ok' if v else 'MISS'}" for k, v in checks.items()))


if __name__ == "__main__":
    main()
