"""Hostile files and specs: every failure is a message naming what is wrong and the fix, never a
traceback, a hang or gigabytes of memory (mmm_lib.input_file, mmm_lib.raw_io, mmm_lib.spec_yaml,
mmm_lib.spec loading, storage.Run.data_source).

Resource bounds are shown with small limits set through the environment, so every test stays cheap.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_lib import input_file
from mmm_lib.raw_io import DataFormatError, keep_source, load_raw
from mmm_lib.spec import DATA_PATHS_ENV, SpecError, load_spec, parse_spec
from mmm_lib.storage import open_run

HEADER = "entity_id,period_start,sales,act_tv\n"
ROWS = "a,2022-01-03,1.5,10\na,2022-01-10,2.5,20\n"
SPEC = "data_path: data.csv\ndrivers: [act_tv]\n"


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    p = folder / name
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def _data_error(path: Path, *needles: str) -> str:
    with pytest.raises(DataFormatError) as exc:
        load_raw(path)
    msg = str(exc.value)
    assert path.name in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


# =========================================================================== 1. reading files


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_any_line_ending_is_read_and_quoted_line_breaks_stay_in_their_cell(tmp_path, newline):
    text = f'entity_id,period_start,sales{newline}"North{newline}East",2022-01-03,1{newline}b,2022-01-10,2{newline}'
    df = load_raw(_write(tmp_path, "d.csv", text))
    assert list(df.columns) == ["entity_id", "period_start", "sales"]
    assert df["entity_id"].tolist() == [f"North{newline}East", "b"] and df["sales"].tolist() == [1, 2]


def test_quoted_header_cell_with_a_line_break_is_an_error_naming_the_column(tmp_path):
    _data_error(_write(tmp_path, "d.csv", 'entity_id,period_start,"sa\nles"\na,2022-01-03,1\n'),
                "column 3 of the header", "line break", "rename the column")


def test_truncated_or_damaged_gzip_names_the_fix(tmp_path):
    whole = gzip.compress((HEADER + ROWS * 500).encode())
    _data_error(_write(tmp_path, "cut.csv.gz", whole[: len(whole) // 2]), "damaged or incomplete gzip", "download it again")
    _data_error(_write(tmp_path, "bad.csv.gz", b"\x1f\x8b" + b"\x00" * 30), "damaged or incomplete gzip")


def _gzip_bomb(path: Path, inflated_bytes: int) -> Path:
    """A small gzip file that unpacks to ``inflated_bytes``, written without holding them in memory."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"1,2\n" * 262_144  # 1 MiB
    with path.open("wb") as fh:
        fh.write(z.compress(b"a,b\n"))
        for _ in range(inflated_bytes // len(chunk)):
            fh.write(z.compress(chunk))
        fh.write(z.flush())
    return path


@pytest.mark.timeout(60)
def test_gzip_bomb_stops_as_soon_as_the_limit_is_passed(tmp_path, monkeypatch):
    bomb = _gzip_bomb(tmp_path / "bomb.csv.gz", 64 * 2**20)  # 64 MiB unpacked from ~64 KB
    assert bomb.stat().st_size < 2**20
    monkeypatch.setenv("MMM_MAX_INPUT_BYTES", str(2**20))
    tracemalloc.start()
    try:
        msg = _data_error(bomb, "unpacks to more than 1,048,576 bytes", "MMM_MAX_INPUT_BYTES")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20, f"decompression was not bounded: peak {peak:,} bytes"
    assert "right file" in msg


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    p = _write(tmp_path, "big.csv", HEADER + ROWS * 100)
    monkeypatch.setenv("MMM_MAX_INPUT_BYTES", "1000")
    _data_error(p, f"the file has {p.stat().st_size:,} bytes", "limit is 1,000 bytes", "MMM_MAX_INPUT_BYTES=2000")


def test_long_cells_and_wide_headers_are_read_up_to_the_field_limit(tmp_path, monkeypatch):
    # Past csv's own 131,072-character field limit: a huge cell, and a 9,000-column header.
    huge = _write(tmp_path, "huge.csv", f"entity_id,period_start,note\na,2022-01-03,{'x' * 200_000}\n")
    assert len(load_raw(huge).loc[0, "note"]) == 200_000
    names = [f"spend_channel_number_{i:05d}" for i in range(9_000)]
    wide = _write(tmp_path, "wide.csv", ",".join(names) + "\n" + ",".join("1" for _ in names) + "\n")
    assert load_raw(wide).shape == (1, 9_000)
    monkeypatch.setenv("MMM_MAX_FIELD_CHARS", "1000")
    _data_error(huge, "a cell on line 2 is longer", "limit is 1,000 characters in one cell", "MMM_MAX_FIELD_CHARS")
    monkeypatch.setenv("MMM_MAX_COLUMNS", "500")
    _data_error(wide, "the header has 9,000 columns", "MMM_MAX_COLUMNS")


def test_a_limit_set_to_nonsense_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MMM_MAX_COLUMNS", "lots")
    with pytest.raises(DataFormatError, match="MMM_MAX_COLUMNS='lots' is not a positive whole number"):
        load_raw(_write(tmp_path, "d.csv", HEADER + ROWS))


def test_parquet_limits_are_read_from_its_metadata(tmp_path, monkeypatch):
    p = tmp_path / "wide.parquet"
    pd.DataFrame({f"c{i}": [1.0] for i in range(60)}).to_parquet(p)
    monkeypatch.setenv("MMM_MAX_COLUMNS", "50")
    _data_error(p, "the Parquet file has 60 columns", "MMM_MAX_COLUMNS")


@pytest.mark.parametrize(
    "content, needles",
    [
        (b"PK\x03\x04\x14\x00\x06\x00", ["ZIP archive", "spreadsheet", "save the sheet as CSV"]),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", ["old Excel .xls workbook", "save the sheet as CSV"]),
        (b"BZh91AY&SY", ["bzip2-compressed", "decompress it"]),
        (gzip.compress(b"PK\x03\x04\x14\x00\x06\x00 rest of a workbook"), ["ZIP archive", "save the sheet as CSV"]),
        (gzip.compress(gzip.compress(b"a,b\n1,2\n")), ["gzip-compressed twice"]),
    ],
    ids=["xlsx", "xls", "bz2", "gzipped-xlsx", "double-gzip"],
)
def test_spreadsheets_and_archives_are_known_by_content_not_name(tmp_path, content, needles):
    _data_error(_write(tmp_path, "data.csv.gz" if content[:2] == b"\x1f\x8b" else "data.csv", content), *needles)


@pytest.mark.timeout(20)
def test_fifo_folder_and_device_are_refused_without_opening_them(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    _data_error(fifo, "named pipe (FIFO)", "point data_path at a CSV or Parquet file")
    (tmp_path / "folder.csv").mkdir()
    _data_error(tmp_path / "folder.csv", "is a folder")
    if Path("/dev/zero").exists():  # never ends: reading it would fill memory
        with pytest.raises(DataFormatError, match="is a device"):
            load_raw("/dev/zero")


@pytest.mark.timeout(20)
def test_a_fifo_swapped_in_after_the_stat_is_refused_by_the_opened_files_own_stat(tmp_path, monkeypatch):
    p = _write(tmp_path, "data.csv", HEADER + ROWS)
    real_kind = input_file._kind
    calls = []

    def swap_then_check(mode):  # the first check (os.stat) saw a file; now a FIFO takes its place
        if not calls:
            p.unlink()
            os.mkfifo(p)
        calls.append(mode)
        return real_kind(mode)

    monkeypatch.setattr(input_file, "_kind", swap_then_check)
    with pytest.raises(DataFormatError, match="named pipe"):
        input_file.read_input(p)
    assert len(calls) == 2


def test_a_missing_file_and_a_utf16_file_cut_mid_character(tmp_path):
    _data_error(tmp_path / "nope.csv", "not found", "check data_path")
    _data_error(_write(tmp_path, "u16.csv", b"\xff\xfea\x00,\x00b"), "cut off or damaged", "export the data again")


@pytest.mark.timeout(60)
def test_random_and_truncated_files_give_a_table_or_a_message_never_a_traceback(tmp_path):
    rng = np.random.default_rng(3)
    good = (HEADER + ROWS * 20).encode()
    pq = io.BytesIO()
    pd.DataFrame({"entity_id": ["a"] * 20, "sales": np.arange(20.0)}).to_parquet(pq)
    samples = [rng.bytes(int(n)) for n in rng.integers(1, 400, 60)]
    samples += [good[:k] for k in range(0, len(good), 37)]
    samples += [gzip.compress(good)[:k] for k in range(0, 120, 9)]
    samples += [pq.getvalue()[:k] for k in range(4, len(pq.getvalue()), 97)]
    samples += [bytes(rng.choice(list(b',;"\r\n\t|ab1\xff\x00'), 300)) for _ in range(40)]
    for i, content in enumerate(samples):
        p = _write(tmp_path, f"s{i}.csv", content)
        try:
            load_raw(p)
        except DataFormatError as e:
            assert "s{}.csv".format(i) in str(e)


# =========================================================================== 2. data paths checked as opened


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Specs and their data in tmp/specs, a private file outside in tmp/private, a neutral working folder."""
    for d in ("specs", "private", "cwd"):
        (tmp_path / d).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv(DATA_PATHS_ENV, raising=False)
    _write(tmp_path / "private", "secret.csv", HEADER + "SECRET,2022-01-03,1,1\n")
    _write(tmp_path / "specs", "data.csv", HEADER + ROWS)
    _write(tmp_path / "specs", "spec.yaml", SPEC)
    return tmp_path


def _swap_for_symlink(link: Path, target: Path) -> None:
    link.unlink()
    link.symlink_to(target)


def test_symlink_swapped_in_after_the_spec_check_is_refused_when_the_stage_opens_it(elsewhere, outputs_root):
    run = open_run(elsewhere / "specs" / "spec.yaml", "swap", create=True)  # the spec check passes here
    stage_run = open_run(run.dir / "run_spec.json", "swap")  # what the notebooks open
    _swap_for_symlink(elsewhere / "specs" / "data.csv", elsewhere / "private" / "secret.csv")
    for r in (run, stage_run):
        with pytest.raises(DataFormatError) as exc:
            r.data_source()
        msg = str(exc.value)
        assert "secret.csv" in msg and "outside the folders" in msg and "Point data_path at the file itself" in msg
        with pytest.raises(DataFormatError, match="outside the folders"):
            keep_source(r)
    assert not list(run.dir.glob("source*"))


def test_a_swap_between_resolving_and_opening_is_caught_on_the_opened_file(elsewhere, monkeypatch):
    data = elsewhere / "specs" / "data.csv"
    roots = [elsewhere / "specs"]
    real_realpath = os.path.realpath

    def resolve_then(swap):
        def fake(p, *a, **k):
            out = real_realpath(p, *a, **k)
            swap()
            return out
        return fake

    # The file itself becomes a symlink: it is opened without following links.
    with monkeypatch.context() as m:
        m.setattr(input_file.os.path, "realpath",
                  resolve_then(lambda: _swap_for_symlink(data, elsewhere / "private" / "secret.csv")))
        with pytest.raises(DataFormatError, match="became a symlink after its path was resolved"):
            input_file.read_input(data, roots)
    data.unlink()
    _write(elsewhere / "specs", "data.csv", HEADER + ROWS)

    # A folder on the way becomes a symlink: where the descriptor really points is checked.
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to ask where an open file is")
    _write(elsewhere / "private", "data.csv", HEADER + "SECRET,2022-01-03,1,1\n")

    def swap_folder():
        (elsewhere / "specs").rename(elsewhere / "specs_old")
        (elsewhere / "specs").symlink_to(elsewhere / "private")

    with monkeypatch.context() as m:
        m.setattr(input_file.os.path, "realpath", resolve_then(swap_folder))
        with pytest.raises(DataFormatError, match="private/data.csv, outside the folders"):
            input_file.read_input(data, roots)


def test_the_kept_copy_is_the_bytes_that_were_read_not_the_file_now(elsewhere, outputs_root):
    run = open_run(elsewhere / "specs" / "spec.yaml", "same_bytes", create=True)
    data = run.data_source()
    _write(elsewhere / "specs", "data.csv", HEADER + "CHANGED,2022-01-03,9,9\n")  # replaced after reading
    kept = keep_source(run, data)
    assert kept["sha256"] == data.sha256 == hashlib.sha256((HEADER + ROWS).encode()).hexdigest()
    assert (run.dir / kept["file"]).read_bytes() == data.data
    assert load_raw(data, run.spec)["entity_id"].tolist() == ["a", "a"]


@pytest.mark.timeout(20)
def test_a_spec_naming_a_fifo_or_a_folder_is_refused_at_load(elsewhere):
    os.mkfifo(elsewhere / "specs" / "pipe.csv")
    (elsewhere / "specs" / "folder.csv").mkdir()
    with pytest.raises(SpecError, match="'pipe.csv' is not a regular file"):
        load_spec(elsewhere / "specs" / "spec.yaml", ["data_path=pipe.csv"])
    with pytest.raises(SpecError, match="'folder.csv' is a folder; point data_path at a CSV"):
        load_spec(elsewhere / "specs" / "spec.yaml", ["data_path=folder.csv"])


# =========================================================================== 3. specs from someone else


def _spec(tmp_path: Path, text: str | bytes, name: str = "spec.yaml") -> Path:
    _write(tmp_path, "data.csv", HEADER + ROWS)
    return _write(tmp_path, name, text)


def _spec_error(path: Path, *needles: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(SpecError) as exc:
        load_spec(path, overrides)
    msg = str(exc.value)
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.timeout(20)
def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 strings
    t0 = time.perf_counter()
    _spec_error(_spec(tmp_path, SPEC + "\n".join(lines) + "\n"), "spec.yaml", "line 3", "anchors and aliases",
                "Write each value out in full")
    assert time.perf_counter() - t0 < 2


def test_spec_file_size_and_depth_are_bounded(tmp_path, monkeypatch):
    p = _spec(tmp_path, SPEC + "labels: {act_tv: " + "x" * 500 + "}\n")
    monkeypatch.setenv("MMM_MAX_SPEC_BYTES", "200")
    _spec_error(p, "larger than 200 bytes", "MMM_MAX_SPEC_BYTES")
    monkeypatch.delenv("MMM_MAX_SPEC_BYTES")
    _spec_error(_spec(tmp_path, SPEC + "labels: " + "[" * 10_000 + "]" * 10_000 + "\n"), "nested more than")


@pytest.mark.parametrize(
    "text, line, key",
    [
        (SPEC + "draws: 100\ndraws: 200\n", 4, "draws"),
        (SPEC + "windows:\n  estimation_months: 12\n  carryover_months: 6\n  estimation_months: 24\n", 6, "estimation_months"),
        (SPEC + "labels: {act_tv: TV, act_tv: Television}\n", 3, "act_tv"),
        ('{"data_path": "data.csv", "drivers": ["act_tv"], "drivers": ["act_radio"]}', 1, "drivers"),
    ],
    ids=["top", "nested", "flow", "json"],
)
def test_a_key_given_twice_is_an_error_naming_the_key_and_line(tmp_path, text, line, key):
    _spec_error(_spec(tmp_path, text), f"line {line}: the key {key!r} is given twice", "keep one")


@pytest.mark.parametrize("value, tag", [("!!python/object:os.system", "!!python/object:os.system"),
                                        ("!!python/object/apply:os.system ['echo hacked']", "!!python/object/apply:os.system"),
                                        ("!!binary aGVsbG8=", "!!binary"), ("!!set {a, b}", "!!set")])
def test_yaml_tags_are_refused_in_the_file_and_in_set(tmp_path, value, tag):
    _spec_error(_spec(tmp_path, SPEC + f"dataset_idx: {value}\n"), "spec.yaml", f"the tag {tag} is not allowed",
                "write plain values")
    _spec_error(_spec(tmp_path, SPEC), f"--set draws={value}", f"the tag {tag} is not allowed", "Give a plain value",
                overrides=[f"draws={value}"])


@pytest.mark.parametrize("text, kind", [("- data_path: data.csv\n- drivers: [act_tv]\n", "list"), ("just text\n", "str")])
def test_a_spec_that_is_not_a_mapping_is_an_error_with_or_without_set(tmp_path, text, kind):
    p = _spec(tmp_path, text)
    for overrides in (None, ["draws=100"]):
        _spec_error(p, "must be a mapping of keys to values", f"holds a {kind}", overrides=overrides)


@pytest.mark.parametrize(
    "key, value",
    [("target_accept", ".nan"), ("optimize.budget", ".inf"), ("feature_config.seasonality.period", ".inf"),
     ("model.priors.beta.sigma", "-.inf"), ("feature_config.adstock.per_channel.act_tv", ".nan")],
)
def test_non_finite_numbers_are_refused_naming_the_key_in_the_file_and_in_set(tmp_path, key, value):
    *sections, leaf = key.split(".")
    nested = "".join(f"{'  ' * i}{s}:\n" for i, s in enumerate(sections)) + f"{'  ' * len(sections)}{leaf}: {value}\n"
    _spec_error(_spec(tmp_path, SPEC + nested), "spec.yaml", f"{key}: ", "is not a finite number", "write a number")
    _spec_error(_spec(tmp_path, SPEC), f"--set {key}={value}", f"{key}: ", "is not a finite number",
                overrides=[f"{key}={value}"])
    with pytest.raises(SpecError, match=f"{key.replace('.', '[.]')}: .* is not a finite number"):
        parse_spec({"dataset_id": "d", "drivers": ["act_tv"], **_nest(key, float(value.replace(".", "")))})


def test_infinity_written_as_text_and_huge_numbers_are_refused(tmp_path):
    p = _spec(tmp_path, SPEC)
    for setting in ("feature_config.seasonality.period=1e999", "optimize.budget=Infinity", "target_accept='nan'"):
        _spec_error(p, f"{setting.split('=')[0]}: Input should be a finite number", overrides=[setting])
    _spec_error(_spec(tmp_path, SPEC + "draws: " + "9" * 5_000 + "\n"), "line 3: a number written with 5,000 characters")


def _nest(key: str, value: float) -> dict:
    out: dict = {}
    cur = out
    *sections, leaf = key.split(".")
    for s in sections:
        cur = cur.setdefault(s, {})
    cur[leaf] = value
    return out


def test_bad_set_keys_name_the_fix(tmp_path):
    p = _spec(tmp_path, SPEC)
    _spec_error(p, "a part of the key is empty", "windows.estimation_months=24", overrides=["windows..x=1"])
    _spec_error(p, "'drivers' is not a section", "--set drivers=", overrides=["drivers.x=1"])
    _spec_error(p, "line 1, column", "fix the YAML there", overrides=["drivers=[act_tv,"])


def test_overrides_are_refused_before_a_run_folder_is_created(tmp_path, outputs_root):
    from mmm_lib.runner import run_pipeline

    with pytest.raises(SpecError, match="not a finite number"):
        run_pipeline(_spec(tmp_path, SPEC), "nope", ["target_accept=.nan"], log=lambda m: None)
    assert not (outputs_root / "runs" / "nope").exists()


@pytest.mark.timeout(30)
def test_long_lists_are_checked_in_linear_time_and_bounded(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    spec = parse_spec({"dataset_id": "d", "drivers": ["act_tv"], "controls": [f"ctrl_{i}" for i in range(1_000)]})
    assert len(spec.controls) == 1_000
    with pytest.raises(SpecError, match="100,000 columns listed; at most 1,000"):
        parse_spec({"dataset_id": "d", "drivers": ["act_tv"], "controls": [f"ctrl_{i}" for i in range(100_000)]})
    with pytest.raises(SpecError, match=r"listed more than once: \['ctrl_1'\]"):
        parse_spec({"dataset_id": "d", "drivers": ["act_tv"], "controls": ["ctrl_1"] * 2 + ["ctrl_2"]})
    assert time.perf_counter() - t0 < 5
    monkeypatch.setenv("MMM_MAX_SPEC_ITEMS", "50")
    p = _spec(tmp_path, SPEC + "controls: [" + ", ".join(f"ctrl_{i}" for i in range(60)) + "]\n")
    _spec_error(p, "controls: 60 entries, more than 50", "MMM_MAX_SPEC_ITEMS")


def test_plain_specs_still_load_json_copies_and_dates_as_text(tmp_path):
    spec = load_spec(_spec(tmp_path, '{"dataset_id": "d", "drivers": ["act_tv"], "draws": 200}', "run_spec.json"))
    assert spec.draws == 200
    spec = load_spec(_spec(tmp_path, "dataset_id: 2024-01-01\ndrivers: [act_tv]\n"), ["labels={act_tv: 2024-02-01}"])
    assert spec.dataset_id == "2024-01-01" and spec.labels == {"act_tv": "2024-02-01"}
    _spec_error(_spec(tmp_path, "drivers: [act_tv]\nlabels: {act_tv: T\xe9l\xe9}\n".encode("latin-1")),
                "is not UTF-8 text", "save it as UTF-8")


@pytest.mark.timeout(20)
def test_a_spec_path_that_is_a_fifo_or_a_folder_is_refused(tmp_path):
    os.mkfifo(tmp_path / "spec.yaml")
    _spec_error(tmp_path / "spec.yaml", "not a regular file", "pass the path of a YAML file")
    _spec_error(tmp_path, "is a folder", "pass the path of a YAML file")
