"""Execute every notebook in notebooks/ at small size (REFIMPL_NOTEBOOK_SMALL=1) with nbclient."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

nbformat = pytest.importorskip("nbformat", reason="nbformat is needed to read notebooks")
nbclient = pytest.importorskip("nbclient", reason="nbclient is needed to execute notebooks")

NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_with_its_figures(path):
    """Readers browsing the repository see the full-size results: every code cell ran
    without error and each figure is stored inline (``scripts/make_notebooks.py --execute``)."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count for cell in code), f"{path.name} is not executed"
    outputs = [output for cell in code for output in cell.outputs]
    assert not any(output.output_type == "error" for output in outputs)
    assert any("image/png" in output.get("data", {}) for output in outputs)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_without_error(path, monkeypatch):
    monkeypatch.setenv("REFIMPL_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # notebooks are stored executed at full size; run a clean copy
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError on any failing cell
    assert os.environ["REFIMPL_NOTEBOOK_SMALL"] == "1"
