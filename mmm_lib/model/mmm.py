"""The model object: one definition per configuration, used to fit, to decompose, for ROI and curves.

:class:`MMM` is built from the features stage's artifacts and a :class:`~mmm_lib.spec.ModelConfig`.

* :meth:`MMM.build` writes the PyMC graph (imported lazily: only the fit stage loads PyMC);
* :meth:`MMM.media` / :meth:`MMM.mu` / :meth:`MMM.expected_sales` evaluate the *same* transforms and
  linear predictor on posterior draws in numpy, for any activity (the observed one, a channel
  switched off, a scaled budget);
* :meth:`MMM.parameter_count` and :attr:`MMM.priors` answer what the model has, for validation and
  the metadata, from the prior registry.

Configurations
    ``baseline`` (fixed transforms, brand): the media features of 03_features enter as data;
    ``learned``: per-channel decay and saturation are parameters, applied in the graph to the
    activity divided by its estimation-window peak (per entity); ``entity``: every entity is its own
    series (own intercept, noise and centred log target) with channel effects partially pooled.

Scale
    ``z[e, t] = log1p(target[e, t]) - target_center[e]`` (centre per entity) and
    ``mu = intercept[e] + sum_c beta[e, c] * media[e, t, c] + controls[e, t] @ gamma``; fitted sales are
    ``expm1(mu + target_center[e])``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import transforms as tf
from .priors import SATURATION_RV, Prior, apply_overrides, baseline_priors, panel_priors

ESTIMATION = "estimation"
HOLDOUT = "holdout"
LIKELIHOOD = "StudentT(nu, mu, sigma) on z = log1p(target) - target_center (per entity)"


@dataclass
class ModelData:
    """Arrays the model is fitted on: entities × estimation periods (× channels / controls).

    ``activity`` keeps every row (carryover included) because adstock needs the history;
    ``est`` marks the estimation rows (the same in every entity).
    """

    entities: list[str]
    periods: np.ndarray  # (T,) datetime64 of the estimation rows
    channels: list[str]
    channel_features: list[str]
    control_names: list[str]
    control_features: list[str]
    target: np.ndarray  # (E, T) original units
    z: np.ndarray  # (E, T)
    target_center: np.ndarray  # (E,)
    media: np.ndarray  # (E, T, C) fixed-transform features from 03_features
    controls: np.ndarray  # (E, T, J)
    activity: np.ndarray  # (E, T_all, C) raw activity, all rows
    est: np.ndarray  # (T_all,) bool
    holdout: np.ndarray | None = None  # (T_all,) bool: held-out rows (windows.holdout_periods), predicted only
    holdout_periods: np.ndarray | None = None  # (H,)
    holdout_target: np.ndarray | None = None  # (E, H) original units
    holdout_media: np.ndarray | None = None  # (E, H, C)
    holdout_controls: np.ndarray | None = None  # (E, H, J)

    @property
    def n_obs(self) -> int:
        return int(self.z.size)

    @property
    def n_holdout(self) -> int:
        return 0 if self.holdout is None else int(self.holdout.sum())

    @property
    def holdout_z(self) -> np.ndarray:
        """(E, H) held-out target on the model's scale (centred with the fitted window's centres)."""
        return np.log1p(self.holdout_target) - self.target_center[:, None]


def _model_name(cfg: Any) -> str:
    return "baseline" if cfg.is_baseline else f"{cfg.transforms}_{cfg.level}"


class MMM:
    """One configured marketing mix model over one run's features.

    Parameters
    ----------
    data
        From :func:`model_data`.
    config
        The spec's ``model`` section (:class:`~mmm_lib.spec.ModelConfig`).
    feature_metadata, feature_scaler
        ``feature_metadata.json`` and ``feature_scaler.json``: the spec's transform settings, which
        fix the transforms (``fixed``) or centre their priors (``learned``), and the scales.
    """

    def __init__(self, data: ModelData, config: Any, feature_metadata: Mapping[str, Any], feature_scaler: Mapping[str, Any]):
        self.data = data
        self.config = config
        self.feature_metadata = feature_metadata
        self.feature_scaler = feature_scaler
        self.name = _model_name(config)
        self.learned = config.transforms == "learned"
        self.entity_level = config.level == "entity"
        sat = dict(feature_metadata.get("saturation") or {})
        self.saturation = str(sat.get("type", "hill")) if sat.get("enabled", True) else "none"
        if self.learned and self.saturation == "none":
            raise ValueError("model.transforms: learned needs feature_config.saturation.enabled: true (the saturation to learn)")
        by_driver = {c["driver"]: c for c in feature_metadata["channels"]}
        self.max_lag = int(by_driver[data.channels[0]]["max_lag"])
        self.decays = [float(by_driver[c]["decay"]) for c in data.channels]
        self.priors: dict[str, Prior] = prior_registry(
            config, list(data.channels), self.decays, self.saturation,
            {k: float(sat.get(k, 1.0)) for k in ("K", "S", "lam")}, has_controls=bool(data.control_names),
        )  # fmt: skip
        self._activity_scale = self._peak_scale() if self.learned else None
        self._reference = self._reference_level() if self.learned else None

    # ------------------------------------------------------------------ what the model has

    @property
    def dim_sizes(self) -> dict[str, int]:
        d = self.data
        return {"entity": len(d.entities), "channel": len(d.channels), "control": len(d.control_names)}

    def parameter_count(self) -> int:
        """Number of scalar parameters NUTS samples (from the prior registry; a test checks it equals the graph's)."""
        return sum(p.size(self.dim_sizes) for p in self.priors.values())

    def prior_table(self) -> dict[str, str]:
        """Parameter name → prior text, for ``model_metadata.json``."""
        return {k: p.describe() for k, p in self.priors.items()}

    @property
    def transform_parameters(self) -> list[str]:
        """Names of the learned transform parameters (empty for fixed transforms)."""
        if not self.learned:
            return []
        return ["decay", *[SATURATION_RV[p] for p in tf.SATURATION_PARAMS[self.saturation]]]

    # ------------------------------------------------------------------ scaling

    def _peak_scale(self) -> np.ndarray:
        """(E, C) peak of each entity's activity over the estimation window (1 where it is never active)."""
        peak = self.data.activity[:, self.data.est, :].max(axis=1)
        return np.where(peak > 0, peak, 1.0)

    def _reference_level(self) -> np.ndarray:
        """(C,) each channel's typical active level on the scaled axis: the median over entities of the mean
        of the scaled activity in the estimation periods where the channel ran (1.0 for a channel that never ran)."""
        x = self.scaled_activity(self.data.activity)[:, self.data.est, :]
        active = x > 0
        means = np.where(active.any(axis=1), (x * active).sum(axis=1) / np.maximum(active.sum(axis=1), 1), np.nan)
        ref = np.nanmedian(np.where(np.isnan(means).all(axis=0), 1.0, means), axis=0) if means.size else np.ones(0)
        return np.where(np.isfinite(ref) & (ref > 0), ref, 1.0)

    def scaled_activity(self, activity: np.ndarray, entities: slice | list[int] | None = None) -> np.ndarray:
        """Raw activity (E', T_all, C) divided by each entity's estimation-window peak (learned transforms)."""
        idx = slice(None) if entities is None else entities
        return np.asarray(activity, dtype=float) / self._activity_scale[idx][:, None, :]

    # ------------------------------------------------------------------ the graph

    def build(self, for_prior: bool = False) -> Any:
        """The PyMC model. Data enter as ``pm.Data`` so a same-shaped dataset reuses the compiled graph.

        ``for_prior=True`` gives the same model with the intercept drawn directly from its prior
        instead of the centred form NUTS moves on (a flat variable plus a potential, which forward
        sampling cannot draw): the graph ``pm.sample_prior_predictive`` samples.
        """
        if self.config.is_baseline and not for_prior:
            return self._build_baseline()
        return self._build_panel(for_prior)

    def _build_baseline(self) -> Any:
        """The baseline graph: fixed media features, brand level, centred intercept.

        NUTS moves on ``intercept_centred`` (the level at the regressors' column means): media
        features are all positive, so the plain intercept is strongly anti-correlated with every
        ``beta`` and mixes slowly. ``intercept = intercept_centred − mean(media) @ beta −
        mean(controls) @ gamma`` is a deterministic carrying the ``Normal(0, 2)`` prior as a potential;
        the map has unit Jacobian, so the posterior is unchanged.
        """
        import pymc as pm
        import pytensor.tensor as pt

        d = self.data
        coords: dict[str, Any] = {"period": d.periods, "channel": d.channels}
        has_controls = bool(d.control_names)
        if has_controls:
            coords["control"] = d.control_names
        p = self.priors
        with pm.Model(coords=coords) as model:
            # Column-major like a DataFrame's to_numpy(): the reductions below then sum in the order
            # earlier runs did, so the baseline's draws stay identical bit for bit.
            media = pm.Data("media", np.asfortranarray(d.media[0]), dims=("period", "channel"))
            z_target = pm.Data("z_target", d.z[0], dims="period")
            intercept_centred = pm.Flat("intercept_centred")
            v: dict[str, Any] = {}
            v["sigma_beta"] = p["sigma_beta"].to_pymc("sigma_beta", v)
            beta = p["beta"].to_pymc("beta", v)
            media_mean = media.mean(axis=0)
            mu = intercept_centred + pt.dot(media - media_mean, beta)
            shift = pt.dot(media_mean, beta)
            if has_controls:
                controls = pm.Data("controls", np.asfortranarray(d.controls[0]), dims=("period", "control"))
                gamma = p["gamma"].to_pymc("gamma", v)
                controls_mean = controls.mean(axis=0)
                mu = mu + pt.dot(controls - controls_mean, gamma)
                shift = shift + pt.dot(controls_mean, gamma)
            intercept = pm.Deterministic("intercept", intercept_centred - shift)
            pm.Potential("intercept_prior", pm.logp(p["intercept"].to_pymc("", v, dist_only=True), intercept))
            sigma = p["sigma"].to_pymc("sigma", v)
            nu = p["nu"].to_pymc("nu", v)
            self.likelihood(mu, sigma, nu, name="z", observed=z_target, dims="period")
        return model

    def _build_panel(self, for_prior: bool = False) -> Any:
        """Learned and/or entity-level graph (same centred-intercept device, per entity).

        Also the baseline's prior graph (``for_prior``): at brand level with fixed transforms it is
        the baseline model with a plainly sampled intercept.
        """
        import pymc as pm
        import pytensor.tensor as pt

        d = self.data
        p = self.priors
        coords: dict[str, Any] = {"entity": d.entities, "period": d.periods, "channel": d.channels}
        if d.control_names:
            coords["control"] = d.control_names
        with pm.Model(coords=coords) as model:
            v: dict[str, Any] = {}
            z_target = pm.Data("z_target", d.z, dims=("entity", "period"))
            if self.learned:
                model.add_coord("lag", list(range(self.max_lag)))
                lagged_np = tf.panel_lag_stack(self.scaled_activity(d.activity), self.max_lag)[:, :, d.est, :]
                lagged = pm.Data("activity_lag", lagged_np, dims=("lag", "entity", "period", "channel"))
                for name in self.transform_parameters:
                    v[name] = p[name].to_pymc(name, v)
                media = self._media_from(lagged, {k: v[k] for k in self.transform_parameters}, pt)
            else:
                media = pm.Data("media", d.media, dims=("entity", "period", "channel"))
            v["sigma_beta"] = p["sigma_beta"].to_pymc("sigma_beta", v)
            beta = p["beta"].to_pymc("beta", v)
            if self.entity_level:
                tau = p["tau_beta"].to_pymc("tau_beta", v)
                bz = p["beta_z"].to_pymc("beta_z", v)
                beta_e = pm.Deterministic("beta_entity", beta[None, :] * pt.exp(tau[None, :] * bz), dims=("entity", "channel"))
            else:
                beta_e = beta[None, :]
            term = (media * beta_e[:, None, :]).sum(axis=-1)  # (E, T)
            if d.control_names:
                controls = pm.Data("controls", d.controls, dims=("entity", "period", "control"))
                gamma = p["gamma"].to_pymc("gamma", v)
                term = term + (controls * gamma[None, None, :]).sum(axis=-1)
            shift = term.mean(axis=1)  # (E,)
            if for_prior:
                intercept = p["intercept"].to_pymc("intercept", v)
                mu = (intercept[:, None] if self.entity_level else intercept) + term
            elif self.entity_level:
                a = pm.Flat("intercept_centred", dims="entity")
                intercept = pm.Deterministic("intercept", a - shift, dims="entity")
                mu = a[:, None] + term - shift[:, None]
            else:
                a = pm.Flat("intercept_centred")
                intercept = pm.Deterministic("intercept", a - shift[0])
                mu = a + term - shift[:, None]
            if not for_prior:
                pm.Potential("intercept_prior", pm.logp(p["intercept"].to_pymc("", v, dist_only=True), intercept).sum())
            sigma = p["sigma"].to_pymc("sigma", v)
            nu = p["nu"].to_pymc("nu", v)
            sig = sigma[:, None] if self.entity_level else sigma
            self.likelihood(mu, sig, nu, name="z", observed=z_target, dims=("entity", "period"))
        return model

    @staticmethod
    def likelihood(mu: Any, sigma: Any, nu: Any, name: str | None = None, **kwargs: Any) -> Any:
        """THE likelihood of ``z``: ``StudentT(nu, mu, sigma)``.

        With ``name``, the model variable (inside a model context; ``observed``/``dims`` in
        ``kwargs``); without, the unnamed distribution over arrays of draws, whose ``pm.logp`` and
        ``pm.draw`` give the pointwise log-likelihood and replicated data (:func:`mmm_lib.model_pymc.add_checks`).
        """
        import pymc as pm

        if name is None:
            return pm.StudentT.dist(nu=nu, mu=mu, sigma=sigma)
        return pm.StudentT(name, nu=nu, mu=mu, sigma=sigma, **kwargs)

    def _media_from(self, lagged: Any, params: Mapping[str, Any], xp: Any) -> Any:
        """Saturated adstock from a lag stack — THE media transform of the learned model, graph or numpy.

        ``lagged`` is (L, …, C); each parameter broadcasts against one lag slice (…, C). The two steps are
        :meth:`_adstock_of` (linear in the activity) and :meth:`_saturation_of`.
        """
        return self._saturation_of(self._adstock_of(lagged, params, xp), params, xp)

    def _adstock_of(self, lagged: Any, params: Mapping[str, Any], xp: Any) -> Any:
        """Normalised geometric adstock with the learned decay: linear in the lagged activity."""
        return tf.adstock(lagged, tf.adstock_weights(params["decay"], self.max_lag, True, xp), self.max_lag)

    def _saturation_of(self, ad: Any, params: Mapping[str, Any], xp: Any, reference: Any = None) -> Any:
        """The learned saturation of adstocked activity, relative to its value at the reference level.

        ``reference`` defaults to the model's (C,) reference levels; a compiled plan passes it as an input.
        """
        sat = {k: params[SATURATION_RV[k]] for k in tf.SATURATION_PARAMS[self.saturation]}
        ref = self._reference if reference is None else reference
        # Relative to the curve's value at the channel's typical active level: media = 1 there, so
        # beta is the log-lift at typical activity (what the data pin down), not at full saturation.
        # Otherwise beta and the half-saturation trade off along a ridge (beta·x/K for x << K), which
        # NUTS mixes slowly and which lets the prior favour large effects of unsaturated channels.
        return tf.saturate(self.saturation, ad, sat, xp) / tf.saturate(self.saturation, ref, sat, xp)

    # ------------------------------------------------------------------ numpy evaluation on draws

    def transform_draws(self, draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The learned transform parameters per draw, shaped (S, 1, 1, C) to broadcast over (E, T, C)."""
        return {k: np.asarray(draws[k], dtype=float)[:, None, None, :] for k in self.transform_parameters}

    def rows(self, rows: str) -> np.ndarray:
        """(T_all,) mask of the ``"estimation"`` (fitted) or ``"holdout"`` (held-out) periods."""
        if rows == ESTIMATION:
            return self.data.est
        if rows == HOLDOUT and self.data.n_holdout:
            return self.data.holdout
        raise ValueError(f"rows must be 'estimation' or 'holdout' (when the data has held-out periods), got {rows!r}")

    def media(self, draws: Mapping[str, np.ndarray], activity: np.ndarray, entities: list[int] | None = None,
              rows: str = ESTIMATION) -> np.ndarray:
        """Media features on the estimation (or held-out) rows for raw ``activity`` (E', T_all, C) of ``entities``.

        Returns (E', T, C) for fixed transforms (the same for every draw) or (S, E', T, C) for learned.
        """
        act = np.asarray(activity, dtype=float)
        est = self.rows(rows)
        if not self.learned:
            from ..features import media_features

            return np.stack([media_features(a, self.feature_metadata, self.feature_scaler)[est] for a in act])
        lagged = tf.panel_lag_stack(self.scaled_activity(act, entities), self.max_lag)[:, :, est, :]
        return self._media_from(lagged[:, None], self.transform_draws(draws), np)

    def beta_entity(self, draws: Mapping[str, np.ndarray], entities: list[int] | None = None) -> np.ndarray:
        """(S, E', C) channel effects per entity (the brand's ``beta`` repeated at brand level)."""
        if "beta_entity" in draws:
            b = draws["beta_entity"]
            return b if entities is None else b[:, entities]
        n = len(self.data.entities) if entities is None else len(entities)
        return np.repeat(draws["beta"][:, None, :], n, axis=1)

    def media_terms(self, draws: Mapping[str, np.ndarray], media: np.ndarray, entities: list[int] | None = None) -> np.ndarray:
        """(S, E', T, C) log-scale media terms ``beta[e, c] * media[e, t, c]`` (the response on the model's scale)."""
        b = self.beta_entity(draws, entities)[:, :, None, :]
        return b * (media if media.ndim == 4 else media[None])

    def mu(self, draws: Mapping[str, np.ndarray], media: np.ndarray, entities: list[int] | None = None,
           rows: str = ESTIMATION) -> np.ndarray:
        """(S, E', T) linear predictor on the centred log scale for the given media features (of ``rows``)."""
        controls = self.data.controls if rows == ESTIMATION else self.data.holdout_controls
        ents = list(range(len(self.data.entities))) if entities is None else list(entities)
        b = self.beta_entity(draws, ents)
        icpt = np.asarray(draws["intercept"], dtype=float)
        icpt = icpt[:, ents] if icpt.ndim == 2 else np.repeat(icpt[:, None], len(ents), axis=1)
        gamma = draws.get("gamma")
        out = np.empty((b.shape[0], len(ents), media.shape[-2]))
        for i, e in enumerate(ents):
            if media.ndim == 3:  # fixed features: one matmul per entity (the baseline's exact arithmetic)
                m = icpt[:, i, None] + b[:, i, :] @ media[i].T
            else:
                m = icpt[:, i, None] + np.einsum("sc,stc->st", b[:, i, :], media[:, i])
            if gamma is not None and gamma.shape[1]:
                m = m + gamma @ controls[e].T
            out[:, i] = m
        return out

    def expected_sales(self, draws: Mapping[str, np.ndarray], activity: np.ndarray, entities: list[int] | None = None,
                       rows: str = ESTIMATION) -> np.ndarray:
        """(S, E', T) fitted sales in original units, ``expm1(mu + target_center)``, for raw ``activity``
        on the estimation (or held-out) rows."""
        ents = list(range(len(self.data.entities))) if entities is None else list(entities)
        mu = self.mu(draws, self.media(draws, activity, ents, rows), ents, rows)
        return np.expm1(mu + self.data.target_center[ents][None, :, None])

    # ------------------------------------------------------------------ any window, numpy or graph

    def _fixed_adstock(self, lagged: Any) -> Any:
        """The fixed-transform adstock divided by ``adstock_max``: linear in the lagged activity.

        With :meth:`_fixed_saturation`, the functions :func:`mmm_lib.features.media_features` applies.
        """
        w = tf.adstock_weights(np.asarray(self.decays, dtype=float), self.max_lag, False)
        amax = np.array([float(self.feature_scaler["media"][c]["adstock_max"]) for c in self.data.channels])
        return tf.adstock(lagged, w, self.max_lag) / amax

    def _fixed_saturation(self, scaled: Any, xp: Any) -> Any:
        """The spec's saturation (fixed parameters) of max-scaled adstock."""
        if self.saturation == "none":
            return scaled
        sat = dict(self.feature_metadata.get("saturation") or {})
        return tf.saturate(self.saturation, scaled, {k: float(sat[k]) for k in tf.SATURATION_PARAMS[self.saturation]}, xp)

    def window_adstock(self, draws: Mapping[str, Any], activity: Any, n_periods: int, entities: list[int] | None = None,
                       history: int = 0, xp: Any = np) -> Any:
        """(S or 1, E', T' - history, C) adstocked activity over a window of raw ``activity`` (E', T', C).

        Linear in ``activity``: a plan's adstock is the history's plus each channel's spend times the
        adstock of one unit of it (what :class:`mmm_lib.optimize.plan.PlanModel` precomputes). The first
        ``history`` rows serve only as carryover into the rows returned.
        """
        ents = list(range(len(self.data.entities))) if entities is None else list(entities)
        lagged = tf.shifted_stack(activity, self.max_lag, n_periods, xp)[:, :, history:, :]  # (L, E', T, C)
        if not self.learned:
            return self._fixed_adstock(lagged)[None]
        lagged = lagged / self._activity_scale[ents][None, :, None, :]
        return self._adstock_of(lagged[:, None], {"decay": draws["decay"][:, None, None, :]}, xp)

    def window_offset(self, draws: Mapping[str, Any], controls: np.ndarray, entities: list[int] | None = None,
                      history: int = 0) -> np.ndarray:
        """(S, E', T' - history) the non-media part of the log-scale sales: intercept + controls · gamma + centre."""
        ents = list(range(len(self.data.entities))) if entities is None else list(entities)
        icpt = np.asarray(draws["intercept"], dtype=float)
        icpt = icpt[:, ents] if icpt.ndim == 2 else icpt[:, None]
        ctrl = np.asarray(controls, dtype=float)[:, history:, :]
        out = np.broadcast_to(icpt[:, :, None], (icpt.shape[0], len(ents), ctrl.shape[1])).copy()
        if self.data.control_names:
            out = out + (ctrl[None] * np.asarray(draws["gamma"], dtype=float)[:, None, None, :]).sum(axis=-1)
        return out + self.data.target_center[ents][None, :, None]

    def sales_from_adstock(self, adstocked: Any, offset: Any, beta: Any, saturation: Mapping[str, Any] | None = None,
                           reference: Any = None, xp: Any = np) -> Any:
        """(S, E', T) expected sales ``expm1(offset + sum_c beta * saturate(adstocked))``.

        ``beta`` (S, E', C) are the channel effects (:meth:`beta_entity`); ``saturation`` the learned
        saturation parameters shaped to broadcast (S, 1, 1, C) (None for fixed transforms).
        """
        if self.learned:
            media = self._saturation_of(adstocked, saturation or {}, xp, reference)
        else:
            media = self._fixed_saturation(adstocked, xp)
        return xp.expm1(offset + (beta[:, :, None, :] * media).sum(axis=-1))

    def saturation_draws(self, draws: Mapping[str, Any]) -> dict[str, Any]:
        """The learned saturation parameters per draw, shaped (S, 1, 1, C) (empty for fixed transforms)."""
        return {k: draws[k][:, None, None, :] for k in self.transform_parameters if k != "decay"}

    def window_sales(self, draws: Mapping[str, Any], activity: Any, controls: np.ndarray, entities: list[int] | None = None,
                     history: int = 0, xp: Any = np) -> Any:
        """(S, E', T' - history) expected sales over any window of raw ``activity`` (E', T', C) with control features
        ``controls`` (E', T', J).

        The model's transform, linear predictor and ``expm1`` for periods the data do not hold: a
        future horizon (budget plans, scenarios) or the observed window (where it equals
        :meth:`expected_sales`, which a test checks). Adstock sees only the window: its first
        ``history`` rows serve only as carryover into the rows returned.
        """
        ents = list(range(len(self.data.entities))) if entities is None else list(entities)
        ad = self.window_adstock(draws, activity, int(np.shape(controls)[1]), ents, history, xp)
        return self.sales_from_adstock(ad, self.window_offset(draws, controls, ents, history), self.beta_entity(draws, ents),
                                       self.saturation_draws(draws), xp=xp)  # fmt: skip

    def response(self, draws: Mapping[str, np.ndarray], activity: np.ndarray, entities: list[int] | None = None) -> np.ndarray:
        """(S, E', T, C) media terms on the log scale for raw ``activity``: what each channel adds to ``mu``."""
        return self.media_terms(draws, self.media(draws, activity, entities), entities)

    # ------------------------------------------------------------------ metadata

    def metadata(self) -> dict[str, Any]:
        """What is fitted, for ``model_metadata.json`` (sampler facts are added by the fit stage)."""
        d = self.data
        return {
            "model": self.name,
            "transforms": self.config.transforms,
            "level": self.config.level,
            "saturation": self.saturation,
            "max_lag": self.max_lag,
            "target_transform": "log1p",
            "target_center": float(d.target_center[0]) if len(d.entities) == 1 else None,
            "target_centers": {e: float(c) for e, c in zip(d.entities, d.target_center)},
            "likelihood": LIKELIHOOD,
            "entities": list(d.entities),
            "channels": list(d.channels),
            "channel_features": list(d.channel_features),
            "controls": list(d.control_names),
            "control_features": list(d.control_features),
            "priors": self.prior_table(),
            "prior_spec": {k: {"dist": p.dist, "params": dict(p.params), "dims": list(p.dims)} for k, p in self.priors.items()},
            "n_parameters": self.parameter_count(),
            "reference_level": None if self._reference is None else dict(zip(d.channels, map(float, self._reference))),
            "activity_scale": None if self._activity_scale is None else
            {e: dict(zip(d.channels, map(float, row))) for e, row in zip(d.entities, self._activity_scale)},
            "n_obs": d.n_obs,
            "estimation_start": pd.Timestamp(d.periods[0]).date().isoformat(),
            "estimation_end": pd.Timestamp(d.periods[-1]).date().isoformat(),
        }  # fmt: skip


# ---------------------------------------------------------------------------------- registry


def prior_registry(config: Any, channels: list[str], decays: list[float], saturation: str,
                   saturation_settings: Mapping[str, float], has_controls: bool) -> dict[str, Prior]:
    """The priors of the configuration ``config`` (spec ``model``), with the spec's overrides applied."""
    if config.is_baseline:
        reg = baseline_priors()
    else:
        reg = panel_priors(learned=config.transforms == "learned", entity=config.level == "entity", saturation=saturation,
                           channel_decays=decays, saturation_settings=saturation_settings)
    if not has_controls:
        reg.pop("gamma")
    return apply_overrides(reg, dict(config.priors or {}), list(channels))


def parameter_count(spec: Any, n_entities: int) -> tuple[int, dict[str, int]]:
    """Scalar parameters the spec's model will have on data with ``n_entities`` entities, and per prior.

    What validation reports before any features exist; the same registry as :attr:`MMM.priors`.
    """
    fc = spec.feature_config
    channels = list(spec.drivers)
    n_controls = len(spec.controls) + (2 * fc.seasonality.K if fc.seasonality.enabled else 0) + int(fc.trend.enabled)
    sat = fc.saturation
    reg = prior_registry(spec.model, channels, [spec.decay_for(c) for c in channels], sat.type,
                         {"K": sat.K, "S": sat.S, "lam": sat.lam}, has_controls=n_controls > 0)
    sizes = {"entity": n_entities if spec.model.level == "entity" else 1, "channel": len(channels), "control": n_controls}
    per = {k: p.size(sizes) for k, p in reg.items() if p.free}
    return sum(per.values()), per


# ---------------------------------------------------------------------------------- data


def model_data(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any]) -> ModelData:
    """The model's arrays from ``features.parquet``: one block per entity, estimation rows for the fit.

    Raises
    ------
    ValueError
        A required column is missing, the estimation window is empty, periods repeat, entities do
        not share the same periods, or a feature/target value is missing, infinite or (target) negative.
    """
    channels_meta = list(feature_metadata.get("channels") or [])
    controls_meta = list(feature_metadata.get("controls") or [])
    if not channels_meta:
        raise ValueError("feature_metadata.json lists no channels; the model needs at least one media driver (re-run 03_features)")
    channels = [str(c["driver"]) for c in channels_meta]
    media_cols = [str(c["feature"]) for c in channels_meta]
    act_cols = [str(c.get("activity") or f"activity__{c['driver']}") for c in channels_meta]
    control_names = [str(c["name"]) for c in controls_meta]
    control_cols = [str(c["feature"]) for c in controls_meta]
    needed = ["entity_id", "period_start", "window", "target", *media_cols, *control_cols, *act_cols]
    missing = [c for c in needed if c not in features_df.columns]
    if missing:
        raise ValueError(
            f"features table lacks column(s) {missing} named in feature_metadata.json; re-run 03_features so the two artifacts match"
        )
    df = features_df.sort_values(["entity_id", "period_start"], kind="stable")
    if not (df["window"] == ESTIMATION).any():
        found = sorted(map(str, df["window"].dropna().unique()))
        raise ValueError(f"features table has no rows with window == 'estimation' (found windows {found}); check spec windows")
    entities = [str(e) for e in pd.unique(df["entity_id"])]
    blocks = [df[df["entity_id"] == e] for e in pd.unique(df["entity_id"])]
    first = pd.to_datetime(blocks[0]["period_start"]).to_numpy()
    for e, b in zip(entities, blocks):
        ps = pd.to_datetime(b["period_start"])
        if ps.duplicated().any():
            dup = ps[ps.duplicated()].dt.date.astype(str).tolist()[:3]
            raise ValueError(f"period_start repeats for entity {e!r} (e.g. {dup}); one row per entity and period is expected")
        if len(ps) != len(first) or not (ps.to_numpy() == first).all():
            raise ValueError(
                f"entity {e!r} covers other periods than {entities[0]!r}; an entity-level model needs every entity "
                "in every period of the windows (fill missing weeks in the data, or use model.level: brand)"
            )
    est = (blocks[0]["window"] == ESTIMATION).to_numpy()
    hold = (blocks[0]["window"] == HOLDOUT).to_numpy()
    periods = pd.to_datetime(blocks[0]["period_start"])

    def stack(cols: list[str], rows: np.ndarray | slice) -> np.ndarray:
        if not cols:
            return np.zeros((len(blocks), int(np.sum(rows)) if isinstance(rows, np.ndarray) else len(first), 0))
        m = np.stack([b[cols].to_numpy(dtype=float, na_value=np.nan)[rows] for b in blocks])
        bad = ~np.isfinite(m)
        if bad.any():
            j = int(np.where(bad.any(axis=(0, 1)))[0][0])
            raise ValueError(
                f"feature column {cols[j]!r} has {int(bad[..., j].sum())} missing/infinite value(s); "
                "fix the input data or re-run 03_features"
            )
        return m

    def target_rows(rows: np.ndarray, where: str) -> np.ndarray:
        target = np.stack([b["target"].to_numpy(dtype=float, na_value=np.nan)[rows] for b in blocks])
        bad = ~np.isfinite(target) | (target < 0)
        if bad.any():
            e = int(np.where(bad.any(axis=1))[0][0])
            shown = periods.dt.date.astype(str).to_numpy()[rows][bad[e]][:3].tolist()
            raise ValueError(
                f"target has {int(bad.sum())} missing, infinite or negative value(s) in the {where} "
                f"(entity {entities[e]!r}, periods {shown}); the model takes log1p(target), so sales must be >= 0"
            )
        return target

    target = target_rows(est, "estimation window")
    log_y = np.log1p(target)
    center = log_y.mean(axis=1)
    holdout: dict[str, Any] = {}
    if hold.any():
        holdout = {"holdout": hold, "holdout_periods": periods.to_numpy(dtype="datetime64[ns]")[hold],
                   "holdout_target": target_rows(hold, "holdout"), "holdout_media": stack(media_cols, hold),
                   "holdout_controls": stack(control_cols, hold)}  # fmt: skip
    return ModelData(
        entities=entities,
        periods=periods.to_numpy(dtype="datetime64[ns]")[est],
        channels=channels,
        channel_features=media_cols,
        control_names=control_names,
        control_features=control_cols,
        target=target,
        z=log_y - center[:, None],
        target_center=center,
        media=stack(media_cols, est),
        controls=stack(control_cols, est),
        activity=stack(act_cols, slice(None)),
        est=est,
        **holdout,
    )


def from_artifacts(features_df: pd.DataFrame, feature_metadata: Mapping[str, Any], feature_scaler: Mapping[str, Any], config: Any) -> MMM:
    """The model for a run: ``features.parquet``, ``feature_metadata.json``, ``feature_scaler.json`` and ``spec.model``."""
    return MMM(model_data(features_df, feature_metadata), config, feature_metadata, feature_scaler)


def posterior_draws(idata: Any) -> dict[str, np.ndarray]:
    """Every posterior variable with chain and draw stacked into one leading ``sample`` axis.

    ``gamma`` is (S, 0) when the model has no controls.
    """
    post = idata["posterior"] if hasattr(idata, "children") and "posterior" in idata.children else idata
    ds = post.to_dataset() if hasattr(post, "to_dataset") else post
    out: dict[str, np.ndarray] = {}
    for name, da in ds.data_vars.items():
        other = [x for x in da.dims if x not in ("chain", "draw")]
        da = da.transpose("chain", "draw", *other)
        out[str(name)] = np.asarray(da.values).reshape(-1, *da.shape[2:])
    if "gamma" not in out:
        out["gamma"] = np.zeros((next(iter(out.values())).shape[0], 0))
    return out
