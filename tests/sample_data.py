"""Small datasets in the real on-disk formats, generated from a seed for tests.

Plain functions (no pytest): each writes files under `root` and returns the path to hand to cnnq.
Every set has a learnable difference between its classes so a few training steps can beat chance.

- `make_mnist(root)`      -> root (use as --data-root): `MNIST/raw/*-ubyte` IDX files.
- `make_cifar10(root)`    -> root (use as --data-root): `cifar-10-batches-py/` pickles.
- `make_image_folder(root)` -> root: `root/<class>/*.png|jpg`, or `root/{train,test}/<class>/...`.
- `make_chest_xray(root)` -> `root/chest_xray`: `{train,val,test}/{NORMAL,PNEUMONIA}` grayscale
  JPEG and PNG files, plus broken files (`corrupt_files(...)` lists them) and a stray text file.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
XRAY_CLASSES = ("NORMAL", "PNEUMONIA")
XRAY_SPLITS = ("train", "val", "test")
# Names of the broken files `make_chest_xray` writes into train/ (relative to the chest_xray dir).
_CORRUPT_NAMES = ("train/PNEUMONIA/broken_truncated.jpeg", "train/NORMAL/broken_empty.png")


# ---------------------------------------------------------------------------------------------- MNIST


def make_mnist(root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """MNIST-format IDX files (`root/MNIST/raw/`) with digit-dependent bright bars; returns `root`."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            row = 2 + int(label) * 2
            images[i, row : row + 3, 4:24] = 255
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 2051, count, 28, 28))
            f.write(images.tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 2049, count))
            f.write(labels.tobytes())
    return Path(root)


# -------------------------------------------------------------------------------------------- CIFAR-10


class _Py2Str(bytes):
    """A Python 2 `str` in a pickle: read as `str` with encoding='latin1', as `bytes` with 'bytes'."""


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes `_Py2Str` with the BINSTRING opcodes that Python 2's cPickle used in the CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_str(self, obj: _Py2Str) -> None:
        data = bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2_str


def _dump_py2(obj: object, path: Path) -> None:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


def cifar_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 3072) uint8 rows, channel-major like CIFAR: noise plus a class-coloured square."""
    count = len(labels)
    images = rng.integers(0, 60, size=(count, 3, 32, 32), dtype=np.uint8)
    for i, label in enumerate(labels):
        colour = np.array([(label * 70) % 256, (label * 130 + 60) % 256, (255 - label * 25) % 256])
        top = 4 + int(label) % 3 * 8
        images[i, :, top : top + 12, 8:24] = colour[:, None, None]
    return images.reshape(count, 3072)


def make_cifar10(root: Path, n_train: int = 200, n_test: int = 50, seed: int = 0) -> Path:
    """CIFAR-10 python pickles (`root/cifar-10-batches-py/`) in the published format; returns `root`.

    Each batch is a dict with keys data (uint8 (N, 3072), channel-major rows), labels (list of int),
    batch_label and filenames, keys written as Python 2 strings exactly like the original files
    (so `pickle.load(f, encoding="bytes")` shows b'data', encoding="latin1" shows 'data').
    `batches.meta` holds label_names, num_cases_per_batch and num_vis. The training rows are spread
    over data_batch_1..5. torchvision's `CIFAR10` would refuse these files only because their md5
    differs from the real ones.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    splits = np.array_split(np.arange(n_train), 5)

    def batch(name: str, count: int) -> None:
        labels = (np.arange(count) % 10).astype(np.int64)
        rng.shuffle(labels)
        data = cifar_images(labels, rng)
        entry = {
            _Py2Str(b"batch_label"): _Py2Str(f"{name} of cnnq sample data".encode()),
            _Py2Str(b"labels"): [int(v) for v in labels],
            _Py2Str(b"data"): data,
            _Py2Str(b"filenames"): [_Py2Str(f"sample_{name}_{i}.png".encode()) for i in range(count)],
        }
        _dump_py2(entry, folder / name)

    for number, indices in enumerate(splits, start=1):
        batch(f"data_batch_{number}", len(indices))
    batch("test_batch", n_test)
    meta = {
        _Py2Str(b"label_names"): [_Py2Str(name.encode()) for name in CIFAR10_CLASSES],
        _Py2Str(b"num_cases_per_batch"): len(splits[0]),
        _Py2Str(b"num_vis"): 3072,
    }
    _dump_py2(meta, folder / "batches.meta")
    return Path(root)


def read_cifar_batch(path: Path) -> dict:
    """A CIFAR pickle as the CIFAR web page reads it (keys are bytes): for round-trip tests."""
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


# ------------------------------------------------------------------------------------ ImageFolder trees


def _class_colour(index: int) -> tuple[int, int, int]:
    return ((index * 90 + 40) % 256, (index * 160 + 200) % 256, (255 - index * 70) % 256)


def colour_image(class_index: int, size: int, rng: np.random.Generator) -> Image.Image:
    """An RGB image: noise plus a class-coloured block at a class-dependent place."""
    pixels = rng.integers(0, 70, size=(size, size, 3), dtype=np.uint8)
    half = size // 2
    top = (class_index % 2) * half
    left = ((class_index // 2) % 2) * half
    pixels[top : top + half, left : left + half] = _class_colour(class_index)
    return Image.fromarray(pixels, "RGB")


def _write_class_images(
    folder: Path, class_index: int, count: int, size: int, rng: np.random.Generator
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = colour_image(class_index, size, rng)
        if i % 2:
            image.save(folder / f"img_{i:04d}.jpg", quality=95)
        else:
            image.save(folder / f"img_{i:04d}.png")


def make_image_folder(
    root: Path,
    classes: Sequence[str] = ("cat", "dog"),
    per_class: int = 20,
    size: int = 32,
    with_splits: bool = False,
    seed: int = 0,
) -> Path:
    """An ImageFolder tree of RGB PNG and JPEG files (alternating); returns `root`.

    Without splits: `root/<class>/img_NNNN.{png,jpg}`, `per_class` per class. With splits:
    `root/train/<class>/...` with `per_class` each and `root/test/<class>/...` with
    `max(2, per_class // 4)` each.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for index, name in enumerate(classes):
        if with_splits:
            _write_class_images(root / "train" / name, index, per_class, size, rng)
            _write_class_images(root / "test" / name, index, max(2, per_class // 4), size, rng)
        else:
            _write_class_images(root / name, index, per_class, size, rng)
    return root


# ------------------------------------------------------------------------------------------ chest X-ray


def xray_image(pneumonia: bool, size: int, rng: np.random.Generator) -> Image.Image:
    """A grayscale 'chest': two dark lung fields; pneumonia adds bright blobs inside them."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    pixels = 150 + rng.normal(0, 12, size=(size, size))
    for cx in (0.3, 0.7):
        lung = ((xx - cx) / 0.16) ** 2 + ((yy - 0.5) / 0.32) ** 2 < 1
        pixels[lung] -= 90
    if pneumonia:
        for _ in range(3):
            cx, cy = rng.choice([0.3, 0.7]) + rng.uniform(-0.06, 0.06), rng.uniform(0.35, 0.65)
            blob = ((xx - cx) / 0.08) ** 2 + ((yy - cy) / 0.08) ** 2 < 1
            pixels[blob] += 100
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def corrupt_files(chest_xray: Path, corrupt: int = 2) -> list[Path]:
    """The broken files `make_chest_xray(..., corrupt=corrupt)` wrote."""
    names = [_corrupt_name(i) for i in range(corrupt)]
    return [Path(chest_xray) / name for name in names]


def _corrupt_name(i: int) -> str:
    base = _CORRUPT_NAMES[i % 2]
    if i < 2:
        return base
    stem, ext = base.rsplit(".", 1)
    return f"{stem}_{i}.{ext}"


def make_chest_xray(
    root: Path,
    per_class: dict[str, tuple[int, int]] | None = None,
    size: int = 64,
    corrupt: int = 2,
    seed: int = 0,
) -> Path:
    """The Kaggle chest X-ray layout under `root/chest_xray`; returns that `chest_xray` dir.

    `per_class[split] = (NORMAL count, PNEUMONIA count)` (default train (30, 60), val (2, 2),
    test (10, 10): imbalanced, with a tiny val/ like the public set). Files alternate between
    grayscale JPEG and PNG. `corrupt` broken files go into train/ (alternately a truncated JPEG in
    PNEUMONIA and a zero-byte PNG in NORMAL; `corrupt_files()` names them) and a stray
    `train/NORMAL/notes.txt` that is not an image.
    """
    per_class = per_class or {"train": (30, 60), "val": (2, 2), "test": (10, 10)}
    rng = np.random.default_rng(seed)
    chest = Path(root) / "chest_xray"
    for split, counts in per_class.items():
        for name, count in zip(XRAY_CLASSES, counts, strict=True):
            folder = chest / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = xray_image(name == "PNEUMONIA", size, rng)
                if i % 2:
                    image.save(folder / f"{name.lower()}_{i:04d}.png")
                else:
                    image.save(folder / f"{name.lower()}_{i:04d}.jpeg", quality=92)
    for i in range(corrupt):
        path = chest / _corrupt_name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpeg":
            whole = io.BytesIO()
            xray_image(True, size, rng).save(whole, "JPEG", quality=92)
            path.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 3])
        else:
            path.write_bytes(b"")
    (chest / "train" / "NORMAL").mkdir(parents=True, exist_ok=True)
    (chest / "train" / "NORMAL" / "notes.txt").write_text("not an image\n")
    return chest


def train_confident_xray_model(chest_xray: Path, workdir: Path, seed: int = 0) -> Path:
    """A simple CNN trained on `chest_xray`'s train split (the model file): with its Youden threshold,
    its scores on 40 px images spread from 0.5 to 0.9, few of them near the threshold."""
    from cnnq.jobs.reporter import RecordingReporter
    from cnnq.jobs.spec import TrainSpec
    from cnnq.jobs.train import train_job

    spec = TrainSpec(
        dataset="xray",
        data_root=chest_xray.parent,
        model="simple-cnn",
        image_size=32,
        epochs=4,
        optimizer="adam",
        lr=3e-3,
        batch_size=16,
        num_workers=0,
        seed=seed,
        threshold="youden",
    )
    reporter = RecordingReporter()
    train_job(spec, workdir, reporter)
    return reporter.artifacts["model"]
