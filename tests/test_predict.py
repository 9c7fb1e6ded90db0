"""``predict_run`` / ``scarce predict`` on tiny trained runs, and ``scarce ensemble`` on their files."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from scarce.cli import main
from scarce.config import DataConfig, load_config
from scarce.data.loader import build_eval_loader
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.evaluation import eval_dataset, load_run
from scarce.engine.factories import prediction_source, probs_function
from scarce.engine.loop import predict_outputs
from scarce.engine.trainer import train
from scarce.errors import UserError
from scarce.inference import load_predictions, predict_run
from tests.conftest import TINY, make_image_folder

CLASSES = ["cat", "dog", "emu"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    """Two tiny runs on a 3-class folder: a plain one and one with RandAugment + head g."""
    root = tmp_path_factory.mktemp("predict")
    data = make_image_folder(root / "data", classes=CLASSES, per_split={"train": 8, "val": 4, "test": 5})
    extras = {"plain": [], "fancy": ["augment.randaugment=rand-m9-mstd0.5", "loss.name=focal_cosine", "seed=1"]}
    runs = {}
    for name, extra in extras.items():
        cfg = load_config(None, TINY + ["epochs=1", *extra], {"data": {"name": str(data)}})
        train(cfg, root / name, progress=False)
        runs[name] = root / name
    return {"root": root, "data": data, **runs}


def _plain_probs(run_dir, data, split):
    """Reference: the evaluation loader, the model, the run's calibrated probabilities."""
    run = load_run(run_dir, "cpu")
    loader = build_eval_loader(eval_dataset(run, DataConfig(name=str(data)), split), 5, 0)
    pre = BatchPreprocessor(run.mean, run.std, torch.device("cpu"))
    probs_fn = probs_function(run.cfg, run.temperature)
    return torch.cat([probs_fn(o) for o, _ in predict_outputs(run.model, loader, pre)]).numpy(), run


@pytest.mark.parametrize("name", ["plain", "fancy"])
def test_no_tta_equals_plain_calibrated_prediction(trained, name):
    preds = predict_run(
        trained[name], DataConfig(name=str(trained["data"])), "test", num_workers=0, batch_size=4, device="cpu"
    )
    expected, run = _plain_probs(trained[name], trained["data"], "test")
    np.testing.assert_allclose(preds.probs, expected, rtol=1e-5, atol=1e-6)
    calibration = json.loads((trained[name] / "calibration.json").read_text())
    assert run.temperature == calibration["temperature"]  # calibration.json was written and used
    if calibration["note"] is None:  # a fit that found its optimum (a tiny run may get every val image right)
        assert run.temperature == calibration["temperature_fitted"] != 1.0
    assert preds.ids.tolist()[:2] == ["test/cat/0.png", "test/cat/1.png"]  # relative to the data root
    assert preds.targets.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert preds.classes.tolist() == CLASSES
    meta = preds.metadata
    assert meta["tta_views"] == 1 and meta["split"] == "test" and meta["model"] == "test_resnet"
    assert meta["temperature"] == run.temperature and meta["source"] == prediction_source(run.cfg)
    assert (meta["source"] == "logits") == (name == "plain")  # the focal cosine run predicts from its own head
    assert meta["run_dir"] == str(trained[name]) and meta["weights"].endswith("best.safetensors")


def test_tta_averages_views_and_keeps_order(trained):
    data = DataConfig(name=str(trained["data"]))
    one = predict_run(trained["fancy"], data, "val", tta_views=1, num_workers=0)
    four = predict_run(trained["fancy"], data, "val", tta_views=4, num_workers=0, batch_size=5)
    assert four.ids.tolist() == one.ids.tolist() and four.targets.tolist() == one.targets.tolist()
    np.testing.assert_allclose(four.probs.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(four.probs, one.probs, atol=1e-5)
    assert four.metadata["tta_views"] == 4 and four.metadata["tta_randaugment"] == "rand-m9-mstd0.5"
    two = predict_run(trained["fancy"], data, "val", tta_views=2, num_workers=0)
    assert two.metadata["tta_randaugment"] is None  # clean + mirror: RandAugment starts at view 2 (the third)


def test_flat_folder_is_predicted_unlabelled(trained, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for cls in ("cat", "emu"):
        shutil.copy(trained["data"] / "test" / cls / "0.png", flat / f"{cls}.png")
    preds = predict_run(trained["plain"], None, str(flat), num_workers=0)
    assert preds.ids.tolist() == ["cat.png", "emu.png"] and preds.targets.tolist() == [-1, -1]
    labelled = predict_run(trained["plain"], None, "test", num_workers=0)  # the run's own data
    rows = [labelled.ids.tolist().index(f"test/{c}/0.png") for c in ("cat", "emu")]
    np.testing.assert_allclose(preds.probs, labelled.probs[rows], rtol=1e-5, atol=1e-6)


def test_folder_with_unknown_class_is_one_line_error(trained, tmp_path, capsys):
    make_image_folder(tmp_path / "other", classes=("cat", "zebra"), per_split={"test": 1})
    code = main(
        [
            "predict",
            str(trained["plain"]),
            "--data",
            str(tmp_path / "other"),
            "--out",
            str(tmp_path / "p.npz"),
            "--workers",
            "0",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "zebra" in err and "Traceback" not in err
    assert not (tmp_path / "p.npz").exists()
    with pytest.raises(UserError, match="--tta"):
        predict_run(trained["plain"], None, "test", tta_views=0)
    with pytest.raises(UserError, match="--split 'nowhere'"):
        predict_run(trained["plain"], None, "nowhere")


def test_cli_predict_then_ensemble_round_trip(trained, tmp_path, capsys):
    data, out = str(trained["data"]), tmp_path
    files = {}
    for name in ("plain", "fancy"):
        for split, tta in (("val", "1"), ("test", "1"), ("test", "3")):
            key = f"{name}_{split}_{tta}"
            files[key] = out / f"{key}.npz"
            args = [
                "predict",
                str(trained[name]),
                "--data",
                data,
                "--split",
                split,
                "--tta",
                tta,
                "--out",
                str(files[key]),
                "--workers",
                "0",
            ]
            assert main(args + (["--csv", str(out / f"{key}.csv")] if key == "plain_test_1" else [])) == 0
    assert "15 images, 3 classes" in capsys.readouterr().out
    loaded = load_predictions(files["fancy_test_3"])
    direct = predict_run(trained["fancy"], DataConfig(name=data), "test", tta_views=3, num_workers=0)
    np.testing.assert_allclose(loaded.probs, direct.probs, rtol=1e-6)
    assert loaded.ids.tolist() == direct.ids.tolist() and loaded.metadata["tta_views"] == 3

    with open(out / "plain_test_1.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id", "label", "confidence", "top1", "top2", "top3"]  # top-k capped at C = 3
    plain = load_predictions(files["plain_test_1"])
    assert rows[1][0] == "test/cat/0.png" and rows[1][1] == CLASSES[int(plain.probs[0].argmax())]
    assert float(rows[1][2]) == pytest.approx(float(plain.probs[0].max()), abs=1e-6)

    members = [str(files[k]) for k in ("plain_test_1", "plain_test_3", "fancy_test_1", "fancy_test_3")]
    final = out / "final.npz"
    assert (
        main(
            [
                "ensemble",
                "--base",
                members[0],
                "--members",
                *members,
                "--threshold",
                "0.7",
                "--out",
                str(final),
                "--csv",
                str(out / "final.csv"),
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "ensemble: 4 models, 15 samples" in report and "oracle" in report
    with np.load(final, allow_pickle=False) as z:
        assert z["pred"].dtype == np.int64 and z["pred"].shape == (15,)
        assert z["ids"].tolist() == plain.ids.tolist() and z["classes"].tolist() == CLASSES
    assert (
        main(
            [
                "ensemble",
                "--base",
                members[0],
                "--members",
                members[1],
                str(files["plain_val_1"]),
                "--out",
                str(out / "bad.npz"),
            ]
        )
        == 2
    )
    assert "ids" in capsys.readouterr().err


def test_skip_bad_images_leaves_them_out_and_lists_them(trained, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for cls in ("cat", "emu"):
        shutil.copy(trained["data"] / "test" / cls / "0.png", flat / f"{cls}.png")
    (flat / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "p.npz"
    args = ["predict", str(trained["plain"]), "--split", str(flat), "--out", str(out), "--workers", "0"]
    assert main(args) == 2  # without the flag: one line naming the file and the flag
    err = capsys.readouterr().err
    assert "broken.png: cannot be read" in err and "--skip-bad-images" in err and not out.exists()
    labelled = tmp_path / "labelled"
    shutil.copytree(trained["data"] / "test", labelled)
    shutil.copy(flat / "broken.png", labelled / "cat" / "broken.png")
    assert main(["evaluate", str(trained["plain"]), "--split", str(labelled), "--workers", "0"]) == 2
    err = capsys.readouterr().err  # evaluate scores every image: no skipping there
    assert "broken.png: cannot be read" in err and "scarce data check" in err and "--skip" not in err
    assert main(args + ["--skip-bad-images"]) == 0
    printed = capsys.readouterr().out
    assert "skipped broken.png" in printed and "skipped 1 unreadable image (listed" in printed
    preds = load_predictions(out)
    assert preds.ids.tolist() == ["cat.png", "emu.png"]
    assert [b["path"] for b in preds.metadata["skipped_images"]] == ["broken.png"]


def test_skip_bad_images_with_image_files_on_the_command_line(trained, tmp_path, capsys):
    good = trained["data"] / "test" / "cat" / "0.png"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["predict", str(trained["plain"]), str(good), str(broken)]) == 2
    assert "broken.png" in capsys.readouterr().err
    empty = tmp_path / "zero.jpg"
    empty.write_bytes(b"")
    assert main(["predict", str(trained["plain"]), str(empty), str(good), str(broken)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"scarce predict: error: image {empty}: empty file (0 bytes) (and 1 more); fix or remove it, "
        f"or leave such images out: scarce predict --skip-bad-images"
    ]
    assert main(["predict", str(trained["plain"]), str(good), str(broken), "--skip-bad-images"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"skipped {broken}") and len(printed) == 2 and str(good) in printed[1]


def test_predicting_image_files_decodes_each_once(trained, monkeypatch, capsys):
    """No up-front check pass: the files are read once, by the prediction; only a failure has them
    all checked (the test above)."""
    import scarce.data.check
    import scarce.data.datasets

    files = [str(trained["data"] / "test" / cls / "0.png") for cls in ("cat", "dog", "emu")]
    reads, read_image = [], scarce.data.datasets.read_image
    monkeypatch.setattr(scarce.data.datasets, "read_image", lambda path, *a: reads.append(path) or read_image(path, *a))
    monkeypatch.setattr(scarce.data.check, "check_image", lambda *a, **k: pytest.fail("an image was decoded twice"))
    assert main(["predict", str(trained["plain"]), *files, "--tta", "2"]) == 0
    # besides the val images of the first 2-view vote's temperature fit (kept for the next one)
    assert [path for path in reads if path in files] == files and len(capsys.readouterr().out.splitlines()) == 3
    reads.clear()
    assert main(["predict", str(trained["plain"]), *files, "--tta", "2"]) == 0
    assert reads == files


def test_skip_bad_images_decodes_once_and_predicts_as_the_files(trained, tmp_path):
    """The scan keeps the decoded images at the evaluation size, so each file is read once; the
    predictions (clean view and RandAugment views) equal those read from the files."""
    from scarce.inference.predict import drop_bad_images

    run = load_run(trained["fancy"], torch.device("cpu"))
    data = DataConfig(name=str(trained["data"]))
    dataset = eval_dataset(run, data, "test")
    kept, ids, bad = drop_bad_images(dataset, list(dataset.split.ids), run.cfg.data)
    assert bad == [] and ids == list(dataset.split.ids)
    assert kept.split.cache is not None and len(kept.split.cache) == len(ids)
    assert min(kept.split.cache[0].shape[:2]) < 20  # shrunk from the 20 px files to the eval size
    common = dict(data=data, split="test", tta_views=3, num_workers=0, seed=4)
    plain = predict_run(trained["fancy"], **common)
    skipping = predict_run(trained["fancy"], skip_bad_images=True, **common)
    np.testing.assert_array_equal(plain.probs, skipping.probs)
    assert plain.ids.tolist() == skipping.ids.tolist()


def test_train_split_of_a_train_folder_leaves_out_the_val_it_gave(tmp_path):
    """A run given only a train folder (--train) took val from it: its train split, predicted or
    scored, is the images it trained on, not the whole folder."""
    data = make_image_folder(tmp_path / "own", per_split={"train": 8, "test": 2})
    cfg = load_config(None, TINY + ["epochs=1", "data.val_fraction=0.25"], {"data": {"train": str(data / "train")}})
    train(cfg, tmp_path / "run", progress=False)
    held = set(json.loads((tmp_path / "run" / "classes.json").read_text())["val_from_train"])
    trained_on = predict_run(tmp_path / "run", None, "train", num_workers=0)
    assert len(trained_on.ids) == 24 - len(held) and not held & set(trained_on.ids.tolist())
    assert set(predict_run(tmp_path / "run", None, "val", num_workers=0).ids.tolist()) == held
    # the same with --data naming a root that has test/ but no train/ (train given apart)
    cfg = load_config(
        None, TINY + ["epochs=1", "data.val_fraction=0.25"], {"data": {"name": str(data), "train": str(data / "train")}}
    )
    shutil.rmtree(data / "val", ignore_errors=True)
    moved = shutil.move(data / "train", tmp_path / "elsewhere")
    cfg.data.train = str(moved)
    train(cfg, tmp_path / "run2", progress=False)
    assert len(predict_run(tmp_path / "run2", None, "train", num_workers=0).ids) == 24 - len(held)


def test_data_named_again_keeps_the_runs_own_val_draw(tmp_path, monkeypatch):
    """A run whose val split was drawn from train (split_seed 3, val_fraction 0.25): naming its
    folder again, relative or absolute, scores the same val images, not a new draw that could
    hold training images."""
    from scarce.engine.evaluation import evaluate_run

    data = make_image_folder(tmp_path / "noval", per_split={"train": 8, "test": 2})
    cfg = load_config(
        None, TINY + ["epochs=1", "data.split_seed=3", "data.val_fraction=0.25"], {"data": {"name": str(data)}}
    )
    train(cfg, tmp_path / "run", progress=False)
    held = json.loads((tmp_path / "run" / "classes.json").read_text())["val_from_train"]
    assert len(held) == 6
    monkeypatch.chdir(tmp_path)
    for name in ("noval", "./noval/", str(data)):
        preds = predict_run(tmp_path / "run", DataConfig(name=name), "val", num_workers=0)
        assert sorted(preds.ids.tolist()) == sorted(f"train/{i}" for i in held), name
        result = evaluate_run(tmp_path / "run", DataConfig(name=name), "val", out=tmp_path / "e.json", num_workers=0)
        assert result["count"] == 6, name


def test_image_files_after_options_and_split_options_refused(trained, tmp_path, capsys):
    cat, dog = (trained["data"] / "test" / c / "0.png" for c in ("cat", "dog"))
    run = str(trained["plain"])
    assert main(["predict", run, str(cat), "--device", "cpu", str(dog)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and str(cat) in printed[0] and str(dog) in printed[1]
    out = tmp_path / "p.npz"
    assert main(["predict", run, str(cat), "--csv", str(tmp_path / "p.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out, --csv only work with a split, not with image files" in err, err
    assert main(["predict", run, str(cat), "--workers", "0"]) == 2
    assert "--workers only works with a split" in capsys.readouterr().err
    assert not out.exists()
    # TTA works on image files too: 2 views (clean + mirror) as a split's images get them
    assert main(["predict", run, str(cat), str(dog), "--tta", "2", "--device", "cpu"]) == 0
    confidence = [float(line.split()[2]) for line in capsys.readouterr().out.splitlines()]
    split = predict_run(run, None, str(trained["data"] / "test"), tta_views=2, num_workers=0)
    rows = [list(split.ids).index(f"{c}/0.png") for c in ("cat", "dog")]
    assert confidence == pytest.approx(split.probs[rows].max(axis=1).round(3).tolist(), abs=1.5e-3)
    assert main(["predict", run, str(cat), "--tta", "0"]) == 2
    assert "--tta: expected a number of views >= 1, got 0" in capsys.readouterr().err
    assert main(["predict", run, str(cat), str(trained["data"] / "test")]) == 2
    assert f"{trained['data'] / 'test'}: a folder, not an image file" in capsys.readouterr().err


def test_output_names_of_another_kind_are_refused_and_left_alone(trained, tmp_path, capsys):
    picture = tmp_path / "shoe.png"
    picture.write_bytes(b"not predictions")
    run = str(trained["plain"])
    assert main(["predict", run, "--split", "test", "--out", str(picture)]) == 2
    assert f"--out {picture}: expected a file name ending in .npz" in capsys.readouterr().err
    assert main(["predict", run, "--split", "test", "--out", str(tmp_path / "p.npz"), "--csv", str(picture)]) == 2
    assert f"--csv {picture}: expected a file name ending in .csv" in capsys.readouterr().err
    assert main(["ensemble", "--members", str(tmp_path / "a.npz"), "--out", str(picture)]) == 2
    assert f"--out {picture}: expected a file name ending in .npz" in capsys.readouterr().err
    assert main(["evaluate", run, "--out", str(picture)]) == 2
    assert f"--out {picture}: expected a file name ending in .json" in capsys.readouterr().err
    assert picture.read_bytes() == b"not predictions" and not (tmp_path / "p.npz").exists()
    (tmp_path / "b.png").write_bytes(b"not predictions either")
    argv = ["ensemble", "--method", "soft", "--members", str(picture), str(tmp_path / "b.png")]
    assert main([*argv, "--out", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err
    assert "cannot read it as an .npz predictions file" in err and "(not an .npz archive)" in err, err


def test_a_run_without_calibration_says_its_confidences_are_not_calibrated(trained, tmp_path, capsys):
    cat = trained["data"] / "test" / "cat" / "0.png"
    assert main(["predict", str(trained["plain"]), str(cat)]) == 0
    assert capsys.readouterr().err == ""  # a finished run with val: calibrated, nothing to say
    interrupted = shutil.copytree(trained["plain"], tmp_path / "interrupted")
    (interrupted / "calibration.json").unlink()
    for argv in ([str(cat)], ["--split", "test", "--out", str(tmp_path / "p.npz"), "--workers", "0"]):
        assert main(["predict", str(interrupted), *argv]) == 0
        err = capsys.readouterr().err
        assert f"note: {interrupted} has no calibration.json" in err and "not calibrated" in err, err


def test_api_tta_views_follow_the_image_not_its_place(trained):
    """Classifier.predict(tta=N): RandAugment views drawn from each image's path or pixels and the
    seed, so order, batch size and how an image is passed (PIL or tensor) do not change them."""
    from PIL import Image

    import scarce

    model = scarce.load(trained["fancy"], device="cpu")
    cat, dog = (trained["data"] / "test" / c / "0.png" for c in ("cat", "dog"))
    pil = [Image.open(p).convert("RGB") for p in (cat, dog)]
    tensors = [torch.from_numpy(np.array(p)).permute(2, 0, 1) for p in pil]  # uint8 [3, H, W]
    forward = model.predict(pil, tta=4).probs
    np.testing.assert_allclose(model.predict(pil[::-1], batch_size=1, tta=4).probs, forward[::-1], atol=1e-6)
    np.testing.assert_allclose(model.predict(tensors, tta=4).probs, forward, atol=1e-6)
    by_path = model.predict([str(cat), str(dog)], tta=4).probs
    np.testing.assert_allclose(model.predict([str(dog), str(cat)], tta=4).probs, by_path[::-1], atol=1e-6)
    # the RandAugment views count (views 2 and 3), and the seed draws them
    assert np.abs(forward - model.predict(pil, tta=2).probs).max() > 1e-4
    assert np.abs(forward - model.predict(pil, tta=4, seed=1).probs).max() > 1e-4
    with pytest.raises(UserError, match="tta: expected a number of views >= 1, got 0"):
        model.predict(pil, tta=0)


def test_predictions_record_absolute_paths_so_pairs_match_from_any_folder(trained, tmp_path, monkeypatch, capsys):
    """A run predicted from inside its folder (``scarce predict .``) pairs with the same run's file
    predicted by its path from elsewhere: metadata holds absolute run and weights paths."""
    run = trained["plain"]
    monkeypatch.chdir(run)
    assert main(["predict", ".", "--split", "val", "--out", str(tmp_path / "v_plain.npz"), "--workers", "0"]) == 0
    meta = load_predictions(tmp_path / "v_plain.npz").metadata
    assert meta["run_dir"] == str(run) and meta["weights"] == str(run / "best.safetensors")
    monkeypatch.chdir(trained["root"])
    for name in ("plain", "fancy"):
        argv = ["predict", name, "--split", "test", "--out", str(tmp_path / f"t_{name}.npz"), "--workers", "0"]
        assert main(argv) == 0
    assert main(["predict", "fancy", "--split", "val", "--out", str(tmp_path / "v_fancy.npz"), "--workers", "0"]) == 0
    capsys.readouterr()
    members = [str(tmp_path / f"t_{n}.npz") for n in ("plain", "fancy")]
    vals = [str(tmp_path / f"v_{n}.npz") for n in ("plain", "fancy")]
    out = str(tmp_path / "e.npz")
    assert main(["ensemble", "--method", "weighted", "--members", *members, "--val-members", *vals, "--out", out]) == 0
    swapped = ["--val-members", *vals[::-1], "--out", str(tmp_path / "swapped.npz")]
    assert main(["ensemble", "--method", "weighted", "--members", *members, *swapped]) == 2
    assert "give --val-members (and --val-base) in the order of --members" in capsys.readouterr().err


def test_tta_beyond_the_views_a_run_can_make_is_noted(trained, tmp_path, capsys):
    """plain trained with flips and no RandAugment: 2 distinct views (clean, mirror); fancy has RandAugment."""
    plain, fancy = str(trained["plain"]), str(trained["fancy"])
    out = str(tmp_path / "p.npz")
    assert main(["predict", plain, "--split", "test", "--tta", "3", "--out", out, "--workers", "0"]) == 0
    err = capsys.readouterr().err
    assert "note: --tta 3: the run trained with flips but no RandAugment: views 2.. repeat" in err, err
    assert "only 2 differ" in err
    for run, tta in ((plain, "2"), (fancy, "4")):
        assert main(["predict", run, "--split", "test", "--tta", tta, "--out", out, "--workers", "0"]) == 0
        assert "--tta" not in capsys.readouterr().err


def test_a_run_trained_channels_last_is_scored_channels_last_in_model_and_batches(trained, tmp_path):
    from scarce.engine.evaluation import evaluate_run

    run_dir = tmp_path / "cl"
    shutil.copytree(trained["plain"], run_dir)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("channels_last: false", "channels_last: true"))
    run = load_run(run_dir, "cpu")
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert run.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert run.preprocessor().memory_format == torch.channels_last
    # evaluate and predict go through the same loaded run: the same probabilities
    preds = predict_run(run_dir, DataConfig(name=str(trained["data"])), "test", num_workers=0, batch_size=4)
    scored = evaluate_run(run_dir, None, "test", tmp_path / "e.json", num_workers=0)
    assert scored["top1"] == pytest.approx(float((preds.probs.argmax(1) == preds.targets).mean()))


def test_a_failed_csv_write_keeps_the_previous_npz_and_csv_together(tmp_path, monkeypatch):
    """The npz was replaced before the CSV was written: a CSV that failed left a new npz beside
    the old CSV."""
    import scarce.inference.predict as predict
    from scarce.inference.predictions import Predictions

    def preds(p0):
        probs = np.array([[p0, 1 - p0], [0.3, 0.7]], dtype=np.float32)
        return Predictions(probs, np.array(["a", "b"]), np.array(["x", "y"]), np.array([0, 1]), {})

    out, table = tmp_path / "p.npz", tmp_path / "p.csv"
    predict.write_predictions(preds(0.9), out, table)
    before = out.read_bytes(), table.read_bytes()

    def disk_full(path, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "write_predictions_csv", disk_full)
    with pytest.raises(OSError, match="No space left"):
        predict.write_predictions(preds(0.2), out, table)
    assert (out.read_bytes(), table.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.npz"]  # no temporary left


def _fresh_copy(run_dir, to):
    """A copy of a trained run without the vote temperatures that earlier tests fitted and kept."""
    shutil.copytree(run_dir, to)
    calibration = json.loads((to / "calibration.json").read_text())
    calibration.pop("tta_temperatures", None)
    (to / "calibration.json").write_text(json.dumps(calibration))
    return to


def test_a_vote_over_views_uses_the_temperature_fitted_on_val_with_as_many_views(trained, tmp_path, monkeypatch):
    from scarce.calibration import fit_temperature
    from scarce.data.loader import build_eval_loader
    from scarce.inference import tta_calibration
    from scarce.inference.tta import TTATransform, tta_predict
    from scarce.models.heads import prediction_scores

    run_dir = _fresh_copy(trained["fancy"], tmp_path / "fancy")
    data = DataConfig(name=str(trained["data"]))
    four = predict_run(run_dir, data, "test", tta_views=4, num_workers=0)
    # by hand: the val split, 4 views each (seed 0), one row of scores per view
    run = load_run(run_dir, "cpu")
    val = eval_dataset(run, data, "val")
    val.transform = TTATransform(run.cfg.data, run.cfg.augment, run.augment_fill, 4, seed=0)
    source = prediction_source(run.cfg)
    scores, targets = tta_predict(
        run.model,
        build_eval_loader(val, 4, 0),
        run.preprocessor(),
        lambda outputs: prediction_scores(outputs, source=source),
        per_view=True,
    )
    assert scores.shape == (len(val), 4, len(CLASSES))
    expected = fit_temperature(scores, targets, (0.01, 100.0))
    assert four.metadata["temperature"] == pytest.approx(expected, rel=1e-6) != run.temperature
    assert four.metadata["temperature_views"] == 4
    saved = json.loads((run_dir / "calibration.json").read_text())
    assert saved["tta_temperatures"]["best.safetensors"]["4"] == four.metadata["temperature"]
    assert saved["temperature"] == run.temperature  # the single-view fit is kept
    # saved: the next vote over 4 views reads it (no val pass), and one view keeps the run's T
    monkeypatch.setattr(tta_calibration, "_fit_on_val", lambda *a: pytest.fail("fitted again"))
    again = predict_run(run_dir, data, "test", tta_views=4, num_workers=0)
    np.testing.assert_array_equal(again.probs, four.probs)
    one = predict_run(run_dir, data, "test", tta_views=1, num_workers=0)
    assert (one.metadata["temperature"], one.metadata["temperature_views"]) == (run.temperature, 1)
    single = predict_run(run_dir, data, "test", tta_views=4, num_workers=0, views_temperature=False)
    assert (single.metadata["temperature"], single.metadata["temperature_views"]) == (run.temperature, 1)
    assert not np.allclose(single.probs, four.probs, atol=1e-5)


def test_without_a_val_split_a_vote_keeps_the_single_view_temperature(trained, tmp_path):
    run_dir = tmp_path / "fancy"
    shutil.copytree(trained["fancy"], run_dir)
    (run_dir / "calibration.json").unlink()  # as a run trained without val
    two = predict_run(run_dir, DataConfig(name=str(trained["data"])), "test", tta_views=2, num_workers=0)
    assert (two.metadata["temperature"], two.metadata["temperature_views"]) == (1.0, 1)
    assert not (run_dir / "calibration.json").exists()


def test_a_vote_whose_val_split_is_gone_says_it_keeps_the_single_view_temperature(trained, tmp_path, capsys):
    run_dir, data = _fresh_copy(trained["fancy"], tmp_path / "fancy"), tmp_path / "data"
    shutil.copytree(trained["data"], data)
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace(str(trained["data"]), str(data)))
    for split in ("train", "val"):  # its val split (and the train it could be drawn from) are not here any more
        shutil.rmtree(data / split)

    out = tmp_path / "p.npz"
    assert main(["predict", str(run_dir), "--split", "test", "--tta", "2", "--out", str(out), "--workers", "0"]) == 0
    assert "note: --tta 2: no temperature fitted on val with 2 views" in capsys.readouterr().err
    meta = load_predictions(out).metadata
    assert (meta["temperature_views"], meta["temperature"]) == (
        1,
        json.loads((run_dir / "calibration.json").read_text())["temperature"],
    )


@pytest.mark.parametrize("damaged", [{"best.safetensors": {"2": -1.0}}, {"best.safetensors": "x"}, [1, 2]])
def test_a_damaged_vote_temperature_is_fitted_again(trained, tmp_path, damaged):
    run_dir = _fresh_copy(trained["fancy"], tmp_path / "fancy")
    calibration = json.loads((run_dir / "calibration.json").read_text())
    (run_dir / "calibration.json").write_text(json.dumps({**calibration, "tta_temperatures": damaged}))
    two = predict_run(run_dir, DataConfig(name=str(trained["data"])), "test", tta_views=2, num_workers=0)
    saved = json.loads((run_dir / "calibration.json").read_text())["tta_temperatures"]
    assert saved["best.safetensors"]["2"] == two.metadata["temperature"] > 0
    assert two.metadata["temperature_views"] == 2
