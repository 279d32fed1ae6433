"""A bulk job's predictions for the review queue: filtered, counted, binned and paged in SQL.

A bulk job may hold hundreds of thousands of rows; the page reads one page of them, a count and a
40-bin histogram, never the whole set. The CSV download is `cnnq results`' CSV, written by the same
function (`cnnq.db.results.write_predictions_csv`) only when asked for. Nothing here imports Streamlit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from sqlalchemy import Integer, Select, case, cast, func, select
from sqlalchemy.orm import Session

from cnnq.db.jobs import get_job
from cnnq.db.orm import Prediction
from cnnq.db.results import prediction_scope, write_predictions_csv
from cnnq.db.session import session_scope

BINS = 40
Shown = Literal["scored", "flagged", "all"]
REVIEW_COLUMNS = ["input", "label", "score", "error", "shard"]


@dataclass(frozen=True)
class ReviewFilter:
    shown: Shown = "scored"
    labels: tuple[str, ...] = ()
    """Only these labels (scored rows); empty: any."""
    score_min: float = 0.0
    score_max: float = 1.0


def _filtered(query: Select[Any], bulk_id: str, review: ReviewFilter) -> Select[Any]:
    query = query.where(Prediction.bulk_id == bulk_id)
    if review.shown == "flagged":
        return query.where(Prediction.error.is_not(None))
    if review.shown == "scored":
        query = query.where(Prediction.error.is_(None))
    if review.labels:
        query = query.where(Prediction.label.in_(review.labels))
    if review.score_min > 0.0 or review.score_max < 1.0:
        query = query.where(Prediction.score.between(review.score_min, review.score_max))
    return query


def bulk_counts(session: Session, bulk_id: str, positive_class: str | None) -> dict[str, int]:
    """`inputs`, `scored`, `flagged` and `positive` (scored as `positive_class`), in one pass."""
    flagged = func.sum(case((Prediction.error.is_not(None), 1), else_=0))
    positive = func.sum(case((Prediction.label == positive_class, 1), else_=0)) if positive_class else None
    columns = [func.count(), flagged] + ([positive] if positive is not None else [])
    row = session.execute(select(*columns).where(Prediction.bulk_id == bulk_id)).one()
    inputs, flagged_count = int(row[0] or 0), int(row[1] or 0)
    return {
        "inputs": inputs,
        "scored": inputs - flagged_count,
        "flagged": flagged_count,
        "positive": int(row[2] or 0) if positive is not None else 0,
    }


def review_count(
    session: Session, bulk_id: str, review: ReviewFilter, counts: dict[str, int] | None = None
) -> int:
    """How many rows `review` selects; read from `counts` (`bulk_counts`) when it selects a whole class."""
    whole = not review.labels and review.score_min <= 0.0 and review.score_max >= 1.0
    if counts is not None and whole:
        return counts[{"scored": "scored", "flagged": "flagged", "all": "inputs"}[review.shown]]
    return session.scalar(_filtered(select(func.count()).select_from(Prediction), bulk_id, review)) or 0


def review_page(
    session: Session,
    bulk_id: str,
    review: ReviewFilter,
    *,
    page: int = 1,
    page_size: int = 20,
    highest_first: bool = True,
) -> pd.DataFrame:
    """One page of the filtered rows, by score (flagged rows, which have none, by input)."""
    score = Prediction.score.desc() if highest_first else Prediction.score.asc()
    query = _filtered(
        select(Prediction.input, Prediction.label, Prediction.score, Prediction.error, Prediction.job_id),
        bulk_id,
        review,
    )
    if review.shown == "flagged":  # no scores: by path
        query = query.order_by(Prediction.input)
    else:
        query = query.order_by(score.nulls_last(), Prediction.input)
    rows = session.execute(query.offset((max(page, 1) - 1) * page_size).limit(page_size)).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=REVIEW_COLUMNS)


def score_bins(session: Session, bulk_id: str, bins: int = BINS) -> pd.DataFrame:
    """How many scored rows fall in each of `bins` equal score ranges of [0, 1]: `start`, `count`."""
    scaled = Prediction.score * bins
    dialect = session.get_bind().dialect.name
    bucket = (
        cast(scaled, Integer) if dialect == "sqlite" else cast(func.floor(scaled), Integer)
    )  # sqlite truncates
    rows = session.execute(
        select(bucket.label("bucket"), func.count())
        .where(Prediction.bulk_id == bulk_id, Prediction.score.is_not(None))
        .group_by("bucket")
    ).all()
    counts = [0] * bins
    for index, count in rows:
        counts[min(max(int(index), 0), bins - 1)] += count  # a score of exactly 1.0 joins the last bin
    return pd.DataFrame({"start": [i / bins for i in range(bins)], "count": counts})


def results_csv(job_id: str) -> bytes:
    """Every prediction row of inference job `job_id`, as `cnnq results JOB` writes them.

    Read in its own session: the download button calls it when clicked, on its own thread.
    """
    with session_scope() as session:
        scope = prediction_scope(session, get_job(session, job_id))
        buffer = io.StringIO()
        write_predictions_csv(session, scope, buffer)
    return buffer.getvalue().encode()
