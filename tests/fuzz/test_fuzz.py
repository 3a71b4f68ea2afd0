"""Fuzz tests (hypothesis, >= 500 examples each) of everything that reads untrusted input:
the IDX reader, the checkpoint loader, the sweep config parser and every scheduler's
``load_state_dict``. Property: only the documented exception types, never another
exception, a hang or a partially loaded result. Plus kill -9 during checkpoint writing.

Inputs are small so that the whole file stays well under a minute.
"""

from __future__ import annotations

import atexit
import copy
import gzip
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refimpl import registry, schedulers
from refimpl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from refimpl.data import IDXError, read_idx
from refimpl.sweep import SweepConfigError, parse_sweep
from refimpl.sweep.config import DISTRIBUTIONS, RUN_KEYS
from tests.conftest import hypothesis_profile

FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


SCRATCH = Path(tempfile.mkdtemp(prefix="refimpl-fuzz-"))  # one small file, rewritten per example
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=10)


def _scratch(name: str, data: bytes) -> Path:
    path = SCRATCH / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- profiles

@pytest.mark.parametrize("environ, profile", [
    ({}, "dev"), ({"CI": "true"}, "ci"), ({"CI": "1"}, "ci"), ({"CI": "false"}, "dev"),
    ({"CI": "0"}, "dev"), ({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "dev"),
    ({"HYPOTHESIS_PROFILE": "ci"}, "ci"),
])
def test_profile_choice(environ, profile):
    assert hypothesis_profile(environ) == profile


def test_loaded_profile_follows_the_environment(request):
    chosen = request.config.getoption("hypothesis_profile", None)  # --hypothesis-profile wins
    assert settings.get_current_profile_name() == (chosen or hypothesis_profile(os.environ))


def test_ci_profile_draws_the_same_examples_every_run():
    """Two runs of one property test under the ``ci`` profile see the same examples; the
    ``dev`` profile (random seeds) almost surely does not (2 x 20 draws of 64-bit integers)."""
    def draws(profile: str) -> list[int]:
        seen: list[int] = []

        @settings(settings.get_profile(profile), max_examples=20)
        @given(st.integers(0, 2**64 - 1))
        def record(value):
            seen.append(value)

        record()
        return seen

    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None
    assert draws("ci") == draws("ci")
    assert draws("dev") != draws("dev")


# ----------------------------------------------------------------------------- IDX reader

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_files(draw, damage_gzip: bool = False):
    """IDX-shaped bytes: a header that may lie, data that may be short or long, maybe gzip
    (with ``damage_gzip``, always gzip with one byte of the compressed stream changed)."""
    code = draw(st.sampled_from([*IDX_TYPES, 0x00, 0xFF]))
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=3))
    declared = draw(st.one_of(st.just(shape),
                              st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=4)))
    itemsize = np.dtype(IDX_TYPES.get(code, ">u1")).itemsize
    size = int(np.prod(shape, dtype=np.int64)) * itemsize
    body = draw(st.binary(min_size=size, max_size=size))
    data = bytes([0, 0, code, len(declared)]) + struct.pack(f">{len(declared)}I", *declared)
    data += body + draw(st.one_of(st.just(b""), st.binary(max_size=5)))
    cut = draw(st.integers(0, len(data)))
    data = data[:cut] if draw(st.booleans()) else data
    if damage_gzip or draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
    if damage_gzip:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data, declared, code


def _check_idx(case) -> None:
    data, declared, code = case
    path = _scratch("fuzz.idx", data)
    try:
        array = read_idx(path)
    except IDXError:
        return
    # a success must be the whole file, exactly as declared: never a partial array
    assert array.shape == tuple(declared)
    assert array.dtype == np.dtype(IDX_TYPES[code]).newbyteorder("=")


@FUZZ
@given(idx_files())
def test_idx_reader_fuzz(case):
    _check_idx(case)


@FUZZ
@given(idx_files(damage_gzip=True))
def test_idx_reader_fuzz_damaged_gzip(case):
    _check_idx(case)


@FUZZ
@given(st.binary(max_size=64))
def test_idx_reader_fuzz_arbitrary_bytes(data):
    try:
        read_idx(_scratch("fuzz-raw.idx", data))
    except IDXError:
        pass


# ----------------------------------------------------------------------------- checkpoints

def _reference_state() -> dict:
    rng = np.random.default_rng(0)
    return {"model": {"0.W": rng.standard_normal((4, 3)).astype(np.float32),
                      "0.b": np.zeros(3, np.float32)},
            "step": 7, "lr": 0.1, "history": {"loss": [1.0, math.nan]},
            "pair": (1, "a"), "flags": np.array([True, False]), "scalar": np.float32(2.5)}


def _checkpoint_bytes() -> bytes:
    path = save_checkpoint(SCRATCH / "reference.npz", _reference_state(), sidecar=False)
    return path.read_bytes()


REFERENCE_BYTES = _checkpoint_bytes()


def _same_state(a, b) -> bool:
    if isinstance(a, (np.ndarray, np.generic)):
        return (type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            _same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_state, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return type(a) is type(b) and a == b


@st.composite
def damaged_checkpoints(draw):
    data = bytearray(REFERENCE_BYTES)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(damaged_checkpoints())
def test_checkpoint_loader_fuzz_damaged_files(data):
    path = _scratch("damaged.npz", data)
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return
    # a damaged file that still loads must load the whole, original state
    assert _same_state(state, _reference_state())


@st.composite
def forged_checkpoints(draw):
    """Well-formed zips whose ``__state__`` JSON and arrays are made up."""
    header = draw(st.one_of(
        json_values,
        st.fixed_dictionaries({"format": st.sampled_from(["refimpl-checkpoint", "x"]),
                               "version": st.sampled_from([1, 2, "1"]),
                               "state": json_values,
                               "arrays": st.one_of(json_values, st.just({}))})))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        members = {"__state__": np.frombuffer(json.dumps(header).encode(), np.uint8)}
        if draw(st.booleans()):
            members["arr_0000"] = np.arange(draw(st.integers(0, 3)), dtype=np.int64)
        for name, array in members.items():
            with zf.open(f"{name}.npy", "w") as handle:
                np.lib.format.write_array(handle, array, allow_pickle=False)
    return buffer.getvalue()


@FUZZ
@given(forged_checkpoints())
def test_checkpoint_loader_fuzz_forged_contents(data):
    try:
        state = load_checkpoint(_scratch("forged.npz", data))
    except CheckpointError:
        return
    assert isinstance(state, dict)


# ----------------------------------------------------------------------------- sweep config

toml_keys = st.sampled_from([*RUN_KEYS, "name", "spec", "lr", "factor", "T_max", "n",
                             "strategy", "samples", "results", *DISTRIBUTIONS, "x"])
toml_scalars = st.one_of(st.booleans(), st.integers(-3, 50), st.floats(-2, 2),
                         st.sampled_from([math.nan, math.inf, -math.inf]), st.dates(),
                         st.sampled_from(["grid", "random", "blobs", "sgd", "greedy", "cosine",
                                          "dense:4,relu,dense:3", "numpy", "../x", "/abs"]))
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(toml_keys, inner, max_size=3)),
    max_leaves=8)
random_documents = st.dictionaries(
    st.sampled_from(["sweep", "base", "grid", "random", "extra"]),
    st.dictionaries(toml_keys, toml_values, max_size=4), max_size=4)
VALID_DOCUMENT = {
    "base": {"epochs": 1, "data": {"name": "blobs", "n": 30},
             "model": {"spec": "dense:4,relu,dense:3"}, "optimizer": {"name": "sgd", "lr": 0.1}},
    "grid": {"seed": [0, 1]},
}
MUTABLE_PATHS = ["seed", "epochs", "batch_size", "backend", "val_fraction", "optimizer",
                 "optimizer.lr", "optimizer.momentum", "scheduler", "scheduler.name",
                 "scheduler.factor", "data.n", "data.name", "model.spec", "x.y"]
plausible = st.one_of(toml_scalars, st.lists(toml_scalars, min_size=1, max_size=3),
                      st.sampled_from([{"name": "greedy", "factor": 0.9},
                                       {"name": "cosine", "T_max": 2}, {"uniform": [0.1, 0.5]},
                                       {"log_uniform": [1e-3, 1.0]}, {"int": [1, 3]},
                                       {"choice": [1, 2]}]))


@st.composite
def mutated_documents(draw):
    """The valid document with 1-4 entries of [sweep]/[base]/[grid]/[random] set or removed."""
    document = copy.deepcopy(VALID_DOCUMENT)
    if draw(st.booleans()):
        document["sweep"] = {"strategy": "random", "samples": draw(st.integers(1, 3))}
    for _ in range(draw(st.integers(1, 4))):
        table = document.setdefault(draw(st.sampled_from(["sweep", "base", "grid", "random"])),
                                    {})
        *parents, leaf = draw(st.sampled_from(
            [*MUTABLE_PATHS, "strategy", "samples", "results", "seed", "max_runs"])).split(".")
        for part in parents:
            table = table.setdefault(part, {}) if isinstance(table.get(part, {}), dict) else {}
        if draw(st.integers(0, 3)) == 0:
            table.pop(leaf, None)
        else:
            table[leaf] = draw(plausible)
    return document


documents = st.one_of(mutated_documents(), mutated_documents(), random_documents)


@FUZZ
@given(documents)
def test_sweep_config_parser_fuzz_structured(document):
    from refimpl.sweep.config import expand_sweep

    try:
        sweep = expand_sweep(document, source="fuzz.toml", out_dir=SCRATCH)
    except SweepConfigError as err:
        assert str(err).startswith("fuzz.toml: ")
        return
    for run in sweep.runs:  # whatever it accepts is a complete, storable run config
        assert set(run.config) <= set(RUN_KEYS)
        json.dumps(run.config, allow_nan=False)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list('[]{}=,."\'\n #abcdefgrst0123456789-_')),
               max_size=80))
def test_sweep_config_parser_fuzz_text(text):
    try:
        parse_sweep(text, source="fuzz.toml")
    except SweepConfigError:
        pass


# ----------------------------------------------------------------------------- schedulers

#: constructor arguments some schedulers need; a new scheduler without defaults goes here
REQUIRED = {"StepLR": {"step_size": 2}, "MultiStepLR": {"milestones": [1, 3]},
            "ExponentialLR": {"gamma": 0.9}, "CosineAnnealingLR": {"T_max": 5},
            "CosineAnnealingWarmRestarts": {"T_0": 2}, "NewtonLR": {"batches_per_epoch": 2}}
SCHEDULERS = sorted({name for name in registry.SCHEDULER_ALIASES.values() if name is not None})


def _signal(scheduler, t: int):
    rng = np.random.default_rng(t)
    kind = scheduler.signal
    if kind == "none":
        return ()
    if kind == "loss":
        return (float(1.0 / (t + 1) + 0.1 * rng.random()),)
    if kind in ("params", "grads"):
        return ([rng.standard_normal((3, 2)), rng.standard_normal(2)],)
    return ([float(v) for v in 1.0 + rng.random(4)],)  # batch_losses


def _stepped(name: str):
    """A scheduler of class ``name`` after a few steps (so its state is not trivial)."""
    scheduler = getattr(schedulers, name)([0.1, 0.05], **REQUIRED.get(name, {}))
    for t in range(4):
        scheduler.step(*_signal(scheduler, t))
    return scheduler


STEPPED = {name: _stepped(name) for name in SCHEDULERS}
VALID_STATES = {name: json.loads(json.dumps(s.state_dict())) for name, s in STEPPED.items()}


def _snapshot(scheduler) -> str:
    return json.dumps(scheduler.state_dict(), sort_keys=True, default=repr)


@st.composite
def scheduler_and_state(draw):
    """A scheduler class and a state dict for it: its valid state with 1-3 keys deleted or
    replaced by arbitrary JSON values, another class's state, or arbitrary JSON."""
    name = draw(st.sampled_from(SCHEDULERS))
    kind = draw(st.sampled_from(["mutated", "mutated", "mutated", "other", "junk"]))
    if kind == "junk":
        return name, draw(json_values)
    source = draw(st.sampled_from(SCHEDULERS)) if kind == "other" else name
    state = copy.deepcopy(VALID_STATES[source])
    for _ in range(draw(st.integers(0 if kind == "other" else 1, 3))):
        key = draw(st.sampled_from(sorted(state) or ["class"]))
        if draw(st.integers(0, 2)) == 0:
            state.pop(key, None)
        else:
            state[key] = draw(json_values)
    return name, state


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_round_trips_its_state(name):
    scheduler = STEPPED[name]
    fresh = getattr(schedulers, name)([0.1, 0.05], **REQUIRED.get(name, {}))
    fresh.load_state_dict(copy.deepcopy(VALID_STATES[name]))  # through JSON, as stored
    assert _snapshot(fresh) == _snapshot(scheduler)
    twin = copy.deepcopy(scheduler)
    assert fresh.step(*_signal(fresh, 9)) == twin.step(*_signal(twin, 9))


@FUZZ
@given(scheduler_and_state())
def test_scheduler_load_state_dict_fuzz(case):
    """Every scheduler: a bad state raises only TypeError/ValueError (base.py's contract)."""
    name, state = case
    try:
        copy.deepcopy(STEPPED[name]).load_state_dict(state)
    except (TypeError, ValueError):
        pass


@FUZZ
@given(scheduler_and_state())
def test_scheduler_failed_load_leaves_it_unchanged(case):
    name, state = case
    scheduler = copy.deepcopy(STEPPED[name])
    try:
        scheduler.load_state_dict(state)
    except (TypeError, ValueError):
        assert _snapshot(scheduler) == _snapshot(STEPPED[name])


@FUZZ
@given(scheduler_and_state())
def test_scheduler_accepted_state_can_step(case):
    """A state that loads must be usable: the next step may only raise ValueError."""
    name, state = case
    scheduler = copy.deepcopy(STEPPED[name])
    try:
        scheduler.load_state_dict(state)
    except (TypeError, ValueError):
        return
    try:
        scheduler.step(*_signal(scheduler, 5))
    except ValueError:
        pass


# ----------------------------------------------------------------------------- kill -9

WRITER = textwrap.dedent("""
    import sys, numpy as np
    from refimpl.checkpoint import save_checkpoint
    path = sys.argv[1]
    rng = np.random.default_rng(0)
    weights = rng.standard_normal((256, 1024))   # 2 MB: a write takes a while
    step = 0
    while True:
        step += 1
        save_checkpoint(path, {"step": step, "weights": weights + step})
        print(step, flush=True)
""")


@pytest.mark.slow
def test_kill_9_during_checkpoint_writing_leaves_the_previous_one_loadable(tmp_path):
    """SIGKILL a process that rewrites a checkpoint in a loop, at 5 random moments."""
    path = tmp_path / "last.npz"
    rng = np.random.default_rng(0)
    expected_weights = np.random.default_rng(0).standard_normal((256, 1024))
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(path)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip()  # at least one checkpoint is complete
        time.sleep(float(rng.uniform(0.0, 0.5)))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        state = load_checkpoint(path)
        assert state["step"] >= 1
        np.testing.assert_array_equal(state["weights"], expected_weights + state["step"])
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("last.npz", "last.json")]
    # a kill between mkstemp and os.replace can leave a temporary file; it is never read
    assert all(name.startswith(".last.") and name.endswith(".tmp") for name in leftovers)


TRAINER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from refimpl.data import make_blobs
    from refimpl.model import build
    from refimpl.optim import SGD
    from refimpl.schedulers import GreedyLR
    from refimpl.train import Trainer

    checkpoint_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    X, y = make_blobs(n=480, n_classes=3, n_features=8, std=3.0, seed=0)
    model = build("dense:256,relu,dense:256,relu,dense:3", (8,), seed=0)
    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9)

    class Announce:
        def on_batch_end(self, trainer, logs):
            print(logs["step"], flush=True)

    trainer = Trainer(model, optimizer, GreedyLR(0.01, factor=0.9, patience=1, max_lr=0.05),
                      batch_size=32, seed=0, progress=False, checkpoint_dir=checkpoint_dir,
                      checkpoint_every=1, callbacks=[Announce()])
    resume = True if (checkpoint_dir / "last.npz").exists() else None
    history = trainer.fit((X, y), epochs=3, resume=resume)
    out.write_text(json.dumps(history.to_dict()))
""")


@pytest.mark.slow
def test_kill_9_during_training_checkpoints_then_resume_gives_the_uninterrupted_history(
        tmp_path):
    """Trainer checkpointing every step, SIGKILLed 3 times at random moments: each time the
    last checkpoint loads, and the resumed run ends with the History of a run never killed."""
    from refimpl.train import History

    def start(directory: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", TRAINER, str(directory / "ckpt"),
                                 str(directory / "history.json")],
                                stdout=subprocess.PIPE, text=True)

    rng = np.random.default_rng(1)
    killed = tmp_path / "killed"
    killed.mkdir()
    kills = 0
    for _ in range(3):
        process = start(killed)
        if not process.stdout.readline():  # finished (or died) before a step: nothing to kill
            process.wait()
            break
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        state = load_checkpoint(killed / "ckpt" / "last.npz")  # must never raise
        assert isinstance(state, dict)
    assert kills >= 2
    start(killed).wait(timeout=120)
    clean = tmp_path / "clean"
    clean.mkdir()
    assert start(clean).wait(timeout=120) == 0
    resumed = History.from_dict(json.loads((killed / "history.json").read_text()))
    uninterrupted = History.from_dict(json.loads((clean / "history.json").read_text()))
    assert resumed.n_steps == uninterrupted.n_steps == 3 * 15
    assert resumed == uninterrupted  # bit for bit, wall times aside
