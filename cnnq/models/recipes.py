"""Default training recipes, keyed by model and data: what a `train` job uses for the options its user
leaves out.

Most models train well with the base recipe of `TrainSpec` (SGD with momentum 0.95, OneCycle, the
optimizer's weight decay, no augmentation). A model that does measurably better with other settings
has them here, for the data they were measured on (`ANY_DATA`: whatever the data). A custom folder
or X-ray set gets only what holds for any data: augmentation chosen on MNIST costs a folder of other
images accuracy and time (README, Measured), so there it is the user's to ask for. Light on imports:
specs use it.
"""

from __future__ import annotations

from typing import Any

ANY_DATA = "*"

RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    # PyTorch's MNIST example net: its two dropout layers want Adam, whatever the data.
    ("mnist-cnn", ANY_DATA): {"optimizer": "adam"},
    # On MNIST, light augmentation lifts it from 99.1-99.2% to 99.24-99.26% test accuracy in 5 epochs
    # (LeNet does better without both).
    ("mnist-cnn", "mnist"): {"optimizer": "adam", "augment": "rotation=10,shift=0.1"},
}

# Peak learning rate per optimizer (OneCycle's max_lr; the starting lr for the other schedules).
DEFAULT_LR = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.1}
# Weight decay per optimizer: L2 for SGD, none for Adam (as in torch), decoupled for AdamW (torch's).
DEFAULT_WEIGHT_DECAY = {"adam": 0.0, "adamw": 1e-2, "sgd": 5e-4}

RECIPE_FIELDS = ("optimizer", "augment")
"""The options a recipe may set; the CLI leaves them unset so that the recipe can fill them."""


def recipe_for(model: str, dataset: str | None) -> dict[str, Any]:
    """The options `model` gets on `dataset` when they are not given ({}: the base recipe)."""
    if dataset is not None and (model, dataset) in RECIPES:
        return dict(RECIPES[model, dataset])
    return dict(RECIPES.get((model, ANY_DATA), {}))


def recipes_by_data(model: str, datasets: list[str]) -> dict[str, dict[str, Any]]:
    """`recipe_for` each dataset, for `cnnq models`."""
    return {dataset: recipe_for(model, dataset) for dataset in datasets}
