"""refimpl.data: IDX reader, data-set search order, the embedded sample, splits, synthetic sets."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl import data
from refimpl.checkpoint import npz_bytes
from refimpl.data import DataNotFoundError, IDXError
from tests.conftest import ROOT


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` (uint8) as an IDX file, independently of the reader under test."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fake_fashion(directory, n_train=40, n_test=20, gz=True, seed=0):
    """Four small but valid Fashion-MNIST files (labels 0..9 cycling)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        arrays[split] = (images, labels)
        for stem, array in zip(data.FILES[split], (images, labels)):
            raw = idx_bytes(array)
            if gz:
                (directory / (stem + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (directory / stem).write_bytes(raw)
    return arrays


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $REFIMPL_DATA, an empty home cache and an empty system directory."""
    monkeypatch.delenv("REFIMPL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(data, "SYSTEM_DIR", tmp_path / "system")
    return tmp_path


# ----------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.random.default_rng(1).integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    raw = idx_bytes(array)
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = data.read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (3, 5, 7)
    np.testing.assert_array_equal(out, array)


def test_read_idx_other_types_are_native_order(tmp_path):
    values = np.array([[1.5, -2.25], [3.0, 1e10]])
    raw = bytes([0, 0, 0x0E, 2]) + struct.pack(">2I", 2, 2) + values.astype(">f8").tobytes()
    (tmp_path / "f").write_bytes(raw)
    out = data.read_idx(tmp_path / "f")
    assert out.dtype == np.dtype("=f8")
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: b"\x01" + raw[1:], "not an IDX file"),          # bad magic
    (lambda raw: raw[:2] + b"\x07" + raw[3:], "not an IDX file"),  # unknown type code
    (lambda raw: raw[:3] + b"\x00" + raw[4:], "0 dimensions"),
    (lambda raw: raw[:-5], "truncated or corrupt"),              # short data
    (lambda raw: raw + b"\x00", "truncated or corrupt"),         # trailing bytes
    (lambda raw: raw[:6], "ends inside the IDX header"),
    (lambda raw: b"", "not an IDX file"),
])
def test_read_idx_corrupt_raises(tmp_path, mutate, message):
    raw = idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))
    path = tmp_path / "bad"
    path.write_bytes(mutate(raw))
    with pytest.raises(IDXError, match=message):
        data.read_idx(path)


def test_read_idx_broken_gzip(tmp_path):
    raw = idx_bytes(np.random.default_rng(0).integers(0, 256, (4, 9, 9), dtype=np.uint8))
    packed = gzip.compress(raw)
    (tmp_path / "bad.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(IDXError, match="gzip"):
        data.read_idx(tmp_path / "bad.gz")
    # one damaged byte anywhere in the deflate stream (zlib.error or a CRC mismatch)
    for position in range(10, len(packed) - 8, 7):
        damaged = bytearray(packed)
        damaged[position] ^= 0x5A
        (tmp_path / "bad.gz").write_bytes(bytes(damaged))
        with pytest.raises(IDXError):
            data.read_idx(tmp_path / "bad.gz")


# ----------------------------------------------------------------------------- search order

def test_search_order(isolated, monkeypatch):
    tmp = isolated
    places = {"arg": tmp / "arg", "env": tmp / "env", "cache": tmp / "home/.cache/refimpl",
              "system": tmp / "system"}
    for seed, directory in enumerate(places.values()):
        write_fake_fashion(directory, seed=seed, gz=seed % 2 == 0)
    monkeypatch.setenv("REFIMPL_DATA", str(places["env"]))
    assert data.find_fashion_mnist(places["arg"]) == places["arg"]
    assert data.find_fashion_mnist() == places["env"]
    monkeypatch.delenv("REFIMPL_DATA")
    assert data.find_fashion_mnist() == places["cache"]
    for stem in data.FILES["test"]:
        (places["cache"] / (stem + ".gz")).unlink()  # an incomplete directory is passed over
    assert data.find_fashion_mnist() == places["system"]


def test_missing_dataset_error_names_places_and_apt(isolated):
    with pytest.raises(DataNotFoundError) as info:
        data.load_fashion_mnist("train", source="full")
    text = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in text
    assert str(isolated / "system") in text and ".cache/refimpl" in text
    assert "REFIMPL_DATA" in text


def test_explicit_path_without_files_is_an_error(isolated):
    (isolated / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="path="):
        data.load_fashion_mnist("train", path=isolated / "empty")


def test_auto_falls_back_to_sample_only_without_files(isolated):
    X, y = data.load_fashion_mnist("test")  # nothing installed -> the sample
    assert X.shape == (500, 1, 28, 28)
    arrays = write_fake_fashion(isolated / "system", n_test=20)
    X, y = data.load_fashion_mnist("test")
    assert X.shape == (20, 1, 28, 28)
    np.testing.assert_array_equal(y, arrays["test"][1])


def test_load_full_shapes_and_normalization(isolated):
    arrays = write_fake_fashion(isolated / "d", gz=False)
    images, _ = arrays["train"]
    X, y = data.load_fashion_mnist("train", path=isolated / "d", source="full")
    assert X.dtype == np.float32 and X.shape == (40, 1, 28, 28) and y.dtype == np.int64
    # x / 255 in float32, exactly
    np.testing.assert_array_equal(X[:, 0], images.astype(np.float32) / np.float32(255))
    raw, _ = data.load_fashion_mnist("train", path=isolated / "d", normalize=False, flatten=True)
    assert raw.dtype == np.uint8 and raw.shape == (40, 784)
    Z, _ = data.load_fashion_mnist("train", path=isolated / "d", normalize="standardize",
                                   dtype=np.float64)
    expected = (images / 255.0 - data.FASHION_MNIST_MEAN) / data.FASHION_MNIST_STD
    np.testing.assert_allclose(Z[:, 0], expected, rtol=1e-12, atol=1e-12)


def test_load_rejects_mismatched_files(isolated):
    directory = isolated / "d"
    write_fake_fashion(directory)
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(39, dtype=np.uint8))))
    with pytest.raises(IDXError, match="40 images but 39 labels"):
        data.load_fashion_mnist("train", path=directory)


@pytest.mark.parametrize("kwargs, name", [
    ({"split": "valid"}, "split"), ({"source": "web"}, "source"),
    ({"normalize": "minmax"}, "normalize"), ({"dtype": np.int32}, "dtype"),
    ({"subset": 0}, "subset"), ({"subset": 10**6}, "subset"), ({"subset": 2.5}, "subset"),
])
def test_load_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        data.load_fashion_mnist(**{"source": "sample", **kwargs})


# ----------------------------------------------------------------------------- sample

def test_embedded_sample_contents():
    ref = resources.files("refimpl") / "datasets" / data.SAMPLE_NAME
    with resources.as_file(ref) as path:
        assert path.stat().st_size <= 2 * 1024 * 1024
        with np.load(path, allow_pickle=False) as npz:
            for split, n in (("train", 2000), ("test", 500)):
                assert npz[f"x_{split}"].dtype == np.uint8
                assert npz[f"x_{split}"].shape == (n, 28, 28)
                assert np.bincount(npz[f"y_{split}"], minlength=10).tolist() == [n // 10] * 10
                assert len(np.unique(npz[f"idx_{split}"])) == n
    X, y = data.load_fashion_mnist("train", source="sample")
    assert X.shape == (2000, 1, 28, 28) and X.dtype == np.float32
    assert X.min() >= 0 and X.max() <= 1 and y.dtype == np.int64


def test_sample_is_reproducible_from_the_full_files():
    try:
        directory = data.find_fashion_mnist()
    except DataNotFoundError:
        pytest.skip("full Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    script = ROOT / "scripts" / "make_sample.py"
    spec = importlib.util.spec_from_file_location("make_sample", script)
    make_sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_sample)
    arrays = make_sample.make_sample(directory)
    ref = resources.files("refimpl") / "datasets" / data.SAMPLE_NAME
    shipped = ref.read_bytes()
    assert npz_bytes(arrays) == shipped  # same arrays and the same bytes
    images, _ = data._load_full("train", directory)
    np.testing.assert_array_equal(images[arrays["idx_train"]], data.load_sample("train")[0])


# ----------------------------------------------------------------------------- splitting

def test_stratified_indices_proportions_and_seed():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    idx = data.stratified_indices(y, 20, seed=3)
    assert len(idx) == 20 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [10, 6, 3, 1]
    np.testing.assert_array_equal(idx, data.stratified_indices(y, 20, seed=3))
    assert not np.array_equal(idx, data.stratified_indices(y, 20, seed=4))


@settings(max_examples=40, deadline=None)
@given(counts=st.lists(st.integers(1, 30), min_size=1, max_size=6), frac=st.floats(0.01, 1.0),
       seed=st.integers(0, 2**16))
def test_stratified_indices_property(counts, frac, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n = max(1, int(frac * len(y)))
    idx = data.stratified_indices(y, n, seed=seed)
    assert len(idx) == n and len(np.unique(idx)) == n
    picked = np.bincount(y[idx], minlength=len(counts))
    exact = n * np.array(counts) / len(y)
    assert np.all(np.abs(picked - exact) < 1)  # largest-remainder apportionment


def test_train_val_split_disjoint():
    X = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50) % 5
    (Xt, _), (Xv, yv) = data.train_val_split(X, y, 10, seed=1)
    assert len(Xt) == 40 and len(Xv) == 10
    assert not set(Xt[:, 0]) & set(Xv[:, 0])
    assert np.bincount(yv).tolist() == [2] * 5
    (_, _), (Xf, _) = data.train_val_split(X, y, 0.2, seed=1, stratify=False)
    assert len(Xf) == 10
    with pytest.raises(ValueError, match="val"):
        data.train_val_split(X, y, 50)
    with pytest.raises(ValueError, match="rows"):
        data.train_val_split(X, y[:-1], 5)


def test_check_classification_data_errors():
    X = np.zeros((4, 3), np.float32)
    y = np.array([0, 1, 2, 1])
    data.check_classification_data(X, y, n_classes=3)
    cases = [
        (X.astype(np.int32), y, {}, "dtype int32"),
        (X, y, {"dtype": np.float64}, "cast"),
        (X, y[:3], {}, "one label per row"),
        (X, y.astype(float), {}, "integers"),
        (np.full((4, 3), np.nan, np.float32), y, {}, "NaN"),
        (X, y, {"n_classes": 2}, "0..1"),
        (X, y - 1, {"n_classes": 3}, "0..2"),
        (X.tolist(), y, {}, "NumPy arrays"),
    ]
    for Xc, yc, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            data.check_classification_data(Xc, yc, **kwargs)


# ----------------------------------------------------------------------------- synthetic

@pytest.mark.parametrize("maker", [data.make_blobs, data.make_spirals, data.make_regression])
def test_synthetic_seeded(maker):
    X1, y1 = maker(60, seed=5)
    X2, y2 = maker(60, seed=5)
    X3, _ = maker(60, seed=6)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert X1.dtype == np.float32 and len(X1) == len(y1) == 60
    with pytest.raises(ValueError, match="n must be a positive integer"):
        maker(0)


def test_synthetic_shapes():
    X, y = data.make_blobs(30, n_classes=3, n_features=4, dtype=np.float64)
    assert X.shape == (30, 4) and X.dtype == np.float64 and set(y) == {0, 1, 2}
    X, y = data.make_spirals(30, n_classes=3)
    assert X.shape == (30, 2) and y.dtype == np.int64 and set(y) == {0, 1, 2}
    X, t = data.make_regression(30, n_features=3)
    assert X.shape == (30, 3) and t.shape == (30, 1) and t.dtype == np.float32
