"""raw_io: files are read as written (delimiter, encoding, gzip, Parquet), bad files name the fix,
and the source file is kept byte-for-byte with its checksum."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from mmm_lib.raw_io import DataFormatError, keep_source, load_raw
from mmm_lib.spec import parse_spec
from mmm_lib.validation import validate
from panels import make_panel


# --------------------------------------------------------------------------- load_raw


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_load_raw_detects_delimiter(tmp_path, sep):
    df = make_panel(n_periods=5)
    p = tmp_path / "d.csv"
    df.to_csv(p, sep=sep, index=False)
    got = load_raw(p)
    assert list(got.columns) == list(df.columns)
    assert len(got) == 15
    assert got["sales"].dtype == np.float64


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1"])
def test_load_raw_encodings(tmp_path, encoding):
    p = tmp_path / "d.csv"
    text = "entity_id,period_start,sales\nmünchen,2022-01-03,1.5\nköln,2022-01-10,2\n"
    p.write_bytes(text.encode(encoding))
    got = load_raw(p)
    assert list(got.columns) == ["entity_id", "period_start", "sales"]  # no BOM left in the name
    assert got["entity_id"].tolist() == ["münchen", "köln"]


def test_excel_windows_1252_punctuation_is_read_as_written(tmp_path):
    # Few accented letters among many digits: charset-normalizer reads this file as cp1250 (ê becomes ę).
    df = make_panel(n_periods=52)
    names = dict(zip(df["entity_id"].unique(), ["München", "Angoulême “Nord”", "Köln – €"]))
    df["entity_id"] = df["entity_id"].map(names)
    p = tmp_path / "d.csv"
    p.write_bytes(df.to_csv(index=False, sep=";").encode("cp1252"))
    got = load_raw(p)
    assert got.attrs["source_format"]["encoding"] == "cp1252"
    assert sorted(got["entity_id"].unique()) == sorted(names.values())


def test_load_raw_keeps_ids_and_tokens_as_written(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("entity_id , period_start,sales,act_tv\n001,2022-01-03,1,n/a\nNA,2022-01-10,2,\n")
    got = load_raw(p)
    assert list(got.columns) == ["entity_id", "period_start", "sales", "act_tv"]
    assert got["entity_id"].tolist() == ["001", "NA"]
    assert got["act_tv"].iloc[0] == "n/a" and pd.isna(got["act_tv"].iloc[1])


def test_load_raw_parquet_and_gzip(tmp_path):
    df = make_panel(n_periods=5)
    pq = tmp_path / "d.parquet"
    df.to_parquet(pq, index=False)
    pd.testing.assert_frame_equal(load_raw(pq), df)
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(df.to_csv(index=False).encode()))
    assert len(load_raw(gz)) == 15


@pytest.mark.parametrize(
    "content, needle",
    [(b"", "empty"), (b"   \n\n", "empty"), (b"entity_id,period_start,sales\n", "no data rows"),
     (b"a:b:c\n1:2:3\n", "single column"), (b"entity_id,sales,sales\nx,1,2\n", "more than once"),
     (b"entity_id,period_start,sales\nx,2022-01-03,1,5,6\ny,2022-01-10\n", "cannot be read")],
)
def test_load_raw_bad_files_name_file_and_fix(tmp_path, content, needle):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(DataFormatError) as exc:
        load_raw(p)
    assert needle in str(exc.value) and "bad.csv" in str(exc.value)


def test_load_raw_missing_file_and_spreadsheet(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        load_raw(tmp_path / "nope.csv")
    x = tmp_path / "d.xlsx"
    x.write_bytes(b"PK\x03\x04")
    with pytest.raises(DataFormatError, match="save the sheet as CSV"):
        load_raw(x)
    bad = tmp_path / "d.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="Parquet"):
        load_raw(bad)


def test_load_raw_keeps_mapped_key_columns_as_text(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("geo,time,conversions\n001,20220103,1\n002,20220103,2\n")
    spec = parse_spec({"data_path": "x.csv", "drivers": ["a"], "target_col": "conversions",
                       "columns": {"entity": "geo", "period": "time"}})
    got = load_raw(p, spec)
    assert got["geo"].tolist() == ["001", "002"] and got["time"].tolist() == ["20220103", "20220103"]
    assert got.attrs["source_format"]["delimiter"] == ","


# --------------------------------------------------------------------------- delimiter and encoding


def test_utf16_without_bom_is_read(tmp_path):
    p = tmp_path / "d.csv"
    p.write_bytes("entity_id,period_start,sales\nx,2022-01-03,1\n".encode("utf-16-le"))
    got = load_raw(p)
    assert list(got.columns) == ["entity_id", "period_start", "sales"] and got.attrs["source_format"]["encoding"] == "utf-16-le"


def test_unsupported_separator_is_named(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("entity_id period_start sales\nx 2022-01-03 1\n")
    with pytest.raises(DataFormatError, match="separated by space, which is not supported"):
        load_raw(p)


# --------------------------------------------------------------------------- the source file is kept


def test_keep_source_copies_bytes_with_checksum(tmp_path):
    import hashlib

    from mmm_lib.storage import open_run

    data = gzip.compress(make_panel(n_periods=5).to_csv(index=False).encode())
    (tmp_path / "My Data.CSV.GZ").write_bytes(data)
    (tmp_path / "spec.yaml").write_text("data_path: My Data.CSV.GZ\ndrivers: [act_tv]\n")
    run = open_run(tmp_path / "spec.yaml", "kept", create=True)
    src = keep_source(run)
    assert src["file"] == "source.csv.gz" and src["bytes"] == len(data)
    assert src["sha256"] == hashlib.sha256(data).hexdigest()
    assert (run.dir / "source.csv.gz").read_bytes() == data
    assert validate(load_raw(run.dir / "source.csv.gz"), run.spec).n_rows == 15


def test_keep_source_of_a_dataset_keeps_its_bytes_with_the_run(tmp_path, outputs_root):
    from mmm_lib.datasets import add_dataset
    from mmm_lib.storage import open_run

    p = tmp_path / "d.csv"
    make_panel(n_periods=5).to_csv(p, index=False)
    meta = add_dataset(p, "ds1")
    (tmp_path / "spec.yaml").write_text("dataset_id: ds1\ndrivers: [act_tv]\n")
    src = keep_source(open_run(tmp_path / "spec.yaml", "from_ds", create=True))
    assert src == {"dataset_id": "ds1", "file": "source.csv", "sha256": meta["sha256"], "bytes": meta["bytes"]}
    # the run keeps its own copy: replacing or removing the dataset later cannot take away what it was fitted on
    assert (outputs_root / "runs" / "from_ds" / "source.csv").read_bytes() == p.read_bytes()


def test_pandas_index_column_with_empty_header_is_kept_as_unnamed(tmp_path):
    """`DataFrame.to_csv()` writes its index under an empty name: a common export, not an error."""
    p = tmp_path / "indexed.csv"
    p.write_text(",entity_id,period_start,sales\n0,a,2024-01-01,1.5\n1,a,2024-01-08,2.5\n")
    df = load_raw(p)
    assert list(df.columns) == ["Unnamed: 0", "entity_id", "period_start", "sales"]
    assert df["sales"].tolist() == [1.5, 2.5]
    q = tmp_path / "hole.csv"
    q.write_text("entity_id,,sales\na,x,1\n")
    with pytest.raises(DataFormatError, match="column 2 of the header has no name"):
        load_raw(q)


# --------------------------------------------------------------------------- data_filter


def _filtered_panel(tmp_path):
    df = make_panel(n_entities=3, n_periods=20)
    df["year"] = pd.to_datetime(df["period_start"]).dt.year
    path = tmp_path / "p.csv"
    df.to_csv(path, index=False)
    return df, path


def _spec(**flt):
    return parse_spec({"data_path": "x.csv", "drivers": ["act_tv"], "data_filter": flt})


def test_data_filter_keeps_the_named_rows_and_says_so_in_the_validation_report(tmp_path):
    df, path = _filtered_panel(tmp_path)
    store = df["entity_id"].iloc[0]
    spec = _spec(entity_id=store)
    assert spec.data_filter == {"entity_id": [store]}  # one value is a list of one
    raw = load_raw(path, spec)
    from mmm_lib.raw_io import select_rows

    kept = select_rows(raw, spec)
    assert set(kept["entity_id"]) == {store} and len(kept) == 20
    assert kept.attrs["data_filter"] == {"filter": {"entity_id": [store]}, "rows_read": 60, "rows_kept": 20}
    assert raw.attrs.get("data_filter") is None and len(raw) == 60  # the table read is left as it was
    info = [f for f in validate(kept, spec).findings if f.code == "DATA_FILTER"]
    assert len(info) == 1 and info[0].severity == "info" and "20 of 60 rows" in info[0].message


def test_data_filter_matches_numbers_as_written_and_combines_columns(tmp_path):
    df, path = _filtered_panel(tmp_path)
    from mmm_lib.raw_io import select_rows

    year = int(df["year"].min())
    stores = sorted(df["entity_id"].unique())[:2]
    for value in (year, float(year), str(year)):  # a year read as a number matches 2022, 2022.0 and "2022"
        kept = select_rows(load_raw(path), _spec(year=value, entity_id=stores))
        expect = df[(df["year"] == year) & df["entity_id"].isin(stores)]
        assert len(kept) == len(expect) > 0
        assert set(kept["entity_id"]) == set(stores)


def test_data_filter_that_names_a_missing_column_or_matches_nothing_says_what_is_there(tmp_path):
    _, path = _filtered_panel(tmp_path)
    raw = load_raw(path)
    from mmm_lib.raw_io import select_rows

    with pytest.raises(DataFormatError, match=r"column 'Entity_ID' is not a column of the file; did you mean 'entity_id'"):
        select_rows(raw, _spec(Entity_ID="s1"))
    with pytest.raises(DataFormatError, match=r"(?s)data_filter entity_id: \['nowhere'\] matches no row.*'store_1'"):
        select_rows(raw, _spec(entity_id="nowhere"))
    with pytest.raises(Exception, match="non-empty list"):
        _spec(entity_id=[])
