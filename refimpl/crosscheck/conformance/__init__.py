"""``refimpl conformance``: a framework's whole catalogue against refimpl, with verdicts.

:func:`run_conformance` takes every class or function of a framework that refimpl has --
torch's schedules, optimizers and ops; transformers' schedules and GreedyLR; optax's
schedules, ``reduce_on_plateau`` and optimizers; pytorch-dlrs's DLRS -- through the
cross-checks (:func:`~refimpl.crosscheck.check`, :func:`~refimpl.crosscheck.check_optimizer`,
:func:`~refimpl.crosscheck.check_op`) on fixed edge configurations and seeded random ones,
and returns a :class:`Report`: per class, the configurations tried and how many ended
**equal**, **by design**, **framework bug** or **unexplained** (:mod:`.core` says how each
verdict is computed), and the findings with their reproductions.

    from refimpl.crosscheck.conformance import run_conformance
    report = run_conformance("torch", seed=0, configs=20)
    print(report)                       # the table and the findings
    open("torch.md", "w").write(report.markdown())

The same from a shell: ``refimpl conformance torch --report torch.md`` (see :mod:`.cli`).
The frameworks are optional: each is imported when its catalogue runs, and a missing one
raises :class:`MissingFramework` naming the extra to install.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import sys
import time
import zlib
from collections.abc import Iterable, Iterator

from ... import __version__
from ...schedulers.checks import check_int
from .core import (
    BUG,
    BY_DESIGN,
    EQUAL,
    UNEXPLAINED,
    Case,
    Comparison,
    Explanation,
    Finding,
    Outcome,
    Row,
    Subject,
    classify,
    run_reproduction,
)
from .report import Report, conformance_page, machine, page_findings, write_text

__all__ = ["BUG", "BY_DESIGN", "DEFAULT_CONFIGS", "EQUAL", "FRAMEWORKS", "QUICK_CONFIGS",
           "UNEXPLAINED", "Case", "Comparison", "Explanation", "Finding", "MissingFramework",
           "Outcome", "Report", "Row", "Subject", "classify", "conformance_page",
           "page_findings", "run_cases", "run_conformance", "run_reproduction",
           "run_reproductions", "write_text"]

#: framework -> (catalogue module, the modules it needs, the refimpl extra that installs them)
FRAMEWORKS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "torch": ("torch_catalogue", ("torch",), "torch"),
    "transformers": ("transformers_catalogue", ("torch", "transformers"), "hf"),
    "optax": ("optax_catalogue", ("jax", "optax"), "optax"),
    "pytorch-dlrs": ("dlrs_catalogue", ("torch", "dlrs"), "crosscheck"),
}
#: Random configurations per class by default, and with ``quick=True``.
DEFAULT_CONFIGS = 20
QUICK_CONFIGS = 2


class MissingFramework(ImportError):
    """The framework (or what it needs) is not installed; the message says what to run."""


def catalogue_module(framework: str):
    """The catalogue module of ``framework``, after checking its dependencies import."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got "
                         f"{framework!r}")
    module, needs, extra = FRAMEWORKS[framework]
    for name in needs:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingFramework(
                f"the {framework} conformance run needs {name}, which is not installed; "
                f"install it with: pip install 'refimpl[{extra}]'") from None
    return importlib.import_module(f".{module}", __name__)


def subject_seed(seed: int, name: str) -> list[int]:
    """The seed of one subject's random configurations: the run's seed and the subject's
    name, so a subject draws the same configurations whatever else runs."""
    return [int(seed), zlib.crc32(name.encode("utf-8"))]


def run_cases(subject: Subject, seed: int, configs: int) -> Row:
    """Classify every case of ``subject``."""
    row = Row(subject.name, subject.kind, ours=subject.ours, note=subject.note)
    if subject.cases is None:
        return row
    start = time.perf_counter()
    for case in subject.cases(seed, configs):
        row.add(classify(case))
    row.seconds = time.perf_counter() - start
    return row


def run_reproductions(report: Report) -> None:
    """Execute every finding's reproduction once; ``report.reproduced[key]`` is ``"yes"``
    when its asserts hold, else the error."""
    for finding, _ in report.findings():
        if finding.reproduction and finding.key not in report.reproduced:
            error = run_reproduction(Explanation(finding.key, finding.verdict, finding.summary,
                                                 finding.reference, finding.reproduction))
            report.reproduced[finding.key] = error or "yes"


def _progress(subjects: list[Subject], framework: str, enabled: bool) -> Iterator[Subject]:
    """tqdm on a terminal; otherwise one line per class on stderr (after it ran)."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(subjects, desc=f"conformance {framework}", unit="class",
                        file=sys.stderr)
        return
    yield from subjects


def run_conformance(framework: str, *, seed: int = 0, configs: int | None = None,
                    quick: bool = False, progress: bool = True, only: Iterable[str] = (),
                    command: str | None = None) -> Report:
    """Run ``framework``'s catalogue against refimpl.

    Parameters
    ----------
    framework : {"torch", "transformers", "optax", "pytorch-dlrs"}
    seed : int
        Seed of the random configurations (each class draws from ``[seed, its name]``);
        the same seed gives the same configurations and the same report.
    configs : int, optional
        Random configurations per class (default :data:`DEFAULT_CONFIGS`, or
        :data:`QUICK_CONFIGS` with ``quick``); each class's fixed edge configurations
        (restart boundaries, ties, the documented differences) are run on top.
    quick : bool
        Few configurations and shorter traces: for tests.
    progress : bool
        tqdm on stderr when it is a terminal, else one line per class.
    only : iterable of str
        Run only the classes named (all when empty).
    command : str, optional
        The command line recorded in the report.

    Raises
    ------
    ValueError
        An unknown framework, ``configs`` or ``seed`` not a whole number >= 0, or an
        unknown name in ``only``.
    MissingFramework
        The framework is not installed (the message names the extra to install).
    """
    if configs is None:
        configs = QUICK_CONFIGS if quick else DEFAULT_CONFIGS
    configs = check_int(configs, "configs", 0)
    seed = check_int(seed, "seed", 0)
    module = catalogue_module(framework)
    subjects = module.catalogue(quick=quick)
    wanted = {only} if isinstance(only, str) else set(only)
    unknown = wanted - {subject.name for subject in subjects}
    if unknown:
        raise ValueError(f"only= names no class of the {framework} catalogue: "
                         f"{', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(subject.name for subject in subjects)}")
    if wanted:
        subjects = [subject for subject in subjects if subject.name in wanted]
    report = Report(framework, module.version(), __version__, seed, configs, quick,
                    machine=machine(),
                    date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
                    command=command or _command(framework, seed, configs, quick))
    start = time.perf_counter()
    session = getattr(module, "session", contextlib.nullcontext)
    with session():
        for subject in _progress(subjects, framework, progress):
            row = run_cases(subject, seed, configs)
            report.rows.append(row)
            if progress and not sys.stderr.isatty():
                print(f"conformance {framework}: {row.subject}: {row.configs} configurations,"
                      f" {row.counts[EQUAL]} equal, {row.counts[BY_DESIGN]} by design, "
                      f"{row.counts[BUG]} bug, {row.counts[UNEXPLAINED]} unexplained "
                      f"({row.seconds:.1f} s)", file=sys.stderr, flush=True)
        run_reproductions(report)
    report.seconds = time.perf_counter() - start
    return report


def _command(framework: str, seed: int, configs: int, quick: bool) -> str:
    return (f"refimpl conformance {framework} --seed {seed} --configs {configs}"
            + (" --quick" if quick else ""))
