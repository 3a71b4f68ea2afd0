"""docs/results.md shows what the committed records give: each study's block between its
markers equals ``refimpl reproduce NAME --report`` over ``results/`` today (tables, n per
cell, where the numbers come from). A run landing in ``results/`` without the page being
regenerated (``make results-page``) fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from refimpl.experiments import STUDIES, run_study
from refimpl.experiments.page import markers, read_block, write_block

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "results.md"


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_the_page_block_is_what_the_records_give(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # the block names the record file as results/NAME.jsonl
    result = run_study(name, report=True, results=Path("results"), out=None)
    assert read_block(PAGE, name) == result.page_block(), (
        f"docs/results.md's {name} block differs from its records: run `make results-page`")


def test_write_block_replaces_only_the_block(tmp_path):
    begin, end = markers("s")
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{begin}\nold\n{end}\nafter\n")
    write_block(page, "s", "new\nlines\n")
    assert page.read_text() == f"intro\n{begin}\nnew\nlines\n{end}\nafter\n"
    with pytest.raises(ValueError, match="no block for 't'"):
        read_block(page, "t")
