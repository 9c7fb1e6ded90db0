"""Reliability round 2: each test failed before its fix."""

import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.cli import main
from scarce.config import load_config
from scarce.data.datasets import read_image
from scarce.data.subset import make_subset
from scarce.engine.trainer import train
from scarce.errors import UserError
from scarce.inference.predictions import write_npz_atomic
from tests.conftest import TINY, make_image_folder


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # left half white, stored 20 wide x 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "r.jpg", "RGB")
    assert img.size == (10, 20)  # upright: 10 wide, 20 high
    upright = np.asarray(img)
    assert upright[:10].mean() > 200 and upright[10:].mean() < 50  # the white half is now on top


def test_one_class_dataset_is_refused(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("only",))
    cfg = load_config(None, TINY, {"data": {"name": str(root)}})
    with pytest.raises(UserError, match="at least 2 class"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("per_class, val", [(0, 0), (-1, 0), (2, -1)])
def test_subset_counts_must_be_sensible(tmp_path, per_class, val):
    src = make_image_folder(tmp_path / "src", per_split={"train": 4})
    with pytest.raises(UserError, match="expected >= 1 train"):
        make_subset(src, tmp_path / "dst", per_class, val)
    assert not (tmp_path / "dst").exists()


def test_npz_and_csv_follow_the_umask_and_leave_no_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_npz_atomic(tmp_path / "p.npz", {"a": np.zeros(3)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]


def test_every_file_of_a_run_has_the_same_permissions(tmp_path):
    # weights were 0600 beside 0644 files: safetensors replaced the prepared temporary file
    from scarce.io import _UMASK

    cfg = load_config(None, [*TINY, "epochs=1", "ema.enabled=true"], {"data": {"name": "demo"}})
    train(cfg, tmp_path / "run", progress=False)
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in tmp_path.rglob("*")}
    files = {name: mode for name, mode in modes.items() if (tmp_path / name).is_file()}
    assert "run/best.safetensors" in files and "run/last_ema.safetensors" in files
    assert {name: mode for name, mode in files.items() if mode != 0o666 & ~_UMASK} == {}


def test_divergence_in_the_last_step_is_a_fault_not_saved_weights(tmp_path, monkeypatch, capsys):
    import scarce.engine.loop as loop

    real_call = loop.TrainStep.__call__

    def poison_last_step(self, x, target, global_step):
        loss = real_call(self, x, target, global_step)
        if global_step + 1 == 62:  # the last update of 2 epochs x 31 steps: loss finite, weights not
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return loss

    monkeypatch.setattr(loop.TrainStep, "__call__", poison_last_step)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", *TINY, "checkpoint.every_epochs=1"]) == 3
    assert "weights became non-finite" in capsys.readouterr().err
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(out / "best.safetensors")).values())
    assert not (out / "summary.json").exists()


def test_sigint_message_is_never_empty(capsys, monkeypatch):
    import scarce.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt()

    monkeypatch.setitem(cli.COMMANDS, "train", (cli.COMMANDS["train"][0], interrupted))
    assert main(["train"]) == 130
    assert capsys.readouterr().err.strip() == "scarce train: interrupted (SIGINT)"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rel") / "run"
    train(load_config(None, TINY + ["epochs=1", "checkpoint.keep_at_end=true"]), out, progress=False)
    return out


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("checkpoint"), "key 'checkpoint' should be str, got nothing"),
        (lambda s: s.update(epoch="3"), "key 'epoch' should be int, got str"),
        (lambda s: s.update(checkpoint="../../etc"), "is not under checkpoints/"),
        (lambda s: s.update(checkpoint="checkpoints/../../elsewhere"), "is not under checkpoints/"),
    ],
)
def test_edited_state_json_is_refused_in_one_line(tiny_run, tmp_path, capsys, edit, message):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state = json.loads((run / "state.json").read_text())
    edit(state)
    (run / "state.json").write_text(json.dumps(state))
    assert main(["train", "--resume", str(run), "epochs=2", "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_edited_classes_json_is_refused_in_one_line(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "classes.json").write_text('{"classes": "cat", "mode": "L"}')
    assert main(["evaluate", str(run), "--workers", "0"]) == 2
    assert "key 'classes' should be list, got str" in capsys.readouterr().err


@pytest.mark.parametrize("metadata", ["not json", "[1, 2]"])
def test_report_of_an_ensemble_with_bad_metadata_is_one_line(tmp_path, capsys, metadata):
    path = tmp_path / "final.npz"
    np.savez(
        path,
        pred=np.array([0, 1]),
        ids=np.array(["a", "b"]),
        classes=np.array(["x", "y"]),
        targets=np.array([0, 1]),
        metadata=np.array(metadata),
    )
    assert main(["report", "--ensemble", str(path), "--out", str(tmp_path / "r.html")]) == 2
    assert "metadata is not a JSON object" in capsys.readouterr().err


def test_file_name_that_is_not_utf8_trains_and_predicts_with_tta(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_split={"train": 6, "val": 2, "test": 3})
    os.rename(os.fsencode(root / "test" / "a" / "0.png"), os.fsencode(root / "test" / "a") + b"/\xff\xfe.png")
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": str(root)}}), tmp_path / "run", progress=False)
    out = tmp_path / "p.npz"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "run"),
                "--out",
                str(out),
                "--csv",
                str(tmp_path / "p.csv"),
                "--tta",
                "2",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert b"\xff\xfe.png" in (tmp_path / "p.csv").read_bytes()  # the raw name, as on disk


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--no-progress", *TINY, "device=cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_fixed_input_size_model_fails_before_anything_is_written(tmp_path, capsys):
    assert (
        main(["train", "--out", str(tmp_path / "run"), "--no-progress", *TINY, "model.name=vit_tiny_patch16_224"]) == 2
    )
    assert "cannot take 16 px images" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_evaluate_batch_size_zero_is_one_line(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), "--batch-size", "0"]) == 2
    assert "--batch-size 0" in capsys.readouterr().err


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; from scarce.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_channels_auto_decides_on_every_image(tmp_path, capsys):
    import json

    from scarce.data.datasets import spread_picks

    root = make_image_folder(tmp_path / "d", mode="L")  # cat, dog, emu: 8 train images each, gray
    names = sorted(str(p.relative_to(root / "train")) for p in (root / "train").glob("*/*.png"))
    unseen = sorted(set(range(len(names))) - set(spread_picks(len(names), 16)))[-1]
    red = Image.fromarray(np.full((20, 20, 3), (200, 30, 30), np.uint8))
    red.save(root / "train" / names[unseen])  # one colour image the 16 sampled at the start do not see
    run = tmp_path / "run"
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": str(root)}}), run, progress=False)
    assert "1 of 48 images are in colour" in capsys.readouterr().out
    assert json.loads((run / "classes.json").read_text())["mode"] == "RGB"
    # a colour class is among the images sampled over the split: RGB from the start, no second scan
    for path in (root / "train" / "emu").glob("*.png"):
        red.save(path)
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": str(root)}}), tmp_path / "run2", progress=False)
    out = capsys.readouterr().out
    assert "data: mixes modes (40 of 48 images gray); training in RGB" in out and "are in colour" not in out


@pytest.mark.parametrize("target", ["config.yaml", "calibration.json"])
def test_full_disk_before_the_first_epoch_or_at_the_end_is_a_fault(tmp_path, monkeypatch, capsys, target):
    import errno

    import scarce.io as io

    real = io.atomic_write_text

    def full_disk(path, text):
        if str(path).endswith(target):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(io, "atomic_write_text", full_disk)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress", *TINY, "epochs=1"]) == 3
    assert "no space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    if target == "calibration.json":  # the trained checkpoint is kept: the resume only finishes
        assert main(["train", "--resume", str(out), "--no-progress"]) == 0
        assert (out / "summary.json").is_file() and len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(monkeypatch, capfd):
    """``scarce evaluate RUN | head``: the closed pipe ends the command with exit 1, no traceback."""
    import sys

    import scarce.cli as cli

    read_end, write_end = os.pipe()
    os.close(read_end)
    pipe = os.fdopen(write_end, "w")

    def flood(args) -> int:
        for _ in range(10_000):
            print("x" * 100)
        return 0

    monkeypatch.setitem(cli.COMMANDS, "data", (cli.COMMANDS["data"][0], flood))
    monkeypatch.setattr(sys, "stdout", pipe)
    assert main(["data", "check", "demo"]) == 1
    pipe.write("y" * 100_000)
    pipe.flush()  # the pipe's descriptor now points at the null device: nothing fails at exit
    pipe.close()
    assert capfd.readouterr().err == ""  # no traceback, no message


def test_predict_negative_workers_is_one_line(tiny_run, tmp_path, capsys):
    assert main(["predict", str(tiny_run), "--workers", "-1", "--out", str(tmp_path / "p.npz")]) == 2
    assert "--workers -1" in capsys.readouterr().err


def test_weights_files_write_their_metadata_in_key_order(tmp_path):
    """safetensors orders metadata by a per-process hash, so equal weights of two runs differed
    byte for byte; the header is rewritten sorted (here: written reversed by hand first)."""
    import json
    import struct

    from safetensors.torch import load_file, safe_open

    from scarce.io import _sort_metadata, save_tensors

    header = {
        "__metadata__": {"source": "model", "epoch": "7"},
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    text = json.dumps(header, separators=(",", ":")).encode().ljust(112, b" ")  # padded as safetensors pads
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + struct.pack("<2f", 1.5, -2.0))
    _sort_metadata(path)
    raw = path.read_bytes()
    assert raw[8:].startswith(b'{"__metadata__":{"epoch":"7","source":"model"},"w":') and len(raw) == 8 + 112 + 8
    assert load_file(str(path))["w"].tolist() == [1.5, -2.0]
    save_tensors(tmp_path / "s.safetensors", {"w": torch.ones(2)}, {"source": "ema", "epoch": 3, "b": "ñ"})
    with safe_open(str(tmp_path / "s.safetensors"), "pt") as fh:
        assert fh.metadata() == {"b": "ñ", "epoch": "3", "source": "ema"}
    assert b'{"__metadata__":{"b":"\xc3\xb1","epoch":"3","source":"ema"}' in (tmp_path / "s.safetensors").read_bytes()
