"""checkpoint.select: which weights a run scores and ships."""

import json

import pytest
from safetensors import safe_open

from scarce.cli import main
from scarce.engine.saving import MIN_VAL_PER_CLASS_TO_SELECT, resolve_select
from tests.conftest import TINY


def test_auto_keeps_the_last_weights_only_when_val_is_too_small_to_rank_epochs():
    few = MIN_VAL_PER_CLASS_TO_SELECT * 10 - 1
    assert resolve_select("auto", few, 10, patience=0) == "last"
    assert resolve_select("auto", few + 1, 10, patience=0) == "best"
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
