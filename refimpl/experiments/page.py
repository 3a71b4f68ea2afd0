"""The generated blocks of docs/results.md: each study's tables, written from its records.

A study's block sits between two marker lines::

    <!-- refimpl reproduce NAME --report: begin -->
    ... (StudyResult.page_block()) ...
    <!-- refimpl reproduce NAME --report: end -->

``refimpl reproduce NAME --report --page docs/results.md`` replaces it (the rest of the page
is prose written by hand around the tables); ``tests/experiments/test_results_page.py``
checks that every block equals what the records in ``results/`` give today.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from refimpl.checkpoint import atomic_write_bytes

__all__ = ["markers", "read_block", "write_block"]


def markers(name: str) -> tuple[str, str]:
    """The begin and end marker lines of study ``name``'s block."""
    return (f"<!-- refimpl reproduce {name} --report: begin -->",
            f"<!-- refimpl reproduce {name} --report: end -->")


def _span(text: str, name: str) -> re.Match:
    begin, end = markers(name)
    match = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, flags=re.DOTALL)
    if match is None:
        raise ValueError(f"the page has no block for {name!r}: add the lines {begin!r} and "
                         f"{end!r} where its tables go")
    return match


def read_block(page: str | os.PathLike, name: str) -> str:
    """The text between study ``name``'s markers in ``page``."""
    return _span(Path(page).read_text(), name)[1]


def write_block(page: str | os.PathLike, name: str, block: str) -> None:
    """Replace study ``name``'s block in ``page`` by ``block`` (atomic write)."""
    text = Path(page).read_text()
    match = _span(text, name)
    new = text[:match.start(1)] + block + text[match.end(1):]
    atomic_write_bytes(page, new.encode())
