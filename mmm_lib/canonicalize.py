"""Canonical brand-level data: parse, align to the grain, aggregate entities, cut the windows.

``canonicalize(raw_df, spec)`` turns the raw panel (one row per entity and period) into
``canonical_data`` (one row per period, ``entity_id == "brand"``) plus ``column_info``, as
docs/DESIGN.md describes. The date and grain helpers here (:func:`parse_period_start`,
:func:`align_to_grain`, :func:`period_offset`, :func:`compute_windows`) are shared with
``validation`` so both stages read dates the same way.

Windows (the baseline model's rule, boundaries snapped to the grain)::

    end              = last period_start + one grain step        (exclusive)
    estimation_start = end - estimation_months, moved forward to the next period start
    carryover_start  = estimation_start - carryover_months, moved forward to the next period start
    keep period_start >= carryover_start; window = "estimation" if period_start >= estimation_start

Snapping keeps which periods fall in each window unchanged; it makes every boundary a real period
start, so 104 whole weeks of data with 12 + 12 month windows start exactly at ``carryover_start``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .columns import ENTITY_COL, PERIOD_COL, column_map, standard_spec, to_standard_columns
from .spec import RunSpec, WindowsConfig

WINDOW_COL = "window"
HOLDOUT = "holdout"  # the last windows.holdout_periods estimation periods: predicted, not fitted
MIN_FITTED_PERIODS = 8
BRAND = "brand"

Grain = Literal["WEEK", "MONTH"]

# Typical spacing in days per grain, used to tell weekly from monthly data.
GRAIN_DAYS = {"WEEK": 7, "MONTH": 30.4}

_TIME = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
# (label, regex, strptime format or None when day/month order must be decided from the data)
_DATE_PATTERNS: list[tuple[str, re.Pattern[str], str | None]] = [
    ("YYYY-MM-DD", re.compile(rf"^(\d{{4}})-(\d{{1,2}})-(\d{{1,2}}){_TIME}$"), "%Y-%m-%d"),
    ("YYYY/MM/DD", re.compile(rf"^(\d{{4}})/(\d{{1,2}})/(\d{{1,2}}){_TIME}$"), "%Y/%m/%d"),
    ("YYYYMMDD", re.compile(r"^(\d{4})(\d{2})(\d{2})$"), "%Y%m%d"),
    ("DD.MM.YYYY", re.compile(rf"^(\d{{1,2}})\.(\d{{1,2}})\.(\d{{4}}){_TIME}$"), "%d.%m.%Y"),
    ("D/M/Y", re.compile(rf"^(\d{{1,2}})/(\d{{1,2}})/(\d{{4}}){_TIME}$"), None),
    ("D-M-Y", re.compile(rf"^(\d{{1,2}})-(\d{{1,2}})-(\d{{4}}){_TIME}$"), None),
]
_MISSING_TOKENS = {"", "na", "n/a", "nan", "nat", "null", "none", "-", "#n/a"}


def _ns(values: Any) -> pd.Series:
    """Datetime values as a ``datetime64[ns]`` Series (pandas 3 infers coarser units from strings)."""
    s = pd.Series(values)
    return s.astype("datetime64[ns]")


# --------------------------------------------------------------------------- dates


@dataclass
class ParsedDates:
    """``period_start`` parsed, with what went wrong where (row numbers are 0-based positions).

    Attributes
    ----------
    values
        ``datetime64[ns]`` Series aligned with the input; NaT where missing or unparseable.
    formats
        Date format label -> row positions written in that format (more than one key = mixed formats).
    unparseable
        Row positions whose value is present but is not a date.
    missing
        Row positions with no value.
    ambiguous
        Set when day/month order could not be read from the values and was chosen by
        regularity; says which order was used.
    """

    values: pd.Series
    formats: dict[str, list[int]] = field(default_factory=dict)
    unparseable: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    ambiguous: str | None = None

    @property
    def mixed(self) -> bool:
        return len(self.formats) > 1

    @property
    def ok(self) -> bool:
        return not (self.mixed or self.unparseable or self.missing)


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NaT:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return isinstance(v, str) and v.strip().lower() in _MISSING_TOKENS


def _to_text(v: Any) -> str:
    # Integers such as 20220103 (read from CSV as numbers) parse like their text.
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _misfit(dates: pd.Series, grain: str | None) -> float:
    """How far the median spacing of the dates is from a grain's spacing (log ratio; 0 = exact)."""
    u = np.sort(dates.dropna().unique())
    if len(u) < 2:
        return 0.0
    med = float(np.median(np.diff(u)) / np.timedelta64(1, "D"))
    days = [GRAIN_DAYS[grain]] if grain else list(GRAIN_DAYS.values())
    return min(abs(np.log(max(med, 0.5) / g)) for g in days)


def _resolve_day_month(texts: pd.Series, sep: str, grain: str | None) -> tuple[dict[str, pd.Index], str | None]:
    """Split ``a<sep>b<sep>yyyy`` values into day-first / month-first groups.

    A first field > 12 proves day-first and a second field > 12 month-first. When no value
    decides, the order whose spacing best matches the grain (weekly or monthly when no grain
    is given) is used, ties day-first, and reported.
    """
    parts = texts.str.extract(r"^(\d{1,2})\D(\d{1,2})\D")
    a = parts[0].astype(int)
    b = parts[1].astype(int)
    dayfirst_rows = texts.index[a > 12]
    monthfirst_rows = texts.index[b > 12]
    fmt_d, fmt_m = f"%d{sep}%m{sep}%Y", f"%m{sep}%d{sep}%Y"
    lab_d, lab_m = f"DD{sep}MM{sep}YYYY", f"MM{sep}DD{sep}YYYY"
    if len(dayfirst_rows) and len(monthfirst_rows):
        # Both orders are present: each undecided value could be either, count it as day-first.
        rest = texts.index.difference(monthfirst_rows)
        return {lab_d: rest, lab_m: monthfirst_rows}, None
    if len(dayfirst_rows):
        return {lab_d: texts.index}, None
    if len(monthfirst_rows):
        return {lab_m: texts.index}, None
    date_part = texts.str.extract(r"^(\d{1,2}\D\d{1,2}\D\d{4})")[0]
    as_d = pd.to_datetime(date_part, format=fmt_d, errors="coerce")
    as_m = pd.to_datetime(date_part, format=fmt_m, errors="coerce")
    chosen = lab_m if _misfit(as_m, grain) < _misfit(as_d, grain) else lab_d
    return {chosen: texts.index}, (
        f"day and month order is ambiguous (every value fits both); read as {chosen}, "
        "whose spacing matches the grain"
    )


_LABEL_FORMAT = {
    "DD/MM/YYYY": "%d/%m/%Y",
    "MM/DD/YYYY": "%m/%d/%Y",
    "DD-MM-YYYY": "%d-%m-%Y",
    "MM-DD-YYYY": "%m-%d-%Y",
}


def parse_period_start(values: pd.Series, grain: Grain | None = None) -> ParsedDates:
    """Parse a ``period_start`` column, recording format mix-ups instead of guessing silently.

    Datetime columns (e.g. from Parquet) pass through (time zones dropped, wall time kept).
    Text and integer values are classified by format (``YYYY-MM-DD``, ``DD/MM/YYYY`` …); a time of
    day is allowed and dropped. Anything else is tried as free text (``3 Jan 2022``).

    Parameters
    ----------
    values
        The raw ``period_start`` column.
    grain
        Only used to decide day/month order when no value shows it (``01/02/2022``).

    Returns
    -------
    ParsedDates
        Parsed values (``datetime64[ns]``, midnight) and the rows with missing, unparseable or
        differently formatted dates.
    """
    values = pd.Series(values).reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        v = values
        if getattr(v.dt, "tz", None) is not None:
            v = v.dt.tz_localize(None)
        missing = np.flatnonzero(v.isna()).tolist()
        return ParsedDates(values=_ns(v).dt.normalize(), formats={"datetime": np.flatnonzero(v.notna()).tolist()} if v.notna().any() else {}, missing=missing)

    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    missing_mask = values.map(_is_missing).astype(bool)
    texts = values[~missing_mask].map(_to_text)
    formats: dict[str, list[int]] = {}
    ambiguous = None
    unmatched = pd.Series(True, index=texts.index)
    for label, rx, fmt in _DATE_PATTERNS:
        if not unmatched.any():
            break
        hit = texts[unmatched].str.match(rx)
        idx = hit.index[hit.to_numpy(dtype=bool)]
        if not len(idx):
            continue
        unmatched[idx] = False
        sub = texts[idx]
        if fmt is None:
            groups, amb = _resolve_day_month(sub, label[1], grain)
            ambiguous = ambiguous or amb
        else:
            groups = {label: idx}
        for lab, rows in groups.items():
            f = fmt or _LABEL_FORMAT[lab]
            date_part = sub[rows].str.replace(rf"{_TIME}$", "", regex=True)
            out[rows] = _ns(pd.to_datetime(date_part, format=f, errors="coerce")).to_numpy()
            formats.setdefault(lab, []).extend(int(r) for r in rows)
    rest = unmatched.index[unmatched.to_numpy(dtype=bool)]
    if len(rest):
        parsed = pd.to_datetime(texts[rest], format="mixed", errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)
        out[rest] = _ns(parsed).to_numpy()
        ok_rows = rest[parsed.notna().to_numpy()]
        if len(ok_rows):
            formats["free text"] = [int(r) for r in ok_rows]
    present = values.index[~missing_mask.to_numpy()]
    unparseable = [int(r) for r in present if pd.isna(out[r])]
    for lab in list(formats):
        formats[lab] = sorted(r for r in formats[lab] if not pd.isna(out[r]))
        if not formats[lab]:
            del formats[lab]
    return ParsedDates(
        values=out.dt.normalize(),
        formats=formats,
        unparseable=unparseable,
        missing=np.flatnonzero(missing_mask.to_numpy()).tolist(),
        ambiguous=ambiguous,
    )


# --------------------------------------------------------------------------- grain


def period_offset(grain: Grain) -> pd.DateOffset:
    """One grain step as a calendar offset (``WEEK`` = 7 days, ``MONTH`` = 1 calendar month)."""
    if grain == "WEEK":
        return pd.DateOffset(weeks=1)
    if grain == "MONTH":
        return pd.DateOffset(months=1)
    raise ValueError(f"grain {grain!r} is not supported; use 'WEEK' or 'MONTH'")


def weekly_anchor(dates: pd.Series) -> int:
    """The weekday (0 = Monday) most weekly dates fall on; weeks are aligned to start on it."""
    d = pd.Series(dates).dropna()
    if d.empty:
        return 0
    return int(d.dt.day_of_week.mode().min())


def align_to_grain(dates: pd.Series, grain: Grain, anchor: int | None = None) -> pd.Series:
    """Move each date back to the start of its period.

    ``MONTH``: the first of the month. ``WEEK``: the most recent ``anchor`` weekday (default: the
    weekday most dates already fall on, so data that uses Sunday weeks keeps Sunday weeks).
    """
    d = _ns(dates).dt.normalize()
    if grain == "MONTH":
        return _ns(d.dt.to_period("M").dt.to_timestamp())
    if grain == "WEEK":
        a = weekly_anchor(d) if anchor is None else anchor
        back = (d.dt.day_of_week - a) % 7
        return _ns(d - pd.to_timedelta(back, unit="D"))
    period_offset(grain)  # raises the error naming the grain
    raise AssertionError


def period_range(start: pd.Timestamp, end: pd.Timestamp, grain: Grain) -> pd.DatetimeIndex:
    """All period starts from ``start`` to ``end`` inclusive at the grain (``datetime64[ns]``)."""
    freq = "7D" if grain == "WEEK" else "MS"
    return pd.date_range(start, end, freq=freq).as_unit("ns")


def snap_to_period_start(ts: pd.Timestamp, end: pd.Timestamp, grain: Grain) -> pd.Timestamp:
    """The first period start on or after ``ts``, on the grid of period starts that ``end`` lies on.

    Window lengths are given in months but data come in weeks: ``end - 12 months`` is usually not a
    week start. Moving forward (never back) keeps the same periods inside the window, so only the
    boundary's label changes, and data covering whole windows starts exactly at the boundary.
    """
    ts, end = pd.Timestamp(ts), pd.Timestamp(end)
    if grain == "WEEK":
        whole_weeks = (end - ts) // pd.Timedelta(weeks=1)
        return end - pd.Timedelta(weeks=int(whole_weeks))
    if grain == "MONTH":
        first = ts.normalize().replace(day=1)
        return first if first == ts else first + pd.DateOffset(months=1)
    period_offset(grain)  # raises the error naming the grain
    raise AssertionError


def compute_windows(last_period_start: pd.Timestamp, grain: Grain, windows: WindowsConfig) -> dict[str, pd.Timestamp]:
    """Window boundaries from the last period (the rule in the module docstring), snapped to period starts.

    Every stage (canonicalize, validation, the sample generator, the data plots) takes its windows
    from here, so a boundary is the same date everywhere.

    Returns
    -------
    dict
        ``carryover_start``, ``estimation_start`` and ``end`` (exclusive) as Timestamps, each a
        period start.
    """
    end = pd.Timestamp(last_period_start) + period_offset(grain)
    # Both from the unsnapped dates, so each window keeps exactly the periods it had before snapping.
    estimation_rule = end - pd.DateOffset(months=windows.estimation_months)
    carryover_rule = estimation_rule - pd.DateOffset(months=windows.carryover_months)
    estimation_start = snap_to_period_start(estimation_rule, end, grain)
    carryover_start = snap_to_period_start(carryover_rule, end, grain)
    return {"carryover_start": carryover_start, "estimation_start": estimation_start, "end": end}


# --------------------------------------------------------------------------- roles


def spend_for(driver: str, columns: Any, spend_cols: dict[str, str] | None = None) -> str | None:
    """The spend column of a driver: ``spend_cols`` override, else ``spend_X`` for ``act_X`` if present."""
    if spend_cols and driver in spend_cols:
        return spend_cols[driver]
    if driver.startswith("act_"):
        cand = "spend_" + driver[len("act_"):]
        if cand in set(columns):
            return cand
    return None


def resolve_roles(spec: RunSpec, columns: Any) -> dict[str, Any]:
    """Roles from a spec: ``{"target", "drivers", "controls", "spend": {driver: col | None}}``.

    ``target`` is the modelled target (``target_col``, or ``columns.target_name`` when the target is
    multiplied, see :mod:`mmm_lib.columns`).
    """
    return {
        "target": spec.modelled_target,
        "drivers": list(spec.drivers),
        "controls": list(spec.controls),
        "spend": {d: spend_for(d, columns, spec.spend_cols) for d in spec.drivers},
    }


def role_columns(roles: dict[str, Any]) -> list[str]:
    """Target, drivers, their spend columns and controls, in canonical order, without repeats."""
    cols = [roles["target"], *roles["drivers"], *[s for s in roles["spend"].values() if s], *roles["controls"]]
    return list(dict.fromkeys(cols))


# --------------------------------------------------------------------------- canonicalize


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).date().isoformat()


def _examples(rows: Any, values: pd.Series | None = None, n: int = 3) -> str:
    rows = list(rows)[:n]
    if values is None:
        return ", ".join(map(str, rows))
    return ", ".join(f"{r}: {values.iloc[r]!r}" for r in rows)


def _numeric(df: pd.DataFrame, col: str) -> pd.Series:
    raw = df[col]
    num = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = np.flatnonzero(~np.isfinite(num.to_numpy()))
    if len(bad):
        raise ValueError(
            f"column {col!r} has {len(bad)} missing, non-numeric or infinite values "
            f"(rows {_examples(bad, raw.reset_index(drop=True))}); fix them in the input file "
            "(01_validate lists each one)"
        )
    return num


def canonicalize(raw_df: pd.DataFrame, spec: RunSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Brand-level, window-cut canonical data and its ``column_info``.

    Parameters
    ----------
    raw_df
        The input panel as read (``raw_data.parquet``), in the file's own column names: the spec's
        ``columns`` mapping (:func:`mmm_lib.columns.to_standard_columns`) is applied first, giving
        ``entity_id``, ``period_start``, the modelled target and the role columns. Other columns are
        dropped.
    spec
        The run spec: ``columns``, ``grain``, ``target_col``, ``drivers``, ``controls``,
        ``spend_cols``, ``control_aggregation`` and ``windows``.

    Returns
    -------
    canonical_df
        ``entity_id`` (``"brand"``), ``period_start`` (``datetime64[ns]``, period start of the grain),
        ``window`` (``"carryover"``/``"estimation"``), target, drivers, matched spend columns, controls
        (float). One row per period, sorted, only the carryover + estimation windows.
    column_info
        See docs/DESIGN.md; ``notes`` lists anything adjusted (e.g. data shorter than the windows).

    Raises
    ------
    ValueError
        Missing columns (:class:`~mmm_lib.columns.ColumnMappingError`), unusable dates or values,
        duplicate or missing periods inside the windows, or no periods in the estimation window.
        Run 01_validate for the full list of problems.
    """
    grain = spec.grain
    source_columns = column_map(spec).to_dict()
    raw_df = to_standard_columns(raw_df, spec)
    spec = standard_spec(spec)
    roles = resolve_roles(spec, raw_df.columns)
    cols = role_columns(roles)
    missing = [c for c in [ENTITY_COL, PERIOD_COL, *cols] if c not in raw_df.columns]
    if missing:
        raise ValueError(
            f"input data has no column(s) {missing} that the spec needs; available: {list(map(str, raw_df.columns))}. "
            "Fix target_col/drivers/controls/spend_cols in the spec or the file's header"
        )
    df = raw_df.reset_index(drop=True)
    notes: list[str] = []

    entity = df[ENTITY_COL]
    if entity.isna().any():
        bad = np.flatnonzero(entity.isna().to_numpy())
        raise ValueError(f"column 'entity_id' is empty in rows {_examples(bad)}; give every row an entity id")
    entity = entity.astype(str).str.strip()

    parsed = parse_period_start(df[PERIOD_COL], grain)
    if not parsed.ok:
        problems = []
        if parsed.missing:
            problems.append(f"missing in rows {_examples(parsed.missing)}")
        if parsed.unparseable:
            problems.append(f"not a date in rows {_examples(parsed.unparseable, df[PERIOD_COL])}")
        if parsed.mixed:
            problems.append(f"mixed formats {sorted(parsed.formats)}")
        raise ValueError(
            f"column 'period_start' cannot be read: {'; '.join(problems)}. Write every date as YYYY-MM-DD"
        )
    if parsed.ambiguous:
        notes.append(f"period_start: {parsed.ambiguous}")
    period = align_to_grain(parsed.values, grain)
    moved = int((period != parsed.values).sum())
    if moved:
        notes.append(f"{moved} period_start values moved back to the start of their {grain.lower()}")

    data = pd.DataFrame({ENTITY_COL: entity, PERIOD_COL: period})
    for c in cols:
        data[c] = _numeric(df, c)
    dup = data.duplicated([ENTITY_COL, PERIOD_COL], keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        raise ValueError(
            f"{int(dup.sum())} rows share an (entity_id, period_start) after aligning to the {grain} grain "
            f"(rows {_examples(rows, n=5)}); keep one row per entity and period"
        )

    aggregation: dict[str, str] = {c: "sum" for c in cols}
    for c in roles["controls"]:
        aggregation[c] = spec.control_aggregation.get(c, "mean")
    brand = data.groupby(PERIOD_COL, sort=True).agg({c: aggregation[c] for c in cols}).reset_index()

    last = brand[PERIOD_COL].iloc[-1]
    win = compute_windows(last, grain, spec.windows)
    first = brand[PERIOD_COL].iloc[0]
    kept = brand[brand[PERIOD_COL] >= win["carryover_start"]].reset_index(drop=True)
    is_est = kept[PERIOD_COL] >= win["estimation_start"]
    if not is_est.any():
        raise ValueError(
            f"no periods in the estimation window {_iso(win['estimation_start'])} – {_iso(win['end'])} "
            f"(data covers {_iso(first)} – {_iso(last)}); check the dates or windows.estimation_months"
        )
    expected = period_range(kept[PERIOD_COL].iloc[0], last, grain)
    gaps = expected.difference(pd.DatetimeIndex(kept[PERIOD_COL]))
    if len(gaps):
        shown = ", ".join(_iso(g) for g in gaps[:5])
        raise ValueError(
            f"{len(gaps)} {grain.lower()}s inside the windows have no data for any entity ({shown}"
            f"{' …' if len(gaps) > 5 else ''}); fill them in the input file or shorten the windows"
        )
    if first > win["estimation_start"]:
        notes.append(
            f"data starts {_iso(first)}, after the estimation window's start {_iso(win['estimation_start'])}: "
            f"estimation uses all {int(is_est.sum())} periods and there is no carryover warm-up"
        )
    elif first > win["carryover_start"] and spec.windows.carryover_months > 0:
        notes.append(
            f"data starts {_iso(first)}, after the carryover window's start {_iso(win['carryover_start'])}: "
            f"carryover has {int((~is_est).sum())} periods instead of {spec.windows.carryover_months} months"
        )

    window = np.where(is_est, "estimation", "carryover")
    n_holdout = int(spec.windows.holdout_periods)
    if n_holdout:
        n_est = int(is_est.sum())
        if n_est - n_holdout < max(MIN_FITTED_PERIODS, n_holdout):
            raise ValueError(
                f"windows.holdout_periods is {n_holdout} but the estimation window has {n_est} periods: the fit keeps "
                f"{n_est - n_holdout}, and needs at least {MIN_FITTED_PERIODS} and at least as many as it holds out. "
                f"Lower windows.holdout_periods (e.g. {max(1, n_est // 5)}) or lengthen windows.estimation_months"
            )
        window[np.flatnonzero(is_est.to_numpy())[-n_holdout:]] = HOLDOUT
        is_est = pd.Series(window == "estimation", index=kept.index)
    kept.insert(0, WINDOW_COL, window)
    kept.insert(0, ENTITY_COL, BRAND)
    kept = kept[[ENTITY_COL, PERIOD_COL, WINDOW_COL, *cols]]
    level = spec.model.level
    if level == "entity":
        kept = _entity_panel(data, kept, cols)
    kept[ENTITY_COL] = kept[ENTITY_COL].astype(str)
    kept[WINDOW_COL] = kept[WINDOW_COL].astype(str)
    kept[PERIOD_COL] = _ns(kept[PERIOD_COL])
    kept[cols] = kept[cols].astype("float64")

    sources = sorted(entity.unique().tolist())
    est_periods = kept.loc[kept[WINDOW_COL] == "estimation", PERIOD_COL]
    column_info = {
        "grain": grain,
        "target": roles["target"],
        "drivers": roles["drivers"],
        "spend": roles["spend"],
        "controls": roles["controls"],
        "aggregation": aggregation,
        "level": level,
        "entities": sorted(kept[ENTITY_COL].unique().tolist()),
        "source_entities": sources,
        "n_source_entities": len(sources),
        "windows": {
            "carryover_start": _iso(win["carryover_start"]),
            "estimation_start": _iso(win["estimation_start"]),
            "end": _iso(win["end"]),
            "n_carryover": int((window == "carryover").sum()),
            "n_estimation": int(is_est.sum()),
            "n_holdout": n_holdout,
            "first_holdout_period": _iso(kept.loc[kept[WINDOW_COL] == HOLDOUT, PERIOD_COL].min()) if n_holdout else None,
            "first_period": _iso(kept[PERIOD_COL].min()),
            "first_estimation_period": _iso(est_periods.iloc[0]),
            "last_period": _iso(last),
        },
        "notes": notes,
        "source_columns": source_columns,
    }
    return kept, column_info


def _entity_panel(data: pd.DataFrame, brand: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Every entity's own rows over the brand's periods and windows (``model.level: entity``).

    An entity-level model needs each entity in every period of the windows: a missing row is not
    "no sales", so it is refused with the entities and periods named rather than filled in.
    """
    periods = pd.DatetimeIndex(brand[PERIOD_COL])
    entities = sorted(data[ENTITY_COL].unique().tolist())
    grid = pd.MultiIndex.from_product([entities, periods], names=[ENTITY_COL, PERIOD_COL])
    panel = data.set_index([ENTITY_COL, PERIOD_COL]).reindex(grid)
    gap = panel[cols].isna().all(axis=1)
    if gap.any():
        by_entity = gap[gap].reset_index().groupby(ENTITY_COL)[PERIOD_COL].agg(list)
        shown = "; ".join(f"{e!r}: {len(p)} missing (e.g. {_iso(p[0])})" for e, p in list(by_entity.items())[:5])
        raise ValueError(
            f"model.level: entity needs every entity in every period of the windows, but {int(gap.sum())} "
            f"entity-periods have no row ({shown}{' …' if len(by_entity) > 5 else ''}). Add the rows (0 activity and "
            "spend where nothing ran), drop those entities, or use model.level: brand"
        )
    panel = panel.reset_index()
    panel.insert(2, WINDOW_COL, np.tile(brand[WINDOW_COL].to_numpy(), len(entities)))
    return panel[[ENTITY_COL, PERIOD_COL, WINDOW_COL, *cols]]


# --------------------------------------------------------------------------- tables for the notebook


def window_table(column_info: dict[str, Any]) -> pd.DataFrame:
    """The carryover and estimation windows: boundaries, first/last period and number of periods."""
    w = column_info["windows"]
    last_carry = ""
    if w["n_carryover"]:
        last_carry = (pd.Timestamp(w["first_estimation_period"]) - period_offset(column_info["grain"])).date().isoformat()
    n_hold = int(w.get("n_holdout") or 0)
    rows = [
        {"window": "carryover", "from (rule)": w["carryover_start"], "to (rule, exclusive)": w["estimation_start"],
         "first period": w["first_period"] if w["n_carryover"] else "", "last period": last_carry,
         "periods": w["n_carryover"], "used for": "adstock warm-up only"},
        {"window": "estimation", "from (rule)": w["estimation_start"], "to (rule, exclusive)": w["end"],
         "first period": w["first_estimation_period"], "last period": w["last_period"],
         "periods": w["n_estimation"], "used for": "model fit, contributions, ROI"},
    ]  # fmt: skip
    if n_hold:
        first_hold = pd.Timestamp(w["first_holdout_period"])
        rows[1]["last period"] = (first_hold - period_offset(column_info["grain"])).date().isoformat()
        rows[1]["used for"] = "model fit, contributions, ROI (holdout excluded)"
        rows.append({"window": "holdout", "from (rule)": f"last {n_hold} periods", "to (rule, exclusive)": w["end"],
                     "first period": w["first_holdout_period"], "last period": w["last_period"], "periods": n_hold,
                     "used for": "out-of-sample check only (predicted, not fitted)"})  # fmt: skip
    return pd.DataFrame(rows)


def aggregation_table(column_info: dict[str, Any]) -> pd.DataFrame:
    """Each canonical column with its role, how entities were aggregated and (drivers) its spend column."""
    rows = [{"column": column_info["target"], "role": "target", "aggregation": column_info["aggregation"][column_info["target"]], "spend column": ""}]
    for d in column_info["drivers"]:
        sp = column_info["spend"].get(d)
        shown = "none" if not sp else f"{sp} (itself: the driver is spend)" if sp == d else sp
        rows.append({"column": d, "role": "driver", "aggregation": column_info["aggregation"][d], "spend column": shown})
    # A driver that is its own spend column (Robyn's tv_S) is listed once, as a driver.
    for s in dict.fromkeys(s for s in column_info["spend"].values() if s and s not in column_info["drivers"]):
        rows.append({"column": s, "role": "spend", "aggregation": column_info["aggregation"][s], "spend column": ""})
    for c in column_info["controls"]:
        rows.append({"column": c, "role": "control", "aggregation": column_info["aggregation"][c], "spend column": ""})
    return pd.DataFrame(rows)


def canonical_headline(canonical_df: pd.DataFrame, column_info: dict[str, Any]) -> str:
    """One-paragraph summary of the canonical data (plus any notes) for the end of 02_canonicalize."""
    w = column_info["windows"]
    n_hold = int(w.get("n_holdout") or 0)
    text = (
        f"canonical data: {w['n_carryover'] + w['n_estimation'] + n_hold} {column_info['grain'].lower()}s "
        f"({w['n_carryover']} carryover + {w['n_estimation']} estimation"
        + (f" + {n_hold} holdout" if n_hold else "")
        + f", {w['first_estimation_period']} – {w['last_period']}), "
        + (f"{column_info['n_source_entities']} entities kept as a panel (entity-level model), "
           if column_info.get("level") == "entity" else f"{column_info['n_source_entities']} entities aggregated to brand, ")
        + f"{len(column_info['drivers'])} driver(s), {len(column_info['controls'])} control(s)"
    )
    return "\n".join([text, *(f"note: {n}" for n in column_info.get("notes", []))])
