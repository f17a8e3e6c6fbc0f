"""The prior registry: every prior of every model configuration, defined once.

A :class:`Prior` is plain data (distribution name, parameters, dims), so it serialises into
``model_metadata.json``, can be overridden from the run spec (``model.priors``), tells validation
how many parameters a model has without importing PyMC, and creates its own PyMC variable. Prior
plots come from ``pm.sample_prior_predictive`` on the built model, never from a restatement here.

Spec overrides use the parameter's name, or ``name[channel]`` for one channel::

    model:
      priors:
        beta: {dist: HalfNormal, sigma: 0.3}
        "decay[act_tv]": {dist: Beta, alpha: 8, beta: 2}

A per-channel override must keep the family of the other channels (one vector-valued PyMC variable
per parameter keeps the graph, and so the compile cache, the same across specs).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Distribution name -> its parameter names (in PyMC's keywords). The only families a spec may name.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "Normal": ("mu", "sigma"),
    "HalfNormal": ("sigma",),
    "LogNormal": ("mu", "sigma"),
    "Beta": ("alpha", "beta"),
    "Gamma": ("alpha", "beta"),
    "Exponential": ("lam",),
}
_POSITIVE = {"sigma", "alpha", "beta", "lam"}

# Concentration of the decay prior around the spec's decay: Beta(d*k, (1-d)*k).
DECAY_CONCENTRATION = 5.0
# Log-scale sd of the saturation priors around the spec's K / S / lam.
SATURATION_LOG_SD = {"K": 0.6, "S": 0.3, "lam": 0.6}


class PriorError(ValueError):
    """A prior in the run spec that cannot be used; the message names the key and the fix."""


@dataclass(frozen=True)
class Prior:
    """One parameter's prior.

    Attributes
    ----------
    dist
        A name from :data:`DISTRIBUTIONS`.
    params
        Keyword parameters: numbers, per-channel lists (when ``dims`` has ``channel``), or the name
        of another parameter (a hierarchical prior, e.g. ``beta ~ HalfNormal(sigma=sigma_beta)``).
    dims
        Named dims of the variable (``()`` for a scalar).
    note
        What the parameter means, for the model metadata and reports.
    """

    dist: str
    params: Mapping[str, Any]
    dims: tuple[str, ...] = ()
    note: str = ""
    free: bool = field(default=True)  # False: a deterministic or a potential, not a sampled variable

    def describe(self) -> str:
        """``HalfNormal(sigma=sigma_beta)``-style text; per-channel values shown as lists."""
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        dims = f" over {' × '.join(self.dims)}" if self.dims else ""
        return f"{self.dist}({args}){dims}" + (f": {self.note}" if self.note else "")

    def size(self, sizes: Mapping[str, int]) -> int:
        """Number of scalar parameters given the size of each dim."""
        return int(math.prod(int(sizes[d]) for d in self.dims)) if self.free else 0

    def to_pymc(self, name: str, variables: Mapping[str, Any], *, dist_only: bool = False) -> Any:
        """Create the PyMC variable (inside a model context); ``variables`` resolves hierarchical names."""
        import pymc as pm

        # Scalars stay Python floats: PyTensor then picks the constant's dtype as it always has, so a
        # model's log density (and its draws) do not change when its priors move into this registry.
        kwargs = {k: (variables[v] if isinstance(v, str) else float(v) if np.ndim(v) == 0 else np.asarray(v, dtype=float))
                  for k, v in self.params.items()}
        cls = getattr(pm, self.dist)
        if dist_only:
            return cls.dist(**kwargs)
        return cls(name, **kwargs, dims=self.dims or None)


def _fmt(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(f"{float(x):.4g}" for x in v) + "]"
    return f"{float(v):.4g}"


def check_prior(key: str, raw: Mapping[str, Any]) -> Prior:
    """A spec's ``{dist: Name, param: value, ...}`` as a :class:`Prior` (dims filled in later)."""
    if not isinstance(raw, Mapping):
        raise PriorError(f"model.priors.{key} must be a mapping like {{dist: HalfNormal, sigma: 0.5}}, got {raw!r}")
    raw = dict(raw)
    dist = raw.pop("dist", None)
    if dist not in DISTRIBUTIONS:
        raise PriorError(f"model.priors.{key}: dist is {dist!r}; use one of {sorted(DISTRIBUTIONS)}")
    need = DISTRIBUTIONS[dist]
    extra = sorted(set(raw) - set(need))
    missing = [p for p in need if p not in raw]
    if extra or missing:
        raise PriorError(f"model.priors.{key}: {dist} takes exactly {list(need)}; got {sorted(raw)}")
    params: dict[str, float] = {}
    for p in need:
        v = raw[p]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise PriorError(f"model.priors.{key}.{p} is {v!r}; give a finite number")
        if p in _POSITIVE and v <= 0:
            raise PriorError(f"model.priors.{key}.{p} is {v}; it must be > 0")
        params[p] = float(v)
    return Prior(dist, params)


def apply_overrides(priors: dict[str, Prior], overrides: Mapping[str, Any], channels: list[str]) -> dict[str, Prior]:
    """Replace registry entries by the spec's ``model.priors``; ``name[channel]`` sets one channel.

    Raises
    ------
    PriorError
        Unknown parameter or channel, a bad distribution, or a per-channel family that differs
        from the rest of that parameter's channels.
    """
    out = dict(priors)
    whole = {k: v for k, v in overrides.items() if "[" not in k}
    per = {k: v for k, v in overrides.items() if "[" in k}
    for key, raw in whole.items():
        if key not in out or not out[key].free:
            allowed = sorted(k for k, p in out.items() if p.free)
            raise PriorError(f"model.priors names {key!r}, which this model does not have; its parameters are {allowed}")
        new = check_prior(key, raw)
        out[key] = Prior(new.dist, new.params, out[key].dims, out[key].note)
    for key, raw in per.items():
        name, _, rest = key.partition("[")
        ch = rest.rstrip("]")
        if name not in out or "channel" not in out[name].dims or out[name].dims != ("channel",):
            per_ch = sorted(k for k, p in out.items() if p.free and p.dims == ("channel",))
            raise PriorError(f"model.priors names {key!r}; per-channel priors exist for {per_ch}")
        if ch not in channels:
            raise PriorError(f"model.priors.{key}: {ch!r} is not a driver; drivers are {channels}")
        new = check_prior(key, raw)
        cur = out[name]
        if new.dist != cur.dist:
            raise PriorError(
                f"model.priors.{key} is {new.dist} but {name} is {cur.dist} for the other channels; "
                f"use {cur.dist} (with parameters {list(DISTRIBUTIONS[cur.dist])}) or override {name} for all channels"
            )
        params = {}
        for p, v in cur.params.items():
            if isinstance(v, str):
                raise PriorError(f"model.priors.{key}: {name}'s {p} is the parameter {v!r}; override {name} as a whole instead")
            vec = np.broadcast_to(np.asarray(v, dtype=float), (len(channels),)).copy()
            vec[channels.index(ch)] = new.params[p]
            params[p] = vec.tolist()
        out[name] = Prior(cur.dist, params, cur.dims, cur.note)
    return out


# --------------------------------------------------------------------------- the registry


def baseline_priors() -> dict[str, Prior]:
    """The baseline model: fixed transforms, brand level (docs/MODEL.md)."""
    return {
        "intercept": Prior("Normal", {"mu": 0.0, "sigma": 2.0}, (), "level of the centred log target with all regressors at 0 "
                           "(sampled as intercept_centred, the level at the regressors' means; same posterior)"),
        "sigma_beta": Prior("HalfNormal", {"sigma": 0.5}, (), "scale shared by the channel effects"),
        "beta": Prior("HalfNormal", {"sigma": "sigma_beta"}, ("channel",), "log-lift at media feature 1 (non-negative)"),
        "gamma": Prior("Normal", {"mu": 0.0, "sigma": 0.5}, ("control",), "effect of a standardized control, season or trend term"),
        "sigma": Prior("HalfNormal", {"sigma": 1.0}, (), "noise scale on the log scale"),
        "nu": Prior("Exponential", {"lam": 0.1}, (), "Student-t degrees of freedom (mean 10)"),
    }


SATURATION_RV = {"K": "half_saturation", "S": "hill_slope", "lam": "logistic_lam"}


def panel_priors(
    *, learned: bool, entity: bool, saturation: str, channel_decays: list[float], saturation_settings: Mapping[str, float]
) -> dict[str, Prior]:
    """Priors of the panel model (learned and/or entity-level configurations).

    Parameters
    ----------
    learned
        Transforms learned: per-channel ``decay`` (Beta centred on the spec's decay for that channel)
        and saturation parameters (log-normal around the spec's values, on the scale of the
        channel's activity divided by its estimation-window peak).
    entity
        Entity level: per-entity intercept and noise, and channel effects partially pooled around
        the brand's typical effect ``beta`` (non-centred: ``beta_entity = beta * exp(tau_beta * beta_z)``).
    saturation, saturation_settings
        The family and the spec's ``K``/``S``/``lam``.
    channel_decays
        The spec's decay per channel (prior centres).
    """
    p = baseline_priors()
    intercept_dims = ("entity",) if entity else ()
    p["intercept"] = Prior("Normal", {"mu": 0.0, "sigma": 2.0}, intercept_dims, p["intercept"].note)
    p["sigma"] = Prior("HalfNormal", {"sigma": 1.0}, intercept_dims, "noise scale on the log scale" + (" per entity" if entity else ""))
    at = "at the channel's typical active level" if learned else "at media feature 1"
    p["beta"] = Prior("HalfNormal", {"sigma": "sigma_beta"}, ("channel",), f"log-lift {at} (non-negative)")
    if entity:
        p["beta"] = Prior("HalfNormal", {"sigma": "sigma_beta"}, ("channel",),
                          f"typical (median) log-lift of a channel across entities, {at}")
        p["tau_beta"] = Prior("HalfNormal", {"sigma": 0.3}, ("channel",), "spread of a channel's log effect across entities")
        p["beta_z"] = Prior("Normal", {"mu": 0.0, "sigma": 1.0}, ("entity", "channel"),
                            "entity deviations (non-centred); beta_entity = beta * exp(tau_beta * beta_z)")
    if learned:
        d = np.clip(np.asarray(channel_decays, dtype=float), 0.02, 0.98)
        k = DECAY_CONCENTRATION
        p["decay"] = Prior("Beta", {"alpha": (d * k).tolist(), "beta": ((1 - d) * k).tolist()}, ("channel",),
                           "geometric adstock decay per period (normalised lag weights)")
        from .transforms import SATURATION_PARAMS

        for par in SATURATION_PARAMS[saturation]:
            centre = float(saturation_settings[par])
            p[SATURATION_RV[par]] = Prior("LogNormal", {"mu": math.log(centre), "sigma": SATURATION_LOG_SD[par]}, ("channel",),
                                          f"{saturation} {par} per channel (activity / its estimation-window peak)")
    return p


__all__ = ["DISTRIBUTIONS", "Prior", "PriorError", "SATURATION_RV", "apply_overrides", "baseline_priors", "check_prior",
           "panel_priors"]
