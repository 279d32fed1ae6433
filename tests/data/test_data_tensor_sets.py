"""MNIST from the real IDX files and CIFAR-10 from real-format pickles, held as tensors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnq.data.registry import DataRequest, load_dataset
from cnnq.data.tensor_sets import convert_channels, read_cifar10
from cnnq.errors import UserError
from tests.sample_data import CIFAR10_CLASSES, make_cifar10, make_mnist, read_cifar_batch

CPU = torch.device("cpu")


def _raw(batch: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Undo the normalisation: back to 0..255 pixel values."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return ((batch * s + m) * 255).round()


def test_mnist_from_the_real_files(mnist_root: Path) -> None:
    bundle = load_dataset(DataRequest("mnist", mnist_root, batch_size=500), CPU)
    assert bundle.classes == [str(i) for i in range(10)]
    assert (bundle.in_channels, bundle.image_size) == (1, 28)
    assert (bundle.mean, bundle.std) == ((0.1307,), (0.3081,))
    assert bundle.train.num_samples + bundle.val.num_samples == 60000
    assert bundle.val.num_samples == pytest.approx(6000, abs=10)
    assert bundle.test is not None and bundle.test.num_samples == 10000
    assert sum(bundle.class_counts) == bundle.train.num_samples
    assert len(bundle.test) == 20
    images, labels = next(bundle.train.batches(0))
    assert images.shape == (500, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and int(labels.min()) >= 0 and int(labels.max()) <= 9
    assert abs(float(images.mean())) < 0.1 and abs(float(images.std()) - 1) < 0.1
    first, _ = next(bundle.test.batches(None))
    raw = _raw(first, bundle.mean, bundle.std)
    assert float(raw.min()) == 0 and float(raw.max()) == 255


def test_mnist_limit_takes_the_first_images_and_carves_validation_from_them(mnist_root: Path) -> None:
    bundle = load_dataset(DataRequest("mnist", mnist_root, limit=300, batch_size=64), CPU)
    assert bundle.train.num_samples + bundle.val.num_samples == 300
    assert bundle.test is not None and bundle.test.num_samples == 300
    train_labels = torch.cat([y for _, y in bundle.train.batches(None)])
    val_labels = torch.cat([y for _, y in bundle.val.batches(None)])
    assert bundle.class_counts == torch.bincount(train_labels, minlength=10).tolist()
    assert set(val_labels.tolist()) == set(range(10))  # stratified: every digit held out


def test_cifar10_pickles_round_trip(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path, n_train=120, n_test=30, seed=5)
    folder = root / "cifar-10-batches-py"
    written = [read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    assert written[0][b"data"].dtype == np.uint8 and written[0][b"data"].shape == (24, 3072)
    assert isinstance(written[0][b"batch_label"], bytes) and isinstance(written[0][b"filenames"][0], bytes)
    with open(folder / "data_batch_1", "rb") as f:  # how torchvision opens them
        assert set(pickle.load(f, encoding="latin1")) == {"data", "labels", "batch_label", "filenames"}
    assert read_cifar_batch(folder / "batches.meta")[b"label_names"][3] == b"cat"

    images, labels, classes = read_cifar10(root, train=True)
    assert classes == list(CIFAR10_CLASSES)
    expected = np.concatenate([w[b"data"] for w in written]).reshape(-1, 3, 32, 32)
    assert np.array_equal(images.numpy(), expected)
    assert labels.tolist() == [label for w in written for label in w[b"labels"]]


def test_cifar10_bundle_batches_in_order_hold_the_written_pixels(cifar_root: Path) -> None:
    bundle = load_dataset(DataRequest("cifar10", cifar_root, batch_size=16), CPU)
    assert (bundle.in_channels, bundle.image_size, len(bundle.classes)) == (3, 32, 10)
    assert bundle.test is not None
    test = read_cifar_batch(cifar_root / "cifar-10-batches-py" / "test_batch")
    images = torch.cat([x for x, _ in bundle.test.batches(None)])
    labels = torch.cat([y for _, y in bundle.test.batches(None)])
    assert labels.tolist() == test[b"labels"]
    expected = torch.from_numpy(test[b"data"].reshape(-1, 3, 32, 32).astype(np.float32))
    assert torch.equal(_raw(images, bundle.mean, bundle.std), expected)


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path, n_train=20, n_test=10)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(UserError, match=r"refusing to load builtins\.print"):
        load_dataset(DataRequest("cifar10", root), CPU)


def test_channels_convert_like_pil(cifar_root: Path, tmp_path: Path) -> None:
    images, _, _ = read_cifar10(cifar_root, train=False)
    gray = convert_channels(images[:4], 1)
    for i in range(4):
        pil_gray = Image.fromarray(images[i].permute(1, 2, 0).numpy(), "RGB").convert("L")
        assert np.array_equal(gray[i, 0].numpy(), np.asarray(pil_gray))
    bundle = load_dataset(DataRequest("cifar10", cifar_root, channels=1), CPU)
    assert bundle.in_channels == 1 and len(bundle.mean) == 1
    assert next(bundle.train.batches(0))[0].shape[1] == 1

    mnist = load_dataset(DataRequest("mnist", make_mnist(tmp_path), channels=3, image_size=32), CPU)
    batch, _ = next(mnist.train.batches(None))
    assert batch.shape[1:] == (3, 32, 32) and mnist.mean == (0.1307,) * 3
    assert torch.equal(batch[:, 0], batch[:, 2])


def test_batches_in_order_are_reproducible_and_epochs_shuffle_deterministically(tmp_path: Path) -> None:
    root = make_mnist(tmp_path, n_train=200, n_test=40)
    request = DataRequest("mnist", root, batch_size=32, seed=7)
    one, two = load_dataset(request, CPU), load_dataset(request, CPU)
    ordered = [y for _, y in one.train.batches(None)]
    assert torch.equal(torch.cat(ordered), torch.cat([y for _, y in two.train.batches(None)]))
    epoch_1 = torch.cat([y for _, y in one.train.batches(1)])
    assert torch.equal(epoch_1, torch.cat([y for _, y in two.train.batches(1)]))
    assert not torch.equal(epoch_1, torch.cat([y for _, y in one.train.batches(2)]))
    assert not torch.equal(epoch_1, torch.cat(ordered))
    assert sorted(epoch_1.tolist()) == sorted(torch.cat(ordered).tolist())  # a permutation, all samples
    other_seed = load_dataset(DataRequest("mnist", root, batch_size=32, seed=8), CPU)
    assert not torch.equal(epoch_1[:32], next(other_seed.train.batches(1))[1])


def test_a_last_batch_of_one_joins_the_previous_batch(tmp_path: Path) -> None:
    root = make_mnist(tmp_path, n_train=100, n_test=33)
    bundle = load_dataset(DataRequest("mnist", root, batch_size=16), CPU)
    assert bundle.test is not None
    sizes = [len(y) for _, y in bundle.test.batches(None)]
    assert sizes == [16, 17] and len(bundle.test) == 2


def test_preprocess_image_matches_the_tensor_path(tmp_path: Path, cifar_root: Path) -> None:
    from cnnq.data.transforms import preprocess_image

    for root, dataset, mode in ((make_mnist(tmp_path), "mnist", "L"), (cifar_root, "cifar10", "RGB")):
        bundle = load_dataset(DataRequest(dataset, root, batch_size=8), CPU)
        assert bundle.test is not None
        batch, _ = next(bundle.test.batches(None))
        pixels = _raw(batch, bundle.mean, bundle.std).to(torch.uint8)
        for i in range(3):
            array = pixels[i].permute(1, 2, 0).numpy()
            image = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode)
            one = preprocess_image(
                image,
                in_channels=bundle.in_channels,
                image_size=bundle.image_size,
                mean=bundle.mean,
                std=bundle.std,
            )
            assert torch.allclose(one, batch[i], atol=1e-5)
