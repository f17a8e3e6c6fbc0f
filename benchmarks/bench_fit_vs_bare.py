"""Fit-stage overhead: mmm_lib's build + fit versus a bare PyMC model of the same spec, same process.

Usage (after a completed run, e.g. `make run`)::

    .venv/bin/python benchmarks/bench_fit_vs_bare.py RUN_ID [--repeats 3]

Both variants build the same model from the run's features.parquet and sample it with the spec's
draws/tune/chains/target_accept/seed, the same sampler and cores; the compile cache is shared, so
after the first call both are warm. Reported: median wall time of each and their ratio
(target: suite / bare <= 1.2).
"""

from __future__ import annotations

import argparse
import statistics
import time

from mmm_lib import model_pymc  # sets the compile cache before pytensor is imported
from mmm_lib.storage import open_run, run_dir


def bare(features, meta, spec):
    import numpy as np
    import pymc as pm

    est = features[features["window"] == "estimation"]
    media = est[[c["feature"] for c in meta["channels"]]].to_numpy(float)
    ctrl = est[[c["feature"] for c in meta["controls"]]].to_numpy(float)
    y = np.log1p(est["target"].to_numpy(float))
    y = y - y.mean()
    with pm.Model() as m:
        intercept = pm.Normal("intercept", 0, 2)
        sb = pm.HalfNormal("sigma_beta", 0.5)
        beta = pm.HalfNormal("beta", sb, shape=media.shape[1])
        gamma = pm.Normal("gamma", 0, 0.5, shape=ctrl.shape[1])
        mu = intercept + pm.math.dot(media, beta) + pm.math.dot(ctrl, gamma)
        pm.StudentT("z", nu=pm.Exponential("nu", 0.1), mu=mu, sigma=pm.HalfNormal("sigma", 1), observed=y)
        pm.sample(draws=spec.draws, tune=spec.tune, chains=spec.chains, cores=min(spec.chains, 2),
                  target_accept=spec.target_accept, random_seed=spec.random_seed,
                  nuts_sampler=spec.nuts_sampler, progressbar=False)


def suite(features, meta, spec):
    model, _ = model_pymc.build_model(features, meta)
    model_pymc.fit(model, spec, progress=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_id")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spec_path = run_dir(args.run_id) / "run_spec.json"
    run = open_run(spec_path, args.run_id)
    features, meta = run.read_parquet("features.parquet"), run.read_json("feature_metadata.json")
    times = {"bare": [], "suite": []}
    for name, fn in (("bare", bare), ("suite", suite)):  # first call of each compiles/warms
        fn(features, meta, run.spec)
    for _ in range(args.repeats):
        for name, fn in (("bare", bare), ("suite", suite)):
            t0 = time.perf_counter()
            fn(features, meta, run.spec)
            times[name].append(time.perf_counter() - t0)
    b, s = statistics.median(times["bare"]), statistics.median(times["suite"])
    print(f"sampler {run.spec.nuts_sampler}, {run.spec.chains} chains x ({run.spec.tune} tune + {run.spec.draws} draws)")
    print(f"bare PyMC   median {b:6.2f} s  {['%.2f' % t for t in times['bare']]}")
    print(f"mmm_lib fit median {s:6.2f} s  {['%.2f' % t for t in times['suite']]}")
    print(f"suite / bare = {s / b:.2f}   (target <= 1.2)")


if __name__ == "__main__":
    main()
