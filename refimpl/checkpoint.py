"""Checkpoints without pickle: arrays in an ``.npz``, structure in JSON, written atomically.

A checkpoint is one ``.npz`` file. Its members are the arrays of a nested state (``arr_0000``,
``arr_0001``, ...) plus ``__state__``, a uint8 array holding UTF-8 JSON that describes the
structure and points at the arrays::

    {"format": "refimpl-checkpoint", "version": 1,
     "state": {...nested state, arrays replaced by {"__array__": "arr_0003"}...},
     "arrays": {"arr_0003": {"shape": [64, 1, 3, 3], "dtype": "<f4"}, ...}}

A human-readable copy of that JSON is written beside it (``last.npz`` -> ``last.json``); it
is informational, the loader reads only the ``.npz``.

What a state may hold: ``dict`` (any str/int/float/bool/None keys), ``list``, ``tuple``,
``str``, ``int``, ``float`` (NaN and inf included), ``bool``, ``None``, NumPy arrays of a
numeric or bool dtype and NumPy scalars. Each comes back with its type and bits. Anything
else is refused at save time, so a checkpoint never needs ``pickle`` to load.

Floats are bit-exact: a finite float or an infinity is a JSON number (Python writes the
shortest repr that reads back to the same double), and a NaN -- whose sign and payload JSON's
``NaN`` would lose -- is stored as its 64 bits, ``{"__nan__": "7ff8000000000001"}``.

Atomicity: bytes go to a temporary file in the target directory, which is flushed and
``fsync``-ed, then ``os.replace``-d over the target (atomic on POSIX), and the directory is
``fsync``-ed. A write interrupted at any point leaves the previous checkpoint intact.

Errors: :func:`load_checkpoint` raises :class:`CheckpointError` (a ``ValueError``) for every
unreadable input -- missing file, truncated or corrupt zip, CRC mismatch, bad JSON, wrong
format or version, a missing or mismatched array -- and never any other exception type for
bad file contents.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointError",
    "atomic_write_bytes",
    "load_checkpoint",
    "npz_bytes",
    "save_checkpoint",
    "save_npz",
]

FORMAT = "refimpl-checkpoint"
VERSION = 1
_STATE_MEMBER = "__state__"
# A fixed zip timestamp makes the bytes a function of the arrays alone (reproducible files).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class CheckpointError(ValueError):
    """A checkpoint cannot be written (unsupported value) or read (missing, corrupt)."""


# ----------------------------------------------------------------------------- writing

def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, flush, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the replace is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def npz_bytes(arrays: dict[str, np.ndarray], compress: bool = True) -> bytes:
    """The bytes of an ``.npz`` holding ``arrays`` (readable by ``np.load``), deterministic:
    the same arrays always give the same bytes (fixed member order and timestamps)."""
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.dtype.hasobject:
                raise CheckpointError(f"array {name!r} has dtype object; it would need pickle")
            member = io.BytesIO()
            np.lib.format.write_array(member, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray],
             compress: bool = True) -> None:
    """Write ``arrays`` as a deterministic ``.npz`` at ``path``, atomically."""
    atomic_write_bytes(path, npz_bytes(arrays, compress))


def save_checkpoint(path: str | os.PathLike, state: dict, sidecar: bool = True) -> Path:
    """Write a nested ``state`` (see the module docstring) to ``path`` atomically.

    Returns the path written. With ``sidecar``, a readable JSON copy of the structure goes to
    ``path`` with suffix ``.json`` (written after the ``.npz``; never read back).

    Raises
    ------
    CheckpointError
        When ``state`` holds a value that cannot be stored without pickle (the message
        names where it sits in the state).
    """
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, arrays, "state")
    header = {
        "format": FORMAT,
        "version": VERSION,
        "state": tree,
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in arrays.items()},
    }
    text = json.dumps(header, indent=1, sort_keys=False)
    members = dict(arrays)
    members[_STATE_MEMBER] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    atomic_write_bytes(path, npz_bytes(members, compress=True))
    if sidecar:
        atomic_write_bytes(path.with_suffix(".json"), text.encode("utf-8"))
    return path


def _encode(value: Any, arrays: dict, where: str) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return {"__nan__": _float_bits(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise CheckpointError(f"{where}: arrays of dtype {array.dtype} are not supported "
                                  "(numeric and bool only; no pickle)")
        name = f"arr_{len(arrays):04d}"
        arrays[name] = array.copy(order="C")  # keeps 0-d scalars 0-d
        key = "__scalar__" if isinstance(value, np.generic) else "__array__"
        return {key: name}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in value)
        if plain:
            return {k: _encode(v, arrays, f"{where}[{k!r}]") for k, v in value.items()}
        for k in value:
            if k is not None and not isinstance(k, (bool, int, float, str)):
                raise CheckpointError(f"{where}: dict key {k!r} is not a str/int/float/bool")
        return {"__items__": [[_encode_key(k), _encode(v, arrays, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
    raise CheckpointError(
        f"{where}: cannot store a {type(value).__name__} in a checkpoint without pickle; "
        "convert it to arrays, numbers, strings, lists or dicts"
    )


# ----------------------------------------------------------------------------- reading

def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``np.load(allow_pickle=False)``).

    Raises
    ------
    CheckpointError
        For a missing, truncated or corrupt file, or one not written by this module; the
        message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()  # reads every member and checks its CRC-32
        if bad is not None:
            raise CheckpointError(f"checkpoint {path}: member {bad} fails its CRC check")
        with np.load(path, allow_pickle=False) as npz:
            members = {name: npz[name] for name in npz.files}
        return _decode_members(members, path)
    except (CheckpointError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse the bytes means corrupt
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "resume from an older checkpoint or start afresh"
        ) from None


def _decode_members(members: dict[str, np.ndarray], path: Path) -> dict:
    raw = members.pop(_STATE_MEMBER, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"checkpoint {path} has no {_STATE_MEMBER} record; "
                              "it was not written by refimpl.checkpoint")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable state record ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {FORMAT} file")
    if header.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version "
                              f"{header.get('version')!r}; this refimpl reads version {VERSION}")
    specs = header.get("arrays")
    if not isinstance(specs, dict) or set(specs) != set(members):
        raise CheckpointError(f"checkpoint {path}: the array list does not match the members")
    for name, spec in specs.items():
        array = members[name]
        if (not isinstance(spec, dict) or list(array.shape) != spec.get("shape")
                or array.dtype.str != spec.get("dtype")):
            raise CheckpointError(f"checkpoint {path}: array {name} does not match its record")
    try:
        state = _decode(header.get("state"), members)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: malformed state record ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: the state is not a dict")
    return state


def _decode(node: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(node, list):
        return [_decode(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, inner), = node.items()
        if key == "__array__":
            return arrays[inner]
        if key == "__scalar__":
            return arrays[inner][()]
        if key == "__tuple__":
            return tuple(_decode(v, arrays) for v in inner)
        if key == "__nan__":
            return _nan_from_bits(inner)
        if key == "__items__":
            return {_key(k): _decode(v, arrays) for k, v in inner}
    if any(k.startswith("__") for k in node):
        raise ValueError(f"unknown marker in {sorted(node)}")
    return {k: _decode(v, arrays) for k, v in node.items()}


def _float_bits(value: float) -> str:
    """The 64 bits of a double as 16 hex digits (sign, exponent, payload: every bit)."""
    return struct.pack(">d", value).hex()


def _nan_from_bits(bits: Any) -> float:
    if not isinstance(bits, str) or len(bits) != 16:
        raise ValueError(f"__nan__ needs 16 hex digits, got {bits!r}")
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    if not math.isnan(value):
        raise ValueError(f"__nan__ bits {bits} are not a NaN")
    return value


def _encode_key(k: Any) -> Any:
    return {"__nan__": _float_bits(k)} if isinstance(k, float) and math.isnan(k) else k


def _key(k: Any) -> Any:
    if isinstance(k, dict) and list(k) == ["__nan__"]:
        return _nan_from_bits(k["__nan__"])
    if isinstance(k, (list, dict)):
        raise ValueError(f"dict key {k!r} is not a scalar")  # noqa: TRY004 - caught above
    return k
