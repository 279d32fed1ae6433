"""`cnnq data fetch|info`: download the public sets, and see what cnnq makes of a data root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cnnq.cli.output import console, print_json
from cnnq.errors import UserError
from cnnq.settings import get_settings

data_app = typer.Typer(
    help="Datasets: fetch MNIST or CIFAR-10, inspect any supported set.", no_args_is_help=True
)

_DATA_ROOT_HELP = "Where the dataset lives (default: CNNQ_DATA_ROOT, else ~/.cnnq/data)."


def _root(data_root: Path | None) -> Path:
    return (data_root or get_settings().data_dir).expanduser().absolute()


@data_app.command("fetch")
def fetch_command(
    name: str = typer.Argument(..., help="mnist or cifar10 (folder and xray sets are copied in by hand)."),
    data_root: Path | None = typer.Option(None, "--data-root", help=_DATA_ROOT_HELP),
) -> None:
    """Download a public dataset with torchvision (checksummed) into the data root."""
    from cnnq.data.registry import fetch_dataset

    folder = fetch_dataset(name, _root(data_root))
    console.print(f"{name} is in {folder}", highlight=False)


@data_app.command("info")
def info_command(
    dataset: str = typer.Argument(..., help="mnist, cifar10, folder or xray."),
    data_root: Path | None = typer.Option(None, "--data-root", help=_DATA_ROOT_HELP),
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        min=8,
        max=1024,
        help="Square size to resize to (default: the dataset's; a folder's from its images).",
    ),
    channels: int | None = typer.Option(
        None, "--channels", min=1, max=3, help="1 or 3 (default: the dataset's; a folder's from its images)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="The model to train: a size from the data is at least its smallest input."
    ),
    val_split: float = typer.Option(
        0.1, "--val-split", help="Fraction of training data held out for validation."
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only this many images per split."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the limit and the validation carve."),
    as_json: bool = typer.Option(False, "--json", help="Print as one JSON object."),
) -> None:
    """Index a dataset as a training job would: classes, split sizes, class counts, skipped files, and
    for a folder or X-ray set what its sampled images are and the input chosen from them."""
    import torch

    from cnnq.data.registry import DataRequest, load_dataset
    from cnnq.models.catalog import model_info

    if channels == 2:
        raise UserError("--channels: give 1 (grayscale) or 3 (RGB), not 2")
    request = DataRequest(
        dataset=dataset,
        root=_root(data_root),
        image_size=image_size,
        val_split=val_split,
        limit=limit,
        seed=seed,
        num_workers=0,
        channels=channels,
        model=model_info(model).name if model else None,
    )
    bundle = load_dataset(request, torch.device("cpu"))
    summary: dict[str, Any] = {
        "dataset": dataset,
        "data_root": str(request.root),
        "classes": bundle.classes,
        "in_channels": bundle.in_channels,
        "image_size": bundle.image_size,
        "mean": list(bundle.mean),
        "std": list(bundle.std),
        "class_counts": bundle.class_counts,
        "splits": {
            "train": bundle.train.num_samples,
            "val": bundle.val.num_samples,
            "test": bundle.test.num_samples if bundle.test is not None else None,
        },
        "skipped": [{"path": path, "reason": reason} for path, reason in bundle.skipped],
        "notes": bundle.notes,
        "held": "memory" if bundle.held_in_memory else "streamed",
        "sampled": bundle.survey,
    }
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"{dataset} at {request.root}", show_header=False)
    for key in ("in_channels", "image_size", "mean", "std", "held"):
        table.add_row(key, str(summary[key]))
    table.add_row(
        "splits", ", ".join(f"{k} {v if v is not None else '-'}" for k, v in summary["splits"].items())
    )
    table.add_row(
        "train class counts",
        ", ".join(f"{c} {n}" for c, n in zip(bundle.classes, bundle.class_counts, strict=True)),
    )
    for note in bundle.notes:
        table.add_row("note", note)
    for path, reason in bundle.skipped:
        table.add_row("skipped", f"{path}: {reason}")
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
