"""``refimpl conformance``: the runner's verdicts, its reproductions, its report and CLI, and
docs/conformance.md against what the runner reports now."""

from __future__ import annotations

import math
import re
import warnings

import pytest

from refimpl import __version__
from refimpl.crosscheck import conformance
from refimpl.crosscheck.conformance import (
    BUG,
    BY_DESIGN,
    EQUAL,
    UNEXPLAINED,
    Case,
    Comparison,
    Explanation,
    classify,
    page_findings,
    run_conformance,
    run_reproduction,
)
from refimpl.crosscheck.conformance.cli import main
from refimpl.crosscheck.conformance.common import schedule_comparison
from tests.conftest import ROOT

PAGE = ROOT / "docs" / "conformance.md"
#: framework -> the modules its run needs (the same as conformance.FRAMEWORKS)
NEEDS = {name: needs for name, (_, needs, _) in conformance.FRAMEWORKS.items()}


def _require(framework: str) -> None:
    for module in NEEDS[framework]:
        pytest.importorskip(module, reason=f"the {framework} conformance run needs {module}")


@pytest.fixture(scope="module")
def quick_reports() -> dict:
    """Quick runs, made once per framework the first time a test asks."""
    return {}


def _quick(framework: str, reports: dict):
    _require(framework)
    if framework not in reports:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pytorch-dlrs warns on its own hyper-parameters
            reports[framework] = run_conformance(framework, quick=True, progress=False)
    return reports[framework]


# -- quick runs -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("framework", list(conformance.FRAMEWORKS))
def test_quick_run_explains_every_difference(framework, quick_reports):
    report = _quick(framework, quick_reports)
    totals = report.totals
    assert totals["configs"] > 0
    assert totals[UNEXPLAINED] == 0, str(report)
    assert sum(totals[v] for v in (EQUAL, BY_DESIGN, BUG, UNEXPLAINED)) == totals["configs"]
    for row in report.rows:  # a class either ran or says why it did not
        assert (row.configs > 0) != bool(row.note), row.subject
    # every finding's reproduction ran on this installation and its asserts held
    assert report.reproduced and set(report.reproduced.values()) == {"yes"}, report.reproduced


# -- the reproductions ----------------------------------------------------------------------------
def _explanations() -> list[tuple[str, Explanation]]:
    """Every explanation of every catalogue, with the framework it needs."""
    from refimpl.crosscheck.conformance import (
        dlrs_catalogue,
        optax_catalogue,
        optax_optim,
        torch_catalogue,
        torch_numeric,
        transformers_catalogue,
    )

    found = []
    for framework, modules in (("torch", [torch_catalogue, torch_numeric]),
                               ("transformers", [transformers_catalogue]),
                               ("optax", [optax_catalogue, optax_optim]),
                               ("pytorch-dlrs", [dlrs_catalogue])):
        for module in modules:
            found += [(framework, value) for value in vars(module).values()
                      if isinstance(value, Explanation)]
    return found


@pytest.mark.parametrize("framework, explanation", _explanations(),
                         ids=lambda value: getattr(value, "key", value))
def test_every_reproduction_shows_what_it_claims(framework, explanation):
    _require(framework)
    assert run_reproduction(explanation) == ""


def test_warm_restarts_step_to_a_restart_gives_eta_min_in_torch():
    """torch 2.13: step(484) of T_0=4, T_mult=3 lands at the end of cycle 4 (rate 0), while
    484 calls of step() reach the 5th restart (rate 1); refimpl's step(484) is the restart."""
    torch = pytest.importorskip("torch", reason="the case is torch's")
    from refimpl.schedulers import CosineAnnealingWarmRestarts

    assert math.log(243, 3) < 5  # the rounding behind it: log_3(243) = 4.999999999999999

    def build():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, 4, 3)

    jumped_optimizer, jumped = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        jumped.step(484)
    walked_optimizer, walked = build()
    for _ in range(484):
        walked_optimizer.step()
        walked.step()
    ours = CosineAnnealingWarmRestarts(1.0, T_0=4, T_mult=3)
    ours.step(484)
    assert jumped_optimizer.param_groups[0]["lr"] == 0.0
    assert walked_optimizer.param_groups[0]["lr"] == 1.0 == ours.lr


# -- the verdicts are computed ------------------------------------------------------------------
def _constant_case(theirs, explanations=()) -> Case:
    from refimpl.schedulers import ConstantLR

    return Case("constant", "lr=0.1, 20 steps",
                lambda: schedule_comparison(theirs, ConstantLR(0.1, factor=1.0), steps=20),
                list(explanations))


def test_a_planted_difference_is_unexplained():
    """A fake framework schedule that is off at one step, with the documented explanations of
    a schedule that holds its end value in place: none holds, so the verdict is
    unexplained, not equal, not by design."""
    from refimpl.crosscheck.conformance.optax_catalogue import COSINE_HOLDS, _held_after

    def planted(t):
        return 0.1 * (1 + 1e-9) if t == 7 else 0.1

    outcome = classify(_constant_case(planted, [(COSINE_HOLDS, _held_after(5, lambda: 0.1))]))
    assert outcome.verdict == UNEXPLAINED and outcome.explanation is None
    assert "step 7" in outcome.detail
    # the same explanation does account for a schedule that truly holds after count 5
    held = classify(_constant_case(lambda t: 0.1 if t <= 5 else 0.05,
                                   [(COSINE_HOLDS, _held_after(5, lambda: 0.05))]))
    assert held.verdict == BY_DESIGN and held.explanation is COSINE_HOLDS
    assert classify(_constant_case(lambda t: 0.1)).verdict == EQUAL


def test_a_planted_warm_restarts_difference_is_not_taken_for_torchs_bug():
    """A CosineAnnealingWarmRestarts whose step(epoch) is off where its cycle placement is
    right: the torch bug's check (T_cur outside [0, T_i)) does not hold, so unexplained."""
    torch = pytest.importorskip("torch", reason="the fake derives from torch's class")
    from refimpl.crosscheck.conformance.torch_catalogue import WARM_RESTARTS_STEP_EPOCH, epoch_case

    class Planted(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts):
        """Counts its cycles correctly, then nudges the rate at one epoch."""

        def step(self, epoch=None):
            epoch = self.last_epoch + 1 if epoch is None else epoch
            start, length = 0, self.T_0
            while epoch >= start + length:
                start, length = start + length, length * self.T_mult
            self.T_cur, self.T_i, self.last_epoch = epoch - start, length, math.floor(epoch)
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                cosine = (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
                group["lr"] = base * cosine * (1.001 if epoch == 16 else 1.0)

    planted = classify(epoch_case(4, 3, 0.0, [1.0], theirs_class=Planted))
    assert planted.verdict == UNEXPLAINED, planted.detail
    assert "epoch 16.0" in planted.detail
    real = classify(epoch_case(4, 3, 0.0, [1.0]))
    assert real.verdict == BUG and real.explanation is WARM_RESTARTS_STEP_EPOCH


def test_an_exception_is_a_difference_and_a_failing_check_explains_nothing():
    explanation = Explanation("k", BY_DESIGN, "s", "r", "assert True")

    def refuses():
        raise ValueError("their side refuses this configuration")

    raised = classify(Case("x", "c", refuses, [(explanation, lambda c: 1 / 0)]))
    assert raised.verdict == UNEXPLAINED and "ValueError" in raised.detail
    accepted = classify(Case("x", "c", refuses,
                             [(explanation, lambda c: isinstance(c.result, ValueError))]))
    assert accepted.verdict == BY_DESIGN
    assert classify(Case("x", "c", lambda: Comparison(True, "same"))).verdict == EQUAL
    with pytest.raises(ValueError, match="verdict"):
        Explanation("k", EQUAL, "s", "r", "")


# -- report and command line --------------------------------------------------------------------
def test_report_is_markdown_with_the_versions(tmp_path, capsys):
    torch = pytest.importorskip("torch", reason="the torch run needs torch")
    path = tmp_path / "sub" / "torch.md"
    status = main(["torch", "--quick", "--only", "StepLR", "--only", "F.linear",
                   "--report", str(path)])
    assert status == 0
    text = path.read_text()
    assert text.startswith(f"# torch {torch.__version__} against refimpl {__version__}")
    assert "| command | `refimpl conformance torch --quick --only StepLR --only F.linear" in text
    for key in ("| date |", "| machine |", "| seed | 0;"):
        assert key in text
    row = r"\| scheduler \| `StepLR` \| `refimpl.schedulers.StepLR` \| (\d+) \| (\d+) \| 0 \| 0 \| 0 \|"
    configs, equal = re.search(row, text).groups()
    assert configs == equal != "0"
    out = capsys.readouterr().out
    assert "StepLR" in out and "F.linear" in out and f"report written to {path}" in out
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["torch", "--configs", "-1"], "must be >= 0"),
    (["torch", "--seed", "x"], "invalid int value"),
    ([], "the following arguments are required"),
    (["all", "--only", "StepLR"], "--only names classes of one framework"),
    (["pytorch-dlrs", "--seed", "-1"], "seed must be an integer >= 0"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refimpl conformance: error: ")
    assert message in err


def test_unknown_class_and_missing_framework_exit_2(monkeypatch, capsys):
    pytest.importorskip("torch", reason="the class names come from the torch catalogue")
    assert main(["torch", "--only", "NoSuchLR"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NoSuchLR" in err and "StepLR" in err
    monkeypatch.setitem(conformance.FRAMEWORKS, "optax",
                        ("optax_catalogue", ("a_module_that_is_not_installed",), "optax"))
    assert main(["optax", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "pip install 'refimpl[optax]'" in err and "a_module_that_is_not_installed" in err


def test_python_api_names_the_bad_argument():
    with pytest.raises(ValueError, match="framework must be one of torch, transformers"):
        run_conformance("keras")
    with pytest.raises(ValueError, match="configs must be an integer >= 0"):
        run_conformance("torch", configs=-2)


def test_refimpl_command_forwards_to_conformance(capsys):
    from refimpl.cli import main as refimpl_main

    assert refimpl_main(["conformance", "nosuch"]) == 2
    assert "refimpl conformance: error:" in capsys.readouterr().err


def test_same_seed_same_report():
    pytest.importorskip("torch", reason="the torch run needs torch")
    runs = [run_conformance("torch", seed=3, configs=2, only=["MultiStepLR", "SGD"],
                            progress=False) for _ in range(2)]
    first, second = ([(row.subject, row.configs, dict(row.counts)) for row in run.rows]
                     for run in runs)
    assert first == second
    configs = [[f.first_config for f in row.findings.values()] for row in runs[0].rows]
    assert configs == [[f.first_config for f in row.findings.values()] for row in runs[1].rows]


# -- docs/conformance.md -------------------------------------------------------------------------
def test_page_lists_the_findings_the_runner_reports_now(quick_reports):
    """The page is written by ``refimpl conformance all --report docs/conformance.md``; its
    findings per framework must be those a run finds now (quick runs meet every finding:
    each documented difference has a fixed edge configuration)."""
    documented = page_findings(PAGE.read_text())
    assert set(documented) == set(conformance.FRAMEWORKS)
    for framework in conformance.FRAMEWORKS:
        if any(_missing(module) for module in NEEDS[framework]):
            continue
        report = _quick(framework, quick_reports)
        assert documented[framework] == report.keys(), framework


def _missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False


def _page_reproductions() -> list[tuple[str, str]]:
    text = PAGE.read_text() if PAGE.exists() else ""
    sections = re.split(r"^## (\S+) ", text, flags=re.MULTILINE)
    found = []
    for framework, body in zip(sections[1::2], sections[2::2]):
        found += [(framework, code) for code in re.findall(r"```python\n(.*?)```", body,
                                                             flags=re.DOTALL)]
    return found


@pytest.mark.parametrize("framework, code", _page_reproductions())
def test_every_reproduction_on_the_page_runs(framework, code):
    _require(framework)
    exec(compile(code, f"<docs/conformance.md: {framework}>", "exec"), {})  # noqa: S102


def test_page_reports_no_failed_reproduction_and_no_unexplained_difference():
    text = PAGE.read_text()
    assert "FAILED" not in text and "not run" not in text
    assert "#### unexplained" not in text
    titles = re.findall(r"^## (\S+) .* against refimpl (\S+)$", text, flags=re.MULTILINE)
    assert sorted(name for name, _ in titles) == sorted(conformance.FRAMEWORKS)
    assert {version for _, version in titles} == {__version__}
