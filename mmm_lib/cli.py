"""The ``mmm`` command (also ``python -m mmm_lib``): runs, datasets, outputs and sample data.

Listing and output commands print JSON on stdout; progress and errors go to stderr. Exit status is
0 on success, 1 when a run or command fails (the message names the stage or field), 2 on usage errors,
3 when the diagnostics gate (``diagnostics.gate: stop``) stopped a run after failed convergence checks.
A run that completes with failed checks (``gate: warn``) exits 0 and says PROVISIONAL with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .spec import SpecError


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


EXIT_GATE_STOPPED = 3


def _cmd_run(a: argparse.Namespace) -> int:
    from .runner import RunError, explain_stop, print_headline, run_pipeline

    try:
        res = run_pipeline(a.spec, a.run_id, a.set, resume=a.resume, restart=a.restart, log=_err)
    except RunError as e:
        _err(f"error: {e}")
        return 1
    if res.status == "failed":
        _err(f"error: stage {res.failed_stage} failed: {res.error}")
        _err(f"  details: {res.run_dir / 'status.json'}; report: {res.index}")
        return 1
    if res.status == "stopped":
        explain_stop(res, _err)
    else:
        print_headline(res, _err)
    dg = res.diagnostics
    _print_json({"run_id": res.run_id, "status": res.status, "index": str(res.index),
                 "diagnostics": None if dg is None else {"passed": dg.passed, "gate": dg.gate, "outcome": dg.outcome,
                                                         "reason": dg.reason or None},
                 "stage_times_s": {k: round(v, 1) for k, v in res.stage_times.items()}})
    return EXIT_GATE_STOPPED if res.status == "stopped" else 0


def _cmd_datasets(a: argparse.Namespace) -> int:
    from . import datasets as ds

    if a.action == "add":
        meta = ds.add_dataset(a.path, a.id, force=a.force, spec_path=a.spec)
        if not meta["validation_ok"]:
            _err(f"warning: dataset {a.id!r} has validation errors; `mmm datasets show {a.id}` lists them")
        _print_json(meta)
    elif a.action == "list":
        _print_json(ds.list_datasets())
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
        _print_json(runs.list_runs())
    elif a.action == "status":
        _print_json(runs.run_status(a.id))
    elif a.action == "spec":
        _print_json(runs.run_spec(a.id))
    elif a.action == "rm":
        _print_json(runs.remove_run(a.id))
    return 0


def _cmd_outputs(a: argparse.Namespace) -> int:
    from .runs import get_output

    _print_json(get_output(a.run_id, a.kind, a.format))
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


def build_parser() -> argparse.ArgumentParser:
    from .runs import OUTPUT_KINDS

    p = argparse.ArgumentParser(prog="mmm", description="Bayesian MMM notebook suite")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the six stage notebooks on a spec")
    r.add_argument("spec", help="run spec YAML, e.g. params/example.yaml")
    r.add_argument("--run-id", help="folder name under outputs/runs (default <spec>_<timestamp>)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set draws=200 --set windows.estimation_months=24")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue an existing failed run from its failed stage")
    g.add_argument("--restart", action="store_true", help="delete an existing run with this id and run it again")
    r.set_defaults(func=_cmd_run)

    d = sub.add_parser("datasets", help="add, list, show or remove datasets")
    dsub = d.add_subparsers(dest="action", required=True)
    x = dsub.add_parser("add", help="store and validate a CSV/Parquet file")
    x.add_argument("path")
    x.add_argument("--id", required=True)
    x.add_argument("--force", action="store_true", help="replace an existing dataset with this id")
    x.add_argument("--spec", help="run spec whose `columns` mapping describes the file (Meridian/Robyn exports)")
    dsub.add_parser("list")
    for name in ("show", "columns"):
        dsub.add_parser(name).add_argument("id")
    x = dsub.add_parser("raw")
    x.add_argument("id")
    x.add_argument("--limit", type=int, default=None)
    x = dsub.add_parser("rm")
    x.add_argument("id")
    x.add_argument("--force", action="store_true", help="delete even if runs use it")
    d.set_defaults(func=_cmd_datasets)

    rr = sub.add_parser("runs", help="list runs, show status or spec, remove")
    rsub = rr.add_subparsers(dest="action", required=True)
    rsub.add_parser("list")
    for name in ("status", "spec", "rm"):
        rsub.add_parser(name).add_argument("id")
    rr.set_defaults(func=_cmd_runs)

    o = sub.add_parser("outputs", help="print one output of a run as JSON")
    o.add_argument("run_id")
    o.add_argument("kind", choices=sorted(OUTPUT_KINDS))
    o.add_argument("--format", default="summary", choices=["summary", "timeseries"], help="for contributions")
    o.set_defaults(func=_cmd_outputs)

    s = sub.add_parser("sample", help="generate sample data with known true parameters and ROI")
    s.add_argument("--out", default="mmm_sample.csv")
    s.add_argument("--truth", default="mmm_sample_truth.json")
    s.add_argument("--entities", type=int, default=5)
    s.add_argument("--periods", type=int, default=156)
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=_cmd_sample)

    c = sub.add_parser("compare", help="rank runs of the same data by ELPD-LOO and holdout error; ROI side by side")
    c.add_argument("runs", nargs="+", metavar="RUN_ID", help="two or more run ids (same data, window and holdout)")
    c.add_argument("--name", help="folder under outputs/compare (default RUN_A_vs_RUN_B)")
    c.set_defaults(func=_cmd_compare)
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
        _err(f"error: {e}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
