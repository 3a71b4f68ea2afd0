"""Every code block of README.md and docs/*.md works as written.

``python`` blocks run top to bottom, all blocks of one section (the text under one ``## ``
heading; "intro" before the first) as one script, so a block may use what an earlier block
of its section defined. Each script runs as ``python script.py`` in a fresh process (so
``if __name__ == "__main__":`` guards behave as in a user's script), from a fresh directory
holding a link to the repository's ``examples/`` (a block reads what it would read in a
checkout and writes nothing into it), with ``NUMBA_ENABLE_CUDASIM=1`` unless the variable is
set (the CUDA page's example runs on Numba's simulator without a GPU, as that page says).

Two conventions for the pages:

* a ``python`` block whose first line starts with ``# template`` is a template to fill in
  (a signature, a placeholder for the reader's own code) and is not run; keep these rare;
* a section importing a package that is not installed (an optional extra: torch,
  transformers, pytorch-dlrs, Dask, JAX) is skipped, naming the package.

``bash`` (``sh``, ``shell``, ``console``) blocks are not run; every ``refimpl ...`` or
``python -m refimpl...`` line in them must parse: its subcommand and options exist.
argparse is stopped right after a successful parse, so nothing is trained or written.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)
SHELLS = ("bash", "sh", "shell", "console")
TEMPLATE = "# template"


def _sections(page: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(heading, [(language, code), ...])`` for each ``## `` section of ``page``."""
    parts = re.split(r"^(## .*)$", page.read_text(), flags=re.MULTILINE)
    sections, heading = [], "intro"
    for part in parts:
        if part.startswith("## "):
            heading = part[3:].strip()
        else:
            sections.append((heading, BLOCK.findall(part)))
    return sections


def _python_sections() -> list:
    params = []
    for page in PAGES:
        for heading, blocks in _sections(page):
            code = [text for language, text in blocks
                    if language == "python" and not text.startswith(TEMPLATE)]
            if not code:
                continue
            imports = _imported_packages(code)
            marks = [pytest.mark.slow]  # each section starts a Python process
            marks += [pytest.mark.torch] if "torch" in imports else []
            marks += [pytest.mark.hf] if "transformers" in imports else []
            params.append(pytest.param(page, heading, code, id=f"{page.name}: {heading}",
                                       marks=marks))
    return params


def _imported_packages(code: list[str]) -> set[str]:
    """Top-level names of the packages the blocks import."""
    names = set()
    for text in code:
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _command_lines() -> list:
    """Every ``refimpl`` command line of the shell blocks, continuation lines joined."""
    params = []
    for page in PAGES:
        for heading, blocks in _sections(page):
            for language, text in blocks:
                if language not in SHELLS:
                    continue
                for line in text.replace("\\\n", " ").splitlines():
                    words = shlex.split(line.removeprefix("$ "), comments=True)
                    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                        words = words[1:]  # VARIABLE=value before the command
                    if words and (Path(words[0]).name == "refimpl"
                                  or words[1:2] == ["-m"] and words[2].startswith("refimpl")):
                        params.append(pytest.param(words, id=f"{page.name}: {' '.join(words)}"))
    return params


def test_the_pages_have_blocks_of_both_kinds():
    """The collection below finds the pages' blocks (a changed fence syntax would otherwise
    turn the tests into nothing)."""
    assert len(PAGES) > 5
    assert sum(1 for _ in _python_sections()) >= 5
    assert len(_command_lines()) >= 4
    assert any(page.name == "README.md" for page in PAGES)


@pytest.mark.parametrize(("page", "heading", "code"), _python_sections())
def test_python_blocks_run(page, heading, code, tmp_path):
    missing = sorted(name for name in _imported_packages(code)
                     if importlib.util.find_spec(name) is None)
    if missing:
        pytest.skip(f"{page.name}, {heading!r} needs {', '.join(missing)} (an optional extra)")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = tmp_path / "blocks.py"
    script.write_text("\n\n".join(code))
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (
        f"{page.name}, section {heading!r} failed (exit {done.returncode}):\n"
        f"{done.stderr[-4000:]}")


class _Parsed(BaseException):
    """Raised right after a command line parsed, so that nothing runs (a BaseException, so
    no ``except Exception`` in a command's main can swallow it)."""


@pytest.mark.parametrize("words", _command_lines())
def test_command_lines_parse(words, monkeypatch, capsys):
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)  # an unknown command or option exits with status 2
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    if Path(words[0]).name == "refimpl" or words[2] == "refimpl":
        from refimpl.cli import main
        argv = words[1:] if Path(words[0]).name == "refimpl" else words[3:]
    else:  # python -m refimpl.something
        main, argv = importlib.import_module(words[2]).main, words[3:]
    try:
        main(argv)
    except _Parsed:
        return
    except SystemExit as exc:
        assert exc.code in (0, None), (f"{' '.join(words)!r} does not parse (exit {exc.code}): "
                                       f"{capsys.readouterr().err.strip()}")
        return
    pytest.fail(f"{' '.join(words)!r} returned without parsing its arguments")
