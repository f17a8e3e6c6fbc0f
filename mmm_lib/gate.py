"""The diagnostics gate: what a failed convergence check (05_diagnose's ``passed``) does to a run.

``diagnostics.gate: warn`` (the default) lets the run finish and marks its numbers provisional: the
``mmm run`` headline, ``index.html`` and the 06_contribute report say so and why. ``stop`` ends the run
after 05_diagnose, before contributions and ROI are computed (``mmm run`` exits 3).

:func:`verdict` reads ``diagnostics.json`` into a :class:`GateVerdict`: which checks failed, on which
parameters, and what to try, in order: sample longer, raise ``target_accept``, revisit priors, simplify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Short names of the checks (diagnostics.REMEDIES' codes), for one-line reasons.
CHECK_LABELS: dict[str, str] = {
    "RHAT_HIGH": "R-hat",
    "ESS_BULK_LOW": "ESS bulk",
    "ESS_TAIL_LOW": "ESS tail",
    "DIVERGENCES": "divergences",
    "EBFMI_LOW": "E-BFMI",
    "MAX_TREEDEPTH": "max tree depth",
    "DIVERGENCES_UNAVAILABLE": "divergences (not recorded)",
    "EBFMI_UNAVAILABLE": "E-BFMI (not recorded)",
    "MAX_TREEDEPTH_UNAVAILABLE": "tree depth (not recorded)",
}

# The remedy steps in the order to try them (cheapest and most often enough first), and which failed
# checks each one addresses. A step is listed when any of its checks failed.
_STEP_ORDER = ("sampler", "longer", "target_accept", "priors", "simpler")
_STEP_CHECKS: dict[str, set[str]] = {
    "sampler": {"DIVERGENCES_UNAVAILABLE", "EBFMI_UNAVAILABLE", "MAX_TREEDEPTH_UNAVAILABLE"},
    "longer": {"RHAT_HIGH", "ESS_BULK_LOW", "ESS_TAIL_LOW", "EBFMI_LOW", "MAX_TREEDEPTH"},
    "target_accept": {"RHAT_HIGH", "DIVERGENCES"},
    "priors": {"RHAT_HIGH", "DIVERGENCES", "EBFMI_LOW"},
    "simpler": {"RHAT_HIGH", "ESS_BULK_LOW", "ESS_TAIL_LOW", "MAX_TREEDEPTH"},
}
_MAX_PARAMS_SHOWN = 8


@dataclass(frozen=True)
class GateVerdict:
    """05_diagnose's convergence verdict and what the run's ``diagnostics.gate`` made of it.

    Attributes
    ----------
    passed
        ``diagnostics.json``'s ``passed``; ``None`` when there is no diagnostics.json (05 did not run).
    gate
        The spec's ``diagnostics.gate`` (``warn`` or ``stop``).
    failed_checks
        Codes of the failed findings (``ESS_BULK_LOW``, ``RHAT_HIGH`` …), in the order 05 reported them.
    parameters
        Parameters named by the failed findings (their ``columns``), worst first, without repeats.
    messages
        The failed findings' messages (each names the worst parameters and values).
    remedies
        What to try, in order.
    """

    passed: bool | None
    gate: str = "warn"
    failed_checks: list[str] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    remedies: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Convergence checks ran and failed."""
        return self.passed is False

    @property
    def stops(self) -> bool:
        """The run must stop before 06_contribute."""
        return self.failed and self.gate == "stop"

    @property
    def outcome(self) -> str:
        """``passed``, ``warned`` (failed, run goes on, numbers provisional), ``stopped`` or ``unknown``."""
        if self.passed is None:
            return "unknown"
        if self.passed:
            return "passed"
        return "stopped" if self.gate == "stop" else "warned"

    def checks_text(self) -> str:
        """The failed checks in words, e.g. ``ESS bulk, ESS tail``."""
        return ", ".join(CHECK_LABELS.get(c, c) for c in self.failed_checks) or "unspecified checks"

    def parameters_text(self, limit: int = _MAX_PARAMS_SHOWN) -> str:
        """The failing parameters, at most ``limit`` of them, then how many more."""
        shown = ", ".join(self.parameters[:limit])
        more = len(self.parameters) - limit
        return shown + (f" and {more} more" if more > 0 else "")

    @property
    def reason(self) -> str:
        """One line: which checks failed on which parameters."""
        if not self.failed:
            return ""
        on = f" (parameters: {self.parameters_text()})" if self.parameters else ""
        return f"convergence checks failed: {self.checks_text()}{on}"

    def explain(self) -> str:
        """Several lines for a terminal: the reason, each failed check's message, and the remedies in order."""
        if not self.failed:
            return "convergence checks passed" if self.passed else "no diagnostics (05_diagnose has not run)"
        lines = [self.reason]
        lines += [f"  - {m}" for m in self.messages]
        if self.remedies:
            lines.append("what to try, in order:")
            lines += [f"  {i}. {r}" for i, r in enumerate(self.remedies, 1)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with ``outcome`` and ``reason`` (what ``status.json`` records)."""
        return {**asdict(self), "outcome": self.outcome, "reason": self.reason or None}


def remedies_for(failed_checks: list[str], spec: Mapping[str, Any] | None = None) -> list[str]:
    """The remedy steps for these failed checks, in the order to try them, with values from ``spec``.

    Parameters
    ----------
    failed_checks
        Codes of failed diagnostics findings.
    spec
        The run spec as a dict (``run_spec.json``), to suggest concrete values; defaults when omitted.
    """
    spec = spec or {}
    failed = set(failed_checks)
    draws, tune, chains = int(spec.get("draws", 1000)), int(spec.get("tune", 1000)), int(spec.get("chains", 2))
    ta = float(spec.get("target_accept", 0.9))
    model = spec.get("model") or {}
    more_draws, more_tune = max(1000, 2 * draws), max(1000, 2 * tune)
    longer = f"sample longer: raise tune (now {tune}) and draws (now {draws}), e.g. --set tune={more_tune} --set draws={more_draws}"
    if chains < 4:
        longer += " --set chains=4"
    next_ta = 0.95 if ta < 0.95 else 0.99
    text = {
        "sampler": "refit with nuts_sampler: pymc or nutpie; this sampler does not record every check",
        "longer": longer,
        "target_accept": f"raise target_accept (now {ta:g}) to {next_ta:g}: smaller steps, fewer divergences",
        "priors": "revisit the priors or reparameterise (model.priors, docs/MODEL.md); check the data for outliers",
        "simpler": "simplify the model: fewer drivers/controls"
        + (", model.transforms: fixed" if model.get("transforms") == "learned" else "")
        + (", model.level: brand" if model.get("level") == "entity" else "")
        + "; check media and controls for collinearity",
    }
    return [text[s] for s in _STEP_ORDER if failed & _STEP_CHECKS[s]]


def verdict(diagnostics: Mapping[str, Any] | None, spec: Mapping[str, Any] | None = None) -> GateVerdict:
    """The gate's view of ``diagnostics.json`` for a run made with ``spec`` (``run_spec.json`` as a dict).

    Only convergence decides (``passed``): a failed finding is one whose severity is not ``info``, except
    the model checks' findings (PSIS-LOO, posterior predictive; ``details["check"] == "model"``), which
    never change ``passed`` and are not the gate's business.
    """
    gate = str(((spec or {}).get("diagnostics") or {}).get("gate", "warn"))
    if diagnostics is None:
        return GateVerdict(passed=None, gate=gate)
    passed = diagnostics.get("passed")
    passed = None if passed is None else bool(passed)
    bad = [f for f in diagnostics.get("findings") or []
           if f.get("severity", "info") != "info" and (f.get("details") or {}).get("check") != "model"]
    params: list[str] = []
    for f in bad:
        params += [str(c) for c in f.get("columns") or [] if str(c) not in params]
    codes = [str(f.get("code")) for f in bad]
    return GateVerdict(
        passed=passed,
        gate=gate,
        failed_checks=codes,
        parameters=params,
        messages=[str(f.get("message", "")) for f in bad],
        remedies=remedies_for(codes, spec) if passed is False else [],
    )


def read_verdict(run_dir: str | Path) -> GateVerdict:
    """:func:`verdict` of a run folder (its ``diagnostics.json`` and ``run_spec.json``)."""
    import json

    def load(name: str) -> Any:
        p = Path(run_dir) / name
        try:
            return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
        except ValueError:
            return None

    return verdict(load("diagnostics.json"), load("run_spec.json"))


# Inline styles: the banner is a notebook output, shown in JupyterLab and in the nbconvert report alike.
_FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.45;color:#1f2328"
_BOX = {
    "failed": "background:#ffebe9;border:2px solid #cf222e;border-left:12px solid #cf222e",
    "missing": "background:#fff8c5;border:2px solid #d4a72c;border-left:12px solid #d4a72c",
}
_HEAD = {"failed": "color:#a40e26", "missing": "color:#7d4e00"}


class DiagnosticsBanner(str):
    """The verdict of 05_diagnose for a report page: plain text (``print`` it, or compare it as a string),
    and an HTML display (a red banner when the checks failed) where a notebook shows it.

    ``kind`` is ``passed``, ``failed`` or ``missing`` (no diagnostics.json).
    """

    kind: str
    html: str

    def __new__(cls, text: str, kind: str, html_text: str) -> "DiagnosticsBanner":
        obj = super().__new__(cls, text)
        obj.kind, obj.html = kind, html_text
        return obj

    def _repr_html_(self) -> str:
        return self.html

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython's text view: the text, not a quoted repr
        p.text(str(self))


def diagnostics_banner_for(
    diagnostics: Mapping[str, Any] | None, spec: Mapping[str, Any] | None = None, *,
    report_link: str = "05_diagnose.html",
) -> DiagnosticsBanner:
    """The banner a report after 05_diagnose opens with (see :class:`DiagnosticsBanner`).

    Parameters
    ----------
    diagnostics
        ``diagnostics.json`` as a dict, or ``None`` when it does not exist.
    spec
        The run spec as a dict, for concrete remedies.
    report_link
        Where the 05_diagnose report is, relative to the page (stage reports sit side by side in ``reports/``).
    """
    import html

    e = html.escape
    if diagnostics is None:
        text = "diagnostics.json not found: run 05_diagnose before relying on these numbers"
        body = (f'<div style="{_FONT};{_BOX["missing"]};border-radius:6px;padding:12px 16px;margin:6px 0">'
                f'<strong style="{_HEAD["missing"]};font-size:1.2em">No convergence verdict yet</strong>'
                f"<div>{e(text)}.</div></div>")
        return DiagnosticsBanner(text, "missing", body)
    v = verdict(diagnostics, spec)
    if not v.failed:
        text = "diagnostics passed"
        body = (f'<div style="{_FONT};color:#1a7f37;font-weight:600;margin:6px 0">&#10003; Convergence checks '
                f"passed (05_diagnose): these numbers come from a converged fit.</div>")
        return DiagnosticsBanner(text, "passed", body)
    text = "\n".join([
        "WARNING: diagnostics failed: treat these numbers as provisional (see the 05_diagnose report)",
        *(f"  {line}" for line in v.explain().splitlines()),
    ])
    where = f'<a href="{e(report_link)}">the 05_diagnose report</a> (<code>reports/05_diagnose.html</code> in the run folder)'
    msgs = "".join(f"<li>{e(m)}</li>" for m in v.messages)
    steps = "".join(f"<li>{e(r)}</li>" for r in v.remedies)
    params = f"<div><b>Parameters that failed:</b> {e(v.parameters_text())}</div>" if v.parameters else ""
    body = (
        f'<div role="alert" style="{_FONT};{_BOX["failed"]};border-radius:6px;padding:14px 18px;margin:6px 0">'
        f'<div style="{_HEAD["failed"]};font-size:1.45em;font-weight:800;letter-spacing:.01em">'
        f"&#9888; PROVISIONAL: the fit failed its convergence checks</div>"
        f'<div style="font-size:1.05em;margin:.4em 0"><b>Failed checks: {e(v.checks_text())}.</b> Every number on '
        f"this page (fit, ROI, response curves, contributions) comes from a posterior that did not converge and "
        f"may change once it does. Details: {where}.</div>{params}"
        f'<ul style="margin:.3em 0 .3em 1.2em;padding:0">{msgs}</ul>'
        + (f'<div><b>What to try, in order:</b></div><ol style="margin:.3em 0 0 1.2em;padding:0">{steps}</ol>'
           if steps else "")
        + "</div>"
    )
    return DiagnosticsBanner(text, "failed", body)


class GateStopped(RuntimeError):
    """``diagnostics.gate: stop`` and failed convergence checks: the run ended before contributions and ROI.

    ``verdict`` says which checks and parameters failed and what to try; ``result`` holds what was computed
    before the stop (for :func:`mmm_lib.pipeline.run_in_process`, the fit and its diagnostics).
    """

    def __init__(self, verdict: GateVerdict, result: Any = None):
        super().__init__(f"stopped by diagnostics.gate: stop: {verdict.explain()}")
        self.verdict, self.result = verdict, result


def report_top_banner(v: GateVerdict, report_link: str = "05_diagnose.html") -> str:
    """A red bar for the very top of a report page built on a fit that failed its convergence checks
    (the detailed banner, :func:`diagnostics_banner_for`, sits in the page's "Convergence check" section).
    Empty when the checks passed or did not run."""
    import html

    if not v.failed:
        return ""
    e = html.escape
    return (
        f'<div role="alert" style="{_FONT};{_BOX["failed"]};border-radius:6px;padding:12px 18px;margin:0 0 1em 0">'
        f'<div style="{_HEAD["failed"]};font-size:1.5em;font-weight:800">&#9888; PROVISIONAL NUMBERS</div>'
        f'<div style="font-size:1.05em">The fit behind this page failed its convergence checks '
        f"(<b>{e(v.checks_text())}</b>): every number below may change once it converges. See "
        f'<a href="#Convergence-check">Convergence check</a> below for what failed and what to try, and '
        f'<a href="{e(report_link)}">the 05_diagnose report</a>.</div></div>'
    )
