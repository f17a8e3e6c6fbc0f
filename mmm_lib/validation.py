"""Check an input table before anything is fitted.

``validate(df, spec)`` checks a table as read by :func:`mmm_lib.raw_io.load_raw` (values as
written, not yet coerced) and returns a :class:`ValidationReport` of findings; any ``error`` stops
the run (``report.raise_if_errors()``), warnings are shown. Row numbers in messages are 0-based
data rows (the header is not counted; CSV line = row + 2).
Without a spec (``mmm datasets add``) roles come from the column prefixes, and the checks that
need a run's windows and model (SHORT_HISTORY, TOO_FEW_PERIODS, the data/parameter ratio) wait
for the run.

Files in another layout are checked as written, through the spec's ``columns`` mapping
(:mod:`mmm_lib.columns`): messages name the file's own columns (``geo``, ``time``, ``DATE``), a
file without an entity column is one entity, and a multiplied target (``conversions ×
revenue_per_conversion``) is checked column by column, then as the product at brand level.
``entity_id`` and ``period_start`` below stand for the mapped columns.

Finding codes
-------------

| code | severity | meaning | fix |
|---|---|---|---|
| EMPTY_DATA | error | the table has no rows or no columns | export the data again with a header and data rows |
| WRONG_DELIMITER | error | one or two columns whose names hold ``;``, tab, pipe or ``,``: the file was read with the wrong delimiter (the detected one is named) | read it as CSV (the delimiter is detected) or save it with ``,`` between columns |
| DUPLICATE_COLUMN_NAME | error | two columns share a name | rename or drop one of them |
| MISSING_REQUIRED_COLUMN | error | the entity, period or target column (or ``columns.target_multiplier``) is absent, named as in the spec | rename the column (a close name is suggested), or map it: ``columns.entity`` (null for one series), ``columns.period``, ``target_col`` |
| MISSING_SPEC_COLUMN | error | a driver, control or ``spend_cols`` column of the spec is absent | fix the name in the spec or the file (a close name is suggested) |
| ROLE_CONFLICT | error | one column has two roles (e.g. target and driver, a key column as a control); a driver may be its own spend | give each column one role in the spec |
| ENCODING_SUSPECT | warning / info | names or entities that look mis-decoded (``'Ã©'``, ``'�'``; warning), or non-UTF-8 text read in a guessed encoding (info) | save the file as UTF-8 (Excel: CSV UTF-8) |
| DATA_FILTER | info | the spec's ``data_filter`` kept N of M rows of the file (which values of which columns) | change ``data_filter`` to fit other rows |
| ENTITY_ID_MISSING | error | rows with an empty ``entity_id`` | fill in the entity (one constant value for a single series) |
| DATE_MISSING | error | rows with an empty ``period_start`` | fill in the date or drop the rows |
| DATE_UNPARSEABLE | error | ``period_start`` values that are not dates | write dates as YYYY-MM-DD |
| DATE_MIXED_FORMATS | error | ``period_start`` mixes formats (ISO and DD/MM/YYYY …) | write every date as YYYY-MM-DD |
| DATE_AMBIGUOUS_FORMAT | warning | day/month order could not be read from the values | check the chosen order; write dates as YYYY-MM-DD |
| NON_NUMERIC_VALUE | error | text in a numeric column (``'1,200'``, ``'—'``) | write plain numbers: ``.`` decimals, no thousands separators or units |
| MISSING_VALUE | error | empty/NA values in a target, driver, spend or control column | fill them (0 for no activity; interpolate a control) or drop the period |
| INFINITE_VALUE | error | ``inf`` in a numeric column | replace with the real value |
| NEGATIVE_VALUE | error | negative target, activity or spend | correct the rows (returns/credits belong elsewhere) |
| DUPLICATE_PERIOD | error | two rows for the same entity and ``period_start`` | keep one row per entity and period |
| GRAIN_MISMATCH | error | date spacing does not fit the grain (daily data, or MONTH vs WEEK) | set ``grain`` to match, or aggregate the data to weeks/months first |
| PERIOD_NOT_ALIGNED | warning | weekly dates on different weekdays / monthly dates not on the 1st | canonicalize moves them to the period start; check they are not typos |
| DUPLICATE_PERIOD_AFTER_ALIGNMENT | error | two rows of an entity fall in the same week/month | keep one row per entity and period |
| ENTITY_PERIOD_GAP | warning | an entity misses periods inside its own date range | add the rows (0 activity if none); otherwise the brand total dips |
| BRAND_PERIOD_GAP | error | no entity has data for a period inside the windows (warning before them, or without a spec) | add the missing periods or shorten the windows |
| ENTITY_PARTIAL_COVERAGE | warning | an entity starts late or stops early inside the windows | check it; its entry/exit shifts the brand total |
| ENTITY_FEW_ROWS | warning | an entity has under half the median rows per entity | check the entity's data, or drop it |
| TOO_FEW_PERIODS | error | fewer estimation periods than model parameters | add history, lengthen the estimation window or simplify the model |
| SHORT_HISTORY | warning | data shorter than carryover + estimation months | add history or shorten the windows (the run uses what exists) |
| LOW_DATA_PARAMETER_RATIO | warning | fewer than 5 estimation periods per model parameter | add history or use fewer drivers/controls/seasonality terms |
| DATA_PARAMETER_RATIO | info | estimation periods per model parameter | — |
| TARGET_ALL_ZERO | error | the target is 0 throughout the estimation window | check the target column |
| TARGET_CONSTANT | error | the target never changes in the estimation window | check the target column |
| CHANNEL_ALL_ZERO | warning | a driver is 0 throughout the estimation window | drop it from drivers (its effect cannot be estimated) |
| CHANNEL_CONSTANT | warning | a driver never changes in the estimation window | drop it from drivers (indistinguishable from the baseline) |
| SPEND_ALL_ZERO | warning | a driver's spend is 0 throughout the estimation window | check the spend column; ROI is undefined |
| CONTROL_CONSTANT | error | a control never changes in the estimation window | remove it from controls (it cannot be standardized) |
| DRIVER_WITHOUT_SPEND | warning | a driver has no spend column | add ``spend_X`` or map it with ``spend_cols``; else no ROI for it |
| SPEND_WITHOUT_DRIVER | info | a spend column matches no driver | add its ``act_`` column to drivers if it should be modelled |
| UNUSED_COLUMN | info | columns no role uses | add them to drivers/controls if they matter |
| SPEND_WITH_ZERO_ACTIVITY | warning | spend > 0 in rows where the driver's activity is 0 | check the activity data for those rows |
| DRIVERS_COLLINEAR | warning | two drivers have abs(correlation) >= 0.99 (brand level) | combine them into one driver or drop one |
| HIGH_VIF | warning | variance inflation factor > 10 among drivers + controls (brand level, estimation window); names the columns and their VIFs | drop or combine overlapping drivers, or remove controls that restate a driver |
| SALES_OUTLIER | warning | robust z of log target > 5 within an entity | check for entry errors (extra zeros, units); real events may stay |
| CHECKS_SKIPPED | info | later checks skipped because of an earlier error | fix the errors and validate again |
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .canonicalize import (
    ParsedDates,
    align_to_grain,
    compute_windows,
    parse_period_start,
    period_range,
    resolve_roles,
    spend_for,
)
from .columns import ENTITY_COL, PERIOD_COL, SINGLE_ENTITY, column_map, standard_name_conflicts, suggest
from .findings import Finding, count_by_severity, findings_table
from .spec import FeatureConfig, RunSpec, WindowsConfig

COLLINEAR_CORR = 0.99  # |corr| between drivers above which the model cannot tell them apart
VIF_HIGH = 10.0  # variance inflation factor (drivers + controls, brand level) above which effects are unstable
OUTLIER_Z = 5.0  # robust z (median/MAD) on log1p(target) per entity
MIN_DATA_PER_PARAM = 5.0  # estimation periods per parameter below which a warning is raised
FEW_ROWS_FRACTION = 0.5  # entity rows below this share of the median rows per entity
N_EXAMPLES = 5  # example rows shown in a message

_NA_TOKENS = {"na", "n/a", "nan", "null", "none", "#n/a", "-", "nat"}


class DataValidationError(ValueError):
    """The data failed validation; the message lists each error code, column and remedy.

    In a notebook the error prints as ``short`` (one line, no Python traceback): the report shows the
    findings table right above it, so the stack of library frames would only push it off the page. The
    message itself (``str(exc)``, what ``mmm run`` prints and ``status.json`` records) keeps every error.
    """

    def __init__(self, message: str, short: str | None = None):
        super().__init__(message)
        self.short = short or message.splitlines()[0]

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of the traceback (InteractiveShell.showtraceback).
        return f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.short}".splitlines()


# --------------------------------------------------------------------------- report


@dataclass
class ValidationReport:
    """Findings of :func:`validate` plus the facts shown in the overview table.

    Attributes
    ----------
    findings
        All findings, in check order (highest priority first).
    n_rows, n_entities, n_periods
        Data rows, distinct ``entity_id`` values and distinct ``period_start`` dates.
    roles
        ``{"target", "drivers", "controls", "spend": {driver: spend_col | None}}`` (from the spec,
        or inferred from the ``act_``/``ctrl_``/``spend_`` prefixes).
    grain
        The spec's grain, or the one inferred from the date spacing.
    date_start, date_end
        First and last ``period_start`` (ISO) when the dates could be read.
    n_estimation, n_parameters
        Periods in the estimation window and the number of model parameters, when known.
    columns
        The spec's column mapping (:meth:`mmm_lib.columns.ColumnMap.to_dict`): the file's entity,
        period and target columns and the target multiplier.
    """

    findings: list[Finding] = field(default_factory=list)
    n_rows: int = 0
    n_entities: int = 0
    n_periods: int = 0
    roles: dict[str, Any] = field(default_factory=dict)
    grain: str | None = None
    date_start: str | None = None
    date_end: str | None = None
    n_estimation: int | None = None
    n_parameters: int | None = None
    columns: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no error finding."""
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def codes(self) -> list[str]:
        """The finding codes, in order (handy in tests and logs)."""
        return [f.code for f in self.findings]

    def summary(self, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``validation_summary.json`` object (docs/DESIGN.md), plus ``grain``, ``date_range``,
        ``columns`` (the column mapping) and ``source`` (from :func:`mmm_lib.raw_io.keep_source`, when given)."""
        out = {
            "ok": self.ok,
            "n_rows": self.n_rows,
            "n_entities": self.n_entities,
            "n_periods": self.n_periods,
            "roles": self.roles,
            "counts": count_by_severity(self.findings),
            "findings": [f.to_dict() for f in self.findings],
            "grain": self.grain,
            "date_range": {"start": self.date_start, "end": self.date_end},
            "columns": self.columns,
        }
        if source is not None:
            out["source"] = source
        return out

    def table(self) -> pd.DataFrame:
        """Findings as a table, errors first."""
        return findings_table(self.findings)

    def table_view(self) -> Any:
        """:meth:`table` styled for a report: whole messages (a plain display cuts them at 50
        characters), HTML-escaped (they quote the file's column names and values)."""
        return _view(self.table())

    def findings_view(self) -> Any:
        """The verdict box (red with the error count when validation failed, green when it passed) over
        the findings table, errors first and tinted: what the report shows before the run stops."""
        from html import escape

        from IPython.display import HTML

        c = count_by_severity(self.findings)
        if self.ok:
            w = c["warning"]
            note = (f"{w} warning{'s' if w != 1 else ''} below: read {'them' if w != 1 else 'it'} before trusting "
                    "the results." if w else "No warnings; the info rows below give context.")
            box = ("<div style='border:2px solid #1a7f37;background:#dafbe1;border-radius:6px;padding:.6em 1em;"
                   f"margin:.5em 0'><strong style='color:#1a7f37'>Validation passed.</strong> {note}</div>")
        else:
            n = c["error"]
            box = ("<div role='alert' style='border:2px solid #cf222e;background:#ffebe9;border-radius:6px;"
                   "padding:.6em 1em;margin:.5em 0'><strong style='color:#a40e26;font-size:1.15em'>"
                   f"Validation failed: {n} error{'s' if n != 1 else ''}. The run stops after this notebook."
                   "</strong><br>Each error row below names the column, example rows and, under "
                   "<em>remedy</em>, what to change in the file or the run spec; fix them and run again.</div>")
        if not self.findings:
            return HTML(box)
        tint = {"error": "background-color:#ffebe9", "warning": "background-color:#fff8c5", "info": ""}
        styled = _view(self.table()).apply(
            lambda row: [tint.get(row["severity"], "")] * len(row), axis=1
        ).map(lambda v: "font-weight:700", subset=["severity", "code"])
        return HTML(box + styled.to_html())

    def overview_view(self) -> Any:
        """:meth:`overview_table` styled like :meth:`table_view`, counts with thousands separators."""
        t = self.overview_table()
        t["value"] = t["value"].map(lambda v: f"{int(v):,}" if isinstance(v, str) and v.isdigit() else v)
        return _view(t)

    def overview_table(self) -> pd.DataFrame:
        """Rows, entities, periods, date range, grain and roles as a two-column table."""
        spend = self.roles.get("spend", {})
        c = self.columns
        keys = []
        if c and (c.get("entity") != ENTITY_COL or c.get("period") != PERIOD_COL):
            keys = [("entity column", c.get("entity") or f"none (one series: entity {SINGLE_ENTITY!r})"),
                    ("period column", c.get("period"))]
        target = self.roles.get("target")
        if c.get("target_multiplier"):
            target = f"{c.get('target_name')} = {c.get('target')} × {c.get('target_multiplier')}"
        items = [
            ("rows", self.n_rows),
            *keys,
            ("entities", self.n_entities),
            ("periods", self.n_periods),
            ("date range", f"{self.date_start} – {self.date_end}" if self.date_start else "unreadable"),
            ("grain", self.grain),
            ("target", target),
            ("drivers", ", ".join(self.roles.get("drivers", [])) or "none"),
            ("spend", ", ".join(f"{d} → {s or '—'}" for d, s in spend.items()) or "none"),
            ("controls", ", ".join(self.roles.get("controls", [])) or "none"),
        ]
        if self.n_estimation is not None:
            items.append(("estimation periods", self.n_estimation))
        if self.n_parameters is not None:
            items.append(("model parameters", self.n_parameters))
        counts = count_by_severity(self.findings)
        items.append(("findings", f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} info"))
        return pd.DataFrame(items, columns=["item", "value"]).astype({"value": str})

    def headline(self) -> str:
        """One line: passed/failed and the counts."""
        c = count_by_severity(self.findings)
        state = "passed" if self.ok else "FAILED"
        return (
            f"validation {state}: {self.n_rows} rows, {self.n_entities} entities, {self.n_periods} periods; "
            f"{c['error']} errors, {c['warning']} warnings, {c['info']} info"
        )

    def raise_if_errors(self) -> None:
        """Raise :class:`DataValidationError` listing every error (code, columns, message, fix)."""
        errs = self.errors
        if not errs:
            return
        lines = [f"data validation found {len(errs)} error(s); fix them and run again:"]
        for f in errs:
            cols = f" [{', '.join(f.columns)}]" if f.columns else ""
            lines.append(f"  - {f.code}{cols}: {f.message}" + (f" Fix: {f.remedy}" if f.remedy else ""))
        codes = ", ".join(dict.fromkeys(f.code for f in errs))
        short = (f"data validation found {len(errs)} error(s); the run stops here.\n"
                 f"  {codes}: the findings table above says what to fix.")
        raise DataValidationError("\n".join(lines), short=short)


# --------------------------------------------------------------------------- helpers


def _view(df: pd.DataFrame) -> Any:
    return (
        df.style.hide(axis="index")
        .format(escape="html")
        .set_properties(**{"text-align": "left", "white-space": "normal", "vertical-align": "top"})
        .set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
    )


def infer_roles(columns: Any, target: str = "sales") -> dict[str, Any]:
    """Roles from column prefixes: ``act_*`` drivers, ``ctrl_*`` controls, ``spend_X`` for ``act_X``."""
    cols = [str(c) for c in columns]
    drivers = [c for c in cols if c.startswith("act_")]
    return {
        "target": target,
        "drivers": drivers,
        "controls": [c for c in cols if c.startswith("ctrl_")],
        "spend": {d: spend_for(d, cols) for d in drivers},
    }


def _rows(idx: Any, n: int = N_EXAMPLES) -> list[int]:
    return [int(i) for i in list(idx)[:n]]


def _fmt_val(v: Any) -> str:
    if isinstance(v, str):
        return repr(v if len(v) <= 24 else v[:21] + "...")
    if isinstance(v, (float, np.floating)):
        return _num(float(v))
    return repr(v)


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1e5 else f"{v:.6g}"


def _examples(idx: Any, values: pd.Series | None = None, n: int = N_EXAMPLES) -> str:
    rows = list(idx)[:n]
    more = " …" if len(idx) > n else ""
    if values is None:
        return ", ".join(map(str, rows)) + more
    return ", ".join(str(r) for r in rows) + ": " + ", ".join(_fmt_val(values.iloc[r]) for r in rows) + more


def _n(k: int, word: str, plural: str | None = None) -> str:
    """``1 row`` / ``3 rows``."""
    return f"{k} {word if k == 1 else (plural or word + 's')}"


def _at(idx: Any, values: pd.Series | None = None, n: int = N_EXAMPLES) -> str:
    """``row 4: 'n/a'`` or ``rows 4, 17, 52: 'n/a', '1,200', '—'``."""
    return ("row " if len(idx) == 1 else "rows ") + _examples(idx, values, n)


_suggest = suggest


def _iso(ts: Any) -> str:
    return pd.Timestamp(ts).date().isoformat()


def _n_parameters(spec: RunSpec, n_entities: int) -> tuple[int, str]:
    """The model's parameter count, asked of the model's own prior registry."""
    from .model import parameter_count

    n, per = parameter_count(spec, n_entities)
    return n, ", ".join(f"{k} {v}" for k, v in per.items() if v)


class _Ctx:
    """State shared by the checks of one :func:`validate` call."""

    def __init__(self, df: pd.DataFrame, spec: RunSpec | None) -> None:
        self.df = df
        self.spec = spec
        self.columns = [str(c) for c in df.columns]
        self.roles = resolve_roles(spec, self.columns) if spec else infer_roles(self.columns)
        # The file's own key and target columns (the spec's `columns` mapping): messages name these.
        self.cmap = column_map(spec)
        self.entity_col: str | None = self.cmap.entity
        self.period_col: str = self.cmap.period
        self.windows = spec.windows if spec else WindowsConfig()
        self.features = spec.feature_config if spec else FeatureConfig()
        self.control_agg = dict(spec.control_aggregation) if spec else {}
        self.grain: str | None = spec.grain if spec else None
        self.findings: list[Finding] = []
        self.skipped: list[str] = []
        self.entity: pd.Series | None = None
        self.dates: ParsedDates | None = None
        self.aligned: pd.Series | None = None
        self.time_ok = False
        self.num: dict[str, pd.Series] = {}
        self.brand: pd.DataFrame | None = None
        self.win: dict[str, pd.Timestamp] | None = None
        self.n_est: int | None = None
        self.n_params: int | None = None

    def add(self, severity: str, code: str, message: str, remedy: str, columns: list[str] | None = None,
            rows: Any = (), **details: Any) -> None:
        self.findings.append(Finding(severity, code, message, remedy, list(columns or []), _rows(rows), details))

    @property
    def target(self) -> str:
        return self.roles["target"]

    def present(self, cols: list[str]) -> list[str]:
        return [c for c in cols if c in self.columns]

    def spend_cols(self) -> list[str]:
        return list(dict.fromkeys(s for s in self.roles["spend"].values() if s and s in self.columns))

    @property
    def target_label(self) -> str:
        """``'sales'`` or ``'revenue' (= conversions × revenue_per_conversion)``."""
        return self.cmap.target_label

    @property
    def key_cols(self) -> list[str]:
        """The file's entity (if any) and period columns."""
        return [c for c in (self.entity_col, self.period_col) if c is not None]

    @property
    def entity_cols(self) -> list[str]:
        return [self.entity_col] if self.entity_col is not None else []

    def numeric_roles(self) -> list[str]:
        """The file's numeric columns: the target's source column(s), drivers, spend, controls."""
        return list(dict.fromkeys(self.present([*self.cmap.target_sources, *self.roles["drivers"], *self.spend_cols(),
                                                *self.roles["controls"]])))

    def brand_cols(self) -> list[str]:
        """The columns summed/averaged to brand level: the modelled target, drivers, spend, controls."""
        cols = [self.target, *self.roles["drivers"], *self.spend_cols(), *self.roles["controls"]]
        return list(dict.fromkeys(c for c in cols if c in self.num))


# --------------------------------------------------------------------------- checks: structure

_DELIM_NAMES = {";": "';'", "\t": "tab", "|": "'|'", ",": "','"}
# UTF-8 text decoded as Windows-1252/Latin-1 (e.g. 'Ã©' for 'é', 'â€“' for '–'), or undecodable bytes.
_MOJIBAKE = re.compile("Ã[\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]|â€|Â[\u00a0-\u00bf]|\ufffd")


def _check_delimiter(ctx: _Ctx) -> bool:
    """A table read with the wrong delimiter: one or two columns whose names hold the real separator.

    Returns True when found (the other checks would only repeat it as missing columns).
    """
    if len(ctx.columns) > 2:
        return False
    for col in ctx.columns:
        counts = {d: col.count(d) for d in _DELIM_NAMES if col.count(d)}
        if not counts:
            continue
        delim = max(counts, key=counts.get)  # type: ignore[arg-type]
        fields = [f.strip() for f in col.split(delim)]
        if len(fields) < 3 or sum(bool(f) for f in fields) < 3:
            continue
        shown = col if len(col) <= 60 else col[:57] + "..."
        ctx.add("error", "WRONG_DELIMITER",
                f"the table has {_n(len(ctx.columns), 'column')}; column {shown!r} holds {len(fields)} names separated by "
                f"{_DELIM_NAMES[delim]}: the file is {_DELIM_NAMES[delim]}-separated but was read with another delimiter",
                f"read it as {_DELIM_NAMES[delim]}-separated: point data_path at the CSV file itself (the delimiter "
                f"is detected), or save it again with ',' between columns; a Parquet file needs one column per field",
                [col], detected_delimiter=delim, fields=fields[:20])
        ctx.skipped.append("every other check (the columns could not be told apart)")
        ctx.add("info", "CHECKS_SKIPPED", "skipped " + "; ".join(ctx.skipped),
                "fix the errors above and validate again to run these checks")
        return True
    return False


def _check_encoding(ctx: _Ctx, source_format: dict[str, Any]) -> None:
    """Names that show a text-encoding mix-up (mojibake), or non-UTF-8 text whose encoding was guessed."""
    texts = list(ctx.columns)
    if ctx.entity is not None:
        texts += [str(v) for v in pd.unique(ctx.entity)[:1000]]
    enc = source_format.get("encoding")
    bad = [t for t in texts if _MOJIBAKE.search(t)]
    if bad:
        read_as = f" (the file was read as {enc})" if enc else ""
        ctx.add("warning", "ENCODING_SUSPECT",
                f"{_n(len(bad), 'name')} {'looks' if len(bad) == 1 else 'look'} like text in the wrong encoding{read_as}: "
                f"{', '.join(repr(b) for b in bad[:N_EXAMPLES])}{' …' if len(bad) > N_EXAMPLES else ''}",
                "save the file as UTF-8 (Excel: Save As > CSV UTF-8) from the original source, then run again",
                [b for b in bad if b in ctx.columns][:20], encoding=enc)
    elif enc and not enc.startswith(("utf-8", "utf-16")):
        non_ascii = [t for t in texts if not t.isascii()]
        if non_ascii:
            ctx.add("info", "ENCODING_SUSPECT",
                    f"the file is not UTF-8; it was read as {enc}: check that names such as "
                    f"{', '.join(repr(t) for t in non_ascii[:3])} look right",
                    "if they do not, save the file as UTF-8 (Excel: Save As > CSV UTF-8)", [], encoding=enc)


def _note_filter(ctx: _Ctx, kept: dict[str, Any] | None) -> None:
    """Say which rows the spec's data_filter kept (:func:`mmm_lib.raw_io.select_rows`), so the report shows it."""
    if not kept:
        return
    what = "; ".join(f"{c} is {' or '.join(map(repr, v))}" for c, v in kept["filter"].items())
    ctx.add("info", "DATA_FILTER",
            f"data_filter kept {kept['rows_kept']:,} of {kept['rows_read']:,} rows of the file: those where {what}",
            "to fit other rows, change data_filter in the spec", list(kept["filter"]), **kept)


def _check_columns(ctx: _Ctx) -> None:
    cols = ctx.columns
    fixes = {
        "columns.entity": (
            f"rename the file's entity column (store, region, geo or SKU) to {ctx.entity_col!r}, or name it with "
            "columns.entity in the spec; for a file that is one series set columns.entity: null"),
        "columns.period": (
            f"rename the file's date column to {ctx.period_col!r}, or name it with columns.period in the spec "
            "(e.g. columns: {period: DATE}); it holds the first day of each week or month"),
        "target_col": (
            f"rename the target column to {ctx.cmap.target!r}, or set target_col in the spec to the column holding sales"),
        "columns.target_multiplier": (
            "fix columns.target_multiplier in the spec (the per-unit value, e.g. revenue_per_conversion), "
            "or remove it to model the target as it is"),
    }
    for name, key, role in ctx.cmap.required():
        if name not in cols:
            named = "" if ctx.cmap.is_default or key == "target_col" else f" ({key} in the spec)"
            ctx.add("error", "MISSING_REQUIRED_COLUMN",
                    f"required {role} column {name!r}{named} is missing{_suggest(name, cols)}",
                    fixes[key], [name], available=cols[:50], spec_key=key)
    if ctx.spec is None:
        return
    for role, names in [("driver", ctx.spec.drivers), ("control", ctx.spec.controls)]:
        for name in names:
            if name not in cols:
                ctx.add("error", "MISSING_SPEC_COLUMN",
                        f"{role} {name!r} named in the spec is not a column of the data{_suggest(name, cols)}",
                        f"fix the name in the spec's {role}s list or in the file's header", [name])
    for driver, spend in ctx.spec.spend_cols.items():
        if spend not in cols:
            ctx.add("error", "MISSING_SPEC_COLUMN",
                    f"spend column {spend!r} (spend_cols for {driver!r}) is not a column of the data{_suggest(spend, cols)}",
                    "fix spend_cols in the spec or the file's header", [spend])


def _check_roles(ctx: _Ctx) -> None:
    r = ctx.roles
    uses: dict[str, list[str]] = {}
    for col, role in [(r["target"], "target"), *[(d, "driver") for d in r["drivers"]],
                      *[(c, "control") for c in r["controls"]],
                      *[(s, f"spend of {d}") for d, s in r["spend"].items() if s]]:
        uses.setdefault(col, []).append(role)
    if ctx.cmap.multiplier is not None:
        uses.pop(r["target"], None)  # the modelled target is computed, not a column of the file
        uses.setdefault(ctx.cmap.target, []).append("target")
        uses.setdefault(ctx.cmap.multiplier, []).append("target multiplier")
    for key, what in ((ctx.entity_col, "entity key"), (ctx.period_col, "period key")):
        if key is not None:
            uses.setdefault(key, []).append(what)
    for col, roles in uses.items():
        # A driver given only as spend (Robyn's tv_S) is its own spend column: one role, not two.
        distinct = [x for x in dict.fromkeys(roles) if not (x == f"spend of {col}" and "driver" in roles)]
        if len(distinct) > 1 and not all(x.startswith("spend of") for x in distinct):
            ctx.add("error", "ROLE_CONFLICT", f"column {col!r} has more than one role: {', '.join(distinct)}",
                    "give each column exactly one role in the spec (columns, target_col, drivers, controls, spend_cols)",
                    [col])
    if ctx.spec is not None:
        for col, msg in standard_name_conflicts(ctx.spec):
            ctx.add("error", "ROLE_CONFLICT", msg, "give each column exactly one role (rename it in the file or the spec)",
                    [col])


def _check_entity(ctx: _Ctx) -> None:
    ek = ctx.entity_col
    if ek is None:  # one series: every row is the same entity
        ctx.entity = pd.Series(SINGLE_ENTITY, index=ctx.df.index, dtype="str")
        return
    if ek not in ctx.columns:
        return
    e = ctx.df[ek]
    bad = e.isna() | (e.astype(str).str.strip() == "")
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        ctx.add("error", "ENTITY_ID_MISSING", f"column {ek!r} (the entity) is empty in {_n(len(idx), 'row')} ({_at(idx)})",
                "fill in the entity of every row, or drop those rows (for a file that is one series set "
                "columns.entity: null in the spec)", [ek], idx)
    ctx.entity = e.astype(str).str.strip()


def _check_dates(ctx: _Ctx) -> None:
    pk = ctx.period_col
    if pk not in ctx.columns:
        return
    raw = ctx.df[pk]
    p = parse_period_start(raw, ctx.grain)  # type: ignore[arg-type]
    ctx.dates = p
    if p.missing:
        ctx.add("error", "DATE_MISSING", f"column {pk!r} is empty in {_n(len(p.missing), 'row')} ({_at(p.missing)})",
                "fill in the period's start date (YYYY-MM-DD) or drop those rows", [pk], p.missing)
    if p.unparseable:
        vals = raw.reset_index(drop=True)
        numeric_like = pd.to_numeric(vals.iloc[p.unparseable], errors="coerce").notna().any()
        hint = " (numbers like 44564 are Excel date serials: format the column as a date before exporting)" if numeric_like else ""
        ctx.add("error", "DATE_UNPARSEABLE",
                f"column {pk!r} has {_n(len(p.unparseable), 'value')} that "
                f"{'is not a date' if len(p.unparseable) == 1 else 'are not dates'} "
                f"({_at(p.unparseable, vals)}){hint}",
                "write every date as YYYY-MM-DD (e.g. 2024-01-01)", [pk], p.unparseable)
    if p.mixed:
        parts = "; ".join(f"{lab}: {_n(len(rows), 'row')} (e.g. {_at(rows, raw.reset_index(drop=True), 3)})"
                          for lab, rows in sorted(p.formats.items(), key=lambda kv: -len(kv[1])))
        minority = sorted(p.formats.items(), key=lambda kv: len(kv[1]))[0][1]
        ctx.add("error", "DATE_MIXED_FORMATS", f"column {pk!r} mixes {len(p.formats)} date formats — {parts}",
                "write every date in one format, preferably YYYY-MM-DD; mixed formats make day and month ambiguous",
                [pk], minority, formats={k: len(v) for k, v in p.formats.items()})
    if p.ambiguous and not p.mixed:
        ctx.add("warning", "DATE_AMBIGUOUS_FORMAT", f"column {pk!r}: {p.ambiguous}",
                "check the dates in the overview figure; write them as YYYY-MM-DD to remove the doubt", [pk])


# --------------------------------------------------------------------------- checks: values


_THOUSANDS = re.compile(r"^-?\d{1,3}([,.' ]\d{3})+([.,]\d+)?$")
_DEC_COMMA = re.compile(r"^-?\d+,\d+$")
_UNITS = re.compile(r"[$€£%]|[A-Za-z]{2,}")


def _non_numeric_remedy(values: list[str]) -> str:
    tips = []
    if any(_THOUSANDS.match(v) for v in values):
        tips.append("remove thousands separators (if ',' is your decimal separator, use '.' instead)")
    elif any(_DEC_COMMA.match(v) for v in values):
        tips.append("use '.' as the decimal separator")
    if any(_UNITS.search(v) for v in values):
        tips.append("remove currency symbols, units and notes")
    tips.append("write plain numbers (leave a cell empty only if the value is truly unknown)")
    return "; ".join(tips)


def _check_numeric(ctx: _Ctx) -> None:
    sources = ctx.cmap.target_sources
    nonneg = set(ctx.present([*sources, *ctx.roles["drivers"], *ctx.spend_cols()]))
    for col in ctx.numeric_roles():
        s = ctx.df[col].reset_index(drop=True)
        if pd.api.types.is_bool_dtype(s.dtype):
            num = s.astype("float64")
        elif pd.api.types.is_numeric_dtype(s.dtype):
            num = s.astype("float64")
        else:
            num = pd.to_numeric(s, errors="coerce").astype("float64")
            text = s.astype(str).str.strip()
            is_na_token = s.isna() | text.str.lower().isin(_NA_TOKENS) | (text == "")
            bad = num.isna() & ~is_na_token
            if bad.any():
                idx = np.flatnonzero(bad.to_numpy())
                shown = text.iloc[idx[:N_EXAMPLES]].tolist()
                ctx.add("error", "NON_NUMERIC_VALUE",
                        f"column {col!r} has {_n(len(idx), 'non-numeric value')} ({_at(idx, s)})",
                        _non_numeric_remedy(shown), [col], idx, count=int(len(idx)))
        ctx.num[col] = num
        na = np.flatnonzero(num.isna().to_numpy() & ~_nonnum_mask(ctx, col, s))
        if len(na):
            written = "" if pd.api.types.is_numeric_dtype(s.dtype) else f": {', '.join(_fmt_val(s.iloc[r]) if not pd.isna(s.iloc[r]) else 'empty' for r in na[:N_EXAMPLES])}"
            if col in sources:
                fix = "fill in the true values, or drop the period for every entity"
            elif col in ctx.roles["controls"]:
                fix = "fill them (e.g. interpolate), or drop the period for every entity"
            else:
                fix = "fill them with 0 if there was no activity, or drop the period for every entity"
            ctx.add("error", "MISSING_VALUE",
                    f"column {col!r} has {_n(len(na), 'missing value')} ({_at(na)}{written})",
                    fix, [col], na,
                    count=int(len(na)))
        inf = np.flatnonzero(np.isinf(num.to_numpy()))
        if len(inf):
            ctx.add("error", "INFINITE_VALUE", f"column {col!r} has {_n(len(inf), 'infinite value')} ({_at(inf)})",
                    "replace them with the real values", [col], inf)
        if col in nonneg:
            neg = np.flatnonzero((num < 0).to_numpy())
            if len(neg):
                what = ("target" if col == ctx.cmap.target else "target multiplier" if col in sources
                        else "spend" if col in ctx.spend_cols() else "activity")
                ctx.add("error", "NEGATIVE_VALUE",
                        f"column {col!r} ({what}) has {_n(len(neg), 'negative value')} ({_at(neg, num)})",
                        f"{what} cannot be negative: correct these rows (net out returns or credits before export)",
                        [col], neg, count=int(len(neg)))
    cm = ctx.cmap
    if cm.multiplier is not None and cm.target in ctx.num and cm.multiplier in ctx.num:
        # The modelled target (e.g. revenue = conversions x revenue_per_conversion), for the brand-level checks.
        ctx.num[cm.target_name] = ctx.num[cm.target] * ctx.num[cm.multiplier]


def _nonnum_mask(ctx: _Ctx, col: str, s: pd.Series) -> np.ndarray:
    """Rows already reported as NON_NUMERIC_VALUE (not counted again as missing)."""
    if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        return np.zeros(len(s), dtype=bool)
    text = s.astype(str).str.strip()
    is_na_token = s.isna() | text.str.lower().isin(_NA_TOKENS) | (text == "")
    return (pd.to_numeric(s, errors="coerce").isna() & ~is_na_token).to_numpy()


# --------------------------------------------------------------------------- checks: time


def _spacing_days(dates: pd.Series, entity: pd.Series) -> float | None:
    frame = pd.DataFrame({"e": entity.to_numpy(), "d": dates.to_numpy()}).dropna().drop_duplicates()
    if frame.empty:
        return None
    frame = frame.sort_values(["e", "d"])
    diffs = frame.groupby("e")["d"].diff().dropna()
    diffs = diffs[diffs > pd.Timedelta(0)]
    if diffs.empty:
        return None
    return float(diffs.median() / pd.Timedelta(days=1))


def _check_time(ctx: _Ctx) -> None:
    p, e = ctx.dates, ctx.entity
    if p is None or e is None:
        return
    if not p.ok:
        ctx.skipped.append(f"duplicate periods, grain, gaps, windows and window-level checks ({ctx.period_col!r} must be readable)")
        return
    d = p.values
    dup = pd.DataFrame({"e": e.to_numpy(), "d": d.to_numpy()}).duplicated(keep=False)
    if dup.any():
        idx = np.flatnonzero(dup.to_numpy())
        first = idx[0]
        ctx.add("error", "DUPLICATE_PERIOD",
                (f"{_n(len(idx), 'row')} repeat an ({', '.join(ctx.key_cols)}) pair, e.g. {e.iloc[first]!r} {_iso(d.iloc[first])} "
                 if ctx.entity_col else
                 f"{_n(len(idx), 'row')} repeat a {ctx.period_col!r} date, e.g. {_iso(d.iloc[first])} ") + f"({_at(idx)})",
                "keep one row per entity and period (sum split rows, drop copies)" if ctx.entity_col
                else "keep one row per period (sum split rows, drop copies)", ctx.key_cols, idx,
                count=int(len(idx)))

    spacing = _spacing_days(d, e)
    if ctx.grain is None:
        ctx.grain = "MONTH" if spacing is not None and spacing >= 20 else "WEEK"
    grain = ctx.grain
    if spacing is not None:
        looks = None
        if spacing < 5:
            looks = "daily"
        elif grain == "WEEK" and spacing >= 20:
            looks = "monthly"
        elif grain == "MONTH" and spacing < 20:
            looks = "weekly"
        if looks:
            fix = ("aggregate the data to weeks or months before loading (daily grain is not supported)" if looks == "daily"
                   else f"set grain: {'MONTH' if looks == 'monthly' else 'WEEK'} in the spec")
            ctx.add("error", "GRAIN_MISMATCH",
                    f"{ctx.period_col!r} values are {spacing:g} days apart (median within an entity), which looks {looks}, "
                    f"but the grain is {grain}", fix, [ctx.period_col], spacing_days=spacing, grain=grain)
            ctx.skipped.append("alignment, gaps, windows and window-level checks (the grain does not match the dates)")
            return

    aligned = align_to_grain(d, grain)  # type: ignore[arg-type]
    moved = np.flatnonzero((aligned != d).to_numpy())
    if len(moved):
        if grain == "WEEK":
            names = d.dt.day_name()
            counts = names.value_counts()
            desc = ", ".join(f"{k}: {_n(v, 'row')}" for k, v in counts.items())
            anchor = aligned.dt.day_name().iloc[0]
            msg = (f"weekly {ctx.period_col!r} values fall on {len(counts)} different weekdays ({desc}); "
                   f"{_n(len(moved), 'row')} {'is' if len(moved) == 1 else 'are'} not on {anchor} ({_at(moved, d.dt.strftime('%Y-%m-%d %a'))})")
            fix = f"canonicalize moves each date back to the {anchor} starting its week; check these rows are not typos or daily data"
        else:
            msg = (f"{_n(len(moved), f'monthly {ctx.period_col!r} value')} {'is' if len(moved) == 1 else 'are'} not the 1st of the month "
                   f"({_at(moved, d.dt.strftime('%Y-%m-%d'))})")
            fix = "canonicalize moves them to the 1st of their month (right for month-end labels); check they are not typos"
        ctx.add("warning", "PERIOD_NOT_ALIGNED", msg, fix, [ctx.period_col], moved, count=int(len(moved)))
        dup2 = pd.DataFrame({"e": e.to_numpy(), "d": aligned.to_numpy()}).duplicated(keep=False) & ~dup
        if dup2.any():
            idx = np.flatnonzero(dup2.to_numpy())
            ctx.add("error", "DUPLICATE_PERIOD_AFTER_ALIGNMENT",
                    f"{_n(len(idx), 'row')} of the same entity fall in the same {grain.lower()} once dates are moved to the period "
                    f"start, e.g. {e.iloc[idx[0]]!r} week/month of {_iso(aligned.iloc[idx[0]])} ({_at(idx, d.dt.strftime('%Y-%m-%d'))})",
                    f"keep one row per entity and {grain.lower()} (aggregate finer data first)", ctx.key_cols, idx)
    ctx.aligned = aligned
    ctx.time_ok = True


def _check_gaps(ctx: _Ctx) -> None:
    if not ctx.time_ok:
        return
    grain = ctx.grain
    frame = pd.DataFrame({"e": ctx.entity.to_numpy(), "d": ctx.aligned.to_numpy()})
    first, last = frame["d"].min(), frame["d"].max()
    ctx.win = compute_windows(last, grain, ctx.windows)  # type: ignore[arg-type]
    # Without a spec the windows are unknown: judge coverage over the whole series.
    kept_start = max(first, ctx.win["carryover_start"]) if ctx.spec else first

    gaps: list[tuple[str, pd.DatetimeIndex]] = []
    spans = frame.groupby("e")["d"].agg(["min", "max"])
    present = frame.groupby("e")["d"].apply(lambda s: pd.DatetimeIndex(s.unique()))
    for ent, row in spans.iterrows():
        missing = period_range(row["min"], row["max"], grain).difference(present[ent])
        if len(missing):
            gaps.append((str(ent), missing))
    if gaps:
        shown = "; ".join(f"{ent!r}: {len(m)} missing ({', '.join(_iso(x) for x in m[:3])}{' …' if len(m) > 3 else ''})"
                          for ent, m in gaps[:N_EXAMPLES])
        more = f"; and {len(gaps) - N_EXAMPLES} more entities" if len(gaps) > N_EXAMPLES else ""
        ctx.add("warning", "ENTITY_PERIOD_GAP",
                f"{_n(len(gaps), 'entity', 'entities')} {'misses' if len(gaps) == 1 else 'miss'} periods inside their own date range — {shown}{more}",
                "add the missing rows (0 activity if there was none); otherwise the brand total dips in those periods",
                ctx.key_cols, entities={ent: len(m) for ent, m in gaps})

    brand_missing = period_range(first, last, grain).difference(pd.DatetimeIndex(frame["d"].unique()))
    if len(brand_missing):
        inside = brand_missing[brand_missing >= ctx.win["carryover_start"]]
        sev = "error" if len(inside) and ctx.spec else "warning"
        if ctx.spec is None:
            inside = brand_missing
            where = "which stops a run whose carryover/estimation windows include them"
        elif len(inside):
            where = "inside the carryover/estimation windows"
        else:
            where = f"before the windows (which start {_iso(ctx.win['carryover_start'])}), so they are not used"
        shown = ", ".join(_iso(x) for x in (inside if len(inside) else brand_missing)[:N_EXAMPLES])
        ctx.add(sev, "BRAND_PERIOD_GAP",
                f"{_n(len(brand_missing), grain.lower())} {'has' if len(brand_missing) == 1 else 'have'} no data for any entity, {where}: {shown}"
                f"{' …' if len(brand_missing) > N_EXAMPLES else ''}",
                "add the missing periods to the file, or shorten windows.carryover_months/estimation_months",
                [ctx.period_col], missing=[_iso(x) for x in brand_missing[:50]])

    if len(spans) > 1:
        partial = spans[(spans["min"] > kept_start) | (spans["max"] < last)]
        if len(partial):
            shown = "; ".join(f"{str(ent)!r}: {_iso(r['min'])} – {_iso(r['max'])}" for ent, r in partial.head(N_EXAMPLES).iterrows())
            ctx.add("warning", "ENTITY_PARTIAL_COVERAGE",
                    f"{len(partial)} of {len(spans)} entities start after {_iso(kept_start)} or stop before {_iso(last)} — {shown}"
                    f"{' …' if len(partial) > N_EXAMPLES else ''}",
                    "check these entities: their entry or exit shifts the brand total, which the model reads as an effect; "
                    "drop them or add a control", ctx.entity_cols)


def _check_entity_rows(ctx: _Ctx) -> None:
    if ctx.entity is None:
        return
    counts = ctx.entity.value_counts()
    if len(counts) < 2:
        return
    med = float(counts.median())
    few = counts[counts < FEW_ROWS_FRACTION * med]
    if len(few):
        shown = ", ".join(f"{str(k)!r}: {v}" for k, v in few.head(N_EXAMPLES).items())
        ctx.add("warning", "ENTITY_FEW_ROWS",
                f"{_n(len(few), 'entity', 'entities')} {'has' if len(few) == 1 else 'have'} fewer than half the median {med:g} rows per entity ({shown}"
                f"{' …' if len(few) > N_EXAMPLES else ''})",
                "check whether their data is incomplete; drop them if they are not part of the brand", ctx.entity_cols,
                np.flatnonzero(ctx.entity.isin(few.index).to_numpy()), entities=few.to_dict())


# --------------------------------------------------------------------------- checks: windows and values


def _build_brand(ctx: _Ctx) -> None:
    if not ctx.time_ok or ctx.win is None:
        return
    cols = ctx.brand_cols()
    frame = pd.DataFrame({c: ctx.num[c].to_numpy() for c in cols})
    key = "__period__"  # not a name a role column can have
    frame[key] = ctx.aligned.to_numpy()
    agg = {c: "sum" for c in cols}
    for c in ctx.present(ctx.roles["controls"]):
        agg[c] = ctx.control_agg.get(c, "mean")
    ctx.brand = frame.groupby(key, sort=True).agg(agg) if cols else frame.groupby(key).size().to_frame("n")
    ctx.brand.index.name = PERIOD_COL


def _check_windows(ctx: _Ctx) -> None:
    # Window and parameter checks need the run's windows and model; `mmm datasets add` has neither.
    if ctx.brand is None or ctx.win is None or ctx.spec is None:
        return
    periods = ctx.brand.index
    first = periods.min()
    est = periods[periods >= ctx.win["estimation_start"]]
    ctx.n_est = n_est = len(est)
    n_entities = int(ctx.entity.nunique()) if ctx.entity is not None and ctx.spec.model.level == "entity" else 1
    n_params, parts = _n_parameters(ctx.spec, n_entities)
    # An entity-level model sees every entity's periods: observations, not weeks, bound its parameters.
    n_obs = n_est * n_entities
    ctx.n_params = n_params
    w = ctx.windows
    g = ctx.grain.lower()  # type: ignore[union-attr]
    if first > ctx.win["estimation_start"]:
        ctx.add("warning", "SHORT_HISTORY",
                f"data starts {_iso(first)}, after the estimation window's start {_iso(ctx.win['estimation_start'])} "
                f"({w.estimation_months} months before the end {_iso(ctx.win['end'])}): estimation gets only {n_est} {g}s "
                "and there is no carryover warm-up",
                "add history or shorten windows.estimation_months; carryover needs data before the estimation window",
                [ctx.period_col], first=_iso(first), estimation_start=_iso(ctx.win["estimation_start"]))
    elif w.carryover_months > 0 and first > ctx.win["carryover_start"]:
        n_carry = int(((periods >= ctx.win["carryover_start"]) & (periods < ctx.win["estimation_start"])).sum())
        # The window's boundaries are period starts (compute_windows snaps them), so this count is whole periods.
        n_full = len(period_range(ctx.win["carryover_start"], ctx.win["estimation_start"],
                                  ctx.grain)) - 1  # type: ignore[arg-type]
        ctx.add("warning", "SHORT_HISTORY",
                f"data starts {_iso(first)}, after the carryover window's start {_iso(ctx.win['carryover_start'])}: "
                f"carryover has {n_carry} {g}s instead of {n_full} ({w.carryover_months} months)",
                "add history or shorten windows.carryover_months (early adstock is slightly understated)",
                [ctx.period_col], first=_iso(first), carryover_start=_iso(ctx.win["carryover_start"]))
    obs = f"{n_est} {g}s" if n_entities == 1 else f"{n_obs} observations ({n_est} {g}s × {n_entities} entities)"
    if n_obs < n_params:
        ctx.add("error", "TOO_FEW_PERIODS",
                f"the estimation window has {obs} but the model has {n_params} parameters ({parts})",
                "add history, lengthen windows.estimation_months, or use fewer drivers, controls or seasonality terms",
                [ctx.period_col], n_estimation=n_est, n_parameters=n_params)
    else:
        ratio = n_obs / n_params
        msg = f"{obs} in the estimation window for {n_params} model parameters ({parts}): {ratio:.1f} per parameter"
        if ratio < MIN_DATA_PER_PARAM:
            ctx.add("warning", "LOW_DATA_PARAMETER_RATIO", msg + f", below {MIN_DATA_PER_PARAM:g}",
                    "expect wide intervals: add history or use fewer drivers/controls/seasonality terms", [],
                    ratio=ratio, n_estimation=n_est, n_parameters=n_params)
        else:
            ctx.add("info", "DATA_PARAMETER_RATIO", msg, "", [], ratio=ratio, n_estimation=n_est, n_parameters=n_params)


def _window_frame(ctx: _Ctx) -> tuple[pd.DataFrame, str]:
    """Brand-level estimation-window values (what the model sees), or raw rows when dates are unusable."""
    if ctx.brand is not None and ctx.spec is None:
        return ctx.brand, f"at brand level over all {len(ctx.brand)} periods"
    if ctx.brand is not None and ctx.win is not None:
        est = ctx.brand[ctx.brand.index >= ctx.win["estimation_start"]]
        return est, f"in the estimation window (brand level, {len(est)} periods from {_iso(est.index.min())})"
    return pd.DataFrame(ctx.num), "over all rows"


def _check_constant(ctx: _Ctx) -> None:
    frame, where = _window_frame(ctx)
    if frame.empty:
        return
    def state(col: str) -> str | None:
        v = frame[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            return None
        if np.all(v == 0):
            return "zero"
        if np.all(v == v[0]):
            return "constant"
        return None
    t = ctx.target
    if t in frame:
        s = state(t)
        if s == "zero":
            ctx.add("error", "TARGET_ALL_ZERO", f"target {ctx.target_label} is 0 everywhere {where}",
                    "check the target column (wrong column or an export problem)", ctx.cmap.target_sources)
        elif s == "constant":
            ctx.add("error", "TARGET_CONSTANT", f"target {ctx.target_label} is constant ({frame[t].iloc[0]:g}) {where}",
                    "check the target column: a constant series has nothing to explain", ctx.cmap.target_sources)
    for d in ctx.present(ctx.roles["drivers"]):
        s = state(d)
        if s == "zero":
            ctx.add("warning", "CHANNEL_ALL_ZERO", f"driver {d!r} is 0 everywhere {where}",
                    "drop it from drivers: its effect cannot be estimated without activity", [d])
        elif s == "constant":
            ctx.add("warning", "CHANNEL_CONSTANT", f"driver {d!r} is constant ({frame[d].iloc[0]:g}) {where}",
                    "drop it from drivers: a constant channel cannot be told apart from the baseline", [d])
    for d, sp in ctx.roles["spend"].items():
        if sp and sp in frame and state(sp) == "zero":
            ctx.add("warning", "SPEND_ALL_ZERO", f"spend column {sp!r} (of {d!r}) is 0 everywhere {where}",
                    "check the spend column; ROI for this driver is undefined without spend", [sp, d])
    for c in ctx.present(ctx.roles["controls"]):
        if state(c) in ("zero", "constant"):
            ctx.add("error", "CONTROL_CONSTANT", f"control {c!r} is constant ({frame[c].iloc[0]:g}) {where}",
                    "remove it from controls: it carries no information and cannot be standardized", [c])


def _check_spend_mapping(ctx: _Ctx) -> None:
    cols = ctx.columns
    for d, sp in ctx.roles["spend"].items():
        if d not in cols:
            continue
        if sp is None:
            expected = f" (expected 'spend_{d[4:]}')" if d.startswith("act_") else ""
            ctx.add("warning", "DRIVER_WITHOUT_SPEND",
                    f"driver {d!r} has no spend column{expected}; ROI is not computed for it",
                    f"add a spend column or map one with spend_cols: {{{d}: <column>}} in the spec", [d])
    used_spend = set(ctx.spend_cols())
    for c in cols:
        if c.startswith("spend_") and c not in used_spend:
            act = "act_" + c[len("spend_"):]
            why = (f"{act!r} is in the data but not in drivers" if act in cols else f"there is no {act!r} column")
            ctx.add("info", "SPEND_WITHOUT_DRIVER", f"spend column {c!r} matches no driver ({why})",
                    "add its activity column to drivers, or map it with spend_cols, if it should be modelled", [c])
    used = {*ctx.key_cols, *ctx.numeric_roles()}
    unused = [c for c in cols if c not in used and not c.startswith("spend_")]
    if unused:
        ctx.add("info", "UNUSED_COLUMN", f"{_n(len(unused), 'column')} {'is' if len(unused) == 1 else 'are'} not used by this spec: {', '.join(map(repr, unused[:10]))}"
                f"{' …' if len(unused) > 10 else ''}",
                "add them to drivers or controls in the spec if they matter", unused[:20])
    for d, sp in ctx.roles["spend"].items():
        if sp and d in ctx.num and sp in ctx.num:
            mask = (ctx.num[sp] > 0) & (ctx.num[d] == 0)
            if mask.any():
                idx = np.flatnonzero(mask.to_numpy())
                ctx.add("warning", "SPEND_WITH_ZERO_ACTIVITY",
                        f"column {sp!r} is > 0 while {d!r} is 0 in {_n(len(idx), 'row')} ({_at(idx, ctx.num[sp])})",
                        f"check {d!r} for those rows (missing activity data?); spend without activity lowers the ROI",
                        [sp, d], idx, count=int(len(idx)))


def _check_collinear(ctx: _Ctx) -> None:
    frame, where = _window_frame(ctx)
    drivers = [d for d in ctx.present(ctx.roles["drivers"]) if d in frame]
    if len(drivers) < 2 or len(frame) < 3:
        return
    x = frame[drivers].astype(float)
    x = x.loc[:, x.std() > 0]
    if x.shape[1] < 2:
        return
    corr = x.corr()
    names = list(corr.columns)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            r = float(corr.iloc[i, j])
            if np.isfinite(r) and abs(r) >= COLLINEAR_CORR:
                ctx.add("warning", "DRIVERS_COLLINEAR",
                        f"drivers {names[i]!r} and {names[j]!r} are almost collinear (correlation {r:.3f} {where})",
                        "the model cannot separate their effects: combine them into one driver or drop one",
                        [names[i], names[j]], correlation=r)


def vif(frame: pd.DataFrame) -> pd.Series:
    """Variance inflation factor of each column: ``1 / (1 - R²)`` of its regression on the others.

    Columns with no variation are left out; an exact linear dependence gives ``inf``.
    """
    x = frame.astype(float).replace([np.inf, -np.inf], np.nan).dropna()
    x = x.loc[:, x.std() > 0]
    z = ((x - x.mean()) / x.std()).to_numpy()
    out = {}
    for j, name in enumerate(x.columns):
        others = np.delete(z, j, axis=1)
        design = np.column_stack([np.ones(len(z)), others])
        coef, *_ = np.linalg.lstsq(design, z[:, j], rcond=None)
        resid = z[:, j] - design @ coef
        unexplained = float(resid @ resid) / float(z[:, j] @ z[:, j])
        out[name] = np.inf if unexplained < 1e-10 else 1.0 / unexplained
    return pd.Series(out, dtype=float)


def _check_vif(ctx: _Ctx) -> None:
    frame, where = _window_frame(ctx)
    cols = [c for c in ctx.present([*ctx.roles["drivers"], *ctx.roles["controls"]]) if c in frame]
    if len(cols) < 2 or len(frame) < len(cols) + 2:
        return
    v = vif(frame[cols])
    if len(v) < 2:
        return
    high = v[v > VIF_HIGH].sort_values(ascending=False)
    if len(high):
        shown = ", ".join(f"{c!r}: {'∞' if not np.isfinite(x) else f'{x:.1f}'}" for c, x in high.items())
        ctx.add("warning", "HIGH_VIF",
                f"{_n(len(high), 'driver/control column')} {'is' if len(high) == 1 else 'are'} largely explained by the "
                f"other drivers and controls {where} — variance inflation factor above {VIF_HIGH:g}: {shown}",
                "their separate effects (and ROI) will be uncertain or unstable: drop or combine overlapping drivers "
                "(e.g. channels always bought together), or remove controls that restate a driver",
                list(high.index), vif={c: (None if not np.isfinite(x) else float(x)) for c, x in v.items()})


def _check_outliers(ctx: _Ctx) -> None:
    t = ctx.target
    if t not in ctx.num or ctx.entity is None:
        return
    y = ctx.num[t]
    frame = pd.DataFrame({"e": ctx.entity.to_numpy(), "ly": np.log1p(y.where(y >= 0).to_numpy())})
    med = frame.groupby("e")["ly"].transform("median")
    mad = (frame["ly"] - med).abs().groupby(frame["e"]).transform("median") * 1.4826
    z = (frame["ly"] - med) / mad.where(mad > 0)
    hit = np.flatnonzero((z.abs() > OUTLIER_Z).to_numpy())
    if len(hit):
        dates = ctx.dates.values if ctx.dates is not None else None
        shown = ", ".join(
            f"{r} ({ctx.entity.iloc[r]!r}"
            + (f", {_iso(dates.iloc[r])}" if dates is not None and not pd.isna(dates.iloc[r]) else "")
            + f": {_num(float(y.iloc[r]))}, z={z.iloc[r]:.1f})"
            for r in hit[:N_EXAMPLES]
        )
        ctx.add("warning", "SALES_OUTLIER",
                f"target {ctx.target_label} has {_n(len(hit), 'extreme value')} (robust z of log {t} > {OUTLIER_Z:g} within the entity): {'row' if len(hit) == 1 else 'rows'} {shown}"
                f"{' …' if len(hit) > N_EXAMPLES else ''}",
                "check for entry errors (extra zeros, wrong units); real one-off events can stay (the Student-t likelihood "
                "down-weights them) or be explained with a control", ctx.cmap.target_sources, hit, count=int(len(hit)))


# --------------------------------------------------------------------------- validate


def validate(df: pd.DataFrame, spec: RunSpec | None = None) -> ValidationReport:
    """Check an input table against a run spec (or, without one, against the standard naming).

    Parameters
    ----------
    df
        The table as read by :func:`mmm_lib.raw_io.load_raw` (values not yet coerced).
    spec
        The run spec: roles (``target_col``, ``drivers``, ``controls``, ``spend_cols``), ``grain``,
        ``windows`` and features (for the parameter count). ``None`` (``mmm datasets add``) infers
        roles from the ``act_``/``ctrl_``/``spend_`` prefixes with target ``sales`` and the grain from
        the date spacing; checks that need the run's windows or model (SHORT_HISTORY, TOO_FEW_PERIODS,
        the data/parameter ratio) are left to the run, and series checks look at all periods.

    Returns
    -------
    ValidationReport
        Findings (see the module docstring for every code), ``ok`` when there is no error.
    """
    ctx = _Ctx(df, spec)
    report = ValidationReport(roles=ctx.roles, grain=ctx.grain, n_rows=int(len(df)), columns=ctx.cmap.to_dict())
    if df.shape[1] == 0 or len(df) == 0:
        ctx.add("error", "EMPTY_DATA", f"the table has {len(df)} rows and {df.shape[1]} columns",
                "export the data again with a header row and data rows")
        report.findings = ctx.findings
        return report
    if df.columns.duplicated().any():
        dup = sorted({str(c) for c in df.columns[df.columns.duplicated()]})
        ctx.add("error", "DUPLICATE_COLUMN_NAME", f"columns {dup} appear more than once",
                "rename or drop the repeated columns", dup)
        df = df.loc[:, ~df.columns.duplicated()]
    ctx.df = df.reset_index(drop=True)
    ctx.columns = [str(c) for c in ctx.df.columns]
    ctx.df.columns = ctx.columns
    if _check_delimiter(ctx):
        report.findings = ctx.findings
        return report

    _check_columns(ctx)
    _check_roles(ctx)
    _check_entity(ctx)
    _check_encoding(ctx, df.attrs.get("source_format") or {})
    _note_filter(ctx, df.attrs.get("data_filter"))
    _check_dates(ctx)
    _check_numeric(ctx)
    _check_time(ctx)
    _check_gaps(ctx)
    _check_entity_rows(ctx)
    _build_brand(ctx)
    _check_windows(ctx)
    _check_constant(ctx)
    _check_spend_mapping(ctx)
    _check_collinear(ctx)
    _check_vif(ctx)
    _check_outliers(ctx)
    if ctx.skipped:
        ctx.add("info", "CHECKS_SKIPPED", "skipped " + "; ".join(ctx.skipped),
                "fix the errors above and validate again to run these checks")

    report.findings = ctx.findings
    report.grain = ctx.grain
    report.n_entities = int(ctx.entity.nunique()) if ctx.entity is not None else 0
    if ctx.dates is not None:
        v = ctx.dates.values.dropna()
        report.n_periods = int(v.nunique())
        if len(v):
            report.date_start, report.date_end = _iso(v.min()), _iso(v.max())
    report.n_estimation = ctx.n_est
    report.n_parameters = ctx.n_params
    return report
