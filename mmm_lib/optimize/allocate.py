"""The budget split that maximises the plan's expected incremental sales under the posterior.

Decision variables are channel totals (the entity split kept) or, with ``per_entity``, entity ×
channel amounts (:func:`~mmm_lib.optimize.plan.mapping_matrix`). The objective is the posterior mean of
the plan's incremental sales (or mean − ``risk_aversion`` × sd) from :meth:`PlanModel.compile`, with
its exact gradient; scipy's SLSQP maximises it subject to the budget (sum of spend) and the bounds, from
several starts (the current split, an equal split, random splits drawn with the run's random seed).
At the optimum every channel inside its bounds has the same marginal ROI (the extra sales of one more
unit of spend); a channel whose marginal ROI stays above (below) that at its upper (lower) bound sits
on the bound, and the result says so.

Target mode finds the budget instead: the spend at which the optimal plan's marginal ROI (or average
ROI) falls to the target, by bisection over budgets between the sums of the lower and upper bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from ..spec import OptimizeConfig, parse_bound
from .plan import PlanModel, mapping_matrix

ON_BOUND_TOL = 1e-4  # share of the budget within which a variable counts as sitting on a bound
SAME_SPLIT_TOL = 0.005  # share of the budget within which the recommended split "equals" the current one


class InfeasibleBounds(ValueError):
    """The bounds and the budget (or the target) cannot all hold; the message names the bounds."""


@dataclass
class Problem:
    """Variables, bounds and constraints of one optimization."""

    mapping: np.ndarray  # (E*C, n)
    index: list[tuple[int | None, int]]  # (entity or None, channel) per variable
    current: np.ndarray  # (n,) current spend per variable
    lower: np.ndarray
    upper: np.ndarray
    bound_text: dict[str, str]  # channel -> how its bound was set
    channel_limits: dict[int, tuple[float, float]] = field(default_factory=dict)  # channel -> total [lo, hi] (per entity)

    @property
    def channels(self) -> list[int]:
        return sorted({c for _, c in self.index})


def _money(x: float) -> str:
    return f"{x:,.0f}"


def build_problem(model: PlanModel, settings: OptimizeConfig, per_entity: bool | None = None) -> Problem:
    """Decision variables and bounds for ``model``'s horizon from the spec's ``optimize`` settings."""
    h = model.horizon
    per_entity = settings.per_entity if per_entity is None else per_entity
    per_entity = bool(per_entity and len(h.entities) > 1)
    mapping, index = mapping_matrix(h, per_entity)
    current = np.array([h.current[:, c].sum() if e is None else h.current[e, c] for e, c in index])
    lower, upper = np.zeros(len(index)), np.zeros(len(index))
    text, limits = {}, {}
    for c in sorted({c for _, c in index}):
        ch = h.channels[c]
        given = settings.bounds.get(ch)
        kind, a, b = parse_bound(given if given is not None else settings.default_bound, f"optimize.bounds.{ch}")
        vars_c = [i for i, (_, cc) in enumerate(index) if cc == c]
        total = float(h.current[:, c].sum())
        if kind == "pct":
            for i in vars_c:
                lower[i], upper[i] = current[i] * max(1.0 - a, 0.0), current[i] * (1.0 + b)
            text[ch] = f"±{a * 100:g}% of current: {_money(total * max(1 - a, 0))} to {_money(total * (1 + b))}"
        else:
            text[ch] = f"{_money(a)} to {_money(b)}, given"
            if per_entity:
                for i in vars_c:
                    lower[i], upper[i] = 0.0, b
                limits[c] = (a, b)
            else:
                lower[vars_c[0]], upper[vars_c[0]] = a, b
    return Problem(mapping, index, current, lower, upper, text, limits)


def check_feasible(problem: Problem, budget: float, names: list[str]) -> None:
    """Refuse a budget the bounds cannot hold, naming the bounds that bind."""
    lo, hi = float(problem.lower.sum()), float(problem.upper.sum())
    for c, (a, b) in problem.channel_limits.items():
        vars_c = [i for i, (_, cc) in enumerate(problem.index) if cc == c]
        lo += a - problem.lower[vars_c].sum()
        hi += min(b, problem.upper[vars_c].sum()) - problem.upper[vars_c].sum()
    if lo - 1e-9 * max(budget, 1) <= budget <= hi + 1e-9 * max(budget, 1):
        return
    listed = "; ".join(f"{names[c]}: {problem.bound_text[names[c]]}" for c in problem.channels)
    side = "lower bounds add up to" if budget < lo else "upper bounds add up to"
    need = lo if budget < lo else hi
    raise InfeasibleBounds(
        f"infeasible bounds: the budget is {_money(budget)} but the channels' {side} {_money(need)} ({listed}). "
        f"{'Lower' if budget < lo else 'Raise'} those bounds (optimize.bounds / optimize.default_bound, or mmm optimize "
        f"--bounds) or set a budget between {_money(lo)} and {_money(hi)}"
    )


def _project(x: np.ndarray, lower: np.ndarray, upper: np.ndarray, budget: float) -> np.ndarray:
    """The point ``clip(x + t, lower, upper)`` whose sum is ``budget`` (bisection on ``t``)."""
    lo_t, hi_t = -float(x.max() - lower.min()) - budget, float(upper.max() - x.min()) + budget
    for _ in range(200):
        t = 0.5 * (lo_t + hi_t)
        if np.clip(x + t, lower, upper).sum() > budget:
            hi_t = t
        else:
            lo_t = t
    return np.clip(x + 0.5 * (lo_t + hi_t), lower, upper)


def _starts(problem: Problem, budget: float, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    cur = problem.current
    k = len(cur)
    base = cur * (budget / cur.sum()) if cur.sum() > 0 else np.full(k, budget / k)
    out = [("current split", base), ("equal split", np.full(k, budget / k))]
    rng = np.random.default_rng(seed)
    while len(out) < n:
        out.append((f"random split {len(out) - 1}", rng.dirichlet(np.ones(k)) * budget))
    return [(name, _project(x, problem.lower, problem.upper, budget)) for name, x in out[:n]]


@dataclass
class Solution:
    spend: np.ndarray  # (n,) optimal spend per variable
    objective: float
    gradient: np.ndarray  # (n,) marginal ROI per variable at the optimum
    draws: np.ndarray  # (S,) incremental sales of the optimal plan
    converged: bool
    iterations: int
    best_start: str
    starts: list[dict[str, Any]]


def solve(f: Any, problem: Problem, budget: float, starts: int = 4, seed: int = 0, x0: np.ndarray | None = None) -> Solution:
    """Maximise ``f`` (:meth:`PlanModel.compile`) over ``problem`` with the total fixed at ``budget``."""
    scale_x = budget
    v0, _, _ = f(problem.current if problem.current.sum() > 0 else np.full(len(problem.current), budget / len(problem.current)))
    scale_f = max(abs(v0), 1e-9)

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        v, g, _ = f(u * scale_x)
        return -v / scale_f, -g * scale_x / scale_f

    cons: list[dict[str, Any]] = [{"type": "eq", "fun": lambda u: u.sum() - 1.0, "jac": lambda u: np.ones_like(u)}]
    for c, (a, b) in problem.channel_limits.items():
        sel = np.array([cc == c for _, cc in problem.index], dtype=float)
        cons.append({"type": "ineq", "fun": lambda u, s=sel, a=a: s @ u - a / scale_x, "jac": lambda u, s=sel: s})
        cons.append({"type": "ineq", "fun": lambda u, s=sel, b=b: b / scale_x - s @ u, "jac": lambda u, s=sel: -s})
    bounds = list(zip(problem.lower / scale_x, problem.upper / scale_x))
    if x0 is not None:  # a warm start (target mode's bisection) counts as one of the starts
        candidates = [("previous solution", _project(x0, problem.lower, problem.upper, budget))]
        candidates += _starts(problem, budget, starts - 1, seed) if starts > 1 else []
    else:
        candidates = _starts(problem, budget, starts, seed)
    if np.all(problem.upper - problem.lower <= ON_BOUND_TOL * budget):  # nothing to choose: the bounds fix every amount
        x = np.clip(problem.current, problem.lower, problem.upper)
        v, g, draws = f(x)
        return Solution(x, v, g, draws, True, 0, "bounds fix every amount", [])
    best, runs = None, []
    for name, x in candidates:
        res = minimize(fun, x / scale_x, jac=True, method="SLSQP", bounds=bounds, constraints=cons,
                       options={"maxiter": 300, "ftol": 1e-9})  # fmt: skip
        u = np.clip(res.x, problem.lower / scale_x, problem.upper / scale_x)
        value = -fun(u)[0] * scale_f
        ok = _feasible(u * scale_x, problem, budget)
        runs.append({"start": name, "objective": float(value), "converged": bool(res.success), "feasible": ok,
                     "iterations": int(res.get("nit", 0))})  # fmt: skip
        # a start that ended off the budget or outside a channel limit never wins over one that holds them
        if best is None or (ok, value) > (best[4], best[0] + 1e-12 * abs(value)):
            best = (value, u, res, name, ok)
    value, u, res, name, ok = best  # type: ignore[misc]
    if not ok:  # no start ended feasible: the closest point of the current split's projection is the answer
        u = _project(problem.current, problem.lower, problem.upper, budget) / scale_x
    v, g, draws = f(u * scale_x)
    return Solution(u * scale_x, v, g, draws, bool(res.success), int(res.get("nit", 0)), name, runs)


def _feasible(x: np.ndarray, problem: Problem, budget: float, tol: float = 1e-6) -> bool:
    """``x`` spends the budget (to ``tol`` of it), within every bound and channel limit."""
    t = tol * max(budget, 1e-12)
    if abs(float(x.sum()) - budget) > t or np.any(x < problem.lower - t) or np.any(x > problem.upper + t):
        return False
    for c, (a, b) in problem.channel_limits.items():
        s = sum(x[i] for i, (_, cc) in enumerate(problem.index) if cc == c)
        if s < a - t or s > b + t:
            return False
    return True


def common_marginal(sol: Solution, problem: Problem, budget: float) -> float | None:
    """The marginal ROI the variables inside their bounds share at the optimum (None when all sit on bounds)."""
    free = [i for i in range(len(sol.spend)) if not _on_bound(sol.spend[i], problem, i, budget)]
    return float(np.average(sol.gradient[free], weights=np.maximum(sol.spend[free], 1e-9))) if free else None


def _on_bound(x: float, problem: Problem, i: int, budget: float) -> str | None:
    tol = ON_BOUND_TOL * budget
    if x <= problem.lower[i] + tol and problem.upper[i] - problem.lower[i] > tol:
        return "lower"
    if x >= problem.upper[i] - tol and problem.upper[i] - problem.lower[i] > tol:
        return "upper"
    if problem.upper[i] - problem.lower[i] <= tol:
        return "fixed"
    return None


def on_bound(sol: Solution, problem: Problem, budget: float) -> list[str | None]:
    """Per variable: ``"lower"``, ``"upper"``, ``"fixed"`` (bounds equal) or None."""
    return [_on_bound(sol.spend[i], problem, i, budget) for i in range(len(sol.spend))]


def find_budget(model_f: Any, problem: Problem, metric: str, value: float, seed: int = 0,
                iterations: int = 10) -> tuple[float, Solution, str]:
    """Target mode: the budget where the optimal plan's ``metric`` (``marginal_roi`` or ``roi``) falls to ``value``.

    Returns the budget, its solution and a sentence on what was found (or which end of the bounds binds).
    """
    lo_b, hi_b = float(problem.lower.sum()), float(problem.upper.sum())
    if hi_b <= 0:
        raise InfeasibleBounds("target mode needs room to spend: every channel's upper bound is 0; give upper bounds in money")
    lo_b = max(lo_b, 1e-6 * hi_b)

    def metric_at(b: float, x0: np.ndarray | None) -> tuple[float, Solution]:
        sol = solve(model_f, problem, b, starts=1 if x0 is not None else 2, seed=seed, x0=x0)
        if metric == "roi":
            return sol.objective / b, sol
        m = common_marginal(sol, problem, b)
        if m is None:  # every variable on a bound: the value function's slope, by a small step
            step = 1e-3 * b
            up = solve(model_f, problem, min(b + step, hi_b), starts=1, seed=seed, x0=sol.spend)
            dn = solve(model_f, problem, max(b - step, lo_b), starts=1, seed=seed, x0=sol.spend)
            m = (up.objective - dn.objective) / max(min(b + step, hi_b) - max(b - step, lo_b), 1e-12)
        return m, sol

    m_lo, s_lo = metric_at(lo_b, None)
    label = "marginal ROI" if metric == "marginal_roi" else "ROI"
    if m_lo < value:
        return lo_b, s_lo, (f"even the least spend the bounds allow ({_money(lo_b)}) has a {label} of {m_lo:.2f}, below "
                            f"the target {value:g}: the plan is that least spend")  # fmt: skip
    m_hi, s_hi = metric_at(hi_b, s_lo.spend)
    if m_hi >= value:
        return hi_b, s_hi, (f"the upper bounds cap spend at {_money(hi_b)}, where the {label} is still {m_hi:.2f} "
                            f"(above the target {value:g}): raise the upper bounds to spend more")  # fmt: skip
    a, b, sol = lo_b, hi_b, s_lo
    for _ in range(iterations):
        mid = 0.5 * (a + b)
        m, sol_mid = metric_at(mid, sol.spend)
        if m >= value:
            a, sol = mid, sol_mid
        else:
            b = mid
    return a, sol, f"at {_money(a)} the optimal plan's {label} falls to the target {value:g}"


__all__ = ["InfeasibleBounds", "Problem", "Solution", "build_problem", "check_feasible", "common_marginal",
           "find_budget", "on_bound", "solve"]  # fmt: skip
