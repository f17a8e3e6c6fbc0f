"""Fit time versus data size: periods (52, 156, 520 weeks) × media channels (3, 8, 15).

Usage::

    .venv/bin/python benchmarks/bench_scaling.py [--sampler pymc] [--draws 1000] [--tune 1000]

Each cell simulates brand-level features of that size (media features in [0, 1), one control,
2 Fourier pairs and a trend), builds the suite's model with ``model_pymc.build_model`` and samples
it with ``model_pymc.fit`` (2 chains). Printed: compile/initialisation time, sampling time and the
minimum bulk ESS per second of sampling. Compile times depend on the cache: the first cell of each
structure pays it.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from mmm_lib import model_pymc
from mmm_lib.diagnostics import compute_diagnostics
from mmm_lib.spec import parse_spec


def simulated_features(n_periods: int, n_channels: int, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    t = np.arange(n_periods)
    media = rng.uniform(0, 1, size=(n_periods, n_channels)) * (rng.uniform(size=(n_periods, n_channels)) > 0.3)
    season = np.column_stack([f(2 * np.pi * k * t / 52.18) for k in (1, 2) for f in (np.sin, np.cos)])
    trend = (t - t.mean()) / t.std()
    price = rng.normal(size=n_periods)
    beta = rng.uniform(0.02, 0.2, size=n_channels)
    z = media @ beta + season @ np.array([0.05, 0.03, -0.02, 0.01]) + 0.03 * trend - 0.02 * price
    y = np.expm1(11.0 + z + rng.normal(0, 0.03, n_periods))
    df = pd.DataFrame({
        "entity_id": "brand",
        "period_start": pd.date_range("2015-01-05", periods=n_periods, freq="W-MON"),
        "window": "estimation",
        "target": y,
    })
    channels, controls = [], []
    for c in range(n_channels):
        df[f"media__act_{c}"] = media[:, c]
        channels.append({"driver": f"act_{c}", "feature": f"media__act_{c}", "spend_col": None,
                         "decay": 0.5, "max_lag": 13})
    df["ctrl__ctrl_price"] = price
    controls.append({"name": "ctrl_price", "feature": "ctrl__ctrl_price", "kind": "control"})
    for j, name in enumerate(["sin1", "cos1", "sin2", "cos2"]):
        df[f"season__{name}"] = season[:, j]
        controls.append({"name": f"season_{name}", "feature": f"season__{name}", "kind": "seasonality"})
    df["trend"] = trend
    controls.append({"name": "trend", "feature": "trend", "kind": "trend"})
    return df, {"target": "sales", "channels": channels, "controls": controls}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sampler", default="pymc", choices=["pymc", "nutpie", "numpyro"])
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--periods", default="52,156,520")
    ap.add_argument("--channels", default="3,8,15")
    args = ap.parse_args()
    spec = parse_spec({"data_path": "unused.csv", "drivers": ["act_0"], "draws": args.draws, "tune": args.tune,
                       "chains": 2, "nuts_sampler": args.sampler})
    print(f"sampler {args.sampler}, 2 chains × ({args.tune} tune + {args.draws} draws)")
    print(f"{'weeks':>6} {'channels':>8} {'compile s':>10} {'sampling s':>11} {'min ESS':>8} {'ESS/s':>7}")
    for n_periods in map(int, args.periods.split(",")):
        for n_channels in map(int, args.channels.split(",")):
            features, meta = simulated_features(n_periods, n_channels)
            model, _ = model_pymc.build_model(features, meta)
            idata = model_pymc.fit(model, spec, progress=False)
            attrs = idata["posterior"].attrs
            ess = compute_diagnostics(idata)["metrics"]["min_ess_bulk"]
            samp = attrs["mmm_sampling_time_s"]
            print(f"{n_periods:>6} {n_channels:>8} {attrs['mmm_compile_time_s']:>10.1f} {samp:>11.1f} "
                  f"{ess:>8.0f} {ess / max(samp, 1e-9):>7.0f}", flush=True)


if __name__ == "__main__":
    main()
