"""The ``mmm`` command (also ``python -m mmm_lib``): runs, datasets, outputs and sample data.

Listing and output commands print JSON on stdout (``--format table|csv`` on ``runs list``, ``datasets list``
and ``outputs`` for people and spreadsheets); progress, prompts and errors go to stderr. Exit status is
0 on success, 1 when a run or command fails (the message names the stage or field), 2 on usage errors,
3 when the diagnostics gate (``diagnostics.gate: stop``) stopped a run after failed convergence checks.
A run that completes with failed checks (``gate: warn``) exits 0 and says PROVISIONAL with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .spec import SpecError


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


FORMATS = ("json", "table", "csv")
_LEGACY_VIEWS = ("summary", "timeseries")  # `outputs … contributions --format timeseries` before --view existed


def _format_arg(value: str) -> str:
    if value not in FORMATS and value not in _LEGACY_VIEWS:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {', '.join(FORMATS)})")
    return value


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1, e.g. 4")
    return n


def _frame(obj: Any) -> Any:
    """The table of a JSON-able result: records as rows; for an object, its first list of records
    (ROI channels, posterior parameters, fitted rows); else one ``field``/``value`` row per leaf."""
    import pandas as pd

    if isinstance(obj, list):
        return pd.DataFrame([r if isinstance(r, dict) else {"value": r} for r in obj])
    if isinstance(obj, dict):
        for v in obj.values():
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
                return pd.json_normalize(v, sep=".")
        flat = pd.json_normalize(obj, sep=".").iloc[0] if obj else pd.Series(dtype=object)
        return pd.DataFrame({"field": flat.index, "value": flat.values})
    return pd.DataFrame({"value": [obj]})


def _emit(obj: Any, fmt: str = "json") -> None:
    """Print a result on stdout as JSON (everything), an aligned table, or CSV."""
    if fmt == "json":
        _print_json(obj)
        return
    df = _frame(obj)
    if fmt == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        sys.stdout.write(_table(df))


def _cell(v: Any) -> str:
    import math

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return str(v)


def _table(df: Any) -> str:
    """Aligned plain-text columns: text left, numbers right; empty for missing values."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if df.empty:
        return ("  ".join(map(str, df.columns)) + "\n" if len(df.columns) else "") + "(none)\n"
    cols = [str(c) for c in df.columns]
    cells = [[_cell(v) for v in df[c].tolist()] for c in df.columns]
    right = [is_numeric_dtype(df[c]) and not is_bool_dtype(df[c]) for c in df.columns]
    widths = [max(len(h), *(len(x) for x in col)) for h, col in zip(cols, cells)]

    def row(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    lines = [row(cols)] + [row([col[i] for col in cells]) for i in range(len(df))]
    return "\n".join(lines) + "\n"


EXIT_GATE_STOPPED = 3


def _cmd_run(a: argparse.Namespace) -> int:
    from .runner import RunError, RunInterrupted, explain_stop, print_headline, print_optimization, run_pipeline

    try:
        res = run_pipeline(a.spec, a.run_id, a.set, resume=a.resume, restart=a.restart, log=_err,
                           mlflow=a.mlflow)
    except RunError as e:
        _err(f"error: {e}")
        return 1
    except RunInterrupted as e:  # recorded in status.json; exit like the shell does for the signal (130: Ctrl-C)
        _err(f"error: {e}")
        return e.exit_code
    if res.status == "failed":
        _err(f"error: stage {res.failed_stage} failed: {res.error}")
        _err(f"  details: {res.run_dir / 'status.json'}; report: {res.index}")
        return 1
    if res.status == "stopped":
        explain_stop(res, _err)
    else:
        print_headline(res, _err)
        print_optimization(res, _err)
    dg = res.diagnostics
    _print_json({"run_id": res.run_id, "status": res.status, "index": str(res.index),
                 "diagnostics": None if dg is None else {"passed": dg.passed, "gate": dg.gate, "outcome": dg.outcome,
                                                         "reason": dg.reason or None},
                 "stage_times_s": {k: round(v, 1) for k, v in res.stage_times.items()}})
    return EXIT_GATE_STOPPED if res.status == "stopped" else 0


def _bounds_arg(items: list[str]) -> tuple[dict[str, object], str | None]:
    """``--bounds CH=±20%`` / ``CH=LOW:HIGH`` (``*`` for every other channel) → (bounds, default_bound)."""
    bounds: dict[str, object] = {}
    default = None
    for item in items:
        ch, sep, val = item.partition("=")
        ch, val = ch.strip(), val.strip()
        if not sep or not ch or not val:
            raise SpecError(f"--bounds {item!r}: write CHANNEL=±20% (of current spend) or CHANNEL=LOW:HIGH (spend over "
                            "the horizon); * for every other channel")  # fmt: skip
        if ":" in val:
            lo, _, hi = val.partition(":")
            try:
                value: object = [float(lo.replace(",", "")), float(hi.replace(",", ""))]
            except ValueError:
                raise SpecError(f"--bounds {item!r}: LOW:HIGH must be two amounts, e.g. {ch}=0:50000") from None
        else:
            value = val
        if ch == "*":
            default = str(value)
        else:
            bounds[ch] = value
    return bounds, default


def _cmd_optimize(a: argparse.Namespace) -> int:
    """Exit 0 with the recommendation; 2 for settings the spec schema refuses; 1 when the stage fails
    (infeasible bounds, a bad scenario file: the message names them)."""
    from .runner import RunError, optimize_run, print_optimization

    overrides: dict[str, object] = {}
    try:
        bounds, default = _bounds_arg(a.bounds)
    except SpecError as e:
        _err(f"error: {e}")
        return 2
    if bounds:
        overrides["bounds"] = bounds
    if default:
        overrides["default_bound"] = default
    for key in ("budget", "horizon_periods", "objective", "risk_aversion", "starts", "draws"):
        if getattr(a, key) is not None:
            overrides[key] = getattr(a, key)
    if a.per_entity:
        overrides["per_entity"] = True
    if a.target_marginal_roi is not None:
        overrides["target"] = {"metric": "marginal_roi", "value": a.target_marginal_roi}
    elif a.target_roi is not None:
        overrides["target"] = {"metric": "roi", "value": a.target_roi}
    if a.scenario:
        path = Path(a.scenario).expanduser().resolve()
        if not path.is_file():
            _err(f"error: --scenario {a.scenario}: no such file; give a CSV with period_start, channel[, entity_id], spend")
            return 2
        overrides["scenario_path"] = str(path)
    try:
        res = optimize_run(a.run_id, overrides, log=_err)
    except SpecError as e:
        _err(f"error: {e}")
        return 2
    except RunError as e:
        _err(f"error: {e}")
        return 1
    if res.status == "failed":
        _err(f"error: stage {res.failed_stage} failed: {res.error}")
        _err(f"  details: {res.run_dir / 'status.json'}; report: {res.index}")
        return 1
    print_optimization(res, _err)
    opt = json.loads((res.run_dir / "optimization.json").read_text(encoding="utf-8"))
    _print_json({"run_id": res.run_id, "status": res.status, "report": str(res.run_dir / "reports" / "07_optimize.html"),
                 "budget": opt["budget"], "uplift": opt["uplift"],
                 "channels": {c["channel"]: {"current": c["current_spend"], "recommended": c["recommended_spend"]}
                              for c in opt["channels"]}})  # fmt: skip
    return 0


def _cmd_datasets(a: argparse.Namespace) -> int:
    from . import datasets as ds

    if a.action == "add":
        meta = ds.add_dataset(a.path, a.id, force=a.force or a.even_if_used, spec_path=a.spec,
                              force_used=a.even_if_used)
        if not meta["validation_ok"]:
            _err(f"warning: dataset {a.id!r} has validation errors; `mmm datasets show {a.id}` lists them")
        _print_json(meta)
    elif a.action == "list":
        _emit(ds.list_datasets(), a.format)
    elif a.action == "show":
        _print_json(ds.show_dataset(a.id))
    elif a.action == "raw":
        _print_json(ds.raw_records(a.id, a.limit))
    elif a.action == "columns":
        _print_json(ds.column_types(a.id))
    elif a.action == "rm":
        _print_json(ds.remove_dataset(a.id, force=a.force))
    return 0


def _cmd_runs(a: argparse.Namespace) -> int:
    from . import runs

    if a.action == "list":
        _emit(runs.list_runs(), a.format)
    elif a.action == "status":
        _print_json(runs.run_status(a.id))
    elif a.action == "spec":
        _print_json(runs.run_spec(a.id))
    elif a.action == "rm":
        if not a.yes:
            ok = _confirm_rm(a.id)
            if ok is not True:
                return ok
        _print_json(runs.remove_run(a.id))
    return 0


def _cmd_kernels(a: argparse.Namespace) -> int:
    from . import kernel_keeper

    rows = []
    for rec in kernel_keeper.kept():
        stopped = kernel_keeper.stop(rec) if a.stop else False
        rows.append({"pid": rec["pid"], "outputs": rec.get("outputs", ""), "cache": rec.get("cache", ""),
                     "idle_min": round((time.time() - rec["last_used"]) / 60, 1),
                     "ends_after_idle_min": rec.get("minutes"), "code": "out of date" if rec["stale"] else "current",
                     **({"stopped": stopped} if a.stop else {})})
    if not rows:
        _err("no kernel server is kept" + ("" if kernel_keeper.keep_minutes() > 0 else
                                             f" ({kernel_keeper.KEEP_ENV}=0: runs keep none)"))
    _emit(rows, a.format)
    return 0


def _confirm_rm(run_id: str) -> bool | int:
    """Ask on the terminal before deleting a run; ``True`` to go on, else the exit status."""
    from .runs import run_folder

    d = run_folder(run_id)  # unknown or malformed id: the usual error before any question
    if not sys.stdin.isatty():
        _err(f"error: `mmm runs rm {run_id}` deletes {d} and needs confirmation, but stdin is not a terminal; "
             "pass --yes to delete without asking")
        return 2
    files = [p for p in d.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files) / 1e6
    sys.stderr.write(f"delete run {run_id!r} ({d}, {len(files)} files, {size:.1f} MB)? [y/N] ")
    sys.stderr.flush()
    try:
        answer = input().strip().lower()
    except EOFError:
        answer = ""
    if answer not in ("y", "yes"):
        _err(f"not deleted: run {run_id!r} kept")
        return 1
    return True


def _cmd_outputs(a: argparse.Namespace) -> int:
    from .runs import get_output

    fmt, view = a.format, a.view
    if fmt in _LEGACY_VIEWS:  # the old spelling of --view
        if a.kind != "contributions" or view is not None:
            _err(f"error: --format {fmt} is not an output format (choose from {', '.join(FORMATS)}); "
                 "`--view summary|timeseries` picks the contributions table")
            return 2
        _err(f"note: --format {fmt} is now `--view {fmt}`")
        fmt, view = "json", fmt
    if view is not None and a.kind != "contributions":
        _err(f"error: --view applies to contributions only, not to {a.kind!r}")
        return 2
    _emit(get_output(a.run_id, a.kind, view or "summary"), fmt)
    return 0


def _cmd_sample(a: argparse.Namespace) -> int:
    from .sample import write_sample

    out = write_sample(a.out, a.truth, n_entities=a.entities, n_periods=a.periods, seed=a.seed)
    _print_json(out if isinstance(out, dict) else {"csv": a.out, "truth": a.truth})
    return 0


def _cmd_compare(a: argparse.Namespace) -> int:
    """Exit 0 with the page written; 2 when the comparison is refused (different data, window or holdout,
    an unknown or repeated run, a bad --name); 1 when a run lacks the artifacts (the message names the stage)."""
    from .compare import CompareRefused, compare_runs, ranking_table, write_comparison

    try:
        res = compare_runs(a.runs, a.name)
    except CompareRefused as e:
        _err(f"error: {e}")
        return 2
    paths = write_comparison(res)
    _err(ranking_table(res).to_string(index=False))
    _err(res["summary"])
    for line in res["headline"]:
        _err(f"  {line}")
    _err(f"page: {paths['index']}")
    _print_json({"name": res["name"], "index": str(paths["index"]), "json": str(paths["json"]),
                 "best_loo": res["best"]["loo"], "best_holdout": res["best"]["holdout"], "summary": res["summary"]})  # fmt: skip
    return 0


def _cmd_batch(a: argparse.Namespace) -> int:
    """Exit 0 when every run completed; 1 when a run failed or the batch could not start (workers that cannot
    see the outputs root, runs that exist without --resume); 2 for a bad manifest or derived spec; 130 on Ctrl-C."""
    from .batch import BatchError, ManifestError, batch_status, execute_batch, plan_batch

    if a.manifest == "status" and (a.name or not Path("status").is_file()):
        if not a.name:
            _err("error: `mmm batch status NAME`: give the batch name (the manifest's `name:`)")
            return 2
        rec = batch_status(a.name)
        _emit(rec if a.format == "json" else [{k: r.get(k) for k in ("run_id", "label", "status", "failed_stage", "error")}
                                              for r in rec["runs"]], a.format)  # fmt: skip
        return 0
    if a.name:
        _err(f"error: unexpected argument {a.name!r}: `mmm batch MANIFEST.yaml` or `mmm batch status NAME`")
        return 2
    try:
        plan = plan_batch(a.manifest)
    except ManifestError as e:
        _err(f"error: {e}")
        return 2
    if a.dry_run:
        for r in plan.runs:
            _err(f"  {r.run_id}  ({r.label})")
        _err(f"{len(plan.runs)} run(s) in batch {plan.name}; every derived spec is valid")
        _emit({"name": plan.name, "base_spec": str(plan.base_spec), "runs": [r.to_dict() for r in plan.runs]}, a.format)
        return 0
    try:
        rec = execute_batch(plan, scheduler=a.scheduler, workers=a.workers, resume=a.resume, cache=a.cache, log=_err,
                            cores=a.cores)
    except BatchError as e:
        _err(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        _err(f"stopped: batch {plan.name} was interrupted; `mmm batch status {plan.name}` shows each run; "
             f"`mmm batch {a.manifest} --resume` continues it")
        return 130
    _emit({k: rec[k] for k in ("name", "status", "counts")} | {"index": str(plan.folder / "index.html"),
          "runs": [{k: r[k] for k in ("run_id", "status", "failed_stage", "error")} for r in rec["runs"]]}, a.format)  # fmt: skip
    return 0 if rec["status"] == "completed" else 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmm-notebooks")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        return "unknown (not installed; pip install -e .)"


_EPILOG = """examples:
  mmm sample --out my.csv --truth my_truth.json   make data with known ROI
  mmm run params/example.yaml                     run the stages, print ROI, the budget advice and the report path
  mmm runs list --format table                    what has run, newest first
  mmm outputs RUN_ID roi --format table           ROI per channel of a run
  mmm optimize RUN_ID --bounds '*=±20%'           next period's budget split on a fitted run

exit status: 0 ok, 1 a run or command failed (the message names the stage or field),
2 usage error, 3 a run stopped by the diagnostics gate (diagnostics.gate: stop).
`mmm COMMAND --help` describes each command."""


def build_parser() -> argparse.ArgumentParser:
    from .runs import OUTPUT_KINDS

    p = argparse.ArgumentParser(prog="mmm", description="Bayesian MMM notebook suite: validate, fit and report "
                                "marketing mix models from a YAML run spec.", epilog=_EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def fmt_option(parser: argparse.ArgumentParser, what: str) -> None:
        parser.add_argument("--format", default="json", type=_format_arg, metavar="{json,table,csv}",
                            help=f"json (default: {what}), table (aligned columns for reading) or csv")

    r = sub.add_parser("run", help="run the stage notebooks on a spec",
                       description="Run the stage notebooks on a spec (the six, and 07_optimize when it has an "
                       "optimize: section); stage progress on stderr, a JSON "
                       "result (run_id, status, report path, stage times) on stdout.")
    r.add_argument("spec", help="run spec YAML, e.g. params/example.yaml")
    r.add_argument("--run-id", help="folder name under outputs/runs (default <spec>_<timestamp>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set draws=200 --set windows.estimation_months=24")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an existing failed run from its failed stage")
    g.add_argument("--restart", action="store_true", help="delete an existing run with this id and run it again")
    r.add_argument("--mlflow", action="store_true", default=None,
                   help='log the finished run to MLflow (on by default when MLFLOW_TRACKING_URI is set; '
                   'needs pip install ".[mlflow]")')
    r.set_defaults(func=_cmd_run)

    d = sub.add_parser("datasets", help="add, list, show or remove datasets",
                       description="Datasets stored under outputs/datasets/ID: the file byte for byte, a parquet "
                       "copy and its validation; a spec refers to one with `dataset_id: ID`.")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    x = dsub.add_parser("add", help="store and validate a CSV/Parquet file", description="Store a CSV/Parquet file "
                        "as a dataset (kept byte for byte with its SHA-256) and validate it; prints its metadata.")
    x.add_argument("path", help="the CSV or Parquet file")
    x.add_argument("--id", required=True, help="dataset id: letters, digits, '.', '_' or '-', e.g. brand_q3")
    x.add_argument("--force", action="store_true", help="replace an existing dataset with this id (refused while "
                   "runs use it)")
    x.add_argument("--even-if-used", action="store_true", help="with --force: replace it even though runs use it "
                   "(each run keeps its own copy of its input)")
    x.add_argument("--spec", help="run spec whose `columns` mapping describes the file (Meridian/Robyn exports)")
    x = dsub.add_parser("list", help="list datasets (id, file, rows, added, valid)",
                        description="List the stored datasets.")
    fmt_option(x, "a list of objects")
    for name, text in (("show", "metadata and validation summary of a dataset"),
                       ("columns", "each column's role (id, target, driver, spend, control, other) and dtype")):
        dsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + " (JSON).").add_argument(
            "id", help="dataset id (`mmm datasets list`)")
    x = dsub.add_parser("raw", help="the stored rows as JSON records", description="The dataset's rows as JSON records.")
    x.add_argument("id", help="dataset id (`mmm datasets list`)")
    x.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N rows")
    x = dsub.add_parser("rm", help="delete a dataset (refused while runs use it)",
                        description="Delete a dataset; refused while runs use it unless --force.")
    x.add_argument("id", help="dataset id (`mmm datasets list`)")
    x.add_argument("--force", action="store_true", help="delete even if runs use it")
    d.set_defaults(func=_cmd_datasets)

    rr = sub.add_parser("runs", help="list runs, show status or spec, remove",
                        description="Runs under outputs/runs: made by `mmm run`, or by the notebooks run by hand "
                        "in JupyterLab (listed with status 'interactive').")
    rsub = rr.add_subparsers(dest="action", required=True, metavar="ACTION")
    x = rsub.add_parser("list", help="list runs, newest first",
                        description="List runs newest first: id, status, stage, times and source (mmm run or notebook).")
    fmt_option(x, "a list of objects")
    for name, text in (("status", "the run's status.json: state and timing of each stage, the error of a failed one"),
                       ("spec", "the run spec the run used (run_spec.json, defaults filled in)")):
        rsub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".").add_argument(
            "id", help="run id (`mmm runs list`)")
    x = rsub.add_parser("rm", help="delete a run folder (asks first)",
                        description="Delete a run folder and everything in it. Asks for confirmation on a terminal; "
                        "non-interactive use (scripts, CI) must pass --yes.")
    x.add_argument("id", help="run id (`mmm runs list`)")
    x.add_argument("--yes", "-y", action="store_true", help="delete without asking")
    rr.set_defaults(func=_cmd_runs)

    op = sub.add_parser("optimize", help="recommend next period's budget split on a fitted run (07_optimize)",
                        description="Run 07_optimize on a fitted run without refitting: response curves, the split of a "
                        "budget that maximises expected incremental sales within bounds, and scenario forecasts. Settings "
                        "start from the run spec's `optimize:` section (defaults otherwise). Writes optimization.json, "
                        "response_curves.parquet, scenario.parquet and reports/07_optimize.html.")
    op.add_argument("run_id", help="run id (`mmm runs list`)")
    op.add_argument("--budget", type=float, metavar="AMOUNT", help="total spend over the horizon (default: the last "
                    "horizon's spend)")
    op.add_argument("--bounds", action="append", default=[], metavar="CH=BOUND",
                    help="a channel's bound: CH=±20%% (of current spend) or CH=LOW:HIGH (spend over the horizon); "
                    "*=±30%% for the others; repeat for several channels")
    op.add_argument("--scenario", metavar="PLAN.csv", help="planned flighting to forecast: period_start, channel"
                    "[, entity_id], spend")
    op.add_argument("--horizon", dest="horizon_periods", type=int, metavar="N", help="periods to plan (default 13)")
    tg = op.add_mutually_exclusive_group()
    tg.add_argument("--target-marginal-roi", type=float, metavar="V",
                    help="find the budget instead: the spend where the optimal plan's marginal ROI falls to V (1 = break-even)")
    tg.add_argument("--target-roi", type=float, metavar="V", help="find the budget where the optimal plan's average ROI falls to V")
    op.add_argument("--per-entity", action="store_true", help="entity models: optimize each entity's split too")
    op.add_argument("--objective", choices=["mean", "risk_adjusted"], help="mean (default) or mean - risk_aversion x sd")
    op.add_argument("--risk-aversion", type=float, metavar="L", help="lambda of the risk-adjusted objective (default 1)")
    op.add_argument("--starts", type=int, metavar="N", help="optimizer starts (default 4)")
    op.add_argument("--draws", type=int, metavar="N", help="posterior draws to evaluate plans on (default 200)")
    op.set_defaults(func=_cmd_optimize)

    kinds = sorted(OUTPUT_KINDS)
    o = sub.add_parser("outputs", help="print one output of a run (JSON, table or CSV)",
                       description="Print one output of a run. KIND is one of: " + ", ".join(kinds) + ". "
                       "table and csv show its main table (ROI channels, posterior parameters, fitted rows, "
                       "or field/value pairs); JSON has everything.")
    o.add_argument("run_id", help="run id (`mmm runs list`)")
    o.add_argument("kind", choices=kinds, metavar="KIND", help="which output: " + ", ".join(kinds))
    fmt_option(o, "the whole artifact")
    o.add_argument("--view", choices=list(_LEGACY_VIEWS), default=None,
                   help="contributions only: summary (per channel totals, default) or timeseries (per period rows)")
    o.set_defaults(func=_cmd_outputs)

    s = sub.add_parser("sample", help="generate sample data with known true parameters and ROI",
                       description="Write a sample CSV in the expected format and a JSON file with the true "
                       "parameters and ROI it was simulated from (to check that a fit recovers them).")
    s.add_argument("--out", default="mmm_sample.csv", metavar="F.csv", help="data file to write (default %(default)s)")
    s.add_argument("--truth", default="mmm_sample_truth.json", metavar="F.json",
                   help="true parameters and ROI (default %(default)s)")
    s.add_argument("--entities", type=int, default=5, metavar="N", help="stores/geos (default %(default)s)")
    s.add_argument("--periods", type=int, default=156, metavar="N", help="weeks per entity (default %(default)s)")
    s.add_argument("--seed", "--random-seed", dest="seed", type=int, default=7, metavar="N",
                   help="random number generator seed; same value, same data (default %(default)s)")
    s.set_defaults(func=_cmd_sample)

    c = sub.add_parser("compare", help="rank runs of the same data by ELPD-LOO and holdout error; ROI side by side",
                       description="Rank finished runs of the same data by ELPD-LOO and holdout error, ROI side by "
                       "side; writes outputs/compare/NAME/index.html and compare.json. Exit 2 when the runs are "
                       "not comparable (the message says what differs).")
    c.add_argument("runs", nargs="+", metavar="RUN_ID", help="two or more run ids (same data, window and holdout)")
    c.add_argument("--name", help="folder under outputs/compare (default RUN_A_vs_RUN_B)")
    c.set_defaults(func=_cmd_compare)

    k = sub.add_parser("kernels", help="list the kernel servers runs keep for the next run, or stop them",
                       description="A run keeps its kernel server for the next run with the same code and settings "
                       "(its first stage's kernel is then ready at once); it ends by itself after "
                       f"MMM_KEEP_KERNELS minutes without a run (default 15; 0: runs keep none). Lists them: pid, "
                       "outputs root, compile cache, minutes idle.")
    k.add_argument("--stop", action="store_true", help="stop every kept kernel server now")
    fmt_option(k, "a list")
    k.set_defaults(func=_cmd_kernels)

    b = sub.add_parser("batch", help="run many specs at once on Dask: a list, a grid, a split by brand or market",
                       description="`mmm batch MANIFEST.yaml` runs every run a manifest derives from a base spec (a list of "
                       "overrides, a grid, a split of the data by a column), each the same six stages as `mmm run`, on an "
                       "embedded Dask cluster or an existing scheduler; writes outputs/batches/NAME/index.html and "
                       "batch.json. `mmm batch status NAME` shows where each run of a batch is.")
    b.add_argument("manifest", metavar="MANIFEST", help="batch manifest YAML (params/batch_example.yaml), or `status`")
    b.add_argument("name", nargs="?", help="with `status`: the batch name")
    b.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                   "(default: an embedded LocalCluster on this machine)")
    b.add_argument("--workers", type=int, metavar="N", help="embedded cluster: worker processes (default cores // chains)")
    b.add_argument("--cores", type=_positive_int, metavar="N",
                   help="embedded cluster: the cores it may use (default: all this process may run on)")
    b.add_argument("--resume", action="store_true", help="skip runs that completed with the same spec; rerun the others")
    b.add_argument("--dry-run", action="store_true", help="validate every derived spec and list the run ids; run nothing")
    b.add_argument("--cache", choices=["shared", "per-worker"], default="shared",
                   help="compile cache: one per host shared by its workers (default, measured faster: README) or one per worker")
    fmt_option(b, "the batch or, with --dry-run, the plan")
    b.set_defaults(func=_cmd_batch)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # `mmm outputs … | head`: the reader left; stop quietly like other Unix tools.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (SpecError, ValueError, FileNotFoundError, FileExistsError, PermissionError) as e:
        if isinstance(e, PermissionError) and e.errno is not None:  # the OS refused a write, not our own refusal
            from .storage import describe_os_error

            e = describe_os_error(e)
        _err(f"error: {e}")
        return 1
    except OSError as e:  # a full disk, a read-only outputs folder: one line with the fix, not a traceback
        from .storage import describe_os_error

        _err(f"error: {describe_os_error(e)}")
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C in a command other than `mmm run` (which records it first)
        _err(f"error: {str(e) or 'interrupted by SIGINT (Ctrl-C)'}")
        return getattr(e, "exit_code", 130)


def console() -> None:
    """The ``mmm`` command: :func:`main` on the command line's arguments, then exit.

    The objects the run left (papermill, nbconvert, pandas, every module's globals) are frozen first: Python's
    collection at exit then skips them instead of walking them all (0.36 s → 0.06 s after a run, measured on the
    2-core machine). Exit handlers still run and the standard streams are flushed as usual."""
    import gc

    rc = main()
    gc.freeze()
    sys.exit(rc)


if __name__ == "__main__":  # pragma: no cover
    console()
