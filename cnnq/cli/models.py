"""`cnnq models`: the model zoo, and one model described layer by layer."""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cnnq.cli.output import console, print_json
from cnnq.errors import UserError

if TYPE_CHECKING:  # describing a model imports torch: only `cnnq models describe` pays for it
    from cnnq.models.catalog import ModelInfo
    from cnnq.models.describe import ModelSummary

_INPUT = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def parse_input(text: str) -> tuple[int, int, int]:
    """`--input CxHxW` (square images only, as every cnnq model takes)."""
    match = _INPUT.match(text.strip().lower())
    if match is None:
        raise UserError(f"--input: expected CHANNELSxHEIGHTxWIDTH such as 3x224x224, got {text!r}")
    channels, height, width = (int(group) for group in match.groups())
    if channels < 1 or height < 1:
        raise UserError(f"--input: channels and sides must be at least 1, got {text!r}")
    if height != width:
        raise UserError(f"--input: cnnq models take square images; give equal height and width, not {text!r}")
    return channels, height, width


def _weights_file(info: ModelInfo) -> str | None:
    from cnnq.models.weights import cached_weights_path

    return str(cached_weights_path(info.name)) if info.pretrained else None


def _info_object(info: ModelInfo) -> dict[str, object]:
    from cnnq.data.catalog import DATASETS
    from cnnq.models.catalog import ALIASES
    from cnnq.models.recipes import recipes_by_data
    from cnnq.models.weights import cached_weights_path

    weights_file = _weights_file(info)
    return {
        "name": info.name,
        "aliases": [alias for alias, target in ALIASES.items() if target == info.name],
        "family": info.family,
        "description": info.description,
        "pretrained": info.pretrained,
        "weights_file": weights_file,
        "weights_cached": weights_file is not None and cached_weights_path(info.name).is_file(),
        "default_input": list(info.default_input),
        "default_classes": info.default_classes,
        "min_size": info.min_size,
        "recipes": recipes_by_data(info.name, list(DATASETS)),
    }


def _recipes_text(recipes: dict[str, dict[str, object]]) -> str:
    """`mnist: --optimizer adam --augment ...; cifar10, folder, xray: --optimizer adam` (base: none)."""
    by_options: dict[str, list[str]] = {}
    for dataset, recipe in recipes.items():
        options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in recipe.items()) or "base"
        by_options.setdefault(options, []).append(dataset)
    if len(by_options) == 1:
        return next(iter(by_options))
    return "; ".join(f"{', '.join(datasets)}: {options}" for options, datasets in by_options.items())


def list_models(as_json: bool) -> None:
    from cnnq.models.catalog import model_info, model_names

    objects = [_info_object(model_info(name)) for name in model_names()]
    if as_json:
        print_json(objects)
        return
    table = Table(title="cnnq models")
    for column in ("name", "family", "description", "pretrained", "default input", "recipe"):
        table.add_column(column, overflow="fold")
    for obj in objects:
        aliases = ", ".join(obj["aliases"])  # type: ignore[arg-type]
        name = f"{obj['name']} ({aliases})" if aliases else str(obj["name"])
        pretrained = ("y (cached)" if obj["weights_cached"] else "y") if obj["pretrained"] else "n"
        default_input = "x".join(str(n) for n in obj["default_input"])  # type: ignore[union-attr]
        recipe = _recipes_text(obj["recipes"])  # type: ignore[arg-type]
        table.add_row(name, str(obj["family"]), str(obj["description"]), pretrained, default_input, recipe)
    console.print(table)
    console.print(
        "recipe: the train options a model gets on each dataset when they are not given (base: sgd, no "
        "augmentation); a folder of your own images gets no augmentation unless you ask (--augment).\n"
        "--pretrained loads torchvision's ImageNet weights from its cache (see `cnnq models --json` for each "
        "file's path) or from --weights FILE; nothing is downloaded.",
        highlight=False,
    )


def summary_object(summary: ModelSummary) -> dict[str, object]:
    return {
        **{key: value for key, value in asdict(summary).items() if key != "layers"},
        "flops": summary.flops,
        "counting": "MACs: multiply-accumulates of conv and linear layers for one image; FLOPs = 2 x MACs",
        "layers": [asdict(row) for row in summary.layers],
    }


def _count(value: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(value)


def render_summary(summary: ModelSummary) -> None:
    shape = "x".join(str(n) for n in summary.input_shape)
    table = Table(title=f"{summary.model}, input {shape}, {summary.num_classes} classes ({summary.variant})")
    for column, justify in (
        ("layer", "left"),
        ("type", "left"),
        ("output", "left"),
        ("params", "right"),
        ("RF", "right"),
        ("MACs", "right"),
    ):
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in summary.layers:
        table.add_row(
            row.name,
            row.kind,
            "x".join(str(n) for n in row.output_shape),
            f"{row.params:,}" if row.params else "",
            "all" if row.receptive_field is None else str(row.receptive_field),
            _count(row.macs) if row.macs else "",
        )
    console.print(table)
    console.print(
        f"parameters: {summary.total_params:,} ({summary.trainable_params:,} trainable)\n"
        f"MACs: {summary.macs:,} ({_count(summary.macs)}) = multiply-accumulates of conv and linear layers "
        f"for one image\nFLOPs: {summary.flops:,} ({_count(summary.flops)}) = 2 x MACs\n"
        "RF: receptive field in input pixels (all: the whole image)",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    """Add `cnnq models` (lists) and `cnnq models describe NAME` to the root app."""
    group = typer.Typer(help="The model zoo: list the models, or describe one layer by layer.")

    @group.callback(invoke_without_command=True)
    def models(
        ctx: typer.Context,
        as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
    ) -> None:
        """List the models: name, family, description, pretrained weights, default input."""
        if ctx.invoked_subcommand is None:
            list_models(as_json)

    @group.command("describe")
    def describe(
        name: str = typer.Argument(..., metavar="NAME", help="A model from `cnnq models`."),
        input_shape: str | None = typer.Option(
            None, "--input", help="CHANNELSxHEIGHTxWIDTH, e.g. 1x28x28 (default: the model's default input)."
        ),
        classes: int | None = typer.Option(
            None, "--classes", min=1, help="Number of classes (default: 10, or 1000 for ImageNet nets)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Each layer's output shape, parameters and receptive field; totals of parameters, MACs and FLOPs."""
        from cnnq.models.catalog import model_info
        from cnnq.models.describe import describe_model

        info = model_info(name)
        channels, side, _ = parse_input(input_shape) if input_shape else info.default_input
        if side < info.min_size:
            raise UserError(
                f"--input: {info.name} needs images of at least {info.min_size}x{info.min_size}, "
                f"not {side}x{side}"
            )
        summary = describe_model(
            info.name, in_channels=channels, image_size=side, num_classes=classes or info.default_classes
        )
        if as_json:
            print_json(summary_object(summary))
        else:
            render_summary(summary)

    app.add_typer(group, name="models")
