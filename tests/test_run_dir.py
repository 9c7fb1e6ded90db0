"""The run directory: never write into a user's folder, one trainer at a time, absolute data
paths, a resume that refuses other classes or a missing config."""

import json
import os
import shutil
from dataclasses import replace

import pytest
import yaml

from scarce.cli import main
from scarce.config import load_config
from scarce.engine.run_dir import RunLock
from scarce.engine.trainer import train
from scarce.errors import UserError
from tests.conftest import TINY, make_image_folder


def test_out_that_holds_other_files_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "keep.txt").write_text("mine")
    (out / "metrics.jsonl").write_text("mine")
    assert main(["train", "--out", str(out), "--no-progress", *TINY, "epochs=1"]) == 2
    assert "no scarce run" in capsys.readouterr().err
    assert (out / "checkpoints" / "keep.txt").read_text() == "mine" and (out / "metrics.jsonl").read_text() == "mine"


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "--out", str(tmp_path / "f"), "--no-progress", *TINY]) == 2
    assert "is a file" in capsys.readouterr().err


def test_second_trainer_into_the_same_run_is_refused_naming_the_first(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        cfg = load_config(None, TINY + ["epochs=1"])
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):
            train(cfg, run_dir, progress=False)
    train(load_config(None, TINY + ["epochs=1"]), run_dir, progress=False)  # released: trains


def test_a_running_runs_directory_is_refused_first_naming_its_pid(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train(load_config(None, TINY + ["epochs=2"]), run_dir, progress=False, stop_after=1) == {}
    capsys.readouterr()
    with RunLock(run_dir):  # as if its first process were still training: its checkpoint is not one to resume
        for args in (["--out", str(run_dir), *TINY], ["--resume", str(run_dir)]):
            assert main(["train", *args, "--no-progress"]) == 2
            out, err = capsys.readouterr()
            assert f"another scarce process (pid {os.getpid()}) is training into it" in err and out == ""
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


def test_data_path_is_stored_absolute_and_evaluate_elsewhere_reads_it(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": "data"}}), tmp_path / "run", progress=False)
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["data"]["name"] == str(tmp_path / "data")
    other = tmp_path / "elsewhere"
    make_image_folder(other / "data", classes=("x", "y", "z"))  # a different folder of the same name
    monkeypatch.chdir(other)
    assert main(["evaluate", str(tmp_path / "run"), "--workers", "0"]) == 0
    shutil.rmtree(tmp_path / "data")
    assert main(["evaluate", str(tmp_path / "run"), "--workers", "0"]) == 2  # stored data gone: refused


def test_resume_with_other_classes_is_refused(tmp_path, capsys):
    make_image_folder(tmp_path / "a", classes=("cat", "dog", "emu"))
    make_image_folder(tmp_path / "b", classes=("ant", "bee", "cow"))
    train(
        load_config(None, TINY + ["epochs=2"], {"data": {"name": str(tmp_path / "a")}}),
        tmp_path / "run",
        progress=False,
        stop_after=1,
    )
    assert main(["train", "--resume", str(tmp_path / "run"), "--data", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "data.name=" in capsys.readouterr().err  # another folder: refused before anything is read
    shutil.rmtree(tmp_path / "a")
    make_image_folder(tmp_path / "a", classes=("ant", "bee", "cow"))  # the same folder, other classes now
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "differ from the run's" in capsys.readouterr().err


def test_resume_refuses_fewer_epochs_and_another_model_or_input(tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config(None, TINY + ["epochs=3"]), run, progress=False, stop_after=2)
    for override, message in (
        ("epochs=1", "has trained 2 epochs, more than epochs=1"),
        ("data.img_size=24", "data.img_size=24 differs from the run's 16"),
        ("model.name=resnet10t", "model.name='resnet10t' differs"),
        ("batch_size=8", "batch_size=8 differs"),
        ("data.keep_last_batch=true", "data.keep_last_batch=True differs"),  # the steps per epoch, as batch_size
        ("seed=1", "seed=1 differs from the run's 0"),  # its random streams: the resume would not be the run
    ):
        assert main(["train", "--resume", str(run), override, "--no-progress"]) == 2, override
        assert message in capsys.readouterr().err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2  # nothing written by the refusals
    first = json.loads((run / "state.json").read_text())
    assert first["segments"] == 1 and first["seconds"] > 0
    first["seconds"] = 1000.0  # as if the first segment had run long: the summary must add it
    (run / "state.json").write_text(json.dumps(first))
    # what may change: the lr (e.g. after a fault) and the epochs, here to extend the run; said and kept
    assert main(["train", "--resume", str(run), "optim.lr=0.005", "epochs=4", "--no-progress"]) == 0
    assert "resumed at epoch 2 with epochs 3 -> 4, optim.lr 0.01 -> 0.005" in capsys.readouterr().out
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 4
    (record,) = map(json.loads, (run / "resumes.jsonl").read_text().splitlines())
    assert record == {"start_epoch": 2, "changed": {"epochs": [3, 4], "optim.lr": [0.01, 0.005]}}
    summary = json.loads((run / "summary.json").read_text())  # both segments' time, not the last one's
    assert summary["segments"] == 2 and 1000 < summary["train_seconds"] < 1000 + 600
    assert summary["timings"]["train"] > first["timings"]["train"]


def test_a_state_json_with_bad_times_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config(None, TINY + ["epochs=2"]), run, progress=False, stop_after=1)
    state = json.loads((run / "state.json").read_text())
    (run / "state.json").write_text(json.dumps({**state, "timings": []}))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "state.json: seconds, segments or timings are not numbers" in capsys.readouterr().err


def test_resume_of_a_finished_run_checks_its_config_too(tmp_path, capsys):
    run = tmp_path / "run"
    train(load_config(None, TINY + ["epochs=2"]), run, progress=False)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "epochs=1", "--no-progress"]) == 2
    assert "epochs=1 is fewer than the 2 the run trained" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "loss.name=focal", "--no-progress"]) == 2
    assert "loss.name='focal' differs from the run's 'ce'" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "optim.lr=0.5", "--no-progress"]) == 0  # a requeued job: no work
    assert "nothing to do (ignored: optim.lr 0.01 -> 0.5)" in capsys.readouterr().out


def test_a_train_folder_run_saved_as_the_demo_resumes_and_compares_as_no_dataset(tmp_path, capsys):
    from scarce.config import DataConfig, load_config
    from scarce.report.compare import compare_runs

    folder = make_image_folder(tmp_path / "mine", per_split={"train": 6})
    old, new = tmp_path / "old", tmp_path / "new"
    assert (
        main(
            ["train", *TINY, "--train", str(folder / "train"), "--out", str(old), "--no-progress", "--keep-checkpoint"]
        )
        == 0
    )
    saved = yaml.safe_load((old / "config.yaml").read_text())
    assert saved["data"]["name"] is None
    saved["data"]["name"] = "demo"  # as runs before this change saved it
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    # a Config built in Python (no load_config) with the default name saves no dataset too
    cfg = load_config(None, TINY)
    cfg.data = DataConfig(train=str(folder / "train"), img_size=cfg.data.img_size, num_workers=0)
    train(cfg, new, progress=False)
    assert yaml.safe_load((new / "config.yaml").read_text())["data"]["name"] is None
    rows, _ = compare_runs([str(old), str(new)])
    assert len(rows) == 1 and rows[0]["n"] == 2  # the old spelling is the same data
    capsys.readouterr()
    assert main(["train", "--resume", str(old), "epochs=3", "--no-progress"]) == 0  # data.name is kept on resume
    assert json.loads((old / "summary.json").read_text())["epochs"] == 3


def test_options_and_overrides_mix_in_any_order(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "epochs=1", "--no-progress", "seed=3"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["seed"] == 3  # the later epochs=1 wins over TINY's epochs=2
    with pytest.raises(SystemExit) as stop:
        main(["train", *TINY, "--out", str(tmp_path / "other"), "--bogus"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_unwritable_out_is_one_line_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["train", *TINY, "--out", str(blocker / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--out {blocker / 'run'}: cannot write there" in err and "Traceback" not in err


def test_resume_without_config_is_refused(tmp_path, capsys):
    train(load_config(None, TINY + ["epochs=2"]), tmp_path / "run", progress=False, stop_after=1)
    (tmp_path / "run" / "config.yaml").unlink()
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_a_run_killed_before_config_yaml_can_be_started_again(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("123")
    (out / ".config.yaml.abc123.tmp").write_text("torn")  # an atomic write cut short by SIGKILL
    train(load_config(None, TINY + ["epochs=1"]), out, progress=False)
    assert (out / "summary.json").is_file()


def test_a_finished_run_drops_its_checkpoint_unless_kept(tmp_path, capsys):
    from scarce.cli import main
    from tests.conftest import TINY

    dropped, kept = tmp_path / "dropped", tmp_path / "kept"
    assert main(["train", "--out", str(dropped), "--no-progress", *TINY, "epochs=1"]) == 0
    assert not (dropped / "state.json").exists() and not (dropped / "checkpoints").exists()
    assert (dropped / "last.safetensors").is_file() and (dropped / "best.safetensors").is_file()
    capsys.readouterr()
    assert main(["train", "--resume", str(dropped), "epochs=2", "--no-progress"]) == 2
    assert "dropped its resumable checkpoint" in capsys.readouterr().err
    summary = (dropped / "summary.json").read_text()
    assert main(["train", "--resume", str(dropped), "--no-progress"]) == 0  # e.g. a job requeued as it ended
    assert "the run has finished (1 epochs); nothing to do" in capsys.readouterr().out
    assert (dropped / "summary.json").read_text() == summary
    assert main(["train", "--out", str(dropped), *TINY]) == 2  # still a finished run, not an empty folder
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--out", str(kept), "--no-progress", "--keep-checkpoint", *TINY, "epochs=1"]) == 0
    assert (kept / "state.json").is_file() and any((kept / "checkpoints").iterdir())
    assert main(["train", "--resume", str(kept), "epochs=2", "--no-progress"]) == 0
    assert len((kept / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_on_another_number_of_processes_is_refused(tmp_path, capsys, monkeypatch):
    """batch_size is per process: resuming a 2-process run in one process would halve the global
    batch and stretch the schedule mid-run; the message gives the torchrun command."""
    run = tmp_path / "run"
    train(load_config(None, TINY + ["epochs=2"]), run, progress=False, stop_after=1)
    record = json.loads((run / "environment.json").read_text())
    (run / "environment.json").write_text(json.dumps({**record, "world_size": 2, "local_world_size": 2}))  # torchrun
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the run trained on 2 processes (global batch 32), this is 1" in err, err
    assert f"torchrun --nproc_per_node 2 -m scarce train --resume {run}" in err
    # two nodes of 4: the command names the processes per node the run had, not this launch's
    (run / "environment.json").write_text(json.dumps({**record, "world_size": 8, "local_world_size": 4}))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert f"torchrun --nproc_per_node 4 -m scarce train --resume {run} on each of 2 nodes" in capsys.readouterr().err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # nothing trained


def test_other_ranks_stop_quietly_on_a_signal(monkeypatch, capsys):
    """Under torchrun every rank gets the signal; rank 0 alone says what is kept and how to resume."""
    import scarce.cli as cli
    from scarce.engine.faults import Interrupted

    def interrupted(quiet):
        def command(args):
            raise Interrupted("interrupted by SIGTERM; ...; continue with: ...", 15, quiet=quiet)

        return command

    for quiet in (True, False):
        monkeypatch.setitem(cli.COMMANDS, "train", (cli.COMMANDS["train"][0], interrupted(quiet)))
        assert main(["train", "--no-progress"]) == 143
        err = capsys.readouterr().err
        assert err == "" if quiet else err.startswith("scarce train: interrupted by SIGTERM; ")


def test_default_run_dirs_of_one_second_differ_and_a_refused_run_leaves_none(tmp_path, monkeypatch, capsys):
    from scarce.engine.run_dir import default_run_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20261202-160000")  # every call in one second
    first, second = default_run_dir("ablation"), default_run_dir("ablation")
    assert (first.name, second.name) == ("ablation-20261202-160000", "ablation-20261202-160000-2")
    assert main(["train", "--data", str(tmp_path / "missing"), *TINY, "--no-progress"]) == 2
    assert "missing" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [first.name, second.name]  # no new empty one
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun: each process would claim its own folder
    assert main(["train", *TINY, "--no-progress"]) == 2
    assert "under torchrun, give --out RUN_DIR" in capsys.readouterr().err


def test_val_check_passes_any_val_not_taken_from_train(tmp_path):
    from scarce.data.datasets import Split
    from scarce.engine.resume import check_val_as_drawn

    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["a"], "val_from_train": ["a/1.png", "a/2.png"]}))
    redrawn = Split(ids=["a/2.png", "a/3.png"], targets=[0, 0], classes=["a"], from_train=True)
    with pytest.raises(UserError, match=r"evaluate: the train folder changed .*\(2 val images differ"):
        check_val_as_drawn(tmp_path, redrawn, "evaluate")
    check_val_as_drawn(tmp_path, replace(redrawn, ids=["a/2.png", "a/1.png"]), "evaluate")  # same draw, any order
    check_val_as_drawn(tmp_path, replace(redrawn, from_train=False), "evaluate")  # a val folder of its own
    check_val_as_drawn(tmp_path, None, "evaluate")
    check_val_as_drawn(tmp_path / "none", redrawn, "evaluate")  # a run from before classes.json


def test_a_signal_after_the_last_epoch_says_the_end_of_the_run_was_not_done(tmp_path, monkeypatch, capsys):
    """No epoch was in progress: the message says what is left (calibration, test) instead."""
    import signal

    from scarce.engine import trainer
    from scarce.engine.faults import Interrupted

    def interrupted(*args):
        raise Interrupted("SIGTERM", signal.SIGTERM)

    monkeypatch.setattr(trainer, "finish_run", interrupted)
    root = make_image_folder(tmp_path / "d")
    with pytest.raises(Interrupted) as caught:
        train(load_config(None, [*TINY, "epochs=1"], {"data": {"name": str(root)}}), tmp_path / "run", progress=False)
    message = str(caught.value)
    assert message.startswith("interrupted by SIGTERM; the end of the run (calibration, test) was not done and ")
    assert "the checkpoint of epoch 0 is kept" in message and "abandoned" not in message
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 0  # only the end is left
    assert (tmp_path / "run" / "summary.json").is_file()
