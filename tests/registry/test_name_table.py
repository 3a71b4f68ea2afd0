"""One name table: every list of names a user chooses from comes from :mod:`refimpl.registry`.

The scan reads every module of ``refimpl/`` with ``ast`` and reports each list, tuple or set
literal, and each dict literal (keys and values), that holds two or more names of one kind --
optimizers, schedulers, data sets, models, backends, NaN policies, dtypes, losses -- outside
the module that defines that kind. A copy goes stale the day a name is added (the command
line offered four data sets while the registry had five), so the scan fails naming the file
and line of each copy. ``__all__`` (a module's export list) is not a choice list.

A few literals name several of one kind for another reason (the schedules a study compares,
package names whose versions are printed); they are listed in :data:`REVIEWED` with the
reason, keyed by file and the names they hold, so a changed literal is reviewed again. The
conformance catalogues describe another framework's classes and functions, which carry
refimpl's names on purpose; :data:`FRAMEWORK_CATALOGUES` lists those files whole.
"""

from __future__ import annotations

import ast

import pytest

from refimpl import registry
from tests.conftest import ROOT

PACKAGE = ROOT / "refimpl"


def _optimizer_spellings() -> set[str]:
    names = set(registry.optimizer_names())
    return names | {registry.optimizer_class(name).__name__ for name in names}


#: kind -> (its names, the modules that define them: the only places they may be listed)
KINDS: dict[str, tuple[set[str], set[str]]] = {
    "optimizer": (_optimizer_spellings(), {"refimpl/optim/__init__.py"}),
    "scheduler": (set(registry.scheduler_names()),
                  {"refimpl/registry.py", "refimpl/schedulers/__init__.py"}),
    "data set": (set(registry.dataset_names()), {"refimpl/registry.py"}),
    "model": (set(registry.model_names()), {"refimpl/model.py"}),
    "backend": (set(registry.backend_names()), {"refimpl/kernels/__init__.py"}),
    "NaN policy": (set(registry.nan_policy_names()), {"refimpl/training/nan_policy.py"}),
    "dtype": (set(registry.dtype_names()), {"refimpl/ops/checks.py"}),
    "loss": (set(registry.loss_names()), {"refimpl/training/loop.py"}),
}

#: (file, names in the literal) -> why it is not a copy of a registry list
REVIEWED: dict[tuple[str, frozenset[str]], str] = {
    ("refimpl/pinn.py", frozenset({"auto", "numpy", "numba"})):
        "the backends the PINN has (its own fused numba kernels or NumPy), not the ops'",
    ("refimpl/bench/pinn.py", frozenset({"numpy", "numba"})):
        "the PINN's two implementations the benchmark times",
    ("refimpl/bench/pinn.py", frozenset({"float32", "float64"})):
        "the two precisions the PINN benchmark times",
    ("refimpl/experiments/pinn_helmholtz.py", frozenset({"dlrs", "DLRS"})):
        "the figure's key and legend label of the DLRS runs, not a scheduler table",
    ("refimpl/bench/epochs.py", frozenset({"mlp", "lrpo_cnn"})):
        "the benchmark's workload per model (batch size, images)",
    ("refimpl/bench/epochs.py", frozenset({"numpy", "numba"})):
        "package names whose versions the benchmark prints",
    ("refimpl/sweep/task.py", frozenset({"numpy", "numba"})):
        "package names whose versions each sweep record stores",
    ("refimpl/crosscheck/cli.py", frozenset({
        "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
        "CosineAnnealingWarmRestarts", "LinearWarmup", "ReduceLROnPlateau"})):
        "default hyper-parameters per scheduler class for 'refimpl crosscheck torch'",
    ("refimpl/demo.py", frozenset({"none", "cosine", "greedy"})):
        "the demo's three schedules and their settings",
    ("refimpl/experiments/greedy_robustness.py",
     frozenset({"greedy", "cosine", "cosine-restarts", "exponential"})):
        "the four schedules the robustness study compares, and the paper's numbers for each",
    ("refimpl/theory/tlr.py", frozenset({"constant", "newton", "hypergrad-add",
                                         "hypergrad-mul"})):
        "the rules the quadratic-model check implements itself, not schedulers built by name",
}


#: files that hold another framework's catalogue (torch's, optax's names) -> what it is
FRAMEWORK_CATALOGUES: dict[str, str] = {
    "refimpl/crosscheck/conformance/torch_catalogue.py": "torch's lr_scheduler classes",
    "refimpl/crosscheck/conformance/torch_numeric.py": "torch.optim's classes and their flags",
    "refimpl/crosscheck/conformance/optax_optim.py": "optax's optimizers",
    "refimpl/crosscheck/conformance/optax_catalogue.py": "optax's schedules",
}


def _strings(node: ast.AST) -> set[str]:
    """The string constants directly inside a list/tuple/set/dict literal."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = node.elts
    elif isinstance(node, ast.Dict):
        items = [key for key in node.keys if key is not None] + list(node.values)
    else:
        return set()
    return {item.value for item in items
            if isinstance(item, ast.Constant) and isinstance(item.value, str)}


def _export_lists(tree: ast.AST) -> set[int]:
    """``id`` of every literal assigned to ``__all__``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                found.add(id(node.value))
    return found


def name_lists(source: str, path: str) -> list[tuple[str, int, str, frozenset[str]]]:
    """``(path, line, kind, names)`` of every literal in ``source`` listing 2+ names of one
    kind, outside the kind's defining modules (``path`` is relative to the repository)."""
    tree = ast.parse(source, filename=path)
    exports = _export_lists(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in exports:
            continue
        strings = _strings(node)
        for kind, (names, homes) in KINDS.items():
            hit = frozenset(strings & names)
            if len(hit) >= 2 and path not in homes:
                found.append((path, node.lineno, kind, hit))
    return sorted(found, key=lambda entry: entry[1])


def _package_lists() -> list[tuple[str, int, str, frozenset[str]]]:
    found = []
    for file in sorted(PACKAGE.rglob("*.py")):
        path = file.relative_to(PACKAGE.parent).as_posix()
        found += name_lists(file.read_text(encoding="utf-8"), path)
    return found


def test_no_module_spells_a_list_of_names_again():
    copies = [f"{path}:{line}: {kind} names {sorted(names)}"
              for path, line, kind, names in _package_lists()
              if (path, names) not in REVIEWED and path not in FRAMEWORK_CATALOGUES]
    assert copies == [], ("lists of names that belong to refimpl.registry (take them from "
                          "there, or add a reviewed entry with its reason):\n"
                          + "\n".join(copies))


def test_every_reviewed_entry_still_matches_a_literal():
    found = _package_lists()
    seen = {(path, names) for path, _, _, names in found}
    stale = [key for key in REVIEWED if key not in seen]
    stale += [path for path in FRAMEWORK_CATALOGUES if path not in {p for p, *_ in found}]
    assert stale == [], f"reviewed entries that match nothing any more: {stale}"


PLANTED = '''
"""A docstring naming sgd, adam and adamw is prose, not a list."""
__all__ = ["blobs", "spirals"]
BACKENDS = ("numpy", "numba", "cuda", "auto")
def parser(p):
    p.add_argument("--optimizer", choices=["sgd", "adam"])
    p.add_argument("--nan-policy", choices={"raise", "rollback"})
    if data in ("blobs", "spirals"):
        pass
    one = ("cosine", "gaussian")
    table = {"float32": 4, "float64": 8}
'''


def test_the_scan_flags_a_planted_copy_of_every_kind_it_reads():
    found = name_lists(PLANTED, "refimpl/planted.py")
    assert [(line, kind) for _, line, kind, _ in found] == [
        (4, "backend"), (6, "optimizer"), (7, "NaN policy"), (8, "data set"), (11, "dtype")]
    assert found[0][3] == {"numpy", "numba", "cuda", "auto"}


def test_the_scan_lets_the_defining_module_list_its_names():
    source = 'NAN_POLICIES = ("raise", "skip-batch", "rollback")\n'
    assert name_lists(source, "refimpl/training/nan_policy.py") == []
    assert [kind for *_, kind, _ in name_lists(source, "refimpl/cli.py")] == ["NaN policy"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_at_least_two_names_to_find(kind):
    names, homes = KINDS[kind]
    assert len(names) >= 2
    for home in homes:
        assert (PACKAGE.parent / home).is_file(), home
