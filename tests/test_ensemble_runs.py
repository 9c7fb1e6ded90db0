"""``scarce ensemble`` given run directories: each run is predicted (and its val split where the
threshold is chosen on val), with the same votes as predicting by hand and voting the files."""

import json

import numpy as np
import pytest

from scarce.cli import main
from scarce.config import load_config
from scarce.engine.trainer import train
from scarce.inference.predictions import load_predictions
from tests.conftest import TINY, make_image_folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs of other seeds on one folder with train/ val/ test/."""
    root = tmp_path_factory.mktemp("ensemble_runs")
    data = make_image_folder(root / "data", per_split={"train": 8, "val": 6, "test": 6})
    for seed in range(3):
        train(load_config(None, [*TINY, f"seed={seed}", f"data.name={data}"]), root / f"r{seed}", progress=False)
    return root


def test_runs_are_predicted_and_voted_like_their_files(runs, tmp_path, capsys):
    r0, r1, r2 = (str(runs / f"r{i}") for i in range(3))
    out = tmp_path / "final.npz"
    # r0's best.safetensors is r0's own weights: one member, predicted once (then voted twice)
    args = ["--base", r0, "--members", f"{r0}/best.safetensors", r1, r2, "--threshold", "auto"]
    assert main(["ensemble", *args, "--tta", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = tmp_path / "final_members"
    made = sorted(p.name for p in folder.iterdir())
    # the base among the members is predicted once, on test and on val (the threshold is chosen there)
    assert made == sorted(f"{i}-r{i}-{split}-tta2.npz" for i in range(3) for split in ("test", "val"))
    assert f"predicted {r0} on val (2 views)" in printed
    # by hand: scarce predict each run, then vote the files
    files = {}
    for i, run in enumerate((r0, r1, r2)):
        for split in ("test", "val"):
            files[i, split] = str(tmp_path / f"hand{i}_{split}.npz")
            assert main(["predict", run, "--split", split, "--tta", "2", "--out", files[i, split]]) == 0
    hand = tmp_path / "hand.npz"
    by_hand = ["--base", files[0, "test"], "--members", *(files[i, "test"] for i in range(3))]
    val = ["--val-base", files[0, "val"], "--val-members", *(files[i, "val"] for i in range(3))]
    assert main(["ensemble", *by_hand, "--threshold", "auto", *val, "--out", str(hand)]) == 0
    for (i, split), path in files.items():  # the same predictions as scarce predict's
        made_file = load_predictions(folder / f"{i}-r{i}-{split}-tta2.npz")
        assert (made_file.ids == load_predictions(path).ids).all()
        assert np.array_equal(made_file.probs, load_predictions(path).probs)
    with np.load(out) as a, np.load(hand) as b:
        assert (a["ids"] == b["ids"]).all() and (a["pred"] == b["pred"]).all()
        ours, theirs = json.loads(str(a["metadata"])), json.loads(str(b["metadata"]))
    assert ours["threshold_source"] == "auto" and ours["threshold"] == theirs["threshold"]
    assert len(ours["members"]) == 3


def test_run_options_and_mixed_members_are_checked(runs, tmp_path, capsys):
    r0, r1 = str(runs / "r0"), str(runs / "r1")
    file = tmp_path / "r1.npz"
    assert main(["predict", r1, "--out", str(file)]) == 0
    capsys.readouterr()
    out = str(tmp_path / "e.npz")
    assert main(["ensemble", "--base", str(file), "--members", str(file), "--tta", "2", "--out", out]) == 2
    assert "--tta applies to members given as run directories" in capsys.readouterr().err
    assert main(["ensemble", "--base", r0, "--members", str(file), "--threshold", "auto", "--out", out]) == 2
    assert "needs --val-base/--val-members, or every member given as a run directory" in capsys.readouterr().err
    assert main(["ensemble", "--base", r0, "--members", str(tmp_path), "--out", out]) == 2
    assert f"{tmp_path}: a folder without config.yaml; expected a predictions file (.npz) or a run" in (
        capsys.readouterr().err
    )
    # a run and its own weights file are one model: refused before anything is predicted
    twice = str(tmp_path / "twice.npz")
    assert main(["ensemble", "--base", r0, "--members", r1, f"{r1}/best.safetensors", "--out", twice]) == 2
    assert f"{r1}/best.safetensors is listed twice in --members (the same model as {r1})" in capsys.readouterr().err
    assert not (tmp_path / "twice_members").exists()
    # a run, a weights file of another and a predictions file at the fixed threshold: no val needed
    weights = str(runs / "r2" / "last.safetensors")
    assert main(["ensemble", "--base", r0, "--members", weights, str(file), "--out", out]) == 0
    made = sorted(p.name for p in (tmp_path / "e_members").iterdir())
    assert made == ["0-r0-test-tta1.npz", "1-r2_last-test-tta1.npz"]
    # another dataset's val voted, the threshold chosen on each run's own val: two files, neither overwritten
    other = make_image_folder(tmp_path / "other", per_split={"train": 2, "val": 3}, seed=1)
    # a split the data lacks: the error names the member (one of many) and what to give instead
    no_test = ["ensemble", "--members", r0, r1, "--method", "soft", "--data", str(other), "--out", out]
    assert main(no_test) == 2
    assert f"member {r0}: data '{other}': has no test split (found: train, val); give --split FOLDER" in (
        capsys.readouterr().err
    )
    out = str(tmp_path / "o.npz")
    assert (
        main(
            ["ensemble", "--base", r0, "--members", r1, "--data", str(other), "--split", "val"]
            + ["--threshold", "auto", "--out", out]
        )
        == 0
    )
    made = sorted(p.name for p in (tmp_path / "o_members").iterdir())
    assert made == ["0-r0-other_val-tta1.npz", "0-r0-val-tta1.npz", "1-r1-other_val-tta1.npz", "1-r1-val-tta1.npz"]
    assert len(load_predictions(tmp_path / "o_members" / "0-r0-other_val-tta1.npz").ids) == 9
    assert len(load_predictions(tmp_path / "o_members" / "0-r0-val-tta1.npz").ids) == 18


def test_a_folder_named_val_as_the_split_keeps_the_runs_own_val_file(runs, tmp_path, capsys):
    """``--split /data/holdout/val`` was written to the same file as each run's own val predictions
    (the threshold's), which it then replaced: the held-out check refused the two as one set."""
    r0, r1 = (str(runs / f"r{i}") for i in range(2))
    holdout = make_image_folder(tmp_path / "holdout", per_split={"val": 4}, seed=2) / "val"
    out = tmp_path / "h.npz"
    args = ["ensemble", "--base", r0, "--members", r1, "--split", str(holdout), "--threshold", "auto"]
    assert main([*args, "--out", str(out)]) == 0, capsys.readouterr().err
    made = sorted(p.name for p in (tmp_path / "h_members").iterdir())
    assert len(made) == 4 and sum(name.endswith("-val-tta1.npz") for name in made) == 2, made
    for name in made:  # the runs' own val (6 a class) beside the folder's (4 a class)
        own = name.endswith("-val-tta1.npz")
        assert len(load_predictions(tmp_path / "h_members" / name).ids) == (18 if own else 12)
    assert len(np.load(out, allow_pickle=False)["ids"]) == 12


def test_options_the_vote_refuses_are_refused_before_any_run_is_predicted(runs, tmp_path, capsys):
    r0, r1 = (str(runs / f"r{i}") for i in range(2))
    out = tmp_path / "s.npz"
    assert main(["ensemble", "--members", r0, r1, "--method", "soft", "--threshold", "auto", "--out", str(out)]) == 2
    assert "--threshold applies to --method plurality; a soft vote has none" in capsys.readouterr().err
    assert not (tmp_path / "s_members").exists() and not out.exists()  # nothing predicted first
