"""The ``refimpl`` command on a new user's mistakes: bad input exits 2 with one line naming
the argument and the fix, a failed run exits 1 with one line after writing what it computed,
and neither prints a traceback or leaves a partial file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from refimpl import __version__, cli

ROOT = Path(__file__).resolve().parents[1]


def run_module(*argv: str, cwd: Path | None = None, timeout: float = 300,
               **kwargs) -> subprocess.CompletedProcess:
    """``python -m refimpl ARGV`` in a fresh process (how a user meets the command)."""
    return subprocess.run([sys.executable, "-m", "refimpl", *argv], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, **kwargs)


def one_error_line(stderr: str) -> str:
    """The single line a user mistake prints: no traceback, ``refimpl: error:`` style."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, stderr
    return errors[0]


# ----------------------------------------------------------------------------- entry points

def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"refimpl {__version__}"


def test_python_dash_m_refimpl(tmp_path):
    result = run_module("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"refimpl {__version__}"
    result = run_module("--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage: refimpl" in result.stdout

