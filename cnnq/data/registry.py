"""The datasets cnnq knows, loaded in a job and fetched; their facts and the check at submit are in
`cnnq.data.catalog` (no torch), re-exported here.

MNIST and CIFAR-10: the official test set is the test split; validation is a seeded, stratified
`val_split` carved from the training set; `limit` keeps the first N of the training file (and of
the test file). Folder and X-ray rules are in `folder_layouts`.
`mean`/`std` in a request override the dataset's (e.g. to evaluate with a model's own).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import torch

from cnnq.data import tensor_sets
from cnnq.data.augment import Augmentation, parse_augment
from cnnq.data.bundle import BatchFinisher, BatchSource, DatasetBundle
from cnnq.data.catalog import (
    DATASETS,
    DataRequest,
    DatasetFacts,
    check_dataset,
    cifar10_folder,
    dataset_facts,
    mnist_folder,
    xray_root,
)
from cnnq.data.folder_layouts import index_splits, split_dirs
from cnnq.data.image_folders import LoaderBatchSource
from cnnq.data.memory_cache import HeldFiles, decode_files, decoded_bytes
from cnnq.data.splits import class_counts, stratified_split
from cnnq.data.survey import choose_input, survey_files
from cnnq.errors import UserError
from cnnq.settings import format_bytes, get_settings

__all__ = [
    "DATASETS",
    "DataRequest",
    "DatasetBundle",
    "DatasetFacts",
    "check_dataset",
    "dataset_facts",
    "fetch_dataset",
    "load_dataset",
]


_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _statistics(request: DataRequest, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std for the channels asked: a request's own, else the dataset's, converted if needed."""
    facts = dataset_facts(request.dataset)
    mean, std = request.mean or facts.mean, request.std or facts.std
    if len(mean) == channels and len(std) == channels:
        return tuple(mean), tuple(std)
    if len(set(mean)) == 1 and len(set(std)) == 1:
        return (mean[0],) * channels, (std[0],) * channels
    # RGB statistics seen through the luma weights (std: an upper bound, fine for normalising).
    return (
        (sum(w * m for w, m in zip(_LUMA_WEIGHTS, mean, strict=True)),),
        (sum(w * s for w, s in zip(_LUMA_WEIGHTS, std, strict=True)),),
    )


def load_dataset(request: DataRequest, device: torch.device) -> DatasetBundle:
    """The dataset's splits as batch sources on `device` (see the module table for defaults)."""
    check_dataset(request)
    if request.dataset in ("mnist", "cifar10"):
        return _load_tensor_set(request, device)
    return _load_file_set(request, device)


def _finisher(
    request: DataRequest,
    device: torch.device,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    size: int,
    augmentation: Augmentation | None,
) -> BatchFinisher:
    mean, std = stats
    return BatchFinisher(
        device=device, mean=mean, std=std, image_size=size, augmentation=augmentation, seed=request.seed
    )


def _load_tensor_set(request: DataRequest, device: torch.device) -> DatasetBundle:
    facts = dataset_facts(request.dataset)
    assert facts.channels is not None and facts.image_size is not None  # MNIST's and CIFAR-10's own
    read = tensor_sets.read_mnist if request.dataset == "mnist" else tensor_sets.read_cifar10
    train_x, train_y, classes = read(request.root, True)
    test_x, test_y, _ = read(request.root, False)
    notes = []
    if request.limit is not None:
        train_x, train_y = train_x[: request.limit], train_y[: request.limit]
        test_x, test_y = test_x[: request.limit], test_y[: request.limit]
        notes.append(
            f"--limit {request.limit}: the first {len(train_y)} training and {len(test_y)} test images"
        )
    channels = request.channels or facts.channels
    train_x, test_x = (
        tensor_sets.convert_channels(train_x, channels),
        tensor_sets.convert_channels(test_x, channels),
    )
    kept, carved = (
        torch.from_numpy(i) for i in stratified_split(train_y.numpy(), request.val_split, request.seed)
    )
    notes.append(
        f"validation carved from train: {request.val_split:.0%} stratified, seed {request.seed} "
        f"({len(carved)} of {len(train_y)} images)"
    )
    size = request.image_size or facts.image_size
    stats = _statistics(request, channels)
    augmentation = parse_augment(request.augment)
    plain = _finisher(request, device, stats, size, None)

    def source(
        images: torch.Tensor, labels: torch.Tensor, finisher: BatchFinisher
    ) -> tensor_sets.TensorBatchSource:
        return tensor_sets.TensorBatchSource(images, labels, batch_size=request.batch_size, finisher=finisher)

    return DatasetBundle(
        classes=classes,
        in_channels=channels,
        image_size=size,
        mean=stats[0],
        std=stats[1],
        class_counts=class_counts(train_y[kept].numpy(), len(classes)),
        train=source(train_x[kept], train_y[kept], _finisher(request, device, stats, size, augmentation)),
        val=source(train_x[carved], train_y[carved], plain),
        test=source(test_x, test_y, plain),
        skipped=[],
        notes=notes,
    )


def _load_file_set(request: DataRequest, device: torch.device) -> DatasetBundle:
    """A folder or X-ray set: indexed and checked, its input taken from a sample of its images where
    the request leaves it out, then held in memory when it fits CNNQ_CACHE_MEMORY, else streamed."""
    tree = xray_root(request.root) if request.dataset == "xray" else request.root
    assert tree is not None
    splits = index_splits(
        split_dirs(tree),
        val_split=request.val_split,
        limit=request.limit,
        seed=request.seed,
        workers=request.num_workers,
    )
    workers = request.num_workers
    if workers and multiprocessing.current_process().daemon:
        workers = 0
        splits.notes.append(
            "decoding in the job process: a daemonic process (e.g. a prefork pool child) cannot start "
            "DataLoader workers"
        )
    channels, size, choices, survey = request.channels, request.image_size, [], None
    if channels is None or size is None:
        sampled = survey_files(splits.train + splits.val, workers=max(workers, 1))
        choice = choose_input(sampled, channels=channels, image_size=size, model=request.model)
        channels, size, survey = choice.channels, choice.image_size, sampled.as_dict()
        choices = [sampled.describe(), *choice.notes]
    stats = _statistics(request, channels)
    augmentation = parse_augment(request.augment)
    plain = _finisher(request, device, stats, size, None)
    finishers = [_finisher(request, device, stats, size, augmentation), plain, plain]
    files = [splits.train, splits.val] + ([splits.test] if splits.test is not None else [])
    need = decoded_bytes(sum(len(split) for split in files), channels, size)
    budget = get_settings().cache_memory
    if need <= budget:
        started = time.perf_counter()
        held, failed = decode_files(files, in_channels=channels, image_size=size, workers=workers)
        files = [kept for _, kept in held]
        splits.skipped += failed
        store = device if device.type != "cuda" or need <= torch.cuda.mem_get_info(device)[0] // 2 else None
        sources: list[BatchSource] = [
            HeldFiles(
                images,
                kept,
                batch_size=request.batch_size,
                finisher=finisher,
                store=store or torch.device("cpu"),
            )
            for (images, kept), finisher in zip(held, finishers, strict=False)
        ]
        where = "" if store else f" on the host ({device} has too little free memory)"
        choices.append(
            f"held in memory{where}: {sum(map(len, files))} images decoded once into {format_bytes(need)} "
            f"in {time.perf_counter() - started:.1f} s (CNNQ_CACHE_MEMORY: {format_bytes(budget)})"
        )
    else:
        sources = [
            LoaderBatchSource(
                split,
                batch_size=request.batch_size,
                num_workers=workers,
                in_channels=channels,
                finisher=finisher,
            )
            for split, finisher in zip(files, finishers, strict=False)
        ]
        choices.append(
            f"streamed: decoded, the images would take {format_bytes(need)}, over CNNQ_CACHE_MEMORY "
            f"({format_bytes(budget)}); {workers or 'no'} DataLoader workers decode them every epoch"
        )
    return DatasetBundle(
        classes=splits.classes,
        in_channels=channels,
        image_size=size,
        mean=stats[0],
        std=stats[1],
        class_counts=class_counts(files[0].labels, len(splits.classes)),
        train=sources[0],
        val=sources[1],
        test=sources[2] if len(sources) > 2 else None,
        skipped=splits.skipped,
        notes=[*splits.notes, *choices],
        held_in_memory=need <= budget,
        choices=choices,
        survey=survey,
    )


def fetch_dataset(name: str, root: Path) -> Path:
    """Download mnist or cifar10 into `root` with torchvision (md5-checked); returns its folder."""
    if name not in DATASETS or not DATASETS[name].fetchable:
        fetchable = ", ".join(n for n, f in DATASETS.items() if f.fetchable)
        raise UserError(
            f"cannot fetch {name!r}: cnnq downloads only {fetchable}; put other sets under --data-root"
        )
    from torchvision.datasets import CIFAR10, MNIST

    root.mkdir(parents=True, exist_ok=True)
    try:
        if name == "mnist":
            for train in (True, False):
                MNIST(str(root), train=train, download=True)
            return mnist_folder(root)
        for train in (True, False):
            CIFAR10(str(root), train=train, download=True)
        return cifar10_folder(root)
    except (OSError, RuntimeError) as error:
        raise UserError(f"could not download {name} into {root}: {error}") from None
