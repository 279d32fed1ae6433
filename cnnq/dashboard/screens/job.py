"""Job: one job's times, links to the jobs it used and that used it, its hyperparameters, live training
curves, evaluation report, a bulk job's shards, downloadable artifacts, its failure, its log, and
cancel (confirmed) / retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from cnnq.dashboard import charts
from cnnq.dashboard.actions import cancel_job, retry_job
from cnnq.dashboard.clinical import (
    class_counts,
    confusion_point,
    operating_point,
    precision_recall,
)
from cnnq.dashboard.job_facts import download_label, failure_sentence, job_times, jobs_using, log_frame
from cnnq.dashboard.queries import (
    artifacts_frame,
    curve_frame,
    epoch_history,
    format_duration,
    per_class_frame,
    shards_frame,
)
from cnnq.dashboard.refresh import refresh_interval
from cnnq.dashboard.review import bulk_counts
from cnnq.dashboard.runs import hyperparameters_of
from cnnq.dashboard.status_colors import status_style
from cnnq.db.clock import read_db_now
from cnnq.db.jobs import JobNotFound, bulk_decision, bulk_id_of, find_job, list_jobs
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.views import job_object
from cnnq.errors import UserError
from cnnq.outputs import positive_class

STATUS_ICONS = {
    "QUEUED": ":material/schedule:",
    "RUNNING": ":material/autorenew:",
    "SUCCEEDED": ":material/check_circle:",
    "FAILED": ":material/error:",
    "CANCELLED": ":material/cancel:",
    "PRUNED": ":material/content_cut:",
}


def choose_job() -> str | None:
    with session_scope() as session:
        recent = [job.id for job in list_jobs(session, limit=200)]
    if not recent:
        st.info("No jobs yet.")
        return None
    choice = st.selectbox("Job", recent, index=None, placeholder="Choose a job")
    if choice:
        st.query_params["job"] = choice
    return choice


def show_actions(job: dict[str, Any]) -> None:
    """Retry a failed or cancelled job; cancel a queued or running one, once confirmed."""
    status = JobStatus(job["status"])
    if status in (JobStatus.SUCCEEDED, JobStatus.PRUNED):
        return
    buttons = st.container(horizontal=True)
    if not status.finished and buttons.button("Cancel", icon=":material/stop_circle:", key="cancel"):
        st.session_state["confirm_cancel"] = job["id"]
    if not status.finished and st.session_state.get("confirm_cancel") == job["id"]:
        st.warning(f"Cancel {job['id']}? A running job stops at its next check; this cannot be undone.")
        answers = st.container(horizontal=True)
        if answers.button("Yes, cancel it", type="primary", key="cancel_confirm"):
            del st.session_state["confirm_cancel"]
            new_status = cancel_job(job["id"])
            st.toast(f"{job['id']}: cancel requested ({new_status})")
            st.rerun()
        if answers.button("Keep it running", key="cancel_keep"):
            del st.session_state["confirm_cancel"]
            st.rerun()
    if status in (JobStatus.FAILED, JobStatus.CANCELLED) and buttons.button(
        "Retry", icon=":material/replay:", key="retry"
    ):
        try:
            new_id = retry_job(job["id"])
        except UserError as error:
            st.error(str(error))
        else:
            st.switch_page("screens/job.py", query_params={"job": new_id})


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "–"


def show_header(job: dict[str, Any], facts: dict[str, Any]) -> None:
    st.title(job["id"])
    status = job["status"]
    color = status_style(status).split(";")[0].removeprefix("color: ") or "gray"
    line = [
        f"{STATUS_ICONS.get(status, '')} :{_streamlit_color(color)}[**{status}**]",
        f"kind **{job['kind']}**",
        f"queue **{job['queue']}**",
        f"attempts **{job['attempts']}**",
    ]
    if job["worker"]:
        line.append(f"worker **{job['worker']}**")
    if job["device"]:
        line.append(f"device **{job['device']}**")
    model_from = job["spec"].get("model_from")
    if model_from:
        line.append(f"model of training job [{model_from}](job?job={model_from})")
    if job["parent_id"] and job["kind"] == "train":  # a sweep's trial
        line.append(f"sweep [{job['parent_id']}](sweeps?sweep={job['parent_id']})")
    elif job["parent_id"]:
        line.append(f"shard of bulk job [{job['parent_id']}](job?job={job['parent_id']})")
    if job["kind"] == "sweep":
        line.append(f"[its trials and charts](sweeps?sweep={job['id']})")
    st.markdown(" · ".join(line))
    times = facts["times"]
    st.markdown(
        f"created **{_when(times.created)}** · started **{_when(times.started)}** · "
        f"finished **{_when(times.finished)}**"
    )
    cards = st.columns(4)
    cards[0].metric("duration", format_duration(times.duration) or "–")
    cards[1].metric(
        "ETA",
        format_duration(times.eta) if times.eta is not None else "–",
        help="Time left at the pace so far.",
    )
    if status in ("QUEUED", "RUNNING"):
        st.progress(min(max(job["progress"] or 0.0, 0.0), 1.0), text=job["message"] or status.lower())
    elif job["message"]:
        st.caption(job["message"])


def _streamlit_color(css: str) -> str:
    """The Markdown colour Streamlit knows nearest a status's CSS colour."""
    return {"seagreen": "green", "royalblue": "blue", "crimson": "red", "darkorange": "orange"}.get(
        css, "violet" if css == "slateblue" else "gray"
    )


def show_error(job: dict[str, Any]) -> None:
    error = job["error"]
    if not error:
        return
    sentence = failure_sentence(error["type"], error["message"], error["traceback"])
    st.error(f"**{error['type'] or 'Error'}** · {sentence}", icon=":material/error:")
    if error["traceback"]:
        with st.expander("Traceback", expanded=True):
            st.code(error["traceback"], language="python")


def show_used_by(used_by: pd.DataFrame) -> None:
    if used_by.empty:
        return
    st.subheader("Jobs that used this model")
    st.dataframe(
        used_by.style.map(status_style, subset=["status"]),
        hide_index=True,
        key="used_by",
        column_config={
            "job": st.column_config.LinkColumn("job", display_text=r"job=(.*)$"),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
        },
    )


def show_hyperparameters(used: dict[str, Any], recorded: bool) -> None:
    if not used:
        return
    with st.expander("Hyperparameters used", expanded=True):
        frame = pd.DataFrame({"hyperparameter": list(used), "value": [str(v) for v in used.values()]})
        st.dataframe(frame.set_index("hyperparameter").T, hide_index=True, key="hyperparameters")
        st.caption(
            "As the job recorded them when training started (the spec after the model's recipe and the "
            "optimizer's defaults)."
            if recorded
            else "What the spec gives once the model's recipe and the optimizer's defaults are applied; "
            "the job records them when training starts."
        )


def show_curve(points: pd.DataFrame) -> None:
    """Train loss and learning rate within epochs, by batch or by wall clock, smoothed."""
    if points.empty:
        return
    controls = st.columns([1, 2, 3], vertical_alignment="bottom")
    x = controls[0].radio("Against", ["step", "time"], horizontal=True, key="curve_x")
    smoothing = controls[1].slider("Smoothing", 0.0, 0.99, 0.6, step=0.01, key="curve_smoothing")
    st.altair_chart(charts.curve_figure(points, x, smoothing), key="curve_chart")


def show_training(job_id: str, job: dict[str, Any]) -> None:
    with session_scope() as session:
        history = epoch_history(session, job_id)
        points = curve_frame(session, job_id)
    if history.empty:
        st.info(f"No epoch has finished yet ({job['message'] or 'waiting'}).")
        show_curve(points)
        return
    last = history.iloc[-1]
    best = history.loc[history["val_accuracy"].idxmax()] if "val_accuracy" in history.columns else None
    cards = st.columns(4)
    cards[0].metric("epochs", f"{len(history)} / {job['spec'].get('epochs', '?')}")
    if best is not None:
        cards[1].metric(
            "best val_accuracy", f"{best['val_accuracy']:.4g}", help=f"epoch {int(best['epoch'])}"
        )
    for card, name in zip(cards[2:], ("val_loss", "images_per_second"), strict=True):
        if name in history.columns:
            card.metric(name, f"{last[name]:.4g}")
    best_epoch = int(best["epoch"]) if best is not None else None
    st.altair_chart(charts.training_figure(history, best_epoch), key="training_chart")
    show_curve(points)
    test = {k: v for k, v in job["metrics"].items() if k.startswith("test_")}
    if test:
        st.caption(
            "Best model on the test split: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(test.items()))
        )


def show_evaluation(job: dict[str, Any]) -> None:
    result = job["result"] or {}
    metrics = job["metrics"]
    names = [
        n
        for n in ("accuracy", "precision", "recall", "f1", "roc_auc", "sensitivity", "specificity")
        if n in metrics
    ]
    if names:
        cards = st.columns(len(names))
        for card, name in zip(cards, names, strict=True):
            card.metric(name, f"{metrics[name]:.4f}")
    if not result:
        if not JobStatus(job["status"]).finished:
            st.info("The evaluation report appears when the job has finished.")
        return
    classes = [str(c) for c in result.get("classes", [])]
    roc, matrix = result.get("roc"), result.get("confusion_matrix")
    threshold, precision_recall_at, point = result.get("threshold"), None, None
    if roc and matrix is not None and len(classes) == 2:
        threshold, precision_recall_at, point = show_clinical(result, classes, metrics.get("roc_auc"))
    if roc and len(classes) == 2:  # with the precision-recall curve beside it: one chart, not two
        figure = charts.roc_figure(roc, threshold, metrics.get("roc_auc"), precision_recall_at, point)
        st.altair_chart(figure, key="roc_chart")
    if result.get("threshold") is not None:
        positive = positive_class(classes, result.get("positive_class")) or "the positive class"
        st.caption(f"Stored threshold {float(result['threshold']):.4f} on the probability of {positive}")
    left, right = st.columns(2)
    if matrix is not None:
        normalised = left.toggle("Normalise by true class", key="normalise_confusion")
        left.altair_chart(charts.confusion_figure(matrix, classes, normalised), key="confusion_chart")
    per_class = per_class_frame(result)
    if not per_class.empty:
        right.subheader("Per class")
        right.dataframe(per_class, hide_index=True, key="per_class_table")


def show_clinical(
    result: dict[str, Any], classes: list[str], auc: float | None
) -> tuple[float, tuple[list[float], list[float], float, float], tuple[float, float]]:
    """Sensitivity, specificity, PPV and NPV at a threshold chosen on a slider (from the stored one), with
    95% intervals; returns the chosen threshold, the precision-recall curve with its point there, and
    the ROC point there (false positive rate, sensitivity)."""
    positive = positive_class(classes, result.get("positive_class")) or classes[-1]
    positives, negatives = class_counts(result["confusion_matrix"], classes.index(positive))
    stored = float(result["threshold"]) if result.get("threshold") is not None else 0.5
    st.subheader("At a threshold")
    chosen = st.slider(
        f"Threshold on the probability of {positive}",
        0.0,
        1.0,
        value=stored,
        step=0.001,
        format="%.3f",
        key="clinical_threshold",
        help="Starts at the model's stored threshold (0.5 when none is stored).",
    )
    exact = result.get("threshold") is not None and abs(chosen - stored) < 1e-9
    if exact:  # the evaluation's own labels: its confusion matrix
        point = confusion_point(result["confusion_matrix"], classes.index(positive), chosen)
    else:
        point = operating_point(result["roc"], chosen, positives, negatives)
    intervals = point.intervals()
    cards = st.columns(5)
    for card, (name, value) in zip(
        cards,
        [
            ("sensitivity", point.sensitivity),
            ("specificity", point.specificity),
            ("PPV", point.ppv),
            ("NPV", point.npv),
        ],
        strict=False,
    ):
        low, high = intervals[name]
        card.metric(name, f"{value:.3f}", help=f"95% CI {low:.3f}–{high:.3f} (Wilson)")
        card.caption(f"95% CI {low:.3f}–{high:.3f}")
    if auc is not None:
        interval = result.get("roc_auc_interval")  # older reports kept none: no interval then
        cards[4].metric(
            "ROC AUC",
            f"{auc:.3f}",
            help=f"{interval['level']:.0%} CI by percentile bootstrap ({interval['resamples']:,} "
            "stratified resamples of the evaluated images)"
            if interval
            else None,
        )
        if interval:
            cards[4].caption(f"{interval['level']:.0%} CI {interval['low']:.3f}–{interval['high']:.3f}")
    st.caption(
        (
            "At the stored threshold, from the evaluation's labels. "
            if exact
            else "From the ROC curve's points. "
        )
        + f"{positives} {positive} and {negatives} other images evaluated: "
        f"{int(point.true_positives)} true positives, {int(point.false_positives)} false positives, "
        f"{int(point.true_negatives)} true negatives, {int(point.false_negatives)} false negatives."
    )
    recall, precision = precision_recall(result["roc"], positives, negatives)
    roc_point = (1 - point.specificity, point.sensitivity)
    return chosen, (recall, precision, point.sensitivity, point.ppv), roc_point


def show_bulk(job: dict[str, Any], facts: dict[str, Any]) -> None:
    """A bulk parent (or an unsharded inference job): its counts, shards and their progress."""
    counts, shards, positive_class = facts["counts"], facts["shards"], facts["positive_class"]
    st.subheader("Bulk scoring")
    cards = st.columns(5)
    cards[0].metric("shards", len(shards))
    cards[1].metric("inputs", counts["inputs"])
    cards[2].metric("scored", counts["scored"])
    cards[3].metric(f"positive ({positive_class})" if positive_class else "positive", counts["positive"])
    cards[4].metric("flagged", counts["flagged"])
    st.page_link(
        "screens/bulk.py",
        label="Review its scores",
        icon=":material/stacks:",
        query_params={"job": job["parent_id"] or job["id"]},
    )
    if len(shards) > 1 or job["id"] != shards["shard"].iloc[0]:
        st.dataframe(
            shards.assign(shard="job?job=" + shards["shard"]).style.map(status_style, subset=["status"]),
            hide_index=True,
            width="stretch",
            key="shards_table",
            column_config={
                "shard": st.column_config.LinkColumn("shard", display_text=r"job=(.*)$"),
                "progress": st.column_config.ProgressColumn(
                    "progress", min_value=0.0, max_value=1.0, format="percent", color="green"
                ),
            },
        )


def _file_reader(path: Path) -> Any:
    return lambda: path.read_bytes()


def show_artifacts(job_id: str) -> None:
    with session_scope() as session:
        frame = artifacts_frame(session, job_id)
    st.subheader("Artifacts")
    if frame.empty:
        st.caption("None yet.")
        return
    buttons = st.container(horizontal=True)
    for row in frame.itertuples():
        path = Path(row.path)
        if path.is_file():
            buttons.download_button(
                f"{download_label(row.kind, row.path)} · {row.size}",
                _file_reader(path),
                file_name=path.name,
                icon=":material/download:",
                key=f"download_{row.kind}",
            )
    st.dataframe(frame[["kind", "size", "path", "sha256"]], hide_index=True, width="stretch", key="artifacts")


def show_logs(job_id: str) -> None:
    with st.expander("Log", expanded=False):
        search = st.text_input("Search the log", key="log_search", placeholder="a word or phrase")
        with session_scope() as session:
            lines, matching = log_frame(session, job_id, search)
        if lines.empty:
            st.caption("No line matches." if search else "No log lines yet.")
            return
        st.caption(
            f"{matching:,} lines"
            + (f" contain “{search}”" if search else "")
            + (f" · the last {len(lines)} shown" if matching > len(lines) else "")
        )
        st.dataframe(
            lines,
            hide_index=True,
            width="stretch",
            key="log_table",
            column_config={"time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss")},
        )


def read_facts(session: Any, job_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The job object and what the page adds to it, in one session."""
    row = find_job(session, job_id)
    job = job_object(session, row)
    facts: dict[str, Any] = {"times": job_times(row, read_db_now(session))}
    if row.kind == "train":
        facts["used_by"] = jobs_using(session, row.id)
        facts["hyperparameters"] = hyperparameters_of(row)
        facts["recorded"] = bool((row.result or {}).get("hyperparameters"))
    if row.kind == "infer" and row.parent_id is None:
        _, positive_class = bulk_decision(session, row)
        facts["shards"] = shards_frame(session, row)
        facts["positive_class"] = positive_class
        facts["counts"] = bulk_counts(session, bulk_id_of(row), positive_class)
    return job, facts


job_id = st.query_params.get("job") or choose_job()
if job_id:
    try:
        with session_scope() as session:
            job_id = find_job(session, job_id).id
            initially_live = not find_job(session, job_id).status.finished
    except JobNotFound as missing:
        st.error(str(missing))
        st.stop()

    @st.fragment(run_every=refresh_interval(initially_live))
    def job_view() -> None:
        with session_scope() as session:
            job, facts = read_facts(session, job_id)
        live = not JobStatus(job["status"]).finished
        if live != initially_live:
            st.rerun()  # stop the timer once it has finished
        show_header(job, facts)
        show_actions(job)
        show_error(job)
        if job["kind"] == "train":
            show_hyperparameters(facts["hyperparameters"], facts["recorded"])
            if job["history"] or live:
                st.subheader("Training")
                show_training(job_id, job)
            show_used_by(facts["used_by"])
        elif job["kind"] == "eval" and (job["result"] or live):
            st.subheader("Evaluation")
            show_evaluation(job)
        elif job["kind"] == "infer" and "counts" in facts:
            show_bulk(job, facts)
        elif job["kind"] == "infer":
            st.page_link(
                "screens/bulk.py",
                label="Scores of its bulk job",
                icon=":material/stacks:",
                query_params={"job": job["parent_id"] or job_id},
            )
        show_artifacts(job_id)
        with st.expander("Spec (as submitted)", expanded=False):
            st.json(job["spec"])
        show_logs(job_id)

    job_view()
