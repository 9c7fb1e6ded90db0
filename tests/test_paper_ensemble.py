"""The paper's ensemble recipe, scaled down: trains, predicts, votes, and resumes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from scarce.inference import load_predictions
from scarce.workflows.paper import MEMBERS, main, member_overrides, run_paper_ensemble
from tests.conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_full_scale_members_follow_the_paper():
    assert [m.name for m in MEMBERS] == ["b3", "b3_lsb", "b4", "b5", "b7"]
    sizes = {m.name: (m.model, m.img_size) for m in MEMBERS}
    assert sizes["b3"] == ("efficientnet_b3", 300) and sizes["b7"] == ("efficientnet_b7", 600)
    assert sizes["b4"] == ("efficientnet_b4", 380) and sizes["b5"] == ("efficientnet_b5", 456)
    assert "augment.lsb_swap.enabled=true" in member_overrides(MEMBERS[1], 1, "full")
    assert not any("lsb" in o for o in member_overrides(MEMBERS[0], 0, "full"))


def test_small_scale_trains_predicts_votes_and_resumes(tmp_path, capsys, monkeypatch):
    # members keep their checkpoints here, so that deleting a summary below leaves what a kill
    # between the last epoch and the summary leaves (the checkpoint is dropped after the summary)
    import scarce.engine.trainer

    monkeypatch.setattr(scarce.engine.trainer, "drop_checkpoint", lambda run_dir: None)
    data = make_image_folder(tmp_path / "data", per_split={"train": 8, "val": 3, "test": 4}, size=16)
    out = tmp_path / "paper"
    assert main(["--scale", "small", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ensemble: 10 models, 12 samples, method plurality, threshold 0.7 (given)" in printed
    report = json.loads((out / "ensemble.json").read_text())
    assert report["base"].endswith("b7_test.npz") and len(report["members"]) == 10
    assert {Path(m).name for m in report["members"]} == {f"{m.name}{t}_test.npz" for m in MEMBERS for t in ("", "_tta")}
    recipe = yaml.safe_load((out / "recipes" / "b3_lsb.yaml").read_text())
    assert recipe["augment"]["lsb_swap"]["enabled"] and recipe["loss"]["name"] == "focal_cosine"
    assert recipe["augment"]["randaugment"] == "rand-m9-mstd0.5" and recipe["data"]["img_size"] == 16
    tta = load_predictions(out / "predictions" / "b3_tta_val.npz")
    assert tta.metadata["tta_views"] == 2 and len(tta.ids) == 9
    with np.load(out / "ensemble_test.npz", allow_pickle=False) as z:
        assert z["pred"].shape == (12,)

    # Resume: a trained member is not retrained, a present predictions file is not redone.
    summary_mtime = (out / "members" / "b4" / "summary.json").stat().st_mtime_ns
    kept = out / "predictions" / "b5_test.npz"
    kept_mtime = kept.stat().st_mtime_ns
    (out / "predictions" / "b3_tta_test.npz").unlink()
    (out / "members" / "b7" / "summary.json").unlink()  # killed after its last epoch, before the summary
    logs = []
    run_paper_ensemble(str(data), out, "small", 2, log=logs.append)
    assert (out / "members" / "b4" / "summary.json").stat().st_mtime_ns == summary_mtime
    assert kept.stat().st_mtime_ns == kept_mtime
    assert [line.split("]")[0] for line in logs if line.startswith("[b3_tta")] == ["[b3_tta_test"]
    assert sum("trained already" in line for line in logs) == 4 and "[b7] resuming test_resnet at 16 px" in logs
    assert (out / "members" / "b7" / "summary.json").is_file()
    assert len((out / "members" / "b7" / "metrics.jsonl").read_text().splitlines()) == 1  # no epoch redone
    # another --tta: the TTA files are predicted again (their names do not say the views), the others kept
    logs = []
    report = run_paper_ensemble(str(data), out, "small", 3, log=logs.append)
    assert (
        report["tta_views"] == 3 and load_predictions(out / "predictions" / "b3_tta_val.npz").metadata["tta_views"] == 3
    )
    assert sum("had 2 views, predicting 3" in line for line in logs) == 10 and kept.stat().st_mtime_ns == kept_mtime


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "x")]) == 2  # full scale needs --data
    assert main(["--scale", "small", "--out", str(tmp_path / "x"), "--base", "b9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--data" in err[0] and "--base 'b9'" in err[1]


def _fake_member(out, data, scale):
    """A member run directory as training leaves it (config.yaml), without training it."""
    from scarce.config import save_config
    from scarce.engine.run_dir import absolute_data_paths
    from scarce.workflows.paper import _member_config

    cfg = absolute_data_paths(_member_config(MEMBERS[0], 0, scale, str(data)))
    save_config(cfg, out / "members" / MEMBERS[0].name / "config.yaml")


@pytest.mark.parametrize(
    ("change", "named"),
    [({"data": "other"}, "was made with --data"), ({"scale": "full"}, "was made with --scale small")],
)
def test_rerun_with_other_data_or_scale_is_refused(tmp_path, capsys, change, named):
    first = make_image_folder(tmp_path / "data", per_split={"train": 2, "test": 1}, size=8)
    other = make_image_folder(tmp_path / "other", per_split={"train": 2, "test": 1}, size=8)
    out = tmp_path / "paper"
    _fake_member(out, first, "small")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    data = other if change.get("data") else first
    assert main(["--scale", change.get("scale", "small"), "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and str(out) in err[0], err
    if change.get("data"):
        assert str(other) in err[0] and str(first) in err[0]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing trained or written


def test_cheap_arguments_are_checked_before_any_training(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_split={"train": 2}, size=8)
    out = tmp_path / "paper"
    assert main(["--scale", "small", "--out", str(out), "--threshold", "abc"]) == 2
    assert main(["--scale", "small", "--out", str(out), "--data", str(tmp_path / "missing")]) == 2
    assert main(["--scale", "small", "--out", str(out), "--data", str(data)]) == 2  # no test/ to vote on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--threshold" in err[0] and "missing" in err[1], err
    assert "has no test split" in err[2], err
    assert not out.exists()


def test_script_shows_help():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "paper_ensemble.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--scale" in result.stdout
