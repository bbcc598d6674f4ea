"""Reading a PyTorch checkpoint (a state dict) into numpy arrays, without torch and without
running the file's pickle.

A ``.pth`` file is a pickle, and ``pickle.load`` runs whatever callable the file names: an
untrusted checkpoint could start a shell. This reader unpickles with an allow list: only
the handful of names a state dict of tensors needs (``torch._utils._rebuild_tensor_v2``,
``collections.OrderedDict``, the typed storage classes) resolve, each to a small function of
ours that builds a numpy array; any other name stops the read with an error that names it.

Both of PyTorch's formats are read:

- the zip format (``torch.save`` since 1.6): ``<root>/data.pkl`` is the pickle and each
  storage is the member ``<root>/data/<key>``;
- the legacy format (before 1.6, and ``_use_new_zipfile_serialization=False``): five
  pickles in a row (magic number, protocol version, system info, the object, the storage
  keys), then each storage's bytes, each after an 8-byte element count.

Every size a file states is checked against the bytes it holds before anything is
allocated, so a lying header cannot make the reader buffer more than the file itself.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from savedhub.errors import UnsupportedSourceError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    """What ``torch.FloatStorage`` and friends stand for in a checkpoint: an element type."""

    name: str
    dtype: Any


@dataclass(frozen=True)
class _PendingStorage:
    """A legacy checkpoint's storage: its bytes come after the pickle that refers to it."""

    key: str


def _rebuild_tensor(
    storage: np.ndarray | _PendingStorage,
    offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    *_ignored: Any,
) -> Any:
    """``torch._utils._rebuild_tensor_v2``: a strided view of a storage, copied out."""
    size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
    if len(size) != len(stride) or any(n < 0 for n in (*size, *stride)) or offset < 0:
        raise ValueError(f"a tensor with size {size}, stride {stride} and offset {offset}")
    if isinstance(storage, _PendingStorage):
        return _PendingTensor(storage.key, int(offset), size, stride)
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise ValueError(
            f"a tensor of size {size} reaches element {last} of a storage of {storage.size}"
        )
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its tensor here."""
    return data


def _ordered_dict(*args: Any) -> OrderedDict[Any, Any]:
    return OrderedDict(*args)


# The allow list: (module, name) -> what it becomes. Nothing else in a pickle resolves.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RefusedName(Exception):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow list, and storages through ``load_storage``."""

    def __init__(
        self, file: IO[bytes], load_storage: Callable[[tuple[Any, ...]], Any] | None
    ) -> None:
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _RefusedName(module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None or not isinstance(pid, tuple) or pid[:1] != ("storage",):
            raise pickle.UnpicklingError(f"an unexpected persistent id {pid!r:.80}")
        return self._load_storage(pid)


def _refuse(path: str, found: str) -> UnsupportedSourceError:
    return UnsupportedSourceError(
        f"Cannot read {path!r} as a PyTorch checkpoint: {found}. savedhub reads state dicts "
        "of tensors (what torch.save(model.state_dict(), path) writes) without running the "
        "file's code; re-save the weights as a plain state dict.",
        path,
    )


def _storage_spec(pid: tuple[Any, ...]) -> tuple[_StorageType, str, int]:
    """(type, key, element count) of a ``('storage', type, key, location, numel, ...)`` id."""
    if len(pid) < 5 or not isinstance(pid[1], _StorageType) or not isinstance(pid[4], int):
        raise pickle.UnpicklingError(f"a storage id {pid!r:.120}")
    if len(pid) > 5 and pid[5] is not None:
        raise pickle.UnpicklingError("a storage view (legacy view_metadata)")
    return pid[1], str(pid[2]), pid[4]


def _read_zip(path: str, archive: zipfile.ZipFile) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise _refuse(path, "the zip has no single <folder>/data.pkl")
    root = pickles[0].rsplit("/", 1)[0]
    # torch.save stores members uncompressed; a compressed one could expand past the file's
    # size (a zip bomb), so only stored members are read and what is read is what is on disk.
    packed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise _refuse(path, f"its members {packed[:3]} are compressed, which torch.save never does")
    storages: dict[str, np.ndarray] = {}

    def load_storage(pid: tuple[Any, ...]) -> np.ndarray:
        kind, key, numel = _storage_spec(pid)
        if key not in storages:
            try:
                info = archive.getinfo(f"{root}/data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"the storage data/{key} is missing") from None
            expected = numel * np.dtype(kind.dtype).itemsize
            if info.file_size != expected:
                raise pickle.UnpicklingError(
                    f"the storage data/{key} holds {info.file_size} bytes, not the {expected} "
                    f"of {numel} elements of {kind.name}"
                )
            storages[key] = np.frombuffer(archive.read(info), dtype=kind.dtype)
        return storages[key]

    with archive.open(pickles[0]) as f:
        return _RestrictedUnpickler(io.BytesIO(f.read()), load_storage).load()


@dataclass(frozen=True)
class _PendingTensor:
    """A legacy checkpoint's tensor, built once its storage's bytes (which follow) are read."""

    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _read_legacy(path: str, f: IO[bytes]) -> Any:
    header = [_RestrictedUnpickler(f, None).load() for _ in range(3)]
    if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
        raise _refuse(path, "it is neither a zip checkpoint nor a legacy one (no magic number)")
    if not isinstance(header[2], dict) or header[2].get("little_endian") is not True:
        raise _refuse(path, "it was written on a big-endian machine")
    wanted: dict[str, tuple[_StorageType, int]] = {}

    def load_storage(pid: tuple[Any, ...]) -> _PendingStorage:
        kind, key, numel = _storage_spec(pid)
        wanted.setdefault(key, (kind, numel))
        return _PendingStorage(key)

    result = _RestrictedUnpickler(f, load_storage).load()
    keys = _RestrictedUnpickler(f, None).load()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(wanted):
        raise _refuse(path, "its list of storages does not match the tensors it holds")
    remaining = os.fstat(f.fileno()).st_size - f.tell()
    storages: dict[str, np.ndarray] = {}
    for key in map(str, keys):
        kind, numel = wanted[key]
        (count,) = struct.unpack("<q", f.read(8))
        nbytes = count * np.dtype(kind.dtype).itemsize
        if count != numel or not 0 <= nbytes <= remaining - 8:
            raise _refuse(path, f"storage {key} states {count} elements, which the file lacks")
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise _refuse(path, f"it ends inside storage {key}")
        remaining -= 8 + nbytes
        storages[key] = np.frombuffer(data, dtype=kind.dtype)
    return _resolve(result, storages)


def _resolve(value: Any, storages: dict[str, np.ndarray]) -> Any:
    if isinstance(value, _PendingTensor):
        return _rebuild_tensor(storages[value.key], value.offset, value.size, value.stride)
    if isinstance(value, dict):
        return type(value)((k, _resolve(v, storages)) for k, v in value.items())
    return value


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The tensors of the PyTorch state dict at ``path``, by name, as numpy arrays.

    Args:
        path: a ``.pth``/``.pt`` file in PyTorch's zip or legacy format.

    Returns:
        ``{name: array}`` in the file's order; ``nn.Parameter`` and plain tensors alike.

    Raises:
        UnsupportedSourceError: the file is not a PyTorch checkpoint, holds anything but a
            dict of tensors, or names a Python object outside the allow list (the message
            names it); no code from the file runs.

    Example:
        >>> weights = read_state_dict("efficientnet-lite0-57934424.pth")
        >>> weights["_fc.weight"].shape
        (1000, 1280)
    """
    name = os.fspath(path)
    try:
        if zipfile.is_zipfile(name):
            with zipfile.ZipFile(name) as archive:
                result = _read_zip(name, archive)
        else:
            with open(name, "rb") as f:
                result = _read_legacy(name, f)
    except _RefusedName as exc:
        raise _refuse(
            name,
            f"its pickle names {exc}, which is not on the allow list of tensor-building "
            "names, so it was not run",
        ) from None
    except (pickle.UnpicklingError, ValueError, EOFError, struct.error, zipfile.BadZipFile) as exc:
        raise _refuse(name, f"its contents could not be read ({exc})") from exc
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise _refuse(name, f"its pickle is malformed ({type(exc).__name__}: {exc})") from exc
    if (
        isinstance(result, dict)
        and "state_dict" in result
        and isinstance(result["state_dict"], dict)
    ):
        result = result["state_dict"]
    if not isinstance(result, dict) or not all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in result.items()
    ):
        raise _refuse(name, f"it holds a {type(result).__name__}, not a dict of tensors")
    return dict(result)
