"""Importing the kernels changes no process-wide setting.

Each check runs in a fresh interpreter, so nothing imported by other tests hides a change:
Numba's threading layer and thread count are read before and after, and an audit hook
records every C function looked up through ctypes (``ctypes.dlsym`` audit events), so a
``mallopt`` call cannot happen unseen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba", reason="the numba backend needs numba")

_PROBE = """
import json, sys
looked_up = []
sys.addaudithook(lambda event, args: looked_up.append(str(args[1]))
                 if event == "ctypes.dlsym" else None)
import numba
layer_before = numba.config.THREADING_LAYER
from refimpl import kernels
listed = kernels.available()
backend = kernels.get_backend("numba")
imported = sorted(name for name in sys.modules if name in ("refimpl.kernels.numba", "refimpl.kernels.cuda"))
result = {"layer_before": layer_before, "layer_after": numba.config.THREADING_LAYER,
          "threads": numba.get_num_threads(), "default_threads": numba.config.NUMBA_NUM_THREADS,
          "listed": listed, "imported": imported, "looked_up": looked_up}
if RUN_KERNELS:
    import numpy as np
    x = np.random.default_rng(0).standard_normal((8, 3, 12, 12))
    y, cache = backend.conv2d_forward(x, np.ones((4, 3, 3, 3)), np.zeros(4), 1, 1)
    backend.conv2d_backward(y, cache)
    backend.relu_forward(np.zeros(1 << 18))
    result["threads_after_kernels"] = numba.get_num_threads()
    result["layer_after_kernels"] = numba.config.THREADING_LAYER
    result["looked_up"] = looked_up
print(json.dumps(result))
"""


def _probe(tmp_path, run_kernels: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "NUMBA_ENABLE_CUDASIM")}
    env["XDG_CACHE_HOME"] = str(tmp_path)  # a measured thread policy goes here, not to ~
    env.pop("REFIMPL_NUMBA_LOOPS", None)
    code = _PROBE.replace("RUN_KERNELS", str(run_kernels))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_available_and_get_backend_change_no_setting(tmp_path):
    result = _probe(tmp_path, run_kernels=False)
    assert result["layer_after"] == result["layer_before"]
    assert result["threads"] == result["default_threads"]
    assert not any("mallopt" in name for name in result["looked_up"]), result["looked_up"]
    assert "numba" in result["listed"]
    # available() imports no backend; get_backend("numba") imports only refimpl.kernels.numba
    assert result["imported"] == ["refimpl.kernels.numba"]


def test_running_kernels_leaves_the_thread_count_and_layer_as_they_were(tmp_path):
    """The thread policy acts inside the kernels only, and is restored after each."""
    result = _probe(tmp_path, run_kernels=True)
    assert result["threads_after_kernels"] == result["default_threads"]
    assert result["layer_after_kernels"] == result["layer_before"]
    assert not any("mallopt" in name for name in result["looked_up"])
