"""What model checking adds to a run: log-likelihood + predictive draws (04_fit) and LOO + PPC (05_diagnose).

Usage (from the repo root, after a run, e.g. ``make run``)::

    .venv/bin/python benchmarks/bench_checks.py [RUN_DIR]

RUN_DIR defaults to the newest run under ``outputs/runs`` (or ``$MMM_OUTPUTS/runs``). The run's own
features and posterior are reused; the checks are recomputed in this process: once cold (first call:
PyTensor compiles the likelihood's elementwise graph) and three times warm; 05's four model-check
figures are drawn and rendered to PNG. "05 extra" is
``compute_diagnostics`` with the check groups minus the same call without them (convergence only).
Prints seconds and each as a share of the run's sampling wall time. Timings on a shared machine are
noisy: compare ratios.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHECK_GROUPS = ("log_likelihood", "posterior_predictive", "predictions", "predictions_constant_data")


def newest_run() -> Path:
    from mmm_lib.storage import outputs_root

    runs = [p for p in (outputs_root() / "runs").glob("*") if (p / "posterior.nc").is_file()]
    if not runs:
        sys.exit("no run with a posterior under outputs/runs: run `make run` first")
    return max(runs, key=lambda p: (p / "posterior.nc").stat().st_mtime)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import pandas as pd
    import xarray as xr

    from mmm_lib.diagnostics import compute_diagnostics
    from mmm_lib.model import from_artifacts
    from mmm_lib.model_pymc import add_checks
    from mmm_lib.spec import parse_spec

    run = Path(sys.argv[1]) if len(sys.argv) > 1 else newest_run()
    spec = parse_spec(json.loads((run / "run_spec.json").read_text()), check_path=False)
    meta = json.loads((run / "model_metadata.json").read_text())
    mmm = from_artifacts(pd.read_parquet(run / "features.parquet"), json.loads((run / "feature_metadata.json").read_text()),
                         json.loads((run / "feature_scaler.json").read_text()), spec.model)  # fmt: skip
    idata = xr.load_datatree(run / "posterior.nc")
    bare = idata.copy()
    for g in CHECK_GROUPS:
        if g in bare.children:
            del bare[g]
    post = idata["posterior"]
    n = post.sizes["chain"] * post.sizes["draw"]
    sampling = float(meta.get("sampling_time_s") or 0.0)

    def checks() -> None:
        add_checks(mmm, bare.copy(), spec.random_seed)

    cold_04 = timed(checks)
    warm_04 = timed(checks, 3)
    from mmm_lib.plots import checks as plots

    def figures() -> None:  # 05's model-check figures, drawn and rendered to PNG as the report embeds them
        for fig in (plots.plot_ppc_time(idata, meta), plots.plot_ppc_entities(idata, meta),
                    plots.plot_ppc_density(idata, meta), plots.plot_pareto_k(idata)):  # fmt: skip
            fig.savefig(io.BytesIO(), format="png")

    figs = timed(figures, 2)
    with_checks = timed(lambda: compute_diagnostics(idata, metadata=meta), 3)
    without = timed(lambda: compute_diagnostics(bare, metadata=meta), 3)
    extra_05 = max(with_checks - without, 0.0)
    d = mmm.data
    print(f"run {run.name}: {meta['model']}, {len(d.entities)} entities × {len(d.periods)} periods "
          f"(+{d.n_holdout} held out), {n} draws; sampling took {sampling:.1f} s")  # fmt: skip
    rows = [
        ("04 log-likelihood + predictive draws, cold", cold_04),
        ("04 log-likelihood + predictive draws, warm", warm_04),
        ("05 LOO + PPC coverage (diagnostics with checks − without)", extra_05),
        ("added, warm (04 + 05 numbers)", warm_04 + extra_05),
        ("05 PPC + LOO figures (4, rendered to PNG)", figs),
        ("added, warm, numbers and figures", warm_04 + extra_05 + figs),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  {'× sampling':>10}")
    for name, s in rows:
        ratio = f"{s / sampling:10.2f}" if sampling else f"{'n/a':>10}"
        print(f"{name:<{width}}  {s:8.2f}  {ratio}")
    print("target: added time for PPC + LOO on the example ≤ 3 s warm")


if __name__ == "__main__":
    main()
