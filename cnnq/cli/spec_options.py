"""The `train`, `eval` and `infer` commands, built once from the spec models.

`cnnq submit` and `cnnq run` take exactly the same options because both are made here: each
spec field becomes an option (`batch_size` -> `--batch-size`) with the field's description as help,
and pydantic does the validation.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel, ValidationError

from cnnq.errors import UserError, validation_message
from cnnq.file_digest import file_sha256
from cnnq.jobs.spec import EvalSpec, InferSpec, TrainSpec
from cnnq.models.recipes import RECIPE_FIELDS
from cnnq.settings import get_settings

AnySpec = TrainSpec | EvalSpec | InferSpec


@dataclass(frozen=True)
class Placement:
    """Where and how a job is carried (options that are not part of the spec)."""

    queue: str | None
    priority: int
    wait: bool
    as_json: bool


Executor = Callable[[AnySpec, Placement], None]

# Filled in by cnnq, not by the user.
_INTERNAL = {"kind", "model_file", "model_file_sha256", "inputs"}
# Required in the spec, but the CLI fills a default from the settings.
_DEFAULTED = {"data_root"}

_SHORT_HELP = {
    TrainSpec: "Train a model on a dataset.",
    EvalSpec: "Evaluate a trained model (accuracy, per-class report, confusion matrix, ROC for two classes).",
    InferSpec: "Score images (a file, folder, glob or list file) with a trained model.",
}

_PLACEMENT = [
    inspect.Parameter(
        "queue",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(None, "--queue", help="Queue to send the job to (default: from --device)."),
        annotation=str | None,
    ),
    inspect.Parameter(
        "priority",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(0, "--priority", min=0, max=9, help="0 (normal) to 9 (first)."),
        annotation=int,
    ),
    inspect.Parameter(
        "wait",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False, "--wait", help="Stay until the job ends, showing its progress."),
        annotation=bool,
    ),
    inspect.Parameter(
        "as_json",
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(False, "--json", help="Print the job as one JSON object."),
        annotation=bool,
    ),
]


def _cli_annotation(annotation: Any) -> tuple[Any, str]:
    """The type typer should parse for a spec field, and a note on allowed values for the help."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _cli_annotation(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner, note = _cli_annotation(args[0]) if len(args) == 1 else (str, "")
        return inner | None, note
    if origin is Literal:
        return str, "one of: " + ", ".join(str(v) for v in typing.get_args(annotation))
    if annotation in (int, float, bool, str, Path):
        return annotation, ""
    return str, ""


def _parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    params = []
    fields = sorted(model.model_fields.items(), key=lambda item: not item[1].is_required())
    for name, field in fields:
        if name in _INTERNAL:
            continue
        annotation, note = _cli_annotation(field.annotation)
        help_text = " ".join(p for p in (field.description or "", f"({note})" if note else "") if p)
        default = ... if field.is_required() and name not in _DEFAULTED else field.default
        if name in _DEFAULTED:
            default, annotation = None, annotation | None
        if model is TrainSpec and name in RECIPE_FIELDS:
            base = "none" if field.default is None else field.default
            help_text += f" (default: the model's recipe, `cnnq models` shows it; else {base})"
            default, annotation = None, annotation | None
        flag = f"--{name.replace('_', '-')}"
        decls = [flag] if annotation not in (bool, bool | None) else [f"{flag}/--no-{name.replace('_', '-')}"]
        option = typer.Option(default, *decls, help=help_text, show_default=default is not ...)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    return params


def train_parameters() -> list[inspect.Parameter]:
    """The options of `train` (`cnnq sweep` takes them too, each a fixed option of every trial)."""
    return _parameters(TrainSpec)


def resolve_model_from(value: str) -> Path:
    """`--model-from`: a training job's id (or unique prefix), or a model file written by one."""
    path = Path(value).expanduser()
    if path.is_file():
        return path.absolute()
    from cnnq.db.jobs import JobNotFound, find_job
    from cnnq.db.records import model_file_of
    from cnnq.db.session import connection_scope

    try:
        with connection_scope() as connection:
            return model_file_of(connection, find_job(connection, value))
    except JobNotFound as error:
        raise UserError(f"--model-from: {error}") from None


def build_spec(model: type[AnySpec], options: dict[str, Any]) -> AnySpec:
    """Validate the user's options into a spec, or refuse with one line."""
    options = {k: v for k, v in options.items() if v is not None or k in ("threshold",)}
    if model is TrainSpec and options.get("data_root") is None:
        options["data_root"] = get_settings().data_dir
    for key in ("data_root", "weights", "output"):
        if isinstance(options.get(key), Path):
            options[key] = options[key].expanduser().absolute()
    if model is not TrainSpec:
        options["model_file"] = resolve_model_from(options["model_from"])
        options["model_file_sha256"] = file_sha256(options["model_file"])  # the job loads these bytes only
    try:
        spec = model.model_validate(options)
    except ValidationError as error:
        raise UserError(validation_message(error)) from None
    from cnnq.jobs.validate import validate_spec

    validate_spec(spec)
    return spec


def _command(model: type[AnySpec], executor: Executor) -> Callable[..., None]:
    def command(**kwargs: Any) -> None:
        placement = Placement(
            queue=kwargs.pop("queue"),
            priority=kwargs.pop("priority"),
            wait=kwargs.pop("wait"),
            as_json=kwargs.pop("as_json"),
        )
        executor(build_spec(model, kwargs), placement)

    params = _parameters(model) + _PLACEMENT
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    command.__doc__ = _SHORT_HELP[model]
    return command


def spec_commands(executor: Executor, help_text: str) -> typer.Typer:
    """A typer group with `train`, `eval` and `infer`, each handing its spec to `executor`."""
    group = typer.Typer(help=help_text, no_args_is_help=True)
    for name, model in (("train", TrainSpec), ("eval", EvalSpec), ("infer", InferSpec)):
        group.command(name)(_command(model, executor))
    return group
