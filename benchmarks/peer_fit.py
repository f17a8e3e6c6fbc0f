"""The peer's bare fit for ``benchmarks/bench_vs_peer.py``: PyMC-Marketing's MMM on the simulated panel.

Runs under the PEER venv's Python (``.venv-peer``, ``benchmarks/peer-requirements.txt``), never under the
project's: PyMC-Marketing is not a dependency of this project (it pins ``pymc<6.4``). It imports only
PyMC-Marketing's stack, no ``mmm_lib``. Usage (bench_vs_peer.py builds this command)::

    .venv-peer/bin/python benchmarks/peer_fit.py --csv panel.csv --channels act_tv,act_search \\
        --controls ctrl_price_index --start 2022-07-04 --end 2024-12-30 --l-max 13 --saturation hill \\
        --yearly 2 --draws 1000 --tune 1000 --chains 2 --target-accept 0.9 --seed 42 [--brand]

What it fits: ``pymc_marketing.mmm.MMM`` (the multidimensional MMM of 1.x; ``pymc_marketing.mmm.multidimensional``
is now a deprecated alias of it) with ``dims=("geo",)``: one series per entity, the rows of the estimation
window [start, end], ``GeometricAdstock(l_max)`` and the saturation family named (Hill, logistic or
Michaelis-Menten), all parameters LEARNED with PyMC-Marketing's default priors (per geo and channel),
the controls (each divided by its maximum absolute value, as PyMC-Marketing's documentation asks for
controls far from 0-1 such as a price), ``yearly_seasonality`` Fourier modes, max-abs scaling of target
and channels, identity link and Normal likelihood (its defaults), and its default sampler (``pm.sample``,
PyMC's NUTS) with the given draws/tune/chains/target_accept/seed, chains in parallel on
``min(chains, usable CPUs)`` cores as the suite runs them (PyMC's own default of ``cpu_count() // 2`` cores
would run two chains one after the other on a 2-core machine and slow the peer down for no model reason). With ``--brand`` (fallback) it sums the
entities to one series (controls averaged) and fits the same model without ``dims``.

Prints one JSON line (last line of stdout): ``wall_s`` (this process from interpreter start, so imports
count: the "bare fit"), ``import_s``, ``build_s``, ``fit_s`` (``MMM.fit``: compile + sampling),
``sampling_s`` (PyMC's own ``sampling_time`` attribute, when present), the model shape and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

T_START = time.perf_counter()


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux ``/proc``), so interpreter start-up counts too."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--csv", required=True)
    ap.add_argument("--channels", required=True, help="comma-separated activity columns")
    ap.add_argument("--controls", default="", help="comma-separated control columns")
    ap.add_argument("--target", default="sales")
    ap.add_argument("--entity", default="entity_id")
    ap.add_argument("--date", default="period_start")
    ap.add_argument("--start", required=True, help="first period of the estimation window (YYYY-MM-DD)")
    ap.add_argument("--end", required=True, help="last period of the estimation window (YYYY-MM-DD)")
    ap.add_argument("--l-max", type=int, required=True)
    ap.add_argument("--saturation", choices=["hill", "logistic", "michaelis_menten"], default="hill")
    ap.add_argument("--yearly", type=int, default=2, help="yearly Fourier modes (0 = none)")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--target-accept", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--cores", type=int, default=None,
                    help="parallel chains (default: min(chains, usable CPUs), as the suite does; PyMC's own "
                         "default, cpu_count()//2, would run 2 chains one after the other on a 2-core machine)")
    ap.add_argument("--brand", action="store_true", help="fallback: one brand series instead of the geo panel")
    args = ap.parse_args()

    t0 = time.perf_counter()
    warnings.filterwarnings("ignore", category=FutureWarning)
    import pandas as pd
    import pymc
    import pymc_marketing
    from pymc_marketing.mmm import (
        MMM,
        GeometricAdstock,
        HillSaturation,
        LogisticSaturation,
        MichaelisMentenSaturation,
    )

    t_import = time.perf_counter() - t0

    t1 = time.perf_counter()
    channels = [c for c in args.channels.split(",") if c]
    controls = [c for c in args.controls.split(",") if c]
    df = pd.read_csv(args.csv, parse_dates=[args.date])
    df = df[(df[args.date] >= pd.Timestamp(args.start)) & (df[args.date] <= pd.Timestamp(args.end))]
    if args.brand:
        agg = {args.target: "sum", **{c: "sum" for c in channels}, **{c: "mean" for c in controls}}
        df = df.groupby(args.date, as_index=False).agg(agg)
        dims: tuple[str, ...] = ()
        cols = [args.date, *channels, *controls, args.target]
        X = df[cols].rename(columns={args.date: "date"})
    else:
        dims = ("geo",)
        cols = [args.date, args.entity, *channels, *controls, args.target]
        X = df[cols].rename(columns={args.date: "date", args.entity: "geo"})
    X = X.sort_values(["date", *dims]).reset_index(drop=True)
    for c in controls:  # PyMC-Marketing does not scale controls; its docs ask for max-abs scaling of e.g. a price
        m = X[c].abs().max()
        if m > 0:
            X[c] = X[c] / m
    saturation = {"hill": HillSaturation, "logistic": LogisticSaturation,
                  "michaelis_menten": MichaelisMentenSaturation}[args.saturation]()  # fmt: skip
    mmm = MMM(
        date_column="date",
        channel_columns=channels,
        target_column=args.target,
        adstock=GeometricAdstock(l_max=args.l_max),
        saturation=saturation,
        dims=dims or None,
        control_columns=controls or None,
        yearly_seasonality=args.yearly if args.yearly > 0 else None,
    )
    mmm.build_model(X.drop(columns=[args.target]), X[args.target])
    n_free = int(sum(v.size for v in mmm.model.initial_point().values()))
    t_build = time.perf_counter() - t1

    cores = args.cores or max(1, min(args.chains, len(os.sched_getaffinity(0))))
    t2 = time.perf_counter()
    idata = mmm.fit(
        X.drop(columns=[args.target]),
        X[args.target],
        progressbar=False,
        random_seed=args.seed,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        cores=cores,
        target_accept=args.target_accept,
    )
    t_fit = time.perf_counter() - t2
    post = idata["posterior"]
    sampling = post.attrs.get("sampling_time")
    diverging = None
    if "sample_stats" in idata.children and "diverging" in idata["sample_stats"]:
        diverging = int(idata["sample_stats"]["diverging"].values.sum())
    age = _process_age_s()
    print(json.dumps({
        "wall_s": age if age is not None else time.perf_counter() - T_START,
        "wall_from": "process start" if age is not None else "script start",
        "import_s": t_import,
        "build_s": t_build,
        "fit_s": t_fit,
        "sampling_s": float(sampling) if sampling is not None else None,
        "level": "brand (fallback)" if args.brand else "geo panel",
        "model": f"pymc_marketing.mmm.MMM(dims={dims}), GeometricAdstock(l_max={args.l_max}), "
                 f"{type(saturation).__name__}, controls={controls}, yearly_seasonality={args.yearly or None}",
        "n_rows": int(len(X)),
        "n_geos": int(X["geo"].nunique()) if dims else 1,
        "n_dates": int(X["date"].nunique()),
        "n_free_parameters": n_free,
        "draws": args.draws, "tune": args.tune, "chains": args.chains, "cores": cores,
        "target_accept": args.target_accept, "seed": args.seed,
        "divergences": diverging,
        "sampler": "pm.sample (PyMC NUTS, PyMC-Marketing's default)",
        "versions": {"pymc_marketing": pymc_marketing.__version__, "pymc": pymc.__version__,
                     "python": sys.version.split()[0]},
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
