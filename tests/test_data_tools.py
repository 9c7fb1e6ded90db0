"""``scarce data subset`` places copies unless links are asked for; ``data check`` and the
config refuse what ``scarce train`` would refuse or silently ignore."""

import json
import os
from pathlib import Path

import pytest
from conftest import TINY, make_image_folder

from scarce.cli import main
from scarce.config import load_config
from scarce.data.subset import read_manifest
from scarce.errors import UserError


def _subset_files(dst: Path) -> list[tuple[Path, Path]]:
    """(source, subset file) of every manifest row."""
    return [(Path(row["source"]), Path(row["path"])) for row in read_manifest(dst)]


def test_subset_copies_by_default_and_hard_links_only_with_link_hard(tmp_path, capsys):
    src = make_image_folder(tmp_path / "src", per_split={"train": 4, "test": 1}, size=8)
    base = ["data", "subset", str(src), "--per-class", "2", "--val-per-class", "1"]
    assert main([*base[:3], str(tmp_path / "copy"), *base[3:]]) == 0
    copied = _subset_files(tmp_path / "copy")
    assert len(copied) == 3 * (2 + 1 + 1)
    for source, path in copied:
        assert path.read_bytes() == source.read_bytes()
        assert os.stat(path).st_ino != os.stat(source).st_ino and os.stat(source).st_nlink == 1
    source, path = copied[0]
    original = source.read_bytes()
    path.write_bytes(b"edited in place")
    assert source.read_bytes() == original  # the source dataset is untouched

    assert main([*base[:3], str(tmp_path / "hard"), *base[3:], "--link", "hard"]) == 0
    linked = _subset_files(tmp_path / "hard")
    assert [s for s, _ in linked] == [s for s, _ in copied]  # the same sample, only placed otherwise
    for source, path in linked:
        assert os.stat(path).st_ino == os.stat(source).st_ino and os.stat(source).st_nlink == 2
    assert "hard (hard links" in _help(["data", "subset", "--help"], capsys)


def test_subset_draws_readable_images_only_and_says_what_it_passed_over(tmp_path, capsys):
    src = make_image_folder(tmp_path / "src", per_split={"train": 3}, size=8)
    for i in range(3, 6):  # cat: 3 images and 3 that train's scan would refuse
        (src / "train" / "cat" / f"{i}.png").write_bytes(b"" if i == 3 else b"not an image")
    assert main(["data", "subset", str(src), str(tmp_path / "sub"), "--per-class", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"wrote {tmp_path / 'sub'}: 3 classes, 9 train") and out[1].startswith("passed over ")
    assert sorted(p.name for p in (tmp_path / "sub" / "train" / "cat").iterdir()) == ["0.png", "1.png", "2.png"]
    assert main(["data", "subset", str(src), str(tmp_path / "sub2"), "--per-class", "4"]) == 2
    assert "class 'cat' has 3 readable images (3 unreadable), 4 asked" in capsys.readouterr().err
    assert not (tmp_path / "sub2").exists()


def _help(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit):
        main(args)
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("argv", "listed"), [(["data"], "{subset,check}"), (["augment"], "{preview}")])
def test_a_missing_subcommand_is_named_by_the_list_of_them(capsys, argv, listed):
    with pytest.raises(SystemExit):
        main(argv)
    assert capsys.readouterr().err.strip().endswith(f"error: the following arguments are required: {listed}")


def test_data_check_of_a_folder_it_cannot_read_names_the_layouts_it_reads(tmp_path, capsys):
    loose = make_image_folder(tmp_path / "d", per_split={"train": 1}, size=8) / "train" / "cat"  # images, no classes
    assert main(["data", "check", str(loose)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its images are not in class folders" in err[0]
    assert "<root>/train/<class>/<image>" in err[0] and "<class>/<image>, given as --train" in err[0]


def test_data_check_reports_a_single_class_as_train_refuses_it(tmp_path, capsys):
    root = make_image_folder(tmp_path / "one", classes=("Bag",), per_split={"train": 3, "test": 1}, size=8)
    message = f"data '{root}': 1 class (Bag); a classifier needs at least 2 class folders"
    assert main(["data", "check", str(root)]) == 1
    assert capsys.readouterr().out.splitlines()[-2:] == [message, "problems: 1"]
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert capsys.readouterr().err.strip() == f"scarce train: error: {message}"

    make_image_folder(tmp_path / "one", classes=("Coat",), per_split={"train": 3, "test": 1}, size=8, seed=1)
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("problems: 0\n") and "a classifier needs" not in out


def test_data_check_sees_images_upright_as_training_reads_them(tmp_path):
    from PIL import Image

    from scarce.data.check import check_dataset
    from scarce.data.splits import resolve_splits

    root = make_image_folder(tmp_path / "d", per_split={"train": 2, "val": 1, "test": 1}, size=8)
    leaked = Image.new("RGB", (6, 10), (200, 30, 30))  # 6 wide x 10 high, upright
    leaked.paste((10, 10, 240), (0, 0, 6, 5))  # blue top half
    leaked.save(root / "train" / "cat" / "leaked.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated (10 wide), turned back upright by the tag, as a camera does
    leaked.transpose(Image.Transpose.ROTATE_90).save(root / "test" / "dog" / "copy.png", exif=exif)
    report = check_dataset(resolve_splits(load_config(None, [], {"data": {"name": str(root)}}).data))
    leak = [d for d in report["duplicates"] if d["splits"] == ["train", "test"]]
    assert [(Path(d["train"]).name, Path(d["test"]).name, d["kind"]) for d in leak] == [
        ("leaked.png", "copy.png", "exact")
    ]
    assert report["splits"]["test"]["sizes"]["max"] == [8, 10]  # the copy is 6 x 10 upright, not 10 x 6


@pytest.mark.parametrize("name", ["valid", "validation"])
def test_a_val_folder_under_kaggles_or_roboflows_name_is_the_val_split(tmp_path, capsys, name):
    import json

    from scarce.engine.evaluation import evaluate_run

    root = make_image_folder(tmp_path / "d", per_split={"train": 3, name: 2, "test": 1}, size=8)
    assert main(["data", "check", str(root)]) == 0
    assert any(line.split()[:2] == ["val", "6"] for line in capsys.readouterr().out.splitlines())
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--no-progress", *TINY]) == 0
    record = json.loads((tmp_path / "run" / "classes.json").read_text())
    assert record["split_sizes"] == {"train": 9, "val": 6, "test": 3} and record["val_from_train"] is None
    assert evaluate_run(tmp_path / "run", None, "val", tmp_path / "v.json", num_workers=0)["count"] == 6


@pytest.mark.parametrize(
    ("key", "option"), [("per_class", "--per-class"), ("val_per_class", "--val-per-class")], ids=["train", "val"]
)
def test_per_class_keys_are_refused_beside_an_image_folder(key, option):
    with pytest.raises(UserError) as info:
        load_config("demo", [f"data.{key}=5"])
    assert str(info.value) == (
        f"data.{key}=5: applies only to data.name=fashion-mnist (sampled from its 60k set), not to image "
        f"folder 'demo'; for a folder make a k-per-class copy with `scarce data subset SRC DST {option} 5`, "
        f"or unset it with data.{key}=null"
    )
    cfg = load_config("demo", [f"data.{key}=5", "data.name=fashion-mnist"])
    assert getattr(cfg.data, key) == 5


def test_a_fashion_mnist_recipe_on_a_folder_must_unset_its_sampling(tmp_path, capsys):
    folder = {"data": {"name": str(tmp_path)}}
    with pytest.raises(UserError, match=r"^data.per_class=50: applies only to data.name=fashion-mnist"):
        load_config("fashion-mnist-50", None, folder)
    cfg = load_config("fashion-mnist-50", ["data.per_class=null", "data.val_per_class=null"], folder)
    assert (cfg.data.per_class, cfg.data.val_per_class) == (None, None)
    args = ["train", "--recipe", "demo", "data.per_class=5", "--out", str(tmp_path / "run"), *TINY]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("scarce train: error: data.per_class=5: applies only to") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_benchmark_recipes_load():
    recipes = sorted((Path(__file__).parent.parent / "benchmarks" / "recipes").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        load_config(str(recipe))


def test_val_per_class_zero_beside_a_folder_points_to_val_fraction():
    with pytest.raises(UserError, match=r"for no val split from a folder's train images use data.val_fraction=0"):
        load_config("demo", ["data.val_per_class=0"])


def test_a_run_saved_with_per_class_beside_a_folder_resumes_once_it_is_unset(tmp_path, capsys):
    # runs from before the refusal saved the (ignored) key; resuming them must stay possible
    from scarce.engine.trainer import train

    out = tmp_path / "run"
    train(load_config(None, [*TINY, "epochs=2"], {"data": {"name": "demo"}}), out, progress=False, stop_after=1)
    saved = (out / "config.yaml").read_text()
    assert "per_class: null" in saved
    (out / "config.yaml").write_text(saved.replace("per_class: null", "per_class: 5", 1))
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert "data.per_class=5: applies only to data.name=fashion-mnist" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--no-progress", "data.per_class=null"]) == 0
    assert json.loads((out / "summary.json").read_text())["last"]["epoch"] == 1


def test_every_bench_config_is_a_valid_config():
    # a config that fails validation (e.g. RandAugment m13, which timm clips at m10) costs a queue slot
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    from bench_configs import CONFIGS, config_overrides

    recipe = str(Path(__file__).parent.parent / "benchmarks" / "recipes" / "fashion-mnist-50-base.yaml")
    from scarce.data.transforms import create_randaugment

    for name in CONFIGS:
        cfg = load_config(recipe, config_overrides(name))
        if cfg.augment.randaugment:  # checked when the transform is built, not when the config is read
            create_randaugment(cfg.augment.randaugment, cfg.data.img_size, [0])
    with pytest.raises(UserError, match="magnitude m13 is above 10"):
        create_randaugment("rand-m13-mstd0.5", 64, [0])
