"""X-ray check: score one uploaded image with a trained model and show its Grad-CAM heatmap."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnq.dashboard.model_cache import model_of_job
from cnnq.dashboard.queries import trained_models
from cnnq.dashboard.xray_check import decode_upload
from cnnq.db.session import session_scope
from cnnq.errors import UserError

XRAY_DATASET = "xray"

st.title("X-ray check")

with session_scope() as session:
    models = trained_models(session)
if models.empty:
    st.info("No trained model yet: train one with `cnnq submit train --dataset xray ...`.")
    st.stop()

xray_models = models[models["dataset"] == XRAY_DATASET]
every_model = st.toggle(
    "Offer every trained model",
    value=xray_models.empty,
    key="xray_every_model",
    help="Only models trained on chest X-rays are offered unless this is on.",
)
offered = models if every_model else xray_models
choice = st.selectbox("Model", offered["label"], key="xray_model")
model_row = offered[offered["label"] == choice].iloc[0]
if model_row["dataset"] != XRAY_DATASET:
    st.warning(
        f"{model_row['id']} was trained on {model_row['dataset'] or 'another dataset'}, not on chest X-rays: "
        "its label for an X-ray means nothing clinically.",
        icon=":material/warning:",
    )
upload = st.file_uploader("Image (PNG, JPEG or DICOM)", key="xray_upload")
if upload is None:
    st.caption("Upload an image to score it.")
    st.stop()

try:
    image = decode_upload(upload.name, upload.getvalue())  # refuses an image over the pixel cap unread
    # The same check as `--model-from`: a SUCCEEDED job's model.
    loaded = model_of_job(str(model_row["id"]))
    from cnnq.jobs.gradcam import explain_image, overlay  # torch: imported once an image is scored

    score = explain_image(loaded, image, name=upload.name)  # as a bulk job scores it, with Grad-CAM
except UserError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()

cards = st.columns(3)
cards[0].metric("label", score.label)
# The score: the positive class's probability (the one a threshold applies to), else the label's.
cards[1].metric(f"score (probability of {score.positive_class or score.label})", f"{score.score:.3f}")
cards[2].metric(
    "threshold",
    f"{score.threshold:.3f}" if score.threshold is not None else "none stored",
    help=f"The model's stored threshold, on the probability of {score.positive_class}"
    if score.threshold is not None
    else "The model has no stored threshold: the most probable class wins (0.5 for two classes).",
)
left, right = st.columns(2)
left.image(image, caption=f"{upload.name} ({image.width}×{image.height})", width=420)
right.image(
    overlay(image, score.heatmap),
    caption="Grad-CAM: where the model looked (blue: little weight → red: most weight)",
    width=420,
)
st.dataframe(
    pd.DataFrame({"class": list(score.probabilities), "probability": list(score.probabilities.values())}),
    hide_index=True,
    key="probabilities",
)
