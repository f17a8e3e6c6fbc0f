"""The pipeline in one process, without notebooks: validate → canonicalize → features → fit → diagnose →
contribute (→ optimize, when the spec has an ``optimize:`` section).

The same library calls the six notebooks make, in order, on data already in memory. For benchmarks,
recovery studies and tests that need a run's answer rather than its reports; ``mmm run`` (papermill,
one kernel per stage, HTML reports) is the way to produce a run folder. The diagnostics gate applies as in
a run: with ``diagnostics.gate: stop`` failed convergence checks raise :class:`~mmm_lib.gate.GateStopped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from .canonicalize import canonicalize
from .contributions import ContributionResult, compute_contributions
from .features import build_features
from .gate import GateStopped, GateVerdict, verdict
from .spec import RunSpec, spec_to_dict
from .validation import validate


@dataclass
class PipelineResult:
    """Every stage's output of :func:`run_in_process` (the artifacts' contents, in memory)."""

    canonical: pd.DataFrame
    column_info: dict[str, Any]
    features: pd.DataFrame
    feature_metadata: dict[str, Any]
    feature_scaler: dict[str, Any]
    fit: dict[str, Any]  # model_pymc.fit_model: idata, model, summary, metadata
    contributions: ContributionResult | None  # None only in the partial result a GateStopped carries
    diagnostics: dict[str, Any]  # diagnostics.compute_diagnostics: what diagnostics.json holds
    verdict: GateVerdict  # the convergence verdict as the gate saw it
    optimization: Any = None  # optimize.OptimizeResult when the spec has an optimize: section (07_optimize)

    @property
    def provisional(self) -> bool:
        """The convergence checks failed: the contributions and ROI are provisional."""
        return self.verdict.failed


def run_in_process(raw: pd.DataFrame, spec: RunSpec, progress: bool = False) -> PipelineResult:
    """Run the stages on ``raw`` (a table as ``load_raw`` returns it) with ``spec``; errors stop it as in a run.

    Returns
    -------
    PipelineResult
        ``verdict`` is 05_diagnose's convergence verdict; when it failed (``diagnostics.gate: warn``) the
        contributions are provisional (``result.provisional``).

    Raises
    ------
    ValueError
        Validation errors (the report's message) or any stage's refusal.
    GateStopped
        ``diagnostics.gate: stop`` and the convergence checks failed; ``.verdict`` says why and what to try,
        ``.result`` holds everything up to the diagnostics (``contributions`` is None).
    """
    from . import model_pymc  # PyMC is imported only when something is fitted
    from .diagnostics import compute_diagnostics

    validate(raw, spec).raise_if_errors()
    canonical, column_info = canonicalize(raw, spec)
    features, meta, scaler = build_features(canonical, column_info, spec)
    fit = model_pymc.fit_model(features, meta, scaler, spec, progress=progress)
    diagnostics = compute_diagnostics(fit["idata"])
    v = verdict(diagnostics, spec_to_dict(spec))
    if v.stops:
        raise GateStopped(v, PipelineResult(canonical, column_info, features, meta, scaler, fit, None, diagnostics, v))
    contrib = compute_contributions(canonical, column_info, features, meta, scaler, fit["metadata"], fit["idata"])
    optimization = None
    if spec.optimize is not None:
        from .optimize import compute_optimization, settings_for

        path = spec.optimize.scenario_path
        optimization = compute_optimization(canonical, column_info, features, meta, scaler, fit["metadata"], fit["idata"],
                                            settings_for(spec.optimize), int(spec.random_seed), scenario=path,
                                            labels=dict(spec.labels or {}))  # fmt: skip
    return PipelineResult(canonical, column_info, features, meta, scaler, fit, contrib, diagnostics, v, optimization)
