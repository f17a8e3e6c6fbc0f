"""Media transforms, written once: geometric adstock and Hill / logistic / Michaelis–Menten saturation.

Every function takes the array namespace as ``xp``: ``numpy`` when features, counterfactuals,
response curves or the sample generator evaluate a transform on posterior draws, and
``pytensor.tensor`` when :class:`mmm_lib.model.MMM` builds the graph. Only operations both
namespaces share are used (arithmetic, ``exp``, ``log``, ``where``, ``maximum``), so the curve NUTS
fits and the curve a report draws are the same expression.

Adstock is a truncated FIR filter over a precomputed lag stack (:func:`lag_stack`, data, built
once in numpy): ``a[t] = sum_l w[l] * x[t-l]``. No scan: a weighted sum over ``max_lag`` shifted
copies is the fastest form for NUTS gradients (measured in docs/PERFORMANCE.md) and has no
recursion to differentiate through.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SATURATION_TYPES = ("hill", "logistic", "michaelis_menten")

# Parameters of each saturation family, in the order the functions take them.
SATURATION_PARAMS: dict[str, tuple[str, ...]] = {
    "hill": ("K", "S"),
    "logistic": ("lam",),
    "michaelis_menten": ("K",),
}

_TINY = 1e-300  # stands in for 0 inside log(); the where() around it returns the exact 0


def lag_stack(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Shifted copies of ``x`` along a new leading lag axis: ``out[l, t] = x[t - l]`` (0 before the start).

    Parameters
    ----------
    x
        Activity with time on axis 0: (T,) or (T, ...) e.g. (T, C); for a panel pass (E, T, C)
        with ``time_axis=1`` semantics handled by the caller (see :func:`panel_lag_stack`).
    max_lag
        Number of lags kept, lag 0 included (>= 1).

    Returns
    -------
    numpy.ndarray
        (max_lag, *x.shape).
    """
    x = np.asarray(x, dtype=float)
    if int(max_lag) != max_lag or max_lag < 1:
        raise ValueError(f"max_lag is {max_lag}; it must be an integer >= 1")
    n = x.shape[0]
    out = np.zeros((int(max_lag), *x.shape))
    for lag in range(min(int(max_lag), n)):
        out[lag, lag:] = x[: n - lag]
    return out


def panel_lag_stack(x: np.ndarray, max_lag: int) -> np.ndarray:
    """:func:`lag_stack` for a panel (E, T, C): returns (max_lag, E, T, C), lags along time within each entity."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 3:
        raise ValueError(f"panel activity must be (entities, periods, channels), got shape {x.shape}")
    return np.moveaxis(lag_stack(np.moveaxis(x, 1, 0), max_lag), 2, 1)


def shifted_stack(x: Any, max_lag: int, n_periods: int, xp: Any = np) -> Any:
    """:func:`panel_lag_stack` in any namespace: (E, T, C) → (max_lag, E, T, C), ``out[l, :, t] = x[:, t - l]``.

    ``n_periods`` is T (a pytensor tensor's length is symbolic). Zeros before the window's first row,
    so a window's first ``max_lag - 1`` rows serve only as the later rows' carryover.
    """
    parts = [x]
    for lag in range(1, int(max_lag)):
        if lag >= n_periods:
            parts.append(x * 0.0)
            continue
        pad = xp.zeros_like(x[:, :lag, :])
        parts.append(xp.concatenate([pad, x[:, : n_periods - lag, :]], axis=1))
    return xp.stack(parts)


def adstock_weights(decay: Any, max_lag: int, normalize: bool, xp: Any = np) -> Any:
    """Geometric lag weights ``decay**l`` for ``l = 0 … max_lag-1``, along a new leading axis.

    ``decay`` may be a scalar or an array of any shape (e.g. (C,) or (S, 1, 1, C)); the result has
    shape (max_lag, *decay.shape). With ``normalize`` the weights sum to 1, so a steady activity
    level keeps its value and the saturation parameters stay on the activity's own scale.
    """
    if isinstance(decay, (int, float)):
        # A fixed decay: Python's float power, lag by lag, keeps earlier runs' features bit for bit
        # (numpy's vectorised power can differ in the last bit).
        w = np.array([float(decay) ** lag for lag in range(int(max_lag))])
    else:
        lags = np.arange(int(max_lag), dtype=float).reshape((-1,) + (1,) * _ndim(decay))
        w = decay**lags
    return w / w.sum(axis=0) if normalize else w


def adstock(lagged: Any, weights: Any, max_lag: int) -> Any:
    """``sum_l weights[l] * lagged[l]``: the adstocked series from :func:`lag_stack` output.

    Summed lag by lag in order (not a matmul) so that numpy and the graph accumulate in the same
    order and a fixed transform reproduces earlier feature values bit for bit.
    """
    out = weights[0] * lagged[0]
    for lag in range(1, int(max_lag)):
        out = out + weights[lag] * lagged[lag]
    return out


def hill(x: Any, K: Any, S: Any, xp: Any = np) -> Any:
    """Hill ``x**S / (K**S + x**S)`` as ``sigmoid(S * (log x - log K))``: 0 at 0, 0.5 at K, < 1.

    Evaluated in log space so ``K**S`` never overflows; ``x = 0`` gives exactly 0 with finite
    gradients (the ``where`` picks a constant there, and ``log`` sees a tiny positive stand-in).
    """
    pos = x > 0
    # Clipped: beyond ±700 the result is 0 or 1 to double precision, and exp() never underflows.
    z = xp.clip(S * (xp.log(xp.where(pos, x, _TINY)) - xp.log(K)), -700.0, 700.0)
    # where() rather than abs(): abs has gradient 0 at z = 0, which would zero d/dK exactly at x = K.
    e = xp.exp(-xp.where(z >= 0, z, -z))
    val = xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    return xp.where(pos, val, 0.0)


def logistic(x: Any, lam: Any, xp: Any = np) -> Any:
    """Logistic saturation ``(1 - exp(-lam x)) / (1 + exp(-lam x))``: 0 at 0, slope ``lam/2`` there, < 1."""
    # -expm1 keeps full precision for small lam * x, where 1 - exp() would cancel.
    return -xp.expm1(-lam * x) / (1.0 + xp.exp(-lam * x))


def michaelis_menten(x: Any, K: Any, xp: Any = np) -> Any:
    """Michaelis–Menten ``x / (K + x)``: 0 at 0, 0.5 at K, < 1 (Hill with slope 1)."""
    return x / (K + x)


def saturate(kind: str, x: Any, params: dict[str, Any], xp: Any = np) -> Any:
    """Apply the saturation family ``kind`` with ``params`` (names from :data:`SATURATION_PARAMS`)."""
    if kind == "hill":
        return hill(x, params["K"], params["S"], xp)
    if kind == "logistic":
        return logistic(x, params["lam"], xp)
    if kind == "michaelis_menten":
        return michaelis_menten(x, params["K"], xp)
    raise ValueError(f"saturation type {kind!r} is not supported; use one of {list(SATURATION_TYPES)}")


def half_life(decay: float) -> float:
    """Periods until a unit of activity's carry-over halves: ``ln 0.5 / ln decay`` (0 for decay 0)."""
    return 0.0 if decay <= 0 else math.log(0.5) / math.log(decay)


def _ndim(a: Any) -> int:
    return int(getattr(a, "ndim", np.ndim(a)))


__all__ = [
    "SATURATION_PARAMS",
    "SATURATION_TYPES",
    "adstock",
    "adstock_weights",
    "half_life",
    "hill",
    "lag_stack",
    "logistic",
    "michaelis_menten",
    "panel_lag_stack",
    "saturate",
    "shifted_stack",
]
