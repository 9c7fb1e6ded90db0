"""Options of the commands that use runs and their predictions (cli_runs.py): what ``scarce
evaluate`` prints, ``scarce ensemble`` without ``--base``."""

import json
import shutil

import numpy as np
import pytest

import scarce.engine.evaluation as evaluation
from scarce.cli import main
from scarce.config import load_config
from scarce.engine.trainer import train
from scarce.errors import UserError
from scarce.inference import run_ensemble
from tests.conftest import TINY
from tests.test_ensemble_io import BASE, IDS, M1, M2, _save


@pytest.fixture()
def files(tmp_path):
    return {
        "m1": _save(tmp_path / "m1.npz", M1, order=(3, 1, 0, 2)),  # shuffled rows
        "m2": _save(tmp_path / "m2.npz", M2),
        "val_base": _save(tmp_path / "val_base.npz", BASE),
        "tmp": tmp_path,
    }


def test_evaluate_of_three_classes_prints_no_top5(tmp_path, image_folder, capsys):
    run = tmp_path / "run"
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": str(image_folder)}}), run, progress=False)
    capsys.readouterr()  # the training's lines
    assert main(["evaluate", str(run), "--split", "val", "--workers", "0", "--device", "cpu"]) == 0
    first, *per_class, wrote = capsys.readouterr().out.strip().splitlines()
    printed = json.loads(first)
    assert list(printed) == ["split", "top1", "balanced_accuracy", "macro_f1", "count"]
    assert printed["split"] == "val" and printed["count"] == 12
    assert [line.split()[0] for line in per_class] == ["cat", "dog", "emu"]
    saved = json.loads((run / "eval_val.json").read_text())
    assert (printed["balanced_accuracy"], printed["macro_f1"]) == (saved["balanced_accuracy"], saved["macro_f1"])
    for line, name in zip(per_class, ["cat", "dog", "emu"]):  # each class's images and F1 beside its accuracy
        assert line.split() == [
            name,
            f"{saved['per_class'][name]:.4f}",
            str(int(saved["support"][name])),
            "images,",
            "F1",
            f"{saved['f1'][name]:.4f}",
        ]
    assert wrote == f"wrote {run / 'eval_val.json'}"
    own = (run / "eval_val.json").read_text()
    # other weights of the run get a file of their own: the best weights' score is not replaced
    assert main(["evaluate", str(run / "last.safetensors"), "--split", "val", "--workers", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {run / 'eval_val_last.json'}"
    assert json.loads((run / "eval_val_last.json").read_text())["weights"] == str(run / "last.safetensors")
    # another dataset's split goes to its own file: the run's score is not replaced
    other = shutil.copytree(image_folder, tmp_path / "other set")
    assert main(["evaluate", str(run), "--data", str(other), "--split", "test", "--workers", "0"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == f"wrote {run / 'eval_other_set_test.json'}"
    assert json.loads(printed[0])["data"] == str(other)  # the console names what was scored
    assert json.loads((run / "eval_other_set_test.json").read_text())["data"] == str(other)
    assert (run / "eval_val.json").read_text() == own
    # a second folder of the same name gets a file of its own; scoring the first again replaces its file
    twin = shutil.copytree(image_folder, tmp_path / "elsewhere" / "other set")
    assert main(["evaluate", str(run), "--data", str(twin), "--split", "test", "--workers", "0"]) == 0
    twin_file = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("wrote ")
    assert twin_file.startswith(str(run / "eval_other_set_test-")) and twin_file.endswith(".json")
    assert json.loads(open(twin_file).read())["data"] == str(twin)
    assert json.loads((run / "eval_other_set_test.json").read_text())["data"] == str(other)
    assert main(["evaluate", str(run), "--data", str(other), "--split", "test", "--workers", "0"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"wrote {run / 'eval_other_set_test.json'}"
    # a folder named under two roots (--split extra = ROOT/extra): two sources, two files
    written = []
    for root in ("d1", "d2"):
        shutil.copytree(image_folder / "train", tmp_path / root / "train")
        shutil.copytree(image_folder / "test", tmp_path / root / "extra")
        argv = ["evaluate", str(run), "--data", str(tmp_path / root), "--split", "extra", "--workers", "0"]
        assert main(argv) == 0
        written.append(capsys.readouterr().out.strip().splitlines()[-1])
    assert written[0] == f"wrote {run / 'eval_folder_extra.json'}" and written[1] != written[0]
    # a folder of some of the run's classes is scored, as predict reads it; a flat folder cannot be
    subset = tmp_path / "subset"
    shutil.copytree(image_folder / "test" / "dog", subset / "dog")
    assert main(["evaluate", str(run), "--split", str(subset), "--workers", "0", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["count"] == len(list((subset / "dog").iterdir()))
    # written beside the run as eval_folder_<name>.json (not under eval_/<path>/), strict JSON: the
    # classes without an image in the folder have null, not NaN, per-class values
    written = (run / "eval_folder_subset.json").read_text()
    assert not [p for p in run.iterdir() if p.is_dir() and p.name.startswith("eval_")]
    per_class = json.loads(written, parse_constant=lambda c: pytest.fail(f"{c} in eval JSON"))["per_class"]
    assert per_class["cat"] is None and per_class["dog"] is not None
    flat = subset / "dog"
    assert main(["evaluate", str(run), "--split", str(flat), "--workers", "0", "--device", "cpu"]) == 2
    assert "no class folders; scoring needs <class>/<image> labels" in capsys.readouterr().err


def test_evaluate_of_six_classes_prints_top5(monkeypatch, capsys):
    result = {"split": "test", "top1": 0.5, "top5": 0.75, "count": 4, "per_class": {c: 0.5 for c in "abcdef"}}
    monkeypatch.setattr(evaluation, "evaluate_run", lambda *args: result)
    assert main(["evaluate", "unused"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == '{"split": "test", "top1": 0.5, "top5": 0.75, "count": 4}'


def test_soft_and_weighted_need_no_base(files, capsys):
    from scarce.cli import main

    out = files["tmp"] / "soft.npz"
    report = run_ensemble(None, [files["m2"], files["m1"]], method="soft", out_path=out, log=print)
    with np.load(out) as data:
        assert data["ids"].tolist() == IDS and data["pred"].tolist() == [1, 1, 1, 1]  # m2's order, m2 + m1 voting
        np.testing.assert_allclose(data["probs"][0], [0.4, 0.5, 0.1], atol=1e-6)
        assert json.loads(str(data["metadata"]))["base"] is None
    assert report["base"] is None and report["replaced"] is None and len(report["members"]) == 2
    assert report["accuracy"] == pytest.approx({"soft": 0.5, "oracle": 0.75})  # no base nor plurality row
    printed = capsys.readouterr().out
    assert "| soft vote | 0.5000 |" in printed and "base" not in printed and "replaced" not in printed
    report = run_ensemble(
        None, [files["m2"], files["m1"]], method="weighted", weights=[1, 0], out_path=out, log=lambda line: None
    )
    with np.load(out) as data:
        assert data["pred"].tolist() == [0, 1, 1, 1]  # m2 alone
    argv = ["ensemble", "--members", files["m2"], files["m1"], "--method", "soft", "--out", str(out)]
    assert main(argv) == 0
    assert main(["ensemble", "--members", files["m2"], files["m1"], "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("scarce ensemble: error: --method plurality needs --base (the model")
    with pytest.raises(UserError, match="--members needs at least two files"):
        run_ensemble(None, [files["m1"]], method="soft", out_path=out)
    with pytest.raises(UserError, match="--val-base pairs with --base"):
        run_ensemble(None, [files["m1"], files["m2"]], "weighted", val_base=files["val_base"], out_path=out)


def test_evaluating_one_split_of_a_folder_reads_only_that_split(tmp_path, capsys):
    """A class folder only test/ has blocks scoring test, not val: the split asked for is read."""
    from tests.conftest import make_image_folder

    make_image_folder(tmp_path / "A", per_split={"train": 6, "val": 2})
    other = make_image_folder(tmp_path / "B", per_split={"train": 6, "val": 2, "test": 2})
    make_image_folder(tmp_path / "extra", classes=("fox",), per_split={"test": 2})
    shutil.copytree(tmp_path / "extra" / "test" / "fox", other / "test" / "fox")
    run = tmp_path / "run"
    train(load_config(None, [*TINY, "epochs=1", f"data.name={tmp_path / 'A'}"]), run, progress=False)
    assert main(["evaluate", str(run), "--data", str(other), "--split", "val"]) == 0
    assert json.loads((run / "eval_B_val.json").read_text())["count"] == 6
    assert main(["evaluate", str(run), "--data", str(other), "--split", "test"]) == 2
    assert "unknown: ['fox']" in capsys.readouterr().err
    # a val/ folder with a class the run lacks: only its existence shapes train (no val taken from it)
    shutil.copytree(tmp_path / "extra" / "test" / "fox", other / "val" / "fox")
    assert main(["evaluate", str(run), "--data", str(other), "--split", "train"]) == 0
    assert json.loads((run / "eval_B_train.json").read_text())["count"] == 18  # all of train/: none held out
    assert main(["evaluate", str(run), "--data", str(other), "--split", "val"]) == 2
    # no val/ and none taken from train (val_fraction 0): the message lists every split there is
    no_val = make_image_folder(tmp_path / "C", per_split={"train": 6, "test": 2})
    run_c = tmp_path / "run_c"
    train(load_config(None, [*TINY, "epochs=1", "data.val_fraction=0", f"data.name={no_val}"]), run_c, progress=False)
    capsys.readouterr()
    assert main(["evaluate", str(run_c), "--split", "val"]) == 2
    assert f"data '{no_val}': has no val split (found: train, test)" in capsys.readouterr().err
