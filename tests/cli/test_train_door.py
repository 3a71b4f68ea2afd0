"""``refimpl train`` refuses a user's mistake at the door: before any data is loaded or any
step trained, with exit status 2 and one line naming the option (and the fix).

Each test checks the exit status, that stderr is that one line and nothing else, and, where
work would have started, that nothing was trained or written.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from refimpl import cli, cli_train, registry
from refimpl.cli_train import LRPO_SET_BY_THE_RUN, SET_BY_THE_RUN
from refimpl.training.resume import CHECKPOINT_FILES

#: a tiny MLP on 200 + 100 images of the embedded sample: 4 steps per epoch at batch 50
TINY = ["train", "--model", "flatten,dense:8,relu,dense:10", "--data", "fashion-mnist-sample",
        "--subset", "200", "--val", "100", "--batch-size", "50", "--lr", "0.1", "--epochs", "1",
        "--no-progress"]


def refused(capsys, argv: list[str], *fragments: str) -> str:
    """Run ``refimpl ARGV`` in-process: exit 2, stderr exactly one ``refimpl train: error:``
    line holding every fragment, and no epoch trained (nothing on stdout)."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and captured.err.endswith("\n"), captured.err
    line = lines[0]
    assert line.startswith("refimpl train: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    assert captured.out == "", captured.out  # no epoch line, no "done"
    return line


# ----------------------------------------------------------------------------- 1. writable outputs

@pytest.mark.parametrize("option, where", [
    ("--out", "/proc/refimpl-history.json"),       # even root cannot create a file in /proc
    ("--checkpoint-dir", "/proc/refimpl-ck"),
    ("--checkpoint-dir", "/proc/refimpl-ck/deeper"),  # the nearest existing ancestor is tried
])
def test_an_output_where_no_file_can_be_created_is_refused_before_training(
        tmp_path, capsys, option, where):
    out = tmp_path / "h.json"
    argv = TINY + [option, where] + (["--out", str(out)] if option != "--out" else [])
    line = refused(capsys, argv, f"{option} {where}: /proc is not writable",
                   "(choose a writable path)")
    assert line.endswith(")")
    assert not out.exists() and not Path(where).exists()


def test_the_writability_probe_leaves_nothing_behind(tmp_path, capsys):
    out, ck = tmp_path / "runs" / "h.json", tmp_path / "ck"
    assert cli.main(TINY + ["--out", str(out), "--checkpoint-dir", str(ck)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck", "runs"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["h.json"]
    assert sorted(p.name for p in ck.iterdir()) == sorted(CHECKPOINT_FILES)


# ----------------------------------------------------------------------------- 2. --out vs checkpoints

def test_the_checkpoint_files_are_the_ones_the_trainer_writes(tmp_path, capsys):
    ck = tmp_path / "ck"
    assert cli.main(TINY + ["--checkpoint-dir", str(ck)]) == 0
    assert sorted(p.name for p in ck.iterdir()) == sorted(CHECKPOINT_FILES)


@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_out_naming_a_checkpoint_file_is_refused(tmp_path, capsys, name, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative --out and an absolute --checkpoint-dir: one place
    ck = tmp_path / "ck"
    out = Path("ck") / name
    refused(capsys, TINY + ["--checkpoint-dir", str(ck), "--out", str(out)],
            f"--out {out} is the checkpoint file {name}", f"--checkpoint-dir {ck}",
            "(give --out another name")
    assert list(tmp_path.iterdir()) == []


def test_out_above_the_checkpoint_dir_is_refused(tmp_path, capsys):
    out, ck = tmp_path / "runs", tmp_path / "runs" / "ck"
    refused(capsys, TINY + ["--checkpoint-dir", str(ck), "--out", str(out)],
            f"--out {out} is --checkpoint-dir {ck} or a directory above it")
    assert list(tmp_path.iterdir()) == []


def test_out_beside_the_checkpoints_is_accepted(tmp_path, capsys):
    ck = tmp_path / "ck"
    out = ck / "history.json"
    assert cli.main(TINY + ["--checkpoint-dir", str(ck), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["status"] == "ok"
    assert sorted(p.name for p in ck.iterdir()) == sorted([*CHECKPOINT_FILES, "history.json"])


# ----------------------------------------------------------------------------- 3. --scheduler-args

def test_every_argument_make_scheduler_fills_itself_has_its_option():
    parameters = inspect.signature(registry.make_scheduler).parameters.values()
    assert set(SET_BY_THE_RUN) == {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}


def test_scheduler_args_lr_names_the_lr_option(tmp_path, capsys):
    out = tmp_path / "h.json"
    line = refused(capsys, TINY + ["--scheduler", "step", "--scheduler-args", "lr=0.1",
                                   "--out", str(out)])
    assert line == ("refimpl train: error: --scheduler-args lr=0.1: the rate is set by --lr "
                    "(drop lr= from --scheduler-args)")
    assert not out.exists()


@pytest.mark.parametrize("item, option", [
    ("name=cosine", "--scheduler"),
    ("epochs=5", "--epochs"),
    ("steps_per_epoch=4", "--batch-size"),
])
def test_scheduler_args_set_by_the_command_name_their_option(tmp_path, capsys, item, option):
    out = tmp_path / "h.json"
    key = item.split("=")[0]
    refused(capsys, TINY + ["--scheduler", "cosine", "--scheduler-args", f"eta_min=0.01,{item}",
                            "--out", str(out)],
            f"--scheduler-args {item}: ", option, f"(drop {key}= from --scheduler-args)")
    assert not out.exists()


def test_every_argument_the_lrpo_run_fills_itself_has_its_option():
    args = cli.build_parser().parse_args(["train", "--scheduler", "lrpo", "--lr", "0.05"])
    assert set(cli_train._lrpo_arguments(args)) | {"metadata"} == set(LRPO_SET_BY_THE_RUN)


@pytest.mark.parametrize("item, option", [
    ("lr=0.1", "--lr"),
    ("batch_size=32", "--batch-size"),
    ("optimizer=adam", "--optimizer"),
])
def test_lrpo_scheduler_args_set_by_the_command_name_their_option(tmp_path, capsys, item,
                                                                    option):
    out = tmp_path / "h.json"
    key = item.split("=")[0]
    refused(capsys, TINY + ["--scheduler", "lrpo", "--scheduler-args", f"pretrain_epochs=1,{item}",
                            "--out", str(out)],
            f"--scheduler-args {item}: set by {option}", f"(drop {key}= from --scheduler-args)")
    assert not out.exists()


# ----------------------------------------------------------------------------- 4. resume

@pytest.mark.parametrize("option, before, after", [
    ("--batch-size", "50", "100"),
    ("--subset", "200", "300"),
])
def test_resume_after_changing_the_batching_names_the_option(tmp_path, capsys, option,
                                                             before, after):
    ck, out = tmp_path / "ck", tmp_path / "h.json"
    assert cli.main(TINY + ["--checkpoint-dir", str(ck)]) == 0
    checkpoint = (ck / "last.npz").read_bytes()
    capsys.readouterr()
    argv = [after if i > 0 and TINY[i - 1] == option else a for i, a in enumerate(TINY)]
    line = refused(capsys, argv + ["--epochs", "2", "--checkpoint-dir", str(ck), "--resume",
                                   "--out", str(out)],
                   f"{option} {before} in the checkpoint, {after} now")
    assert "position" not in line and "global_step" not in line
    assert (ck / "last.npz").read_bytes() == checkpoint and not out.exists()


# ----------------------------------------------------------------------------- 5. --seed

def test_a_negative_seed_names_the_seed_option(tmp_path, capsys):
    out = tmp_path / "h.json"
    refused(capsys, TINY + ["--seed", "-1", "--out", str(out)], "--seed must be >= 0, got -1")
    assert not out.exists()


# ----------------------------------------------------------------------------- 6. --model

def test_a_model_name_typo_suggests_the_name_and_keeps_the_grammar(tmp_path, capsys):
    out = tmp_path / "h.json"
    refused(capsys, TINY[:2] + ["mpl"] + TINY[3:] + ["--out", str(out)],
            "model 'mpl' is not a named model: did you mean 'mlp'?",
            "spec token 0 'mpl' is not understood; use dense:OUT")
    assert not out.exists()


def test_a_model_typo_is_found_before_the_data_loads(tmp_path, capsys):
    """With a data set that cannot be found, the model's message comes first: the spec is
    checked before any data is read."""
    refused(capsys, ["train", "--model", "mpl", "--data", "fashion-mnist", "--data-path",
                     str(tmp_path / "no-such-dir"), "--lr", "0.05"],
            "did you mean 'mlp'?")
    with pytest.raises(ValueError, match="did you mean 'mlp'"):
        registry.check_model("mpl")
    registry.check_model("flatten,dense:8,relu,dense:10")  # parses: accepted, nothing built


def test_get_model_suggests_the_closest_name():
    with pytest.raises(ValueError, match="did you mean 'lrpo_cnn'"):
        registry.get_model("lrpo_cn", (1, 28, 28))
    with pytest.raises(ValueError, match="did you mean 'mlp'.*needs input_shape"):
        registry.get_model("mpl")
    with pytest.raises(ValueError) as info:  # a spec far from every name: no guess
        registry.get_model("dense:16,oops", (4,))
    assert "did you mean" not in str(info.value)
