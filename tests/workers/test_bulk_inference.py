"""Bulk inference shards run for real (in this process, through `execute_job`) on SQLite and PostgreSQL:
a re-delivered shard and `--resume` score only what is missing, and never an input twice."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import delete, func, select

from cnnq.db.jobs import children_of, get_job, request_cancel
from cnnq.db.orm import Job, Prediction
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.jobs.infer import infer_job
from cnnq.jobs.inputs import list_inputs
from cnnq.jobs.spec import parse_spec
from cnnq.lifecycle.claim import Claim, claim_job, execute_job, finish_claim
from cnnq.lifecycle.sql_reporter import SqlReporter


def _rows(bulk_id: str) -> list[str]:
    with session_scope() as s:
        return list(s.scalars(select(Prediction.input).where(Prediction.bulk_id == bulk_id)))


def test_a_redelivered_shard_and_resume_finish_what_is_missing(  # type: ignore[no-untyped-def]
    queue_env, cli, submit_infer, model_and_archive: tuple[Path, Path]
) -> None:
    model_file, chest = model_and_archive
    inputs = list_inputs(str(chest))  # 18 images, 2 broken files, 1 text file
    first = submit_infer("--model-from", model_file, "--input", chest, "--shard-size", "6")
    with session_scope() as s:
        shards = [shard.id for shard in children_of(s, first)]
    assert len(shards) == 4

    # Shard 0 runs; shard 1 is claimed and scored, then loses its last 4 rows (as when its worker dies
    # before they were written) and runs again: only those 4 are scored, through the real SqlReporter.
    assert execute_job(shards[0]) == JobStatus.SUCCEEDED
    claim = claim_job(shards[1], "w1")
    assert isinstance(claim, Claim)
    with session_scope() as s:
        spec = parse_spec(get_job(s, shards[1]).spec)
    workdir = Path(queue_env["CNNQ_ARTIFACT_ROOT"]) / shards[1]
    infer_job(spec, workdir, SqlReporter(shards[1], claim.token, first))
    with session_scope() as s:
        s.execute(delete(Prediction).where(Prediction.input.in_((spec.inputs or [])[2:])))
    infer_job(spec, workdir, SqlReporter(shards[1], claim.token, first))
    with session_scope() as s:  # the result the run reported, on its job's row
        summary = get_job(s, shards[1]).result
    assert (summary["already_done"], summary["scored"] + summary["flagged"]) == (2, 4)
    assert finish_claim(shards[1], claim.token, target=JobStatus.SUCCEEDED) == JobStatus.SUCCEEDED
    assert sorted(_rows(first)) == sorted(inputs[:12])

    # The rest of the first job is cancelled; `--resume` scores only what it lacks, into its rows.
    with session_scope() as s:
        request_cancel(s, first)
    resumed = submit_infer(
        "--model-from", model_file, "--input", chest, "--shard-size", "4", "--resume", first
    )
    with session_scope() as s:
        new_shards = [shard.id for shard in children_of(s, resumed)]
        planned = [path for shard in children_of(s, resumed) for path in shard.spec["inputs"]]
    assert sorted(planned) == sorted(inputs[12:])
    for shard in new_shards:
        assert execute_job(shard) == JobStatus.SUCCEEDED
    with session_scope() as s:
        assert get_job(s, resumed).status == JobStatus.SUCCEEDED

    rows = _rows(first)
    assert len(rows) == len(set(rows)) == len(inputs) and set(rows) == set(inputs)
    with session_scope() as s:
        assert s.scalar(select(func.count()).where(Prediction.bulk_id == resumed)) == 0
    shown = json.loads(cli("show", resumed, "--json").stdout)  # the rows of the job it resumed
    assert shown["predictions"]["inputs"] == len(inputs) and shown["predictions"]["flagged"] == 3
    exported = list(csv.DictReader(io.StringIO(cli("results", resumed).stdout)))
    assert sorted(r["input"] for r in exported) == sorted(inputs)


def test_a_bulk_job_writes_its_output_csv_when_its_last_shard_ends(  # type: ignore[no-untyped-def]
    queue_env, cli, submit_infer, model_and_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    model_file, chest = model_and_archive
    inputs = list_inputs(str(chest))
    output = tmp_path / "exports" / "scores.csv"
    bulk = submit_infer("--model-from", model_file, "--input", chest, "--shard-size", "6", "--output", output)
    with session_scope() as s:
        shards = [shard.id for shard in children_of(s, bulk)]
    for shard in shards[:-1]:
        assert execute_job(shard) == JobStatus.SUCCEEDED
    assert not output.exists()  # written once, when the bulk job ends
    assert execute_job(shards[-1]) == JobStatus.SUCCEEDED

    with session_scope() as s:
        parent = get_job(s, bulk)
        assert parent.status == JobStatus.SUCCEEDED
        assert parent.result["output"] == str(output)
    written = list(csv.DictReader(output.open(newline="")))
    assert [r["input"] for r in written] == sorted(inputs)
    assert sum(bool(r["error"]) for r in written) == 3
    assert output.read_text() == cli("results", bulk).stdout


def test_a_bulk_job_whose_output_cannot_be_written_fails_and_keeps_its_rows(  # type: ignore[no-untyped-def]
    queue_env, submit_infer, model_and_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    model_file, chest = model_and_archive
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output's folder should be\n")
    bulk = submit_infer(
        "--model-from", model_file, "--input", chest, "--shard-size", "10", "--output",
        blocker / "scores.csv",
    )  # fmt: skip
    with session_scope() as s:
        shards = [shard.id for shard in children_of(s, bulk)]
    for shard in shards:
        assert execute_job(shard) == JobStatus.SUCCEEDED
    with session_scope() as s:
        parent = get_job(s, bulk)
        assert (parent.status, parent.error_type) == (JobStatus.FAILED, "OutputNotWritten")
        assert f"cnnq results {bulk} --out FILE" in parent.error_message
    assert sorted(_rows(bulk)) == sorted(list_inputs(str(chest)))


def test_output_that_is_a_folder_is_refused_and_nothing_is_recorded(  # type: ignore[no-untyped-def]
    queue_env, cli, model_and_archive: tuple[Path, Path], tmp_path: Path
) -> None:
    model_file, chest = model_and_archive
    result = cli(
        "submit", "infer", "--model-from", model_file, "--input", chest, "--shard-size", "6",
        "--output", tmp_path,
    )  # fmt: skip
    assert result.code == 2
    assert "is a folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
