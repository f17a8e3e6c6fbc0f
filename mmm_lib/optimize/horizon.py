"""The planning horizon: the periods after the data, and how a spend plan becomes activity there.

A plan gives each channel (and entity) an amount of spend over the horizon. It becomes activity with
two facts from the data, per entity and channel:

* **cost per unit**: spend / activity over the estimation window (the channel's level when one entity
  never ran it);
* **flighting**: the horizon repeats the shape of the last ``horizon_periods`` observed periods (the
  channel's brand shape where the entity was dark then, flat where the channel was dark everywhere).

The window the model evaluates is ``history + horizon + tail``: the last ``max_lag - 1`` observed
periods of activity (their carryover into the horizon is in every plan and in "no plan" alike), the
horizon, and ``max_lag - 1`` periods after it with no planned spend, so the carryover a plan leaves
after the horizon counts as its effect. Control features in future periods: seasonality and trend
continue on the calendar (:func:`mmm_lib.features.calendar_features`); other controls (price, …)
stay at their mean over the last ``horizon_periods`` periods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..canonicalize import period_offset
from ..features import calendar_features
from ..model import MMM


@dataclass
class Horizon:
    """Arrays that turn a plan's spend (E, C) into the activity window the model evaluates.

    Attributes
    ----------
    periods
        The H planned periods (period starts after the data's last period).
    tail_periods
        The periods after the horizon whose carryover counts (``max_lag - 1``).
    history
        (E, L-1, C) observed activity of the last ``max_lag - 1`` periods.
    per_unit
        (E, H, C) activity per unit of spend in each horizon period: flighting share / cost per unit
        (0 for channels without spend).
    held
        (E, H, C) activity of channels without spend, held at their last ``H`` periods (0 for the others).
    controls
        (E, L-1 + H + tail, J) control features over the window.
    cost_per_unit
        (E, C) spend per unit of activity over the estimation window (NaN without spend).
    current
        (E, C) spend over the last H observed periods (the current plan; 0 without spend).
    plannable
        Channels whose spend the plan sets (a spend column and activity in the estimation window).
    notes
        What the horizon assumed that a reader should know (a channel held, a dark channel, ...).
    """

    entities: list[str]
    channels: list[str]
    periods: pd.DatetimeIndex
    tail_periods: pd.DatetimeIndex
    history: np.ndarray
    per_unit: np.ndarray
    held: np.ndarray
    controls: np.ndarray
    cost_per_unit: np.ndarray
    current: np.ndarray
    plannable: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def n_history(self) -> int:
        return int(self.history.shape[1])

    @property
    def n_periods(self) -> int:
        return len(self.periods)

    @property
    def plannable_index(self) -> list[int]:
        return [self.channels.index(c) for c in self.plannable]

    def activity(self, spend: Any, xp: Any = np) -> Any:
        """(E, L-1 + H + tail, C) activity window for ``spend`` (E, C) over the horizon (``xp``: numpy or pytensor)."""
        E, _, C = self.per_unit.shape
        future = spend[:, None, :] * self.per_unit + self.held
        tail = np.zeros((E, len(self.tail_periods), C))
        return xp.concatenate([self.history, future, tail], axis=1)

    def flighted(self, spend: np.ndarray) -> np.ndarray:
        """(E, L-1 + H + tail, C) activity window for spend given per period (E, H, C): a scenario's own flighting."""
        cpu = np.where(np.isfinite(self.cost_per_unit), self.cost_per_unit, 1.0)
        plannable = np.isfinite(self.cost_per_unit)
        future = np.where(plannable[:, None, :], np.asarray(spend, dtype=float) / cpu[:, None, :], 0.0) + self.held
        tail = np.zeros((future.shape[0], len(self.tail_periods), future.shape[2]))
        return np.concatenate([self.history, future, tail], axis=1)

    def laid_out(self, spend: np.ndarray) -> np.ndarray:
        """(E, H, C) spend per period of a plan's totals (E, C), laid out like the recent periods."""
        cpu = np.where(np.isfinite(self.cost_per_unit), self.cost_per_unit, 0.0)
        return np.asarray(spend, dtype=float)[:, None, :] * self.per_unit * cpu[:, None, :]

    def window_periods(self) -> pd.DatetimeIndex:
        """Period starts of the evaluated rows (horizon then tail)."""
        return self.periods.append(self.tail_periods)


def _entity_blocks(df: pd.DataFrame, entities: list[str], cols: list[str]) -> np.ndarray:
    """(E, T, len(cols)) values of ``cols`` per entity in period order (the model's entity order)."""
    df = df.sort_values(["entity_id", "period_start"], kind="stable")
    blocks = [df.loc[df["entity_id"].astype(str) == e, cols].to_numpy(dtype=float) for e in entities]
    return np.stack(blocks) if cols else np.zeros((len(entities), len(blocks[0]) if blocks else 0, 0))


def _shares(x: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``x`` (E, T, C) normalised over T; where a series sums to 0, ``fallback`` (T, C) normalised; else flat."""
    tot = x.sum(axis=1, keepdims=True)
    fb = fallback / np.where(fallback.sum(axis=0) > 0, fallback.sum(axis=0), 1.0)
    fb = np.where(fallback.sum(axis=0) > 0, fb, 1.0 / x.shape[1])
    return np.where(tot > 0, x / np.where(tot > 0, tot, 1.0), fb[None])


def build_horizon(mmm: MMM, canonical_df: pd.DataFrame, column_info: dict[str, Any], features_df: pd.DataFrame,
                  horizon_periods: int) -> Horizon:
    """The horizon of ``horizon_periods`` periods after the run's data (see the module docstring).

    Raises
    ------
    ValueError
        No channel has a spend column with activity in the estimation window (nothing to plan), or
        the data hold fewer periods than one adstock history.
    """
    d = mmm.data
    grain = str(column_info.get("grain") or mmm.feature_metadata.get("grain") or "WEEK")
    spend_map = dict(column_info.get("spend") or {})
    ents, chans = list(d.entities), list(d.channels)
    can = canonical_df.copy()
    can["entity_id"] = can["entity_id"].astype(str)
    all_periods = pd.DatetimeIndex(sorted(pd.to_datetime(can["period_start"]).unique()))
    H, L = int(horizon_periods), int(mmm.max_lag)
    act = d.activity  # (E, T_all, C)
    T_all = act.shape[1]
    if T_all < L - 1:
        raise ValueError(f"the data hold {T_all} periods, fewer than the adstock history of {L - 1}; lower feature_config.adstock.max_lag")
    notes: list[str] = []
    spend_cols = [spend_map.get(c) for c in chans]
    spend = np.zeros_like(act)
    for j, col in enumerate(spend_cols):
        if col and col in can.columns:
            spend[:, :, j] = np.nan_to_num(_entity_blocks(can, ents, [col])[:, :, 0])
    est = d.est
    act_est, spend_est = act[:, est, :].sum(axis=1), spend[:, est, :].sum(axis=1)
    brand_cpu = np.divide(spend_est.sum(axis=0), act_est.sum(axis=0), out=np.full(len(chans), np.nan), where=act_est.sum(axis=0) > 0)
    cpu = np.divide(spend_est, act_est, out=np.tile(brand_cpu, (len(ents), 1)), where=act_est > 0)
    plannable = []
    for j, c in enumerate(chans):
        if not spend_cols[j]:
            notes.append(f"{c} has no spend column: its activity is held at its last {H} periods in every plan")
        elif not np.isfinite(brand_cpu[j]) or brand_cpu[j] <= 0:
            notes.append(f"{c} had no activity or no spend in the estimation window, so its cost per unit is unknown: "
                         f"it is held at its last {H} periods in every plan")  # fmt: skip
        else:
            plannable.append(c)
    if not plannable:
        raise ValueError("no channel has both a spend column and activity in the estimation window: there is nothing "
                         "to plan (map spend columns with the spec's spend_cols)")  # fmt: skip
    last = slice(max(T_all - H, 0), T_all)
    recent_act = act[:, last, :]
    if recent_act.shape[1] < H:  # fewer observed periods than the horizon: repeat the shape from the start
        recent_act = np.concatenate([recent_act] * (H // recent_act.shape[1] + 1), axis=1)[:, -H:, :]
        notes.append(f"the data hold fewer than {H} periods: the flighting repeats the observed periods")
    pattern = _shares(recent_act, recent_act.sum(axis=0))
    mask = np.array([c in plannable for c in chans])
    per_unit = np.where(mask[None, None, :], pattern / np.where(mask, cpu, 1.0)[:, None, :], 0.0)
    held = np.where(mask[None, None, :], 0.0, recent_act)
    current = np.where(mask[None, :], spend[:, last, :].sum(axis=1), 0.0)
    for j, c in enumerate(chans):
        if mask[j] and current[:, j].sum() <= 0:
            notes.append(f"{c} spent nothing in the last {H} periods: a ±% bound keeps it at 0; give it bounds in "
                         "money (optimize.bounds) to consider it")  # fmt: skip

    step = period_offset(grain)  # type: ignore[arg-type]
    start = all_periods[-1] + step
    window = pd.date_range(start, periods=H + L - 1, freq=step)
    periods, tail = window[:H], window[H:]
    ctrl_cols = list(d.control_features)
    kinds = {c["feature"]: c.get("kind", "control") for c in mmm.feature_metadata.get("controls") or []}
    feats = _entity_blocks(features_df.assign(entity_id=features_df["entity_id"].astype(str)), ents, ctrl_cols)
    cal = calendar_features(window, mmm.feature_metadata, mmm.feature_scaler)
    future = np.zeros((len(ents), len(window), len(ctrl_cols)))
    for j, col in enumerate(ctrl_cols):
        if kinds.get(col) in ("seasonality", "trend"):
            future[:, :, j] = cal[col][None, :]
        else:
            future[:, :, j] = feats[:, last, j].mean(axis=1)[:, None]
    held_ctrl = [n for n, col in zip(d.control_names, ctrl_cols) if kinds.get(col) not in ("seasonality", "trend")]
    if held_ctrl:
        notes.append(f"other controls are held at their mean over the last {H} periods ({', '.join(held_ctrl)}); "
                     "seasonality and trend continue on the calendar")
    controls = np.concatenate([np.zeros((len(ents), L - 1, len(ctrl_cols))), future], axis=1)
    return Horizon(entities=ents, channels=chans, periods=periods, tail_periods=tail, history=act[:, T_all - (L - 1):, :],
                   per_unit=per_unit, held=held, controls=controls, cost_per_unit=np.where(mask[None, :], cpu, np.nan),
                   current=current, plannable=plannable, notes=notes)  # fmt: skip
