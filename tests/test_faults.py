"""Faults during training: a non-finite loss, a full disk, SIGINT/SIGTERM, and SIGKILL at
random moments. Each must keep the last complete checkpoint, and the resume must end
bit-identical to an uninterrupted run (CPU, deterministic=true).

Training subprocesses are forked from a forkserver that has imported scarce once, so a
trial costs a fork, not a 5-7 s interpreter start. The kill trials print a table:
``.venv/bin/python -m pytest -s tests/test_faults.py -k sigkill``.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch as safetensors_torch
import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file

import scarce.engine.factories as factories
import scarce.engine.trainer as trainer
from scarce.cli import main
from scarce.io import read_jsonl
from tests.conftest import TINY, make_image_folder, sigterm_after_epoch

ARGS = TINY + [
    "epochs=4",
    "deterministic=true",
    "ema.enabled=true",
    "ema.decay=0.9",
    "checkpoint.every_epochs=1",
    "augment.randaugment=rand-m9-mstd0.5",
]
WEIGHTS = ("last.safetensors", "last_ema.safetensors", "best.safetensors")
KILL_TRIALS = 10
REPO = Path(__file__).resolve().parents[1]


def _argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--no-progress", *ARGS, *extra]


def _child(argv: list[str], log: str, threads: int) -> None:
    """Body of a training subprocess: the test process's thread count, output to ``log``."""
    torch.set_num_threads(threads)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.exit(main(argv))  # multiprocessing flushes and exits with this code


def _noop() -> None:
    pass


@pytest.fixture(scope="module")
def spawn():
    """``spawn(argv, log) -> Process`` running ``scarce <argv>`` in a forked child."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        [
            "scarce.cli",
            "scarce.engine.trainer",
            "scarce.engine.evaluation",
            "timm",
            "timm.optim",
            "timm.scheduler",
            "tests.test_faults",
        ]
    )
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), old) if p)  # the forkserver imports tests.

    def start(argv: list[str], log: Path):
        process = ctx.Process(target=_child, args=(argv, str(log), torch.get_num_threads()))
        process.start()
        return process

    warm = ctx.Process(target=_noop)  # starts the forkserver: its imports are not part of any timing
    warm.start()
    warm.join(300)
    yield start
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # 48 train images, batch 16: 3 optimizer steps per epoch, ~0.5 s per epoch.
    return make_image_folder(tmp_path_factory.mktemp("faults") / "data", per_split={"train": 16, "val": 4, "test": 4})


@pytest.fixture(scope="module")
def reference(data, spawn, tmp_path_factory) -> tuple[Path, tuple[float, float]]:
    """One uninterrupted run in a child (all comparisons use it) and its timing: seconds
    until config.yaml appears (data scan, model), then seconds of training and evaluation."""
    out = tmp_path_factory.mktemp("reference") / "run"
    start = time.perf_counter()
    process = spawn(_argv(data, out), out.parent / "log")
    _wait_for(out / "config.yaml", process)
    started = time.perf_counter()
    process.join(300)
    assert process.exitcode == 0, (out.parent / "log").read_text()
    return out, (started - start, time.perf_counter() - started)


def assert_same_run(a: Path, b: Path) -> None:
    """Same tensors in every weights file, same per-epoch metrics and test score."""
    for name in WEIGHTS:
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys(), name
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f"{name} differs"
    keys = ("epoch", "train_loss", "val_top1", "val_top1_ema", "lr")
    assert [[r.get(k) for k in keys] for r in read_jsonl(b / "metrics.jsonl")] == [
        [r.get(k) for k in keys] for r in read_jsonl(a / "metrics.jsonl")
    ]
    score = lambda d: json.loads((d / "test_metrics.json").read_text())["top1"]  # noqa: E731
    assert score(a) == score(b)


def _checkpoint_epoch(out: Path) -> int | None:
    """Epoch of the complete checkpoint state.json points at (asserts it is complete)."""
    if not (out / "state.json").is_file():
        return None
    state = json.loads((out / "state.json").read_text())
    folder = out / state["checkpoint"]
    for name in ("model", "optimizer", "ema"):
        assert load_file(str(folder / f"{name}.safetensors")), name  # complete and readable
    return state["epoch"]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(data, reference, tmp_path, monkeypatch, capsys):
    epoch_now = {"epoch": -1}
    real_set_epoch, real_build_loss = trainer.set_loader_epoch, factories.build_loss

    def set_epoch(loader, epoch):
        epoch_now["epoch"] = epoch
        real_set_epoch(loader, epoch)

    class PoisonAtEpoch2(nn.Module):  # the real loss, times NaN from epoch 2 on
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, outputs, target):
            value = self.inner(outputs, target)
            return value * float("nan") if epoch_now["epoch"] == 2 else value

    monkeypatch.setattr(trainer, "set_loader_epoch", set_epoch)
    monkeypatch.setattr(factories, "build_loss", lambda cfg, *a, **kw: PoisonAtEpoch2(real_build_loss(cfg, *a, **kw)))
    out = tmp_path / "run"
    assert main(_argv(data, out)) == 3
    line = _one_line(capsys.readouterr().err)
    assert "loss is nan at epoch 2" in line and "checkpoint of epoch 1 is kept" in line, line
    assert _checkpoint_epoch(out) == 1
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0001"]
    assert not (out / "summary.json").exists()
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(reference[0], out)


def test_exploding_learning_rate_is_a_one_line_fault(data, tmp_path, capsys):
    assert main(_argv(data, tmp_path / "run", "optim.lr=1e30")) == 3
    line = _one_line(capsys.readouterr().err)
    assert "loss is nan" in line or "loss is inf" in line, line
    assert "lower optim.lr" in line


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
    ],
    ids=["OSError", "SafetensorError"],
)
def test_full_disk_mid_checkpoint_keeps_last_good_checkpoint(error, data, reference, tmp_path, monkeypatch, capsys):
    real_save = safetensors_torch.save_file  # scarce.io imports it at call time

    def save_file(tensors, filename, metadata=None):
        if "epoch-0001" in filename and "optimizer" in filename:  # model.safetensors already written
            raise error
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors_torch, "save_file", save_file)
    out = tmp_path / "run"
    assert main(_argv(data, out)) == 3
    line = _one_line(capsys.readouterr().err)
    assert "no space left on device" in line and "checkpoint of epoch 0 is kept" in line, line
    assert _checkpoint_epoch(out) == 0
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0000"]  # torn epoch-0001 removed
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_same_run(reference[0], out)


def _wait_for(path: Path, process, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not path.exists():
        assert process.is_alive() and time.perf_counter() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_cleanly_and_resume_is_bit_identical(sig, data, spawn, reference, tmp_path):
    out = tmp_path / "run"
    process = spawn(_argv(data, out), tmp_path / "log")
    _wait_for(out / "state.json", process)  # epoch 0 is saved: the signal lands in a later epoch
    os.kill(process.pid, sig)
    process.join(120)
    assert process.exitcode == 128 + sig
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log
    last = log.strip().splitlines()[-1]
    assert last.startswith(f"scarce train: interrupted by {sig.name}") and "--resume" in last, log
    assert _checkpoint_epoch(out) is not None
    assert ("the epoch in progress was abandoned" in last) == (_checkpoint_epoch(out) < 3), log  # of 4 epochs
    resumed = spawn(["train", "--resume", str(out), "--no-progress"], tmp_path / "log2")
    resumed.join(300)
    assert resumed.exitcode == 0, (tmp_path / "log2").read_text()
    assert_same_run(reference[0], out)


def _wait_for_rows(out: Path, rows: int, process) -> None:
    """Until metrics.jsonl has ``rows`` lines (0: until config.yaml exists) or the child exits."""
    path = out / ("metrics.jsonl" if rows else "config.yaml")
    while process.is_alive():
        if path.exists() and (not rows or len(path.read_text().splitlines()) >= rows):
            return
        time.sleep(0.005)


def test_sigkill_at_random_moments_then_resume_is_bit_identical(data, spawn, reference, tmp_path):
    """10 runs killed with SIGKILL at seeded random moments, each resumed (``--resume``, or the
    original command if the kill came before config.yaml was written); every resume must end
    bit-identical to the reference.

    A moment is an anchor (-1: the start; 0: config.yaml written; k: the metrics row of epoch
    k-1 appended, i.e. its checkpoint being written) plus a seeded random fraction of an
    epoch's wall time as last measured in a child, so kills stay spread over the run however
    loaded the machine is.
    """
    ref, (startup, training) = reference
    rng = np.random.default_rng(2020)
    anchors = rng.integers(-1, 4, KILL_TRIALS)
    fractions = rng.uniform(0.0, 1.0, KILL_TRIALS)
    epoch_time = training / 5  # 4 epochs and the final evaluation, until a child is measured
    rows = []
    for trial, (anchor, fraction) in enumerate(zip(anchors, fractions)):
        out, log = tmp_path / f"run{trial}", tmp_path / f"log{trial}"
        process = spawn(_argv(data, out), log)
        if anchor >= 0:
            _wait_for_rows(out, 0, process)
            began = time.perf_counter()
            if anchor > 0:
                _wait_for_rows(out, int(anchor), process)
                epoch_time = (time.perf_counter() - began) / anchor
        delay = fraction * (startup if anchor < 0 else epoch_time)
        time.sleep(delay)
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had already finished: resuming a finished run must work too
        process.join(60)
        saved = _checkpoint_epoch(out)
        how = "--resume" if (out / "config.yaml").is_file() else "rerun"
        argv = ["train", "--resume", str(out), "--no-progress"] if how == "--resume" else _argv(data, out)
        resumed = spawn(argv, tmp_path / f"resume{trial}")
        resumed.join(300)
        assert resumed.exitcode == 0, (tmp_path / f"resume{trial}").read_text()
        assert_same_run(ref, out)
        rows.append(
            (
                trial,
                int(anchor),
                delay,
                "killed" if process.exitcode == -signal.SIGKILL else "had finished",
                "none" if saved is None else f"epoch {saved}",
                how,
            )
        )
    print(f"\nreference: {startup:.2f} s to config.yaml, then {training:.2f} s")
    print(f"{'trial':>5} {'anchor':>6} {'+ s':>5}  {'outcome':<12} {'checkpoint':<10} resume   result")
    for trial, anchor, delay, outcome, saved, how in rows:
        print(f"{trial:>5} {anchor:>6} {delay:>5.2f}  {outcome:<12} {saved:<10} {how:<8} bit-identical")
    assert len(rows) == KILL_TRIALS
    # the kills must land inside runs, some after a checkpoint: otherwise only fresh starts and
    # finished runs were resumed and the test would say nothing about torn state
    killed = [r for r in rows if r[3] == "killed"]
    assert len(killed) >= KILL_TRIALS // 2, rows
    assert any(r[4] != "none" for r in killed), rows


def test_resume_before_first_checkpoint_starts_fresh(data, reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--resume", str(out)]) == 2  # nothing there yet
    assert f"--resume {out}: no such run directory" in _one_line(capsys.readouterr().err)
    out.mkdir()
    assert main(["train", "--resume", str(out)]) == 2  # a folder, but not a run
    assert "no config.yaml there" in _one_line(capsys.readouterr().err)
    out.rmdir()
    from scarce.config import load_config

    cfg = load_config(None, ARGS, {"data": {"name": str(data)}})
    assert trainer.train(cfg, out, progress=False, stop_after=0) == {}  # config.yaml written, no epoch
    assert (out / "config.yaml").is_file() and not (out / "state.json").exists()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert "no epoch had finished; starting from epoch 0" in capsys.readouterr().out
    assert_same_run(reference[0], out)


def test_signal_between_timed_checkpoints_saves_the_last_completed_epoch(data, spawn, reference, tmp_path):
    """Checkpoints by time only (none due during this short run): SIGTERM still leaves the
    last completed epoch on disk, from the in-memory snapshot, and the resume is bit-identical."""
    out = tmp_path / "run"
    argv = _argv(data, out) + ["checkpoint.every_epochs=0", "checkpoint.every_seconds=100000"]
    process = spawn(argv, tmp_path / "log")
    _wait_for_rows(out, 2, process)
    assert process.is_alive() and not (out / "state.json").exists()  # nothing written by time yet
    os.kill(process.pid, signal.SIGTERM)
    process.join(120)
    assert process.exitcode == 128 + signal.SIGTERM
    assert _checkpoint_epoch(out) >= 1
    resumed = spawn(["train", "--resume", str(out), "--no-progress"], tmp_path / "log2")
    resumed.join(300)
    assert resumed.exitcode == 0, (tmp_path / "log2").read_text()
    assert_same_run(reference[0], out)


def test_a_signal_while_saving_an_epoch_keeps_its_console_line(data, tmp_path, monkeypatch, capsys):
    """The signal is deferred until the epoch's files are written; its printed line must not be
    lost to the interruption (metrics.jsonl and the checkpoint have the epoch)."""
    sigterm_after_epoch(monkeypatch, 1)
    out = tmp_path / "run"
    assert main(_argv(data, out)) == 128 + signal.SIGTERM
    printed = capsys.readouterr().out
    assert "epoch=1 train_loss=" in printed and _checkpoint_epoch(out) == 1, printed


def test_sigterm_before_training_starts_is_one_line_and_143(data, tmp_path, monkeypatch, capsys):
    """During the up-front scan no training handler is installed yet: SIGTERM must still end the
    command as Ctrl-C does (one line), not kill it silently, and the previous handler comes back."""
    import scarce.engine.prepare as prepare

    def scan_then_signal(cfg, found):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the scan")

    monkeypatch.setattr(prepare, "scan_data", scan_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    assert main(_argv(data, tmp_path / "run")) == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip() == "scarce train: interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is before
