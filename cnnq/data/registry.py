"""The datasets cnnq knows, how to check them at submit, load them in a job, and fetch them.

| dataset | data root holds                          | channels | default size | mean / std              |
|---------|------------------------------------------|----------|--------------|-------------------------|
| mnist   | MNIST/raw/*-ubyte (torchvision's layout) | 1        | 28           | 0.1307 / 0.3081         |
| cifar10 | cifar-10-batches-py/ (python pickles)    | 3        | 32           | CIFAR-10 per channel    |
| folder  | <class>/* or train/<class>/* (+test/)    | 3        | 224          | 0.5 / 0.5 per channel   |
| xray    | chest_xray/{train,val,test}/<class>/*    | 1        | 224          | 0.5 / 0.5               |

MNIST and CIFAR-10: the official test set is the test split; validation is a seeded, stratified
`val_split` carved from the training set; `limit` keeps the first N of the training file (and of
the test file). Folder and X-ray rules are in `folder_layouts`.
`mean`/`std` in a request override the dataset's (e.g. to evaluate with a model's own).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnq.data import tensor_sets
from cnnq.data.augment import Augmentation, parse_augment
from cnnq.data.bundle import BatchFinisher, DatasetBundle
from cnnq.data.folder_layouts import index_splits, split_dirs, xray_root
from cnnq.data.image_folders import FileList, LoaderBatchSource, has_class_folders
from cnnq.data.splits import class_counts, stratified_split
from cnnq.errors import UserError

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


@dataclass(frozen=True)
class DataRequest:
    dataset: str
    root: Path
    image_size: int | None = None
    val_split: float = 0.1
    limit: int | None = None
    batch_size: int = 64
    num_workers: int = 2
    augment: str | None = None
    seed: int = 0
    channels: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DatasetFacts:
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fetchable: bool


DATASETS: dict[str, DatasetFacts] = {
    "mnist": DatasetFacts(1, 28, tensor_sets.MNIST_MEAN, tensor_sets.MNIST_STD, fetchable=True),
    "cifar10": DatasetFacts(3, 32, tensor_sets.CIFAR10_MEAN, tensor_sets.CIFAR10_STD, fetchable=True),
    "folder": DatasetFacts(3, 224, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), fetchable=False),
    "xray": DatasetFacts(1, 224, (0.5,), (0.5,), fetchable=False),
}
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def dataset_facts(name: str) -> DatasetFacts:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


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


def _fetch_hint(name: str, root: Path) -> str:
    return f"fetch it with `cnnq data fetch {name} --data-root {root}`"


def check_dataset(request: DataRequest) -> None:
    """Refuse (UserError naming where it looked and how to fix it) a request that cannot load."""
    dataset_facts(request.dataset)
    parse_augment(request.augment)
    if request.channels not in (None, 1, 3):
        raise UserError(f"channels must be 1 or 3, not {request.channels}")
    if not 0.0 < request.val_split < 1.0:
        raise UserError(f"--val-split must be between 0 and 1, not {request.val_split}")
    for key in ("mean", "std"):
        values = getattr(request, key)
        if values is not None and len(values) not in (1, 3):
            raise UserError(f"{key} needs 1 or 3 values, not {len(values)}")
    root = request.root
    if request.dataset == "mnist" and (missing := tensor_sets.mnist_missing(root)):
        raise UserError(f"mnist not found: no {missing[0]}; {_fetch_hint('mnist', root)}")
    if request.dataset == "cifar10" and (missing := tensor_sets.cifar10_missing(root)):
        raise UserError(f"cifar10 not found: no {missing[0]}; {_fetch_hint('cifar10', root)}")
    if request.dataset == "folder" and not has_class_folders(root):
        raise UserError(
            f"folder dataset not found: {root} has no class folders; "
            f"put images in {root}/<class>/ or {root}/train/<class>/ (and optionally test/<class>/)"
        )
    if request.dataset == "xray" and xray_root(root) is None:
        raise UserError(
            f"xray dataset not found: no chest_xray/train/<class>/ in or under {root}; unpack the chest "
            "X-ray set (chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}) there or point --data-root at it"
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
    facts = dataset_facts(request.dataset)
    tree = xray_root(request.root) if request.dataset == "xray" else request.root
    assert tree is not None
    splits = index_splits(
        split_dirs(tree),
        val_split=request.val_split,
        limit=request.limit,
        seed=request.seed,
        workers=request.num_workers,
    )
    channels = request.channels or facts.channels
    size = request.image_size or facts.image_size
    stats = _statistics(request, channels)
    plain = _finisher(request, device, stats, size, None)
    workers = request.num_workers
    if workers and multiprocessing.current_process().daemon:
        workers = 0
        splits.notes.append(
            "decoding in the job process: a daemonic process (e.g. a prefork pool child) cannot start "
            "DataLoader workers"
        )

    def source(files: FileList, finisher: BatchFinisher) -> LoaderBatchSource:
        return LoaderBatchSource(
            files,
            batch_size=request.batch_size,
            num_workers=workers,
            in_channels=channels,
            finisher=finisher,
        )

    augmentation = parse_augment(request.augment)
    return DatasetBundle(
        classes=splits.classes,
        in_channels=channels,
        image_size=size,
        mean=stats[0],
        std=stats[1],
        class_counts=class_counts(splits.train.labels, len(splits.classes)),
        train=source(splits.train, _finisher(request, device, stats, size, augmentation)),
        val=source(splits.val, plain),
        test=source(splits.test, plain) if splits.test is not None else None,
        skipped=splits.skipped,
        notes=splits.notes,
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
            return tensor_sets.mnist_folder(root)
        for train in (True, False):
            CIFAR10(str(root), train=train, download=True)
        return tensor_sets.cifar10_folder(root)
    except (OSError, RuntimeError) as error:
        raise UserError(f"could not download {name} into {root}: {error}") from None
