"""The seed's Bayesian MMM in PyMC: build, fit, and the linear predictor every later stage reuses.

See docs/DESIGN.md §"The model" for the scaling of the target and the priors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .runtime import configure_environment

configure_environment()  # before pytensor is imported anywhere in this process


def posterior_draws(idata: Any) -> dict[str, np.ndarray]:
    """Posterior draws with chain and draw stacked into one leading ``sample`` axis.

    Returns
    -------
    dict
        ``intercept`` (S,), ``beta`` (S, C), ``gamma`` (S, J) — zeros with J = 0 when the
        model has no controls — ``sigma`` (S,), ``nu`` (S,), ``sigma_beta`` (S,).
    """
    post = idata["posterior"] if "posterior" in idata.children else idata
    ds = post.to_dataset() if hasattr(post, "to_dataset") else post

    def stack(name: str) -> np.ndarray:
        da = ds[name]
        other = [d for d in da.dims if d not in ("chain", "draw")]
        return np.asarray(da.transpose("chain", "draw", *other).values).reshape(-1, *da.shape[2:])

    out = {k: stack(k) for k in ("intercept", "beta", "sigma", "nu", "sigma_beta") if k in ds}
    out["gamma"] = stack("gamma") if "gamma" in ds else np.zeros((out["intercept"].shape[0], 0))
    return out


def linear_predictor(draws: dict[str, np.ndarray], media: np.ndarray, controls: np.ndarray) -> np.ndarray:
    """``mu = intercept + media @ beta + controls @ gamma`` per draw, on the centred log1p scale.

    Parameters
    ----------
    draws
        From :func:`posterior_draws`.
    media
        (N, C) media features, columns in the order of the ``channel`` coordinate.
    controls
        (N, J) control features, columns in the order of the ``control`` coordinate.

    Returns
    -------
    numpy.ndarray
        (S, N) linear predictor; fitted sales are ``expm1(mu + target_center)``.
    """
    mu = draws["intercept"][:, None] + draws["beta"] @ np.asarray(media, dtype=float).T
    if draws["gamma"].shape[1]:
        mu = mu + draws["gamma"] @ np.asarray(controls, dtype=float).T
    return mu
