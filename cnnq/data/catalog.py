"""The datasets cnnq knows: their facts, where their files live, and the check at submit, without torch.

| dataset | data root holds                          | channels  | default size   | mean / std            |
|---------|------------------------------------------|-----------|----------------|-----------------------|
| mnist   | MNIST/raw/*-ubyte (torchvision's layout) | 1         | 28             | 0.1307 / 0.3081       |
| cifar10 | cifar-10-batches-py/ (python pickles)    | 3         | 32             | CIFAR-10 per channel  |
| folder  | <class>/* or train/<class>/* (+test/)    | from data | from data      | 0.5 / 0.5 per channel |
| xray    | chest_xray/{train,val,test}/<class>/*    | from data | from data      | 0.5 / 0.5             |

"from data": the job samples the images (`cnnq.data.survey`): 1 channel when all are grayscale, the
most common size up to 224. A real chest X-ray set (large grayscale files) gets 1 channel at 224.

`cnnq submit` reads this module only; `cnnq.data.registry` loads the sets it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnq.data.augment import parse_augment
from cnnq.errors import UserError


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
    model: str | None = None
    """The model the data is for: an image size taken from the data is at least its smallest input."""


@dataclass(frozen=True)
class DatasetFacts:
    channels: int | None  # None: from the data
    image_size: int | None  # None: from the data
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fetchable: bool


MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

DATASETS: dict[str, DatasetFacts] = {
    "mnist": DatasetFacts(1, 28, MNIST_MEAN, MNIST_STD, fetchable=True),
    "cifar10": DatasetFacts(3, 32, CIFAR10_MEAN, CIFAR10_STD, fetchable=True),
    "folder": DatasetFacts(None, None, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), fetchable=False),
    "xray": DatasetFacts(None, None, (0.5,), (0.5,), fetchable=False),
}

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)
CIFAR10_META_FILE = "batches.meta"
XRAY_DIR = "chest_xray"


def dataset_facts(name: str) -> DatasetFacts:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def mnist_folder(root: Path) -> Path:
    return root / "MNIST" / "raw"


def cifar10_folder(root: Path) -> Path:
    return root / CIFAR10_FOLDER


def mnist_missing(root: Path) -> list[Path]:
    return [mnist_folder(root) / name for name in MNIST_FILES if not (mnist_folder(root) / name).is_file()]


def cifar10_missing(root: Path) -> list[Path]:
    names = (*CIFAR10_TRAIN_FILES, *CIFAR10_TEST_FILES, CIFAR10_META_FILE)
    return [cifar10_folder(root) / name for name in names if not (cifar10_folder(root) / name).is_file()]


def has_class_folders(directory: Path) -> bool:
    return directory.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in directory.iterdir())


def xray_root(root: Path) -> Path | None:
    """The `chest_xray` folder (the one holding train/) for a data root, or None."""
    for candidate in (root, root / XRAY_DIR, root / XRAY_DIR / XRAY_DIR):
        if has_class_folders(candidate / "train"):
            return candidate
    return None


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
    if request.dataset == "mnist" and (missing := mnist_missing(root)):
        raise UserError(f"mnist not found: no {missing[0]}; {_fetch_hint('mnist', root)}")
    if request.dataset == "cifar10" and (missing := cifar10_missing(root)):
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
