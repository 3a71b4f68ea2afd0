"""refimpl.checkpoint: lossless pickle-free round trips, atomic writes, clear load errors."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl import checkpoint
from refimpl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def sample_state():
    rng = np.random.default_rng(0)
    return {
        "model": {"0.W": rng.standard_normal((3, 4)).astype(np.float32),
                  "0.b": np.zeros(4, np.float64)},
        "optimizer": {"class": "Adam",
                      "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "nesterov": False,
                                        "params": [0, 1]}],
                      "state": {0: {"step": 3, "exp_avg": rng.standard_normal(4)}}},
        "floats": [float("nan"), float("inf"), -0.0, 1e-300, 0.1 + 0.2],
        "scalars": [np.float32(1.5), np.int64(-7), np.bool_(True)],
        "misc": {"none": None, "text": "ünïcode", "ints": np.arange(5, dtype=np.int8),
                 "empty": np.zeros((0, 3)), "__dunder": 1, "nested": [[1, (2, 3)], {}]},
    }


def assert_same(a, b):
    """Equal with the same types and bits (NaN equal to NaN)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):  # keys compared by bits too (a NaN key is not == itself)
        assert len(a) == len(b)
        for (key_a, value_a), (key_b, value_b) in zip(a.items(), b.items()):
            assert_same(key_a, key_b)
            assert_same(value_a, value_b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b)
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    elif isinstance(a, float):
        assert np.float64(a).tobytes() == np.float64(b).tobytes()
    else:
        assert a == b


def test_round_trip_is_lossless(tmp_path):
    state = sample_state()
    path = save_checkpoint(tmp_path / "c.npz", state)
    assert_same(load_checkpoint(path), state)
    sidecar = json.loads((tmp_path / "c.json").read_text())
    assert sidecar["format"] == checkpoint.FORMAT and "model" in sidecar["state"]


def _double(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


# quiet NaN, negative quiet NaN, quiet NaN with a payload, signalling NaN, all-ones NaN
NAN_BITS = [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF8000000000123,
            0x7FF0000000000001, 0xFFFFFFFFFFFFFFFF]


@pytest.mark.parametrize("bits", NAN_BITS, ids=hex)
def test_nan_sign_and_payload_survive(tmp_path, bits):
    nan = _double(bits)
    state = {"x": nan, "in_list": [1.0, nan], "in_tuple": (nan,), "as_key": {nan: 1, 2: nan}}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.npz", state))
    assert_same(loaded, state)
    got = struct.unpack("<Q", struct.pack("<d", loaded["x"]))[0]
    assert got == bits
    # the readable copy stays standard JSON for a NaN (its bits are a string)
    sidecar = json.loads((tmp_path / "c.json").read_text(), parse_constant=_no_constants)
    assert sidecar["state"]["x"] == {"__nan__": f"{bits:016x}"}


def _no_constants(name):
    raise AssertionError(f"non-standard JSON constant {name} in the sidecar")


@pytest.mark.parametrize("bits", ["7ff0000000000000", "3ff0000000000000", "7ff8", 5, "zz" * 8])
def test_tampered_nan_record_is_refused(tmp_path, bits):
    path = save_checkpoint(tmp_path / "c.npz", {"x": math.nan})
    _rewrite_header(path, lambda h, m: h["state"].update(x={"__nan__": bits}))
    with pytest.raises(CheckpointError, match="malformed"):
        load_checkpoint(path)


def test_file_is_plain_npz_without_pickle(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", sample_state())
    with np.load(path, allow_pickle=False) as npz:  # would raise on any pickled member
        assert "__state__" in npz.files
        for name in npz.files:
            assert npz[name].dtype != object


def test_same_state_same_bytes(tmp_path):
    a = save_checkpoint(tmp_path / "a.npz", sample_state()).read_bytes()
    b = save_checkpoint(tmp_path / "b.npz", sample_state()).read_bytes()
    assert a == b


@pytest.mark.parametrize("bad", [
    {"x": object()}, {"x": {1, 2}}, {"x": np.array(["a", None], dtype=object)},
    {"x": np.array(["text"])}, {"x": {(1, 2): 3}},
])
def test_unsupported_values_refused_and_nothing_written(tmp_path, bad):
    with pytest.raises(CheckpointError, match="state"):
        save_checkpoint(tmp_path / "c.npz", bad)
    assert list(tmp_path.iterdir()) == []


def test_truncated_checkpoint_raises_clear_error(tmp_path):
    good = save_checkpoint(tmp_path / "good.npz", sample_state()).read_bytes()
    bad = tmp_path / "bad.npz"
    for cut in (0, 10, len(good) // 3, len(good) // 2, len(good) - 30, len(good) - 1):
        bad.write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match="bad.npz"):
            load_checkpoint(bad)


def test_corrupted_bytes_raise_clear_error(tmp_path):
    good = bytearray(save_checkpoint(tmp_path / "good.npz", sample_state()).read_bytes())
    bad = tmp_path / "bad.npz"
    rng = np.random.default_rng(0)
    for position in rng.integers(0, len(good), size=25):
        data = good.copy()
        data[position] ^= 0xFF
        bad.write_bytes(bytes(data))
        try:
            load_checkpoint(bad)  # a flip in zip padding/metadata may be harmless
        except CheckpointError:
            pass


def test_not_ours_and_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not written by refimpl"):
        load_checkpoint(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "text.npz")


def _rewrite_header(path, edit):
    with np.load(path, allow_pickle=False) as npz:
        members = {k: npz[k] for k in npz.files}
    header = json.loads(members["__state__"].tobytes())
    edit(header, members)
    members["__state__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    checkpoint.save_npz(path, members)


@pytest.mark.parametrize("edit, message", [
    (lambda h, m: h.update(version=99), "version"),
    (lambda h, m: h.update(format="other"), "not a refimpl-checkpoint"),
    (lambda h, m: h["arrays"].pop(next(iter(h["arrays"]))), "array list"),
    (lambda h, m: m.update(arr_0000=np.zeros(2)), "does not match its record"),
    (lambda h, m: h.update(state={"x": {"__array__": "missing"}}), "malformed"),
    (lambda h, m: h.update(state={"__weird__": 1, "b": 2}), "malformed"),
    (lambda h, m: h.update(state=[1, 2]), "not a dict"),
])
def test_tampered_header(tmp_path, edit, message):
    path = save_checkpoint(tmp_path / "c.npz", sample_state())
    _rewrite_header(path, edit)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_state_member_not_json(tmp_path):
    checkpoint.save_npz(tmp_path / "c.npz", {"__state__": np.frombuffer(b"{nope", np.uint8)})
    with pytest.raises(CheckpointError, match="unreadable state record"):
        load_checkpoint(tmp_path / "c.npz")


@pytest.mark.parametrize("failing", ["fsync", "replace", "write"])
def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch, failing):
    path = save_checkpoint(tmp_path / "c.npz", {"v": np.arange(3)}, sidecar=False)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("simulated crash")

    if failing == "write":
        monkeypatch.setattr(checkpoint.os, "fdopen",
                            lambda fd, mode: _FailingFile(fd))
    else:
        monkeypatch.setattr(checkpoint.os, failing, boom)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"v": np.arange(1000)}, sidecar=False)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temp file left
    assert_same(load_checkpoint(path), {"v": np.arange(3)})


_REAL_FDOPEN = os.fdopen


class _FailingFile:
    """A file object that writes half the bytes, then fails (a crash mid-write)."""

    def __init__(self, fd):
        self._file = _REAL_FDOPEN(fd, "wb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def write(self, data):
        self._file.write(data[: len(data) // 2])
        raise OSError("simulated crash")


def test_npz_bytes_readable_by_numpy():
    raw = checkpoint.npz_bytes({"a": np.arange(4.0), "b": np.eye(2, dtype=np.float32)})
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        assert zf.namelist() == ["a.npy", "b.npy"]
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in zf.infolist())
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["b"], np.eye(2))


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(-2**62, 2**62), st.text(max_size=5),
    st.floats(allow_nan=True, allow_infinity=True),
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
               hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)),
)
_states = st.dictionaries(
    st.text(max_size=5),
    st.recursive(_leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-5, 5)), inner, max_size=3)),
        max_leaves=8),
    max_size=4)


@settings(max_examples=60, deadline=None)
@given(state=_states)
def test_round_trip_property(tmp_path_factory, state):
    path = tmp_path_factory.mktemp("prop") / "c.npz"
    assert_same(load_checkpoint(save_checkpoint(path, state, sidecar=False)), state)


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(0, 2**64 - 1))
def test_every_double_round_trips_bit_exact(tmp_path_factory, bits):
    """Any 64-bit pattern (NaN payloads, subnormals, -0.0, infinities) comes back unchanged."""
    value = _double(bits)
    path = tmp_path_factory.mktemp("bits") / "c.npz"
    loaded = load_checkpoint(save_checkpoint(path, {"v": value, "k": {value: 0}}, sidecar=False))
    assert struct.pack("<d", loaded["v"]) == struct.pack("<d", value)
    assert [struct.pack("<d", k) for k in loaded["k"]] == [struct.pack("<d", value)]
