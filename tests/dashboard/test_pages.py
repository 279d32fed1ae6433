"""Every page of the dashboard, run with Streamlit's AppTest against a database filled by real jobs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from cnnq.jobs.spec import parse_spec
from cnnq.lifecycle.broker import queue_depths
from tests.conftest import cnnq_command
from tests.dashboard.conftest import APP, FilledDatabase
from tests.dashboard.vega import charts
from tests.sample_dicom import write_dicom
from tests.sample_poison import write_huge_png, write_lying_dicom

pytestmark = pytest.mark.slow


def open_page(page: str, **query: str) -> AppTest:
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.query_params.update(query)
    app.run()
    if page != "screens/jobs.py":
        app.switch_page(page)
        app.query_params.update(query)
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def table_with(app: AppTest, column: str) -> Any:
    """The first dataframe on the page that has `column`."""
    for frame in app.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(
        f"no table with a {column!r} column; tables: {[list(f.value.columns) for f in app.dataframe]}"
    )


def metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def job_object(job_id: str) -> dict[str, Any]:
    from cnnq.db.jobs import get_job
    from cnnq.db.session import session_scope
    from cnnq.db.views import job_object as view

    with session_scope() as session:
        return view(session, get_job(session, job_id))


def test_jobs_page_lists_every_job_and_filters(filled_database: FilledDatabase, dashboard_env: dict) -> None:
    app = open_page("screens/jobs.py")
    table = table_with(app, "status")
    assert set(filled_database.job_ids) <= set(table["id"])
    shard_ids = [i for i in table["id"] if i.startswith(f"{filled_database.bulk}.")]
    assert shard_ids == []  # shards are hidden until asked for
    row = table.set_index("id").loc[filled_database.mnist_train]
    assert (row["status"], row["kind"], row["model"], row["dataset"]) == (
        "SUCCEEDED",
        "train",
        "lenet",
        "mnist",
    )
    assert row["progress"] == 1.0 and row["duration (s)"] > 0 and row["worker"]
    assert table.set_index("id").loc[filled_database.failed, "status"] == "FAILED"
    # The link column opens the job page; an evaluation links to the job that trained its model.
    assert set(table["open"]) >= {f"job?job={i}" for i in filled_database.job_ids}
    assert table.set_index("id").loc[filled_database.xray_eval, "trained by"] == (
        f"job?job={filled_database.xray_train}"
    )
    # The hyperparameters the job recorded as it started, and its metrics summarised in SQL.
    trained = job_object(filled_database.mnist_train)
    used = trained["result"]["hyperparameters"]
    assert used["lr"] == 0.1 and used["momentum"] == 0.95  # SGD's default lr: the spec holds null
    assert trained["spec"]["lr"] is None
    for name in ("optimizer", "lr", "weight_decay", "momentum", "batch_size", "epochs", "schedule"):
        assert row[name] == used[name], name
    history = [h["val_accuracy"] for h in trained["history"] if "val_accuracy" in h]
    assert row["best val_accuracy"] == pytest.approx(max(history))
    assert row["test_accuracy"] == pytest.approx(trained["metrics"]["test_accuracy"])
    evaluation = table.set_index("id").loc[filled_database.xray_eval]
    assert evaluation["accuracy"] == pytest.approx(
        job_object(filled_database.xray_eval)["metrics"]["accuracy"]
    )
    # A bulk job's shards are folded under it: counted on its row, listed once asked for.
    assert table.set_index("id").loc[filled_database.bulk, "shards"] == "3/3"
    assert any(c.value.startswith(f"{len(table)} jobs") for c in app.caption)
    # Sorting happens in SQL, over every job.
    app.selectbox(key="sort").set_value("best val_accuracy").run()
    by_accuracy = table_with(app, "status")["best val_accuracy"].dropna().tolist()
    assert by_accuracy == sorted(by_accuracy, reverse=True) and len(by_accuracy) == 2
    app.selectbox(key="sort").set_value("created").run()
    app.text_input(key="search").input("mnist").run()
    assert filled_database.mnist_train in set(table_with(app, "status")["id"])
    assert filled_database.xray_train not in set(table_with(app, "status")["id"])
    app.text_input(key="search").input("").run()

    app.multiselect(key="status_filter").set_value(["FAILED"]).run()
    assert list(table_with(app, "status")["id"]) == [filled_database.failed]
    app.multiselect(key="status_filter").set_value([]).run()
    app.multiselect(key="kind_filter").set_value(["eval"]).run()
    assert set(table_with(app, "status")["id"]) == {filled_database.xray_eval, filled_database.failed}
    # A job created two days ago drops out of "last day".
    from cnnq.db.jobs import update_job
    from cnnq.db.session import session_scope
    from cnnq.db.tables import utcnow

    with session_scope() as session:
        update_job(session, filled_database.failed, created_at=utcnow() - timedelta(days=2))
    app.selectbox(key="window").set_value("last day").run()
    assert set(table_with(app, "status")["id"]) == {filled_database.xray_eval}
    app.selectbox(key="window").set_value("last week").run()
    assert set(table_with(app, "status")["id"]) == {filled_database.xray_eval, filled_database.failed}
    app.toggle(key="shards").set_value(True).run()
    app.multiselect(key="kind_filter").set_value(["infer"]).run()
    assert len([i for i in table_with(app, "status")["id"] if i.startswith(f"{filled_database.bulk}.")]) == 3


def test_job_page_shows_training_curves_per_epoch(
    filled_database: FilledDatabase, dashboard_env: dict
) -> None:
    app = open_page("screens/job.py", job=filled_database.mnist_train)
    assert app.title[0].value == filled_database.mnist_train
    history = job_object(filled_database.mnist_train)["history"]
    epochs = [h for h in history if "train_loss" in h]
    assert len(epochs) == 2
    shown = charts(app)
    assert "Training by epoch" in shown and len(app.get("vega_lite_chart")) == 1  # four panels, one chart
    by_epoch = shown["Training by epoch"]
    assert by_epoch.panels() == ["Loss", "Accuracy", "Learning rate", "Images per second"]
    curves = by_epoch.curves()
    assert list(curves["train loss"].x) == [1, 2]
    for name, column in (
        ("train loss", "train_loss"),
        ("validation loss", "val_loss"),
        ("train accuracy", "train_accuracy"),
        ("validation accuracy", "val_accuracy"),
        ("learning rate", "lr"),
        ("images per second", "images_per_second"),
    ):
        assert np.allclose(curves[name].y, [h[column] for h in epochs]), name
        assert list(curves[name].x) == [h["epoch"] for h in epochs], name
    # Each curve in its own panel: loss top left, accuracy top right, lr and images/s below.
    assert {name: curve.panel for name, curve in curves.items()} == {
        "train loss": "Loss",
        "validation loss": "Loss",
        "train accuracy": "Accuracy",
        "validation accuracy": "Accuracy",
        "learning rate": "Learning rate",
        "images per second": "Images per second",
    }
    assert all(v > 0 for v in curves["images per second"].y)
    assert metrics(app)["epochs"] == "2 / 2"
    best = max(epochs, key=lambda h: (h["val_accuracy"], h["epoch"]))
    assert metrics(app)["best val_accuracy"] == f"{best['val_accuracy']:.4g}"
    best_lines = by_epoch.marks_of("rule")  # the best epoch, marked
    best_epoch = max(epochs, key=lambda h: h["val_accuracy"])["epoch"]  # the first best, as the page
    assert sorted(m.panel for m in best_lines) == ["Accuracy", "Loss"]
    assert {x for m in best_lines for x in m.x} == {best_epoch}
    # Times, from the job's row.
    trained = job_object(filled_database.mnist_train)
    started = trained["started_at"][:19].replace("T", " ") + " UTC"
    assert any(f"started **{started}**" in m.value for m in app.markdown), [m.value for m in app.markdown]
    assert metrics(app)["ETA"] == "–"
    # The hyperparameters it recorded as it started.
    used = table_with(app, "lr")
    assert used.iloc[0]["lr"] == str(trained["result"]["hyperparameters"]["lr"])
    # Every artifact downloads; the log is timestamped and searchable.
    assert {b.label.split(" (")[0] for b in app.get("download_button")} >= {"Model file", "Checkpoint"}
    log = table_with(app, "line")
    assert log["time"].notna().all() and len(log) >= 2
    app.text_input(key="log_search").input("torch threads").run()
    assert all("torch threads" in line for line in table_with(app, "line")["line"])
    # The curve within epochs, as the job reports it every few seconds (two points, written here).
    from cnnq.db.records import CURVE_PREFIX, record_metrics
    from cnnq.db.session import session_scope

    with session_scope() as session:
        for step, loss in ((3, 2.2), (6, 1.9)):
            record_metrics(
                session,
                filled_database.mnist_train,
                step,
                {CURVE_PREFIX + "train_loss": loss, CURVE_PREFIX + "lr": 0.05},
            )
    app.run()
    curve = charts(app)["Within epochs"].curves()
    assert list(curve["train loss"].x) == [3, 6]
    assert np.allclose(curve["train loss"].y, [2.2, 1.9])
    assert np.allclose(curve["learning rate"].y, [0.05, 0.05])
    assert list(curve["smoothed"].x) == [3, 6] and curve["smoothed"].y[0] == 2.2
    assert 1.9 < curve["smoothed"].y[1] < 2.2  # an average of the two, at the page's smoothing
    assert history == [h for h in job_object(filled_database.mnist_train)["history"]]  # epochs only
    artifacts = table_with(app, "size")
    assert {"model", "checkpoint"} <= set(artifacts["kind"])
    assert all(size.endswith(("B", "KiB", "MiB")) for size in artifacts["size"])
    # The spec is shown, and a finished job offers neither cancel nor retry.
    assert any(json.loads(j.value).get("model") == "lenet" for j in app.json)
    assert [b.key for b in app.button] == []


def test_job_page_shows_the_evaluation_report(filled_database: FilledDatabase, dashboard_env: dict) -> None:
    app = open_page("screens/job.py", job=filled_database.xray_eval)
    result = job_object(filled_database.xray_eval)["result"]
    shown = charts(app)
    (heatmap,) = shown["Confusion matrix"].marks_of("rect")
    classes = result["classes"]
    cells = heatmap.data.pivot(index="true", columns="predicted", values="value").loc[classes, classes]
    assert np.array_equal(cells.to_numpy(), np.asarray(result["confusion_matrix"]))
    assert (
        heatmap.encoding["x"]["sort"] == heatmap.encoding["y"]["sort"] == classes == ["NORMAL", "PNEUMONIA"]
    )
    roc_title = next(t for t in shown if t.startswith("ROC curve"))
    roc = shown[roc_title].curves()
    assert np.allclose(roc["ROC"].x, result["roc"]["fpr"])
    assert np.allclose(roc["ROC"].y, result["roc"]["tpr"])
    (marker_name,) = [name for name in roc if name.startswith("threshold")]
    assert marker_name == f"threshold {result['threshold']:.3f}"
    marker = roc[marker_name]
    assert marker.panel == roc["ROC"].panel and marker.panel.startswith("ROC curve")
    # The marker sits where the cards say the threshold operates, not at a point the curve dropped.
    assert f"{1 - marker.x[0]:.3f}" == metrics(app)["specificity"]
    assert f"{marker.y[0]:.3f}" == metrics(app)["sensitivity"]
    per_class = table_with(app, "class") if "class" in result["per_class"][0] else app.dataframe[0].value
    assert len(per_class) == 2
    assert "accuracy" in metrics(app)
    # At its stored threshold, sensitivity and specificity are the evaluation's own; PPV from its matrix.
    stored = job_object(filled_database.xray_eval)["metrics"]
    assert metrics(app)["sensitivity"] == f"{stored['sensitivity']:.3f}"
    assert metrics(app)["specificity"] == f"{stored['specificity']:.3f}"
    (_, fp), (_, tp) = result["confusion_matrix"]
    assert metrics(app)["PPV"] == (f"{tp / (tp + fp):.3f}" if tp + fp else "nan")
    assert roc_title.endswith("and Precision-recall curve") and "Precision-recall curve" not in shown
    chosen = roc["chosen threshold"]  # the precision-recall panel, beside the ROC curve, at the same point
    assert chosen.panel == roc["precision-recall"].panel == "Precision-recall curve"
    assert f"{chosen.x[0]:.3f}" == metrics(app)["sensitivity"]
    assert f"{chosen.y[0]:.3f}" == metrics(app)["PPV"]
    # The AUC's 95% interval: the evaluation's percentile bootstrap, as its report stores it.
    interval = result["roc_auc_interval"]
    assert interval["method"] == "percentile bootstrap"
    assert interval["low"] <= stored["roc_auc"] <= interval["high"]
    auc_caption = f"95% CI {interval['low']:.3f}–{interval['high']:.3f}"
    assert metrics(app)["ROC AUC"] == f"{stored['roc_auc']:.3f}"
    assert auc_caption in [c.value for c in app.caption]
    # A report from before the interval was stored shows the AUC with no interval, not another method's.
    from cnnq.db.orm import Job
    from cnnq.db.session import session_scope

    with session_scope() as session:
        row = session.get(Job, filled_database.xray_eval)
        row.result = {k: v for k, v in row.result.items() if k != "roc_auc_interval"}
    app.run()
    assert metrics(app)["ROC AUC"] == f"{stored['roc_auc']:.3f}"
    assert len([c for c in app.caption if c.value.startswith("95% CI")]) == 4  # the four Wilson ones
    app.slider(key="clinical_threshold").set_value(0.0).run()  # everything positive
    assert metrics(app)["sensitivity"] == "1.000" and metrics(app)["specificity"] == "0.000"
    # An evaluation links to its training job, and the training job back to it and to the bulk job.
    assert f"[{filled_database.xray_train}](job?job={filled_database.xray_train})" in app.markdown[0].value
    app = open_page("screens/job.py", job=filled_database.xray_train)
    used_by = table_with(app, "kind")
    assert set(used_by["job"]) >= {f"job?job={filled_database.xray_eval}", f"job?job={filled_database.bulk}"}


def test_bulk_parent_page_shows_its_shards_and_counts(
    filled_database: FilledDatabase, dashboard_env: dict, cli: Any
) -> None:
    from sqlalchemy import func, select

    from cnnq.db.orm import Prediction
    from cnnq.db.records import prediction_counts
    from cnnq.db.session import session_scope

    app = open_page("screens/job.py", job=filled_database.bulk)
    with session_scope() as session:
        counts = prediction_counts(session, filled_database.bulk, "PNEUMONIA")
        positive = session.scalar(
            select(func.count()).where(
                Prediction.bulk_id == filled_database.bulk, Prediction.label == "PNEUMONIA"
            )
        )
    cards = metrics(app)
    assert (cards["shards"], int(cards["inputs"]), int(cards["flagged"])) == ("3", counts["inputs"], 3)
    assert int(cards["positive (PNEUMONIA)"]) == counts["positive"] == positive > 0
    # `cnnq show --json` counts the same positives as the page and SQL (it once said 0).
    shown = cli("show", filled_database.bulk, "--json")
    assert shown.code == 0, shown.stderr
    assert json.loads(shown.stdout)["predictions"] == counts
    shards = table_with(app, "shard")
    assert len(shards) == 3 and set(shards["status"]) == {"SUCCEEDED"}
    assert "attempts" in app.markdown[0].value


def test_failed_job_shows_its_error_and_retries_through_the_broker(
    filled_database: FilledDatabase, dashboard_broker: str
) -> None:
    broker_url = dashboard_broker
    failed = job_object(filled_database.failed)
    app = open_page("screens/job.py", job=filled_database.failed)
    assert failed["error"]["type"] in app.error[0].value
    assert f"{failed['error']['type']}: {failed['error']['type']}" not in app.error[0].value
    assert not failed["error"]["traceback"].splitlines()[0].lstrip().startswith("^")
    assert failed["error"]["traceback"].strip().splitlines()[-1] in app.code[0].value
    assert [b.key for b in app.button] == ["retry"]  # a finished job cannot be cancelled

    app.button(key="retry").click().run()
    assert not app.exception
    new_id = app.query_params["job"]
    assert new_id != filled_database.failed
    retried = job_object(new_id)
    assert retried["status"] == "QUEUED"
    assert parse_spec(retried["spec"]) == parse_spec(failed["spec"])
    assert queue_depths([retried["queue"]], broker_url) == {retried["queue"]: 1}


def test_cancel_button_cancels_a_queued_job(filled_database: FilledDatabase, dashboard_env: dict) -> None:
    from cnnq.db.jobs import create_job
    from cnnq.db.session import session_scope

    with session_scope() as session:
        queued = create_job(
            session, kind="train", spec=job_object(filled_database.mnist_train)["spec"], queue="cpu"
        ).id
    app = open_page("screens/job.py", job=queued)
    assert "QUEUED" in app.markdown[0].value
    app.button(key="cancel").click().run()  # asks first
    assert not app.exception and job_object(queued)["status"] == "QUEUED"
    app.button(key="cancel_keep").click().run()
    assert job_object(queued)["status"] == "QUEUED" and not app.warning
    app.button(key="cancel").click().run()
    assert queued in app.warning[0].value
    app.button(key="cancel_confirm").click().run()
    assert not app.exception
    assert job_object(queued)["status"] == "CANCELLED"


def test_compare_overlays_curves_and_tables_differences(
    filled_database: FilledDatabase, dashboard_env: dict
) -> None:
    runs = [filled_database.mnist_train, filled_database.xray_train]
    app = open_page("screens/compare.py", jobs=",".join(runs))
    summary = table_with(app, "job")
    assert list(summary["job"]) == runs
    # Options that differ are columns; those that agree are not.
    assert list(summary["dataset"]) == ["mnist", "xray"]
    assert "model" not in summary.columns and "epochs run" in summary.columns
    assert not [c for c in summary.columns if c.endswith(("_x", "_y"))]  # no merge suffixes
    for job_id, row in summary.set_index("job").iterrows():
        job = job_object(job_id)
        assert row["final val_accuracy"] == pytest.approx(job["metrics"]["val_accuracy"])
        best = max(h["val_accuracy"] for h in job["history"] if "val_accuracy" in h)
        assert row["best val_accuracy"] == pytest.approx(best)
    shown = charts(app)["Curves by epoch"]  # four panels, one chart
    titles = ["Validation accuracy", "Validation loss", "Training accuracy", "Training loss"]
    assert shown.panels() == titles
    colors = []
    for metric, title in zip(
        ("val_accuracy", "val_loss", "train_accuracy", "train_loss"), titles, strict=True
    ):
        panel = shown.curves()[metric]
        assert panel.panel == title and panel.encoding["color"]["field"] == "job"
        assert sorted(set(panel.data["job"])) == sorted(runs)
        for job_id, rows in panel.data.groupby("job"):
            epochs = [h for h in job_object(str(job_id))["history"] if metric in h]
            assert np.allclose(rows[panel.encoding["y"]["field"]], [h[metric] for h in epochs]), (
                metric,
                job_id,
            )
            assert list(rows[panel.encoding["x"]["field"]]) == [h["epoch"] for h in epochs]
        scale = panel.encoding["color"]["scale"]
        colors.append(dict(zip(scale["domain"], scale["range"], strict=True)))
    assert len(set(colors[0][job_id] for job_id in runs)) == 2  # one colour per run, the same in every panel
    assert all(c == colors[0] for c in colors)
    # Every hyperparameter used, side by side, once asked for.
    app.toggle(key="differing_only").set_value(False).run()
    summary = table_with(app, "job").set_index("job")
    for job_id in runs:
        used = job_object(job_id)["result"]["hyperparameters"]
        assert summary.loc[job_id, "lr"] == str(used["lr"]) and summary.loc[job_id, "model"] == "lenet"
    # Runs are found by search, however old.
    app.text_input(key="compare_search").input(filled_database.mnist_train[-6:]).run()
    options = app.multiselect(key="compare_jobs").options
    assert f"{filled_database.mnist_train} · lenet on mnist · SUCCEEDED" in options


def test_bulk_page_shows_shards_scores_and_flags(
    filled_database: FilledDatabase, dashboard_env: dict
) -> None:
    from cnnq.db.records import prediction_counts
    from cnnq.db.session import session_scope

    app = open_page("screens/bulk.py", job=filled_database.bulk)
    with session_scope() as session:
        counts = prediction_counts(session, filled_database.bulk, "PNEUMONIA")
    cards = metrics(app)
    files = [p for p in filled_database.chest_xray.rglob("*") if p.is_file()]
    assert int(cards["inputs"]) == counts["inputs"] == len(files)
    assert int(cards["positive (PNEUMONIA)"]) == counts["positive"] > 0
    assert int(cards["flagged"]) == counts["flagged"] == 3  # two broken images and a text file
    shown = charts(app)["Progress by shard and Distribution of scores"]  # two panels, one chart
    (shards,) = shown.marks_of("bar", "Progress by shard")
    assert list(shards.x) == [100.0] * 3 and len(set(shards.y)) == 3
    (scores,) = shown.marks_of("bar", "Distribution of scores")
    assert scores.y.sum() == counts["scored"]  # binned in SQL
    (threshold_line,) = shown.marks_of("rule")
    assert threshold_line.panel == "Distribution of scores"
    top = table_with(app, "score")
    assert len(top) == 20 and list(top["score"]) == sorted(top["score"], reverse=True)
    assert all(url.startswith("data:image/png;base64,") for url in top["image"])
    assert all(Path(p).is_relative_to(filled_database.chest_xray) for p in top["input"])
    assert any(c.value.startswith(f"{counts['scored']:,} inputs match") for c in app.caption)
    # The review queue: flagged inputs, one label, a score range, pages, all read in SQL.
    app.radio(key="review_shown").set_value("flagged").run()
    flagged = table_with(app, "error")
    assert {Path(p).name for p in flagged["input"]} == {
        "notes.txt",
        "broken_empty.png",
        "broken_truncated.jpeg",
    }
    assert flagged["error"].str.len().min() > 0
    app.radio(key="review_shown").set_value("scored").run()
    app.multiselect(key="review_labels").set_value(["PNEUMONIA"]).run()
    app.selectbox(key="review_page_size").set_value(100).run()
    positives = table_with(app, "score")
    assert set(positives["label"]) == {"PNEUMONIA"} and len(positives) == min(counts["positive"], 100)
    assert any(c.value.startswith(f"{counts['positive']:,} inputs match") for c in app.caption)
    low, high = sorted(positives["score"])[0], sorted(positives["score"])[-1]
    app.slider(key="review_scores").set_value((round(low, 2), round(high, 2))).run()
    from sqlalchemy import func, select

    from cnnq.db.orm import Prediction

    with session_scope() as session:
        expected = session.scalar(
            select(func.count()).where(
                Prediction.bulk_id == filled_database.bulk,
                Prediction.label == "PNEUMONIA",
                Prediction.score.between(round(low, 2), round(high, 2)),
            )
        )
    assert any(c.value.startswith(f"{expected:,} inputs match") for c in app.caption)
    if expected:
        in_range = table_with(app, "score")["score"]
        assert in_range.between(round(low, 2), round(high, 2)).all() and len(in_range) == min(expected, 100)
    shards = table_with(app, "message")
    assert list(shards["status"]) == ["SUCCEEDED"] * 3 and sum(shards["inputs"]) == len(files)
    assert all(link.startswith(f"job?job={filled_database.bulk}.") for link in shards["shard"])
    # The download is `cnnq results`' CSV, made when asked for.
    from cnnq.dashboard.review import results_csv

    assert (
        results_csv(filled_database.bulk).decode().splitlines()[0]
        == "input,label,score,error,p_NORMAL,p_PNEUMONIA"
    )


def test_xray_check_scores_an_upload_and_refuses_text(
    filled_database: FilledDatabase, dashboard_env: dict, tmp_path: Path
) -> None:
    from cnnq.jobs.checkpoint import load_model_file
    from cnnq.jobs.infer import Decision

    model = job_object(filled_database.xray_train)
    model_path = next(a["uri"] for a in model["artifacts"] if a["kind"] == "model")
    app = open_page("screens/xray.py")
    choice = next(
        o for o in app.selectbox(key="xray_model").options if o.startswith(filled_database.xray_train)
    )
    app.selectbox(key="xray_model").set_value(choice).run()

    image = sorted((filled_database.chest_xray / "test" / "PNEUMONIA").glob("*.png"))[0]
    app.file_uploader(key="xray_upload").set_value((image.name, image.read_bytes(), "image/png")).run()
    assert not app.exception and not app.error
    loaded = load_model_file(Path(model_path))
    expected = Decision.for_model(loaded, None)
    shown = metrics(app)
    assert shown["label"] in ("NORMAL", "PNEUMONIA")
    assert shown["threshold"] == f"{expected.threshold:.3f}"
    positive = float(shown["score (probability of PNEUMONIA)"])  # the probability the threshold applies to
    assert 0.0 <= positive <= 1.0
    if abs(positive - expected.threshold) > 0.001:  # both are shown rounded to 3 places
        assert shown["label"] == ("PNEUMONIA" if positive >= expected.threshold else "NORMAL")
    assert len(app.image) == 2  # the image and its Grad-CAM overlay

    # DICOM too: a 12-bit chest film, as a scanner archive holds it.
    pixels = (np.asarray(PILImage.open(image).convert("L"), dtype=np.uint16) * 16).astype(np.uint16)
    dicom = write_dicom(tmp_path / "film.dcm", pixels)
    app.file_uploader(key="xray_upload").set_value(
        ("film.dcm", dicom.read_bytes(), "application/dicom")
    ).run()
    assert not app.exception and not app.error
    assert metrics(app)["label"] in ("NORMAL", "PNEUMONIA")
    assert "film.dcm (64×64)" in app.image[0].proto.imgs[0].caption

    app.file_uploader(key="xray_upload").set_value(("notes.txt", b"not an image\n", "text/plain")).run()
    assert not app.exception
    assert "notes.txt is not an image" in app.error[0].value

    # Poison uploads are refused from their headers, never decoded inside the dashboard's server.
    huge = write_huge_png(tmp_path / "huge.png", 13000, 13000)  # 16-bit: 338 MB of pixels
    app.file_uploader(key="xray_upload").set_value(("huge.png", huge.read_bytes(), "image/png")).run()
    assert not app.exception
    assert app.error[0].value.startswith("huge.png is too large: 13000x13000 (169,000,000 pixels")
    lying = write_lying_dicom(tmp_path / "lying.dcm", 65535, 65535)
    app.file_uploader(key="xray_upload").set_value(
        ("lying.dcm", lying.read_bytes(), "application/dicom")
    ).run()
    assert not app.exception
    assert app.error[0].value.startswith("lying.dcm is too large: 65535x65535")


def test_workers_page_shows_workers_and_queue_depths(
    filled_database: FilledDatabase, dashboard_broker: str, cli: Any
) -> None:
    from cnnq.db.session import session_scope
    from cnnq.db.workers import register_worker

    with session_scope() as session:
        register_worker(
            session, "gpu0@node1", hostname="node1", pid=4242, queues=["gpu", "gpu.0"], gpu_index=0,
            gpu_name="NVIDIA H100", gpu_memory_mb=81559, memory_mb=257000,
        )  # fmt: skip
    for _ in range(2):
        done = cli("submit", "eval", "--model-from", filled_database.xray_train, "--queue", "gpu.0")
        assert done.code == 0, done.stderr
    from cnnq.db.jobs import create_job, transition
    from cnnq.db.status import JobStatus

    with session_scope() as session:
        running = create_job(
            session, kind="eval", spec=job_object(filled_database.xray_eval)["spec"], queue="gpu"
        ).id
        transition(session, running, JobStatus.RUNNING, worker="gpu0@node1")
    app = open_page("screens/workers.py")
    workers = table_with(app, "worker").set_index("worker")
    assert workers.loc["gpu0@node1", "gpu"] == "0: NVIDIA H100"
    assert workers.loc["gpu0@node1", "current job"] == running
    assert workers.loc["gpu0@node1", "host RAM (MiB)"] == 257000
    assert workers.loc["gpu0@node1", "state"] == "up"
    queues = table_with(app, "waiting messages").set_index("queue")
    assert queues.loc["gpu.0", "waiting messages"] == 2
    assert "redis://127.0.0.1" in app.caption[0].value


def test_job_page_follows_a_running_job_and_cancels_it(
    filled_database: FilledDatabase, dashboard_env: dict, mnist_root: Path
) -> None:
    """A real training job in another process: its page shows the epochs so far, and Cancel stops it."""
    from cnnq.db.jobs import list_jobs
    from cnnq.db.records import metric_history
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus

    command = [*cnnq_command(), "run", "train", "--model", "lenet", "--dataset", "mnist", "--limit", "256"]
    command += ["--epochs", "200", "--num-workers", "0"]
    training = subprocess.Popen(
        command, env={**os.environ, **dashboard_env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        job_id, deadline = None, time.monotonic() + 180
        while time.monotonic() < deadline and training.poll() is None:
            with session_scope() as session:
                running = list_jobs(session, statuses=[JobStatus.RUNNING], kinds=["train"])
                if running and len(metric_history(session, running[0].id)) >= 2:
                    job_id = running[0].id
                    break
            time.sleep(0.5)
        assert job_id is not None, "the training job did not finish two epochs"
        app = open_page("screens/job.py", job=job_id)
        assert "RUNNING" in app.markdown[0].value
        epochs_shown = len(charts(app)["Training by epoch"].curves()["train loss"].x)
        with session_scope() as session:
            assert 2 <= epochs_shown <= len(metric_history(session, job_id))
        app.button(key="cancel").click().run()
        app.button(key="cancel_confirm").click().run()
        assert not app.exception
        assert training.wait(timeout=120) != 0
    finally:
        if training.poll() is None:
            training.kill()
            training.wait()
    final = job_object(job_id)
    assert final["status"] == "CANCELLED"
    assert len([h for h in final["history"] if "train_loss" in h]) < 200


@pytest.mark.postgres
def test_pages_read_a_postgresql_database(
    use_settings: Any, postgres_url: str, cli: Any, mnist_root: Path
) -> None:
    """The cluster setup: the same pages on PostgreSQL, filled by a real training job."""
    use_settings(CNNQ_DATABASE_URL=postgres_url)
    done = cli("run", "train", "--model", "lenet", "--dataset", "mnist", "--limit", "128", "--epochs", "2",
               "--num-workers", "0", "--json")  # fmt: skip
    assert done.code == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    app = open_page("screens/jobs.py")
    assert list(table_with(app, "status")["id"]) == [job_id]
    app = open_page("screens/job.py", job=job_id)
    assert list(charts(app)["Training by epoch"].curves()["validation loss"].x) == [1, 2]
    app = open_page("screens/compare.py", jobs=job_id)
    assert list(table_with(app, "job")["job"]) == [job_id]


def test_a_resume_job_shows_the_rows_of_the_job_it_resumed(
    filled_database: FilledDatabase, dashboard_broker: str
) -> None:
    """`--resume` scores into the resumed job's rows: its Bulk and Job pages count and list them all."""
    from sqlalchemy import delete, select

    from cnnq.db.jobs import children_of
    from cnnq.db.orm import Prediction
    from cnnq.db.session import session_scope
    from cnnq.db.status import JobStatus
    from cnnq.lifecycle.claim import execute_job
    from tests.dashboard.conftest import _cnnq_json

    with session_scope() as session:
        shards_before = [child.id for child in children_of(session, filled_database.bulk)]
    with session_scope() as session:  # the four highest scores are lost: the resume job scores them again
        mine = Prediction.bulk_id == filled_database.bulk
        highest = select(Prediction.input).where(mine).order_by(Prediction.score.desc(), Prediction.input)
        lost = session.scalars(highest.limit(4))
        session.execute(delete(Prediction).where(mine, Prediction.input.in_(list(lost))))
    resume = _cnnq_json(
        "submit", "infer", "--model-from", filled_database.xray_train, "--input",
        str(filled_database.chest_xray), "--resume", filled_database.bulk, "--num-workers", "0",
    )["id"]  # fmt: skip
    with session_scope() as session:  # four inputs are too few to shard: it runs as one job
        assert children_of(session, resume) == []
    assert execute_job(resume, worker="test-worker@dashboard") == JobStatus.SUCCEEDED
    files = [p for p in filled_database.chest_xray.rglob("*") if p.is_file()]

    app = open_page("screens/bulk.py", job=resume)
    assert int(metrics(app)["inputs"]) == len(files)
    rows = table_with(app, "score")  # highest scores first: the four it scored among the resumed job's
    assert len(rows) == 20 and list(rows["shard"]).count(f"job?job={resume}") == 4
    assert set(rows["shard"]) <= {f"job?job={shard}" for shard in [*shards_before, resume]}
    app = open_page("screens/job.py", job=resume)
    assert int(metrics(app)["inputs"]) == len(files)
