"""Reports: run report, ensemble report, augmentation preview, TensorBoard hook, headless browser."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scarce.cli import main
from scarce.config import load_config
from scarce.engine import tensorboard
from scarce.engine.trainer import train
from scarce.errors import UserError
from scarce.inference import run_ensemble, save_predictions
from scarce.report import build_ensemble_report, build_run_report
from scarce.report.ensemble import analyse_ensemble, load_ensemble
from scarce.report.preview import lsb_panel, preview_panels
from scarce.report.run import CACHE_FILE, split_scores
from tests.conftest import TINY

RUN_SECTIONS = ("summary", "curves", "confusion", "per-class", "reliability", "config", "timings", "environment")
ENSEMBLE_SECTIONS = ("breakdown", "confidence-bins", "threshold-curve", "files")
TAB_BLUE = (31, 119, 180)  # matplotlib's default first colour: proof a plot was painted


class FakeWriter:
    """Stands in for torch's SummaryWriter (tensorboard is an optional extra)."""

    instances: list[FakeWriter] = []

    def __init__(self, log_dir: str):
        self.log_dir, self.scalars, self.flushes, self.closed = log_dir, {}, 0, False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars[(tag, step)] = value

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 2-epoch run with EMA and log.tensorboard=true (fake writer); its report built once."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    cfg = load_config(None, TINY + ["ema.enabled=true", "log.tensorboard=true"], {"data": {"name": "demo"}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tensorboard, "tensorboard_available", lambda: True)
        mp.setattr(tensorboard, "_summary_writer", FakeWriter)
        train(cfg, run_dir, progress=False)
    build_run_report(run_dir, num_workers=0)
    return run_dir


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def _check_self_contained(html: str) -> None:
    assert "<script" not in html and "<link" not in html and not re.search(r'(src|href)="(https?:)?//', html)


def _check_images(html: str, out: Path, count: int) -> None:
    images = _images(html)
    assert len(images) == count
    for png in images:
        with Image.open(io.BytesIO(png)) as img:
            img.load()
            assert img.format == "PNG" and img.width > 300 and img.height > 150
    beside = sorted(out.parent.glob(out.stem + "_*.png"))
    assert len(beside) == count and sorted(p.read_bytes() for p in beside) == sorted(images)


def test_run_report_has_every_section_and_decodable_images(tiny_run):
    out = tiny_run / "report.html"
    html = out.read_text()
    for section in RUN_SECTIONS:
        assert f'<section id="{section}">' in html, section
    _check_self_contained(html)
    _check_images(html, out, 5)  # curves, confusion, per-class, reliability, timings
    calibration = json.loads((tiny_run / "calibration.json").read_text())
    assert f"{calibration['ece_test_before']:.4f}" in html and f"{calibration['ece_test_after']:.4f}" in html
    env = json.loads((tiny_run / "environment.json").read_text())
    assert env["torch"] in html and "test_resnet" in html and "val top-1 EMA" in html


def test_run_report_predictions_match_the_run(tiny_run):
    got = split_scores(tiny_run, num_workers=0)  # from the cache the report wrote
    test = json.loads((tiny_run / "test_metrics.json").read_text())
    pred, y = got["scores"].argmax(1), got["targets"]
    assert len(y) == test["count"] == 1000
    assert (pred == y).double().mean().item() == pytest.approx(test["top1"], abs=1e-12)
    for i, name in enumerate(got["classes"]):
        assert (pred[y == i] == i).double().mean().item() == pytest.approx(test["per_class"][name], abs=1e-12)
    assert f"top-1 recomputed from these predictions: {test['top1']:.4f}" in (tiny_run / "report.html").read_text()


def test_prediction_cache_is_reused_until_the_weights_change(tiny_run, tmp_path, monkeypatch):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    calls = []

    def fake_collect(model, loader, preprocess, source, amp="none"):
        calls.append(source)
        return torch.zeros(len(loader.dataset), 10), torch.tensor(loader.dataset.targets)

    monkeypatch.setattr("scarce.engine.calibrate.collect_scores", fake_collect)
    cached = split_scores(run, num_workers=0)
    assert calls == [] and cached["scores"].abs().sum() > 0
    weights = run / "best.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # new weights: stale cache
    fresh = split_scores(run, num_workers=0)
    assert len(calls) == 1 and fresh["scores"].abs().sum() == 0


def test_run_report_without_calibration_or_data_says_so(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "calibration.json").unlink()
    (run / CACHE_FILE).unlink()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["name"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = build_run_report(run, tmp_path / "r.html", num_workers=0)
    html = out.read_text()
    assert "test predictions unavailable" in html and str(tmp_path / "gone") in html
    assert (
        f"report: test predictions unavailable (image folder {tmp_path / 'gone'}: not found)" in capsys.readouterr().out
    )
    assert all(f'<section id="{s}">' in html for s in RUN_SECTIONS)
    _check_images(html, out, 2)  # curves and timings still render


def test_report_of_a_run_without_a_test_split_scores_the_folder_given_with_split(tiny_run, tmp_path, capsys):
    from scarce.data.splits import DEMO_ROOT

    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / CACHE_FILE).unlink()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["data"]["name"] = None  # trained on its own train folder: no test split known
    cfg["data"]["train"] = str(DEMO_ROOT / "train")
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["report", str(run), "--workers", "0"]) == 0
    assert "give --split FOLDER" in capsys.readouterr().out
    assert main(["report", str(run), "--split", str(DEMO_ROOT / "test"), "--workers", "0"]) == 0
    html = (run / "report.html").read_text()
    assert f"Confusion matrix (folder {DEMO_ROOT / 'test'}, the weights kept in best.safetensors)" in html
    assert "(1000 of 1000)" not in html and re.search(r"\(\d+ of 1000\)", html)
    assert "unavailable" not in html


def test_report_cli_and_bad_input(tiny_run, tmp_path, capsys):
    out = tmp_path / "sub" / "mine.html"
    assert main(["report", str(tiny_run), "--out", str(out), "--workers", "0"]) == 0
    assert out.is_file() and (out.parent / "mine_curves.png").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert main(["report"]) == 2
    assert "give a RUN_DIR, or --ensemble FINAL_NPZ" in capsys.readouterr().err


def test_tensorboard_logs_the_metrics_rows(tiny_run):
    (writer,) = [w for w in FakeWriter.instances if w.log_dir == str(tiny_run / "tensorboard")]
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        step = row["epoch"] + 1
        assert writer.scalars[("train/loss", step)] == row["train_loss"]
        assert writer.scalars[("val/top1", step)] == row["val_top1"]
        assert writer.scalars[("val/top1_ema", step)] == row["val_top1_ema"]
        assert writer.scalars[("train/lr", step)] == row["lr"]
    assert writer.flushes == len(rows) == 2 and writer.closed


def test_tensorboard_switch_without_the_package_is_a_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tensorboard, "tensorboard_available", lambda: False)
    assert isinstance(tensorboard.open_tensorboard(True, tmp_path), tensorboard.NullLogger)
    assert "tensorboard package is not installed" in capsys.readouterr().out
    assert isinstance(tensorboard.open_tensorboard(False, tmp_path), tensorboard.NullLogger)
    assert load_config(None, []).log.tensorboard is False


# ---------------------------------------------------------------- ensemble


def _member(rng, y, strength, classes=5):
    logits = rng.normal(size=(len(y), classes))
    logits[np.arange(len(y)), y] += strength
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.fixture
def ensemble(tmp_path):
    """Three members (base first) on 400 labelled samples, one stored in another row order."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 400)
    ids, classes = [f"img{i:03d}" for i in range(400)], [f"c{j}" for j in range(5)]
    paths = []
    for m, strength in enumerate((1.6, 1.3, 1.1)):
        probs, order = _member(rng, y, strength), np.arange(400)
        if m == 2:
            order = rng.permutation(400)
        paths.append(tmp_path / f"m{m}.npz")
        save_predictions(paths[-1], probs[order], np.array(ids)[order], classes, y[order], {"model": f"m{m}"})
    final = tmp_path / "final.npz"
    report = run_ensemble(paths[0], paths, method="plurality", threshold=0.7, out_path=final, log=lambda s: None)
    return final, paths, report


def test_ensemble_report_sections_and_images(ensemble):
    final, _, _ = ensemble
    out = build_ensemble_report(final)  # members from final.npz's metadata
    assert out == final.with_name("final_report.html")
    html = out.read_text()
    for section in ENSEMBLE_SECTIONS:
        assert f'<section id="{section}">' in html, section
    _check_self_contained(html)
    _check_images(html, out, 2)  # confidence bins, threshold curve
    assert "weights (" not in html  # a plurality vote has none


def test_ensemble_report_shows_a_weighted_votes_weights(ensemble, tmp_path):
    _, paths, _ = ensemble
    weighted = tmp_path / "weighted.npz"
    run_ensemble(None, paths, method="weighted", weights=[2, 1, 1], out_path=weighted, log=lambda s: None)
    html = build_ensemble_report(weighted).read_text()
    assert "weights (given)" in html and "m0.npz=0.500, m1.npz=0.250, m2.npz=0.250" in html


def test_ensemble_analysis_agrees_with_the_vote(ensemble):
    final, paths, report = ensemble
    a = analyse_ensemble(load_ensemble(final))
    with np.load(final) as z:
        pred = z["pred"]
    with np.load(paths[0]) as z:
        base_answer, y = z["probs"].argmax(1), z["targets"]
    assert a["replaced"] == report["replaced"] == int((pred != base_answer).sum()) > 0
    assert a["accuracy"]["base"] == pytest.approx(report["accuracy"]["base"])
    assert a["accuracy"]["final"] == pytest.approx(report["accuracy"]["plurality"])
    assert a["accuracy"]["oracle"] == pytest.approx(report["accuracy"]["oracle"])
    assert a["fixed"] - a["broken"] == int((pred == y).sum()) - int((base_answer == y).sum())
    assert a["fixed"] + a["broken"] + a["other"] == a["replaced"]
    b = a["bins"]
    assert sum(b["counts"]) == 400
    assert np.dot(b["counts"], b["base"]) / 400 == pytest.approx(a["accuracy"]["base"])
    assert np.dot(b["counts"], b["final"]) / 400 == pytest.approx(a["accuracy"]["final"])
    curve = {row.threshold: row for row in a["curve"]}
    assert curve[0.0].accuracy == pytest.approx(a["accuracy"]["base"]) and curve[0.0].replaced == 0
    assert curve[0.7].accuracy == pytest.approx(a["accuracy"]["final"]) and curve[0.7].replaced == a["replaced"] / 400


def test_ensemble_report_members_option_unlabelled_and_cli(ensemble, tmp_path, capsys):
    final, paths, _ = ensemble
    moved = tmp_path / "moved"
    moved.mkdir()
    for p in paths:
        shutil.move(p, moved / p.name)
    with pytest.raises(UserError, match="not found .*pass --members"):
        build_ensemble_report(final)
    members = [str(moved / p.name) for p in paths]
    out = tmp_path / "e.html"
    assert main(["report", "--ensemble", str(final), "--members", *members, "--out", str(out)]) == 0
    assert "m2.npz" in out.read_text()
    # Unlabelled: the breakdown still renders, the label-only parts say why they are missing.
    with np.load(moved / "m0.npz") as z:
        save_predictions(tmp_path / "u0.npz", z["probs"], z["ids"], z["classes"], None)
    with np.load(moved / "m1.npz") as z:
        save_predictions(tmp_path / "u1.npz", z["probs"], z["ids"], z["classes"], None)
    unl = [tmp_path / "u0.npz", tmp_path / "u1.npz"]
    run_ensemble(unl[0], unl, out_path=tmp_path / "uf.npz", log=lambda s: None)
    html = build_ensemble_report(tmp_path / "uf.npz").read_text()
    assert "no labels" in html and all(f'<section id="{s}">' in html for s in ENSEMBLE_SECTIONS)
    assert main(["report", "--ensemble", str(moved / "m0.npz")]) == 2  # a predictions file is not an ensemble output
    assert "not a scarce ensemble output" in capsys.readouterr().err


# ---------------------------------------------------------------- headless browser


@pytest.mark.parametrize("which", ["run", "ensemble"])
def test_report_renders_in_headless_chromium(which, tiny_run, ensemble, tmp_path):
    exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    page = tiny_run / "report.html" if which == "run" else build_ensemble_report(ensemble[0])
    shot = tmp_path / "shot.png"
    cmd = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,2000",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    with Image.open(shot) as img:
        rgb = np.asarray(img.convert("RGB")).astype(int)
    assert rgb.shape == (2000, 1200, 3)
    ink = (rgb.min(axis=2) < 200).mean()  # not a blank page, not a solid fill
    assert 0.02 < ink < 0.9, ink
    plotted = (np.abs(rgb - TAB_BLUE).max(axis=2) < 12).sum()  # an embedded figure was decoded and painted
    assert plotted > 500, plotted


# ---------------------------------------------------------------- augmentation preview


def _preview_cfg(*overrides):
    base = ["data.img_size=28", "augment.scale=[1, 1]", "augment.ratio=[1, 1]", "augment.hflip=0", "data.num_workers=0"]
    return load_config(None, base + list(overrides), {"data": {"name": "demo"}})


def _arrays(panels):
    return [np.asarray(im[0] if isinstance(im, tuple) else im) for _, rows in panels for _, ims in rows for im in ims]


def test_preview_of_an_identity_pipeline_shows_the_originals_exactly():
    (_, rows), _ = preview_panels(_preview_cfg(), n_images=4, views=2)
    originals = [im[0] for im in rows[0][1]]
    for _, views in rows[1:]:
        assert all(np.array_equal(o, v) for o, v in zip(originals, views))


def test_preview_shows_device_side_random_erasing():
    (_, rows), _ = preview_panels(_preview_cfg("augment.re_prob=1.0"), n_images=4, views=1)
    originals = [im[0] for im in rows[0][1]]
    assert all(not np.array_equal(o, v) for o, v in zip(originals, rows[1][1]))


def test_preview_is_seeded():
    cfg = _preview_cfg("augment.randaugment=rand-m9-mstd0.5", "augment.lsb_swap.enabled=true", "augment.re_prob=0.3")
    first, again, other = (_arrays(preview_panels(cfg, 4, 2, seed=s)) for s in (3, 3, 4))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_lsb_panel_bit_planes_come_from_the_partner():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, 256, (1, 8, 8), generator=g, dtype=torch.uint8) for _ in range(2))
    rows = lsb_panel(a, b, bits=2)
    assert [label for label, _ in rows] == ["images", "bit-plane 0", "bit-plane 1"]
    after = rows[0][1][2][0]
    assert np.array_equal(after >> 2, a[0].numpy() >> 2)  # what you see is a's
    for k, (_, planes) in enumerate(rows[1:]):
        pa, pb, pafter = (p[0] for p in planes)
        assert np.array_equal(pafter, pb) and not np.array_equal(pa, pb)
        assert np.array_equal(pb, ((b[0].numpy() >> k) & 1) * 255)


def test_augment_preview_cli(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = [
        "augment",
        "preview",
        "demo",
        "--recipe",
        "demo",
        "augment.lsb_swap.enabled=true",
        "--out",
        str(out),
        "--images",
        "3",
        "--views",
        "1",
        "data.num_workers=0",
    ]
    assert main(argv) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 300
    assert main(["augment", "preview", "demo", "--out", str(out), "--images", "0"]) == 2
    assert "--images and --views" in capsys.readouterr().err
    jpeg = tmp_path / "grid.jpg"
    assert (
        main(["augment", "preview", "demo", "--recipe", "demo", "--out", str(jpeg), "--images", "2", "--views", "1"])
        == 0
    )
    with Image.open(jpeg) as img:
        assert img.format == "JPEG"  # the suffix names the format


def test_augment_preview_refuses_a_config_train_refuses(tmp_path, capsys):
    out = tmp_path / "grid.png"
    swap = ["augment.lsb_swap.enabled=true", "augment.lsb_swap.stage=batch"]
    argv = ["augment", "preview", "demo", *swap, "augment.lsb_swap.placement=before_randaugment", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "placement before_randaugment needs stage sample" in err[0]
    assert not out.exists()


def test_prediction_cache_is_stale_when_the_test_images_change(tmp_path, monkeypatch):
    from PIL import Image

    from scarce.config import load_config
    from scarce.engine.trainer import train
    from tests.conftest import TINY, make_image_folder

    data = make_image_folder(tmp_path / "data")
    train(load_config(None, TINY + ["epochs=1"], {"data": {"name": str(data)}}), tmp_path / "run", progress=False)
    first = split_scores(tmp_path / "run", num_workers=0)
    calls = []
    monkeypatch.setattr(
        "scarce.engine.calibrate.collect_scores",
        lambda model, loader, *a, **k: (
            calls.append(1) or (torch.zeros(len(loader.dataset), 3), torch.tensor(loader.dataset.targets))
        ),
    )
    assert split_scores(tmp_path / "run", num_workers=0)["scores"].shape == first["scores"].shape and calls == []
    Image.new("RGB", (20, 20), (40, 40, 40)).save(data / "test" / "cat" / "new.png")  # a test image added
    again = split_scores(tmp_path / "run", num_workers=0)
    assert calls == [1] and len(again["targets"]) == len(first["targets"]) + 1


def test_report_of_an_unfinished_run_says_so(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / "summary.json").unlink()
    html = build_run_report(run, tmp_path / "r.html", num_workers=0).read_text()
    assert "This run is unfinished" in html and f"scarce train --resume {run}" in html
    assert "This run is unfinished" not in build_run_report(tiny_run, tmp_path / "done.html", num_workers=0).read_text()


def test_report_of_a_run_stopped_before_its_first_epoch_gives_the_resume_command(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / "config.yaml", run)  # what a run stopped during its first epoch leaves
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"scarce report: error: {run}: no finished epoch yet, so nothing to report; "
        f"continue it with: scarce train --resume {run}"
    ]
    (run / "environment.json").write_text(json.dumps({"world_size": 4, "local_world_size": 2}))
    (run / "metrics.jsonl").write_text("")
    assert main(["report", str(run)]) == 2
    assert f"torchrun --nproc_per_node 2 -m scarce train --resume {run} on each of 2 nodes" in capsys.readouterr().err
    assert not (run / "report.html").exists()


def test_a_read_only_run_directory_still_gets_its_report_and_evaluation_elsewhere(tiny_run, tmp_path, monkeypatch):
    import scarce.report.run as report_run

    run = shutil.copytree(tiny_run, tmp_path / "run")
    (run / CACHE_FILE).unlink()

    def read_only(path):  # what writing into a read-only folder raises (root ignores chmod, so simulated)
        if Path(path).parent == run:
            raise PermissionError(13, "Read-only file system", str(path))
        return real_atomic_path(path)

    real_atomic_path = report_run.atomic_path
    monkeypatch.setattr(report_run, "atomic_path", read_only)
    before = sorted(p.name for p in run.iterdir())
    out = tmp_path / "elsewhere" / "report.html"
    assert main(["report", str(run), "--out", str(out), "--workers", "0"]) == 0
    assert out.is_file() and "test predictions unavailable" not in out.read_text()
    assert main(["evaluate", str(run), "--out", str(tmp_path / "elsewhere" / "eval.json"), "--workers", "0"]) == 0
    assert (tmp_path / "elsewhere" / "eval.json").is_file()
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written into the run


def test_preview_shows_mixup_between_the_previewed_images():
    (_, plain), _ = preview_panels(_preview_cfg(), n_images=4, views=1)
    (title, rows), _ = preview_panels(_preview_cfg("augment.mix.mixup_alpha=1.0"), n_images=4, views=1)
    label, views = rows[1]
    lam = float(label.split("mixup, ")[1].split(" own")[0])
    originals = np.stack([im[0] for im in plain[0][1]]).astype(float)
    expected = lam * originals + (1 - lam) * originals[::-1]  # image i blended with image 3 - i
    assert (
        title.endswith(", mixup 1") and np.abs(np.stack(views) - expected).max() <= 1 + 255 * 0.005
    )  # lam printed to 2 digits


def test_soft_ensemble_report_names_no_base_nor_threshold(ensemble, tmp_path, monkeypatch):
    _, paths, _ = ensemble
    monkeypatch.chdir(tmp_path)  # members given relative: the report must find them from elsewhere
    soft = tmp_path / "soft.npz"
    run_ensemble(None, [p.name for p in paths], method="soft", out_path=soft, log=lambda s: None)
    monkeypatch.chdir(tmp_path.parent)
    html = build_ensemble_report(soft).read_text()
    assert "reference below (no base in this vote)" in html and "answers differing from the reference" in html
    assert ">base<" not in html and "threshold source" not in html and "answers replaced" not in html
