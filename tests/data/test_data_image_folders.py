"""ImageFolder trees and the chest X-ray layout: classes, splits, corrupt files, DataLoader workers."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnq.data.decode import load_image
from cnnq.data.registry import DataRequest, load_dataset
from cnnq.data.transforms import preprocess_image
from cnnq.errors import UserError
from tests.sample_data import corrupt_files, make_chest_xray, make_image_folder

CPU = torch.device("cpu")


def _labels(source) -> list[int]:  # type: ignore[no-untyped-def]
    return torch.cat([y for _, y in source.batches(None)]).tolist()


def _files(source) -> list[str]:  # type: ignore[no-untyped-def]
    return list(source.files.paths)


def test_folder_without_splits_carves_a_seeded_stratified_validation_set(folder_tree: Path) -> None:
    request = DataRequest("folder", folder_tree, image_size=24, val_split=0.2, num_workers=0, seed=1)
    bundle = load_dataset(request, CPU)
    assert bundle.classes == ["cat", "dog", "fox"]
    assert (bundle.in_channels, bundle.image_size) == (3, 24)
    assert (bundle.mean, bundle.std) == ((0.5,) * 3, (0.5,) * 3)
    assert bundle.test is None and any("no test" in note for note in bundle.notes)
    assert bundle.class_counts == [16, 16, 16] and bundle.val.num_samples == 12
    assert sorted(_labels(bundle.val)) == [0] * 4 + [1] * 4 + [2] * 4
    train, val = set(_files(bundle.train)), set(_files(bundle.val))
    assert not train & val and len(train | val) == 60

    again = load_dataset(request, CPU)
    assert _files(again.val) == _files(bundle.val)
    other = load_dataset(
        DataRequest("folder", folder_tree, image_size=24, val_split=0.2, num_workers=0, seed=2), CPU
    )
    assert set(_files(other.val)) != val

    images, labels = next(bundle.train.batches(0))
    assert images.shape == (min(64, 48), 3, 24, 24) and images.dtype == torch.float32
    assert labels.dtype == torch.int64


def test_folder_with_train_and_test_folders_uses_them(split_tree: Path) -> None:
    bundle = load_dataset(DataRequest("folder", split_tree, image_size=32, num_workers=0), CPU)
    assert bundle.classes == ["cat", "dog"]
    assert bundle.test is not None and bundle.test.num_samples == 8
    assert all("/test/" in path for path in _files(bundle.test))
    assert all("/train/" in path for path in _files(bundle.train) + _files(bundle.val))
    assert bundle.train.num_samples + bundle.val.num_samples == 32
    assert sorted(_labels(bundle.test)) == [0] * 4 + [1] * 4


def test_limit_keeps_a_seeded_random_subset(folder_tree: Path) -> None:
    request = DataRequest("folder", folder_tree, image_size=16, limit=30, num_workers=0, seed=3)
    bundle = load_dataset(request, CPU)
    assert bundle.train.num_samples + bundle.val.num_samples == 30
    assert len(set(_labels(bundle.train))) == 3  # shuffled before the cut, not the first class only
    assert _files(load_dataset(request, CPU).train) == _files(bundle.train)


def test_chest_xray_skips_corrupt_files_and_carves_validation_when_val_is_tiny(chest_xray: Path) -> None:
    bundle = load_dataset(DataRequest("xray", chest_xray, image_size=40, num_workers=0), CPU)
    assert bundle.classes == ["NORMAL", "PNEUMONIA"]
    assert (bundle.in_channels, bundle.image_size, bundle.mean, bundle.std) == (1, 40, (0.5,), (0.5,))
    assert sorted(path for path, _ in bundle.skipped) == sorted(str(p) for p in corrupt_files(chest_xray))
    reasons = dict(bundle.skipped)
    assert "truncated" in reasons[str(chest_xray / "train/PNEUMONIA/broken_truncated.jpeg")]
    assert not any(path.endswith(".txt") for path in _files(bundle.train))
    # 30 + 60 readable train images + 2 + 2 from the tiny val/, then 10% of each class carved
    assert bundle.train.num_samples + bundle.val.num_samples == 30 + 60 + 4
    assert bundle.class_counts == [32 - 3, 62 - 6]
    assert sorted(_labels(bundle.val)) == [0] * 3 + [1] * 6
    assert any("merged into train" in note for note in bundle.notes)
    assert any("validation carved from train: 10%" in note for note in bundle.notes)
    assert bundle.test is not None and bundle.test.num_samples == 20
    images, labels = next(bundle.train.batches(0))
    assert images.shape[1:] == (1, 40, 40) and set(labels.tolist()) <= {0, 1}
    assert sum(len(y) for _, y in bundle.train.batches(1)) == bundle.train.num_samples


def test_chest_xray_uses_a_big_enough_val_folder_and_accepts_the_parent_dir(tmp_path: Path) -> None:
    chest = make_chest_xray(
        tmp_path, per_class={"train": (10, 20), "val": (3, 3), "test": (2, 2)}, corrupt=0, size=32
    )
    bundle = load_dataset(DataRequest("xray", chest.parent, image_size=32, num_workers=0), CPU)
    assert bundle.val.num_samples == 6 and bundle.class_counts == [10, 20] and bundle.skipped == []
    assert all("/val/" in path for path in _files(bundle.val))
    assert any("as given" in note for note in bundle.notes)


def test_xray_val_folder_without_every_class_is_not_used_alone(tmp_path: Path) -> None:
    chest = make_chest_xray(tmp_path, per_class={"train": (10, 20), "val": (0, 8), "test": (2, 2)}, corrupt=0)
    bundle = load_dataset(DataRequest("xray", chest, image_size=16, num_workers=0), CPU)
    assert 0 in _labels(bundle.val) and 1 in _labels(bundle.val)


def test_preprocess_image_matches_what_training_saw(chest_xray: Path, split_tree: Path) -> None:
    for dataset, root in (("xray", chest_xray), ("folder", split_tree)):
        bundle = load_dataset(DataRequest(dataset, root, image_size=28, num_workers=0, batch_size=8), CPU)
        assert bundle.test is not None
        images, _ = next(bundle.test.batches(None))
        for i, path in enumerate(_files(bundle.test)[:3]):
            image = load_image(path, min_size=28)  # as inference decodes a file
            one = preprocess_image(
                image, in_channels=bundle.in_channels, image_size=28, mean=bundle.mean, std=bundle.std
            )
            assert torch.equal(one, images[i])


def test_rgb_files_can_be_read_as_one_channel(split_tree: Path) -> None:
    bundle = load_dataset(DataRequest("folder", split_tree, image_size=20, channels=1, num_workers=0), CPU)
    assert bundle.in_channels == 1 and bundle.mean == (0.5,)
    assert next(bundle.val.batches(None))[0].shape[1:] == (1, 20, 20)


def test_dataloader_workers_decode_the_files(chest_xray: Path, streamed: None) -> None:
    before = {p.pid for p in multiprocessing.active_children()}
    bundle = load_dataset(DataRequest("xray", chest_xray, image_size=32, num_workers=2, batch_size=16), CPU)
    with_workers = [y for _, y in bundle.train.batches(0)]
    workers = {p.pid for p in multiprocessing.active_children()} - before
    assert len(workers) == 2
    plain = load_dataset(DataRequest("xray", chest_xray, image_size=32, num_workers=0, batch_size=16), CPU)
    assert torch.equal(torch.cat(with_workers), torch.cat([y for _, y in plain.train.batches(0)]))
    assert torch.equal(next(bundle.val.batches(None))[0], next(plain.val.batches(None))[0])
    del bundle


def test_a_file_broken_after_indexing_is_left_out_of_its_batch(tmp_path: Path, streamed: None) -> None:
    tree = make_image_folder(tmp_path / "tree", per_class=6, size=16)
    bundle = load_dataset(DataRequest("folder", tree, image_size=16, num_workers=0, batch_size=64), CPU)
    victim = _files(bundle.train)[0]
    Path(victim).write_bytes(b"")
    assert sum(len(y) for _, y in bundle.train.batches(0)) == bundle.train.num_samples - 1


def test_sixteen_bit_png_is_stretched_to_eight_bits(tmp_path: Path) -> None:
    pixels = (np.linspace(1000, 5000, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as image:
        tensor = preprocess_image(image, in_channels=1, image_size=64, mean=(0.0,), std=(1.0,))
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0


def test_an_empty_tree_is_refused(tmp_path: Path) -> None:
    tree = make_image_folder(tmp_path / "tree", per_class=2, size=8)
    for image in tree.rglob("*.*"):
        image.write_bytes(b"")
    with pytest.raises(UserError, match="no readable images"):
        load_dataset(DataRequest("folder", tree, num_workers=0), CPU)
    shutil.rmtree(tree)


def _load_in_child(chest: str, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    bundle = load_dataset(DataRequest("xray", Path(chest), image_size=16, num_workers=2, batch_size=32), CPU)
    seen = sum(len(y) for _, y in bundle.train.batches(0))
    results.put((seen, bundle.train.num_samples, len(multiprocessing.active_children()), bundle.notes))


@pytest.mark.slow
@pytest.mark.parametrize("daemon", [False, True])
def test_jobs_in_spawned_processes_load_folder_sets(chest_xray: Path, daemon: bool, streamed: None) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_load_in_child, args=(str(chest_xray), results), daemon=daemon)
    child.start()
    seen, total, children, notes = results.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0 and seen == total
    if daemon:  # cannot have children: decodes in the process itself and says so
        assert children == 0 and any("daemonic" in note for note in notes)
    else:
        assert children == 2 and not any("daemonic" in note for note in notes)
