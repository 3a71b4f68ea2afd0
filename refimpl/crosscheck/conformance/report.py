"""The conformance report: a table per framework, its findings, and the Markdown page.

:class:`Report` holds one run of :func:`refimpl.crosscheck.conformance.run_conformance`;
``str(report)`` is the terminal table, :meth:`Report.markdown` the Markdown written by
``--report FILE``, and :func:`conformance_page` joins several reports into
``docs/conformance.md``. :func:`page_findings` reads the findings back from such a page.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core import BUG, BY_DESIGN, EQUAL, UNEXPLAINED, Finding, Row

__all__ = ["Report", "conformance_page", "machine", "page_findings", "write_text"]

_COLUMNS = ("configs", EQUAL, BY_DESIGN, BUG, UNEXPLAINED)
_ORDER = {BUG: 0, UNEXPLAINED: 1, BY_DESIGN: 2}


def machine() -> str:
    """One line: CPU model, core count, Python and NumPy versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}")


@dataclass
class Report:
    """One framework's catalogue against refimpl.

    Attributes
    ----------
    framework, framework_version, refimpl_version : str
    seed, configs : int
        The seed and the random configurations per class (edge configurations come on top).
    quick : bool
    rows : list of Row
        One per class or function, in catalogue order.
    machine, date, command : str
    seconds : float
    """

    framework: str
    framework_version: str
    refimpl_version: str
    seed: int
    configs: int
    quick: bool
    rows: list[Row] = field(default_factory=list)
    machine: str = ""
    date: str = ""
    command: str = ""
    seconds: float = 0.0
    reproduced: dict = field(default_factory=dict)  # key -> "yes" or the error

    @property
    def totals(self) -> dict[str, int]:
        """Cases per verdict over every row, and ``configs``."""
        totals = dict.fromkeys(_COLUMNS, 0)
        for row in self.rows:
            totals["configs"] += row.configs
            for verdict in _COLUMNS[1:]:
                totals[verdict] += row.counts[verdict]
        return totals

    def findings(self) -> list[tuple[Finding, list[tuple[Row, Finding]]]]:
        """Every finding once, with the (row, finding) pairs of the classes it was seen in;
        bugs first, then unexplained, then by design."""
        grouped: dict[str, list[tuple[Row, Finding]]] = {}
        for row in self.rows:
            for finding in row.findings.values():
                grouped.setdefault(finding.key, []).append((row, finding))
        ordered = sorted(grouped.values(), key=lambda pairs: _ORDER[pairs[0][1].verdict])
        return [(pairs[0][1], pairs) for pairs in ordered]

    def keys(self) -> set[tuple[str, str]]:
        """``{(verdict, key)}`` of the findings."""
        return {(finding.verdict, finding.key) for finding, _ in self.findings()}

    # -- the terminal table ------------------------------------------------------------------
    def __str__(self) -> str:
        totals = self.totals
        lines = [(f"{self.framework} {self.framework_version} against refimpl "
                 f"{self.refimpl_version}: seed {self.seed}, {self.configs} random "
                 f"configurations per class{' (quick)' if self.quick else ''}, "
                 f"{self.seconds:.1f} s"), ""]
        width = max([len(row.subject) for row in self.rows] + [5])
        head = f"{'kind':<10} {'class':<{width}} " + " ".join(f"{c:>11}" for c in _COLUMNS)
        lines += [head, "-" * len(head)]
        for row in self.rows:
            cells = " ".join(f"{row.configs if c == 'configs' else row.counts[c]:>11}"
                             for c in _COLUMNS)
            note = f"  {row.note}" if row.note else ""
            lines.append(f"{row.kind:<10} {row.subject:<{width}} {cells}{note}")
        lines.append("-" * len(head))
        lines.append(f"{'':<10} {'total':<{width}} "
                     + " ".join(f"{totals[c]:>11}" for c in _COLUMNS))
        findings = self.findings()
        if findings:
            lines += ["", "Findings:"]
        for finding, pairs in findings:
            seen = ", ".join(f"{row.subject} {f.count}/{row.configs}" for row, f in pairs)
            lines.append(f"  [{finding.verdict}] {finding.key} ({seen}): {finding.summary}")
            if finding.verdict == UNEXPLAINED:
                lines.append(f"      first at {finding.first_config}: "
                             f"{_first_line(finding.detail)}")
            else:
                status = self.reproduced.get(finding.key, "")
                lines.append(f"      see {finding.reference}; reproduction: "
                             f"{'holds' if status == 'yes' else status or 'not run'}")
        return "\n".join(lines)

    # -- Markdown ----------------------------------------------------------------------------
    def markdown(self, level: int = 1) -> str:
        """The report as Markdown; ``level`` is the heading level of its title."""
        h = "#" * level
        totals = self.totals
        lines = [
            (f"{h} {self.framework} {self.framework_version} against refimpl "
             f"{self.refimpl_version}"), "",
            "| | |", "|---|---|",
            f"| command | `{self.command}` |",
            f"| date | {self.date} |",
            f"| machine | {self.machine} |",
            (f"| seed | {self.seed}; {self.configs} random configurations per class "
             f"(plus fixed edge configurations){', quick' if self.quick else ''} |"),
            f"| time | {self.seconds:.1f} s |",
            (f"| verdicts | {totals[EQUAL]} equal, {totals[BY_DESIGN]} by design, "
             f"{totals[BUG]} framework bug, {totals[UNEXPLAINED]} unexplained, of "
             f"{totals['configs']} configurations |"), "",
            ("| kind | class | refimpl | configs | equal | by design | framework bug | "
             "unexplained | findings |"),
            "|---|---|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in self.rows:
            keys = ", ".join(f"`{key}`" for key in row.findings)
            ours = f"`{row.ours}`" if row.ours else row.note
            lines.append(f"| {row.kind} | `{row.subject}` | {ours} | {row.configs} | "
                         + " | ".join(str(row.counts[c]) for c in _COLUMNS[1:])
                         + f" | {keys} |")
        findings = self.findings()
        if findings:
            lines += ["", f"{h}# Findings"]
        for finding, pairs in findings:
            lines += [""] + _finding_markdown(finding, pairs, self.reproduced.get(finding.key, ""),
                                              level + 2)
        return "\n".join(lines) + "\n"


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _finding_markdown(finding: Finding, pairs: list[tuple[Row, Finding]], reproduced: str,
                      level: int) -> list[str]:
    h = "#" * level
    lines = [f"{h} {finding.verdict}: `{finding.key}`", "", finding.summary]
    if finding.reference:
        lines += ["", f"Stated in {finding.reference}."]
    lines += ["", "| class | configurations | first seen at |", "|---|---:|---|"]
    for row, seen in pairs:
        config = seen.first_config.replace("|", "\\|")
        lines.append(f"| `{row.subject}` | {seen.count} of {row.configs} | `{config}` |")
    lines += ["", "The first difference found:", "", "```text", *_clip(pairs[0][1].detail),
              "```"]
    if finding.reproduction:
        status = "holds" if reproduced == "yes" else (
            f"FAILED: {reproduced}" if reproduced else "not run")
        lines += ["", f"Reproduction ({status} on this run):", "", "```python",
                  finding.reproduction.strip(), "```"]
    return lines


def _clip(detail: str, lines: int = 12) -> list[str]:
    text = (detail or "(no detail)").rstrip().splitlines()
    return text[:lines] + ([f"... ({len(text) - lines} more lines)"] if len(text) > lines else [])


_PAGE_INTRO = """\
# Conformance: framework catalogues against refimpl

Each section below is the report of one `refimpl conformance FRAMEWORK` run: every class
or function of the framework's catalogue that refimpl has, on seeded random configurations
and fixed edge configurations, compared with refimpl's equivalent. A configuration ends in
one of four verdicts, each computed by the runner:

* **equal**: every step agrees within the tolerance. Schedules: every group's rate at
  every step within 1e-12 of theirs (relative), or a difference `check` labels rounding,
  at most 4 ulps of the largest term of our formula ([crosscheck.md](crosscheck.md)).
  Optimizers: every parameter entry after every update within `1e-12 (|theirs| +
  max |w0|)`, float64 (an entry is computed from terms the size of the parameters, so one
  passing near zero carries their rounding). Ops: every element of the output and of each
  gradient within 1e-12 (float64) or 1e-5 (float32) of the size of the terms it is
  computed from (`check_op`'s bound);
* **by design**: it differs, and re-running it under a documented alternative semantics
  (the rule stated in [methods.md](methods.md) or in the finding below) makes it equal;
* **framework bug**: it differs, and the framework contradicts itself or its own
  documentation; the finding has a reproduction of a few lines;
* **unexplained**: it differs and no documented rule accounts for it.

Every reproduction on this page is executed by the test suite
(`tests/crosscheck/test_conformance.py`), which also checks that the findings listed here are the
ones the runner reports now. The page is written by the runner, not by hand:

```text
refimpl conformance all --report docs/conformance.md
```
"""


def conformance_page(reports: list[Report]) -> str:
    """``docs/conformance.md``: the introduction, then each report one level down."""
    parts = [_PAGE_INTRO]
    for report in reports:
        parts.append(report.markdown(level=2))
    return "\n".join(parts)


_SECTION = re.compile(r"^## (\S+) ", re.MULTILINE)
_FINDING = re.compile(r"^#### (" + "|".join(map(re.escape, (BY_DESIGN, BUG, UNEXPLAINED)))
                      + r"): `([^`]+)`", re.MULTILINE)


def page_findings(text: str) -> dict[str, set[tuple[str, str]]]:
    """``{framework: {(verdict, key)}}`` of a page written by :func:`conformance_page`."""
    found: dict[str, set[tuple[str, str]]] = {}
    sections = list(_SECTION.finditer(text))
    for index, match in enumerate(sections):
        end = sections[index + 1].start() if index + 1 < len(sections) else len(text)
        body = text[match.end():end]
        found[match.group(1)] = {(m.group(1), m.group(2)) for m in _FINDING.finditer(body)}
    return found


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half a report)."""
    from ...checkpoint import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))
