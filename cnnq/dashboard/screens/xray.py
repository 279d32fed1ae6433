"""X-ray check: score one uploaded image with a trained model and show its Grad-CAM heatmap."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnq.dashboard.model_cache import model_of_job
from cnnq.dashboard.queries import trained_models
from cnnq.dashboard.xray_check import decode_upload, score_image
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
    score = score_image(image, model_of_job(str(model_row["id"])), upload.name)
except UserError as error:
    st.error(str(error), icon=":material/error:")
    st.stop()

cards = st.columns(3)
cards[0].metric("label", score.label)
# With a threshold, show the probability it is compared with (the positive class's), not the label's.
shown = score.positive_class if score.threshold is not None and score.positive_class else score.label
cards[1].metric(f"probability of {shown}", f"{score.probabilities.get(shown, score.probability):.3f}")
cards[2].metric(
    "threshold",
    f"{score.threshold:.3f}" if score.threshold is not None else "none stored",
    help=f"The model's stored threshold, on the probability of {score.positive_class}"
    if score.threshold is not None
    else "The model has no stored threshold: the most probable class wins (0.5 for two classes).",
)
left, right = st.columns(2)
left.image(score.image, caption=f"{upload.name} ({score.image.width}×{score.image.height})", width=420)
right.image(
    score.heatmap_overlay,
    caption="Grad-CAM: where the model looked (blue: little weight → red: most weight)",
    width=420,
)
st.dataframe(
    pd.DataFrame({"class": list(score.probabilities), "probability": list(score.probabilities.values())}),
    hide_index=True,
    key="probabilities",
)
