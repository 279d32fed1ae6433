"""`cnnq results`: export an inference job's predictions."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import typer

from cnnq.atomic_file import atomic_file
from cnnq.cli.output import console
from cnnq.errors import UserError

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

    text = {"input", "label", "error"}
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
    """Export an inference job's predictions: one row per input with input, label, score, error."""
    from cnnq.db.jobs import JobNotFound, find_job
    from cnnq.db.results import prediction_records, prediction_scope, write_predictions_csv
    from cnnq.db.session import connection_scope
    from cnnq.outputs import prediction_columns

    if format == ExportFormat.PARQUET and out is None:
        raise UserError("--format parquet needs --out FILE (parquet is not written to a terminal)")
    with connection_scope() as connection:
        try:
            scope = prediction_scope(connection, find_job(connection, job))
        except JobNotFound as error:
            raise UserError(str(error)) from None
        which = only.value if only else None
        if out is None:
            write_predictions_csv(connection, scope, sys.stdout, which)
            sys.stdout.flush()
            return
        target = out.expanduser()
        with atomic_file(target, "wb" if format == ExportFormat.PARQUET else "w") as file:
            if format == ExportFormat.PARQUET:
                records = prediction_records(connection, scope, which)
                count = _write_parquet(records, prediction_columns(scope.classes), file)
            else:
                count = write_predictions_csv(connection, scope, file, which)
    console.print(f"wrote {count} rows of {scope.job_id} to {target}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("results")(results)
