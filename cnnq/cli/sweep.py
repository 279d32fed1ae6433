"""`cnnq sweep`: a hyperparameter search whose trials are train jobs run by every worker; `sweep show` and
`sweep best` read what it found.

`cnnq sweep` takes every option of `submit train` (fixed for every trial), `--param` for each searched
option, and the search's own settings, on the command line or in a `--config` YAML file (the command line
wins). Nothing here imports torch or Optuna until a sweep is recorded.
"""

from __future__ import annotations

import copy
import inspect
import time
from pathlib import Path
from typing import Any

import typer

from cnnq.cli.output import console, err_console, print_json
from cnnq.cli.spec_options import build_spec, train_parameters
from cnnq.errors import UserError
from cnnq.jobs.spec import TrainSpec
from cnnq.sweeps.spec import SWEEP_KIND

_POLL_SECONDS = 1.0

_SWEEP_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "param",
        list[str],
        typer.Option(
            [],
            "--param",
            "-p",
            help="A searched train option: NAME=uniform:LOW:HIGH, loguniform:LOW:HIGH, int:LOW:HIGH, "
            "logint:LOW:HIGH or choice:A,B,... (A|B when a value holds a comma). Repeat for each.",
        ),
    ),
    (
        "config",
        Path | None,
        typer.Option(None, "--config", help="A YAML file of train options, params: and the settings below."),
    ),
    (
        "trials",
        int | None,
        typer.Option(None, "--trials", min=1, help="Trials in all, trial 0 included [20]."),
    ),
    (
        "parallel",
        int | None,
        typer.Option(None, "--parallel", min=1, help="Trials queued or running at once [2]."),
    ),
    (
        "metric",
        str | None,
        typer.Option(
            None, "--metric", help="What to optimize: val_accuracy (default), val_loss, test_accuracy..."
        ),
    ),
    (
        "direction",
        str | None,
        typer.Option(None, "--direction", help="maximize or minimize (default: minimize for a loss)."),
    ),
    (
        "prune",
        str | None,
        typer.Option(
            None,
            "--prune",
            help="Stop poor trials at an epoch's end: asha (default), hyperband, median, none.",
        ),
    ),
    ("sampler", str | None, typer.Option(None, "--sampler", help="tpe (default), random or grid.")),
    (
        "enqueue",
        list[str],
        typer.Option(
            [],
            "--enqueue",
            help="Known-good values to try first, after trial 0 (the model's recipe): NAME=VALUE;NAME=VALUE.",
        ),
    ),
    (
        "queue",
        str | None,
        typer.Option(None, "--queue", help="Queue of the trials (default: from --device)."),
    ),
    ("priority", int, typer.Option(0, "--priority", min=0, max=9, help="0 (normal) to 9 (first).")),
    (
        "wait",
        bool,
        typer.Option(False, "--wait", help="Stay until the sweep ends, with a progress bar of trials."),
    ),
    ("as_json", bool, typer.Option(False, "--json", help="Print the sweep as one JSON object.")),
]
_SETTINGS = ("trials", "parallel", "metric", "direction", "prune", "sampler")


def _optional(parameter: inspect.Parameter) -> inspect.Parameter:
    """A train option that is required by `submit train` may come from `--config` here."""
    option = parameter.default
    if getattr(option, "default", None) is not ...:
        return parameter
    option = copy.copy(option)
    option.default = None
    option.show_default = False
    return parameter.replace(default=option, annotation=parameter.annotation | None)


def sweep_command(ctx: typer.Context, **options: Any) -> None:
    """Search train options across every worker (an Optuna study in cnnq's database); trial 0 is the
    model's recipe. `cnnq sweep show SWEEP` lists the trials."""
    if ctx.invoked_subcommand is not None:
        return
    from cnnq.sweeps.params import build_sweep, parse_param, parse_values, read_config

    sweep_keys = {name for name, _, _ in _SWEEP_OPTIONS}
    cli_train = {  # the options given, not their defaults: those leave room for --config and --param
        key: value
        for key, value in options.items()
        if key not in sweep_keys and value is not None and _given(ctx, key)
    }
    config_settings, config_train = read_config(options["config"]) if options["config"] else ({}, {})
    for key in ("data_root", "weights"):
        if config_train.get(key) is not None:
            config_train[key] = Path(str(config_train[key]))
    given = {**config_train, **cli_train}
    params = {p.name: p for p in config_settings.get("params", [])}
    params |= {p.name: p for p in map(parse_param, options["param"])}
    recipe = dict(given)  # trial 0: a searched model or dataset left out is its first choice
    for name in ("model", "dataset"):
        if name not in recipe and name in params and params[name].choices:
            recipe[name] = params[name].choices[0]
    base = build_spec(TrainSpec, recipe)
    dumped = base.model_dump(mode="json")
    train = {key: dumped[key] for key in (*given, "data_root")}
    enqueue = [*config_settings.get("enqueue", []), *map(parse_values, options["enqueue"])]
    settings = {
        key: options[key] if options[key] is not None else config_settings.get(key) for key in _SETTINGS
    }
    spec = build_sweep(base, train, list(params.values()), enqueue, settings)
    sweep_id = _record(spec, options["queue"], options["priority"])
    if options["wait"]:
        code = wait_for_sweep(sweep_id, as_json=options["as_json"])
        if code:
            raise typer.Exit(code)
        return
    if options["as_json"]:
        print_json(_summary(sweep_id).as_dict())
        return
    console.print(
        f"queued {sweep_id}: {spec.trials} trials of {base.model} on {base.dataset}, "
        f"{spec.parallel} at a time (trial 0: the recipe); follow it with `cnnq sweep show {sweep_id}` "
        f"or `cnnq wait {sweep_id}`",
        highlight=False,
    )


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def _record(spec: Any, queue: str | None, priority: int) -> str:
    from cnnq.db.migrate import upgrade_database
    from cnnq.db.outage import refused_while_out
    from cnnq.sweeps.submit import submit_sweep

    with refused_while_out():
        upgrade_database()
    return submit_sweep(spec, queue, priority)


def _summary(sweep_id: str) -> Any:
    from cnnq.db.jobs import JobNotFound, find_job
    from cnnq.db.session import session_scope
    from cnnq.sweeps.report import summarize

    with session_scope() as session:
        try:
            job = find_job(session, sweep_id)
        except JobNotFound as error:
            raise UserError(str(error)) from None
        if job.kind != SWEEP_KIND:
            raise UserError(
                f"{job.id} is a {job.kind} job, not a sweep; `cnnq jobs --kind sweep` lists sweeps"
            )
        return summarize(session, job)


def show_command(
    sweep_id: str = typer.Argument(..., help="Sweep id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the sweep and its trials as JSON."),
) -> None:
    """A sweep's trials, best first, with their values, metric and epochs; pruning and the time it saved."""
    summary = _summary(sweep_id)
    if as_json:
        print_json(summary.as_dict())
    else:
        print_summary(summary)


def best_command(
    sweep_id: str = typer.Argument(..., help="Sweep id (or a unique prefix)."),
    as_json: bool = typer.Option(False, "--json", help="Print the best trial as JSON."),
) -> None:
    """The best trial so far: its job (for `--model-from`), values and metric; exit 1 if none succeeded."""
    from cnnq.sweeps.report import values_text

    summary = _summary(sweep_id)
    best = summary.best
    if best is None:
        err_console.print(
            f"{summary.sweep_id} has no succeeded trial yet ({summary.message})", highlight=False
        )
        raise typer.Exit(1)
    if as_json:
        print_json({"sweep": summary.sweep_id, "metric": summary.spec.metric, **_trial_object(best)})
        return
    console.print(
        f"trial {best.number} ({best.job_id}): {summary.spec.metric} {best.value:.4f}; "
        f"{values_text(best.values)}\nuse its model with --model-from {best.job_id}",
        highlight=False,
    )


def _trial_object(trial: Any) -> dict[str, Any]:
    from dataclasses import asdict

    obj = asdict(trial)
    obj["trial"] = obj.pop("number")
    obj["job"] = obj.pop("job_id")
    return obj


def print_summary(summary: Any) -> None:
    """`cnnq sweep show` for people."""
    from rich.table import Table

    from cnnq.sweeps.report import SweepSummary

    assert isinstance(summary, SweepSummary)
    spec = summary.spec
    console.print(
        f"[bold]{summary.sweep_id}[/] {summary.status}: {summary.message or ''}\n"
        f"{spec.sampler} sampler, {spec.prune} pruning, {spec.direction} {spec.metric}, "
        f"{spec.parallel} at a time",
        highlight=False,
    )
    table = Table()
    for header in ("TRIAL", "JOB", "STATUS", *(p.name for p in spec.params), spec.metric.upper(), "EPOCHS"):
        table.add_column(header, no_wrap=header in ("TRIAL", "JOB", "STATUS"), overflow="fold")
    best = summary.best
    for trial in summary.trials:
        mark = " *" if best is not None and trial.number == best.number else ""
        epochs = f"{trial.epochs}/{trial.planned_epochs}" + (" pruned" if trial.pruned_at else "")
        table.add_row(
            f"{trial.number}{mark}",
            trial.job_id,
            trial.status,
            *(_value_text(trial.values.get(p.name)) for p in spec.params),
            "" if trial.value is None else f"{trial.value:.4f}",
            epochs,
        )
    console.print(table if summary.trials else "no trials yet")
    if best is not None:
        recipe = summary.recipe
        against = ""
        if recipe is not None and recipe.value is not None and recipe.number != best.number:
            against = f" (trial 0, the recipe: {recipe.value:.4f})"
        console.print(f"best: trial {best.number} ({best.job_id}), {spec.metric} {best.value:.4f}{against}")
    pruned = summary.pruned_at()
    if pruned:
        where = ", ".join(f"{n} after epoch {epoch}" for epoch, n in pruned.items())
        console.print(f"pruned: {sum(pruned.values())} of {len(summary.trials)} trials ({where})")
        full = summary.full_seconds
        share = f" ({summary.saved_seconds / full:.0%})" if full else ""
        console.print(
            f"time saved: {_seconds_text(summary.saved_seconds)} of the {_seconds_text(full)} of epochs that "
            f"running every trial to its end would take{share}"
        )


def wait_for_sweep(sweep_id: str, *, as_json: bool = False) -> int:
    """Follow a sweep with a progress bar of its trials until it ends; 0 when it SUCCEEDED, else 1."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    shown = console if not as_json else err_console
    live = shown.is_terminal
    summary = _summary(sweep_id)
    progress = Progress(
        TextColumn(summary.sweep_id),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("trials {task.description}"),
        TimeElapsedColumn(),
        console=shown,
        disable=not live,
    )
    last_line = ""
    with progress:
        bar = progress.add_task("", total=summary.spec.trials)
        while True:
            summary = _summary(sweep_id)
            best = summary.best
            note = f"{summary.counts.get('PRUNED', 0)} pruned" + (
                f", best {best.value:.4f} (trial {best.number})" if best is not None else ""
            )
            if live:
                progress.update(bar, completed=summary.ended, description=note)
            else:
                ended = f"{summary.ended}/{summary.spec.trials}"
                line = f"{summary.sweep_id} {summary.status} {ended} trials, {note}"
                if line != last_line:
                    shown.print(line, highlight=False, markup=False, soft_wrap=True)
                    last_line = line
            if summary.status in ("SUCCEEDED", "FAILED", "CANCELLED"):
                break
            time.sleep(_POLL_SECONDS)
    if as_json:
        print_json(summary.as_dict())
    else:
        print_summary(summary)
    return 0 if summary.status == "SUCCEEDED" else 1


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _seconds_text(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Hyperparameter search across every worker; `show` and `best` read a sweep.",
        no_args_is_help=True,
        invoke_without_command=True,
    )
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *(_optional(p) for p in train_parameters()),
        *(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
            for name, annotation, option in _SWEEP_OPTIONS
        ),
    ]

    def command(ctx: typer.Context, **options: Any) -> None:
        sweep_command(ctx, **options)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    command.__doc__ = sweep_command.__doc__
    group.callback()(command)
    group.command("show")(show_command)
    group.command("best")(best_command)
    app.add_typer(group, name="sweep")
