"""`cnnq explain`: score one image and write its Grad-CAM heatmap."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnq.cli.output import console, print_json
from cnnq.errors import UserError


def explain(
    image: Path = typer.Argument(..., help="The image (PNG, JPEG, DICOM...) to explain."),
    model_from: str = typer.Option(
        ..., "--model-from", help="A training job (id or prefix) or its model file."
    ),
    out: Path = typer.Option(..., "--out", help="Where to write the heatmap over the image (PNG)."),
    class_name: str | None = typer.Option(
        None, "--class", help="Explain this class (default: the predicted label)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the prediction as one JSON object."),
) -> None:
    """Score one image and write its Grad-CAM heatmap: where the model looked for the label."""
    from cnnq.cli.spec_options import resolve_model_from
    from cnnq.data.decode import ImageDecodeError, ImageTooLarge, load_image

    model_file = resolve_model_from(model_from)
    try:
        picture = load_image(image.expanduser())
    except ImageTooLarge as error:
        raise UserError(error.advice(str(image))) from None
    except ImageDecodeError as error:
        raise UserError(f"{image}: {error.reason}; give a PNG, JPEG or DICOM image") from None
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--out {out}: write the heatmap to a .png or .jpg file")

    from cnnq.jobs.checkpoint import load_model_file
    from cnnq.jobs.device import configure_cpu, pick_device
    from cnnq.jobs.gradcam import explain_image, overlay

    configure_cpu()
    loaded = load_model_file(model_file, pick_device("auto"))
    explanation = explain_image(loaded, picture, class_name, name=str(image))
    out = out.expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    overlay(picture, explanation.heatmap).save(out)
    report = {
        "image": str(image),
        "label": explanation.label,
        "score": explanation.score,
        "probabilities": explanation.probabilities,
        "threshold": explanation.threshold,
        "positive_class": explanation.positive_class,
        "explained_class": explanation.explained_class,
        "heatmap": str(out),
    }
    if as_json:
        print_json(report)
        return
    positive = explanation.positive_class
    score_name = f"score P({positive})" if positive else "score"
    threshold = "" if explanation.threshold is None else f", threshold {explanation.threshold:.3f}"
    console.print(
        f"{image}: {explanation.label} ({score_name} {explanation.score:.3f}{threshold})", highlight=False
    )
    console.print(f"Grad-CAM for {explanation.explained_class} written to {out}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("explain")(explain)
