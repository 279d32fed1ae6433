"""Trained models loaded once per dashboard process, for the X-ray check and the review queue's Grad-CAM.

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


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def cached_model(path: str, modified: float) -> LoadedModel:
    """One load per model file (and version of it) for the whole dashboard process."""
    from cnnq.jobs.checkpoint import load_model_file

    return load_model_file(path, "cpu")


def model_of_job(train_id: str) -> LoadedModel:
    """Training job `train_id`'s model, with the same check as `--model-from` (a SUCCEEDED job's model);
    a one-line UserError otherwise."""
    with session_scope() as session:
        model_file: Path = model_file_of(session, get_job(session, train_id))
    return cached_model(str(model_file), model_file.stat().st_mtime)


def gradcam_overlay(loaded: LoadedModel, image: Image.Image, name: str) -> tuple[str, Image.Image]:
    """The model's label for `image` and its Grad-CAM overlaid on it."""
    from cnnq.jobs.gradcam import explain_image, overlay

    explained = explain_image(loaded, image, name=name)
    return explained.label, overlay(image, explained.heatmap)
