"""The layout of tests/: every folder that holds tests is a package.

pytest imports a test file under the dotted name of its folders up to the first folder
without ``__init__.py`` (``rootdir``-based, the default ``prepend`` import mode). With an
``__init__.py`` in every folder, ``tests/ops/test_x.py`` and ``tests/optim/test_x.py`` are the
modules ``tests.ops.test_x`` and ``tests.optim.test_x``; without one, both would be imported as
``test_x`` and the second file would fail to collect.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT

TESTS = ROOT / "tests"


def _test_folders() -> list:
    """Every folder under tests/ holding a ``test_*.py`` file, tests/ itself included."""
    return sorted({path.parent for path in TESTS.rglob("test_*.py")
                   if "__pycache__" not in path.parts})


def test_every_folder_with_tests_is_a_package():
    folders = _test_folders()
    assert len(folders) > 10  # the subject folders were found
    missing = [str(folder.relative_to(ROOT)) for folder in folders
               if not (folder / "__init__.py").is_file()]
    assert missing == [], f"add an empty __init__.py to {missing}"


def test_pytest_imports_each_test_file_under_its_folders_dotted_name(request):
    """Every test module of this session (all of them in a full run) has the name its path
    spells, so equal basenames in two folders cannot clash."""
    modules = {item.module for item in request.session.items if hasattr(item, "module")}
    assert modules  # at least this file's own module
    wrong = {module.__name__: str(Path(module.__file__).relative_to(ROOT))
             for module in modules
             if module.__name__ != ".".join(
                 Path(module.__file__).relative_to(ROOT).with_suffix("").parts)}
    assert wrong == {}
