"""`cnnq results` (export an inference job's predictions) and `cnnq explain` (a Grad-CAM heatmap)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import typer

from cnnq.atomic_file import atomic_file
from cnnq.cli.output import console, print_json
from cnnq.errors import UserError
from cnnq.jobs.prediction_table import write_csv

_PARQUET_BATCH = 5000


class ExportFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


class OnlyRows(StrEnum):
    POSITIVE = "positive"
    FLAGGED = "flagged"


def _write_parquet(records: Iterable[dict[str, Any]], columns: list[str], stream: IO[bytes]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = {"path", "label", "error"}
    schema = pa.schema([(name, pa.string() if name in text else pa.float64()) for name in columns])
    count = 0
    with pq.ParquetWriter(stream, schema) as writer:
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(record)
            if len(batch) == _PARQUET_BATCH:
                writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_batch(pa.RecordBatch.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def results(
    job: str = typer.Argument(
        ..., help="An inference job (bulk parent, shard, or single job): id or prefix."
    ),
    format: ExportFormat = typer.Option(ExportFormat.CSV, "--format", help="csv or parquet."),
    only: OnlyRows | None = typer.Option(
        None, "--only", help="positive (scored as the positive class) or flagged (unreadable inputs)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write to this file (default: standard output; csv only)."
    ),
) -> None:
    """Export an inference job's predictions: one row per input with path, label, probability, error."""
    from cnnq.db.jobs import JobNotFound, find_job
    from cnnq.db.results import prediction_records, prediction_scope
    from cnnq.db.session import session_scope
    from cnnq.jobs.prediction_table import prediction_columns

    if format == ExportFormat.PARQUET and out is None:
        raise UserError("--format parquet needs --out FILE (parquet is not written to a terminal)")
    with session_scope() as session:
        try:
            scope = prediction_scope(session, find_job(session, job))
        except JobNotFound as error:
            raise UserError(str(error)) from None
        columns = prediction_columns(scope.classes)
        records = prediction_records(session, scope, only.value if only else None)
        write: Callable[[Iterable[dict[str, Any]], list[str], Any], int]
        write = _write_parquet if format == ExportFormat.PARQUET else write_csv
        if out is None:
            write_csv(records, columns, sys.stdout)
            sys.stdout.flush()
            return
        target = out.expanduser()
        with atomic_file(target, "wb" if format == ExportFormat.PARQUET else "w") as file:
            count = write(records, columns, file)
    console.print(f"wrote {count} rows of {scope.job_id} to {target}", highlight=False)


def explain(
    image: Path = typer.Argument(..., help="The image (PNG, JPEG, DICOM...) to explain."),
    model_from: str = typer.Option(
        ..., "--model-from", help="A training job (id or prefix) or its model file."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the heatmap over the image (PNG)."),
    class_name: str | None = typer.Option(
        None, "--class", help="Explain this class (default: the predicted label)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the prediction as one JSON object."),
) -> None:
    """Score one image and write its Grad-CAM heatmap: where the model looked for the label."""
    from cnnq.cli.spec_options import resolve_model_from
    from cnnq.data.decode import ImageDecodeError, ImageTooLarge, load_image

    model_file = resolve_model_from(model_from)
    try:
        picture = load_image(image.expanduser())
    except ImageTooLarge as error:
        raise UserError(error.advice(str(image))) from None
    except ImageDecodeError as error:
        raise UserError(f"{image}: {error.reason}; give a PNG, JPEG or DICOM image") from None
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--out {out}: write the heatmap to a .png or .jpg file")

    from cnnq.jobs.checkpoint import load_model_file
    from cnnq.jobs.device import configure_threads, pick_device
    from cnnq.jobs.gradcam import explain_image, overlay

    configure_threads()
    loaded = load_model_file(model_file, pick_device("auto"))
    explanation = explain_image(loaded, picture, class_name, name=str(image))
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay(picture, explanation.heatmap).save(out)
    report = {
        "image": str(image),
        "label": explanation.label,
        "probability": explanation.score,
        "probabilities": explanation.probabilities,
        "threshold": explanation.threshold,
        "positive_class": explanation.positive_class,
        "explained_class": explanation.explained_class,
        "heatmap": str(out),
    }
    if as_json:
        print_json(report)
        return
    positive = explanation.positive_class
    score_name = f"P({positive})" if positive else "probability"
    threshold = "" if explanation.threshold is None else f", threshold {explanation.threshold:.3f}"
    console.print(
        f"{image}: {explanation.label} ({score_name} {explanation.score:.3f}{threshold})", highlight=False
    )
    console.print(f"Grad-CAM for {explanation.explained_class} written to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("results")(results)
    app.command("explain")(explain)
