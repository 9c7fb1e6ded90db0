"""Predictions files, their alignment, and the ensemble command end to end."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from scarce.errors import UserError
from scarce.inference import align_predictions, load_predictions, run_ensemble, save_predictions, write_predictions_csv

CLASSES = ["cat", "dog", "eel"]
IDS = ["a 1.png", "b.png", "ç/ünï code.png", "d.png"]
TARGETS = [0, 1, 2, 1]
# Base: right on a (0.9), wrong on b (0.5), right on ç (0.6), right on d (0.7, exactly the threshold).
BASE = [[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1]]
M1 = [[0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]  # always "dog"
M2 = [[0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.2, 0.5, 0.3], [0.3, 0.6, 0.1]]


def _save(path, probs, order=(0, 1, 2, 3), targets=TARGETS, classes=CLASSES, prefix=""):
    order = list(order)
    save_predictions(
        path,
        np.array(probs)[order],
        [prefix + IDS[i] for i in order],
        classes,
        targets=None if targets is None else np.array(targets)[order],
        metadata={"model": path.name},
    )
    return str(path)


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "members").mkdir()
    return {
        "base": _save(tmp_path / "base.npz", BASE),
        "m1": _save(tmp_path / "members" / "m1.npz", M1, order=(3, 1, 0, 2)),  # shuffled rows
        "m2": _save(tmp_path / "members" / "m2.npz", M2),
        # validation files: other images (ids), the same answers, so choices are easy to follow
        "val_base": _save(tmp_path / "val_base.npz", BASE, order=(2, 0, 3, 1), prefix="val/"),
        "val_m1": _save(tmp_path / "val_m1.npz", M1, prefix="val/"),
        "val_m2": _save(tmp_path / "val_m2.npz", M2, order=(1, 2, 3, 0), prefix="val/"),
        "tmp": tmp_path,
    }


def test_round_trip(tmp_path):
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=4).astype(np.float32)
    path = save_predictions(tmp_path / "p.npz", probs, IDS, CLASSES, metadata={"tta": 2, "name": "b3"})
    got = load_predictions(path)
    np.testing.assert_array_equal(got.probs, probs)
    assert got.ids.tolist() == IDS and got.ids.dtype.kind == "U"
    assert got.classes.tolist() == CLASSES
    assert got.targets.tolist() == [-1] * 4 and got.targets.dtype == np.int64
    assert got.metadata == {"tta": 2, "name": "b3"}
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]  # no temporary file left behind


def test_save_rejects_logits_and_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="logits"):
        save_predictions(tmp_path / "p.npz", np.array([[2.0, -1.0, 0.5]] * 4), IDS, CLASSES)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        save_predictions(tmp_path / "p.npz", np.full((3, 3), 1 / 3), IDS, CLASSES)
    with pytest.raises(ValueError, match="unique"):
        save_predictions(tmp_path / "p.npz", np.full((2, 3), 1 / 3), ["x", "x"], CLASSES)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="nope.npz: no such file"):
        load_predictions(tmp_path / "nope.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(UserError, match="text.npz: cannot read"):
        load_predictions(tmp_path / "text.npz")
    np.savez(tmp_path / "partial.npz", probs=np.ones((1, 1), np.float32), ids=np.array(["x"]))
    with pytest.raises(UserError, match="partial.npz: missing classes, targets, metadata"):
        load_predictions(tmp_path / "partial.npz")
    np.save(tmp_path / "single.npy", np.ones((2, 2)))
    with pytest.raises(UserError, match="single array"):
        load_predictions(tmp_path / "single.npy")


class _Touch:
    """Unpickling this calls open(path, 'w'): the file appears if anything unpickles it."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_load_refuses_pickles_without_running_them(tmp_path):
    def payload(marker):
        path = tmp_path / f"{marker.stem}.npz"
        np.savez(
            path,
            probs=np.array([_Touch(marker)], dtype=object),
            ids=np.array(["x"]),
            classes=np.array(["c"]),
            targets=np.array([0]),
            metadata=np.array("{}"),
        )
        return path

    control = tmp_path / "control_marker"
    with np.load(payload(control), allow_pickle=True) as data:  # the payload does work...
        data["probs"]
    assert control.exists()
    marker = tmp_path / "marker"
    with pytest.raises(UserError, match="marker.npz: cannot read 'probs' without unpickling"):
        load_predictions(payload(marker))
    assert not marker.exists()  # ...and load_predictions never ran it


def test_align_reorders_members_to_the_base(files):
    base, m1 = load_predictions(files["base"]), load_predictions(files["m1"])
    assert m1.ids.tolist() != IDS
    (aligned,) = align_predictions(base, [m1], ["base.npz", "members/m1.npz"])
    assert aligned.ids.tolist() == IDS
    np.testing.assert_allclose(aligned.probs, np.array(M1, np.float32))
    assert aligned.targets.tolist() == TARGETS


def test_align_errors_name_both_files(tmp_path, files):
    base = load_predictions(files["base"])
    fewer = load_predictions(_save(tmp_path / "fewer.npz", M1[:3] + [[1, 0, 0]], order=(0, 1, 2)))
    with pytest.raises(UserError, match=r"members/a.npz lacks 1 ids of base.npz \(first: 'd.png'\)"):
        align_predictions(base, [fewer], ["base.npz", "members/a.npz"])
    save_predictions(tmp_path / "other.npz", np.full((4, 3), 1 / 3), IDS[:3] + ["x.png"], CLASSES)
    with pytest.raises(UserError, match=r"members/a.npz has 1 ids not in base.npz \(first: 'x.png'\)"):
        align_predictions(base, [load_predictions(tmp_path / "other.npz")], ["base.npz", "members/a.npz"])
    # the same images, ids relative to the data root in one file and to the folder in the other
    rooted = load_predictions(_save(tmp_path / "rooted.npz", M1, prefix="test/"))
    with pytest.raises(UserError, match=r"the ids differ by a leading 'test/' \('a 1.png' vs 'test/a 1.png'\)"):
        align_predictions(base, [rooted], ["base.npz", "rooted.npz"])
    renamed = load_predictions(_save(tmp_path / "renamed.npz", M1, classes=["cat", "dog", "emu"]))
    with pytest.raises(UserError, match="b.npz has different classes from base.npz .class 2 is 'emu' vs 'eel'"):
        align_predictions(base, [renamed], ["base.npz", "b.npz"])
    relabelled = load_predictions(_save(tmp_path / "relab.npz", M1, targets=[0, 1, 2, 2]))
    with pytest.raises(UserError, match="relab.npz and base.npz disagree on 1 labels"):
        align_predictions(base, [relabelled], ["base.npz", "relab.npz"])


def test_csv_columns(tmp_path, files):
    preds = load_predictions(files["base"])
    write_predictions_csv(tmp_path / "p.csv", preds, top_k=2)
    rows = list(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert list(rows[0]) == ["id", "label", "confidence", "top1", "top2"]
    assert rows[2] == {
        "id": IDS[2],
        "label": "eel",
        "confidence": "0.600000",
        "top1": "eel:0.600000",
        "top2": "dog:0.300000",
    }


def test_csv_class_names_with_a_colon_split_at_the_last_one(tmp_path):
    from scarce.inference.predictions import Predictions

    preds = Predictions(
        np.array([[0.25, 0.75]], np.float32), np.array(["x.png"]), np.array(["12:30", "a:b:c"]), np.array([-1])
    )
    write_predictions_csv(tmp_path / "p.csv", preds, top_k=2)
    row = next(csv.DictReader(open(tmp_path / "p.csv", encoding="utf-8")))
    assert (row["label"], row["top1"], row["top2"]) == ("a:b:c", "a:b:c:0.750000", "12:30:0.250000")
    assert [row[f"top{j}"].rsplit(":", 1) for j in (1, 2)] == [["a:b:c", "0.750000"], ["12:30", "0.250000"]]


def _run(files, members=("m1", "m2"), **kw):
    kw.setdefault("log", lambda line: None)
    out = files["tmp"] / "final.npz"
    report = run_ensemble(files["base"], [files[m] for m in members], out_path=out, **kw)
    with np.load(out, allow_pickle=False) as data:
        final = {k: data[k] for k in data.files}
    return report, final


def test_an_output_that_is_an_input_is_refused_before_it_is_replaced(files):
    before = Path(files["m1"]).read_bytes()
    with pytest.raises(UserError, match=r"^--out .*m1.npz: is .*m1.npz, one of the ensemble's inputs; give a new"):
        run_ensemble(files["base"], [files["m1"], files["m2"]], out_path=files["m1"], log=lambda line: None)
    assert Path(files["m1"]).read_bytes() == before


def test_plurality_end_to_end(files, capsys):
    report, final = _run(files, csv_path=files["tmp"] / "final.csv", log=print)
    assert final["pred"].tolist() == [0, 1, 1, 1] and final["pred"].dtype == np.int64
    assert "probs" not in final and final["ids"].tolist() == IDS
    meta = json.loads(str(final["metadata"]))
    assert meta["method"] == "plurality" and meta["threshold"] == 0.7 and len(meta["members"]) == 3
    assert meta["threshold_source"] == "default"  # nothing given: not reported as the user's choice
    assert report["replaced"] == 2
    assert report["accuracy"] == pytest.approx({"base": 0.75, "plurality": 0.75, "soft": 0.75, "oracle": 1.0})
    printed = capsys.readouterr().out
    assert "| oracle (any member right) | 1.0000 |" in printed and "replaced 2 of 4" in printed
    assert "threshold 0.7 (default)" in printed
    assert _run(files, threshold=0.7)[0]["threshold_source"] == "given"
    rows = list(csv.DictReader(open(files["tmp"] / "final.csv", encoding="utf-8")))
    assert [r["label"] for r in rows] == ["cat", "dog", "dog", "dog"]


def test_base_listed_in_members_counts_once(files):
    alone, final_a = _run(files, members=("m1", "m2"))
    listed, final_b = _run(files, members=("m1", "base", "m2"))
    assert len(alone["members"]) == len(listed["members"]) == 3
    np.testing.assert_array_equal(final_a["pred"], final_b["pred"])
    with pytest.raises(UserError, match="listed twice"):
        _run(files, members=("m1", "m1"))
    with pytest.raises(UserError, match="at least one file besides --base"):
        _run(files, members=("base",))


def test_soft_and_weighted(files):
    report, final = _run(files, method="soft")
    assert final["pred"].tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(final["probs"][3], [0.2, 0.7, 0.1], atol=1e-6)
    report, final = _run(files, method="weighted", weights=[1, 0, 0])  # base first: base only
    assert final["pred"].tolist() == [0, 0, 2, 1] and report["replaced"] == 0
    assert report["accuracy"]["weighted"] == 0.75
    with pytest.raises(UserError, match="--weights has 2 values for 3 members"):
        _run(files, method="weighted", weights=[1, 1])


def test_weighted_from_validation_accuracy(files):
    report, final = _run(
        files, method="weighted", val_base=files["val_base"], val_members=[files["val_m1"], files["val_m2"]]
    )
    assert report["weights"] == pytest.approx([0.375, 0.25, 0.375])  # val accuracy 3/4, 2/4, 3/4
    assert report["weights_source"] == "val" and json.loads(str(final["metadata"]))["weights_source"] == "val"
    assert final["pred"].tolist() == [0, 1, 1, 1]
    assert _run(files, method="weighted", weights=[1, 1, 1])[0]["weights_source"] == "given"
    with pytest.raises(UserError, match="weighted needs --weights"):
        _run(files, method="weighted")


def test_validation_files_of_the_scored_images_are_refused(files):
    """The members' own (test) files given again as validation: the threshold would be tuned on
    the answers it decides."""
    with pytest.raises(UserError, match=r"base.npz shares 4 of its 4 images with .*base.npz: a threshold or weights"):
        _run(files, threshold="auto", val_base=files["base"], val_members=[files["m1"], files["m2"]])
    with pytest.raises(UserError, match="give predictions of held-out images"):
        _run(files, method="weighted", val_base=files["base"], val_members=[files["m1"], files["m2"]])
    # files that say what they predicted: the same ids in other split folders are other images
    # (--val b/ --test c/ numbered alike); a copy of the test predictions is still refused

    def said(name, probs, split):
        path = files["tmp"] / f"{name}.npz"
        save_predictions(path, np.array(probs), IDS, CLASSES, np.array(TARGETS), {"data": "/d", "split": split})
        return str(path)

    test = [said("t0", BASE, "/d/c"), said("t1", M1, "/d/c"), said("t2", M2, "/d/c")]
    val = [said("v0", BASE, "/d/b"), said("v1", M1, "/d/b"), said("v2", M2, "/d/b")]
    out = files["tmp"] / "o.npz"
    report = run_ensemble(test[0], test[1:], threshold="auto", val_base=val[0], val_members=val[1:], out_path=out)
    assert report["threshold"] == 0.55
    copies = [said("c0", BASE, "/d/c"), said("c1", M1, "/d/c"), said("c2", M2, "/d/c")]
    with pytest.raises(UserError, match="c0.npz shares 4 of its 4 images"):
        run_ensemble(test[0], test[1:], threshold="auto", val_base=copies[0], val_members=copies[1:], out_path=out)
    # one folder spelled two ways (--split heldout/ and --split ./heldout) is one folder
    (files["tmp"] / "heldout").mkdir()
    spelled = [said(f"s{i}", p, f"{files['tmp']}/./heldout/") for i, p in enumerate((BASE, M1, M2))]
    again = [said(f"a{i}", p, str(files["tmp"] / "heldout")) for i, p in enumerate((BASE, M1, M2))]
    with pytest.raises(UserError, match="s0.npz shares 4 of its 4 images"):
        run_ensemble(again[0], again[1:], threshold="auto", val_base=spelled[0], val_members=spelled[1:], out_path=out)


def test_auto_threshold(files):
    lines = []
    report, final = _run(
        files,
        threshold="auto",
        val_base=files["val_base"],
        val_members=[files["val_m1"], files["val_m2"]],
        log=lines.append,
    )
    # Validation answers as test's here: keeping the base above 0.5 fixes b and keeps ç: 0.55 is best.
    assert report["threshold"] == 0.55 and report["threshold_source"] == "auto"
    assert final["pred"].tolist() == [0, 1, 2, 1] and report["accuracy"]["plurality"] == 1.0
    meta = json.loads(str(final["metadata"]))
    assert meta["threshold"] == 0.55 and len(meta["threshold_table"]) == 22
    assert any(line.startswith("threshold auto: 0.55 (val accuracy 1.0000") for line in lines)
    assert not any("<- chosen" in line for line in lines)  # the table only when asked
    lines = []
    _run(
        files,
        threshold="auto",
        val_base=files["val_base"],
        val_members=[files["val_m1"], files["val_m2"]],
        log=lines.append,
        show_thresholds=True,
    )
    table = [line for line in lines if line[:3] in ("| 0", "| 1")]
    assert len(table) == 22 and [line for line in table if "<- chosen" in line] == [table[11]]
    assert "| 0.55 |" in table[11]
    listed, final_b = _run(
        files,
        members=("m1", "base", "m2"),
        threshold="auto",
        val_members=[files["val_m1"], files["val_base"], files["val_m2"]],
    )
    assert listed["threshold"] == 0.55 and final_b["pred"].tolist() == [0, 1, 2, 1]
    with pytest.raises(UserError, match=r"--val-base should be --val-members\[1\]"):
        _run(
            files,
            members=("m1", "base", "m2"),
            threshold="auto",
            val_base=files["val_m1"],
            val_members=[files["val_m1"], files["val_base"], files["val_m2"]],
        )
    with pytest.raises(UserError, match="auto needs labelled validation"):
        _run(files, threshold="auto")
    with pytest.raises(UserError, match="--val-members has 1 files but --members has 2"):
        _run(files, threshold="auto", val_base=files["val_base"], val_members=[files["val_m1"]])


def test_cli_arguments(files, capsys):
    from scarce.cli import main

    out = files["tmp"] / "cli.npz"
    assert (
        main(
            [
                "ensemble",
                "--base",
                files["base"],
                "--members",
                files["m1"],
                files["m2"],
                "--threshold",
                "1.01",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with np.load(out) as data:
        assert data["pred"].tolist() == [0, 1, 1, 1]  # pure plurality: a's vote is 0 (base, m2)
    assert (
        main(["ensemble", "--base", files["base"], "--members", files["m1"], "--threshold", "high", "--out", str(out)])
        == 2
    )
    assert "--threshold: expected a number from 0 to 1" in capsys.readouterr().err
    for bad in ("1.5", "7", "-0.1", "nan", "inf"):
        argv = ["ensemble", "--base", files["base"], "--members", files["m1"], "--threshold", bad, "--out", str(out)]
        assert main(argv) == 2
        assert (
            "--threshold: expected a number from 0 to 1 (up to 1.01: never keep the base's answer, pure plurality)"
            f" or 'auto', got '{bad}'" in capsys.readouterr().err
        )
    with pytest.raises(UserError, match=r"--threshold: expected a number from 0 to 1"):
        _run(files, threshold=1.02)


def test_npz_and_csv_are_replaced_together_or_not_at_all(files, monkeypatch):
    import scarce.inference.ensemble as ensemble_module

    out, csv_out = files["tmp"] / "final.npz", files["tmp"] / "final.csv"
    _run(files, csv_path=csv_out)
    old_npz, old_csv = out.read_bytes(), csv_out.read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ensemble_module, "write_predictions_csv", fail)  # the CSV write fails after the npz
    with pytest.raises(OSError, match="disk full"):
        _run(files, method="soft", csv_path=csv_out)
    assert out.read_bytes() == old_npz and csv_out.read_text() == old_csv  # neither replaced
    assert sorted(p.name for p in files["tmp"].iterdir() if p.name.startswith(".")) == []  # no temp left


def test_soft_vote_refuses_a_threshold_and_ignores_validation_files(files):
    for threshold in ("auto", 0.7):  # a soft vote keeps no base answer: a threshold would do nothing
        with pytest.raises(UserError, match="--threshold applies to --method plurality; a soft vote has none"):
            _run(files, method="soft", threshold=threshold)
    lines = []
    report, final = _run(
        files,
        method="soft",
        val_base=files["val_base"],
        val_members=[files["val_m1"], files["val_m2"]],
        log=lines.append,
    )
    assert final["pred"].tolist() == [0, 1, 1, 1]  # as without them
    assert not any(line.startswith("threshold auto") for line in lines), lines
    assert report["threshold"] is None and report["threshold_source"] is None  # soft: no threshold


def test_predictions_file_without_images_is_refused_by_name(tmp_path):
    path = tmp_path / "empty.npz"
    meta = np.array(json.dumps({}))
    np.savez(
        path,
        probs=np.zeros((0, 3), np.float32),
        ids=np.array([], dtype="<U1"),
        classes=np.array(CLASSES),
        targets=np.zeros(0, np.int64),
        metadata=meta,
    )
    with pytest.raises(UserError, match=r"empty.npz: no images \(N = 0, C = 3\): nothing to vote on"):
        load_predictions(path)


def test_validation_files_of_other_models_are_refused(files):
    # files made by `scarce predict` record their weights: a swapped pair would weight each member
    # by another's val accuracy without a word
    def made_by(name, probs, model, order=(0, 1, 2, 3)):
        path = files["tmp"] / f"{name}.npz"
        save_predictions(
            path,
            np.array(probs)[list(order)],
            [f"{name[0]}/{IDS[i]}" for i in order],  # test and val: other images
            CLASSES,
            np.array(TARGETS)[list(order)],
            {"weights": model},
        )
        return str(path)

    test = [made_by("t_base", BASE, "/r/base/best.safetensors"), made_by("t1", M1, "/r/one/best.safetensors")]
    val = [made_by("v_base", BASE, "/r/base/best.safetensors"), made_by("v1", M1, "/r/one/best.safetensors")]
    out = files["tmp"] / "w.npz"
    report = run_ensemble(None, test, method="weighted", val_members=val, out_path=out, log=lambda line: None)
    assert report["weights"] == pytest.approx([0.6, 0.4])  # val accuracy 3/4 and 2/4
    with pytest.raises(UserError, match=r"v1.npz was predicted by /r/one/best.safetensors, but the member it pairs"):
        run_ensemble(None, test, method="weighted", val_members=val[::-1], out_path=out, log=lambda line: None)
    # the same model with another number of TTA views: a threshold from val would not mean the same
    meta = {"weights": "/r/one/best.safetensors", "tta_views": 1}
    save_predictions(files["tmp"] / "v1.npz", np.array(M1), [f"v/{i}" for i in IDS], CLASSES, np.array(TARGETS), meta)
    tta4 = {**meta, "tta_views": 4}
    save_predictions(files["tmp"] / "t1.npz", np.array(M1), [f"t/{i}" for i in IDS], CLASSES, np.array(TARGETS), tta4)
    with pytest.raises(
        UserError, match=r"v1.npz was predicted with 1 TTA view\(s\), the member it pairs with, .*t1.npz"
    ):
        run_ensemble(None, test, method="weighted", val_members=val, out_path=out, log=lambda line: None)
    assert report["members"] == [str(files["tmp"] / "t_base.npz"), str(files["tmp"] / "t1.npz")]  # absolute


def test_member_paths_are_recorded_absolute(files, monkeypatch):
    monkeypatch.chdir(files["tmp"])
    report, final = _run({**files, "m1": "members/m1.npz", "m2": "members/m2.npz"})
    meta = json.loads(str(final["metadata"]))
    assert meta["members"][1:] == [str(files["tmp"] / "members" / "m1.npz"), str(files["tmp"] / "members" / "m2.npz")]


def test_report_given_a_predictions_file_points_to_ensemble(files, capsys):
    from scarce.cli import main

    assert main(["report", files["m1"]]) == 2
    assert f"{files['m1']}: a predictions file, not a run; for an ensemble's: scarce report --ensemble" in (
        capsys.readouterr().err
    )
