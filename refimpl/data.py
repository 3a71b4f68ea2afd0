"""Data: the IDX reader, Fashion-MNIST (full files or the embedded sample), synthetic sets.

Everything returns plain NumPy arrays: images ``X`` as ``float32`` of shape ``(N, 1, 28, 28)``
(or ``(N, 784)`` with ``flatten=True``) and labels ``y`` as ``int64``. Nothing is downloaded.

Where the full Fashion-MNIST files are looked for, in this order (the first directory that
holds the four files wins):

1. the ``path`` argument,
2. the environment variable ``$REFIMPL_DATA``,
3. ``~/.cache/refimpl`` (and ``~/.cache/refimpl/fashion-mnist``),
4. ``/usr/share/datasets/fashion-mnist`` (Debian: ``apt-get install dataset-fashion-mnist``).

Each file may be gzip-compressed (``train-images-idx3-ubyte.gz``) or raw
(``train-images-idx3-ubyte``). The embedded sample (2,000 train / 500 test images, stratified,
made by ``scripts/make_sample.py``) ships inside the package, so the demo and the fast tests
need no files at all.
"""

from __future__ import annotations

import gzip
import os
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DataNotFoundError",
    "IDXError",
    "candidate_dirs",
    "check_classification_data",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "load_sample",
    "make_blobs",
    "make_regression",
    "make_spirals",
    "read_idx",
    "stratified_indices",
    "train_val_split",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Mean and standard deviation of the 60,000 training images scaled to [0, 1], used by
#: ``normalize="standardize"`` (the same constants for every split and for the sample, so
#: that a model sees the same input scale whichever source it was trained on).
FASHION_MNIST_MEAN = 0.2860405969887955
FASHION_MNIST_STD = 0.35302424451492254

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
SAMPLE_NAME = "fashion_mnist_sample.npz"

# IDX type codes (third byte of the magic number) -> big-endian dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


class IDXError(ValueError):
    """An IDX file is corrupt: bad magic number, bad dimensions, or wrong data size."""


class DataNotFoundError(FileNotFoundError):
    """The full data set is in none of the places searched (the message lists them).

    ``str(error)`` speaks to a Python caller (``path=``, ``source='sample'``); a command
    line shows :meth:`message` with its own option names instead.

    Attributes
    ----------
    searched : list of Path
        The directories looked in, in order.
    path : Path or None
        The directory given explicitly (then only it was searched).
    missing : list of str
        With ``path``: the files it lacks.
    """

    def __init__(self, searched: list[Path], path: Path | None = None,
                 missing: list[str] | None = None) -> None:
        self.searched, self.path, self.missing = list(searched), path, list(missing or [])
        super().__init__(self.message())

    def __reduce__(self):  # picklable with its fields (e.g. across processes)
        return type(self), (self.searched, self.path, self.missing)

    def message(self, path_option: str = "path=", sample: str = "source='sample'") -> str:
        """One line: what is missing, where it was looked for, and the fixes.

        Parameters
        ----------
        path_option : str
            How the caller names the data directory (``"--data-path"`` on a command line),
            or ``""`` when it has none.
        sample : str
            How the caller asks for the embedded sample instead (``"--data
            fashion-mnist-sample"``, ``"--quick"``), or ``""`` to leave it out.
        """
        use_sample = (f"; or use {sample} for the embedded 2,000/500-image sample"
                      if sample else "")
        if self.path is not None:
            given = f"{path_option}{'' if path_option.endswith('=') else ' '}{str(self.path)!r}"
            return (f"{given} does not hold the Fashion-MNIST files (missing "
                    f"{', '.join(self.missing)}, each as .gz or raw); point {path_option} at "
                    f"the directory that holds them{use_sample}")
        order = "$REFIMPL_DATA, then the user cache, then the system package"
        stems = [stem for pair in FILES.values() for stem in pair]
        return (f"Fashion-MNIST not found; searched {', '.join(map(str, self.searched))} "
                f"({f'{path_option} if given, then ' if path_option else ''}{order}). "
                "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
                f"or put {', '.join(s + '.gz' for s in stems)} in ~/.cache/refimpl or "
                f"$REFIMPL_DATA{use_sample}")


# ----------------------------------------------------------------------------- IDX reader

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into an array in native byte order.

    Layout: a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
    uint32 sizes, then ``prod(sizes)`` items of the type, big-endian, row-major.

    Parameters
    ----------
    path : str or PathLike
        The file; gzip is detected from its first two bytes (``1f 8b``), not its name.

    Returns
    -------
    numpy.ndarray
        Shape ``sizes``; dtype uint8 for images and labels (native byte order always).

    Raises
    ------
    IDXError
        On a bad magic number, a zero dimension count, or a data size that does not match
        the dimensions (a truncated or padded file), or a broken gzip stream.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise IDXError(f"{path}: broken gzip stream ({exc}); re-install the file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise IDXError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; "
            "expected 0000 followed by a type code 08/09/0b/0c/0d/0e and the dimension count)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    if ndim == 0:
        raise IDXError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IDXError(f"{path}: file ends inside the IDX header ({len(raw)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise IDXError(
            f"{path}: header says shape {shape} ({expected} data bytes) but the file holds "
            f"{len(raw) - header} data bytes; the file is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


# ----------------------------------------------------------------------------- locating

def candidate_dirs(path: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for the full data set, in order (see the module docstring)."""
    dirs = []
    if path is not None:
        dirs.append(Path(path).expanduser())
    if os.environ.get("REFIMPL_DATA"):
        env = Path(os.environ["REFIMPL_DATA"]).expanduser()
        dirs += [env, env / "fashion-mnist"]
    cache = Path("~/.cache/refimpl").expanduser()
    dirs += [cache, cache / "fashion-mnist", SYSTEM_DIR]
    return dirs


def _file_in(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def find_fashion_mnist(path: str | os.PathLike | None = None) -> Path:
    """Return the first directory holding all four Fashion-MNIST files.

    An explicit ``path`` that lacks the files is an error (it is not silently skipped).

    Raises
    ------
    DataNotFoundError
        Naming every place searched and how to install the data.
    """
    stems = [stem for pair in FILES.values() for stem in pair]
    if path is not None:
        directory = Path(path).expanduser()
        missing = [s for s in stems if _file_in(directory, s) is None]
        if not missing:
            return directory
        raise DataNotFoundError([directory], path=directory, missing=missing)
    searched = candidate_dirs()
    for directory in searched:
        if all(_file_in(directory, s) is not None for s in stems):
            return directory
    raise DataNotFoundError(searched)


# ----------------------------------------------------------------------------- loading

def load_sample(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The embedded sample as stored: uint8 images ``(N, 28, 28)`` and int64 labels."""
    _check_split(split)
    ref = resources.files("refimpl") / "datasets" / SAMPLE_NAME
    with resources.as_file(ref) as file, np.load(file, allow_pickle=False) as npz:
        return npz[f"x_{split}"], npz[f"y_{split}"].astype(np.int64)


def _load_full(split: str, path) -> tuple[np.ndarray, np.ndarray]:
    directory = find_fashion_mnist(path)
    image_stem, label_stem = FILES[split]
    images = read_idx(_file_in(directory, image_stem))
    labels = read_idx(_file_in(directory, label_stem))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
        raise IDXError(
            f"{directory}: expected images (N, 28, 28) and labels (N,), got {images.shape} "
            f"and {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise IDXError(
            f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels in split "
            f"{split!r}"
        )
    if labels.max(initial=0) > 9:
        raise IDXError(f"{directory}: labels outside 0..9 in split {split!r}")
    return images, labels.astype(np.int64)


def load_fashion_mnist(
    split: str = "train",
    path: str | os.PathLike | None = None,
    source: str = "auto",
    subset: int | None = None,
    seed: int = 0,
    normalize: bool | str = True,
    flatten: bool = False,
    dtype: Any = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST images and labels.

    Parameters
    ----------
    split : {"train", "test"}
    path : str or PathLike, optional
        Directory with the IDX files; searched first (see :func:`find_fashion_mnist`).
    source : {"auto", "full", "sample"}
        ``"full"``: the IDX files (error when absent); ``"sample"``: the embedded sample;
        ``"auto"``: the full files when found, else the sample.
    subset : int, optional
        Keep ``subset`` images, drawn stratified by class with ``seed``
        (see :func:`stratified_indices`).
    normalize : bool or "standardize"
        ``True``: ``x / 255`` in [0, 1]; ``"standardize"``:
        ``(x / 255 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD``; ``False``: the raw uint8.
    flatten : bool
        Return ``(N, 784)`` instead of ``(N, 1, 28, 28)``.
    dtype : numpy dtype
        Float dtype of the normalized images (float32 or float64).

    Returns
    -------
    X : numpy.ndarray
        ``(N, 1, 28, 28)`` or ``(N, 784)``, dtype ``dtype`` (uint8 when ``normalize=False``).
    y : numpy.ndarray
        ``(N,)`` int64 in 0..9 (names in ``FASHION_MNIST_CLASSES``).
    """
    _check_split(split)
    if source not in ("auto", "full", "sample"):
        raise ValueError(f"source must be 'auto', 'full' or 'sample', got {source!r}")
    if normalize not in (True, False, "standardize"):
        raise ValueError(f"normalize must be True, False or 'standardize', got {normalize!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if source == "sample" or (source == "auto" and not _full_available(path)):
        images, labels = load_sample(split)
    else:
        images, labels = _load_full(split, path)
    if subset is not None:
        keep = stratified_indices(labels, subset, seed=seed)
        images, labels = images[keep], labels[keep]
    X = images.reshape(len(images), -1) if flatten else images.reshape(len(images), 1, 28, 28)
    if normalize is False:
        return np.ascontiguousarray(X), labels
    X = X.astype(dtype) / dtype.type(255)
    if normalize == "standardize":
        X = (X - dtype.type(FASHION_MNIST_MEAN)) / dtype.type(FASHION_MNIST_STD)
    return X, labels


def _full_available(path) -> bool:
    try:
        find_fashion_mnist(path)
    except DataNotFoundError:
        if path is not None:  # an explicit path that is wrong is an error, not a fallback
            raise
        return False
    return True


def _check_split(split: str) -> None:
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


# ----------------------------------------------------------------------------- splitting

def stratified_indices(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Pick ``n`` indices of ``y`` keeping the class proportions, reproducibly from ``seed``.

    Class ``c`` with ``n_c`` of the ``N`` labels gets ``floor(n n_c / N)`` picks; the
    leftover picks go to the classes with the largest remainders (ties: smaller label). The
    picks within a class are drawn without replacement from ``default_rng(seed)``; the
    result is sorted (so the data keep their original order).
    """
    y = np.asarray(y)
    n = _check_count(n, len(y), "subset")
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    take = np.floor(exact).astype(np.int64)
    leftover = n - int(take.sum())
    order = np.lexsort((classes, -(exact - take)))  # largest remainder first, then label
    take[order[:leftover]] += 1
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), size=k, replace=False)
             for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picks))


def _check_count(n, total: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= total:
        raise ValueError(f"{name} must be an integer in 1..{total}, got {n!r}")
    return int(n)


def train_val_split(
    X: np.ndarray, y: np.ndarray, val: float, seed: int = 0, stratify: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Split ``(X, y)`` into disjoint ``(train, val)`` parts.

    ``val`` is a count (int) or a fraction in (0, 1). With ``stratify`` the validation part
    keeps the class proportions (:func:`stratified_indices`); otherwise it is a seeded random
    draw. Both parts keep the original order.
    """
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if isinstance(val, float):
        if not 0 < val < 1:
            raise ValueError(f"val as a fraction must lie in (0, 1), got {val}")
        val = round(val * len(y))
    _check_count(val, len(y) - 1, "val")
    if stratify:
        val_idx = stratified_indices(y, val, seed=seed)
    else:
        val_idx = np.sort(np.random.default_rng(seed).choice(len(y), size=val, replace=False))
    is_val = np.zeros(len(y), dtype=bool)
    is_val[val_idx] = True
    return (X[~is_val], y[~is_val]), (X[is_val], y[is_val])


def check_classification_data(
    X: Any, y: Any, n_classes: int | None = None, dtype: Any = None, name: str = "train"
) -> None:
    """Raise ``ValueError`` naming the problem when ``(X, y)`` cannot train a classifier.

    Checks: NumPy arrays; ``X`` float32/float64 (and equal to ``dtype`` when given) and
    finite; ``y`` an integer vector with one label per row of ``X``; labels in
    ``0..n_classes-1`` when ``n_classes`` is given.
    """
    if not isinstance(X, np.ndarray) or not isinstance(y, np.ndarray):
        raise ValueError(f"{name} must be a tuple (X, y) of NumPy arrays, got "  # noqa: TRY004
                         f"({type(X).__name__}, {type(y).__name__})")
    if X.dtype not in (np.float32, np.float64):
        raise ValueError(f"{name} X has dtype {X.dtype}; use float32 or float64 "
                         "(e.g. X.astype(np.float32) / 255)")
    if dtype is not None and X.dtype != np.dtype(dtype):
        raise ValueError(f"{name} X has dtype {X.dtype} but the model is {np.dtype(dtype)}; "
                         f"cast with X.astype(np.{np.dtype(dtype)})")
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"{name} X must have shape (N, ...) with N >= 1, got {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"{name} y must have shape ({len(X)},) (one label per row of X), "
                         f"got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} y has dtype {y.dtype}; class labels must be integers "
                         "(e.g. y.astype(np.int64))")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} X contains NaN or inf; clean the data first")
    if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} y has labels in {y.min()}..{y.max()} but the model has "
                         f"{n_classes} outputs; labels must lie in 0..{n_classes - 1}")


# ----------------------------------------------------------------------------- synthetic

def make_blobs(n: int = 300, n_classes: int = 3, n_features: int = 2, std: float = 1.0,
               seed: int = 0, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: class ``c`` is ``N(mu_c, std^2 I)`` with ``mu_c ~ U(-5, 5)^d``.

    Returns ``X`` ``(n, n_features)`` and ``y`` int64 with ``y[i] = i mod n_classes``.
    """
    _check_positive(n=n, n_classes=n_classes, n_features=n_features)
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-5, 5, size=(n_classes, n_features))
    y = np.arange(n, dtype=np.int64) % n_classes
    X = centers[y] + std * rng.standard_normal((n, n_features))
    return X.astype(dtype), y


def make_spirals(n: int = 300, n_classes: int = 2, noise: float = 0.2, turns: float = 1.5,
                 seed: int = 0, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved 2-D spirals: point ``i`` of class ``c`` at radius ``r in [0.1, 1]`` and
    angle ``2 pi (turns r + c / n_classes)``, plus ``N(0, (noise / 10)^2)`` per coordinate.
    """
    _check_positive(n=n, n_classes=n_classes)
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % n_classes
    r = rng.uniform(0.1, 1.0, size=n)
    theta = 2 * np.pi * (turns * r + y / n_classes)
    X = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    X += (noise / 10) * rng.standard_normal(X.shape)
    return X.astype(dtype), y


def make_regression(n: int = 200, n_features: int = 1, noise: float = 0.1, seed: int = 0,
                    dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Smooth regression target ``t = sin(x . w) + noise N(0, 1)``, ``x ~ U(-pi, pi)^d``.

    Returns ``X`` ``(n, n_features)`` and ``t`` ``(n, 1)``, both ``dtype`` (for ``mse``).
    """
    _check_positive(n=n, n_features=n_features)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.pi, np.pi, size=(n, n_features))
    w = rng.standard_normal(n_features) / np.sqrt(n_features)
    t = np.sin(X @ w)[:, None] + noise * rng.standard_normal((n, 1))
    return X.astype(dtype), t.astype(dtype)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
