"""The suite against a peer, PyMC-Marketing, on one simulated panel: end-to-end times and ratios, from one run.

Usage (from the repo root)::

    .venv/bin/python benchmarks/bench_vs_peer.py [--entities 8] [--weeks 156] [--channels 3] [--seed 0]
        [--draws 1000] [--tune 1000] [--chains 2] [--warm-runs 2] [--peer-runs 2]
        [--peer-python .venv-peer/bin/python] [--peer-brand] [--json out.json] [--keep]

PyMC-Marketing is an optional BENCHMARK extra, never a runtime dependency of this project: 1.3.0 pins
``pymc<6.4`` (the suite needs 6.4), so it lives in its own virtual environment, ``.venv-peer/``, which this
script creates when it is missing (``python3.12 -m venv .venv-peer`` and
``pip install -r benchmarks/peer-requirements.txt``, a few minutes and ~0.8 GB; ``--peer-python`` points at
another interpreter that has it). The peer side runs ``benchmarks/peer_fit.py`` under that interpreter.

What is measured, all in this one invocation, on one panel from ``mmm_lib.sample.simulate_panel``
(``--entities`` × ``--weeks`` × ``--channels``, known truth; written as CSV with a YAML spec from
``mmm_lib.sample.panel_spec`` into a temp folder), with the same draws, tune, chains, target_accept and
random_seed on both sides (the spec's defaults unless given):

* **suite, default model** (``model: {transforms: learned, level: entity}``, ``nuts_sampler: auto``):
  the wall time of the whole ``mmm run SPEC`` process (six stage notebooks: validate … contribute),
  ``cold`` = an empty compile cache (``$MMM_CACHE`` in a new folder), ``warm`` = the median of
  ``--warm-runs`` further runs on the cache the cold run filled;
* **suite, baseline model** (``--set model.transforms=fixed --set model.level=brand``, sampler still
  ``auto``): the same, cold (its own empty cache) and warm;
* **peer**: the wall time of the whole ``peer_fit.py`` process (interpreter start, imports, data, model
  build and ``MMM.fit``: the "bare fit", no reports, no diagnostics, no artifacts): PyMC-Marketing's
  ``MMM`` with ``dims=("geo",)`` on the same CSV rows (the suite's estimation window), learning geometric
  adstock (``l_max`` = the spec's ``max_lag``) and the spec's saturation family, the same control and
  yearly Fourier modes, its default priors and sampler (PyMC NUTS), chains in parallel as the suite runs
  them. See ``peer_fit.py`` for the details. ``--peer-runs`` processes (default 2) share a fresh PyTensor
  compile folder: the first is the peer's cold run, the rest warm; ratios use the peer's WARM median
  (its best case; the cold one when ``--peer-runs 1``).

Printed: the table of those times (with NUTS sampling seconds where known), the ratios
``suite warm / peer``, ``baseline warm / peer`` and ``baseline cold`` against the issue's targets
(≤ 0.6×, ≤ 0.4×, ≤ 30 s), and a per-stage overhead table of the (median) warm default run, read from
the executed notebooks ``<run>/notebooks/NN_*.ipynb``: per stage its critical-path wall (from the
previous stage's papermill ``end_time``, or from the process start for the first stage, to its own
``end_time``), the time inside its code cells (nbclient's ``iopub.execute_input`` → ``shell.execute_reply``
per cell) and overhead = wall − cells (kernel start, imports done before the first cell, papermill and
HTML export, the runner's own work between stages). ``--json PATH`` writes every number.

Timings on a shared machine are noisy (the load average is printed): compare ratios from one run. A
failing subprocess prints its stderr tail and the script exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stage_timeline import KEPT_DIR_ENV, kept_kernel_servers, kept_server_use, stage_timeline, timed, wait_until_kept  # benchmarks/stage_timeline.py, shared with bench_pipeline.py

REPO = Path(__file__).resolve().parent.parent
PEER_VENV = REPO / ".venv-peer"
PEER_REQUIREMENTS = REPO / "benchmarks" / "peer-requirements.txt"
PEER_SCRIPT = REPO / "benchmarks" / "peer_fit.py"
TARGETS = {"suite_warm_over_peer": 0.6, "baseline_warm_over_peer": 0.4, "baseline_cold_s": 30.0}
BASELINE_SET = ["model.transforms=fixed", "model.level=brand"]


def fail(what: str, proc: subprocess.CompletedProcess | None = None, tail: int = 4000) -> None:
    """Print what failed (and the process's stderr/stdout tail) and exit non-zero."""
    print(f"\nFAILED: {what}", file=sys.stderr)
    if proc is not None:
        print(f"exit status {proc.returncode}; command: {' '.join(map(str, proc.args))}", file=sys.stderr)
        if proc.stdout and proc.stdout.strip():
            print(f"--- stdout (last {tail} chars) ---\n{proc.stdout[-tail:]}", file=sys.stderr)
        if proc.stderr and proc.stderr.strip():
            print(f"--- stderr (last {tail} chars) ---\n{proc.stderr[-tail:]}", file=sys.stderr)
    sys.exit(1)


# ------------------------------------------------------------------------------------------------
# the peer's environment


def _python312() -> str | None:
    """A working Python 3.12 for the peer venv: ``python3.12`` on PATH, else the base of this venv's Python."""
    for cand in (shutil.which("python3.12"), str(Path(sys.base_prefix) / "bin" / "python3.12")):
        if cand and Path(cand).exists():
            r = subprocess.run([cand, "--version"], capture_output=True, text=True)
            if r.returncode == 0 and "3.12" in r.stdout + r.stderr:
                return cand
    return None


def ensure_peer_python(given: str | None) -> Path:
    """The peer interpreter: ``--peer-python``, or ``.venv-peer/bin/python``, creating that venv when missing."""
    if given:
        py = Path(given)
        if not py.exists():
            fail(f"--peer-python {given}: no such file")
        return py
    py = PEER_VENV / "bin" / "python"
    probe = [str(py), "-c", "import pymc_marketing"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    base = _python312()
    if base is None:
        fail("no Python 3.12 found to create the peer venv; create it yourself (python3.12 -m venv .venv-peer && "
             ".venv-peer/bin/pip install -r benchmarks/peer-requirements.txt) or pass --peer-python")
    print(f"The peer environment {PEER_VENV} is missing or unfinished: creating it with {base} -m venv and\n"
          f"pip install -r {PEER_REQUIREMENTS.relative_to(REPO)} (PyMC-Marketing, benchmark only, never a runtime "
          "dependency; a few minutes) ...", flush=True)
    if not py.exists():
        r = subprocess.run([base, "-m", "venv", str(PEER_VENV)], capture_output=True, text=True)
        if r.returncode != 0:
            fail("creating the peer venv", r)
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(PEER_REQUIREMENTS)], capture_output=True,
                       text=True)  # fmt: skip
    if r.returncode != 0:
        fail("installing benchmarks/peer-requirements.txt into the peer venv", r)
    r = subprocess.run([str(py), "-c", "import pymc_marketing; print(pymc_marketing.__version__)"],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        fail("importing pymc_marketing in the new peer venv", r)
    print(f"peer venv ready: pymc-marketing {r.stdout.strip()}", flush=True)
    return py


# ------------------------------------------------------------------------------------------------
# the panel


def write_panel(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Simulate the panel, write ``panel.csv`` and ``spec.yaml`` (default model) into ``folder``."""
    import pandas as pd
    import yaml

    from mmm_lib.sample import panel_spec, simulate_panel, window_labels
    from mmm_lib.spec import parse_spec

    df, truth = simulate_panel(n_entities=args.entities, n_periods=args.weeks, n_channels=args.channels,
                               seed=args.seed)  # fmt: skip
    sampling = {k: getattr(args, k) for k in ("draws", "tune", "chains") if getattr(args, k) is not None}
    raw = panel_spec(df, model={"transforms": "learned", "level": "entity"}, **sampling)
    spec = parse_spec(raw, check_path=False)
    csv = folder / "panel.csv"
    df.to_csv(csv, index=False)
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dates = pd.DatetimeIndex(sorted(df["period_start"].unique()))
    est = dates[window_labels(dates, spec) == "estimation"]
    fc = spec.feature_config
    return {
        "csv": csv,
        "spec": folder / "spec.yaml",
        "drivers": list(spec.drivers),
        "controls": list(spec.controls),
        "target": spec.target_col,
        "start": est[0].strftime("%Y-%m-%d"),
        "end": est[-1].strftime("%Y-%m-%d"),
        "n_estimation_weeks": len(est),
        "max_lag": fc.adstock.max_lag,
        "saturation": fc.saturation.type,
        "yearly": fc.seasonality.K if fc.seasonality.enabled else 0,
        "draws": spec.draws, "tune": spec.tune, "chains": spec.chains,
        "target_accept": spec.target_accept, "random_seed": spec.random_seed,
        "shape": f"{args.entities} entities x {args.weeks} weeks x {args.channels} channels",
        "true_roi": truth["roi"],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------
# the suite


def run_suite(panel: dict, run_id: str, cache: Path, outputs: Path, extra: list[str]) -> dict[str, Any]:
    """One ``mmm run`` process: wall, start/end (UTC), sampler and sampling seconds, the run folder."""
    mmm = str(Path(sys.executable).parent / "mmm")
    cmd = [mmm, "run", str(panel["spec"]), "--run-id", run_id]
    for s in extra:
        cmd += ["--set", s]
    env = dict(os.environ, MMM_OUTPUTS=str(outputs), MMM_CACHE=str(cache))
    env.pop("PYTENSOR_FLAGS", None)
    proc, when = timed(cmd, env, REPO)
    if proc.returncode != 0:
        fail(f"mmm run {run_id}", proc)
    wait_until_kept(proc.stderr, env.get(KEPT_DIR_ENV))
    run = outputs / "runs" / run_id
    meta = json.loads((run / "model_metadata.json").read_text())
    sampler = meta.get("sampler", {})
    return {"run_id": run_id, **when, "sampler": sampler.get("nuts_sampler"),
            "compile_s": sampler.get("compile_time_s"), "sampling_s": meta.get("sampling_time_s"),
            "run_dir": str(run), "kept_server": kept_server_use(proc.stderr)}  # fmt: skip


def suite_series(panel: dict, name: str, cache: Path, outputs: Path, extra: list[str], warm_runs: int) -> dict:
    """Cold (empty cache) then ``warm_runs`` warm runs of one model configuration."""
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    print(f"  {name}: cold ...", end="", flush=True)
    cold = run_suite(panel, f"{name}_cold", cache, outputs, extra)
    print(f" {cold['wall_s']:.1f}s", end="", flush=True)
    warm = []
    for i in range(warm_runs):
        print(f"; warm {i + 1} ...", end="", flush=True)
        warm.append(run_suite(panel, f"{name}_warm{i + 1}", cache, outputs, extra))
        print(f" {warm[-1]['wall_s']:.1f}s", end="", flush=True)
    print(flush=True)
    return {"cold": cold, "warm": warm, "warm_median_s": statistics.median(w["wall_s"] for w in warm)}


def median_run(runs: list[dict]) -> dict:
    """The run whose wall is the median (lower median for an even count)."""
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    return ordered[(len(ordered) - 1) // 2]


# ------------------------------------------------------------------------------------------------
# the peer


def run_peer(py: Path, panel: dict, compile_dir: Path, brand: bool) -> dict[str, Any]:
    """One ``peer_fit.py`` process, timed as a whole (interpreter start to exit)."""
    cmd = [str(py), str(PEER_SCRIPT), "--csv", str(panel["csv"]), "--channels", ",".join(panel["drivers"]),
           "--controls", ",".join(panel["controls"]), "--target", panel["target"],
           "--start", panel["start"], "--end", panel["end"], "--l-max", str(panel["max_lag"]),
           "--saturation", panel["saturation"], "--yearly", str(panel["yearly"]),
           "--draws", str(panel["draws"]), "--tune", str(panel["tune"]), "--chains", str(panel["chains"]),
           "--target-accept", str(panel["target_accept"]), "--seed", str(panel["random_seed"])]  # fmt: skip
    if brand:
        cmd.append("--brand")
    env = dict(os.environ)
    # its own compile folder (so "cold" is cold), one BLAS thread per chain as the suite sets (mmm_lib.runtime)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={compile_dir}"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(var, None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        fail("the peer fit (benchmarks/peer_fit.py)", proc)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        fail("the peer fit printed no JSON line", proc)
    out = json.loads(lines[-1])
    out["process_wall_s"] = wall  # as timed from here: includes interpreter start
    return out


def peer_series(py: Path, panel: dict, folder: Path, runs: int, brand: bool) -> dict:
    compile_dir = folder / "peer_pytensor"
    compile_dir.mkdir(parents=True, exist_ok=True)
    res = []
    for i in range(runs):
        print(f"  peer: {'cold' if i == 0 else f'warm {i}'} ...", end="", flush=True)
        res.append(run_peer(py, panel, compile_dir, brand))
        print(f" {res[-1]['process_wall_s']:.1f}s", flush=True)
    warm = res[1:]
    ref = statistics.median(r["process_wall_s"] for r in warm) if warm else res[0]["process_wall_s"]
    return {"cold": res[0], "warm": warm, "reference_s": ref, "reference": "warm median" if warm else "cold"}


# ------------------------------------------------------------------------------------------------


def _f(x: float | None, unit: str = "s", w: int = 9) -> str:
    return f"{'—':>{w}}" if x is None else f"{x:>{w - len(unit)}.1f}{unit}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=8)
    ap.add_argument("--weeks", type=int, default=156)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="simulate_panel's seed")
    ap.add_argument("--draws", type=int, default=None, help="default: the spec's (1000)")
    ap.add_argument("--tune", type=int, default=None, help="default: the spec's (1000)")
    ap.add_argument("--chains", type=int, default=None, help="default: the spec's (2)")
    ap.add_argument("--warm-runs", type=int, default=2, help="warm suite runs per model; the median is reported")
    ap.add_argument("--peer-runs", type=int, default=2, help="peer processes: the first cold, the rest warm")
    ap.add_argument("--peer-python", default=None, help="interpreter with pymc-marketing (default .venv-peer, "
                    "created when missing)")
    ap.add_argument("--peer-brand", action="store_true", help="fit the peer on one brand series (fallback) "
                    "instead of the geo panel")
    ap.add_argument("--json", default=None, help="write all numbers to this JSON file")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (panel, runs, caches) and print it")
    args = ap.parse_args()
    if args.warm_runs < 1 or args.peer_runs < 1:
        ap.error("--warm-runs and --peer-runs must be >= 1")

    peer_py = ensure_peer_python(args.peer_python)
    tmp = Path(tempfile.mkdtemp(prefix="mmm-vs-peer-"))
    try:
        with kept_kernel_servers(tmp) as kept:  # the suite's runs keep their kernel servers there
            os.environ[KEPT_DIR_ENV] = kept
            panel = write_panel(tmp, args)
            outputs = tmp / "outputs"
            load0 = os.getloadavg()
            print(f"panel: {panel['shape']} (seed {args.seed}), estimation window {panel['start']} .. {panel['end']} "
                  f"({panel['n_estimation_weeks']} weeks); draws {panel['draws']}, tune {panel['tune']}, "
                  f"chains {panel['chains']}, target_accept {panel['target_accept']}, seed {panel['random_seed']}",
                  flush=True)  # fmt: skip
            suite = suite_series(panel, "default", tmp / "cache_default", outputs, [], args.warm_runs)
            base = suite_series(panel, "baseline", tmp / "cache_baseline", outputs, BASELINE_SET, args.warm_runs)
            peer = peer_series(peer_py, panel, tmp, args.peer_runs, args.peer_brand)
            load1 = os.getloadavg()
            timeline = stage_timeline(median_run(suite["warm"]))
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ref = peer["reference_s"]
    ratios = {
        "suite_warm_over_peer": suite["warm_median_s"] / ref,
        "suite_cold_over_peer": suite["cold"]["wall_s"] / ref,
        "baseline_warm_over_peer": base["warm_median_s"] / ref,
        "baseline_cold_s": base["cold"]["wall_s"],
    }

    p0 = peer["cold"]
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
          f"python {sys.version.split()[0]}; peer: pymc-marketing {p0['versions']['pymc_marketing']}, "
          f"pymc {p0['versions']['pymc']}")  # fmt: skip
    print(f"peer model: {p0['model']}, {p0['level']}, {p0['n_geos']} geos x {p0['n_dates']} weeks, "
          f"{p0['n_free_parameters']} free parameters, {p0['cores']} cores")  # fmt: skip
    print(f"\n{'process (wall, whole)':<34}{'wall':>9}{'NUTS sampling':>15}  sampler")
    rows = [("suite default, cold", suite["cold"]), *[(f"suite default, warm {i + 1}", w) for i, w in enumerate(suite["warm"])],
            ("baseline, cold", base["cold"]), *[(f"baseline, warm {i + 1}", w) for i, w in enumerate(base["warm"])]]  # fmt: skip
    for name, r in rows:
        print(f"{name:<34}{_f(r['wall_s'])}{_f(r['sampling_s'], w=15)}  {r['sampler']} (kept server: {r['kept_server']})")
    for i, r in enumerate([peer["cold"], *peer["warm"]]):
        name = "peer bare fit, " + ("cold" if i == 0 else f"warm {i}")
        print(f"{name:<34}{_f(r['process_wall_s'])}{_f(r['sampling_s'], w=15)}  PyMC NUTS (pm.sample)")
    print(f"{'suite default, warm (median)':<34}{_f(suite['warm_median_s'])}")
    print(f"{'baseline, warm (median)':<34}{_f(base['warm_median_s'])}")
    print(f"{'peer (' + peer['reference'] + ')':<34}{_f(ref)}")

    def verdict(v: float, t: float) -> str:
        return "meets" if v <= t else "MISSES"

    print(f"\n{'ratio':<34}{'value':>9}  target")
    print(f"{'suite warm / peer':<34}{ratios['suite_warm_over_peer']:>8.2f}x  <= {TARGETS['suite_warm_over_peer']}x: "
          f"{verdict(ratios['suite_warm_over_peer'], TARGETS['suite_warm_over_peer'])}")
    print(f"{'suite cold / peer':<34}{ratios['suite_cold_over_peer']:>8.2f}x  (no target)")
    print(f"{'baseline warm / peer':<34}{ratios['baseline_warm_over_peer']:>8.2f}x  <= "
          f"{TARGETS['baseline_warm_over_peer']}x: "
          f"{verdict(ratios['baseline_warm_over_peer'], TARGETS['baseline_warm_over_peer'])}")  # fmt: skip
    print(f"{'baseline cold':<34}{_f(ratios['baseline_cold_s'])}  <= {TARGETS['baseline_cold_s']:.0f} s: "
          f"{verdict(ratios['baseline_cold_s'], TARGETS['baseline_cold_s'])}")  # fmt: skip
    print(f"(ratios against the peer's {peer['reference']}: {ref:.1f} s)")

    wr = median_run(suite["warm"])
    print(f"\nper-stage overhead, suite default warm run {wr['run_id']} ({wr['wall_s']:.1f} s):")
    print(f"{'stage':<22}{'wall':>9}{'in cells':>10}{'overhead':>10}{'  of which before papermill start':>34}")
    for r in timeline:
        print(f"{r['stage']:<22}{_f(r['wall_s'])}{_f(r['cells_s'], w=10)}{_f(r['overhead_s'], w=10)}"
              f"{_f(r['before_papermill_s'], w=34)}")  # fmt: skip
    tw, tc = sum(r["wall_s"] for r in timeline), sum(r["cells_s"] for r in timeline)
    print(f"{'total':<22}{_f(tw)}{_f(tc, w=10)}{_f(tw - tc, w=10)}   ({(tw - tc) / tw:.0%} overhead)")

    if args.json:
        panel_out = {k: (str(v) if isinstance(v, Path) else v) for k, v in panel.items()}
        doc = {"panel": panel_out, "suite_default": suite, "baseline": base, "peer": peer, "ratios": ratios,
               "targets": TARGETS, "stage_timeline_warm_default": timeline,
               "machine": {"cpus": os.cpu_count(), "loadavg_start": load0, "loadavg_end": load1,
                           "python": sys.version.split()[0]}}  # fmt: skip
        Path(args.json).write_text(json.dumps(doc, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
