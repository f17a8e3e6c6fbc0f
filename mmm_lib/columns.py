"""Column mapping: a file in any layout → the standard columns, applied once at the start.

The spec's ``columns`` section says which columns of the file hold the entity and the period, and
whether the target is a product (Meridian's ``conversions × revenue_per_conversion``); drivers,
controls and ``spend_cols`` already name the file's own columns. :func:`to_standard_columns` turns the
file as read into the standard frame::

    entity_id, period_start, <modelled target>, drivers, spend columns, controls

(a file with no entity column becomes one entity, :data:`SINGLE_ENTITY`), and :func:`standard_spec`
gives the spec in the same vocabulary. ``canonicalize`` starts with both, so every later stage sees
standard names only. Validation reads the file as written and reports problems in the file's own
column names (:class:`ColumnMap` tells it which is which).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .spec import ColumnsConfig, RunSpec

ENTITY_COL = "entity_id"
PERIOD_COL = "period_start"
SINGLE_ENTITY = "all"  # the entity of a file without an entity column


class ColumnMappingError(ValueError):
    """A column the spec's mapping names is not in the file; the message names it and close matches."""


@dataclass(frozen=True)
class ColumnMap:
    """Where the standard key and target columns are in the file.

    Attributes
    ----------
    entity
        The file's entity column, or ``None`` when the file is one series.
    period
        The file's period start column.
    target
        The file's target column (``target_col``).
    multiplier
        The column the target is multiplied by (``columns.target_multiplier``), or ``None``.
    target_name
        The modelled target's name in the standard frame (``target_col`` without a multiplier).
    """

    entity: str | None = ENTITY_COL
    period: str = PERIOD_COL
    target: str = "sales"
    multiplier: str | None = None
    target_name: str = "sales"

    @property
    def target_sources(self) -> list[str]:
        """The file's columns the modelled target is computed from."""
        return [self.target] if self.multiplier is None else [self.target, self.multiplier]

    @property
    def target_label(self) -> str:
        """How messages name the target: ``'sales'`` or ``'revenue' (= conversions × revenue_per_conversion)``."""
        if self.multiplier is None:
            return repr(self.target)
        return f"{self.target_name!r} (= {self.target} × {self.multiplier})"

    @property
    def is_default(self) -> bool:
        return self.entity == ENTITY_COL and self.period == PERIOD_COL and self.multiplier is None

    def required(self) -> list[tuple[str, str, str]]:
        """``(column, spec key, role)`` for every key/target column the file must have."""
        out = []
        if self.entity is not None:
            out.append((self.entity, "columns.entity", "entity"))
        out.append((self.period, "columns.period", "period start"))
        out.append((self.target, "target_col", "target"))
        if self.multiplier is not None:
            out.append((self.multiplier, "columns.target_multiplier", "target multiplier"))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "period": self.period, "target": self.target,
                "target_multiplier": self.multiplier, "target_name": self.target_name}


def column_map(spec: RunSpec | None, target: str = "sales") -> ColumnMap:
    """The spec's :class:`ColumnMap` (the standard names, target ``target``, without a spec)."""
    if spec is None:
        return ColumnMap(target=target, target_name=target)
    c: ColumnsConfig = spec.columns
    return ColumnMap(entity=c.entity, period=c.period, target=spec.target_col, multiplier=c.target_multiplier,
                     target_name=spec.modelled_target)


def suggest(name: str, columns: list[str]) -> str:
    """`` — did you mean 'Geo'?`` for the closest column names (case-insensitive first), or ``''``."""
    lower = {c.lower(): c for c in columns}
    hits = [lower[name.lower()]] if name.lower() in lower else []
    hits += [c for c in difflib.get_close_matches(name, columns, n=3, cutoff=0.6) if c not in hits]
    if not hits:
        lowered = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.6)
        hits = [lower[h] for h in lowered]
    return f" — did you mean {', '.join(repr(h) for h in hits[:3])}?" if hits else ""


def standard_name_conflicts(spec: RunSpec) -> list[tuple[str, str]]:
    """Role columns whose names clash with the standard names the mapping creates: ``(column, message)``.

    E.g. a control named ``period_start`` while ``columns.period`` is ``time``, or ``target_name``
    equal to a driver. (A driver that is its own spend column is allowed.)
    """
    cm = column_map(spec)
    roles = [*((d, "a driver") for d in spec.drivers), *((s, "a spend column") for s in spec.spend_cols.values()),
             *((c, "a control") for c in spec.controls)]
    out = []
    for key, mapped, spec_key in [(ENTITY_COL, cm.entity, "columns.entity"), (PERIOD_COL, cm.period, "columns.period")]:
        if mapped != key:
            for col, what in roles:
                if col == key:
                    out.append((col, f"column {col!r} is {what}, but {col!r} is the standard name the mapping gives "
                                     f"{spec_key} ({mapped!r}); rename the column in the file"))
    if cm.multiplier is not None:
        for col, what in [*roles, (ENTITY_COL, "the entity key"), (PERIOD_COL, "the period key")]:
            if col == cm.target_name:
                out.append((col, f"columns.target_name {col!r} (the modelled target) is also {what}; "
                                 "choose another target_name"))
    return list(dict.fromkeys(out))


def standard_spec(spec: RunSpec) -> RunSpec:
    """The spec in the standard vocabulary: ``target_col`` is the modelled target, ``columns`` the defaults.

    Use it with a frame from :func:`to_standard_columns`.
    """
    return spec.model_copy(update={"target_col": spec.modelled_target, "columns": ColumnsConfig()})


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype("float64")


def to_standard_columns(raw_df: pd.DataFrame, spec: RunSpec, *, strict: bool = True) -> pd.DataFrame:
    """The file as read → the standard frame, by the spec's column mapping.

    Parameters
    ----------
    raw_df
        The input table as read (``raw_data.parquet``), in the file's own column names.
    spec
        The run spec: ``columns`` (entity, period, target multiplier), ``target_col``, ``drivers``,
        ``spend_cols`` and ``controls``.
    strict
        ``True`` (canonicalize): a missing mapped column raises. ``False`` (the overview figure of
        01_validate, drawn before errors stop the run): missing columns are left out.

    Returns
    -------
    pandas.DataFrame
        ``entity_id`` (text; :data:`SINGLE_ENTITY` when ``columns.entity`` is null), ``period_start``
        (as written; canonicalize parses it), the modelled target (``target_col`` as written, or
        ``target_col × target_multiplier`` as float), then each driver, spend and control column as
        written. Rows in the file's order; other columns are dropped.

    Raises
    ------
    ColumnMappingError
        (``strict``) a column the mapping or the spec names is not in the file, naming it, the spec
        key that names it and close matches.
    """
    from .canonicalize import resolve_roles  # canonicalize imports this module

    cols = [str(c) for c in raw_df.columns]
    df = raw_df.reset_index(drop=True)
    df.columns = cols
    cm = column_map(spec)
    roles = resolve_roles(standard_spec(spec), cols)
    wanted = [(c, key, role) for c, key, role in cm.required()]
    wanted += [(d, "drivers", "driver") for d in spec.drivers]
    wanted += [(s, f"spend_cols.{d}", "spend") for d, s in spec.spend_cols.items()]
    wanted += [(c, "controls", "control") for c in spec.controls]
    missing = [(c, key, role) for c, key, role in wanted if c not in cols]
    conflicts = standard_name_conflicts(spec)
    if conflicts and strict:
        raise ColumnMappingError("; ".join(m for _, m in conflicts))
    if missing and strict:
        lines = [f"{role} column {c!r} ({key} in the spec) is not in the file{suggest(c, cols)}" for c, key, role in missing]
        text = "; ".join(lines)
        raise ColumnMappingError(
            text + ("" if text.endswith("?") else ".") + f" The file's columns: {cols[:30]}{' …' if len(cols) > 30 else ''}. "
            "Fix the name in the spec (columns:, target_col, drivers, controls, spend_cols) or in the file's header"
        )

    out = pd.DataFrame(index=df.index)
    if cm.entity is None:
        out[ENTITY_COL] = pd.Series(SINGLE_ENTITY, index=df.index, dtype="str")
    elif cm.entity in cols:
        out[ENTITY_COL] = df[cm.entity]
    if cm.period in cols:
        out[PERIOD_COL] = df[cm.period]
    if cm.multiplier is None:
        if cm.target in cols:
            out[cm.target_name] = df[cm.target]
    elif cm.target in cols and cm.multiplier in cols:
        out[cm.target_name] = _numeric(df[cm.target]) * _numeric(df[cm.multiplier])
    for c in [*roles["drivers"], *[s for s in roles["spend"].values() if s], *roles["controls"]]:
        if c in cols and c not in out.columns:
            out[c] = df[c]
    return out
