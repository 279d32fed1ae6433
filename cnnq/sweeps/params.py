"""Reading a sweep's search space and settings from `--param`, `--enqueue` and `--config`, and refusing what
cannot run, at submit, with one line each: an unknown parameter, a bad distribution, an empty range, a value
the option does not take, a metric that is not reported.

`--param NAME=DISTRIBUTION:ARGUMENTS`, NAME any train option (`batch_size` or `batch-size`):

| distribution | example | values |
|---|---|---|
| `uniform:LOW:HIGH` | `momentum=uniform:0.8:0.99` | floats |
| `loguniform:LOW:HIGH` | `lr=loguniform:1e-4:1e-1` | floats, on a log scale |
| `int:LOW:HIGH` | `epochs=int:2:8` | whole numbers |
| `logint:LOW:HIGH` | `batch_size=logint:16:256` | whole numbers, on a log scale |
| `choice:A,B,...` | `optimizer=choice:adam,sgd` | the values listed (`A|B` when a value holds a comma) |

Torch-free and Optuna-free: `cnnq sweep` runs it before anything is recorded.
"""

from __future__ import annotations

import math
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cnnq.errors import UserError, validation_message
from cnnq.jobs.hyperparameters import effective_hyperparameters
from cnnq.jobs.spec import TrainSpec
from cnnq.sweeps.spec import (
    EPOCH_METRICS,
    FINAL_METRICS,
    Param,
    SweepSpec,
    default_direction,
)

TUNABLE = tuple(name for name in TrainSpec.model_fields if name != "kind")
"""Every train option can be a parameter."""

SWEEP_KEYS = ("params", "enqueue", "trials", "parallel", "metric", "direction", "prune", "sampler")
"""What a `--config` file may set besides train options."""

DEFAULTS: dict[str, Any] = {
    "trials": 20,
    "parallel": 2,
    "metric": "val_accuracy",
    "prune": "asha",
    "sampler": "tpe",
}

GRID_MAX_POINTS = 10_000

_CHECKED_AT_SUBMIT = {"model", "dataset", "data_root", "image_size", "augment", "pretrained", "weights"}
"""Parameters whose every choice is checked against the model zoo and the data, as `submit train` checks
its options (a choice of a model that does not fit the data is refused, not failed later)."""

_USAGE = (
    "write NAME=DISTRIBUTION:ARGUMENTS: uniform:LOW:HIGH, loguniform:LOW:HIGH, int:LOW:HIGH, "
    "logint:LOW:HIGH or choice:A,B,..."
)


def parse_param(text: str) -> Param:
    """One `--param`, checked against its option's type (not yet against the other options)."""
    name, sep, rest = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise UserError(f"--param {text!r}: {_USAGE}")
    if name not in TUNABLE:
        raise UserError(f"--param {name}: not a train option; one of {', '.join(TUNABLE)}")
    distribution, _, arguments = rest.strip().partition(":")
    if distribution == "choice":
        items = [item.strip() for item in arguments.split("|" if "|" in arguments else ",")]
        return choice_param(name, items, f"--param {name}")
    if distribution not in ("uniform", "loguniform", "int", "logint"):
        raise UserError(f"--param {name}: unknown distribution {distribution!r}; {_USAGE}")
    bounds = arguments.split(":")
    if len(bounds) != 2:
        raise UserError(f"--param {name}={rest}: give the range as {distribution}:LOW:HIGH")
    return range_param(name, distribution, bounds[0], bounds[1])


def choice_param(name: str, items: list[Any], where: str) -> Param:
    if not items or any(item == "" for item in items):
        raise UserError(f"{where}: list at least one value after choice:, separated by commas")
    choices = [coerce(name, item, where) for item in items]
    if len({repr(c) for c in choices}) < len(choices):
        raise UserError(f"{where}: a value is listed twice")
    return Param(name=name, distribution="choice", choices=choices)


def range_param(name: str, distribution: str, low_text: Any, high_text: Any) -> Param:
    where = f"--param {name}={distribution}:{low_text}:{high_text}"
    kind = _numeric_kind(name)
    if kind is None:
        raise UserError(f"{where}: {name} is not a number; list its values with choice:A,B,...")
    whole = distribution in ("int", "logint")
    if kind == "int" and not whole:
        raise UserError(f"{where}: {name} takes whole numbers; use int:LOW:HIGH or logint:LOW:HIGH")
    try:
        low, high = float(low_text), float(high_text)
    except (TypeError, ValueError):
        raise UserError(f"{where}: LOW and HIGH must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UserError(f"{where}: LOW and HIGH must be finite numbers")
    if whole and (low != int(low) or high != int(high)):
        raise UserError(f"{where}: {distribution} takes whole numbers for LOW and HIGH")
    if not low < high:
        raise UserError(f"{where}: the range is empty (LOW {low:g} must be below HIGH {high:g})")
    if distribution.startswith("log") and low <= 0:
        raise UserError(f"{where}: a log scale starts above 0 (LOW is {low:g})")
    return Param(name=name, distribution=distribution, low=low, high=high)  # type: ignore[arg-type]


def parse_values(text: str, where: str = "--enqueue") -> dict[str, Any]:
    """`--enqueue lr=0.01;optimizer=sgd`: parameter values for one trial, each checked as its option."""
    values: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(";")):
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UserError(f"{where} {text!r}: write NAME=VALUE;NAME=VALUE, e.g. lr=0.01;optimizer=sgd")
        if name not in TUNABLE:
            raise UserError(f"{where}: {name} is not a train option")
        values[name] = coerce(name, value.strip(), where)
    return values


def coerce(name: str, value: Any, where: str) -> Any:
    """`value` (text from the command line, or a YAML value) as option `name`'s JSON value."""
    adapter: TypeAdapter[Any] = TypeAdapter(TrainSpec.model_fields[name].annotation)
    try:
        return adapter.dump_python(adapter.validate_python(value), mode="json")
    except ValidationError as error:
        if isinstance(value, str) and value.lower() in ("none", "null") and _takes_none(name):
            return None
        message = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
        raise UserError(f"{where}: {value!r} is not a valid {name}: {message}") from None


def read_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `--config` YAML file: (sweep settings, train options). Its `params` map each name to a
    distribution (`loguniform:1e-4:1e-1`) or a list of choices; its `enqueue` is a list of mappings."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).expanduser().read_text())
    except OSError as error:
        raise UserError(f"--config: cannot read {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise UserError(f"--config: {path} is not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"--config: {path} must hold a mapping of options (params:, trials:, model:, ...)")
    sweep: dict[str, Any] = {}
    train: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in SWEEP_KEYS:
            sweep[name] = value
        elif name in TUNABLE:
            train[name] = value
        else:
            raise UserError(
                f"--config: unknown key {key!r} in {path}; give train options and {', '.join(SWEEP_KEYS)}"
            )
    if "params" in sweep:
        sweep["params"] = _config_params(sweep["params"])
    if "enqueue" in sweep:
        sweep["enqueue"] = _config_enqueue(sweep["enqueue"])
    return sweep, train


def _config_params(value: Any) -> list[Param]:
    if isinstance(value, list):
        return [parse_param(str(item)) for item in value]
    if not isinstance(value, dict):
        raise UserError("--config: params must map each name to a distribution or a list of choices")
    params = []
    for key, space in value.items():
        name = str(key).replace("-", "_")
        if isinstance(space, list):
            if name not in TUNABLE:
                raise UserError(f"--config: params: {name} is not a train option")
            params.append(choice_param(name, ["none" if v is None else v for v in space], f"params: {name}"))
        else:
            params.append(parse_param(f"{name}={space}"))
    return params


def _config_enqueue(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise UserError("--config: enqueue must be a list of mappings of parameter values")
    return [
        {
            str(k).replace("-", "_"): coerce(str(k).replace("-", "_"), v, "--config enqueue")
            for k, v in item.items()
        }
        for item in value
    ]


def build_sweep(
    base: TrainSpec,
    train: dict[str, Any],
    params: list[Param],
    enqueue: list[dict[str, Any]],
    settings: dict[str, Any],
) -> SweepSpec:
    """The sweep, checked whole: `base` is the validated spec of the fixed options `train` (the recipe's
    trial), `settings` the sweep's own (trials, parallel, metric, direction, prune, sampler)."""
    given_trials = settings.get("trials")
    settings = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    if not params:
        raise UserError("give at least one --param NAME=DISTRIBUTION:ARGUMENTS (or params: in --config)")
    names = [p.name for p in params]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"--param {name}: given twice")
        if name in train:
            raise UserError(
                f"--param {name}: also given as a fixed option --{name.replace('_', '-')}; give one"
            )
    for param in params:
        _check_against_base(base, train, param)
    metric = settings["metric"]
    if metric not in EPOCH_METRICS + FINAL_METRICS:
        raise UserError(
            f"--metric: {metric!r} is not reported by training; "
            f"one of {', '.join(EPOCH_METRICS + FINAL_METRICS)}"
        )
    if settings["prune"] != "none" and metric not in EPOCH_METRICS:
        raise UserError(
            f"--metric {metric} is reported once, at the end: pruning needs one of "
            f"{', '.join(EPOCH_METRICS)} (or --prune none)"
        )
    trial_values = [_resolved(base, params)]
    for index, values in enumerate(enqueue, start=1):
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise UserError(f"--enqueue: {unknown[0]} is not a --param of this sweep")
        spec = _validated({**train, **values}, f"--enqueue #{index}")
        trial_values.append(_resolved(spec, params))
    trials = settings["trials"]
    if settings["sampler"] == "grid":
        points = grid_points(params)
        trials = given_trials or points + len(trial_values)
        if trials > points + len(trial_values):
            raise UserError(
                f"--trials {trials}: the grid has {points} points, plus {len(trial_values)} enqueued "
                f"(trial 0 is the recipe); give at most {points + len(trial_values)}"
            )
    try:
        return SweepSpec(
            train=train,
            params=params,
            trials=trials,
            parallel=settings["parallel"],
            metric=metric,
            direction=settings.get("direction") or default_direction(metric),
            prune=settings["prune"],
            sampler=settings["sampler"],
            seed=base.seed,
            enqueue=trial_values,
        )
    except ValidationError as error:
        raise UserError(validation_message(error)) from None


def grid_points(params: list[Param]) -> int:
    """How many points `--sampler grid` visits; refuses a space it cannot list."""
    points = 1
    for param in params:
        if param.choices is not None:
            points *= len(param.choices)
        elif param.distribution == "int":
            assert param.low is not None and param.high is not None
            points *= int(param.high - param.low) + 1
        else:
            raise UserError(
                f"--sampler grid: {param.text} is a continuous range; list values with choice: or use int:"
            )
    if points > GRID_MAX_POINTS:
        raise UserError(f"--sampler grid: {points} points is too many (at most {GRID_MAX_POINTS}); use tpe")
    return points


def grid_values(param: Param) -> list[Any]:
    if param.choices is not None:
        return list(param.choices)
    assert param.low is not None and param.high is not None
    return list(range(int(param.low), int(param.high) + 1))


def _check_against_base(base: TrainSpec, train: dict[str, Any], param: Param) -> None:
    """Each choice, and each end of a range, makes a valid trial with the fixed options."""
    points = (
        param.choices if param.choices is not None else [_whole(param, param.low), _whole(param, param.high)]
    )
    for value in points:
        try:
            spec = TrainSpec.model_validate({**train, param.name: value})
        except ValidationError as error:
            message = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
            raise UserError(f"--param {param.text}: {param.name}={value} is refused: {message}") from None
        if param.choices is not None and param.name in _CHECKED_AT_SUBMIT:
            from cnnq.jobs.validate import validate_spec

            try:
                validate_spec(spec)
            except UserError as error:
                raise UserError(f"--param {param.name}={value}: {error}") from None


def _validated(options: dict[str, Any], where: str) -> TrainSpec:
    try:
        return TrainSpec.model_validate(options)
    except ValidationError as error:
        raise UserError(f"{where}: {validation_message(error)}") from None


def _resolved(spec: TrainSpec, params: list[Param]) -> dict[str, Any]:
    """The value `spec` trains with for each parameter, defaults resolved (lr left out is the optimizer's
    default lr): an enqueued trial's values, the recipe's for trial 0."""
    effective = effective_hyperparameters(spec)
    values = {}
    for param in params:
        value = getattr(spec, param.name)
        if value is None and param.name in ("lr", "weight_decay", "augment"):
            value = effective[param.name]
        values[param.name] = TypeAdapter(Any).dump_python(value, mode="json")
    return values


def _whole(param: Param, value: float | None) -> Any:
    return int(value) if param.whole and value is not None else value


def _numeric_kind(name: str) -> str | None:
    """`int` or `float` for a numeric option (None allowed or not); None for any other."""
    kinds = {a for a in _arguments(TrainSpec.model_fields[name].annotation) if a in (int, float)}
    return "float" if float in kinds else ("int" if int in kinds else None)


def _takes_none(name: str) -> bool:
    return type(None) in _arguments(TrainSpec.model_fields[name].annotation)


def _arguments(annotation: Any) -> set[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _arguments(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return {a for arg in typing.get_args(annotation) for a in _arguments(arg)}
    return {annotation}
