"""How long 07_optimize's pieces take on a large panel: 8 channels × 20 entities × 156 weeks.

Usage::

    .venv/bin/python benchmarks/bench_optimize.py [--entities 20] [--channels 8] [--draws 200]

What it measures
    A panel from ``mmm_lib.sample.simulate_panel`` goes through canonicalize → build_features and the
    learned entity-level model; its parameters are drawn from the model's own prior (``for_prior``
    graph; channel effects made positive), standing in for a posterior of the same shape, so no fit is
    needed. Then, in one process, warm (the plan function compiled once first): the horizon and plan
    model, ``recommend`` for the channel split (the default), for every entity × channel amount
    (``per_entity``), and in target mode, and the response curves. The optimizer is evaluated on
    ``--draws`` posterior draws (the spec's ``optimize.draws``, default 200).

Printed
    Seconds per step, the number of objective evaluations, and whether two runs with the same random
    seed gave the same allocation.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from mmm_lib.canonicalize import canonicalize
from mmm_lib.features import build_features
from mmm_lib.model import from_artifacts, posterior_draws
from mmm_lib.optimize.curves import response_curves
from mmm_lib.optimize.horizon import build_horizon
from mmm_lib.optimize.plan import PlanModel
from mmm_lib.optimize.recommend import PlanContext, recommend
from mmm_lib.sample import panel_spec, simulate_panel
from mmm_lib.spec import OptimizeConfig, parse_spec

logging.getLogger("pymc").setLevel(logging.WARNING)


def stand_in_posterior(mmm, n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` draws from the model's prior with positive channel effects: a posterior's shape without a fit."""
    import pymc as pm

    with mmm.build(for_prior=True):
        prior = pm.sample_prior_predictive(draws=n, random_seed=seed, compile_kwargs={"mode": "FAST_COMPILE"})
    draws = posterior_draws(prior["prior"])
    for k in ("beta", "beta_entity"):
        draws[k] = np.abs(draws[k])
    return draws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entities", type=int, default=20)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--draws", type=int, default=200)
    a = ap.parse_args()
    data, truth = simulate_panel(n_entities=a.entities, n_periods=156, n_channels=a.channels, seed=2, zero_effect_channel=None)
    spec = parse_spec({**panel_spec(truth), "model": {"transforms": "learned", "level": "entity"}}, check_path=False)
    can, info = canonicalize(data, spec)
    feats, meta, scaler = build_features(can, info, spec)
    mmm = from_artifacts(feats, meta, scaler, spec.model)
    draws = stand_in_posterior(mmm, a.draws, 1)
    print(f"panel: {a.entities} entities × {a.channels} channels × 156 weeks; {a.draws} draws")

    t = time.perf_counter()
    horizon = build_horizon(mmm, can, info, feats, 13)
    ctx = PlanContext(mmm, horizon, PlanModel(mmm, draws, horizon, a.draws))
    print(f"horizon + plan model           {time.perf_counter() - t:6.2f} s")
    recommend(ctx, OptimizeConfig(starts=1), 0)  # compile once (the compile cache makes this warm for later runs)
    rows = [("channel split (default, 4 starts)", OptimizeConfig()),
            ("per entity × channel", OptimizeConfig(per_entity=True)),
            ("target mode: marginal ROI 1", OptimizeConfig(default_bound="±60%", target={"metric": "marginal_roi", "value": 1.0}))]
    results = {}
    for name, settings in rows:
        t = time.perf_counter()
        results[name] = recommend(ctx, settings, 42)
        print(f"{name:<32} {time.perf_counter() - t:6.2f} s   uplift {results[name]['uplift']['pct']:+.1f}%")
    again = recommend(ctx, rows[0][1], 42)
    print(f"same random seed, same allocation: {again['allocation'] == results[rows[0][0]]['allocation']}")
    t = time.perf_counter()
    curves = response_curves(ctx.model)
    print(f"response curves ({len(curves)} rows)   {time.perf_counter() - t:6.2f} s")


if __name__ == "__main__":
    main()
