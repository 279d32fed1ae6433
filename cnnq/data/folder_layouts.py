"""Where the splits of a `folder` or `xray` set come from, decided once when the set is indexed.

- `folder`: `root/<class>/*` is one pool; `root/train/<class>/*` (with optional `val/` and `test/`
  beside it) is a split tree. Without a `test/` folder there is no test split.
- `xray`: `chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}`; the data root may be `chest_xray`
  itself, its parent, or the parent of the Kaggle zip's doubled `chest_xray/chest_xray`.
- Validation: a `val/` folder is used as it is when it holds at least half of what a carve would
  give (val_split x train images) and every class of train; otherwise its images join train and a
  seeded, stratified `val_split` of train is carved off (the public X-ray set's val/ has 16 images).
- `limit`: each split keeps a seeded random `limit` of its files before the carve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnq.data.catalog import has_class_folders
from cnnq.data.image_folders import FileList, class_names, drop_unreadable, list_files
from cnnq.data.splits import seeded_subset, stratified_split
from cnnq.errors import UserError


@dataclass
class FileSplits:
    classes: list[str]
    train: FileList
    val: FileList
    test: FileList | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SplitDirs:
    train: Path
    val: Path | None
    test: Path | None


def split_dirs(tree: Path) -> SplitDirs:
    """train/val/test folders of a tree with a train/ folder, else the tree itself as one pool."""
    if not has_class_folders(tree / "train"):
        return SplitDirs(tree, None, None)

    def optional(name: str) -> Path | None:
        return tree / name if has_class_folders(tree / name) else None

    return SplitDirs(tree / "train", optional("val"), optional("test"))


def _limited(files: FileList, limit: int | None, seed: int) -> FileList:
    return files.take(seeded_subset(len(files), limit, seed)) if limit is not None else files


def _val_is_enough(val: FileList, train: FileList, val_split: float) -> bool:
    wanted = math.ceil(val_split * len(train) / 2)
    return len(val) >= max(1, wanted) and set(np.unique(train.labels)) <= set(np.unique(val.labels))


def index_splits(
    dirs: SplitDirs, *, val_split: float, limit: int | None, seed: int, workers: int
) -> FileSplits:
    """The checked files of each split, with notes on what was decided."""
    classes = class_names(dirs.train)
    pool = _limited(list_files(dirs.train, classes), limit, seed)
    given_val = _limited(list_files(dirs.val, classes), limit, seed) if dirs.val else None
    test = _limited(list_files(dirs.test, classes), limit, seed) if dirs.test else None
    notes = [f"training images: a seeded random {limit} per split (--limit)"] if limit is not None else []

    pool, skipped = drop_unreadable(pool, workers)
    if given_val is not None:
        given_val, more = drop_unreadable(given_val, workers)
        skipped += more
    if test is not None:
        test, more = drop_unreadable(test, workers)
        skipped += more
    if skipped:
        notes.append(f"skipped {len(skipped)} unreadable file(s)")
    if len(pool) == 0:
        raise UserError(f"no readable images under {dirs.train}; put images in {dirs.train}/<class>/")

    if given_val is not None and _val_is_enough(given_val, pool, val_split):
        train, val = pool, given_val
        notes.append(f"validation: {dirs.val} as given ({len(val)} images)")
    else:
        if given_val is not None:
            notes.append(f"{dirs.val} holds only {len(given_val)} images: merged into train before the carve")
            pool = pool + given_val
        kept, carved = stratified_split(pool.labels, val_split, seed)
        train, val = pool.take(kept), pool.take(carved)
        notes.append(
            f"validation carved from train: {val_split:.0%} stratified, seed {seed} "
            f"({len(val)} of {len(pool)} images)"
        )
    if test is None:
        notes.append("no test/ folder: no test split")
    return FileSplits(classes, train, val, test, skipped, notes)
