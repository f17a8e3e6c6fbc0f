"""Read an input file as a table, as written, and keep a copy of it.

``load_raw(source, spec)`` reads CSV or Parquet without coercing roles: the delimiter (``,`` ``;``
tab ``|``) and the encoding (UTF-8 with or without BOM, UTF-16, Windows-1252, Latin-1) are
detected, gzip-compressed CSV is unpacked, the spec's entity and period columns stay text and only
empty cells are missing. How a CSV was read is kept in ``attrs["source_format"]`` for the checks in
:mod:`mmm_lib.validation`. A file that cannot be read as a table (missing, not a regular file, empty,
a spreadsheet or archive whatever its name, damaged gzip, ragged rows, a single column, past a size
limit of :mod:`mmm_lib.input_file`) raises :class:`DataFormatError` naming the file and the fix.

``source`` is a path or an :class:`~mmm_lib.input_file.InputFile` (a file opened once and read, as
``Run.data_source()`` returns it); ``keep_source(run, source)`` copies those same bytes into the run
folder with their SHA-256; ``parquet_safe(df)`` makes the table as read writable as ``raw_data.parquet``.
``select_rows(df, spec)`` keeps the rows the spec's ``data_filter`` names (one brand or market of a file).
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .columns import ENTITY_COL, PERIOD_COL, column_map
from .input_file import (
    MAX_COLUMNS,
    MAX_FIELD_CHARS,
    MAX_INPUT_BYTES,
    DataFormatError,
    InputFile,
    content_problem,
    gunzip,
    read_input,
)
from .spec import RunSpec

__all__ = ["DataFormatError", "InputFile", "keep_source", "load_raw", "parquet_safe", "read_input", "select_rows"]

_DELIMITERS = [",", ";", "\t", "|"]


# --------------------------------------------------------------------------- CSV


def _decode(raw: bytes) -> tuple[str, str]:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            raise DataFormatError(
                "the file starts like UTF-16 text but is cut off or damaged mid-character; export the data again "
                "as CSV (UTF-8)"
            ) from None
    head = raw[:4000]
    if head.count(0) > len(head) // 4:
        # UTF-16 without a byte-order mark: ASCII text has a NUL in every other byte.
        enc = "utf-16-le" if head[1::2].count(0) > head[0::2].count(0) else "utf-16-be"
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            raise DataFormatError(
                "the file contains NUL bytes but is not UTF-16 text: it looks binary; export the data as CSV (UTF-8)"
            ) from None
    # utf-8-sig also reads plain UTF-8; cp1252 before latin-1 so Excel's dashes and quotes survive.
    # Not charset-normalizer: on a CSV (digits, few accented names) it guesses cp852/cp1250 for German or
    # French text and garbles it; UTF-8 validates itself and cp1252 is what Excel writes otherwise.
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"


@contextmanager
def _csv_field_limit(n: int) -> Iterator[None]:
    """csv's field size limit (process-wide, 131,072 by default) set to ``n`` for the block."""
    old = csv.field_size_limit(min(n, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _records(text: str, delim: str) -> Iterator[list[str]]:
    """CSV records of ``text``: lines end in LF, CRLF or a lone CR; quoted cells may hold line breaks."""
    return csv.reader(io.StringIO(text, newline=""), delimiter=delim)


def _first_records(text: str, delim: str, n: int = 50) -> list[list[str]]:
    rows = (r for r in _records(text, delim) if r and not (len(r) == 1 and not r[0].strip()))  # skip blank lines
    try:
        return list(itertools.islice(rows, n))
    except csv.Error:
        return []


_SNIFF_CHARS = 8 * 2**20  # the delimiter is guessed from the first records within this prefix


def _sniff_delimiter(text: str) -> str | None:
    """The delimiter giving the most header fields and the most consistent field count."""
    best: tuple[float, int] | None = None
    chosen = None
    text = text[:_SNIFF_CHARS]
    # With a wrong delimiter a whole line is one field: csv's field limit must not stop the guessing.
    with _csv_field_limit(_SNIFF_CHARS + 1):
        for d in _DELIMITERS:
            counts = [len(r) for r in _first_records(text, d)]
            if not counts or counts[0] < 2:
                continue
            score = (sum(c == counts[0] for c in counts) / len(counts), counts[0])
            if best is None or score > best:
                best, chosen = score, d
    return chosen


def _first_line(text: str) -> str:
    lines = (ln for ln in io.StringIO(text, newline="") if ln.strip())
    return next(lines, "").rstrip("\r\n")


_OTHER_SEPARATORS = {" ": "space", ":": "':'", "~": "'~'", "^": "'^'", "#": "'#'", "/": "'/'"}


def _single_column_error(path: Path, header: str) -> DataFormatError:
    seen = {sep: header.count(sep) for sep in _OTHER_SEPARATORS if header.count(sep)}
    if seen:
        sep = max(seen, key=seen.get)  # type: ignore[arg-type]
        return DataFormatError(
            f"data file {path}: the header {header[:80]!r} reads as a single column (no ',', ';', tab or '|'); it looks "
            f"separated by {_OTHER_SEPARATORS[sep]}, which is not supported. Save the file as CSV with ',' between columns "
            "(Excel: Save As > CSV UTF-8)"
        )
    return DataFormatError(
        f"data file {path}: found a single column in the header {header[:80]!r}; "
        "separate the columns with ',', ';', tab or '|' (e.g. entity_id,period_start,sales,...)"
    )


def _check_header(path: Path, header: list[str]) -> list[str]:
    if len(header) > MAX_COLUMNS.value():
        raise MAX_COLUMNS.exceeded(path, f"the header has {len(header):,} columns")
    broken = [i for i, h in enumerate(header, start=1) if "\n" in h or "\r" in h]
    if broken:
        i = broken[0]
        raise DataFormatError(
            f"data file {path}: column {i} of the header, {header[i - 1][:80]!r}, contains a line break inside its "
            "quotes; a column name must be on one line: rename the column in the file (remove the line break)"
        )
    header = [h.strip() for h in header]
    while header and header[-1] == "":  # a trailing delimiter on the header line
        header.pop()
    dup = sorted(h for h, k in Counter(header).items() if k > 1)
    if dup:
        raise DataFormatError(f"data file {path}: the header names {dup} more than once; rename or drop the repeated columns")
    if header and header[0] == "":
        # pandas' default to_csv writes its index under an empty name: keep it, named as pandas does.
        header[0] = "Unnamed: 0"
    if "" in header:
        raise DataFormatError(
            f"data file {path}: column {header.index('') + 1} of the header has no name; "
            "name every column (or delete the empty one)"
        )
    return header


def _ragged_lines(path: Path, text: str, delim: str, n_fields: int) -> list[tuple[int, int]]:
    """(line, fields) of the records whose field count differs from the header's; cells bounded in length."""
    bad = []
    reader = _records(text, delim)
    limit = MAX_FIELD_CHARS.value()
    with _csv_field_limit(limit):
        try:
            for row in reader:
                if row and len(row) != n_fields and not (len(row) > n_fields and not "".join(row[n_fields:]).strip()):
                    bad.append((reader.line_num, len(row)))
        except csv.Error as e:
            if "field larger than field limit" in str(e):
                raise MAX_FIELD_CHARS.exceeded(path, f"a cell on line {reader.line_num:,} is longer") from None
            raise DataFormatError(
                f"data file {path} cannot be read as a {delim!r}-separated table: {e} (line {reader.line_num:,}); "
                "check that quotes are closed and that the file is text"
            ) from None
    return bad


def _read_csv(path: Path, raw: bytes, text_columns: list[str] | None = None) -> pd.DataFrame:
    if not raw.strip():
        raise DataFormatError(f"data file {path} is empty; export the data again with a header row and data rows")
    try:
        text, enc = _decode(raw)
    except DataFormatError as e:
        raise DataFormatError(f"data file {path}: {e}") from None
    delim = _sniff_delimiter(text)
    if delim is None:
        raise _single_column_error(path, _first_line(text[:_SNIFF_CHARS]))
    with _csv_field_limit(MAX_FIELD_CHARS.value()):
        first = _first_records(text, delim, 1)  # [] when a header cell passes the limit
    if not first:
        raise MAX_FIELD_CHARS.exceeded(path, "a cell of the header is longer")
    header = _check_header(path, first[0])
    # pandas silently turns surplus leading fields into an index, so count fields per line first.
    bad_lines = _ragged_lines(path, text, delim, len(header))
    if bad_lines:
        shown = ", ".join(f"line {n} has {k}" for n, k in bad_lines[:3])
        raise DataFormatError(
            f"data file {path} cannot be read as a {delim!r}-separated table: the header has {len(header)} fields but "
            f"{shown}{' …' if len(bad_lines) > 3 else ''} ({len(bad_lines)} such lines); "
            "check for unquoted delimiters inside values (e.g. 1,200 in a ','-separated file) and missing fields"
        )
    try:
        df = pd.read_csv(
            io.StringIO(text, newline=""),
            sep=delim,
            header=0,
            names=header,
            # Ids and dates stay text: "001" must not become 1, and dates are parsed by validation.
            dtype={c: str for c in (text_columns or [ENTITY_COL, PERIOD_COL])},
            # Only empty cells are missing; 'NA' may be an entity and 'n/a' is reported as written.
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=True,
            index_col=False,  # trailing delimiters: drop the empty surplus fields
        )
    except Exception as e:  # noqa: BLE001 - the C parser raises several types; each is a message, not a traceback
        raise DataFormatError(
            f"data file {path} cannot be read as a {delim!r}-separated table ({type(e).__name__}: {e}); "
            "check that every row has as many fields as the header and that quotes are closed"
        ) from None
    df.attrs["source_format"] = {"format": "csv", "delimiter": delim, "encoding": enc}
    return df


def _read_parquet(path: Path, data: bytes) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        if meta.num_columns > MAX_COLUMNS.value():
            raise MAX_COLUMNS.exceeded(path, f"the Parquet file has {meta.num_columns:,} columns")
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        if unpacked > MAX_INPUT_BYTES.value():
            raise MAX_INPUT_BYTES.exceeded(path, f"the Parquet file unpacks to {unpacked:,} bytes")
        df = pd.read_parquet(io.BytesIO(data))
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise DataFormatError(f"data file {path} cannot be read as Parquet ({e}); write it again or export it as CSV") from None
    if isinstance(df.index, pd.MultiIndex) or df.index.name is not None:
        df = df.reset_index()
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------- reading and keeping the file

_SPREADSHEET_SUFFIXES = {".xlsx", ".xls", ".xlsm", ".xlsb", ".ods", ".numbers"}


def load_raw(source: str | Path | InputFile, spec: RunSpec | None = None) -> pd.DataFrame:
    """Read the input table as written (no role coercion).

    Parameters
    ----------
    source
        A CSV file (``,`` ``;`` tab or ``|`` separated; UTF-8 with or without BOM, UTF-16,
        Windows-1252 or Latin-1; optionally gzip-compressed) or a Parquet file: its path, or the
        file already opened and read (:func:`~mmm_lib.input_file.read_input`, ``Run.data_source()``),
        which is then not opened again.
    spec
        The run spec, for the names of its entity and period columns (``columns``), which are kept
        as text; default the standard ``entity_id`` and ``period_start``.

    Returns
    -------
    pandas.DataFrame
        One row per data row, column names stripped of surrounding spaces. The entity and period
        columns are kept as text for CSV; only empty cells are read as missing. ``attrs["source_format"]``
        records how a CSV was read (``delimiter``, ``encoding``), for :func:`mmm_lib.validation.validate`.

    Raises
    ------
    DataFormatError
        The file does not exist, is not a regular file, is empty, is a spreadsheet or an archive (by
        name or content), is damaged, passes a limit of :mod:`mmm_lib.input_file`, or is not a readable table.
    """
    path = source.path if isinstance(source, InputFile) else Path(source)
    if path.suffix.lower() in _SPREADSHEET_SUFFIXES:
        raise DataFormatError(f"data file {path} is a spreadsheet; save the sheet as CSV (UTF-8) and use that file")
    data = source.data if isinstance(source, InputFile) else read_input(path).data
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, path)
    problem = content_problem(data[:8])
    if problem:
        raise DataFormatError(f"data file {path} {problem}")
    if path.suffix.lower() in {".parquet", ".pq"} or data[:4] == b"PAR1":
        df = _read_parquet(path, data)
    else:
        cm = column_map(spec)
        df = _read_csv(path, data, [c for c in (cm.entity, cm.period) if c is not None])
    df.columns = [str(c).strip() for c in df.columns]
    if df.shape[1] == 0 or len(df) == 0:
        raise DataFormatError(f"data file {path} has no data rows (only a header?); export the data again with its rows")
    return df


def filter_text(col: pd.Series) -> pd.Series:
    """A column's values as the filter compares them: text stripped, whole numbers without ``.0``."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        num = col.astype("float64")
        whole = num.notna() & np.isfinite(num) & (num == np.round(num))
        text = col.astype(str)
        text[whole] = num[whole].map(lambda x: str(int(x)))
        return text.where(col.notna(), None)
    return col.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())


def select_rows(df: pd.DataFrame, spec: RunSpec | None) -> pd.DataFrame:
    """Keep the rows the spec's ``data_filter`` names: for every column listed, rows holding one of its values.

    Values are compared as text (``2024`` matches a year read as a number). What was kept is recorded in
    ``attrs["data_filter"]`` (``filter``, ``rows_read``, ``rows_kept``) for the validation report; the table
    without a filter is returned as it is.

    Raises
    ------
    DataFormatError
        A filter column that is not in the file (the file's columns are listed), or a filter that keeps no row
        (the values found in that column are listed).
    """
    flt = dict(spec.data_filter) if spec is not None else {}
    if not flt:
        return df
    keep = pd.Series(True, index=df.index)
    for col, values in flt.items():
        if col not in df.columns:
            close = [c for c in map(str, df.columns) if c.lower() == col.lower()]
            hint = f"; did you mean {close[0]!r}?" if close else f"; the file's columns: {[str(c) for c in df.columns][:30]}"
            raise DataFormatError(f"data_filter column {col!r} is not a column of the file{hint}. "
                                  "Fix data_filter in the spec")
        text = filter_text(df[col])
        hit = text.isin(values)
        if not hit.any():
            found = sorted({v for v in text.dropna().unique()})
            shown = ", ".join(repr(v) for v in found[:12]) + (" …" if len(found) > 12 else "")
            raise DataFormatError(f"data_filter {col}: {values} matches no row of the file; {col} holds {shown}. "
                                  "Fix data_filter in the spec")
        keep &= hit
    out = df[keep].reset_index(drop=True)
    if out.empty:
        raise DataFormatError(f"data_filter {flt} keeps no row of the file (each column matches, but never in the "
                              "same row); fix data_filter in the spec")
    out.attrs = {**df.attrs, "data_filter": {"filter": flt, "rows_read": int(len(df)), "rows_kept": int(len(out))}}
    return out


def keep_source(run: Any, source: InputFile | None = None) -> dict[str, Any]:
    """Keep the run's input file byte-for-byte in the run folder (``source.<ext>``), with its SHA-256.

    For a ``dataset_id`` run the dataset's uploaded file (``mmm datasets add``) is copied into the run folder
    (:func:`~mmm_lib.storage.keep_dataset_source`), so the run keeps what it was fitted on even when the dataset
    is replaced or removed later, also when the notebooks are run by hand.

    Parameters
    ----------
    run
        The :class:`~mmm_lib.storage.Run`.
    source
        The input as read (``run.data_source()``): pass the same object to :func:`load_raw` so the copy
        holds exactly the bytes that were validated. Default: read ``run.data_source()`` here.

    Returns
    -------
    dict
        ``{"path", "file", "sha256", "bytes"}`` (``path`` as given by the spec, ``file`` the copy's name
        in the run folder), or for a dataset ``{"dataset_id", "file", "sha256", "bytes"}``; stored as
        ``source`` in ``validation_summary.json``.
    """
    from .storage import keep_dataset_source, write_bytes

    spec = run.spec
    if spec.data_path is None:
        return keep_dataset_source(run.dir, spec.dataset_id)
    src = Path(spec.data_path)
    data = (source if source is not None else run.data_source()).data
    suffixes = [x.lower() for x in src.suffixes[-2:]]
    ext = "".join(suffixes) if suffixes[-1:] == [".gz"] else "".join(suffixes[-1:])
    if not re.fullmatch(r"(\.[a-z0-9]{1,10}){1,2}", ext):
        ext = ".dat"  # the copy's name must stay a plain file name whatever the user's was
    name = f"source{ext}"
    write_bytes(run.path(name), data)
    return {"path": str(src), "file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose mixed-type ``object`` columns are text, so ``to_parquet`` cannot fail on them."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype("str")
    out.columns = [str(c) for c in out.columns]
    return out
