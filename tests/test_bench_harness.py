"""The small-data benchmark harness on a generated image folder: table, resume-skip, splits."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY, make_image_folder

from scarce.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_split  # noqa: E402
import small_data  # noqa: E402


def harness_argv(tmp_path: Path, configs: list[str], *overrides: str) -> list[str]:
    """small_data.py on a generated image folder, seed 0, the demo recipe, TINY + ``overrides``."""
    data = make_image_folder(tmp_path / "data")
    return [
        *("--data", str(data), "--configs", *configs, "--seeds", "0", "--recipe", "demo"),
        *("--work", str(tmp_path / "work"), "--results", str(tmp_path / "res"), "--name", "t"),
        *("--threads", "1", "--set", *TINY, *overrides),
    ]


def test_matrix_runs_tables_and_resumes(tmp_path, capsys):
    argv = harness_argv(tmp_path, ["ce", "ce_ra"])
    threads = torch.get_num_threads()
    try:  # the harness sets 1 thread per cell (shared CPU); give the suite its default back
        out = small_data.main(argv)
    finally:
        torch.set_num_threads(threads)
    rows = {r["config"]: r for r in out["rows"]}
    assert set(rows) == {"ce", "ce_ra"} and all(r["n"] == 1 for r in rows.values())
    for cell in out["cells"]:
        run = Path(cell.run_dir)
        assert run.parent.parent.name == "data" and run.name == "seed0"
        record = json.loads((run / "cell.json").read_text())
        assert record["wall_seconds"] > 0 and record["machine"]["cpus"] >= 1
        epochs = [json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert record["epoch_seconds"] == pytest.approx(sum(epochs), abs=0.06) and record["epoch_seconds"] > 0
        summary = json.loads((run / "summary.json").read_text())
        assert rows[cell.config]["test_top1_mean"] == pytest.approx(summary["test"]["top1"])
    table = (tmp_path / "res" / "t.md").read_text()
    assert "| data | ce | 1 |" in table and "| data | ce_ra | 1 |" in table
    assert (tmp_path / "res" / "t.png").stat().st_size > 0
    saved = json.loads((tmp_path / "res" / "t.json").read_text())
    assert saved["cells_planned"] == 2 and [r["config"] for r in saved["rows"]] == ["ce", "ce_ra"]

    # a rerun trains nothing: finished cells are skipped, summaries untouched
    stamps = {c.run_dir: (Path(c.run_dir) / "summary.json").stat().st_mtime_ns for c in out["cells"]}
    capsys.readouterr()
    try:
        small_data.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert "2 of 2 cells finished already; running 0" in capsys.readouterr().out
    assert stamps == {c.run_dir: (Path(c.run_dir) / "summary.json").stat().st_mtime_ns for c in out["cells"]}


def test_a_resumed_cells_time_counts_every_part_and_not_its_last_wall_clock(tmp_path):
    import bench_report

    run = tmp_path / "c" / "seed0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"best": {"top1": 0.5, "epoch": 2}, "test": {"top1": 0.4}}))
    lines = [{"epoch": 0, "seconds": 2.0}, {"epoch": 1, "seconds": 9.0}, {"epoch": 1, "seconds": 3.0}]
    lines.append({"epoch": 2, "seconds": 4.0, "val_top1": 0.5})  # epoch 1 ran again after the kill: its last counts
    (run / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    (run / "cell.json").write_text(json.dumps({"wall_seconds": 5.0, "resumed": True}))
    metrics = bench_report.cell_metrics(run)
    assert metrics["epoch_seconds"] == 9.0 and metrics["wall_seconds"] is None
    (run / "cell.json").write_text(json.dumps({"wall_seconds": 11.0, "resumed": False}))
    assert bench_report.cell_metrics(run)["wall_seconds"] == 11.0


def test_report_only_counts_unfinished_cells(tmp_path):
    data = make_image_folder(tmp_path / "data")
    out = small_data.main(
        [
            "--data",
            str(data),
            "--configs",
            "ce",
            "--seeds",
            "0",
            "1",
            "--report-only",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(tmp_path / "res"),
            "--name",
            "r",
        ]
    )
    assert [r["n"] for r in out["rows"]] == [0]
    assert "| data | ce | 0 | - |" in (tmp_path / "res" / "r.md").read_text()


def test_flat_folder_gets_a_seeded_stratified_split(tmp_path):
    flat = make_image_folder(tmp_path / "src", per_split={"all": 10}) / "all"
    first = Path(bench_split.prepare_folder(flat, 3, seed=1, splits_dir=tmp_path / "splits"))
    record = json.loads((first / "split.json").read_text())
    assert record["counts"] == {"train": 9, "val": 9, "test": 12} and record["seed"] == 1
    files = {s: sorted(p.name for p in (first / s).rglob("*.png")) for s in ("train", "val", "test")}
    assert all(len(files[s]) == n for s, n in record["counts"].items())
    names = {s: {str(p.relative_to(first / s)) for p in (first / s).rglob("*.png")} for s in files}
    assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
    # same seed -> same split (reused); another seed -> another split
    again = bench_split.prepare_folder(flat, 3, seed=1, splits_dir=tmp_path / "splits2")
    other = bench_split.prepare_folder(flat, 3, seed=2, splits_dir=tmp_path / "splits2")
    as_set = lambda root: {str(p.relative_to(root)) for p in (Path(root) / "train").rglob("*.png")}  # noqa: E731
    assert as_set(again) == as_set(first) and as_set(other) != as_set(first)


def test_split_too_small_names_the_class(tmp_path):
    flat = make_image_folder(tmp_path / "src", per_split={"all": 4}) / "all"
    with pytest.raises(UserError, match="class 'cat' has 4 images"):
        bench_split.prepare_folder(flat, 2, seed=0, splits_dir=tmp_path / "splits")


def test_unknown_config_is_a_user_error():
    from scarce.errors import UserError

    with pytest.raises(UserError, match="benchmark config 'nope': unknown"):
        small_data.plan(["nope"], ["fashion-mnist"], [50], [0], None, Path("w"), [])


def test_ensemble_member_keeps_the_images_and_changes_the_training_seed(tmp_path):
    base, member = small_data.plan(["tuned", "tuned@m2"], ["fashion-mnist"], [None], [1], 100, tmp_path, [])
    assert member.name == "fashion-mnist-k50/tuned@m2/seed1"
    assert "data.split_seed=1" in member.overrides and member.overrides[-1] == "seed=2001"
    assert [o for o in base.overrides if o.startswith("seed=")] == ["seed=1"]
    from scarce.config import load_config

    recipe = str(small_data.HERE / "recipes" / "fashion-mnist-50-base.yaml")
    assert load_config(recipe, list(member.overrides)).seed == 2001  # the last seed= wins
    from scarce.errors import UserError

    with pytest.raises(UserError, match="member number"):
        small_data.plan(["tuned@mx"], ["fashion-mnist"], [None], [0], 1, tmp_path, [])


def test_ensemble_benchmark_votes_on_exact_values(tmp_path):
    import numpy as np
    import small_data_ensemble

    from scarce.inference.predictions import Predictions

    def preds(rows: list[list[float]], targets: list[int]) -> Predictions:
        ids = np.array([f"i{k}" for k in range(len(rows))])
        return Predictions(np.array(rows, np.float32), ids, np.array(["a", "b"]), np.array(targets))

    y = [0, 0, 1, 1]
    base = preds([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8]], y)  # right on 0 and 3
    m1 = preds([[0.8, 0.2], [0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], y)  # right on 0, 1, 2
    m2 = preds([[0.7, 0.3], [0.8, 0.2], [0.1, 0.9], [0.4, 0.6]], y)  # right on all
    out = small_data_ensemble.vote([base, m1, m2], [base, m1, m2])
    assert out["base"] == 0.5 and out["members (each)"] == pytest.approx((0.5 + 0.75 + 1.0) / 3)
    assert out["plurality 0.7"] == 1.0  # the base is unsure on 1-3: the plurality answers there
    assert out["soft vote"] == 1.0 and out["oracle"] == 1.0
    assert small_data_ensemble.member_dirs(tmp_path, "t", 2, "c", 3, None) == [
        tmp_path / "t" / "c" / "seed2",
        tmp_path / "t" / "c@m1" / "seed2",
        tmp_path / "t" / "c@m2" / "seed2",
    ]
    with pytest.raises(ValueError, match="different images"):
        small_data_ensemble.vote([base, preds([[0.5, 0.5]] * 3, [0, 0, 1])], [base, m1])


def test_ensemble_benchmark_scores_each_rule_on_the_held_out_images(tmp_path, monkeypatch):
    import numpy as np
    import small_data_ensemble
    from small_data_ensemble import cache_path
    from small_data_holdout import HOLDOUT_KEY

    from scarce.inference.predict import write_predictions
    from scarce.inference.predictions import Predictions

    val_y, held_y = np.array([0, 1]), np.array([0, 0, 1, 1])
    held = {  # base right on 0 and 3 only (unsure on 1-2); m1 right on all; m2 on 0, 2, 3
        "a": [[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8]],
        "b": [[0.8, 0.2], [0.9, 0.1], [0.3, 0.7], [0.1, 0.9]],
        "c": [[0.7, 0.3], [0.45, 0.55], [0.1, 0.9], [0.4, 0.6]],
    }
    runs = []
    for name, rows in held.items():
        run = tmp_path / name / "seed0"
        val = Predictions(
            np.array([[0.9, 0.1], [0.1, 0.9]], np.float32), np.array(["v0", "v1"]), np.array(["a", "b"]), val_y
        )
        cache = cache_path(run, "last", "val", 1)
        cache.parent.mkdir(parents=True)
        write_predictions(val, cache)
        np.savez(cache.parent / f"{HOLDOUT_KEY}.npz", probs=np.array(rows, np.float32))
        runs.append(run)
    monkeypatch.setattr(small_data_ensemble, "run_data", lambda run: None)  # every prediction is cached
    images = np.zeros((4, 8, 8), np.uint8)  # unread: the predictions are cached
    out = small_data_ensemble.holdout_rows({0: runs}, "last", (images, held_y, HOLDOUT_KEY))
    assert out["base"] == [0.5] and out["members (each)"] == [pytest.approx((0.5 + 1.0 + 0.75) / 3)]
    assert out["soft vote"] == [1.0] and out["oracle"] == [1.0]
    # images 1-2: the base is unsure (0.6 < 0.7) and the plurality answers: wrong on 1 (a, c), right on 2 (b, c)
    assert out["plurality 0.7"] == [0.75]
    table = small_data_ensemble.report(
        {"k": {1: {r: [0.5] for r in small_data_ensemble.RULES}, "holdout": out}}, [1], [0]
    )
    assert "held-out top-1 % (1 view)" in table.splitlines()[0] and "| k | soft vote | 50.00 | 100.00 |" in table


def test_ensemble_benchmark_compares_several_mixed_ensembles_in_one_table(tmp_path):
    import small_data_ensemble

    for cell in ("c", "c@m1", "x", "y"):
        (tmp_path / "t" / cell / "seed0").mkdir(parents=True)
        (tmp_path / "t" / cell / "seed0" / "summary.json").write_text("{}")
    argv = ["--work", str(tmp_path), "--tag", "t", "--config", "c", "--members", "2"]
    kinds = small_data_ensemble.ensemble_kinds(
        small_data_ensemble.parse_args([*argv, "--mixed", "c", "x", "--mixed", "c", "x", "y"])
    )
    assert list(kinds) == ["c x 2", "mixed: c + x", "mixed: c + x + y"]
    assert kinds["mixed: c + x + y"][0] == [tmp_path / "t" / n / "seed0" for n in ("c", "x", "y")]
    with pytest.raises(SystemExit, match=r"unfinished cells: .*z/seed0"):
        small_data_ensemble.ensemble_kinds(small_data_ensemble.parse_args([*argv, "--mixed", "c", "z"]))
    rules = {r: [0.5] for r in small_data_ensemble.RULES}
    results = {k: {1: {**rules, "soft vote": [0.1 * (i + 1)]}} for i, k in enumerate(kinds)}
    lines = small_data_ensemble.headlines(results, [1])
    assert [lines[f"{p}ensemble_soft_top1"] for p in ("", "mixed_", "mixed2_")] == ["0.1000", "0.2000", "0.3000"]
    assert "mixed_goal_met" not in lines and "mixed_ensemble_soft_tta_top1" not in lines  # 1 view: no goal line
    # with 2-view TTA the goal is read from the TTA soft vote (the pre-registered figure), not 1 view
    for i, k in enumerate(kinds):
        results[k][2] = {**rules, "base": [0.845], "soft vote": [0.854 + 0.001 * i]}
    lines = small_data_ensemble.headlines(results, [1, 2])
    assert lines["mixed_ensemble_soft_top1"] == "0.2000" and lines["mixed_ensemble_soft_tta_top1"] == "0.8550"
    assert lines["single_tta_top1"] == "0.8450" and lines["mixed_goal_met"].startswith("yes ")
    results["mixed: c + x"][2]["soft vote"] = [0.8549]
    assert small_data_ensemble.headlines(results, [1, 2])["mixed_goal_met"].startswith("no ")


def test_holdout_split_avoids_every_excluded_seeds_train_and_val():
    import numpy as np
    import small_data_holdout

    from scarce.data.fashion_mnist import sample_per_class

    labels = np.repeat(np.arange(3), 40)
    held = small_data_holdout.holdout_indices(labels, per_class=5, k=4, exclude_seeds=[0, 1])
    assert np.bincount(labels[held]).tolist() == [5, 5, 5] and len(set(held)) == 15
    for seed in (0, 1):
        train, val = sample_per_class(labels, [4, 4], seed)
        assert not set(held) & (set(train) | set(val))
    assert (held == small_data_holdout.holdout_indices(labels, 5, 4, [0, 1])).all()  # drawn once, fixed


def test_convergence_compares_the_last_window_with_the_one_before(tmp_path):
    import convergence

    cell = tmp_path / "fashion-mnist-k50" / "cfg" / "seed0"
    cell.mkdir(parents=True)
    # 10 epochs, window 0.2: epochs 6-7 are the window before, 8-9 the last one.
    rows = [{"epoch": e, "train_loss": 1.0 - 0.1 * e, "val_top1": 0.5 + 0.01 * e} for e in range(10)]
    (cell / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    (cell / "summary.json").write_text(json.dumps({"best": {"top1": 0.59, "epoch": 9}, "test": {"top1": 0.6}}))
    found = convergence.cell_convergence(cell, 0.2)
    assert found["epochs"] == 10
    assert found["val_rise_points"] == pytest.approx(100 * (0.585 - 0.565))
    assert found["train_loss_drop"] == pytest.approx((0.35 - 0.15) / 0.35)
    longer = tmp_path / "long" / "fashion-mnist-k50" / "cfg" / "seed0"
    longer.mkdir(parents=True)
    (longer / "metrics.jsonl").write_text((cell / "metrics.jsonl").read_text(), encoding="utf-8")
    (longer / "summary.json").write_text(json.dumps({"best": {"top1": 0.6, "epoch": 9}, "test": {"top1": 0.625}}))
    row = convergence.config_row(tmp_path, "fashion-mnist-k50", "cfg", [0, 1], 0.2, tmp_path / "long")
    assert row["n"] == 1 and row["longer_gain_points_mean"] == pytest.approx(2.5)


def test_paired_variants_differ_by_seed_and_by_setting(tmp_path):
    import paired

    def fake_cell(work, config, seed, top1, seconds, img_size):
        cell = tmp_path / work / "fashion-mnist-k50" / config / f"seed{seed}"
        cell.mkdir(parents=True)
        rows = [{"epoch": e, "seconds": s} for e, s in enumerate(seconds)]
        (cell / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
        (cell / "summary.json").write_text(json.dumps({"best": {"top1": 0.5, "epoch": 1}, "test": {"top1": top1}}))
        (cell / "config.yaml").write_text(f"seed: {seed}\ndata:\n  img_size: {img_size}\n  split_seed: {seed}\n")

    for seed, (a, b) in enumerate([(0.80, 0.82), (0.81, 0.80), (0.79, 0.83)]):
        fake_cell("ref", "cfg", seed, a, [3.0, 3.0, 9.0], 32)
        fake_cell("up", "cfg", seed, b, [6.0, 7.0, 8.0], 64)
    data = paired.main(
        ["--config", "cfg", "--variant", f"ref={tmp_path / 'ref'}", "--variant", f"up={tmp_path / 'up'}"]
        + ["--results", str(tmp_path / "results"), "--name", "t"]
    )
    ref, up = data["rows"]
    assert up["paired_gain_mean"] == pytest.approx((2.0 - 1.0 + 4.0) / 3)
    assert up["paired_gain_std"] == pytest.approx((19 / 3) ** 0.5)  # sample std of 2, -1, 4
    assert (up["paired_wins"], up["paired_n"]) == (2, 3)
    assert ref["epoch_seconds"] == 3.0 and up["epoch_seconds"] == 7.0  # medians: a slow epoch does not count
    assert up["differs_by"] == ["data.img_size=64"]  # seeds are not a difference
    assert data["headlines"] == {"best_variant": "up", "best_paired_gain_points": "+1.67"}
    swapped = paired.main(  # "up" as the reference: the other variant is lower, and not called best
        ["--config", "cfg", "--variant", f"up={tmp_path / 'up'}", "--variant", f"ref={tmp_path / 'ref'}"]
        + ["--results", str(tmp_path / "results"), "--name", "t"]
    )
    assert swapped["headlines"] == {
        "best_variant": "up (the reference: no variant higher)",
        "best_paired_gain_points": "-1.67",
    }


def test_select_weights_scores_best_last_and_ema_of_each_cell(tmp_path):
    import select_weights

    argv = harness_argv(tmp_path, ["ce"], "epochs=3", "checkpoint.select=best", "ema.enabled=true")
    threads = torch.get_num_threads()
    try:
        small_data.main(argv)
        out = select_weights.main(
            ["--work", str(tmp_path / "work"), "--tag", "data", "--results", str(tmp_path / "res"), "--name", "s"]
        )
    finally:
        torch.set_num_threads(threads)
    (row,) = out["rows"]
    run = tmp_path / "work" / "data" / "ce" / "seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert row["best_test"] == pytest.approx(summary["test"]["top1"])  # the run's own test score of best
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["cell"] == "ce/seed0" and row["best_epoch"] == summary["best"]["epoch"] and last["epoch"] == 2
    from scarce.engine.evaluation import evaluate_run

    last_scored = evaluate_run(run / "last.safetensors", None, "test", tmp_path / "e.json", num_workers=0)
    assert row["last_test"] == pytest.approx(last_scored["top1"])
    ema_scored = evaluate_run(run / "last_ema.safetensors", None, "test", tmp_path / "m.json", num_workers=0)
    assert row["last_ema_test"] == pytest.approx(ema_scored["top1"])
    table = (tmp_path / "res" / "s.md").read_text()
    assert "last - best over the 1 cells of --work" in table and "test % last EMA" in table
    wall = json.loads((run / "cell.json").read_text())["wall_seconds"]
    assert row["wall_seconds"] == wall and f"| {wall:.0f} (n=1) |" in table  # the cell's training time
    # a reference config trained in an earlier session joins the tables from its results file
    prior = {**row, "cell": "ref/seed0", "best_test": row["best_test"] - 0.25, "last_test": row["last_test"] - 0.125}
    prior.pop("last_ema_test")
    prior.pop("wall_seconds")  # results files from before session 19 have none
    old = {"rows": [prior, {**prior, "cell": "ce/seed0"}], "tag": "data"}
    (tmp_path / "res" / "old.json").write_text(json.dumps(old))
    (tmp_path / "res" / "k10.json").write_text(json.dumps({**old, "tag": "fashion-mnist-k10"}))
    argv = ["--work", str(tmp_path / "work"), "--tag", "data", "--results", str(tmp_path / "res"), "--name", "s2"]
    with pytest.raises(SystemExit, match="k10.json: cells of fashion-mnist-k10, not --tag data"):
        select_weights.main([*argv, "--prior", str(tmp_path / "res" / "k10.json")])
    out = select_weights.main([*argv, "--prior", str(tmp_path / "res" / "old.json"), "--reference", "ref"])
    assert [r["cell"] for r in out["rows"]] == ["ref/seed0", "ce/seed0"]  # ce's own cell, not the old one
    assert out["rows"][0]["from"] == "old" and "from" not in out["rows"][1]
    table = (tmp_path / "res" / "s2.md").read_text()
    assert "ref: cells of old.json" in table
    ref_line = next(line for line in table.splitlines() if line.startswith("| ref |"))
    assert ref_line.endswith("| - |")  # no wall seconds recorded for the old cells
    kept = row["best_test"] if select_weights.clear_peak(row) else row["last_test"]
    kept_ref = prior["best_test"] if select_weights.clear_peak(prior) else prior["last_test"]
    assert f"| {100 * (kept - kept_ref):+.2f} (" in table  # ce paired with ref on seed 0
    assert out["tag"] == "data" and "over the 1 cells of --work" in table  # headlines: this run's cells


def test_kept_cells_restore_as_cells_that_score_without_weights(tmp_path):
    import shutil

    import keep_cells
    import numpy as np
    import select_weights
    from small_data_ensemble import cache_path

    argv = harness_argv(tmp_path, ["ce"], "epochs=2", "checkpoint.select=best", "ema.enabled=true")
    threads = torch.get_num_threads()
    try:
        small_data.main(argv)
        common = ["--tag", "data", "--kept", str(tmp_path / "kept"), "--results", str(tmp_path / "res")]
        kept = keep_cells.main(["keep", "--work", str(tmp_path / "work"), "--name", "s", "--tta", *common])
        assert (tmp_path / "res" / "kept_s_data.md").is_file()  # per tag: another tag's keep leaves it
        keep_cells.main(["restore", "--work", str(tmp_path / "again"), "--name", "s", *common])
        for work in ("again", "work"):  # restored, or with its weights but kept under "s": kept already
            with pytest.raises(SystemExit, match="no finished cell with weights that is not kept already"):
                keep_cells.main(["keep", "--work", str(tmp_path / work), "--name", "s2", *common])
        with pytest.raises(SystemExit, match="no finished cell with weights that is not kept already"):
            keep_cells.main(["keep", "--work", str(tmp_path / "work"), "--name", "s", *common])  # kept as it is
        summary = tmp_path / "work" / "data" / "ce" / "seed0" / "summary.json"
        summary.write_text(summary.read_text().replace("{", '{"retrained": 1, ', 1))  # another training of it
        assert keep_cells.main(["keep", "--work", str(tmp_path / "work"), "--name", "s", *common])["rows"]
        # a cell of the same config and seed in another work dir (another setting) is a cell of its own
        shutil.copytree(tmp_path / "work", tmp_path / "other")
        other = tmp_path / "other" / "data" / "ce" / "seed0" / "summary.json"
        other.write_text(other.read_text().replace(str(tmp_path / "work"), str(tmp_path / "other")))
        assert keep_cells.main(["keep", "--work", str(tmp_path / "other"), "--name", "s3", *common])["rows"]
        scores = {
            w: select_weights.main(
                ["--work", str(tmp_path / w), "--tag", "data", "--results", str(tmp_path / w), "--name", "s"]
            )
            for w in ("work", "again")
        }
    finally:
        torch.set_num_threads(threads)
    cell, restored = tmp_path / "work" / "data" / "ce" / "seed0", tmp_path / "again" / "data" / "ce" / "seed0"
    assert not list(restored.rglob("*.safetensors")) and kept["rows"][0]["cell"] == "ce/seed0"
    assert (restored / "metrics.jsonl").read_bytes() == (cell / "metrics.jsonl").read_bytes()
    assert (restored / "config.yaml").read_text() == (cell / "config.yaml").read_text()
    for weights, split, views in [
        ("last", "val", 1),
        ("last", "test", 2),
        ("best", "test", 1),
        ("last_ema", "test", 1),
    ]:
        # best.safetensors holding the final weights has no cache of its own: theirs stands for it
        source = (keep_cells.best_is_final(cell) if weights == "best" else None) or weights
        a, b = np.load(cache_path(cell, source, split, views)), np.load(cache_path(restored, weights, split, views))
        assert a["ids"].tolist() == b["ids"].tolist() and a["targets"].tolist() == b["targets"].tolist()
        np.testing.assert_allclose(b["probs"], a["probs"], atol=1e-3)  # float16 kept
        np.testing.assert_allclose(b["probs"].sum(1), 1.0, atol=1e-6)
    (original,), (again,) = (scores[w]["rows"] for w in ("work", "again"))
    assert again == original  # the same top-1 of best, last and EMA weights, from the kept predictions


def test_kept_cells_keep_an_earlier_best_epoch_and_held_out_images(tmp_path):
    import keep_cells
    import numpy as np
    from PIL import Image
    from small_data_ensemble import cache_path
    from small_data_holdout import HOLDOUT_KEY

    # val top-1 cannot rise at this lr, so the kept (best) epoch is the first, not the final one
    overrides = ["epochs=2", "checkpoint.select=best", "optim.lr=1e-7", "sched.name=constant", "ema.enabled=false"]
    argv = harness_argv(tmp_path, ["ce"], *overrides)
    threads = torch.get_num_threads()
    try:
        small_data.main(argv)
        cell = tmp_path / "work" / "data" / "ce" / "seed0"
        assert keep_cells.best_is_final(cell) is None
        images = sorted((tmp_path / "data" / "test").rglob("*.png"))
        holdout = (np.stack([np.asarray(Image.open(f)) for f in images]), np.zeros(len(images), int), HOLDOUT_KEY)
        keep_cells.keep_cell(cell, tmp_path / "kept" / "ce" / "seed0", holdout)
    finally:
        torch.set_num_threads(threads)
    with np.load(tmp_path / "kept" / "ce" / "seed0" / "predictions.npz") as z:
        assert "best_is" not in z.files and {"best/val/1", "best/test/1", "best/holdout/1"} <= set(z.files)
    restored = tmp_path / "again" / "ce" / "seed0"
    keep_cells.restore_cell(tmp_path / "kept" / "ce" / "seed0", restored)
    for weights in ("best", "last"):
        a, b = (np.load(cache_path(c, weights, "test", 1)) for c in (cell, restored))
        np.testing.assert_allclose(b["probs"], a["probs"], atol=1e-3)
        folder = "predictions" if weights == "best" else "predictions_last"
        a, b = (np.load(c / folder / f"{HOLDOUT_KEY}.npz")["probs"] for c in (cell, restored))
        np.testing.assert_allclose(b, a, atol=1e-3)
    with pytest.raises(SystemExit, match="a cell is already there"):
        keep_cells.restore_cell(tmp_path / "kept" / "ce" / "seed0", restored)
    with pytest.raises(SystemExit, match="no kept cell"):
        keep_cells.main(["restore", "--work", str(tmp_path / "w"), "--name", "typo", "--kept", str(tmp_path / "kept")])


def run_queue_worker(tmp_path: Path, trainer: str, lines: str, check: bool = True, **env: str):
    """A queue worker over ``lines``, its cells run by a stand-in python whose bash body is
    ``trainer``, with only ``env`` (and PATH, PY, WORK64) set -> (the finished process, the queue file)."""
    import subprocess

    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/usr/bin/env bash\n{trainer}\n")
    fake_python.chmod(0o755)
    queue = tmp_path / "q.txt"
    queue.write_text(lines)
    env = {"PATH": "/usr/bin:/bin", "PY": str(fake_python), "WORK64": str(tmp_path / "w"), **env}
    repo = Path(__file__).resolve().parents[1]
    cmd = ["bash", str(repo / "benchmarks" / "queue_worker.sh"), str(repo), str(queue)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=check), queue


def test_queue_worker_logs_failed_cells_as_failed(tmp_path):
    """A cell whose trainer exits non-zero is logged FAILED with its status (it was logged exit 0)."""
    # the stand-in trainer fails for config "bad" and succeeds for any other
    fails_bad = '[[ " $* " == *" --configs bad "* ]] && exit 3\nexit 0'
    done, queue = run_queue_worker(tmp_path, fails_bad, "good 0\nbad 1\ngood 2 10\n")
    out = done.stdout
    events = [line.split(" ", 1)[1] for line in out.splitlines()]
    assert events == [
        "start good 0",
        "done good 0",
        "start bad 1",
        "FAILED bad 1 (exit 3)",
        "start good 2 10",
        "done good 2 10",
    ]
    assert queue.read_text() == ""  # every line taken


def test_queue_worker_runs_each_kind_of_line(tmp_path):
    """A queue line picks its cell: CONFIG SEED (300 epochs), + K (auto budget at 64 px), + K 32 (the
    bare loop's 32 px frame, in its own work dir), and bare_loop K EPOCHS SEED."""
    lines = "a 0\nb 1 10\nc 2 10 32\nbare_loop 100 300 1\n"
    run_queue_worker(tmp_path, f'echo "$*" >> {tmp_path / "calls.txt"}', lines)
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    assert len(calls) == 4, calls
    assert "--configs a --seeds 0 --epochs 300" in calls[0] and f"--work {tmp_path / 'w'}" in calls[0]
    assert "--configs b --seeds 1 --k 10" in calls[1] and "data.img_size=64 augment.pad=4 --name up64_k10" in calls[1]
    assert calls[1].endswith(f"--work {tmp_path / 'w'}")
    assert "--configs c --seeds 2 --k 10" in calls[2]
    assert "data.img_size=32 data.small_images=pad augment.pad=2 --name up32_k10" in calls[2]
    assert calls[2].endswith(f"--work {tmp_path / 'w'}_px32")
    assert calls[3] == "benchmarks/bare_loop.py --per-class 100 --epochs 300 --seeds 1 --threads 1"


def test_queue_worker_pins_its_cells_to_lane_cpu(tmp_path):
    """LANE_CPU=N runs every cell of the lane on CPU N (two unpinned lanes were seen sharing one CPU)."""
    cpu = sorted(os.sched_getaffinity(0))[-1]  # one this test may use
    # the stand-in trainer records the CPUs it may run on
    trainer = f"taskset -pc $$ >> {tmp_path / 'cpus.txt'}"
    run_queue_worker(tmp_path, trainer, "a 0\nb 1\n", LANE_CPU=str(cpu))
    lines = (tmp_path / "cpus.txt").read_text().splitlines()
    assert len(lines) == 2 and all(line.endswith(f"affinity list: {cpu}") for line in lines), lines
    # no such CPU: the lane refuses to start rather than run unpinned
    refused, queue = run_queue_worker(tmp_path, trainer, "a 0\n", check=False, LANE_CPU="999")
    assert refused.returncode == 2
    assert queue.read_text() == "a 0\n"
