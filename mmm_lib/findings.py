"""Findings: what validation and diagnostics report (severity, code, message, remedy).

Shared by ``validation`` and ``diagnostics`` so both show the same table in reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pandas as pd

Severity = Literal["error", "warning", "info"]
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Finding:
    """One check result.

    Attributes
    ----------
    severity
        ``error`` stops the run, ``warning`` is shown prominently, ``info`` is context.
    code
        Stable identifier (e.g. ``MISSING_REQUIRED_COLUMN``, ``RHAT_HIGH``) documented in the README.
    message
        What is wrong, naming the column(s)/parameter(s) and example rows or values.
    remedy
        What the user should do about it.
    columns
        Columns (or parameters) concerned.
    rows
        Example row numbers (0-based, as in the input file's data rows), at most a handful.
    details
        Extra machine-readable values (metric, threshold, counts …).
    """

    severity: Severity
    code: str
    message: str
    remedy: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def count_by_severity(findings: list[Finding]) -> dict[str, int]:
    out = {"error": 0, "warning": 0, "info": 0}
    for f in findings:
        out[f.severity] += 1
    return out


def findings_table(findings: list[Finding] | list[dict[str, Any]]) -> pd.DataFrame:
    """Findings as a DataFrame sorted errors first (what notebooks display)."""
    rows = [f.to_dict() if isinstance(f, Finding) else dict(f) for f in findings]
    cols = ["severity", "code", "columns", "message", "remedy"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["columns"] = df["columns"].apply(lambda c: ", ".join(map(str, c)) if isinstance(c, (list, tuple)) else c)
    df["_o"] = df["severity"].map(SEVERITY_ORDER)
    return df.sort_values(["_o", "code"], kind="stable")[cols].reset_index(drop=True)
