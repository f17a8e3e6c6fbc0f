"""Nothing let in: a spec cannot name files outside the allowed folders, and every user-supplied
string that reaches an HTML report is shown as text, never run as markup."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmm_lib.runner import run_pipeline
from mmm_lib.spec import DATA_PATHS_ENV, SpecError, load_spec, parse_spec
from mmm_lib.storage import open_run

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "mmm_sample_small.csv"
SMALL = ["draws=100", "tune=100"]

DRIVER = "act_<script>alert(1)</script>"
SPEND = "spend_<script>alert(1)</script>"
ENTITY_SCRIPT = "<script>alert(2)</script>"
ENTITY_IMG = "<img src=x onerror=alert(3)>"
PAYLOADS = ("alert(1)", "alert(2)", "alert(3)")


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Specs live in tmp/specs, data outside it in tmp/private; the working directory is neutral."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "private").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.delenv(DATA_PATHS_ENV, raising=False)
    (tmp_path / "private" / "secret.csv").write_text("entity_id,period_start,sales\n")
    return tmp_path


def _spec_file(folder: Path, data_path: str) -> Path:
    p = folder / "spec.yaml"
    p.write_text(yaml.safe_dump({"data_path": data_path, "drivers": ["act_tv"]}))
    return p


# --------------------------------------------------------------------------- data paths


@pytest.mark.parametrize("data_path", ["/etc/passwd", "../private/secret.csv", "{tmp}/private/secret.csv"])
def test_data_path_outside_the_allowed_folders_is_refused(elsewhere, data_path):
    spec = _spec_file(elsewhere / "specs", data_path.format(tmp=elsewhere))
    with pytest.raises(SpecError) as exc:
        load_spec(spec)
    msg = str(exc.value)
    assert "outside the folders a run spec may read data from" in msg
    assert data_path.format(tmp=elsewhere) in msg and DATA_PATHS_ENV in msg


def test_symlink_out_of_the_spec_folder_is_refused(elsewhere):
    link = elsewhere / "specs" / "data.csv"
    link.symlink_to(elsewhere / "private" / "secret.csv")
    with pytest.raises(SpecError, match="resolves to .*private/secret.csv"):
        load_spec(_spec_file(elsewhere / "specs", "data.csv"))


def test_set_override_cannot_point_outside(elsewhere):
    (elsewhere / "specs" / "ok.csv").write_text("x\n")
    spec = _spec_file(elsewhere / "specs", "ok.csv")
    assert load_spec(spec).data_path == str((elsewhere / "specs" / "ok.csv").resolve())
    with pytest.raises(SpecError, match="outside"):
        load_spec(spec, ["data_path=/etc/passwd"])


def test_mmm_data_paths_allows_listed_folders(elsewhere, monkeypatch):
    spec = _spec_file(elsewhere / "specs", "../private/secret.csv")
    monkeypatch.setenv(DATA_PATHS_ENV, f"/nonexistent{__import__('os').pathsep}{elsewhere / 'private'}")
    assert load_spec(spec).data_path == str((elsewhere / "private" / "secret.csv").resolve())


def test_inside_spec_folder_repo_and_cwd_are_allowed(elsewhere):
    (elsewhere / "specs" / "d.csv").write_text("x\n")
    (elsewhere / "cwd" / "c.csv").write_text("x\n")
    assert load_spec(_spec_file(elsewhere / "specs", "d.csv")).data_path.endswith("d.csv")
    assert load_spec(_spec_file(elsewhere / "specs", str(SAMPLE))).data_path == str(SAMPLE)
    assert load_spec(_spec_file(elsewhere / "specs", str(elsewhere / "cwd" / "c.csv"))).data_path.endswith("c.csv")
    # A spec given as a dict is checked against the working directory.
    with pytest.raises(SpecError, match="outside"):
        parse_spec({"data_path": "/etc/passwd", "drivers": ["act_tv"]})


def test_run_copy_of_a_checked_spec_stays_loadable(elsewhere):
    """run_spec.json (absolute data_path, in the outputs folder) is loadable from any working directory."""
    (elsewhere / "specs" / "d.csv").write_text("x\n")
    run = open_run(_spec_file(elsewhere / "specs", "d.csv"), "copy", create=True)
    again = open_run(run.dir / "run_spec.json", "copy")
    assert again.spec.data_path == str((elsewhere / "specs" / "d.csv").resolve())
    # The same file copied anywhere else is an ordinary spec and is checked again.
    other = elsewhere / "cwd" / "sub"
    other.mkdir()
    (other / "run_spec.json").write_text((run.dir / "run_spec.json").read_text())
    (elsewhere / "cwd").rename(elsewhere / "moved")
    with pytest.raises(SpecError, match="outside"):
        load_spec(elsewhere / "moved" / "sub" / "run_spec.json")


def test_run_is_refused_before_anything_is_created(elsewhere, outputs_root):
    with pytest.raises(SpecError, match="outside"):
        run_pipeline(_spec_file(elsewhere / "specs", "/etc/passwd"), "nope", log=lambda m: None)
    assert not (outputs_root / "runs" / "nope").exists()


# --------------------------------------------------------------------------- HTML escaping


class _Scan(HTMLParser):
    """Script elements (content and src), event-handler attributes, image sources and the text of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self.img_srcs: list[str] = []
        self.text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.img_srcs.append(a.get("src") or "")
        if tag == "script":
            self._in_script = True
            self.scripts.append(a.get("src") or "")
        self.handlers += [f"{tag} {k}={v}" for k, v in attrs if k.startswith("on")]

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        else:
            self.text.append(data)


def _scan(path: Path) -> _Scan:
    p = _Scan()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def _assert_inert(path: Path) -> _Scan:
    p = _scan(path)
    for s in p.scripts:
        assert not any(x in s for x in PAYLOADS), f"{path.name}: payload inside a <script> element"
    assert not any(any(x in h for x in PAYLOADS) for h in p.handlers), f"{path.name}: payload in an event handler"
    assert not {"x", "y"} & set(p.img_srcs), f"{path.name}: an <img> element built from the payload"
    return p


def _hostile_data(folder: Path, short_entity: bool = False) -> Path:
    df = pd.read_csv(SAMPLE, dtype={"entity_id": str})
    df = df.rename(columns={"act_tv": DRIVER, "spend_tv": SPEND})
    df["entity_id"] = df["entity_id"].replace({"store_001": ENTITY_SCRIPT, "store_002": ENTITY_IMG})
    if short_entity:  # ENTITY_FEW_ROWS then quotes the entity's name in the findings table
        df = df.drop(df.index[df["entity_id"].eq(ENTITY_IMG)][:100])
    path = folder / "hostile.csv"
    df.to_csv(path, index=False)
    return path


def _hostile_spec(folder: Path, **changes) -> Path:
    spec = yaml.safe_load((REPO / "params" / "fast.yaml").read_text())
    spec.update({"data_path": "hostile.csv", "drivers": [DRIVER, "act_digital", "act_radio"]})
    spec["feature_config"]["adstock"]["per_channel"] = {DRIVER: 0.7, "act_digital": 0.3}
    spec.update(changes)
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.slow
def test_hostile_column_and_entity_names_are_shown_as_text_in_every_report(tmp_path):
    _hostile_data(tmp_path)
    res = run_pipeline(_hostile_spec(tmp_path), "hostile", SMALL, log=lambda m: None)
    assert res.status == "completed", res.error
    roi = json.loads((res.run_dir / "roi_metrics.json").read_text())
    assert roi["channels"][0]["channel"] == DRIVER and roi["channels"][0]["spend_col"] == SPEND

    pages = sorted((res.run_dir / "reports").glob("*.html")) + [res.index]
    assert len(pages) == 13
    shown = {}
    for page in pages:
        p = _assert_inert(page)
        shown[page.name] = "".join(p.text)
    # The names are really there, as text (escaped in the markup, unescaped by the parser).
    assert DRIVER in shown["index.html"]
    assert DRIVER in shown["01_validate.html"] and ENTITY_SCRIPT in shown["01_validate.html"]
    assert DRIVER in shown["06_contribute.html"]


@pytest.mark.slow
def test_hostile_names_in_a_failed_validation_are_shown_as_text(tmp_path):
    _hostile_data(tmp_path, short_entity=True)
    missing = "act_<img src=y onerror=alert(1)>"
    res = run_pipeline(_hostile_spec(tmp_path, controls=[missing]), "hostile_fail", SMALL, log=lambda m: None)
    assert res.status == "failed" and res.failed_stage == "01_validate"
    assert "MISSING_SPEC_COLUMN" in res.error
    for page in [res.run_dir / "reports" / "01_validate.html", res.index]:
        p = _assert_inert(page)
        assert missing in "".join(p.text), page.name
    assert ENTITY_IMG in "".join(_scan(res.run_dir / "reports" / "01_validate.html").text)
