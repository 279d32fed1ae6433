"""The trained models the X-ray check and the review queue's Grad-CAM score with, loaded once per
dashboard process and model file version (`cnnq.jobs.model_cache`, as a job process keeps them).

Torch is imported only when a model is first asked for, so pages that never score an image stay light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from PIL import Image

from cnnq.db.jobs import get_job
from cnnq.db.records import model_file_of
from cnnq.db.session import session_scope

if TYPE_CHECKING:
    from cnnq.jobs.checkpoint import LoadedModel


def model_of_job(train_id: str) -> LoadedModel:
    """Training job `train_id`'s model, with the same check as `--model-from` (a SUCCEEDED job's model);
    a one-line UserError otherwise."""
    from cnnq.jobs.model_cache import cached_model  # torch, once a page scores an image

    with session_scope() as session:
        model_file: Path = model_file_of(session, get_job(session, train_id))
    with st.spinner("Loading the model…"):
        return cached_model(model_file, "cpu")


def gradcam_overlay(loaded: LoadedModel, image: Image.Image, name: str) -> tuple[str, Image.Image]:
    """The model's label for `image` and its Grad-CAM overlaid on it."""
    from cnnq.jobs.gradcam import explain_image, overlay

    explained = explain_image(loaded, image, name=name)
    return explained.label, overlay(image, explained.heatmap)
