"""Tables as a report reader sees them: numbers formatted for reading, no meaningless index, text escaped.

The stage functions return plain DataFrames (tests and artifacts use those); the notebooks display
them through :func:`report_table`, which only changes how they look: thousands separators instead of
``8.515303e+02``, counts as integers, "–" for a missing value instead of ``<NA>``/``nan``, and no
0..N index column. Every cell is HTML-escaped (a column name is data, never markup).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

MISSING = "–"


def _missing(v: Any) -> bool:
    if v is None:
        return True
    pd = sys.modules.get("pandas")  # imported only where a table is built: the runner formats plain numbers
    if pd is not None and (v is pd.NA or v is pd.NaT):
        return True
    try:
        return bool(isinstance(v, (float, np.floating)) and math.isnan(v))
    except TypeError:
        return False


def fmt_number(v: Any, digits: int = 2) -> str:
    """A number for reading: ``1,234``, ``851.5``, ``0.35``, ``0.00003``; "–" when missing; never ``1e+03``.

    Integers (and floats that are whole and large) get thousands separators; other floats keep
    ``digits`` decimals below 100, one decimal below 1,000 and none above.
    """
    if _missing(v):
        return MISSING
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        x = float(v)
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        a = abs(x)
        if a >= 1000:
            return f"{x:,.0f}"
        if a >= 100:
            return f"{x:,.1f}"
        if a != 0 and a < 10 ** -digits:  # small but not zero: enough decimals to see it, never 1e-05
            return f"{x:.{max(digits, 1 - math.floor(math.log10(a)))}f}".rstrip("0")
        return f"{round(x, digits) + 0.0:.{digits}f}"
    return str(v)


def fmt_fixed(x: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals and thousands separators (whole units from 10,000); "–" for none.

    For one-line headlines and summary tables (the run index, ``mmm compare``), where every value in a
    column should show the same decimals; :func:`fmt_number` adapts them to the size instead.
    """
    if x is None:
        return MISSING
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:,.{digits}f}"
    return str(x)


def fmt_int(v: Any) -> str:
    """A count (ESS, draws, periods): rounded to a whole number, with thousands separators."""
    if _missing(v):
        return MISSING
    try:
        return f"{int(round(float(v))):,}"
    except (TypeError, ValueError):
        return str(v)


def fmt_text(v: Any) -> str:
    """Text, with "–" for a missing value (``None``, ``<NA>``, ``nan``)."""
    return MISSING if _missing(v) else str(v)


def fmt_cell(v: Any, digits: int = 2) -> str:
    """Numbers through :func:`fmt_number`, anything else through :func:`fmt_text`."""
    if isinstance(v, (int, float, np.integer, np.floating, bool, np.bool_)) or _missing(v):
        return fmt_number(v, digits)
    return str(v)


def report_table(
    df: pd.DataFrame,
    formats: Mapping[str, Callable[[Any], str] | int] | None = None,
    *,
    index: bool | None = None,
    ints: Iterable[str] = (),
    digits: int = 2,
    wrap: bool = True,
) -> Any:
    """``df`` as a pandas ``Styler`` ready for a report.

    Parameters
    ----------
    df
        The table. It is not changed.
    formats
        Per column: a function ``value -> str``, or an int (decimals for :func:`fmt_number`). Other
        columns use :func:`fmt_cell` with ``digits``.
    index
        Show the index. ``None`` (default): only when it is not a plain 0..N range.
    ints
        Columns shown as whole numbers (:func:`fmt_int`), e.g. ESS.
    wrap
        Let long text wrap, left-aligned (messages, remedies).
    """
    import pandas as pd

    formats = dict(formats or {})
    for c in ints:
        formats.setdefault(c, fmt_int)
    fmt: dict[Any, Callable[[Any], str]] = {}
    for c in df.columns:
        f = formats.get(c)
        if isinstance(f, int):
            fmt[c] = lambda v, d=f: fmt_cell(v, d)
        elif f is not None:
            fmt[c] = f
        else:
            fmt[c] = lambda v: fmt_cell(v, digits)
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex)
    styler = df.style.format(fmt, escape="html").format_index(escape="html", axis=0).format_index(
        escape="html", axis=1
    )
    if not index:
        styler = styler.hide(axis="index")
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    props = [("vertical-align", "top")]
    if wrap:
        props += [("white-space", "normal")]
    styler = styler.set_properties(**dict(props)).set_properties(
        subset=[c for c in df.columns if c not in numeric], **{"text-align": "left"}
    ).set_properties(subset=numeric, **{"text-align": "right", "font-variant-numeric": "tabular-nums"})
    return styler.set_table_styles([{"selector": "th", "props": [("text-align", "left")]}])
