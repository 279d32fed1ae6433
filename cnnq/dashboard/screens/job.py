"""Job: one job's spec, live training curves, evaluation report, artifacts, error, and cancel / retry."""

from __future__ import annotations

from typing import Any

import streamlit as st

from cnnq.dashboard import charts
from cnnq.dashboard.actions import cancel_job, retry_job
from cnnq.dashboard.queries import artifacts_frame, epoch_history, per_class_frame
from cnnq.dashboard.refresh import refresh_interval
from cnnq.db.jobs import JobNotFound, find_job, list_jobs
from cnnq.db.records import log_lines
from cnnq.db.session import session_scope
from cnnq.db.status import JobStatus
from cnnq.db.views import job_object
from cnnq.errors import UserError

STATUS_ICONS = {
    "QUEUED": ":material/schedule:",
    "RUNNING": ":material/autorenew:",
    "SUCCEEDED": ":material/check_circle:",
    "FAILED": ":material/error:",
    "CANCELLED": ":material/cancel:",
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
    status = JobStatus(job["status"])
    if status == JobStatus.SUCCEEDED:
        return
    buttons = st.container(horizontal=True)
    if not status.finished and buttons.button("Cancel", icon=":material/stop_circle:", key="cancel"):
        new_status = cancel_job(job["id"])
        st.toast(f"{job['id']}: cancel requested ({new_status})")
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


def show_header(job: dict[str, Any]) -> None:
    st.title(job["id"])
    status = job["status"]
    facts = [
        f"{STATUS_ICONS.get(status, '')} **{status}**",
        f"kind **{job['kind']}**",
        f"queue **{job['queue']}**",
        f"attempts **{job['attempts']}**",
    ]
    if job["worker"]:
        facts.append(f"worker **{job['worker']}**")
    if job["device"]:
        facts.append(f"device **{job['device']}**")
    if job["parent_id"]:
        facts.append(f"bulk job [{job['parent_id']}](job?job={job['parent_id']})")
    st.markdown(" · ".join(facts))
    if status in ("QUEUED", "RUNNING"):
        st.progress(min(max(job["progress"] or 0.0, 0.0), 1.0), text=job["message"] or status.lower())
    elif job["message"]:
        st.caption(job["message"])


def show_error(job: dict[str, Any]) -> None:
    error = job["error"]
    if not error:
        return
    st.error(f"**{error['type'] or 'Error'}**: {error['message'] or ''}", icon=":material/error:")
    if error["traceback"]:
        st.code(error["traceback"], language="python")


def show_training(job_id: str, job: dict[str, Any]) -> None:
    with session_scope() as session:
        history = epoch_history(session, job_id)
    if history.empty:
        st.info("No epoch has finished yet.")
        return
    last = history.iloc[-1]
    cards = st.columns(4)
    cards[0].metric("epochs", f"{len(history)} / {job['spec'].get('epochs', '?')}")
    for card, name in zip(cards[1:], ("val_accuracy", "val_loss", "images_per_second"), strict=True):
        if name in history.columns:
            card.metric(name, f"{last[name]:.4g}")
    top = st.columns(2)
    top[0].plotly_chart(charts.loss_figure(history), key="loss_chart")
    top[1].plotly_chart(charts.accuracy_figure(history), key="accuracy_chart")
    bottom = st.columns(2)
    bottom[0].plotly_chart(charts.lr_figure(history), key="lr_chart")
    bottom[1].plotly_chart(charts.throughput_figure(history), key="throughput_chart")
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
    left, right = st.columns(2)
    if result.get("confusion_matrix") is not None:
        left.plotly_chart(charts.confusion_figure(result["confusion_matrix"], classes), key="confusion_chart")
    roc = result.get("roc")
    if roc and len(classes) == 2:
        right.plotly_chart(
            charts.roc_figure(roc, result.get("threshold"), metrics.get("roc_auc")), key="roc_chart"
        )
    if result.get("threshold") is not None:
        positive = result.get("positive_class") or (classes[-1] if classes else "the positive class")
        st.caption(f"Threshold {float(result['threshold']):.4f} on the probability of {positive}")
    per_class = per_class_frame(result)
    if not per_class.empty:
        st.subheader("Per class")
        st.dataframe(per_class, hide_index=True, key="per_class_table")


def show_artifacts(job_id: str) -> None:
    with session_scope() as session:
        frame = artifacts_frame(session, job_id)
    st.subheader("Artifacts")
    if frame.empty:
        st.caption("None yet.")
        return
    st.dataframe(frame[["kind", "size", "path", "sha256"]], hide_index=True, width="stretch", key="artifacts")


def show_logs(job_id: str) -> None:
    with session_scope() as session:
        lines = [line.line for line in log_lines(session, job_id)][-500:]
    if lines:
        with st.expander(f"Log ({len(lines)} lines)"):
            st.code("\n".join(lines), language=None)


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
            job = job_object(session, find_job(session, job_id))
        live = not JobStatus(job["status"]).finished
        if live != initially_live:
            st.rerun()  # stop the timer once it has finished
        show_header(job)
        show_actions(job)
        show_error(job)
        if job["kind"] == "train" and (job["history"] or live):
            st.subheader("Training")
            show_training(job_id, job)
        elif job["kind"] == "eval" and (job["result"] or live):
            st.subheader("Evaluation")
            show_evaluation(job)
        elif job["kind"] == "infer":
            st.page_link(
                "screens/bulk.py",
                label="Scores of this job",
                icon=":material/stacks:",
                query_params={"job": job["parent_id"] or job_id},
            )
        show_artifacts(job_id)
        with st.expander("Spec", expanded=False):
            st.json(job["spec"])
        show_logs(job_id)

    job_view()
