"""Packaging: every third-party module the package imports is a declared dependency, every
directory that ships is a declared package, and building the wheel prints no setuptools
warning about either."""

from __future__ import annotations

import ast
import configparser
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

SOURCES = ("refimpl",)
#: modules loaded only by an optional feature, with the extra that provides their imports
OPTIONAL_MODULES = {"refimpl/sweep/_worker.py": "dask"}  # loaded by dask workers only


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def _requirement_names(block: str) -> set[str]:
    """The distributions a requirements block installs by name; ``dask[distributed]`` also
    counts the distributions dask's ``distributed`` extra pulls in (when dask is installed)."""
    names = set()
    for line in block.strip().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?", line)
        if match:
            names.add(_normalize(match.group(1)))
            for extra in (match.group(2) or "").split(","):
                names |= _extra_requirements(match.group(1), extra.strip())
    return names


def _extra_requirements(distribution: str, extra: str) -> set[str]:
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return set()
    return {_normalize(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in requires
            if extra and re.search(rf"extra\s*==\s*['\"]{re.escape(extra)}['\"]", r)}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported when the module is imported (its body, not its functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(SOURCES) - {"__future__"}


@functools.cache
def _import_names() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    return {_normalize(d) for d in _import_names().get(module, [module])}


def test_module_level_imports_are_declared_dependencies():
    config = _setup_cfg()
    required = _requirement_names(config["options"]["install_requires"])
    extras = {name: _requirement_names(block)
              for name, block in config["options.extras_require"].items()}
    undeclared = []
    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            allowed = required | extras.get(OPTIONAL_MODULES.get(relative, ""), set())
            for module in sorted(_module_level_imports(path)):
                if not _distributions(module) & allowed:
                    undeclared.append(f"{relative}: {module}")
    assert undeclared == [], "imported at run time but not in setup.cfg install_requires"


def test_every_shipped_directory_is_a_declared_package():
    """setuptools warns "Package would be ignored" for an importable directory holding files
    that the packages configuration leaves out; the configuration must list every one."""
    from setuptools import find_namespace_packages

    find = _setup_cfg()["options.packages.find"]
    packages = set(find_namespace_packages(
        where=str(ROOT), include=find["include"].split(), exclude=find["exclude"].split()))
    shipped = {path.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for source in SOURCES for path in (ROOT / source).rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert shipped - packages == set()
    assert not any("__pycache__" in name for name in packages)


@pytest.mark.slow
def test_wheel_builds_without_warnings_and_holds_the_sample_data(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in SOURCES:
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    (source / "refimpl" / "__pycache__").mkdir(exist_ok=True)  # as after running it
    (source / "refimpl" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path / "wheel"), "-v"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "would be ignored" not in output and "is absent from the `packages`" not in output
    (wheel,) = (tmp_path / "wheel").glob("refimpl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "refimpl/datasets/fashion_mnist_sample.npz" in names
    assert "refimpl/__main__.py" in names
    assert not any("__pycache__" in name for name in names)
    # One top-level package: the kernels live in refimpl.kernels, so the wheel installs
    # beside the unrelated PyPI package ``kernels`` (a transformers dependency).
    top_level = {name.split("/")[0] for name in names if not name.startswith("refimpl-")}
    assert top_level == {"refimpl"}
    assert {n for n in names if n.startswith("refimpl/kernels/numba/")} >= {
        "refimpl/kernels/numba/__init__.py", "refimpl/kernels/numba/conv.py"}
    info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(info).decode().split() == ["refimpl"]


def _pypi_kernels_installed() -> bool:
    """Whether the PyPI package ``kernels`` (not ours) is importable from site-packages."""
    try:
        return "kernels" in metadata.packages_distributions() and bool(
            metadata.distribution("kernels"))
    except metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
def test_numba_training_runs_beside_the_pypi_kernels_package(tmp_path):
    """From an unrelated directory, with transformers' dependency ``kernels`` installed,
    ``refimpl train --backend numba`` runs and ``from kernels import get_kernel`` still finds
    the PyPI package (our kernels are ``refimpl.kernels``, never a top-level ``kernels``)."""
    if not _pypi_kernels_installed():
        pytest.skip("the PyPI package kernels is not installed (make test's hf extra brings it)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import kernels, refimpl.kernels as ours; from kernels import get_kernel; "
            "print(kernels.__file__); print(ours.__file__)")
    probe = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr[-2000:]
    theirs, ours = probe.stdout.split()
    assert "site-packages" in theirs and Path(ours).parent.parent.name == "refimpl"
    train = subprocess.run(
        [sys.executable, "-m", "refimpl", "train", "--backend", "numba", "--model",
         "dense:16,relu,dense:2", "--data", "spirals", "--subset", "120", "--epochs", "1",
         "--batch-size", "32", "--no-progress", "--out", str(tmp_path / "h.json")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300, check=False)
    assert train.returncode == 0, train.stderr[-2000:]
    written = json.loads((tmp_path / "h.json").read_text())
    assert written["status"] == "ok" and written["settings"]["backend"] == "numba"
    assert len(written["history"]["train_loss"]) == 1
