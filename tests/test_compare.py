"""``scarce compare``: runs grouped by config (seeds pooled), named by the keys that differ."""

import json

import pytest

from scarce.cli import main
from scarce.config import load_config
from scarce.engine.trainer import train
from tests.conftest import TINY


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two seeds of plain CE, one of label smoothing, and one run killed after its first epoch."""
    root = tmp_path_factory.mktemp("compare")
    arms = {
        "ce-s0": ["seed=0"],
        "ce-s1": ["seed=1", "threads=1"],  # a run-only key: still the same row
        "ls-s0": ["seed=0", "loss.name=label_smoothing"],
    }
    for name, extra in arms.items():
        train(load_config(None, [*TINY, "epochs=1", *extra]), root / "arms" / name, progress=False)
    train(load_config(None, [*TINY, "epochs=2"]), root / "arms" / "stopped", progress=False, stop_after=1)
    return root


def test_rows_pool_seeds_and_name_what_differs(runs, tmp_path, capsys):
    arms = runs / "arms"
    out = tmp_path / "table.json"
    assert main(["compare", str(arms), "--out", str(out)]) == 0  # a folder: every run below it
    printed = capsys.readouterr().out
    rows = {row["config"]: row for row in json.loads(out.read_text())}
    assert set(rows) == {"loss.name=ce", "loss.name=label_smoothing"}
    ce = rows["loss.name=ce"]
    assert ce["n"] == 2 and ce["seeds"] == "0 1"
    tops = [100 * json.loads((arms / r / "summary.json").read_text())["test"]["top1"] for r in ("ce-s0", "ce-s1")]
    mean, std = (sum(tops) / 2, abs(tops[0] - tops[1]) / 2**0.5)
    assert ce["test top-1 %"] == f"{mean:.2f} +- {std:.2f}"
    assert rows["loss.name=label_smoothing"]["n"] == 1 and "+-" not in rows["loss.name=label_smoothing"]["test top-1 %"]
    assert f"| loss.name=ce | 2 | 0 1 | {mean:.2f} +- {std:.2f} |" in printed
    assert f"left out, not finished (no summary.json): {arms / 'stopped'}" in printed
    assert main(["compare", str(arms / "ce-s0"), str(arms / "ce-s1"), "--out", str(tmp_path / "t.csv")]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("config,n,seeds,test top-1 %") and lines[1].startswith("(all alike),2,0 1,")


def test_bad_arguments_are_one_line(runs, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: not a run directory nor a folder of runs" in capsys.readouterr().err
    assert main(["compare", str(runs / "arms" / "stopped")]) == 2
    assert "none of the 1 runs has finished (no summary.json)" in capsys.readouterr().err
    assert main(["compare", str(runs / "arms"), "--out", str(tmp_path / "t.png")]) == 2
    assert "t.png: expected a file name ending in .md, .csv or .json" in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists()


def test_older_configs_and_weight_choice(runs, tmp_path, capsys):
    """A key an older run's config.yaml lacks reads as its default (same row); checkpoint.select
    decides which weights were scored (another row); a run without val shows no val top-1."""
    import shutil

    import yaml

    arms = tmp_path / "arms"
    for name in ("ce-s0", "ce-s1"):
        shutil.copytree(runs / "arms" / name, arms / name)
    old = yaml.safe_load((arms / "ce-s1" / "config.yaml").read_text())
    del old["data"]["bit_depth"]  # written before the key existed
    (arms / "ce-s1" / "config.yaml").write_text(yaml.safe_dump(old))
    shutil.copytree(runs / "arms" / "ce-s0", arms / "last")
    chosen = yaml.safe_load((arms / "last" / "config.yaml").read_text())
    chosen["checkpoint"]["select"] = "last"
    (arms / "last" / "config.yaml").write_text(yaml.safe_dump(chosen))
    summary = json.loads((arms / "last" / "summary.json").read_text())
    (arms / "last" / "summary.json").write_text(json.dumps({**summary, "best": {"top1": -1.0, "epoch": -1}}))
    assert main(["compare", str(arms), "--out", str(tmp_path / "t.json")]) == 0
    rows = {row["config"]: row for row in json.loads((tmp_path / "t.json").read_text())}
    assert {label: row["n"] for label, row in rows.items()} == {
        "checkpoint.select=auto": 2,
        "checkpoint.select=last": 1,
    }
    assert rows["checkpoint.select=last"]["val top-1 %"] == "-"


def test_runs_on_another_number_of_processes_are_another_row(runs, tmp_path, capsys):
    """batch_size is per process: a torchrun run on 2 processes trained another setting (its
    environment.json says so); a run from before environment.json counts as 1 process."""
    import shutil

    arms = tmp_path / "arms"
    for name in ("ce-s0", "ce-s1"):
        shutil.copytree(runs / "arms" / name, arms / name)
    env = json.loads((arms / "ce-s1" / "environment.json").read_text())
    (arms / "ce-s1" / "environment.json").write_text(json.dumps({**env, "world_size": 2}))
    shutil.copytree(runs / "arms" / "ce-s1", arms / "older")
    (arms / "older" / "environment.json").unlink()
    assert main(["compare", str(arms), "--out", str(tmp_path / "t.json")]) == 0
    rows = {row["config"]: (row["n"], row["seeds"]) for row in json.loads((tmp_path / "t.json").read_text())}
    assert rows == {"processes=1": (2, "0 1"), "processes=2": (1, "1")}
    (arms / "older" / "environment.json").write_text("{not json")
    assert main(["compare", str(arms)]) == 2
    assert "environment.json: not valid JSON" in capsys.readouterr().err


def test_skipping_bad_images_is_another_row_only_where_it_left_images_out(runs, tmp_path):
    """data.skip_bad_images over clean data trains on the same images as without it: same row;
    a run that did leave images out (bad_images.json not empty) is another row."""
    import shutil

    arms = tmp_path / "arms"
    shutil.copytree(runs / "arms" / "ce-s0", arms / "ce-s0")
    train(load_config(None, [*TINY, "epochs=1", "seed=1", "data.skip_bad_images=true"]), arms / "skip", progress=False)
    assert json.loads((arms / "skip" / "bad_images.json").read_text()) == []
    shutil.copytree(arms / "skip", arms / "skipped")
    left_out = [{"split": "train", "path": "x.png", "reason": "cannot identify image file"}]
    (arms / "skipped" / "bad_images.json").write_text(json.dumps(left_out))
    assert main(["compare", str(arms), "--out", str(tmp_path / "t.json")]) == 0
    rows = {row["config"]: (row["n"], row["seeds"]) for row in json.loads((tmp_path / "t.json").read_text())}
    assert rows == {"data.skip_bad_images=false": (2, "0 1"), "data.skip_bad_images=true": (1, "1")}


def test_split_seeds_are_shown_and_resumed_runs_marked(tmp_path, capsys):
    """A row pools runs of other samples too (data.split_seed): the seeds column says which, where
    the split seed chooses images (here val taken from a train folder; not the demo's val/ folder);
    a run resumed with other settings is grouped by its new values, and marked with what changed."""
    from tests.conftest import make_image_folder

    data = make_image_folder(tmp_path / "F", per_split={"train": 8})  # no val/: val comes from train
    root = tmp_path / "arms"
    folder = [*TINY, f"data.name={data}"]
    train(load_config(None, [*folder, "epochs=1", "data.split_seed=1"]), root / "split1", progress=False)
    train(load_config(None, [*folder, "epochs=1", "checkpoint.keep_at_end=true"]), root / "resumed", progress=False)
    # threads: how it ran, not what it trained (no mark for it)
    assert main(["train", "--resume", str(root / "resumed"), "epochs=2", "threads=1", "--no-progress"]) == 0
    train(load_config(None, [*folder, "epochs=2", "seed=1"]), root / "straight", progress=False)
    train(load_config(None, [*TINY, "epochs=1", "seed=2", "data.split_seed=1"]), root / "demo", progress=False)
    capsys.readouterr()
    runs = [str(root / name) for name in ("split1", "resumed", "straight", "demo")]
    assert main(["compare", *runs, "--out", str(tmp_path / "t.md")]) == 0
    printed = (tmp_path / "t.md").read_text()
    assert f"| data.name={data}, epochs=2 | 2 | 0/0* 1/0 |" in printed
    assert f"| data.name={data}, epochs=1 | 1 | 0/1 |" in printed
    assert "| data.name=demo, epochs=1 | 1 | 2 |" in printed  # the same images under any split seed
    assert "seeds: seed/data.split_seed" in printed
    assert f"* {root / 'resumed'}: resumed with another epochs (resumes.jsonl)" in printed
    # the CSV names what the marked run was resumed with, in a column of its own
    assert main(["compare", *runs, "--out", str(tmp_path / "t.csv")]) == 0
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].endswith(",changed on resume")
    assert any(line.endswith(f"{root / 'resumed'}: epochs") for line in lines)
