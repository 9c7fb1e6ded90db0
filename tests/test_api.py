"""The Python API and predicting image files: the same answers as scarce's own split predictions."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import scarce
from scarce.cli import main
from scarce.config import DataConfig
from scarce.errors import UserError
from scarce.inference.predict import predict_run
from tests.conftest import TINY

DEMO_TEST = Path(scarce.__file__).parent / "data" / "demo" / "test"


def _settings() -> dict:
    pairs = [item.split("=", 1) for item in TINY]
    import yaml

    return {key: yaml.safe_load(value) for key, value in pairs}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return scarce.train(recipe=None, data="demo", out=out, **{**_settings(), "epochs": 1})


def test_train_returns_the_run_and_its_summary(run):
    assert run.path.is_dir() and (run.path / "summary.json").is_file()
    assert run.summary["test"]["count"] == 1000


def test_load_predict_matches_split_predictions(run):
    files = sorted(DEMO_TEST.glob("*/*.png"))[::50]
    model = scarce.load(run.path, device="cpu")
    result = model.predict([str(f) for f in files])
    split = predict_run(run.path, DataConfig(name="demo"), "test", num_workers=0, device="cpu")
    ids = list(split.ids)
    rows = [ids.index(f"test/{f.parent.name}/{f.name}") for f in files]
    np.testing.assert_allclose(result.probs, split.probs[rows], atol=1e-5)
    assert result.labels == [split.classes[j] for j in split.probs[rows].argmax(1)]
    assert result.top(0, 3)[0] == (result.labels[0], pytest.approx(float(result.confidence[0])))


def test_predict_takes_pil_images_and_uint8_tensors(run):
    path = sorted(DEMO_TEST.glob("Bag/*.png"))[0]
    model = run.load(device="cpu")
    pil = Image.open(path)
    tensor = torch.from_numpy(np.array(pil.convert("L")))[None]  # uint8 [1, H, W]
    by_path, by_pil, by_tensor = (model.predict([x]).probs for x in (str(path), pil, tensor))
    np.testing.assert_allclose(by_pil, by_path, atol=1e-6)
    np.testing.assert_allclose(by_tensor, by_path, atol=1e-6)
    with pytest.raises(UserError, match="image 0: expected a file path"):
        model.predict([3.5])


def test_a_pil_image_with_an_exif_orientation_is_turned_upright_as_its_file_is(run):
    import io

    path = sorted(DEMO_TEST.glob("Bag/*.png"))[0]
    stored = io.BytesIO()  # a camera's way: pixels stored rotated, plus the tag that turns them back
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.open(path).transpose(Image.Transpose.ROTATE_90).save(stored, "PNG", exif=exif)
    model = run.load(device="cpu")
    by_path, by_pil = (model.predict([x]).probs for x in (str(path), Image.open(stored)))
    np.testing.assert_allclose(by_pil, by_path, atol=1e-6)


def test_cli_prints_label_confidence_and_top3_per_image(run, capsys):
    files = [str(p) for p in sorted(DEMO_TEST.glob("Coat/*.png"))[:2]]
    assert main(["predict", str(run.path), *files, "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f) and "top-3:" in line for line, f in zip(lines, files))


def test_predict_takes_uint8_numpy_arrays_as_pil_does(run):
    path = sorted(DEMO_TEST.glob("Bag/*.png"))[0]
    model = run.load(device="cpu")
    grey = np.array(Image.open(path).convert("L"))  # uint8 [H, W]
    opaque = np.full_like(grey, 255)
    arrays = [grey, grey[:, :, None], np.stack([grey] * 3, -1), np.stack([grey] * 3 + [opaque], -1)]
    expected = model.predict([str(path)]).probs
    for array in arrays:  # [H, W], [H, W, 1], RGB and opaque RGBA of equal channels: the same grey image
        np.testing.assert_allclose(model.predict([array]).probs, expected, atol=1e-6)
    rgb = torch.from_numpy(np.stack([grey] * 3))  # uint8 [3, H, W]
    np.testing.assert_allclose(model.predict([rgb]).probs, expected, atol=1e-6)


@pytest.mark.parametrize(
    "image, message",
    [
        (
            torch.zeros(40, 40, 3, dtype=torch.uint8),
            r"uint8 tensor \[C, H, W\] or \[H, W\] expected \(C = 1, 3 or 4\), got uint8 tensor \[40, 40, 3\]",
        ),
        (torch.zeros(3, 8, 8), r"uint8 tensor \[C, H, W\] .* got float32 tensor \[3, 8, 8\]"),
        (np.zeros((8, 8), np.float32), r"uint8 numpy array \[H, W, C\] .* got float32 numpy array \[8, 8\]"),
        (np.zeros((8, 8, 2), np.uint8), r"got uint8 numpy array \[8, 8, 2\]"),
        (np.zeros((2, 8, 8, 3), np.uint8), r"got uint8 numpy array \[2, 8, 8, 3\]"),
    ],
)
def test_predict_refuses_other_arrays_in_one_line(run, image, message):
    with pytest.raises(UserError, match=f"^image 0: .*{message}$"):
        run.load(device="cpu").predict([image])


def test_predict_of_an_unreadable_file_says_why_in_one_line(run, tmp_path):
    """As ``scarce predict`` does: Pillow alone says an empty file "cannot identify image file"."""
    model = run.load(device="cpu")
    empty, text = tmp_path / "zero.png", tmp_path / "notes.png"
    empty.write_bytes(b"")
    text.write_text("not an image\n")
    with pytest.raises(UserError) as raised:
        model.predict([str(empty)])
    assert str(raised.value) == (
        f"image {empty}: empty file (0 bytes); fix or remove it, or leave it out of the images to predict"
    )
    with pytest.raises(UserError, match=r"notes.png: not a readable image \(UnidentifiedImageError: .*; fix or remove"):
        model.predict([text])


def test_predict_of_one_image_not_in_a_list_says_to_wrap_it(run):
    from PIL import Image

    model = run.load(device="cpu")
    for one in ("shoe.png", Path("shoe.png"), Image.new("L", (8, 8))):
        with pytest.raises(UserError, match=r"^images: expected a list of images, got one .*; give \[image\]$"):
            model.predict(one)


def test_cli_predict_without_images_or_out_says_what_to_give(run, capsys):
    assert main(["predict", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert (
        err == "scarce predict: error: give image files to print their labels, or --out FILE.npz to predict a split\n"
    )
    assert main(["predict", str(run.path), "--csv", "p.csv"]) == 2
    assert "--csv p.csv goes with --out FILE.npz" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"scarce {scarce.__version__}"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_scarce_probabilities(run, tmp_path, fmt):
    from scarce.data.transforms import EvalTransform
    from scarce.engine.evaluation import load_run

    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    assert main(["export", str(run.path), "--format", fmt, "--out", str(out)]) == 0
    loaded = load_run(run.path)
    files = sorted(DEMO_TEST.glob("*/*.png"))[::25]
    expected = scarce.load(run.path, device="cpu").predict([str(f) for f in files]).probs
    transform = EvalTransform(loaded.cfg.data)
    x = torch.stack([transform(None, 0, Image.open(f).convert("L")) for f in files]).float()
    x = (x / 255 - torch.tensor(loaded.mean).view(1, -1, 1, 1)) / torch.tensor(loaded.std).view(1, -1, 1, 1)
    if fmt == "onnx":
        import onnxruntime as ort  # in the dev extra: this test always runs

        got = ort.InferenceSession(str(out)).run(None, {"images": x.numpy()})[0]
    else:
        got = torch.jit.load(str(out))(x).detach().numpy()
    assert np.abs(got - expected).max() <= 1e-4
    meta = json.loads(out.with_name(out.name + ".json").read_text())  # what a user needs to feed it
    data = loaded.cfg.data
    assert (meta["crop_pct"], meta["small_images"]) == (data.crop_pct, data.small_images)
    assert f"centre-crop {data.img_size} x {data.img_size}" in meta["preprocess"]
    assert meta["colour"].startswith(f"images converted to {loaded.mode}")
    assert (meta["bit_depth"], meta["computes_in"], meta["scarce_predict_amp"]) == (
        data.bit_depth,
        "float32",
        loaded.amp,
    )


def test_export_writes_only_its_own_kind_of_file(run, tmp_path, capsys):
    """--out of another kind (an image, the other format) is refused before anything is written;
    a new folder given with a trailing slash gets model.pt inside it, not a file named like it."""
    image = tmp_path / "shoe.png"
    image.write_bytes(b"an image a user keeps")
    for fmt, out in (("onnx", image), ("torchscript", tmp_path / "m.onnx")):
        assert main(["export", str(run.path), "--format", fmt, "--out", str(out)]) == 2
        assert (
            f"--out {out}: expected a file name ending in .{'onnx' if fmt == 'onnx' else 'pt'}"
            in capsys.readouterr().err
        )
    assert image.read_bytes() == b"an image a user keeps" and not (tmp_path / "m.onnx").exists()
    assert main(["export", str(run.path), "--format", "torchscript", "--out", f"{tmp_path / 'new'}/"]) == 0
    assert (tmp_path / "new" / "model.pt").is_file() and (tmp_path / "new" / "model.pt.json").is_file()


def test_export_states_the_evaluation_view():
    from scarce.inference.export import eval_view_recipe

    assert eval_view_recipe(64, 0.875, "resize") == (
        "resize the shorter side to 73 px and the longer in proportion, rounded down (bilinear, antialiased), "
        "centre-crop 64 x 64"
    )
    assert eval_view_recipe(32, 1.0, "pad").startswith("images no larger than 32 px: zero-pad around them to 32 x 32")


def test_export_into_a_folder_of_a_head_g_run_writes_model_onnx_quietly(tmp_path, recwarn, capsys):
    settings = {**_settings(), "epochs": 1, "loss.name": "focal_cosine"}
    trained = scarce.train(recipe=None, data="demo", out=tmp_path / "g", **settings)
    (tmp_path / "exp").mkdir()
    assert main(["export", str(trained.path), "--out", str(tmp_path / "exp")]) == 0
    assert (tmp_path / "exp" / "model.onnx").is_file() and (tmp_path / "exp" / "model.onnx.json").is_file()
    assert f"wrote {tmp_path / 'exp' / 'model.onnx'}" in capsys.readouterr().out
    assert not [w for w in recwarn if issubclass(w.category, torch.jit.TracerWarning)]


def test_torchscript_export_prints_no_deprecation_warning(run, tmp_path):
    import warnings

    def trace_warnings(caught) -> list[str]:
        return [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2))
        before = trace_warnings(caught)
        assert main(["export", str(run.path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
        exported = trace_warnings(caught)[len(before) :]
        torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2))
        after = trace_warnings(caught)[len(before) + len(exported) :]
    assert exported == []
    # silenced around export's trace only: a trace after it warns as one before it did (torch 2.14
    # marks torch.jit.trace deprecated, 2.11 did not)
    assert after == before


def test_train_resume_of_no_run_says_what_out_holds(tmp_path):
    """As ``scarce train --resume``, not a recipe error listing the built-in recipes."""
    with pytest.raises(UserError, match=r"scarce.train\(resume=True, out='.*gone'\): no such run directory$"):
        scarce.train(out=str(tmp_path / "gone"), resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"out='.*empty'\): no config.yaml there \(not a scarce run directory"):
        scarce.train(recipe="demo", out=str(tmp_path / "empty"), resume=True)
    assert list((tmp_path / "empty").iterdir()) == []
