"""X-ray check: score one uploaded image with a trained model and show its Grad-CAM heatmap."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnnq.dashboard.queries import trained_models
from cnnq.dashboard.xray_check import decode_upload, score_image
from cnnq.db.jobs import get_job
from cnnq.db.records import model_file_of
from cnnq.db.session import session_scope
from cnnq.errors import UserError
from cnnq.jobs.checkpoint import LoadedModel, load_model_file


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def cached_model(path: str, modified: float) -> LoadedModel:
    """One load per model file (and version of it) for the whole dashboard process."""
    return load_model_file(path, "cpu")


st.title("X-ray check")

with session_scope() as session:
    models = trained_models(session)
if models.empty:
    st.info("No trained model yet: train one with `cnnq submit train --dataset xray ...`.")
    st.stop()

choice = st.selectbox("Model", models["label"], key="xray_model")
model_row = models[models["label"] == choice].iloc[0]
upload = st.file_uploader("Image (PNG, JPEG or DICOM)", key="xray_upload")
if upload is None:
    st.caption("Upload an image to score it.")
    st.stop()

try:
    image = decode_upload(upload.name, upload.getvalue())  # refuses an image over the pixel cap unread
    with session_scope() as session:  # the same check as `--model-from`: a SUCCEEDED job's model
        model_file = model_file_of(session, get_job(session, str(model_row["id"])))
    score = score_image(image, cached_model(str(model_file), model_file.stat().st_mtime), upload.name)
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
    f"{score.threshold:.3f}" if score.threshold is not None else "none",
    help=f"On the probability of {score.positive_class}"
    if score.threshold is not None
    else "The model has no threshold: the most probable class wins.",
)
left, right = st.columns(2)
left.image(score.image, caption=f"{upload.name} ({score.image.width}×{score.image.height})", width=420)
right.image(score.heatmap_overlay, caption="Grad-CAM: where the model looked", width=420)
st.dataframe(
    pd.DataFrame({"class": list(score.probabilities), "probability": list(score.probabilities.values())}),
    hide_index=True,
    key="probabilities",
)
