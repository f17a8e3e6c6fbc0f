"""A spend plan's incremental sales under the fitted model, per posterior draw, and its gradient.

:class:`PlanModel` evaluates :meth:`mmm_lib.model.MMM.window_sales` (the model's one transform and
linear predictor) over a :class:`~mmm_lib.optimize.horizon.Horizon`: a plan's incremental sales are
the expected sales with the plan minus those with no planned spend (history's carryover and channels
without spend in both), summed over the horizon and the carryover tail. The optimizer's objective and
its exact gradient come from the same expression written with ``pytensor.tensor`` and differentiated
by PyTensor; every array is an input of the compiled function, so it is compiled once per model structure
(numba, cached with the model's compile cache).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..model import MMM
from .horizon import Horizon


COMPILE_MODE = "FAST_RUN"  # numba: 4-5x faster per evaluation than FAST_COMPILE, ~1 s to compile (benchmarks/bench_optimize.py)


def thin_draws(draws: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """``n`` posterior draws evenly spaced over the chains' draws (all of them when there are fewer)."""
    return {k: np.asarray(v, dtype=float)[_thinned(draws, n)] for k, v in draws.items()}


def _thinned(draws: dict[str, np.ndarray], n: int) -> np.ndarray:
    s = next(iter(draws.values())).shape[0]
    return np.unique(np.linspace(0, s - 1, min(int(n), s)).astype(int))


def other_draws(draws: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray] | None:
    """Up to ``n`` draws evenly spaced among those :func:`thin_draws` did not pick (None when it picked all)."""
    s = next(iter(draws.values())).shape[0]
    rest = np.setdiff1d(np.arange(s), _thinned(draws, n))
    if not len(rest):
        return None
    pick = rest[np.unique(np.linspace(0, len(rest) - 1, min(int(n), len(rest))).astype(int))]
    return {k: np.asarray(v, dtype=float)[pick] for k, v in draws.items()}


class PlanModel:
    """The fitted model over a horizon.

    Adstock is linear in activity, so a plan's adstocked activity is the no-plan window's plus each
    entity-channel's spend times the adstock of one unit of its spend laid out over the horizon
    (:meth:`MMM.window_adstock` of each, computed once); saturation, effects and ``expm1`` are then
    :meth:`MMM.sales_from_adstock`, the model's own, per plan. A test checks this equals
    :meth:`MMM.window_sales` of the plan's activity.

    Parameters
    ----------
    mmm
        The run's model object (:func:`mmm_lib.contributions.model_for`).
    draws
        Posterior draws (:func:`mmm_lib.model.posterior_draws`), thinned to ``n_draws``.
    horizon
        :func:`~mmm_lib.optimize.horizon.build_horizon`.
    """

    def __init__(self, mmm: MMM, draws: dict[str, np.ndarray], horizon: Horizon, n_draws: int = 200, thinned: bool = False):
        self.mmm = mmm
        self.horizon = horizon
        self.draws = draws if thinned else thin_draws(draws, n_draws)
        self.n_draws = next(iter(self.draws.values())).shape[0]
        h, d = horizon, self.draws
        n_rows = h.controls.shape[1]
        zero = h.activity(np.zeros_like(h.current))
        unit = np.zeros_like(zero)
        unit[:, h.n_history : h.n_history + h.n_periods, :] = h.per_unit
        self.base_adstock = mmm.window_adstock(d, zero, n_rows, history=h.n_history)
        self.unit_adstock = mmm.window_adstock(d, unit, n_rows, history=h.n_history)
        self.offset = mmm.window_offset(d, h.controls, history=h.n_history)
        self.beta = mmm.beta_entity(d)
        self.saturation = mmm.saturation_draws(d)
        self.none = self._sales_of_adstock(self.base_adstock)

    def _sales_of_adstock(self, adstocked: np.ndarray) -> np.ndarray:
        return self.mmm.sales_from_adstock(adstocked, self.offset, self.beta, self.saturation)

    def sales(self, spend: np.ndarray) -> np.ndarray:
        """(S, E, H + tail) expected sales over the horizon and tail with ``spend`` (E, C) planned."""
        spend = np.asarray(spend, dtype=float)
        return self._sales_of_adstock(self.base_adstock + spend[None, :, None, :] * self.unit_adstock)

    def window(self, activity: np.ndarray) -> np.ndarray:
        """(S, E, H + tail) expected sales for any activity window (:meth:`Horizon.flighted`: a scenario's flighting)."""
        h = self.horizon
        return self.mmm.window_sales(self.draws, activity, h.controls, history=h.n_history)

    def incremental_flighted(self, spend: np.ndarray) -> np.ndarray:
        """(S,) incremental sales of spend given per period (E, H, C), over the horizon and tail."""
        return (self.window(self.horizon.flighted(spend)) - self.none).sum(axis=(1, 2))

    def incremental(self, spend: np.ndarray, by_entity: bool = False) -> np.ndarray:
        """(S,) incremental sales of ``spend`` (E, C) over the horizon and tail ((S, E) with ``by_entity``)."""
        inc = (self.sales(spend) - self.none).sum(axis=2)
        return inc if by_entity else inc.sum(axis=1)

    def compile(self, mapping: np.ndarray, risk_aversion: float = 0.0) -> Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]:
        """``f(x) -> (objective, gradient, incremental draws)`` for decision variables ``x``.

        ``mapping`` (E*C, n) turns ``x`` (n,) into the plan's spend (E, C); the objective is the mean of
        the incremental sales over draws minus ``risk_aversion`` × their standard deviation. Every array
        enters as an input, so the compiled function depends only on the model's structure.
        """
        import pytensor
        import pytensor.tensor as pt

        E, C = self.horizon.current.shape
        reference = self.mmm._reference if self.mmm.learned else np.ones(C)
        values = {"mapping": np.asarray(mapping, dtype=float), "base_adstock": self.base_adstock, "unit_adstock": self.unit_adstock,
                  "offset": self.offset, "beta": self.beta, "none": self.none.sum(axis=(1, 2)),
                  "reference": np.asarray(reference, dtype=float), **self.saturation}  # fmt: skip

        def placeholder(name: str, a: np.ndarray) -> Any:  # length-1 axes broadcast: the only shape facts fixed
            return pt.tensor(name, dtype="float64", shape=tuple(1 if n == 1 else None for n in np.shape(a)))

        sym = {k: placeholder(k, v) for k, v in values.items()}
        x = pt.dvector("x")
        m, base, unit, offset, beta, none, ref = (sym[k] for k in ("mapping", "base_adstock", "unit_adstock", "offset", "beta",
                                                                   "none", "reference"))  # fmt: skip
        sat = {k: sym[k] for k in self.saturation}
        spend = pt.dot(m, x).reshape((E, C))
        sales = self.mmm.sales_from_adstock(base + spend[None, :, None, :] * unit, offset, beta, sat,
                                            reference=ref if self.mmm.learned else None, xp=pt)  # fmt: skip
        inc = sales.sum(axis=(1, 2)) - none
        objective = inc.mean() - risk_aversion * inc.std() if risk_aversion > 0 else inc.mean()
        fn = pytensor.function([x, *sym.values()], [objective, pytensor.grad(objective, x), inc], on_unused_input="ignore",
                               mode=COMPILE_MODE)  # fmt: skip
        data = list(values.values())

        def f(v: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            obj, grad, draws = fn(np.asarray(v, dtype=float), *data)
            return float(obj), np.asarray(grad, dtype=float), np.asarray(draws, dtype=float)

        return f


def entity_split(horizon: Horizon) -> np.ndarray:
    """(E, C) each entity's share of a channel's spend in the current plan (equal shares for a channel that
    spent nothing in it)."""
    cur = horizon.current
    tot = cur.sum(axis=0)
    E = cur.shape[0]
    return np.where(tot > 0, cur / np.where(tot > 0, tot, 1.0), 1.0 / E)


def mapping_matrix(horizon: Horizon, per_entity: bool) -> tuple[np.ndarray, list[tuple[int | None, int]]]:
    """(E*C, n) from decision variables to spend, and each variable's (entity or None, channel) index.

    Channel-level (``per_entity=False``): one variable per plannable channel, split over entities as
    in the current plan (:func:`entity_split`). Per entity: one per entity and plannable channel.
    """
    E, C = horizon.current.shape
    split = entity_split(horizon)
    cols, index = [], []
    for c in horizon.plannable_index:
        if per_entity:
            for e in range(E):
                m = np.zeros((E, C))
                m[e, c] = 1.0
                cols.append(m.reshape(-1))
                index.append((e, c))
        else:
            m = np.zeros((E, C))
            m[:, c] = split[:, c]
            cols.append(m.reshape(-1))
            index.append((None, c))
    return np.column_stack(cols), index


__all__ = ["PlanModel", "entity_split", "mapping_matrix", "other_draws", "thin_draws"]
