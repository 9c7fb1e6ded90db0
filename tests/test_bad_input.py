"""Every kind of bad input a hand-collected dataset holds: one line, exit 2, no traceback;
``--skip-bad-images`` skips, counts and lists; odd modes are converted; ``data check``."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import timm
from PIL import Image
from safetensors.torch import save_file

from scarce.cli import main
from scarce.data.check import check_image, check_split
from scarce.data.datasets import read_image
from scarce.errors import UserError
from tests.conftest import TINY, make_image_folder

SMALL = {"train": 6, "val": 2, "test": 2}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def write_bomb_png(path: Path, side: int = 20000) -> None:
    """A 119-byte PNG declaring side x side 1-bit pixels (20000^2 = 4e8 > 2 x MAX_IMAGE_PIXELS)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (side // 8 + 1) * 16)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )


def _noise(size: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _truncated(path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    _noise().save(buf, fmt)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


# kind -> (file name, writer, expected words of the reason)
BAD = {
    "zero-byte": ("zero.png", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "truncated JPEG": ("cut.jpg", lambda p: _truncated(p, "JPEG"), "image file is truncated"),
    "truncated PNG": ("cut.png", lambda p: _truncated(p, "PNG"), "image file is truncated"),
    "text named .jpg": ("notes.jpg", lambda p: p.write_text("not an image\n"), "cannot identify image file"),
    "decompression bomb": ("bomb.png", write_bomb_png, "decompression bomb refused"),
    "dangling symlink": ("gone.png", lambda p: p.symlink_to(p.parent / "missing.png"), "No such file"),
}


def _write_convertible(folder: Path) -> dict[str, Path]:
    """CMYK JPEG, RGBA PNG, 16-bit PNG, palette PNG with known pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        k: folder / n
        for k, n in (("cmyk", "cmyk.jpg"), ("rgba", "rgba.png"), ("gray16", "gray16.png"), ("palette", "palette.png"))
    }
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(paths["cmyk"])  # red
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))  # fully transparent...
    rgba.paste((0, 0, 255, 255), (0, 0, 10, 20))  # ...except an opaque blue left half
    rgba.save(paths["rgba"])
    gray = np.zeros((20, 20), np.uint16)
    gray[:, :10] = 65535
    gray[:, 10:] = 32768
    Image.fromarray(gray).save(paths["gray16"])
    _noise(20).quantize(16).save(paths["palette"])
    return paths


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_image_fails_fast_naming_file_and_reason(kind, tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split=SMALL)
    name, write, reason = BAD[kind]
    write(root / "train" / "dog" / name)
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out), *TINY]) == 2
    line = _one_line_error(capsys)
    assert f"dog/{name}" in line and reason in line and "--skip-bad-images" in line, line
    assert not (out / "config.yaml").exists()  # failed before training started


@pytest.mark.parametrize("switch", [["--skip-bad-images"], ["data.skip_bad_images=true"]])
def test_skip_bad_images_counts_lists_and_trains(switch, tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split=SMALL)
    where = ["train/cat", "train/dog", "train/emu", "val/cat", "test/dog", "train/cat"]
    for (name, write, _), folder in zip(BAD.values(), where):
        write(root / folder / name)
    _write_convertible(root / "train" / "emu")
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--out", str(out), "--no-progress", *TINY, "epochs=1", *switch]) == 0
    assert f"skipped {len(BAD)} unreadable images" in capsys.readouterr().out
    listed = json.loads((out / "bad_images.json").read_text())
    assert sorted(Path(b["path"]).name for b in listed) == sorted(n for n, _, _ in BAD.values())
    assert {b["split"] for b in listed} == {"train", "val", "test"} and all(b["reason"] for b in listed)
    sizes = json.loads((out / "classes.json").read_text())["split_sizes"]
    assert sizes == {"train": 18 + 4, "val": 6, "test": 6}  # the bad ones out, the 4 converted ones in


def test_modes_are_converted_as_documented(tmp_path):
    paths = _write_convertible(tmp_path)
    assert all(check_image(p, "RGB").ok for p in paths.values())
    assert read_image(paths["cmyk"], "RGB").getpixel((5, 5)) == (255, 0, 0)
    rgba = read_image(paths["rgba"], "RGB")
    assert rgba.getpixel((2, 5)) == (0, 0, 255) and rgba.getpixel((15, 5)) == (255, 255, 255)  # on white
    gray = read_image(paths["gray16"], "L")
    assert gray.getpixel((2, 5)) == 255 and gray.getpixel((15, 5)) == 128  # scaled, not clipped
    with Image.open(paths["palette"]) as img:
        expected = img.convert("RGB")
    assert np.array_equal(np.asarray(read_image(paths["palette"], "RGB")), np.asarray(expected))


def test_decompression_bomb_guard_holds(tmp_path):
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's default; scarce never lifts it
    write_bomb_png(tmp_path / "bomb.png")
    assert (tmp_path / "bomb.png").stat().st_size < 200
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "bomb.png")
    with pytest.raises(UserError, match="bomb.png: cannot be read .DecompressionBombError"):
        read_image(tmp_path / "bomb.png", "RGB")


def test_empty_class_folder_is_one_line_exit_2(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split=SMALL)
    (root / "train" / "zebra").mkdir()
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert "class folder 'zebra' has no images" in _one_line_error(capsys)
    assert main(["data", "check", str(root)]) == 2
    assert "class folder 'zebra' has no images" in _one_line_error(capsys)


@pytest.fixture(scope="module")
def unicode_run(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 1-epoch run on data whose root and classes have spaces and non-ASCII."""
    base = tmp_path_factory.mktemp("uni")
    root = make_image_folder(base / "données d'été", classes=("chat noir", "ñandú", "鳥 bird"), per_split=SMALL)
    out = base / "run été"
    assert main(["train", "--data", str(root), "--out", str(out), "--no-progress", *TINY, "epochs=1"]) == 0
    return root, out


def test_unicode_and_spaces_in_paths(unicode_run, capsys):
    root, out = unicode_run
    assert json.loads((out / "classes.json").read_text())["classes"] == ["chat noir", "ñandú", "鳥 bird"]
    assert main(["evaluate", str(out), "--split", "test", "--workers", "0"]) == 0
    assert '"count": 6' in capsys.readouterr().out
    assert main(["data", "check", str(root)]) == 0
    assert "鳥 bird" in capsys.readouterr().out


def test_unknown_class_at_evaluate_and_predict_time(unicode_run, tmp_path, capsys):
    _, out = unicode_run
    other = make_image_folder(tmp_path / "other", classes=("chat noir", "ñandú", "鳥 bird", "fox"), per_split=SMALL)
    assert main(["evaluate", str(out), "--data", str(other), "--workers", "0"]) == 2
    assert "'fox'" in _one_line_error(capsys)  # named, on one line
    assert (
        main(["predict", str(out), "--split", str(other / "test"), "--out", str(tmp_path / "p.npz"), "--workers", "0"])
        == 2
    )
    assert "['fox'] are not classes of the run" in _one_line_error(capsys)
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize(
    "model, classes", [("test_resnet", 5), ("test_efficientnet", 3)], ids=["class count", "architecture"]
)
def test_checkpoint_of_other_model_is_one_line_exit_2(model, classes, unicode_run, tmp_path, capsys):
    _, out = unicode_run
    run = shutil.copytree(out, tmp_path / "run")
    other = timm.create_model(model, num_classes=classes, in_chans=3)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(run / "best.safetensors"))
    assert main(["evaluate", str(run), "--workers", "0"]) == 2
    line = _one_line_error(capsys)
    assert "best.safetensors: do not fit this model" in line, line


@pytest.mark.parametrize(
    "args, message",
    [
        (["epochs=ten"], "config key 'epochs': expected int or one of auto, got 'ten'"),
        (["data.skip_bad_images=maybe"], "config key 'data.skip_bad_images': expected bool"),
        (["optim.lr=[0.1]"], "config key 'optim.lr': expected float"),
        (["augment.scale=0.5"], "config key 'augment.scale': expected a list of float"),
        (["data=demo"], "config key 'data': expected a mapping"),
        (["data.sampler=balanced", "loss.class_weights=auto"], "balances the classes twice"),
    ],
)
def test_config_with_wrong_types_is_one_line_exit_2(args, message, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), *TINY, *args]) == 2
    assert message in _one_line_error(capsys)


def test_recipe_file_with_wrong_types(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("epochs: 3\nmodel:\n  drop_rate: high\n")
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "config key 'model.drop_rate': expected float, got 'high'" in _one_line_error(capsys)


def test_data_check_reports_bad_files_and_duplicates(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split=SMALL, size=32)
    for name, write, _ in list(BAD.values())[:3]:
        write(root / "train" / "cat" / name)
    y, x = np.mgrid[0:32, 0:32]
    smooth = np.stack([128 + 100 * np.sin(x / 5.0), 128 + 100 * np.cos(y / 7.0), (x * 4 + y * 3) % 256], -1)
    source = Image.fromarray(smooth.astype(np.uint8))  # a photo-like test image and three copies in train
    source.save(root / "test" / "dog" / "photo.png")
    source.save(root / "train" / "dog" / "copy.png")  # exact
    source.save(root / "train" / "dog" / "reencoded.jpg", quality=70)  # near
    source.resize((64, 64), Image.Resampling.BICUBIC).save(root / "train" / "emu" / "big.png")  # near, other class
    (root / "train" / "cat" / "loop").symlink_to(root / "train" / "cat", target_is_directory=True)
    assert main(["data", "check", str(root), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "unreadable images: 3" in out and "problems: 6" in out
    report = json.loads((tmp_path / "r.json").read_text())
    dups = sorted((Path(d["train"]).name, d["kind"], Path(d["test"]).name) for d in report["duplicates"])
    assert dups == [
        ("big.png", "near", "photo.png"),
        ("copy.png", "exact", "photo.png"),
        ("reencoded.jpg", "near", "photo.png"),
    ]
    assert main(["data", "check", str(root), "--max-mae", "0", "--json", str(tmp_path / "r0.json")]) == 1
    exact_only = json.loads((tmp_path / "r0.json").read_text())
    assert exact_only["max_mae"] == 0 and "copy.png" in {Path(d["train"]).name for d in exact_only["duplicates"]}
    assert "reencoded.jpg" not in {Path(d["train"]).name for d in exact_only["duplicates"]}
    assert main(["data", "check", str(root), "--max-mae", "-1"]) == 2
    assert "--max-mae: expected grey levels in [0, 255]" in capsys.readouterr().err
    train = report["splits"]["train"]
    assert train["classes"] == {"cat": 6 + 3, "dog": 6 + 2, "emu": 6 + 1}  # the loop adds nothing
    assert train["modes"] == {"RGB": 6 * 3 + 3} and train["sizes"] == {"min": [32, 32], "max": [64, 64], "distinct": 2}


def test_data_check_and_preview_read_a_class_folder_and_list_skipped_files_once(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split={"train": 6})  # train/ but no val/: none drawn
    (root / "train" / "cat" / "notes.txt").write_text("x")
    assert main(["data", "check", str(root), "--json", str(tmp_path / "r.json")]) == 0
    assert capsys.readouterr().out.count("cat/notes.txt") == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["splits"]) == {"train"} and report["splits"]["train"]["classes"] == {"cat": 6, "dog": 6, "emu": 6}
    flat = root / "train"  # a folder of <class>/<image>: what --train takes
    assert main(["data", "check", str(flat), "--json", str(tmp_path / "f.json")]) == 0
    assert json.loads((tmp_path / "f.json").read_text())["splits"]["train"]["skipped_files"] == ["cat/notes.txt"]
    grid = tmp_path / "g.png"
    assert main(["augment", "preview", str(flat), *TINY, "--out", str(grid), "--images", "2", "--views", "1"]) == 0
    assert Image.open(grid).size[0] > 0
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2


def test_data_check_clean_dataset_exits_0(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split=SMALL)
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "problems: 0" in out and "cat" in out and "duplicates across splits" in out
    assert "not read as images" not in out
    (root / "train" / "cat" / "notes.txt").write_text("x")
    (root / "train" / "cat" / ".hidden.png").write_bytes((root / "train" / "cat" / "0.png").read_bytes())
    (root / "test" / "dog" / "noext").write_bytes((root / "test" / "dog" / "0.png").read_bytes())
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(root / "val" / "emu" / "photo.jfif", "JPEG")  # read
    assert main(["data", "check", str(root), "--json", str(tmp_path / "r.json")]) == 0  # listed, not problems
    out = capsys.readouterr().out
    assert "files not read as images (extension not .jpg/" in out and "hidden): 3" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["splits"]["train"]["skipped_files"] == ["cat/.hidden.png", "cat/notes.txt"]
    assert report["splits"]["test"]["skipped_files"] == ["dog/noext"] and report["splits"]["val"]["images"] == 7
    assert "sub-folders" not in out and report["splits"]["train"]["nested_folders"] == {}
    # a class folder holding sub-folders of images: read as the class, and shown (a folder one level too high?)
    (root / "train" / "emu" / "young").mkdir()
    young = np.random.default_rng(5).integers(0, 256, (20, 20, 3), dtype=np.uint8)  # no copy: not a repeat
    Image.fromarray(young).save(root / "train" / "emu" / "young" / "1.png")
    (root / "train" / "emu" / "empty").mkdir()
    assert main(["data", "check", str(root), "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "class folders with sub-folders (their images are read as the class): 1\n  train/emu: young" in out
    assert json.loads((tmp_path / "r.json").read_text())["splits"]["train"]["nested_folders"] == {"emu": ["young"]}


def test_skipping_every_image_of_a_train_class_is_an_error(tmp_path):
    from scarce.config import DataConfig
    from scarce.data import build_data
    from scarce.data.check import preflight

    root = make_image_folder(tmp_path / "data", per_split={"train": 2, "val": 1, "test": 1})
    for name in ("0.png", "1.png"):
        (root / "train" / "emu" / name).write_bytes(b"")
    (root / "val" / "emu" / "0.png").write_bytes(b"")  # an emptied val class is fine
    bundle = build_data(DataConfig(name=str(root)))
    with pytest.raises(UserError, match="class 'emu' has no readable images left"):
        preflight(bundle.splits, bundle.mode, skip_bad=True)
    (root / "train" / "emu" / "1.png").unlink()
    make_image_folder(tmp_path / "fresh", per_split={"train": 1})
    shutil.copy(tmp_path / "fresh" / "train" / "emu" / "0.png", root / "train" / "emu" / "1.png")
    splits, bad = preflight(build_data(DataConfig(name=str(root))).splits, bundle.mode, skip_bad=True)
    assert [(b["split"], Path(b["path"]).name) for b in bad] == [("train", "0.png"), ("val", "0.png")]
    assert len(splits["train"].ids) == 5 and len(splits["val"].ids) == 2


def test_bad_image_met_in_a_loader_worker_is_still_one_line(unicode_run, tmp_path, capsys):
    """evaluate has no up-front scan: the worker's UserError reaches the CLI without its traceback."""
    root, out = unicode_run
    data = shutil.copytree(root, tmp_path / "data")
    (data / "test" / "ñandú" / "0.png").write_bytes(b"")
    assert main(["evaluate", str(out), "--data", str(data), "--workers", "2"]) == 2
    line = _one_line_error(capsys)
    assert line.startswith("scarce evaluate: error: image ") and "ñandú/0.png: cannot be read" in line, line


def test_data_check_gives_width_and_height_ranges_and_label_conflicts(tmp_path, capsys):
    root = make_image_folder(tmp_path / "data", per_split=SMALL, size=32)
    _noise(48).resize((80, 20)).save(root / "train" / "cat" / "wide.png")  # widest, and shortest
    _noise(48).resize((24, 70)).save(root / "train" / "dog" / "tall.png")  # narrowest, and tallest
    twin = _noise(32, seed=7)
    twin.save(root / "train" / "cat" / "twin_a.png")
    twin.save(root / "train" / "emu" / "twin_b.png")  # the same pixels under another label
    Image.new("RGB", (8, 2)).save(root / "train" / "cat" / "black_wide.png")  # same bytes as a black 4x4,
    Image.new("RGB", (4, 4)).save(root / "train" / "dog" / "black_square.png")  # but another image
    assert main(["data", "check", str(root), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["splits"]["train"]["sizes"] == {"min": [4, 2], "max": [80, 70], "distinct": 5}
    assert "4..80 x 2..70" in out
    (conflict,) = report["label_conflicts"]
    assert conflict["split"] == "train" and conflict["labels"] == ["cat", "emu"]
    assert sorted(Path(p).name for p in conflict["paths"]) == ["twin_a.png", "twin_b.png"]
    assert "identical images under different labels: 1" in out and "problems: 1" in out
    assert report["repeats"] == []
    # the same image twice under one label is reported too (it would weigh, or score, twice)
    twin.save(root / "val" / "dog" / "again_a.png")
    twin.save(root / "val" / "dog" / "again_b.png")
    assert main(["data", "check", str(root), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    (repeat,) = json.loads((tmp_path / "r.json").read_text())["repeats"]
    assert repeat["split"] == "val" and repeat["labels"] == ["dog"]
    assert sorted(Path(p).name for p in repeat["paths"]) == ["again_a.png", "again_b.png"]
    assert "identical images repeated under one label (counted twice): 1" in out


@pytest.mark.parametrize("peak", [1023, 4095, 65535])
def test_high_bit_depth_pngs_use_their_real_range(tmp_path, peak):
    ramp = (np.linspace(0, peak, 64).reshape(8, 8)).round().astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # Pillow stores uint16 as a 16-bit PNG
    pixels = np.asarray(read_image(tmp_path / "deep.png", "L"))
    assert pixels.max() == 255 and pixels.min() == 0  # not dark: the 10/12-bit range fills 8 bits
    assert abs(int(pixels.flat[32]) - round(ramp.flat[32] / peak * 255)) <= 1


def test_bit_depth_reads_a_12_bit_dataset_alike_in_training_predict_and_the_api(tmp_path):
    """Per image, a dim 12-bit image (max 1000) is taken for 10-bit and reads 4x brighter;
    data.bit_depth=12 scales every image of the run by 4095, wherever it is read."""
    import scarce
    from scarce.config import load_config
    from scarce.data.loader import build_data, build_dataset
    from scarce.engine.trainer import train
    from scarce.inference.predict import predict_run

    root = tmp_path / "deep"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for cls in ("a", "b"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 1001, (16, 16)).astype(np.uint16)  # a dim 12-bit image
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    dim = root / "test" / "a" / "0.png"
    raw = np.asarray(Image.open(dim)).astype(np.float64)
    per_image = np.asarray(read_image(dim, "L"), dtype=np.int16)
    assert np.abs(per_image - np.round(raw / 1023 * 255)).max() <= 1  # the default: taken for 10-bit
    overrides = [*TINY, "epochs=1", "data.img_size=16", "data.bit_depth=12"]
    cfg = load_config(None, overrides, {"data": {"name": str(root)}})
    bundle = build_data(cfg.data)
    index = bundle.splits["test"].ids.index("a/0.png")
    as_12_bit = np.round(raw / 4095 * 255)
    seen = np.asarray(build_dataset(bundle, "test", cfg.data, None).load(index), dtype=np.int16)
    assert np.abs(seen - as_12_bit).max() <= 1
    cached = check_split(bundle.splits["test"], "L", keep_side=16)[index].pixels  # the scan's decode cache
    assert np.abs(cached.astype(np.int16) - as_12_bit).max() <= 1
    train(cfg, tmp_path / "run", progress=False)
    split = predict_run(
        tmp_path / "run", None, str(root / "test"), num_workers=0, device="cpu"
    )  # a folder: the run's depth
    model = scarce.load(tmp_path / "run", device="cpu")
    assert np.abs(np.asarray(model._image(str(dim), 0), dtype=np.int16) - as_12_bit).max() <= 1
    assert np.abs(np.asarray(model._image(Image.open(dim), 0), dtype=np.int16) - as_12_bit).max() <= 1
    api = model.predict([str(dim)])
    np.testing.assert_allclose(api.probs[0], split.probs[list(split.ids).index("a/0.png")], atol=1e-5)


def test_float_tiffs_in_unit_range_are_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(ramp, mode="F").save(tmp_path / "unit.tif")
    pixels = np.asarray(read_image(tmp_path / "unit.tif", "L"))
    assert pixels.max() == 255 and abs(int(pixels.flat[32]) - round(ramp.flat[32] * 255)) <= 1
    holes = ramp.copy()
    holes[0, 0], holes[0, 1] = np.nan, np.inf  # one bad value must not blank the image
    Image.fromarray(holes, mode="F").save(tmp_path / "holes.tif")
    with_holes = np.asarray(read_image(tmp_path / "holes.tif", "L"))
    assert with_holes[0, 0] == 0 and with_holes[0, 1] == 255 and with_holes.flat[32] == pixels.flat[32]
    big = np.linspace(0, 200, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(big, mode="F").save(tmp_path / "eight_bit.tif")
    assert np.asarray(read_image(tmp_path / "eight_bit.tif", "L")).max() == 200  # already 8-bit values


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["augment.lsb_swap.enabled=true", "augment.lsb_swap.partner=same_class"],
            "partner same_class needs stage sample",
        ),
        (["loss.name=ce", "model.prediction_source=g"], "model.prediction_source=g: loss.name=ce trains no head g"),
        (["data.name=fashion-mnist", "data.per_class=-5"], "config key 'data.per_class'"),
        (["data.name=fashion-mnist", "data.per_class=5", "data.val_per_class=-1"], "config key 'data.val_per_class'"),
    ],
    ids=["same_class_batch", "g_without_head", "per_class", "val_per_class"],
)
def test_settings_that_cannot_work_are_refused_before_training(overrides, message, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "r"), *TINY, *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_a_mistyped_data_folder_beside_train_is_an_error(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data")
    args = [
        "train",
        "--out",
        str(tmp_path / "r"),
        *TINY,
        "--data",
        str(tmp_path / "typo"),
        "--train",
        str(data / "train"),
    ]
    assert main(args) == 2
    assert f"data '{tmp_path / 'typo'}': not a built-in dataset" in capsys.readouterr().err


def test_lab_images_are_read_as_their_srgb_colours(tmp_path):
    """CIE L*a*b* TIFFs (Pillow cannot convert() them to RGB) go to sRGB through LittleCMS."""
    from PIL import ImageCms

    colours = np.array([[[200, 30, 30], [30, 160, 40]], [[20, 40, 220], [128, 128, 128]]], dtype=np.uint8)
    rgb = Image.fromarray(colours.repeat(4, axis=0).repeat(4, axis=1))
    srgb, lab = ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB")
    ImageCms.applyTransform(rgb, ImageCms.buildTransform(srgb, lab, "RGB", "LAB")).save(tmp_path / "lab.tif")
    assert Image.open(tmp_path / "lab.tif").mode == "LAB"
    back = np.asarray(read_image(tmp_path / "lab.tif", "RGB"), dtype=np.int16)
    assert np.abs(back - np.asarray(rgb, dtype=np.int16)).max() <= 8  # 8-bit L*a*b* and its D50 white
    grey = np.asarray(read_image(tmp_path / "lab.tif", "L"), dtype=np.int16)
    assert np.abs(grey - np.asarray(rgb.convert("L"), dtype=np.int16)).max() <= 8  # luma, as for RGB files


def test_unreadable_files_leave_train_before_val_is_drawn_from_it(tmp_path, capsys):
    from scarce.data.datasets import folder_split
    from scarce.data.splits import split_off_val
    from scarce.engine.evaluation import evaluate_run

    root = make_image_folder(tmp_path / "data", per_split={"train": 3, "test": 1})  # no val/: drawn from train
    # the image of each class that the val draw takes: made unreadable, a class would have no val image
    drawn = split_off_val(folder_split(root / "train"), 0.1, 0)[1].ids
    for name in drawn:
        (root / "train" / name).write_bytes(b"")
    out = tmp_path / "run"
    args = ["train", "--data", str(root), "--out", str(out), "--no-progress", *TINY, "epochs=1", "--skip-bad-images"]
    assert main(args) == 0
    out_text = capsys.readouterr().out
    assert "no image of" not in out_text
    # 1 of the 2 readable images of each class: the console says how far that is from val_fraction 0.1
    assert "3 train images (data.val_fraction=0.1" in out_text and "that is 50% of the train folder" in out_text
    record = json.loads((out / "classes.json").read_text())
    assert record["split_sizes"] == {"train": 3, "val": 3, "test": 3}  # of 2 readable per class, 1 to val
    assert not set(record["val_from_train"]) & set(drawn)
    listed = json.loads((out / "bad_images.json").read_text())
    assert sorted(b["path"] for b in listed) == sorted(str(root / "train" / name) for name in drawn)
    assert {b["split"] for b in listed} == {"train"}
    # evaluate draws val again, leaving out the same files: the draw matches the record
    scored = evaluate_run(out, None, "val", tmp_path / "v.json", num_workers=0)
    assert scored["count"] == 3
    assert evaluate_run(out, None, "test", tmp_path / "t.json", num_workers=0)["count"] == 3


def test_the_rebuild_after_skipped_files_keeps_the_mode_decided_on_every_image(tmp_path, monkeypatch):
    """Skipped unreadable train files leave the folder before val is drawn from it, which rebuilt
    the splits and guessed the mode again from a few images: colour data could train in gray."""
    import scarce.data.loader as loader
    from scarce.config import load_config
    from scarce.engine.startup import scan_data

    root = make_image_folder(tmp_path / "d", per_split={"train": 6}, mode="L")
    Image.new("RGB", (20, 20), (200, 30, 30)).save(root / "train" / "cat" / "red.png")  # one colour image
    (root / "train" / "dog" / "empty.png").write_bytes(b"")  # one unreadable: the rebuild
    guesses = iter(["RGB", "L"])  # the first guess saw the colour image; a second one might not
    monkeypatch.setattr(loader, "_sniff_mode", lambda split, probe=16: next(guesses))
    cfg = load_config(None, TINY, {"data": {"name": str(root), "skip_bad_images": True}})
    data, bad = scan_data(cfg, loader.build_data(cfg.data))
    assert data.mode == "RGB" and [Path(b["path"]).name for b in bad] == ["empty.png"]
    assert "dog/empty.png" not in data.splits["train"].ids + data.splits["val"].ids
