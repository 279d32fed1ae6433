"""What an inference job scores: `--input` as a file, a folder, a glob or a text file of paths.

Kept free of torch so that `cnnq submit infer` can list (and shard) an archive quickly.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from cnnq.errors import UserError

LIST_FILE_SUFFIXES = {".txt", ".lst", ".list"}
"""A file with one of these suffixes given as --input lists the paths to score, one per line."""

_GLOB_CHARACTERS = set("*?[")


def spread_sample(inputs: list[str], size: int) -> list[str]:
    """Up to `size` inputs evenly spaced over the whole list, in its order, each once."""
    if size <= 0 or not inputs:
        return []
    picks = (round(i * (len(inputs) - 1) / max(size - 1, 1)) for i in range(size))
    return [inputs[i] for i in dict.fromkeys(picks)]


def list_inputs(input: str) -> list[str]:
    """Absolute paths of the inputs `input` names, without duplicates, in a stable order.

    A folder is walked recursively and every file in it is an input (one that is not an image becomes
    a flagged row, not a silent omission). A list file's relative paths are relative to the list
    file's folder; paths it names that do not exist are kept (they become "file not found" rows).
    """
    path = Path(input).expanduser()
    if path.is_dir():
        found = _walk(path)
        if not found:
            raise UserError(f"--input: the folder {path} holds no files; point it at the images")
        return found
    if path.is_file():
        if path.suffix.lower() in LIST_FILE_SUFFIXES:
            return _read_list(path)
        return [os.path.abspath(path)]
    if _GLOB_CHARACTERS & set(input):
        matches = sorted(
            {
                os.path.abspath(p)
                for p in glob.iglob(os.path.expanduser(input), recursive=True)
                if os.path.isfile(p)
            }
        )
        if not matches:
            raise UserError(
                f"--input: the pattern {input!r} matches no files; check it (quote it in the shell)"
            )
        return matches
    raise UserError(f"--input: no such file or folder: {path}; give a file, a folder, a glob or a list file")


def _walk(folder: Path) -> list[str]:
    found: list[str] = []
    for directory, subdirectories, files in os.walk(os.path.abspath(folder)):
        subdirectories.sort()
        found.extend(os.path.join(directory, name) for name in sorted(files))
    return found


def _read_list(list_file: Path) -> list[str]:
    base = list_file.parent
    seen: dict[str, None] = {}
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"--input: {list_file} is not a UTF-8 text file of paths") from None
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        seen.setdefault(os.path.abspath(base / Path(entry).expanduser()), None)
    if not seen:
        raise UserError(f"--input: the list file {list_file} names no paths; write one path per line")
    return list(seen)
