"""Execute every notebook in notebooks/ at small size (REFIMPL_NOTEBOOK_SMALL=1) with nbclient."""

from __future__ import annotations

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to read notebooks")
nbclient = pytest.importorskip("nbclient", reason="nbclient is needed to execute notebooks")

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_without_error(path, monkeypatch):
    monkeypatch.setenv("REFIMPL_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
        f"{path.name} is stored with outputs; regenerate it with scripts/make_notebooks.py"
    )
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError on any failing cell
    assert os.environ["REFIMPL_NOTEBOOK_SMALL"] == "1"
