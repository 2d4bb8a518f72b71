"""The ``mtsearch`` command line.

User errors (:class:`~mtsearch.errors.MtsearchError`) print one line and exit 2; a
traceback means a bug in mtsearch.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mtsearch.errors import MtsearchError


def _train(args: argparse.Namespace) -> int:
    from mtsearch.config import load_config, parse_set
    from mtsearch.paths import check_name
    from mtsearch.tasks import TASKS, overall_score
    from mtsearch.train import train

    if args.name is not None:
        check_name(args.name, "--name")
    overrides = parse_set(args.set or [])
    for flag in ("data_dir", "name"):
        if getattr(args, flag):
            overrides[flag] = getattr(args, flag)
    config = load_config(args.config, overrides, profile=args.profile)
    result = train(config)
    print(
        f"\nrun: {result.run_dir}  status: {result.status}  steps: {result.steps}  "
        f"examples: {result.examples}  time: {result.seconds:.0f} s"
    )
    best = result.best
    print(
        f"best periodic evaluation (step {best.get('step')}, dev subset of at most {config.eval_limit} per task):"
    )
    for task, value in best.get("scores", {}).items():
        print(f"  {task:7s} {TASKS[task].metric:9s} {value:.4f}")
    print(f"  overall {best.get('overall', float('nan')):.4f}")
    if result.final:
        print("best checkpoint on the full dev sets:")
        for task, value in result.final.items():
            print(f"  {task:7s} {TASKS[task].metric:9s} {value:.4f}")
        print(f"  overall {overall_score(result.final):.4f}")
    if result.mlflow_run_id:
        print(f"MLflow run: {result.mlflow_run_id} (make mlflow to browse)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mtsearch.errors import ConfigError

    if args.limit is not None and not args.detailed:
        raise ConfigError("--limit only applies with --detailed (predict writes every example otherwise)")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: a number of dev examples per task, at least 1 (got {args.limit})")
    if args.detailed:
        from mtsearch.dashboard.predictions import compute_detailed

        print(compute_detailed(args.run, data_dir=args.data_dir, limit=args.limit))
        return 0
    from mtsearch.predict import predict_run

    for path in predict_run(args.run, data_dir=args.data_dir, splits=tuple(args.splits)):
        print(path)
    return 0


def _data_fetch(args: argparse.Namespace) -> int:
    from mtsearch.data import fetch_data
    from mtsearch.paths import default_data_dir

    dest = Path(args.dest) if args.dest else default_data_dir()
    rows = fetch_data(dest, args.source)
    for row in rows:
        size = f"{row['bytes'] / 1e6:7.2f} MB" if row.get("bytes") else " " * 10
        print(f"  {row['status']:10s} {size}  {row['file']}")
    print(f"data ready in {dest}")
    return 0


def _data_check(args: argparse.Namespace) -> int:
    from mtsearch.data import check_report, resolve_data_dir

    print(check_report(resolve_data_dir(args.data_dir), strict=args.strict))
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from mtsearch.config import parse_set
    from mtsearch.reproduce import (
        failed,
        format_comparison,
        format_published,
        plan,
        reproduce,
        reproducible_presets,
        write_tables,
    )

    chosen = [
        what
        for what, on in (("PRESET", args.preset), ("--published", args.published), ("--all", args.all))
        if on
    ]
    if len(chosen) != 1:
        names = ", ".join(reproducible_presets())
        raise MtsearchError(
            ("give one of " if chosen else "give ")
            + "a PRESET, --published or --all"
            + (f" (got {' and '.join(chosen)})" if chosen else f"; presets: {names}")
        )
    if args.published:
        print(format_published())
        return 0
    overrides = parse_set(args.set or [])
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    presets = reproducible_presets() if args.all else [args.preset]
    planned = [plan(p, args.profile, overrides) for p in presets]  # every config checked before training
    reps = []
    for p in planned:
        try:
            rep = reproduce(p)
        except MtsearchError as err:
            if not args.all:
                raise
            # --all: one preset's failure (e.g. a diverged loss) leaves the others' rows
            print(f"mtsearch: {p.preset} failed: {err}", file=sys.stderr)
            reps.append(failed(p, err))
            continue
        reps.append(rep)
        print("\n" + format_comparison(rep))
    if args.all:
        from mtsearch.paths import runs_dir

        csv_path, md_path = write_tables(reps, runs_dir() / "reproduce", args.profile)
        print(f"\ntables: {csv_path}, {md_path}")
    return 0


def _dims(args: argparse.Namespace) -> int:
    from mtsearch.dims import format_dims

    print(format_dims())
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from mtsearch.backends import BACKENDS
    from mtsearch.config import parse_set
    from mtsearch.errors import ConfigError
    from mtsearch.sweep.results import compute, format_results, write_tables
    from mtsearch.sweep.runner import format_failures, load_runs
    from mtsearch.sweep.space import load_space

    if args.trials is not None and args.trials < 1:
        raise ConfigError(
            f"--trials is the number of configurations, a whole number >= 1 (got {args.trials})"
        )
    if args.minutes is not None and not (args.minutes > 0 and args.minutes != float("inf")):
        raise ConfigError(f"--minutes is a wall-clock budget, a number of minutes > 0 (got {args.minutes})")
    if args.jobs is not None and args.backend == "ray":
        raise ConfigError(
            "--jobs is for the optuna backend; Ray runs as many trials at once as its CPUs allow: "
            "set --cpus-per-trial (e.g. 1 for one trial per core)"
        )
    from mtsearch.backends.jobs import check_jobs
    from mtsearch.backends.packing import check_gpus_per_trial

    if args.jobs is None or str(args.jobs).strip() != "auto":
        check_jobs(args.jobs)  # a bad --jobs ends before anything is loaded
    gpus_per_trial = check_gpus_per_trial(args.gpus_per_trial)
    if args.name is not None:
        from mtsearch.paths import check_name

        check_name(args.name, "--name")
    extra = parse_set(args.set or [])
    if args.data_dir:
        extra["data_dir"] = args.data_dir
    space = load_space(args.space, args.profile, extra)
    if args.trials is not None or args.minutes is not None:
        import dataclasses

        space = dataclasses.replace(
            space,
            trials=args.trials if args.trials is not None else space.trials,
            minutes=args.minutes if args.minutes is not None else space.minutes,
        )
    from mtsearch.backends.packing import choose_jobs, jobs_gpus, pin_this_process

    # The GPUs the jobs spread over, found and this process (job 0) pinned to the first before
    # anything here starts CUDA (check_data's device check does); Ray pins its trials itself.
    gpus = jobs_gpus(args.jobs, space) if args.backend == "optuna" else None
    if gpus:
        pin_this_process(gpus)
    if not args.worker:  # a data problem every run would hit: one error before the first run
        from mtsearch.train.trainer import check_data

        check_data(space.run_config({}, 0))
    from mtsearch.sweep.runner import sweep_name, sweeps_dir

    sweep_dir = sweeps_dir() / sweep_name(space, args.name)
    backend = BACKENDS.get(args.backend)()
    options = dict(mlflow=not args.no_mlflow, progress=not args.quiet, extra_set=extra)
    if args.backend == "optuna":
        choice = choose_jobs(args.jobs, space, sweep_dir, gpus=gpus)
        jobs_line = choice.line()
        options.update(storage=args.storage, worker=args.worker, jobs=choice.jobs, gpus=choice.gpus,
                       jobs_reason=jobs_line)  # fmt: skip
    else:
        if gpus_per_trial == "auto":
            choice = choose_jobs("auto", space, sweep_dir)
            gpus_per_trial = choice.gpus_per_trial
            why = f"{choice.per_gpu} runs a GPU; {choice.reason}" if choice.gpus else "no CUDA"
            jobs_line = f"Ray: {gpus_per_trial:g} GPU a trial (--gpus-per-trial auto: {why})"
        else:
            jobs_line = f"Ray: {gpus_per_trial:g} GPU a trial"
        options.update(
            cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus_per_trial, jobs_reason=jobs_line
        )
    if not args.worker:
        options["on_round"] = _print_round
    try:
        outcome = backend.run(space, args.name, **options)
    except KeyboardInterrupt:
        if not args.worker:
            _print_interrupted(args.name or space.name, args.argv)
        raise
    for note in outcome.notes:
        print(f"note: {note}")
    counts = ", ".join(f"{v} {k}" for k, v in outcome.counts.items())
    print(
        f"\nsweep {outcome.name}: {outcome.stopped_because}; {outcome.runs} run(s) trained in "
        f"{outcome.wall_seconds / 60:.1f} min; runs: {counts}"
    )
    print(jobs_line)
    if outcome.wall_seconds and outcome.runs:
        slots = f" of {outcome.slots} runs at once" if outcome.slots > 1 else ""
        print(f"time outside training and evaluation: {100 * outcome.overhead:.1f}% of the wall time{slots}")
    runs = load_runs(outcome.sweep_dir)
    print(_seeds_line(runs, space))
    failures = format_failures(runs)
    if failures:
        print("failed runs:")
        print("\n".join(failures))
    res = compute(outcome.sweep_dir)
    if not res.configurations.empty:
        write_tables(res)
    print(format_results(res))
    from mtsearch.sweep.provisional import format_closing

    for line in format_closing(res, space):
        print(line)
    print(f"\ntables: {outcome.sweep_dir}/trials.csv, ablation.csv")
    _fail_if_nothing_finished(outcome, runs, space)
    return 0


def _print_round(sweep_dir: Path, level: int, decision, extend: list[str]) -> None:
    """A racing round is complete: its tables, marked provisional (the sweep's own process only)."""
    from mtsearch.faults import fault_point
    from mtsearch.sweep.provisional import format_round

    print("\n" + format_round(sweep_dir, level, decision, extend), flush=True)
    fault_point("round_shown")  # tests press Ctrl-C here


def _print_interrupted(name: str, argv: list[str]) -> None:
    """Ctrl-C: the tables of the runs done so far and the command that goes on from there."""
    import shlex

    from mtsearch.sweep.results import compute, format_results
    from mtsearch.sweep.runner import sweeps_dir

    sweep_dir = sweeps_dir() / name
    print(f"\nsweep {name}: interrupted by the user")
    if (sweep_dir / "sweep.json").exists():
        print("the tables so far (PROVISIONAL: the sweep is not finished):")
        print(format_results(compute(str(sweep_dir))))
    print(f"resume (runs done are kept, an interrupted run is trained again): {shlex.join(['mtsearch', *argv])}",
          flush=True)  # fmt: skip


def _fail_if_nothing_finished(outcome, runs, space) -> None:
    """A sweep that finished no run, or stopped at max_failures, is an error (exit 2), its first error named."""
    from mtsearch.errors import MtsearchError

    usable = int(runs["status"].isin(("finished", "stopped_early")).sum()) if not runs.empty else 0
    hit_max = outcome.stopped_because.startswith("more than max_failures")
    if usable and not hit_max:
        return
    failed = runs[runs["status"] == "failed"] if not runs.empty else runs
    first = ""
    if len(failed):
        r = failed.iloc[0]
        first = f"; first error ({r['run']}): {str(r['error'] or 'no error recorded').splitlines()[0]}"
    what = outcome.stopped_because if hit_max else "no run finished"
    raise MtsearchError(f"sweep {outcome.name}: {what} ({len(failed)} failed){first}")


def _seeds_line(runs, space) -> str:
    """How many seeds each configuration got (racing: per configuration)."""
    from mtsearch.sweep.keys import DONE

    if runs.empty:
        return "seeds per configuration: no run yet"
    done = runs[runs["status"].isin(DONE)]
    per = done.groupby("config_hash", sort=False).size()
    if not space.racing:
        spread = per.value_counts().sort_index(ascending=False)
        return "seeds per configuration: " + ", ".join(
            f"{n} x {c} configuration(s)" for n, c in spread.items()
        )
    lines = ["seeds per configuration (racing):"]
    for h, n in per.sort_values(ascending=False).items():
        params = runs.loc[runs["config_hash"] == h, "params"].iloc[0]
        label = ", ".join(f"{k}={v}" for k, v in params.items()) or h
        lines.append(f"  {n:3d}  {label}")
    return "\n".join(lines)


def _results(args: argparse.Namespace) -> int:
    from mtsearch.sweep.provisional import format_closing, recorded_space
    from mtsearch.sweep.results import compute, format_results, write_tables

    res = compute(args.sweep)
    print(format_results(res, top=args.top))
    # The same closing lines as the sweep's own output: untested and one-computation configurations too.
    for line in format_closing(res, recorded_space(res.meta, res.sweep_dir)):
        print(line)
    if not res.configurations.empty:
        t, a = write_tables(res)
        print(f"\nwritten: {t}, {a}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from mtsearch.config import parse_set
    from mtsearch.sweep.verify import format_plan, format_verify, plan_verify, run_verify

    extra = parse_set(args.set or [])
    if args.data_dir:
        extra["data_dir"] = args.data_dir
    plan = plan_verify(args.sweep, args.profile, args.top, args.worst, extra, seeds=args.seeds)
    print(format_plan(plan), flush=True)
    out = run_verify(plan, mlflow=not args.no_mlflow, progress=not args.quiet)
    print(format_verify(out, plan.verify_dir / "verify.json"))
    return 0


def _report(args: argparse.Namespace) -> int:
    from mtsearch.dashboard.report import write_report

    path, data = write_report(args.sweep, Path(args.out) if args.out else None)
    print(f"report: {path}")
    if not data.has_results:
        print(data.status_message())
    for note in data.notices:
        print(f"note: {note}")
    return 0


def _spaces(args: argparse.Namespace) -> int:
    from mtsearch.sweep.space import expected_runs, list_spaces, load_space

    for name in list_spaces():
        try:
            sp = load_space(name, args.profile)
        except MtsearchError as err:
            print(f"{name:10s} INVALID: {err}")
            continue
        dims = ", ".join(d.name for d in sp.dimensions)
        runs = expected_runs(sp)
        print(
            f"{name:10s} {sp.algorithm:6s} seeds={sp.seeds} runs={runs if runs else '?'} "
            f"minutes={sp.minutes or '-'}  dims: {dims}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtsearch", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one multitask model")
    t.add_argument("--config", help="YAML file of config keys (see `mtsearch dims`)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    t.add_argument("--data-dir", help="folder with the CS224N files (else MTSEARCH_DATA, else data/cs224n)")
    t.add_argument("--name", help="run directory name under runs/")
    t.add_argument("--profile", help="a profile of the config file (presets: cpu, the default, or gpu)")
    t.set_defaults(func=_train)

    pr = sub.add_parser("predict", help="write dev/test predictions of a run in the course format")
    pr.add_argument("run", help="run directory or its name under runs/")
    pr.add_argument("--data-dir")
    pr.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["train", "dev", "test"])
    pr.add_argument("--detailed", action="store_true",
                    help="instead: dev predictions with sentences and gold labels for the dashboard's error "
                    "views -> RUN/predictions/dev-detailed.jsonl")  # fmt: skip
    pr.add_argument(
        "--limit", type=int, help="with --detailed: a seeded subset of this many dev examples per task"
    )
    pr.set_defaults(func=_predict)

    d = sub.add_parser("data", help="fetch or check the CS224N data")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="fill data/cs224n from a mirror folder or the course repository")
    f.add_argument("--from", dest="source", help="mirror folder or URL base (default: the course repository)")
    f.add_argument("--dest", help="target folder (default: data/cs224n in the project)")
    f.set_defaults(func=_data_fetch)
    c = dsub.add_parser("check", help="rows, label distribution and defects per file")
    c.add_argument("--data-dir")
    c.add_argument("--strict", action="store_true", help="fail on the first malformed row")
    c.set_defaults(func=_data_check)

    sw = sub.add_parser("sweep", help="run (or resume) a sweep over a search space")
    sw.add_argument("space", help="a name under search_spaces/ (see `mtsearch spaces`) or a path to a .yaml")
    sw.add_argument("--backend", default="optuna", choices=["optuna", "ray"])
    sw.add_argument("--profile", default="cpu", help="budget profile of the space: cpu (default) or gpu")
    sw.add_argument("--name", help="sweep name (default: the space's); the same name resumes")
    sw.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a base config key")
    sw.add_argument("--data-dir")
    sw.add_argument("--trials", type=int,
                    help="override the budget's number of configurations; under algorithm: grid, the grid's first N "
                    "configurations in the space file's order (dimensions as listed, the last one varying fastest)")  # fmt: skip
    sw.add_argument("--minutes", type=float, help="override the budget's wall-clock minutes")
    sw.add_argument("--storage", help="Optuna storage URL (default: sqlite in runs/sweeps/<name>/); the run "
                    "folders stay in runs/sweeps/<name>/, which every worker must share")  # fmt: skip
    sw.add_argument("--worker", action="store_true",
                    help="one more process on the same sweep (several may run at once, on machines that share "
                    "the sweep folder)")  # fmt: skip
    sw.add_argument("--jobs", metavar="N|auto",
                    help="optuna: train N runs at once on this machine (N workers of the sweep, the CPU cores "
                    "split between them, several GPUs shared round-robin; default 1); auto: 2 on 2 cores or "
                    "more without CUDA, on CUDA a short measurement of how many runs share a GPU (cached in "
                    "the sweep folder)")  # fmt: skip
    sw.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs per trial")
    sw.add_argument("--gpus-per-trial", default="0",
                    help="Ray: GPUs per trial (a fraction shares a GPU); auto: 1 / the runs per GPU --jobs auto "
                    "would choose (0 without CUDA)")  # fmt: skip
    sw.add_argument("--no-mlflow", action="store_true", help="do not mirror into MLflow")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=_sweep)

    rs = sub.add_parser("results", help="ranked configurations and ablation tables of a sweep")
    rs.add_argument("sweep", help="sweep name under runs/sweeps/ or its folder")
    rs.add_argument("--top", type=int, default=10)
    rs.set_defaults(func=_results)

    vf = sub.add_parser(
        "verify",
        help="re-run a sweep's best and worst configurations at a higher fidelity: does its ranking hold?",
    )
    vf.add_argument("sweep", help="sweep name under runs/sweeps/ or its folder")
    vf.add_argument("--profile", default="long",
                    help="the space file's profile to verify at (default: long: longer, more data, full "
                    "fine-tuning)")  # fmt: skip
    vf.add_argument("--top", type=int, default=3, help="how many of the best configurations (default 3)")
    vf.add_argument("--worst", type=int, default=2, help="how many of the worst configurations (default 2)")
    vf.add_argument("--seeds", type=int, default=None,
                    help="seed indices to re-run per configuration: the first N that every chosen configuration "
                    "has (default: all of those)")  # fmt: skip
    vf.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config key of the long runs (repeatable), e.g. max_steps=200")  # fmt: skip
    vf.add_argument("--data-dir")
    vf.add_argument("--no-mlflow", action="store_true", help="do not mirror the runs into MLflow")
    vf.add_argument("--quiet", action="store_true", help="no line per run")
    vf.set_defaults(func=_verify)

    rp = sub.add_parser("report", help="one self-contained HTML file with a sweep's tables and plots")
    rp.add_argument("sweep", help="sweep name under runs/sweeps/ or its folder")
    rp.add_argument("--out", help="HTML file to write (default: runs/sweeps/<sweep>/report.html)")
    rp.set_defaults(func=_report)

    sp = sub.add_parser("spaces", help="list the shipped search spaces and what they cost")
    sp.add_argument("--profile", default="cpu")
    sp.set_defaults(func=_spaces)

    rpr = sub.add_parser(
        "reproduce", help="train a published system's preset; its dev scores beside the report's"
    )
    rpr.add_argument("preset", nargs="?", help="a preset with published scores (see --published)")
    rpr.add_argument("--profile", default="cpu", help="the preset's budget profile: cpu (default) or gpu")
    rpr.add_argument("--published", action="store_true", help="print the published scores alone, no training")
    rpr.add_argument("--all", action="store_true",
                     help="every such preset; the table goes to runs/reproduce/reproduce-PROFILE.csv and .md")  # fmt: skip
    rpr.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key (repeatable)")
    rpr.add_argument("--data-dir")
    rpr.set_defaults(func=_reproduce)

    dm = sub.add_parser("dims", help="list every config dimension and strategy")
    dm.set_defaults(func=_dims)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(
        sys.argv[1:] if argv is None else argv
    )  # the command as given: Ctrl-C prints it to resume
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # transformers and MLflow are chatty at INFO; mtsearch's own messages are what users need.
    for name in ("transformers", "mlflow", "alembic", "urllib3", "httpx", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        if args.command in ("train", "sweep", "verify"):
            from mtsearch.paths import require_output_dirs

            require_output_dirs()  # MTSEARCH_RUNS a file or read-only: one line, before any work
        return args.func(args)
    except MtsearchError as err:
        print(f"mtsearch: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
