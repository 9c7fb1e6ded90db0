"""checkpoint.select: which weights a run scores and ships."""

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from scarce.cli import main
from scarce.engine.saving import MIN_VAL_PER_CLASS_TO_SELECT, clear_margin, resolve_select, settle_clear_best
from tests.conftest import TINY, make_image_folder, sigterm_after_epoch


def test_auto_keeps_the_last_weights_when_val_is_too_small_else_decides_at_the_end():
    few = MIN_VAL_PER_CLASS_TO_SELECT * 10 - 1
    assert resolve_select("auto", few, 10, patience=0) == "last"
    assert resolve_select("auto", few + 1, 10, patience=0) == "clear_best"
    assert resolve_select("auto", few, 10, patience=3) == "best"  # early stopping ranks epochs anyway
    assert resolve_select("best", 0, 10, patience=0) == "best"


@pytest.mark.parametrize("select", ["best", "last"])
def test_best_file_holds_the_selected_epoch(tmp_path, select):
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--out",
                str(out),
                "--no-progress",
                *TINY,
                "epochs=3",
                "optim.lr=0.3",
                f"checkpoint.select={select}",
            ]
        )
        == 0
    )
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    with safe_open(out / "best.safetensors", "pt") as fh:
        saved_epoch = int(fh.metadata()["epoch"])
    expected = 2 if select == "last" else max(range(3), key=lambda e: (metrics[e]["val_top1"], -e))
    assert summary["select"] == select and summary["best"]["epoch"] == expected == saved_epoch


def test_last_with_patience_is_refused(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *TINY, "checkpoint.select=last", "patience=2"]) == 2
    assert "checkpoint.select=last with patience" in capsys.readouterr().err


def fake_run(tmp_path, best: dict, ema: bool = False) -> SimpleNamespace:
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    return SimpleNamespace(
        select="clear_best",
        best=dict(best),
        run_dir=tmp_path,
        model=model,
        ema=SimpleNamespace(module=torch.nn.Linear(2, 2)) if ema else None,
        data=SimpleNamespace(splits={"val": SimpleNamespace(ids=list(range(500)))}),
    )


def test_clear_margin_is_two_binomial_standard_errors():
    assert clear_margin(0.85, 500) == pytest.approx(2 * (0.85 * 0.15 / 500) ** 0.5)  # 0.0319
    assert clear_margin(0.5, 100) == pytest.approx(0.1)


def test_an_earlier_peak_within_the_noise_gives_way_to_the_final_weights(tmp_path):
    # session 16's cell: val 0.850 at epoch 159 (test 81.8), 0.834 at the end (test 84.0)
    run = fake_run(tmp_path, {"top1": 0.85, "epoch": 159, "weights": "model"})
    note = settle_clear_best(run, {"epoch": 299, "val_top1": 0.834})
    assert run.select == "last" and run.best == {"top1": 0.834, "epoch": 299, "weights": "model"}
    assert "kept the final weights (epoch 299" in note
    with safe_open(tmp_path / "best.safetensors", "pt") as fh:
        assert fh.metadata()["epoch"] == "299"
    assert torch.equal(load_file(tmp_path / "best.safetensors")["weight"], run.model.weight.detach())


def test_a_clear_peak_keeps_its_epoch_and_the_final_ema_can_be_kept(tmp_path):
    run = fake_run(tmp_path, {"top1": 0.90, "epoch": 100, "weights": "model"})
    assert "kept epoch 100" in settle_clear_best(run, {"epoch": 299, "val_top1": 0.80})
    assert run.select == "best" and run.best["epoch"] == 100 and not (tmp_path / "best.safetensors").exists()
    run = fake_run(tmp_path, {"top1": 0.85, "epoch": 100, "weights": "model"}, ema=True)
    settle_clear_best(run, {"epoch": 299, "val_top1": 0.83, "val_top1_ema": 0.84})
    assert run.best == {"top1": 0.84, "epoch": 299, "weights": "ema"}
    assert torch.equal(load_file(tmp_path / "best.safetensors")["weight"], run.ema.module.weight.detach())
    run = fake_run(tmp_path, {"top1": 0.85, "epoch": 299, "weights": "model"})
    assert "also the best" in settle_clear_best(run, {"epoch": 299, "val_top1": 0.85}) and run.select == "last"
    run.select = "best"  # other selections are left alone
    assert settle_clear_best(run, {"epoch": 299, "val_top1": 0.1}) is None and run.select == "best"


@pytest.mark.parametrize(
    ("val_scores", "kept", "saved_epoch"),
    [([0.9, 0.2, 0.2], "best", 0), ([0.5, 0.52, 0.5], "last", 2)],
    ids=["clear_peak", "noise"],
)
def test_auto_select_settles_at_the_end_of_a_run(val_scores, kept, saved_epoch, tmp_path, monkeypatch):
    """Val top-1 per epoch is set: a peak far above the final epoch keeps its weights; one
    within noise of it keeps the final weights (written to best.safetensors at the end)."""
    import scarce.engine.saving as saving
    import scarce.engine.trainer as trainer

    monkeypatch.setattr(saving, "MIN_VAL_PER_CLASS_TO_SELECT", 0)  # the tiny val counts as enough
    epochs = iter(val_scores)
    monkeypatch.setattr(trainer, "validate_epoch", lambda run: {"val_top1": next(epochs)})
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--no-progress", *TINY, "epochs=3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    with safe_open(out / "best.safetensors", "pt") as fh:
        assert int(fh.metadata()["epoch"]) == saved_epoch
    assert summary["select"] == kept and summary["best"]["epoch"] == saved_epoch and summary["select_note"]
    with safe_open(out / "last.safetensors", "pt") as fh:
        assert int(fh.metadata()["epoch"]) == 2


def test_an_extended_run_keeps_the_record_of_the_weights_its_first_end_kept(tmp_path, monkeypatch):
    """The first end keeps the final weights (epoch 2) over a peak within noise (epoch 1); extending
    the run must start from that, not from the checkpoint's older record of epoch 1, or a later
    end could report epoch 1 while best.safetensors holds epoch 2."""
    import scarce.engine.saving as saving
    import scarce.engine.trainer as trainer

    monkeypatch.setattr(saving, "MIN_VAL_PER_CLASS_TO_SELECT", 0)
    epochs = iter([0.5, 0.52, 0.5, 0.2, 0.2])  # the extension's epochs 3 and 4 score far lower
    monkeypatch.setattr(trainer, "validate_epoch", lambda run: {"val_top1": next(epochs)})
    out = tmp_path / "r"
    assert main(["train", "--out", str(out), "--no-progress", "--keep-checkpoint", *TINY, "epochs=3"]) == 0
    assert json.loads((out / "state.json").read_text())["best"]["epoch"] == 2
    assert main(["train", "--resume", str(out), "--no-progress", "epochs=5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    with safe_open(out / "best.safetensors", "pt") as fh:
        assert summary["best"]["epoch"] == int(fh.metadata()["epoch"]) == 2 and summary["select"] == "best"


# no checkpoint is due before the last epoch: best.safetensors waits for it (or for a signal)
TIMED_ONLY = ["checkpoint.every_epochs=0", "checkpoint.every_seconds=100000"]


def _record_best_writes(monkeypatch) -> list[int]:
    """The epochs written to best.safetensors, in order, from now on."""
    import scarce.engine.checkpoint as checkpoint

    written: list[int] = []
    real = checkpoint.save_tensors

    def save_tensors(path, tensors, metadata=None):
        if Path(path).name == "best.safetensors":
            written.append(int(metadata["epoch"]))
        real(path, tensors, metadata)

    monkeypatch.setattr(checkpoint, "save_tensors", save_tensors)
    return written


@pytest.mark.parametrize("extra", [["checkpoint.select=last"], ["data.val_fraction=0"]], ids=["last", "no_val"])
def test_final_weights_are_written_to_best_once_not_every_epoch(extra, image_folder, tmp_path, monkeypatch):
    """Where best.safetensors holds the latest weights, each epoch's write (45 MB for a ResNet-18)
    was replaced by the next: it is written with the checkpoint of its epoch only."""
    if "data.val_fraction=0" in extra:
        image_folder = make_image_folder(tmp_path / "train_only", per_split={"train": 8, "test": 4})
    written = _record_best_writes(monkeypatch)
    out = tmp_path / "r"
    argv = ["train", "--data", str(image_folder), "--out", str(out), "--no-progress", *TINY, "epochs=3"]
    assert main([*argv, *TIMED_ONLY, *extra]) == 0
    assert written == [2]
    with safe_open(out / "best.safetensors", "pt") as fh:
        assert fh.metadata()["epoch"] == "2"


def test_a_signal_writes_the_latest_weights_to_best_with_the_checkpoint(image_folder, tmp_path, monkeypatch):
    """SIGTERM after epoch 1, before any checkpoint was due: best.safetensors is written from the
    same in-memory snapshot as the checkpoint, so the two hold the same weights."""
    sigterm_after_epoch(monkeypatch, 1)
    written = _record_best_writes(monkeypatch)
    out = tmp_path / "r"
    argv = ["train", "--data", str(image_folder), "--out", str(out), "--no-progress", *TINY, "epochs=3", *TIMED_ONLY]
    assert main([*argv, "checkpoint.select=last"]) == 128 + signal.SIGTERM
    assert written == [1] and json.loads((out / "state.json").read_text())["epoch"] == 1
    best, kept = load_file(out / "best.safetensors"), load_file(out / "checkpoints/epoch-0001/model.safetensors")
    assert best.keys() == kept.keys() and all(torch.equal(best[k], kept[k]) for k in best)
