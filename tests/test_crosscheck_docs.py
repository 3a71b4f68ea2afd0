"""The worked examples of docs/crosscheck.md run as written (their asserts are the checks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "crosscheck.md"


def _sections() -> dict[str, list[str]]:
    """``## heading`` -> the ``python`` blocks under it (``# template`` blocks left out)."""
    sections: dict[str, list[str]] = {}
    heading = "intro"
    for part in re.split(r"^(## .*)$", DOC.read_text(), flags=re.MULTILINE):
        if part.startswith("## "):
            heading = part[3:].strip()
            continue
        blocks = re.findall(r"^```python\n(.*?)^```", part, flags=re.MULTILINE | re.DOTALL)
        sections[heading] = [b for b in blocks if not b.startswith("# template")]
    return {k: v for k, v in sections.items() if v}


SECTIONS = _sections()


def test_the_doc_has_the_worked_examples():
    assert {"A trace from your own training loop", "Worked example: transformers' GreedyLR (equal)",
            "Worked example: `pytorch-dlrs` (equal but for slope == 1)",
            "Worked example: the TLR authors' code, step by step"} <= set(SECTIONS)
    assert len(SECTIONS["Worked example: the TLR authors' code, step by step"]) == 7


@pytest.mark.torch
@pytest.mark.parametrize("heading", sorted(SECTIONS))
def test_section_runs(heading, tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="the examples drive torch optimizers")
    if "transformers" in heading or "trace" in heading:
        hf = pytest.importorskip("transformers.optimization", reason="needs transformers")
        if not hasattr(hf, "GreedyLR"):
            pytest.skip("this transformers has no GreedyLR")
    if "pytorch-dlrs" in heading:
        pytest.importorskip("dlrs", reason="needs pytorch-dlrs (pip install pytorch-dlrs)")
    monkeypatch.chdir(tmp_path)  # the trace example writes greedy.npz
    namespace: dict = {}
    for block in SECTIONS[heading]:
        exec(compile(block, f"{DOC.name}: {heading}", "exec"), namespace)  # noqa: S102
