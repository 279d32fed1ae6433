"""Submit-time checks: each refusal names where cnnq looked and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnq.data.registry import DataRequest, check_dataset, fetch_dataset, load_dataset
from cnnq.errors import UserError
from tests.sample_data import make_chest_xray, make_cifar10, make_mnist


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_missing_public_set_names_the_path_and_the_fetch_command(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError) as error:
        check_dataset(DataRequest(name, tmp_path))
    message = str(error.value)
    assert str(tmp_path) in message
    assert f"cnnq data fetch {name} --data-root {tmp_path}" in message


def test_a_partly_copied_cifar_set_names_the_missing_file(tmp_path: Path) -> None:
    make_cifar10(tmp_path, n_train=20, n_test=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(UserError, match="data_batch_4"):
        check_dataset(DataRequest("cifar10", tmp_path))


def test_present_sets_pass(tmp_path: Path) -> None:
    check_dataset(DataRequest("mnist", make_mnist(tmp_path / "m")))
    check_dataset(DataRequest("cifar10", make_cifar10(tmp_path / "c", n_train=20, n_test=10)))
    chest = make_chest_xray(tmp_path / "x", per_class={"train": (2, 2)}, corrupt=0)
    check_dataset(DataRequest("xray", chest))
    check_dataset(DataRequest("xray", chest.parent))
    check_dataset(DataRequest("folder", chest / "train"))


def test_missing_folder_and_xray_sets_say_what_layout_is_expected(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=rf"{tmp_path} has no class folders.*<class>/"):
        check_dataset(DataRequest("folder", tmp_path))
    with pytest.raises(UserError, match=rf"in or under {tmp_path}.*NORMAL,PNEUMONIA"):
        check_dataset(DataRequest("xray", tmp_path))


def test_bad_request_values_are_refused_before_loading(tmp_path: Path) -> None:
    root = make_mnist(tmp_path)
    with pytest.raises(UserError, match="--augment: unknown token 'spin=3'"):
        check_dataset(DataRequest("mnist", root, augment="spin=3"))
    with pytest.raises(UserError, match=r"unknown dataset 'imagenet'.*mnist, cifar10, folder, xray"):
        check_dataset(DataRequest("imagenet", root))
    with pytest.raises(UserError, match="channels must be 1 or 3"):
        check_dataset(DataRequest("mnist", root, channels=2))


def test_fetch_refuses_sets_it_cannot_download(tmp_path: Path) -> None:
    for name in ("folder", "xray", "imagenet"):
        with pytest.raises(UserError, match="cnnq downloads only mnist, cifar10"):
            fetch_dataset(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_request_can_carry_a_models_normalisation(tmp_path: Path) -> None:
    root = make_mnist(tmp_path)
    bundle = load_dataset(DataRequest("mnist", root, mean=(0.5,), std=(0.25,)), torch.device("cpu"))
    assert (bundle.mean, bundle.std) == ((0.5,), (0.25,))
    images, _ = next(bundle.test.batches(None)) if bundle.test else (None, None)
    assert images is not None and float(images.min()) == pytest.approx(-2.0)
