"""Cases, verdicts and their classification: the machinery under ``refimpl conformance``.

A *case* is one configuration of one class (or function) of a framework, compared with
refimpl's equivalent. Its verdict is computed, never written down:

* **equal** -- the comparison passes (every step, parameter or element within the stated
  tolerance);
* **by design** -- it fails, and re-running the case under a documented alternative
  semantics (an :class:`Explanation` whose check passes) makes it pass: the difference is
  exactly that documented rule;
* **framework bug** -- it fails, and an :class:`Explanation` marked as a bug holds: the
  framework contradicts itself (e.g. ``step(epoch)`` against the same number of ``step()``
  calls) or breaks its own documented contract; each such explanation carries a
  reproduction of a few lines;
* **unexplained** -- it fails and no explanation holds. Nothing is ever counted as equal or
  as a bug without its check passing.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

EQUAL = "equal"
BY_DESIGN = "by design"
BUG = "framework bug"
UNEXPLAINED = "unexplained"
VERDICTS = (EQUAL, BY_DESIGN, BUG, UNEXPLAINED)

__all__ = ["BUG", "BY_DESIGN", "EQUAL", "UNEXPLAINED", "VERDICTS", "Case", "Comparison",
           "Explanation", "Finding", "Outcome", "Row", "Subject", "classify",
           "run_reproduction"]


@dataclass(frozen=True)
class Explanation:
    """A documented reason two implementations part.

    Attributes
    ----------
    key : str
        Stable name, e.g. ``"torch-warm-restarts-step-epoch"``.
    verdict : str
        :data:`BY_DESIGN` or :data:`BUG`.
    summary : str
        One or two sentences: what differs.
    reference : str
        Where the rule is stated: a section of ``docs/methods.md`` or of
        ``docs/conformance.md``.
    reproduction : str
        Python code, runnable on its own, whose asserts show the claim.
    """

    key: str
    verdict: str
    summary: str
    reference: str
    reproduction: str

    def __post_init__(self) -> None:
        if self.verdict not in (BY_DESIGN, BUG):
            raise ValueError(f"an explanation's verdict is {BY_DESIGN!r} or {BUG!r}, "
                             f"got {self.verdict!r}")


@dataclass(frozen=True)
class Comparison:
    """What one comparison found: ``ok``, a readable ``detail``, and the raw ``result``
    (a CheckResult, an optimizer or op result, or anything an explanation reads)."""

    ok: bool
    detail: str
    result: Any = None


#: ``holds(comparison) -> bool``: the explanation's own check on a failed comparison.
Check = Callable[[Comparison], bool]


@dataclass
class Case:
    """One configuration: ``compare()`` runs it; ``explanations`` are tried in order when it
    fails, each with the check that decides whether it accounts for the difference."""

    subject: str
    config: str
    compare: Callable[[], Comparison]
    explanations: Sequence[tuple[Explanation, Check]] = ()


@dataclass(frozen=True)
class Outcome:
    """The verdict on one case."""

    subject: str
    config: str
    verdict: str
    explanation: Explanation | None
    detail: str


def _failure(error: BaseException) -> Comparison:
    frame = traceback.extract_tb(error.__traceback__)[-1:]
    where = f" at {frame[0].filename.rsplit('/', 1)[-1]}:{frame[0].lineno}" if frame else ""
    return Comparison(False, f"raised {type(error).__name__}: {error}{where}", error)


def classify(case: Case) -> Outcome:
    """Run ``case`` and decide its verdict (see the module docstring).

    An exception raised while comparing (one side refuses what the other accepts) is a
    failed comparison, which the explanations may account for; an exception inside an
    explanation's check means that explanation does not hold.
    """
    try:
        comparison = case.compare()
    except Exception as error:  # noqa: BLE001 - one side raising is a finding, not a crash
        comparison = _failure(error)
    if comparison.ok:
        return Outcome(case.subject, case.config, EQUAL, None, comparison.detail)
    for explanation, holds in case.explanations:
        try:
            held = bool(holds(comparison))
        except Exception:  # noqa: BLE001 - a check that cannot run does not explain
            held = False
        if held:
            return Outcome(case.subject, case.config, explanation.verdict, explanation,
                           comparison.detail)
    return Outcome(case.subject, case.config, UNEXPLAINED, None, comparison.detail)


def run_reproduction(explanation: Explanation) -> str:
    """Execute ``explanation.reproduction`` in a fresh namespace; ``""`` when its asserts
    hold, else the error in one line."""
    try:
        exec(compile(explanation.reproduction, f"<{explanation.key}>", "exec"), {})  # noqa: S102 - our own code
    except Exception as error:  # noqa: BLE001 - reported, not raised
        return f"{type(error).__name__}: {error}"
    return ""


@dataclass
class Finding:
    """An explanation (or an unexplained difference) seen in a class's cases."""

    verdict: str
    key: str
    summary: str
    reference: str = ""
    reproduction: str = ""
    count: int = 0
    first_config: str = ""
    detail: str = ""

    @classmethod
    def of(cls, outcome: Outcome) -> Finding:
        explanation = outcome.explanation
        if explanation is None:
            return cls(UNEXPLAINED, f"unexplained: {outcome.subject}",
                       "a difference no documented rule accounts for",
                       first_config=outcome.config, detail=outcome.detail)
        return cls(explanation.verdict, explanation.key, explanation.summary,
                   explanation.reference, explanation.reproduction,
                   first_config=outcome.config, detail=outcome.detail)


@dataclass
class Row:
    """One class (or function) of a framework: how its cases ended."""

    subject: str
    kind: str
    ours: str = ""
    configs: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    findings: dict = field(default_factory=dict)  # key -> Finding
    note: str = ""
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.configs += 1
        self.counts[outcome.verdict] += 1
        if outcome.verdict == EQUAL:
            return
        finding = Finding.of(outcome)
        if finding.key not in self.findings:
            self.findings[finding.key] = finding
        self.findings[finding.key].count += 1


@dataclass
class Subject:
    """A class or function of a framework's catalogue.

    ``cases(seed, configs)`` yields its cases: its fixed edge configurations first, then
    ``configs`` random ones drawn from ``seed``. A subject refimpl has no equivalent of has
    no ``cases`` and says so in ``note``.
    """

    name: str
    kind: str
    ours: str = ""
    cases: Callable[[int, int], Iterable[Case]] | None = None
    note: str = ""
