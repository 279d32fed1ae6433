"""What a file written by `torch.save` holds, read without torch and without running pickled code.

`cnnq submit` checks a model file's metadata and a weights file's tensor names and shapes; importing
torch for that would cost the command about 4 s and 800 MB. `torch.save` writes a zip holding one
pickle (`data.pkl`) and the raw bytes of each storage (files from before torch 1.6: the same pickle
between a header and the bytes); the pickle names each tensor's storage, offset, shape and strides.
This reader unpickles it with an allow-list, as `torch.load(weights_only=True)` does, but narrower:
plain containers, and in place of each tensor a `TensorShape`. Any other class or function is
refused (`UnreadableTorchFile`), and the tensors' bytes are never read.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
"""The first pickle of a file that `torch.save(_use_new_zipfile_serialization=False)` wrote."""


class UnreadableTorchFile(Exception):
    """The file is not one this reader can read (not torch.save's format, or it holds more than
    containers and tensors); the message says why."""


@dataclass(frozen=True)
class TensorShape:
    """A tensor as the file describes it, without its data."""

    shape: tuple[int, ...]


@dataclass(frozen=True)
class _StorageType:
    name: str  # FloatStorage, LongStorage, ...


@dataclass(frozen=True)
class _Storage:
    type: _StorageType


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple[int, ...], *_: Any) -> TensorShape:
    if not isinstance(storage, _Storage):
        raise UnreadableTorchFile("a tensor without a storage")
    return TensorShape(tuple(int(n) for n in size))


def _rebuild_parameter(data: TensorShape, *_: Any) -> TensorShape:
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage") and name.isidentifier():
            return _StorageType(name)
        raise UnreadableTorchFile(f"it holds {module}.{name}, which cnnq does not read")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type = (pid[0], pid[1]) if isinstance(pid, tuple) and len(pid) >= 2 else (None, None)
        if kind == "storage" and isinstance(storage_type, _StorageType):
            return _Storage(storage_type)
        raise UnreadableTorchFile("it holds an object other than a tensor's storage")


def _load(stream: IO[bytes]) -> Any:
    return _Unpickler(stream).load()


def read_torch_file(path: Path) -> Any:
    """The object `torch.save` wrote to `path`, each tensor replaced by its `TensorShape`.
    Raises FileNotFoundError (or another OSError) as `open` does, else `UnreadableTorchFile`."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
                if len(pickles) != 1:
                    raise UnreadableTorchFile("a zip file, but not one that torch.save wrote")
                with archive.open(pickles[0]) as stream:
                    return _load(stream)
        with open(path, "rb") as stream:
            if _load(stream) != _LEGACY_MAGIC:
                raise UnreadableTorchFile("not a file that torch.save wrote")
            _load(stream)  # the format's protocol version
            _load(stream)  # the writer's byte order and type sizes
            return _load(stream)
    except (UnreadableTorchFile, OSError):
        raise
    except Exception as error:  # pickle, zip and struct errors: a damaged or foreign file
        raise UnreadableTorchFile(f"not a file that torch.save wrote ({type(error).__name__})") from None
