"""The ``refimpl`` command: help, train, resume, clear errors without partial files,
pass-through subcommands, the demo, and SIGTERM in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types

import pytest

from refimpl import cli, cli_train
from refimpl.train import History

SMALL = ["train", "--model", "dense:16,tanh,dense:2", "--data", "spirals", "--subset", "120",
         "--val", "40", "--batch-size", "16", "--lr", "0.1", "--no-progress"]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["demo", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: refimpl" in out
    if argv[0] == "train":
        for option in ("--scheduler-args", "--resume", "--checkpoint-dir", "--backend", "--dtype"):
            assert option in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "crosscheck" in capsys.readouterr().out


def test_parse_kv():
    assert cli_train.parse_kv("a=1, b=0.5,c=true,d=x,e=1;2,f=none") == {
        "a": 1, "b": 0.5, "c": True, "d": "x", "e": [1, 2], "f": None}
    assert cli_train.parse_kv("") == {}
    with pytest.raises(ValueError, match="--scheduler-args: 'b' is not of the form key=value"):
        cli_train.parse_kv("a=1,b")


def test_train_writes_history(tmp_path, capsys):
    out = tmp_path / "h.json"
    code = cli.main(SMALL + ["--epochs", "2", "--scheduler", "cosine", "--out", str(out)])
    assert code == 0
    record = json.loads(out.read_text())
    history = History.from_dict(record["history"])
    assert history.n_epochs == 2 and history.n_steps == 2 * 8
    assert history.lr[0] == 0.1 and history.lr[-1] < history.lr[0]  # cosine over the run
    assert record["settings"]["scheduler"] == "cosine"
    assert "epoch   2/2" in capsys.readouterr().out


def test_train_resume_matches_uninterrupted(tmp_path):
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    args = SMALL + ["--scheduler", "greedy", "--scheduler-args", "patience=1,min_lr=0.001"]
    assert cli.main(args + ["--epochs", "3", "--out", str(full)]) == 0
    ck = str(tmp_path / "ck")
    assert cli.main(args + ["--epochs", "1", "--checkpoint-dir", ck]) == 0
    assert cli.main(args + ["--epochs", "3", "--checkpoint-dir", ck, "--resume",
                            "--out", str(part)]) == 0
    a = History.from_dict(json.loads(full.read_text())["history"])
    b = History.from_dict(json.loads(part.read_text())["history"])
    assert a == b


@pytest.mark.parametrize("extra, message", [
    (["--lr", "-1"], "--lr must be a finite number"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--scheduler", "nope"], "unknown scheduler"),
    (["--scheduler", "cosine", "--scheduler-args", "bogus=1"], "bogus"),
    (["--model", "dense:16,oops"], "not understood"),
    (["--resume", "missing.npz"], "does not exist"),
])
def test_train_bad_input_clear_error_no_files(tmp_path, capsys, extra, message):
    out, ck = tmp_path / "h.json", tmp_path / "ck"
    code = cli.main(SMALL + ["--out", str(out), "--checkpoint-dir", str(ck)] + extra)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not ck.exists()


def test_missing_dataset_error(tmp_path, capsys):
    code = cli.main(["train", "--data", "fashion-mnist", "--data-path", str(tmp_path / "no"),
                     "--out", str(tmp_path / "h.json")])
    assert code == 2
    assert "does not hold the Fashion-MNIST files" in capsys.readouterr().err
    assert not (tmp_path / "h.json").exists()


def test_passthrough_forwards_argv(monkeypatch):
    seen = []
    fake = types.ModuleType("refimpl_fake_bench")
    fake.main = lambda argv: seen.append(argv) or 3
    monkeypatch.setitem(sys.modules, "refimpl_fake_bench", fake)
    monkeypatch.setitem(cli.PASSTHROUGH, "bench", ("refimpl_fake_bench", "fake"))
    assert cli.main(["bench", "--quick", "-n", "2"]) == 3
    assert seen == [["--quick", "-n", "2"]]


def test_passthrough_missing_module(monkeypatch, capsys):
    monkeypatch.setitem(cli.PASSTHROUGH, "sweep", ("refimpl_no_such_module", "fake"))
    assert cli.main(["sweep", "x.toml"]) == 2
    assert "refimpl_no_such_module cannot be imported" in capsys.readouterr().err


def test_lrpo_is_forwarded_and_its_summary_printed(monkeypatch, capsys):
    calls = {}

    def run_lrpo(model, train, val, *, seed, lr, **kwargs):
        calls.update(seed=seed, lr=lr, n=len(train[1]), finetune_lr=kwargs["finetune_lr"])
        return types.SimpleNamespace(history=History(), summary=lambda: "alpha=1.0900")

    fake = types.ModuleType("refimpl.experiments.lrpo")
    fake.run_lrpo = run_lrpo
    monkeypatch.setitem(sys.modules, "refimpl.experiments.lrpo", fake)
    history = cli_train._run_lrpo(cli.build_parser().parse_args(SMALL + ["--seed", "4"]), None,
                            ([0], [1, 2]), None, {"finetune_lr": 0.002})
    assert isinstance(history, History)
    assert calls == {"seed": 4, "lr": 0.1, "n": 2, "finetune_lr": 0.002}
    assert "alpha=1.0900" in capsys.readouterr().out


def test_lrpo_unknown_scheduler_arg_is_a_clear_error():
    args = cli.build_parser().parse_args(SMALL)
    with pytest.raises(cli.CLIError, match="--scheduler-args"):
        cli_train._run_lrpo(args, None, ([0], [1, 2]), None, {"no_such_option": 1})


def test_demo_writes_plot_and_table(tmp_path, capsys):
    code = cli.main(["demo", "--epochs", "1", "--schedulers", "none,greedy",
                     "--train-size", "320", "--out-dir", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "none" in out and "greedy" in out and "val acc" in out
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "demo.json").read_text())
    assert set(record) == {"none", "greedy"}
    assert History.from_dict(record["greedy"]).n_steps == 10  # 320 images / 32


@pytest.mark.slow
def test_sigterm_in_a_real_process_checkpoints_and_exits(tmp_path):
    ck = tmp_path / "ck"
    args = [sys.executable, "-m", "refimpl.cli", "train", "--model", "dense:64,tanh,dense:2",
            "--data", "spirals", "--subset", "20000", "--val", "100", "--batch-size", "8",
            "--epochs", "50", "--lr", "0.05", "--no-progress", "--checkpoint-dir", str(ck)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stdout.readline()  # the first epoch line: training is under way
        assert line.startswith("epoch"), line + proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint written to" in err
    from refimpl.checkpoint import load_checkpoint

    state = load_checkpoint(ck / "last.npz")
    assert state["trainer"]["epoch"] >= 1


def _train_option(option: str):
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    return next(a for a in train._actions if option in a.option_strings)


@pytest.mark.parametrize(("option", "names"), [
    ("--data", "dataset_names"), ("--backend", "backend_names"), ("--dtype", "dtype_names"),
    ("--nan-policy", "nan_policy_names"), ("--loss", "loss_names"),
])
def test_train_offers_exactly_the_registrys_names(option, names):
    from refimpl import registry

    assert list(_train_option(option).choices) == list(getattr(registry, names)())


def test_train_help_names_the_registrys_models_and_optimizers():
    from refimpl import registry

    assert all(name in _train_option("--model").help for name in registry.model_names())
    assert all(name in _train_option("--optimizer").help
               for name in registry.optimizer_names())


def test_train_on_regression_uses_mse_and_prints_no_accuracy(tmp_path, capsys):
    out = tmp_path / "h.json"
    code = cli.main(["train", "--model", "dense:8,tanh,dense:1", "--data", "regression",
                     "--subset", "64", "--val", "16", "--batch-size", "16", "--epochs", "2",
                     "--no-progress", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "epoch   2/2" in text and " acc " not in text and "val acc" not in text
    history = History.from_dict(json.loads(out.read_text())["history"])
    assert history.n_steps == 2 * 4
    # mse on targets of size ~1 (sin plus noise 0.1): a cross-entropy would have refused the
    # real-valued targets, so a finite loss below 1 says mse ran
    assert all(0 < loss < 1 for loss in history.val_loss)


def test_lrpo_on_regression_targets_is_refused(capsys):
    code = cli.main(["train", "--model", "dense:8,tanh,dense:1", "--data", "regression",
                     "--scheduler", "lrpo", "--no-progress"])
    assert code == 2
    assert "--scheduler lrpo trains a classifier" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the console script
def test_console_script_restarts_a_training_command_with_the_shared_cores_environment(
        monkeypatch):
    from refimpl.kernels.numba import tuning

    started, ran = [], []
    monkeypatch.setattr(os, "execve", lambda path, args, env: started.append((path, args, env)))
    monkeypatch.setattr(cli, "main", lambda argv: ran.append(argv) or 0)
    monkeypatch.delenv(cli.KEEP_ENVIRONMENT_VAR, raising=False)
    for name in tuning.SHARED_CORES_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")  # the caller's own value is kept

    monkeypatch.setattr(sys, "argv", ["refimpl", "train", "--epochs", "1"])
    cli.console_main()
    (path, args, env), = started
    assert path == sys.executable and args == [sys.executable, "-m", "refimpl", "train",
                                               "--epochs", "1"]
    assert env["OMP_WAIT_POLICY"] == "active" and env["OPENBLAS_THREAD_TIMEOUT"] == "4"
    assert env["NUMBA_THREADING_LAYER"] in ("omp", "workqueue")

    started.clear()
    for argv in (["refimpl", "bench", "--quick"], ["refimpl", "--help"], ["refimpl"]):
        monkeypatch.setattr(sys, "argv", argv)  # not a training command: runs as it is
        cli.console_main()
    monkeypatch.setattr(sys, "argv", ["refimpl", "demo"])
    monkeypatch.setenv(cli.KEEP_ENVIRONMENT_VAR, "1")  # asked to keep the environment
    cli.console_main()
    monkeypatch.delenv(cli.KEEP_ENVIRONMENT_VAR)
    for name, value in tuning.SHARED_CORES_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)  # all set already (as after the restart): no loop
    cli.console_main()
    assert started == []
    # the real execve never returns; the stand-in does, so main ran after it the first time
    assert ran == [["train", "--epochs", "1"], ["bench", "--quick"], ["--help"], [], ["demo"],
                   ["demo"]]


def test_python_m_refimpl_train_runs_through_the_restart(tmp_path):
    from refimpl.kernels.numba import tuning

    env = {k: v for k, v in os.environ.items()
           if k not in tuning.SHARED_CORES_ENVIRONMENT and k != cli.KEEP_ENVIRONMENT_VAR}
    out = tmp_path / "history.json"
    done = subprocess.run([sys.executable, "-m", "refimpl", *SMALL, "--epochs", "1", "--out",
                           str(out)], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("epoch") and out.exists()
