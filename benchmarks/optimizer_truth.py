"""The budget optimizer against the truth: does the suite's recommended split earn what the true optimal split earns?

Usage::

    .venv/bin/python benchmarks/optimizer_truth.py [--datasets 6] [--draws 500] [--tune 500] [--channels 4]
        [--periods 156] [--bound ±60%] [--horizon 13] [--per-entity] [--seed0 0] [--out results.json]

What it measures (issue 12)
    Data set ``i`` is ``mmm_lib.sample.simulate_panel(seed=seed0 + i, ...)`` with 5–8 entities and the
    (form, saturation) of :data:`SCENARIOS` in turn, one zero-effect channel (it still spends) and true ROI
    drawn per channel, so channels differ in what a unit of spend earns. Each is fitted with
    ``model: {transforms: learned, level: entity}`` from a new user's spec (``panel_spec(df)``: spec default
    decay and saturation, not the truth), then ``mmm_lib.optimize.recommend`` splits a budget equal to the
    current plan (the last ``horizon`` periods' spend) within ``default_bound`` of each channel's current
    spend (``--per-entity``: each entity's split of each channel too). Under the TRUE process
    (:func:`mmm_lib.sample.true_plan_incremental`: the generator's equations, with the plan laid out over
    the horizon exactly as the suite lays it out) it compares

    * the true optimum: :func:`mmm_lib.sample.true_optimal_plan`, the same variables, bounds and budget
      maximised on the truth;
    * the suite's plan, and the current split, as shares of that optimum.

Printed
    Per data set: scenario, entities, max R-hat, fit seconds, the true optimum's incremental sales, the
    suite's plan under the truth (and its share of the optimum), the current split under the truth (share),
    and the optimizer's seconds (``recommend``: compile, solve from every start, summaries); then the spend
    per channel (current / suite / true optimum). Last, min and median shares over data sets.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import traceback
from typing import Any

import numpy as np

from mmm_lib.optimize import plan_context, recommend
from mmm_lib.optimize.allocate import build_problem
from mmm_lib.pipeline import run_in_process
from mmm_lib.sample import panel_spec, simulate_panel, true_optimal_plan, true_plan_incremental
from mmm_lib.spec import OptimizeConfig, parse_spec

SCENARIOS = [("multiplicative", "hill"), ("additive", "logistic"), ("multiplicative", "michaelis_menten"),
             ("additive", "hill"), ("multiplicative", "logistic"), ("additive", "michaelis_menten")]  # fmt: skip
SHARE_OF_OPTIMUM = 0.95  # issue 12's bar for the suite's plan under the truth
logging.getLogger("pymc").setLevel(logging.WARNING)


def compare(i: int, args: argparse.Namespace) -> dict[str, Any]:
    """Simulate data set ``i``, fit it, recommend a split and score the suite's and the current split under the truth."""
    seed = args.seed0 + i
    form, sat = SCENARIOS[i % len(SCENARIOS)]
    n_entities = 5 + i % 4
    df, truth = simulate_panel(n_entities=n_entities, n_periods=args.periods, n_channels=args.channels, seed=seed,
                               form=form, saturation=sat)  # fmt: skip
    raw = panel_spec(df, model={"transforms": "learned", "level": "entity"}, draws=args.draws, tune=args.tune)
    t0 = time.perf_counter()
    out = run_in_process(df, parse_spec(raw, check_path=False))
    fit_s = time.perf_counter() - t0
    settings = OptimizeConfig(horizon_periods=args.horizon, default_bound=args.bound, per_entity=args.per_entity)
    t0 = time.perf_counter()
    ctx = plan_context(out.canonical, out.column_info, out.features, out.feature_metadata, out.feature_scaler,
                       out.fit["metadata"], out.fit["idata"], settings)  # fmt: skip
    rec = recommend(ctx, settings, random_seed=seed)
    opt_s = time.perf_counter() - t0
    h = ctx.horizon
    budget = float(rec["budget"])
    problem = build_problem(ctx.model, settings)
    t0 = time.perf_counter()
    x_true, optimum = true_optimal_plan(truth, df, h, problem, budget, random_seed=seed)
    truth_s = time.perf_counter() - t0
    suite_spend = np.array(rec["allocation"])
    true_spend = (problem.mapping @ x_true).reshape(h.current.shape)
    suite = true_plan_incremental(truth, df, h, suite_spend)
    current = true_plan_incremental(truth, df, h, h.current)
    return {
        "dataset": i, "seed": seed, "scenario": f"{form}/{sat}", "entities": n_entities,
        "rhat_max": float(max(p["r_hat"] for p in out.fit["summary"]["parameters"])), "fit_s": fit_s,
        "budget": budget, "true_optimum": optimum, "suite": suite, "current": current,
        "suite_share": suite / optimum, "current_share": current / optimum,
        "model_uplift_pct": rec["uplift"]["pct"], "optimizer_s": opt_s, "truth_optimizer_s": truth_s,
        "channels": h.channels, "true_roi": [truth["roi"][c] for c in h.channels],
        "spend_current": h.current.sum(axis=0).tolist(), "spend_suite": suite_spend.sum(axis=0).tolist(),
        "spend_true": true_spend.sum(axis=0).tolist(),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=6)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--tune", type=int, default=500)
    ap.add_argument("--channels", type=int, default=4)
    ap.add_argument("--periods", type=int, default=156)
    ap.add_argument("--bound", default="±60%", help="optimize.default_bound for every channel")
    ap.add_argument("--horizon", type=int, default=13, help="optimize.horizon_periods")
    ap.add_argument("--per-entity", action="store_true", help="optimize.per_entity: entity × channel amounts")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--out", help="write every row to this JSON file")
    args = ap.parse_args()

    head = (f"{'set':>3} {'seed':>4} {'scenario':<32}{'E':>2}{'Rhat':>7}{'fit s':>7}{'true optimum':>14}"
            f"{'suite plan':>13}{'share':>7}{'current':>13}{'share':>7}{'opt s':>7}")  # fmt: skip
    print(head)
    print("-" * len(head), flush=True)
    rows: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for i in range(args.datasets):
        try:
            r = compare(i, args)
        except Exception as e:  # keep going: a failing data set is reported, not fatal to the study
            print(f"{i:>3} {args.seed0 + i:>4} FAILED: {type(e).__name__}: {e}\n{traceback.format_exc()}", flush=True)
            rows.append({"dataset": i, "seed": args.seed0 + i, "error": f"{type(e).__name__}: {e}"})
            continue
        rows.append(r)
        print(f"{i:>3} {r['seed']:>4} {r['scenario']:<32}{r['entities']:>2}{r['rhat_max']:>7.3f}{r['fit_s']:>7.0f}"
              f"{r['true_optimum']:>14,.0f}{r['suite']:>13,.0f}{r['suite_share']:>7.3f}{r['current']:>13,.0f}"
              f"{r['current_share']:>7.3f}{r['optimizer_s']:>7.1f}", flush=True)  # fmt: skip
        spend = "; ".join(f"{c} (ROI {roi:.2f}) {a:,.0f} / {b:,.0f} / {t:,.0f}" for c, roi, a, b, t in
                          zip(r["channels"], r["true_roi"], r["spend_current"], r["spend_suite"], r["spend_true"]))  # fmt: skip
        print(f"      spend current / suite / true optimum: {spend}", flush=True)

    ok = [r for r in rows if "error" not in r]
    print(f"\n{args.datasets} data sets, draws {args.draws} tune {args.tune}, {args.channels} channels, "
          f"{args.periods} weeks, horizon {args.horizon}, bounds {args.bound}{', per entity' if args.per_entity else ''}; "
          f"total {time.perf_counter() - t_start:.0f} s")  # fmt: skip
    if ok:
        s, c = [r["suite_share"] for r in ok], [r["current_share"] for r in ok]
        print(f"suite's plan / true optimum: min {min(s):.3f}, median {np.median(s):.3f} "
              f"({sum(x >= SHARE_OF_OPTIMUM for x in s)}/{len(s)} at >= {SHARE_OF_OPTIMUM}); "
              f"current split / true optimum: min {min(c):.3f}, median {np.median(c):.3f}; "
              f"median optimizer {np.median([r['optimizer_s'] for r in ok]):.1f} s; failed {len(rows) - len(ok)}")  # fmt: skip
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "rows": rows}, fh, indent=1)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
