"""Read an input file as a table, as written, and keep a copy of it.

``load_raw(path, spec)`` reads CSV or Parquet without coercing roles: the delimiter (``,`` ``;``
tab ``|``) and the encoding (UTF-8 with or without BOM, UTF-16, Windows-1252, Latin-1) are
detected, gzip-compressed CSV is unpacked, the spec's entity and period columns stay text and only
empty cells are missing. How a CSV was read is kept in ``attrs["source_format"]`` for the checks in
:mod:`mmm_lib.validation`. A file that cannot be read as a table (missing, empty, a spreadsheet,
ragged rows, a single column) raises :class:`DataFormatError` naming the file and the fix.

``keep_source(run)`` copies the input file byte-for-byte into the run folder with its SHA-256;
``parquet_safe(df)`` makes the table as read writable as ``raw_data.parquet``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .columns import ENTITY_COL, PERIOD_COL, column_map
from .spec import RunSpec

_DELIMITERS = [",", ";", "\t", "|"]


class DataFormatError(ValueError):
    """The input file cannot be read as a table; the message names the file and the fix."""


# --------------------------------------------------------------------------- CSV


def _decode(raw: bytes) -> tuple[str, str]:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
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


def _sniff_delimiter(lines: list[str]) -> str | None:
    """The delimiter giving the most header fields and the most consistent field count."""
    best: tuple[float, int] | None = None
    chosen = None
    for d in _DELIMITERS:
        counts = [len(r) for r in csv.reader(lines, delimiter=d)]
        if not counts or counts[0] < 2:
            continue
        score = (sum(c == counts[0] for c in counts) / len(counts), counts[0])
        if best is None or score > best:
            best, chosen = score, d
    return chosen


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


def _read_csv(path: Path, text_columns: list[str] | None = None) -> pd.DataFrame:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if not raw.strip():
        raise DataFormatError(f"data file {path} is empty; export the data again with a header row and data rows")
    try:
        text, enc = _decode(raw)
    except DataFormatError as e:
        raise DataFormatError(f"data file {path}: {e}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()][:50]
    delim = _sniff_delimiter(lines)
    if delim is None:
        raise _single_column_error(path, lines[0])
    header = [h.strip() for h in next(csv.reader([lines[0]], delimiter=delim))]
    while header and header[-1] == "":  # a trailing delimiter on the header line
        header.pop()
    dup = sorted({h for h in header if header.count(h) > 1})
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
    # pandas silently turns surplus leading fields into an index, so count fields per line first.
    bad_lines = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text), delimiter=delim), start=1):
        if row and len(row) != len(header) and not (len(row) > len(header) and not "".join(row[len(header):]).strip()):
            bad_lines.append((lineno, len(row)))
    if bad_lines:
        shown = ", ".join(f"line {n} has {k}" for n, k in bad_lines[:3])
        raise DataFormatError(
            f"data file {path} cannot be read as a {delim!r}-separated table: the header has {len(header)} fields but "
            f"{shown}{' …' if len(bad_lines) > 3 else ''} ({len(bad_lines)} such lines); "
            "check for unquoted delimiters inside values (e.g. 1,200 in a ','-separated file) and missing fields"
        )
    try:
        df = pd.read_csv(
            io.StringIO(text),
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
    except (pd.errors.ParserError, ValueError) as e:
        raise DataFormatError(
            f"data file {path} cannot be read as a {delim!r}-separated table: {e}; "
            "check that every row has as many fields as the header and that quotes are closed"
        ) from None
    df.attrs["source_format"] = {"format": "csv", "delimiter": delim, "encoding": enc}
    return df


# --------------------------------------------------------------------------- reading and keeping the file


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(
            f"data file not found: {path}; check data_path in the spec (a relative path is relative to the spec file)"
        )
    if path.is_dir():
        raise DataFormatError(f"data path {path} is a folder; point data_path at a CSV or Parquet file")


def load_raw(path: str | Path, spec: RunSpec | None = None) -> pd.DataFrame:
    """Read the input table as written (no role coercion).

    Parameters
    ----------
    path
        A CSV file (``,`` ``;`` tab or ``|`` separated; UTF-8 with or without BOM, UTF-16,
        Windows-1252 or Latin-1; optionally gzip-compressed) or a Parquet file.
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
        The file does not exist, is empty, is a spreadsheet, or is not a readable table.
    """
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xls", ".xlsm", ".ods"}:
        raise DataFormatError(f"data file {path} is a spreadsheet; save the sheet as CSV (UTF-8) and use that file")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if suffix in {".parquet", ".pq"} or magic == b"PAR1":
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise DataFormatError(f"data file {path} cannot be read as Parquet ({e}); write it again or export it as CSV") from None
        if isinstance(df.index, pd.MultiIndex) or df.index.name is not None:
            df = df.reset_index()
        df = df.reset_index(drop=True)
    else:
        cm = column_map(spec)
        df = _read_csv(path, [c for c in (cm.entity, cm.period) if c is not None])
    df.columns = [str(c).strip() for c in df.columns]
    if df.shape[1] == 0 or len(df) == 0:
        raise DataFormatError(f"data file {path} has no data rows (only a header?); export the data again with its rows")
    return df


def keep_source(run: Any) -> dict[str, Any]:
    """Keep the run's input file byte-for-byte in the run folder (``source.<ext>``), with its SHA-256.

    For a ``dataset_id`` run the dataset already keeps its uploaded file (``mmm datasets add``);
    its recorded checksum is returned and nothing is copied.

    Parameters
    ----------
    run
        The :class:`~mmm_lib.storage.Run`.

    Returns
    -------
    dict
        ``{"path", "file", "sha256", "bytes"}`` (``path`` as given by the spec, ``file`` the copy's name
        in the run folder), or for a dataset ``{"dataset_id", "file", "sha256", "bytes"}``; stored as
        ``source`` in ``validation_summary.json``.
    """
    from .storage import dataset_dir, read_json, write_bytes

    spec = run.spec
    if spec.data_path is None:
        meta_path = dataset_dir(spec.dataset_id) / "metadata.json"
        meta = read_json(meta_path) if meta_path.is_file() else {}
        return {"dataset_id": spec.dataset_id, "file": meta.get("source_file"), "sha256": meta.get("sha256"),
                "bytes": meta.get("bytes")}
    src = Path(spec.data_path)
    _check_file(src)
    data = src.read_bytes()
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
