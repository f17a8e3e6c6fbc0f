"""The budget recommendation: current vs optimal split with the uplift and its interval (``optimization.json``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..model import MMM, posterior_draws
from ..spec import OptimizeConfig
from .allocate import (SAME_SPLIT_TOL, InfeasibleBounds, Problem, Solution, build_problem, check_feasible,
                       common_marginal, find_budget, on_bound, solve)  # fmt: skip
from .horizon import Horizon, build_horizon
from .plan import PlanModel, other_draws

INTERVAL = 0.9
DEFINITION = (
    "A plan's incremental sales: expected sales with the plan's spend minus expected sales with no planned spend, "
    "per posterior draw, summed over the {horizon} planned periods and the {tail} periods after them (the carryover "
    "the plan leaves; the carryover of past spend is in both). Spend becomes activity at each channel's cost per "
    "unit in the estimation window, laid out over the horizon like the last {horizon} periods. Marginal ROI: the "
    "extra incremental sales of one more unit of spend (the gradient of the posterior-mean objective)."
)


@dataclass
class PlanContext:
    """A fitted run's model over its planning horizon."""

    mmm: MMM
    horizon: Horizon
    model: PlanModel  # the draws the optimizer sees
    check: PlanModel | None = None  # other draws, on which the chosen plan is reported (None: the posterior has no more)


def plan_context(canonical_df: pd.DataFrame, column_info: dict[str, Any], features_df: pd.DataFrame,
                 feature_metadata: dict[str, Any], feature_scaler: dict[str, Any], model_metadata: dict[str, Any],
                 idata: Any, settings: OptimizeConfig) -> PlanContext:
    """The run's model (:func:`~mmm_lib.contributions.model_for`), the horizon and the plan evaluator."""
    from ..contributions import _align, model_for

    can, feat = _align(canonical_df, features_df)
    mmm = model_for(feat, feature_metadata, feature_scaler, model_metadata)
    horizon = build_horizon(mmm, can, column_info, feat, settings.horizon_periods)
    draws = posterior_draws(idata)
    rest = other_draws(draws, settings.draws)
    check = None if rest is None else PlanModel(mmm, rest, horizon, thinned=True)
    return PlanContext(mmm, horizon, PlanModel(mmm, draws, horizon, settings.draws), check)


def _interval(x: np.ndarray) -> tuple[float, float, float]:
    lo, hi = np.quantile(x, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    return float(x.mean()), float(lo), float(hi)


def plan_summary(draws: np.ndarray, spend: float) -> dict[str, Any]:
    """Mean and 90% interval of a plan's incremental sales, and its ROI."""
    mean, lo, hi = _interval(draws)
    return {"spend": float(spend), "incremental": mean, "incremental_low": lo, "incremental_high": hi,
            "roi": mean / spend if spend > 0 else None, "roi_low": lo / spend if spend > 0 else None,
            "roi_high": hi / spend if spend > 0 else None}  # fmt: skip


def _spend_matrix(problem: Problem, x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return (problem.mapping @ x).reshape(shape)


def _why(channel: str, where: str | None, grad: float, common: float | None, bound: str) -> str | None:
    if where is None:
        return None
    if where == "fixed":
        return f"{channel} is fixed by its bounds ({bound})"
    ref = f"the {common:.2f} of the channels inside their bounds" if common is not None else "what the budget allows elsewhere"
    if where == "upper":
        return (f"{channel} sits at its upper bound ({bound}): one more unit there still returns {grad:.2f}, more than "
                f"{ref}; widen its bound to move more budget to it")  # fmt: skip
    return (f"{channel} sits at its lower bound ({bound}): one more unit there returns only {grad:.2f}, less than "
            f"{ref}; lower its bound to cut it further")  # fmt: skip


def _solve(pm: PlanModel, f: Any, problem: Problem, settings: OptimizeConfig, budget: float, seed: int, risk: float) -> Solution:
    """SLSQP from several starts; per entity, first the channel totals (a few variables, fast), then every
    entity × channel amount from that answer spread as the current plan spreads each channel (SLSQP's
    cost grows fast with the number of variables: the warm start saves most of its iterations)."""
    channel_level = build_problem(pm, settings, per_entity=False)
    if len(channel_level.index) == len(problem.index):
        return solve(f, problem, budget, starts=settings.starts, seed=seed)
    first = solve(pm.compile(channel_level.mapping, risk), channel_level, budget, starts=settings.starts, seed=seed)
    spread = (channel_level.mapping @ first.spend).reshape(pm.horizon.current.shape)
    x0 = np.array([spread[e, c] for e, c in problem.index])
    return solve(f, problem, budget, starts=min(settings.starts, 2), seed=seed, x0=x0)


def recommend(ctx: PlanContext, settings: OptimizeConfig, random_seed: int = 0, budget: float | None = None) -> dict[str, Any]:
    """Optimize the split (or, with ``settings.target``, the budget) and describe the result for ``optimization.json``.

    Raises
    ------
    InfeasibleBounds
        The bounds cannot hold the budget; the message names the bounds and the budgets that work.
    """
    h, pm = ctx.horizon, ctx.model
    names = h.channels
    problem = build_problem(pm, settings)
    current_total = float(h.current.sum())
    risk = settings.risk_aversion if settings.objective == "risk_adjusted" else 0.0
    f = pm.compile(problem.mapping, risk)
    messages: list[str] = []
    if settings.target is not None:
        budget_used, sol, sentence = find_budget(f, problem, settings.target.metric, settings.target.value, seed=random_seed)
        messages.append(sentence)
        source = f"target {settings.target.metric} {settings.target.value:g}"
    else:
        budget_used = float(budget if budget is not None else settings.budget if settings.budget is not None else current_total)
        source = "given" if (budget is not None or settings.budget is not None) else f"the last {h.n_periods} periods' spend"
        if budget_used <= 0:
            raise InfeasibleBounds(f"the budget is {budget_used:g}: the last {h.n_periods} periods spent nothing on the plannable "
                                   f"channels {h.plannable}; give a budget (optimize.budget or mmm optimize --budget)")  # fmt: skip
        check_feasible(problem, budget_used, names)
        sol = _solve(pm, f, problem, settings, budget_used, random_seed, risk)
    shape = h.current.shape
    rec = _spend_matrix(problem, sol.spend, shape)
    # Reported on draws the optimizer did not see: a plan chosen to do well on some draws looks a little
    # better on those same draws than it is (the optimizer's curse).
    ev = ctx.check or pm
    cur_draws = ev.incremental(h.current)
    _, cur_grad, _ = f(problem.current)
    rec_draws = ev.incremental(rec)
    uplift = rec_draws - cur_draws
    where = on_bound(sol, problem, budget_used)
    common = common_marginal(sol, problem, budget_used)
    channels = []
    for c in sorted({c for _, c in problem.index}):
        ch = names[c]
        vars_c = [i for i, (_, cc) in enumerate(problem.index) if cc == c]
        w_cur, w_rec = np.maximum(problem.current[vars_c], 1e-12), np.maximum(sol.spend[vars_c], 1e-12)
        states = {where[i] for i in vars_c}
        state = next(iter(states)) if len(states) == 1 else ("mixed" if states - {None} else None)
        g_rec = float(np.average(sol.gradient[vars_c], weights=w_rec))
        cur, new = float(h.current[:, c].sum()), float(rec[:, c].sum())
        row = {"channel": ch, "current_spend": cur, "recommended_spend": new, "change": new - cur,
               "change_pct": (new - cur) / cur * 100 if cur > 0 else None,
               "cost_per_unit": float(np.nanmean(h.cost_per_unit[:, c])),
               "bound": problem.bound_text[ch], "at_bound": state,
               "marginal_roi_current": float(np.average(cur_grad[vars_c], weights=w_cur)),
               "marginal_roi_recommended": g_rec,
               "incremental_current": float(ev.incremental(h.current * (np.arange(shape[1]) == c)).mean()),
               "incremental_recommended": float(ev.incremental(rec * (np.arange(shape[1]) == c)).mean())}  # fmt: skip
        why = _why(ch, state if state in ("upper", "lower", "fixed") else None, g_rec, common, problem.bound_text[ch])
        if why:
            messages.append(why)
        channels.append(row)
    same_budget = abs(budget_used - current_total) <= SAME_SPLIT_TOL * max(current_total, 1e-9)
    same_split = same_budget and float(np.abs(rec - h.current).sum()) <= SAME_SPLIT_TOL * max(budget_used, 1e-9)
    if same_split:
        messages.insert(0, "the recommended split equals the current split: "
                        + ("every channel sits on a bound that the current split already meets" if common is None else
                           f"at the current split the channels inside their bounds already return about the same on the "
                           f"margin ({common:.2f} per unit), so moving money between them adds nothing"))  # fmt: skip
    return {
        "horizon": {"periods": h.n_periods, "start": h.periods[0].date().isoformat(), "end": h.periods[-1].date().isoformat(),
                    "carryover_periods_after": len(h.tail_periods), "grain": ctx.mmm.feature_metadata.get("grain", "WEEK")},
        "mode": "target" if settings.target is not None else "budget",
        "objective": settings.objective, "risk_aversion": risk,
        "target": None if settings.target is None else settings.target.model_dump(),
        "budget": budget_used, "budget_source": source, "current_budget": current_total,
        "per_entity": bool(settings.per_entity and len(h.entities) > 1),
        "interval": INTERVAL, "draws": pm.n_draws, "random_seed": int(random_seed),
        "reported_on": ("other posterior draws than the optimizer used" if ctx.check is not None
                        else "the draws the optimizer used (the posterior has no others)"),
        "reported_draws": ev.n_draws,
        "channels": channels,
        "current": plan_summary(cur_draws, current_total),
        "recommended": plan_summary(rec_draws, float(rec.sum())),
        "uplift": {**dict(zip(("incremental", "incremental_low", "incremental_high"), _interval(uplift))),
                   "pct": float(uplift.mean() / cur_draws.mean() * 100) if cur_draws.mean() > 0 else None,
                   "probability_positive": float((uplift > 0).mean())},
        "marginal_roi_common": common,
        "equals_current": bool(same_split),
        "messages": messages,
        "notes": list(h.notes),
        "optimizer": {"method": "SLSQP", "gradient": "exact (PyTensor)", "converged": sol.converged,
                      "iterations": sol.iterations, "best_start": sol.best_start, "starts": sol.starts},
        "entities": list(h.entities), "plannable_channels": list(h.plannable), "all_channels": list(names),
        "allocation": rec.tolist(), "current_allocation": h.current.tolist(),
        "definition": DEFINITION.format(horizon=h.n_periods, tail=len(h.tail_periods)),
        "sales": str(ctx.mmm.feature_metadata.get("target") or "sales"),
    }  # fmt: skip


__all__ = ["DEFINITION", "PlanContext", "plan_context", "plan_summary", "recommend"]
