import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scarce.config import AugmentConfig, DataConfig, LsbSwapConfig, data_label
from scarce.data import build_data, build_dataset, scan_image_folder
from scarce.data.fashion_mnist import CLASSES, fashion_mnist_splits, read_idx, sample_per_class
from scarce.data.subset import make_subset
from scarce.errors import UserError
from tests.conftest import make_image_folder


def test_demo_dataset_is_embedded_and_complete():
    bundle = build_data(DataConfig(name="demo"))
    assert bundle.classes == sorted(CLASSES)
    sizes = {k: len(v.ids) for k, v in bundle.splits.items()}
    assert sizes == {"train": 500, "val": 100, "test": 1000}
    assert bundle.mode == "L" and bundle.in_chans == 1
    counts = np.bincount(bundle.splits["train"].targets)
    assert counts.tolist() == [50] * 10


def test_image_folder_classes_sorted_and_uint8_output(image_folder):
    bundle = build_data(DataConfig(name=str(image_folder), img_size=24))
    assert bundle.classes == ["cat", "dog", "emu"] and bundle.mode == "RGB"
    ds = build_dataset(bundle, "train", DataConfig(name=str(image_folder), img_size=24), AugmentConfig())
    x, y = ds[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 24, 24) and y == 0
    eval_ds = build_dataset(bundle, "test", DataConfig(name=str(image_folder), img_size=24), None)
    a, _ = eval_ds[3]
    b, _ = eval_ds[3]
    assert torch.equal(a, b)


def test_rgb_switch_expands_grayscale(tmp_path):
    root = make_image_folder(tmp_path / "g", mode="L")
    assert build_data(DataConfig(name=str(root))).in_chans == 1
    bundle = build_data(DataConfig(name=str(root), channels="rgb"))
    ds = build_dataset(bundle, "val", DataConfig(name=str(root), channels="rgb", img_size=20), None)
    x, _ = ds[0]
    assert x.shape[0] == 3 and torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


def test_separate_folders_and_class_mismatch(tmp_path):
    root = make_image_folder(tmp_path / "a")
    other = make_image_folder(tmp_path / "b", classes=("cat", "dog"))
    bundle = build_data(DataConfig(train=str(root / "train"), val=str(root / "val")))  # demo's test not borrowed
    assert set(bundle.splits) == {"train", "val"}
    with pytest.raises(UserError, match=r"classes differ from the training set \(missing: \['emu'\]"):
        build_data(DataConfig(train=str(root / "train"), val=str(other / "val")))
    # a data.name that is no folder is only a label when every split is a folder of its own
    every = {k: str(root / k) for k in ("train", "val", "test")}
    assert set(build_data(DataConfig(name="x", **every)).splits) == {"train", "val", "test"}
    with pytest.raises(UserError, match="data 'x': not a built-in dataset .* fill in --test: fix the path"):
        build_data(DataConfig(name="x", train=str(root / "train"), val=str(root / "val")))


def test_missing_path_and_empty_class(tmp_path):
    with pytest.raises(UserError, match="not a built-in dataset"):
        build_data(DataConfig(name=str(tmp_path / "nope")))
    root = make_image_folder(tmp_path / "d")
    (root / "train" / "zebra").mkdir()
    with pytest.raises(UserError, match="class folder 'zebra' has no images"):
        build_data(DataConfig(name=str(root)))


def test_symlink_loop_does_not_hang(tmp_path):
    root = make_image_folder(tmp_path / "d")
    (root / "train" / "cat" / "loop").symlink_to(root / "train" / "cat", target_is_directory=True)
    samples, _ = scan_image_folder(root / "train")
    assert len(samples) == 24


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_and_sampling(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 12)
    images = rng.integers(0, 256, size=(120, 28, 28))
    for name, arr in (
        ("train-images-idx3-ubyte.gz", images),
        ("train-labels-idx1-ubyte.gz", labels),
        ("t10k-images-idx3-ubyte.gz", images[:30]),
        ("t10k-labels-idx1-ubyte.gz", labels[:30]),
    ):
        _write_idx(tmp_path / name, arr)
    assert np.array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    splits = fashion_mnist_splits(str(tmp_path), per_class=5, val_per_class=3, seed=1)
    assert np.bincount(splits["train"].targets).tolist() == [5] * 10
    assert np.bincount(splits["val"].targets).tolist() == [3] * 10
    assert not set(splits["train"].ids) & set(splits["val"].ids)
    assert len(splits["test"].ids) == 30
    again = fashion_mnist_splits(str(tmp_path), per_class=5, val_per_class=3, seed=1)
    assert again["train"].ids == splits["train"].ids
    with pytest.raises(UserError, match="asked for 13 images of class 0, only 12 exist"):
        fashion_mnist_splits(str(tmp_path), per_class=10, val_per_class=3, seed=1)
    # without per_class, train is the rest of each class (it had been 6000 - val, whatever the set)
    rest = fashion_mnist_splits(str(tmp_path), per_class=None, val_per_class=3, seed=1)
    assert np.bincount(rest["train"].targets).tolist() == [9] * 10 and len(rest["val"].ids) == 30
    with pytest.raises(UserError, match=r"^data.val_per_class=12: fashion-mnist has 12 train images per class"):
        fashion_mnist_splits(str(tmp_path), per_class=None, val_per_class=12, seed=1)


def test_sample_per_class_train_independent_of_val_size():
    labels = np.repeat(np.arange(3), 20)
    a = sample_per_class(labels, [5, 2], seed=0)[0]
    b = sample_per_class(labels, [5, 10], seed=0)[0]
    assert np.array_equal(a, b)


def test_truncated_idx_file(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 4)
    with pytest.raises(UserError, match="truncated"):
        read_idx(path)


def test_debian_fashion_mnist_if_installed():
    if not Path("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    bundle = build_data(DataConfig(name="fashion-mnist", per_class=10, val_per_class=10))
    assert {k: len(v.ids) for k, v in bundle.splits.items()} == {"train": 100, "val": 100, "test": 10000}


def test_subset_tool_makes_disjoint_split_with_manifest(tmp_path):
    src = make_image_folder(tmp_path / "src", per_split={"train": 10, "test": 2})
    result = make_subset(src, tmp_path / "dst", per_class=3, val_per_class=2, seed=0, link="hard")
    assert (result["train"], result["val"], result["test"]) == (9, 6, 6)
    manifest = (tmp_path / "dst" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "split,class,source,path" and len(manifest) == 22
    bundle = build_data(DataConfig(name=str(tmp_path / "dst")))
    assert not set(bundle.splits["train"].ids) & set(bundle.splits["val"].ids)
    with pytest.raises(UserError, match="already exists"):
        make_subset(src, tmp_path / "dst", per_class=3)
    with pytest.raises(UserError, match="class 'cat' has 10 images, 11 asked"):
        make_subset(src, tmp_path / "dst2", per_class=9, val_per_class=2)


def test_sample_stage_lsb_swap_keeps_partner_low_bits(image_folder):
    data = DataConfig(name=str(image_folder), img_size=20)
    augment = AugmentConfig(
        scale=[1.0, 1.0],
        ratio=[1.0, 1.0],
        hflip=0.0,
        lsb_swap=LsbSwapConfig(enabled=True, bits=3, p=1.0, stage="sample"),
    )
    bundle = build_data(data)
    ds = build_dataset(bundle, "train", data, augment)
    plain = build_dataset(bundle, "train", data, None)
    torch.manual_seed(0)
    x, _ = ds[0]
    own = plain[0][0]
    assert torch.equal(x >> 3, own >> 3)
    partners = [plain[j][0] for j in range(1, len(plain))]
    assert any(torch.equal(x & 7, p & 7) for p in partners)


@pytest.mark.parametrize("partner", ["same_class", "any"])
def test_sample_stage_lsb_swap_partner_class(partner, image_folder):
    """same_class takes the low bits of an image of the same class only; any draws across classes."""
    data = DataConfig(name=str(image_folder), img_size=20)
    swap = LsbSwapConfig(enabled=True, bits=3, p=1.0, stage="sample", partner=partner)
    augment = AugmentConfig(scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0, lsb_swap=swap)
    bundle = build_data(data)
    ds, plain = build_dataset(bundle, "train", data, augment), build_dataset(bundle, "train", data, None)
    targets = bundle.splits["train"].targets
    torch.manual_seed(0)
    partner_same = []
    for i in range(len(plain)):
        x = ds[i][0]
        low = [j for j in range(len(plain)) if j != i and torch.equal(x & 7, plain[j][0] & 7)]
        assert len(low) == 1, i  # noise images: the low bits name one partner
        partner_same.append(targets[low[0]] == targets[i])
    assert all(partner_same) if partner == "same_class" else not all(partner_same)


def test_decoded_cache_reads_each_image_file_once(tmp_path, image_folder, monkeypatch):
    """data.cache=ram: the up-front scan decodes every file; training, validation and the
    final scoring never open one again."""
    import scarce.data.datasets as datasets
    from scarce.config import load_config
    from scarce.engine.trainer import train
    from tests.conftest import TINY

    def no_file_reads(*args, **kwargs):
        raise AssertionError("an image file was decoded again")

    monkeypatch.setattr(datasets, "read_image", no_file_reads)
    cfg = load_config(None, TINY + ["data.cache=ram"], {"data": {"name": str(image_folder)}})
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["test"]["count"] == 12
    cfg = load_config(None, TINY + ["data.cache=none"], {"data": {"name": str(image_folder)}})
    with pytest.raises(AssertionError, match="decoded again"):
        train(cfg, tmp_path / "uncached", progress=False)


def test_cache_auto_stays_within_its_memory_budget():
    from scarce.config import DataConfig
    from scarce.data.datasets import Split
    from scarce.data.loader import decoded_cache_sides

    files = Split(ids=["a.png"] * 1000, targets=[0] * 1000, classes=["a"], root=".")
    assert decoded_cache_sides(DataConfig(img_size=32), {"train": files, "val": files}) == {"train": 37, "val": 32}
    assert decoded_cache_sides(DataConfig(img_size=32, cache="none"), {"train": files}) is None
    big = Split(ids=["a.png"] * 50_000, targets=[0] * 50_000, classes=["a"], root=".")
    assert decoded_cache_sides(DataConfig(img_size=300), {"train": big}) is None  # ~18 GB
    assert decoded_cache_sides(DataConfig(img_size=300, cache="ram"), {"train": big}) == {"train": 345}


def test_cached_evaluation_scores_equal_the_image_files(tmp_path):
    """Val/test are cached at exactly the evaluation resize: the transform gives the same pixels."""
    from scarce.data.check import preflight
    from scarce.data.loader import decoded_cache_sides

    root = make_image_folder(tmp_path / "d", size=40)
    data = DataConfig(name=str(root), img_size=16, crop_pct=0.875)
    bundle = build_data(data)
    cached, _ = preflight(bundle.splits, bundle.mode, False, keep_sides=decoded_cache_sides(data, bundle.splits))
    plain = build_dataset(bundle, "val", data, None)
    from dataclasses import replace

    fast = build_dataset(replace(bundle, splits=cached), "val", data, None)
    assert fast.split.cache is not None
    assert all(torch.equal(plain[i][0], fast[i][0]) for i in range(len(plain)))


def test_a_cached_train_split_with_pad_crops_gives_the_image_files_pixels(tmp_path):
    """With ``augment.crop=pad`` the whole image is resized once, to img_size, then shifted: a
    cache at 1.15 x resized it twice, so ``data.cache`` changed what the model trained on."""
    from dataclasses import replace

    from scarce.config import AugmentConfig
    from scarce.data.check import preflight
    from scarce.data.loader import decoded_cache_sides

    root = make_image_folder(tmp_path / "d", size=40)
    data, augment = DataConfig(name=str(root), img_size=16), AugmentConfig(crop="pad", pad=2, hflip=0.0)
    bundle = build_data(data)
    sides = decoded_cache_sides(data, bundle.splits, augment.crop)
    assert sides["train"] == 16 and decoded_cache_sides(data, bundle.splits)["train"] == 19  # resized crops: 1.15 x
    cached, _ = preflight(bundle.splits, bundle.mode, False, keep_sides=sides)
    plain = build_dataset(bundle, "train", data, augment)
    fast = build_dataset(replace(bundle, splits=cached), "train", data, augment)
    assert fast.split.cache is not None
    assert all(torch.equal(plain[(0, i)][0], fast[(0, i)][0]) for i in range(len(plain)))


def sampler_items(ds, seed: int, epoch: int) -> list[tuple[int, int, int]]:
    from scarce.data.loader import BalancedEpochSampler

    sampler = BalancedEpochSampler(ds, num_replicas=1, rank=0, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_balanced_sampler_draws_classes_equally_and_reproducibly():
    from scarce.data.datasets import ImageDataset, Split
    from scarce.data.loader import BalancedEpochSampler

    targets = [0] * 900 + [1] * 90 + [2] * 10  # 90 : 9 : 1
    ds = ImageDataset(Split(ids=[str(i) for i in range(1000)], targets=targets, classes=["a", "b", "c"], root="."), "L")
    sampler = BalancedEpochSampler(ds, num_replicas=1, rank=0, seed=3)
    sampler.set_epoch(1)
    drawn = [i for _, i, _ in sampler]
    counts = np.bincount(np.asarray(targets)[drawn], minlength=3)
    assert len(drawn) == 1000 and all(250 < c < 420 for c in counts), counts
    assert drawn == [i for _, i, _ in sampler]  # same (seed, epoch): same draws
    # an image drawn again is numbered as a new draw (its augmentation is drawn anew)
    draws = [d for _, _, d in sampler]
    assert draws == [drawn[:p].count(i) for p, i in enumerate(drawn)] and max(draws) > 0
    sampler.set_epoch(2)
    assert drawn != [i for _, i, _ in sampler]
    halves = [BalancedEpochSampler(ds, num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    for h in halves:
        h.set_epoch(1)
    assert sorted(item for h in halves for item in h) == sorted(sampler_items(ds, 3, 1))  # ranks split one draw


def test_epoch_sampler_orders_differ_between_seeds_and_ranks_split_one_order():
    from scarce.data.datasets import ImageDataset, Split
    from scarce.data.loader import EpochSampler

    ds = ImageDataset(Split(ids=[str(i) for i in range(101)], targets=[0] * 101, classes=["a"], root="."), "L")

    def order(seed: int, epoch: int, rank: int = 0, ranks: int = 1) -> list[int]:
        sampler = EpochSampler(ds, num_replicas=ranks, rank=rank, seed=seed)
        sampler.set_epoch(epoch)
        assert all(e == epoch for e, _, _ in sampler)
        return [i for _, i, _ in sampler]

    assert sorted(order(0, 0)) == list(range(101)) and order(0, 0) == order(0, 0)
    # torch's own DistributedSampler seeds seed + epoch: seed 0's epoch 1 was seed 1's epoch 0
    assert order(0, 1) != order(1, 0) and order(0, 1) != order(0, 0)
    shards = [order(0, 1, rank, 2) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 51  # 101 padded to 102 by repeating the order's start
    interleaved = [i for pair in zip(*shards) for i in pair]
    assert interleaved == order(0, 1) + order(0, 1)[:1]
    last = EpochSampler(ds, num_replicas=2, rank=1, seed=0)  # takes places 1, 3, ..., 101 of 102
    last.set_epoch(1)
    assert [d for _, _, d in last] == [0] * 50 + [1]  # the padding's repeat is a new draw of its image


def test_an_image_drawn_twice_in_an_epoch_gets_two_views(tmp_path):
    """Balanced sampling draws with replacement; every copy of an image had the same crop, flip
    and RandAugment (one seed per (epoch, index)): the oversampled rare classes lost augmentation."""
    from scarce.config import AugmentConfig, DataConfig
    from scarce.data import build_data, build_dataset

    root = make_image_folder(tmp_path / "d", per_split={"train": 2}, size=24)
    data = DataConfig(name=str(root), img_size=24, val_fraction=0)
    augment = AugmentConfig(randaugment="rand-m9-mstd0.5", crop="pad", pad=4)
    ds = build_dataset(build_data(data), "train", data, augment)
    first, again, plain = ds[(3, 1, 0)][0], ds[(3, 1, 1)][0], ds[(3, 1)][0]
    assert torch.equal(first, plain) and torch.equal(first, ds[(3, 1, 0)][0])  # draw 0: as before, reproducible
    assert not torch.equal(first, again)


def test_locate_split_is_one_decision_for_every_layout(tmp_path):
    from scarce.config import DataConfig
    from scarce.data.splits import DEMO_ROOT, SplitSource, locate_split
    from scarce.errors import UserError
    from tests.conftest import make_image_folder

    full = make_image_folder(tmp_path / "full", per_split={"train": 2, "test": 1})  # no val/
    only_test = make_image_folder(tmp_path / "only_test", per_split={"test": 1})
    plain = make_image_folder(tmp_path / "plain", per_split={"x": 1}) / "x"  # class folders, no splits
    extra = make_image_folder(tmp_path / "extra", per_split={"new": 1}) / "new"
    assert locate_split(DataConfig(name="demo"), "test") == SplitSource(None, DEMO_ROOT)
    assert locate_split(DataConfig(name="fashion-mnist"), "val") == SplitSource(None, None)
    assert locate_split(DataConfig(name=str(full)), "test") == SplitSource(None, full)
    assert locate_split(DataConfig(name=str(full)), "val") == SplitSource(None, full)  # val taken from train
    assert locate_split(DataConfig(name=str(full), test=str(extra)), "test") == SplitSource(extra, full)
    assert locate_split(DataConfig(name=str(only_test)), "test") == SplitSource(only_test / "test", only_test)
    assert locate_split(DataConfig(name=str(plain)), "test") == SplitSource(plain, plain)
    assert locate_split(DataConfig(name=str(full)), str(extra)) == SplitSource(extra, extra)  # a folder as split
    assert locate_split(DataConfig(name="demo"), str(extra)) == SplitSource(extra, extra)
    (full / "extra").mkdir()
    assert locate_split(DataConfig(name=str(full)), "extra") == SplitSource(full / "extra", full)
    # data.train given explicitly: val still comes from train, not from the root folder
    images = make_image_folder(tmp_path / "explicit", per_split={"imgs": 2})
    assert locate_split(DataConfig(name=str(images), train=str(images / "imgs")), "val") == SplitSource(None, images)
    train_only = make_image_folder(tmp_path / "train_only", per_split={"train": 2})
    with pytest.raises(UserError, match=r"has no test split \(found: train\); give --split FOLDER, or --data"):
        locate_split(DataConfig(name=str(train_only)), "test")
    with pytest.raises(UserError, match="--split 'nowhere'"):
        locate_split(DataConfig(name=str(full)), "nowhere")
    # one's own train folder without --data (the default name is the demo's): nothing of the demo
    mine = DataConfig(train=str(full / "train"))
    assert mine.name == "demo" and locate_split(mine, "val") == SplitSource(None, None)
    with pytest.raises(UserError, match="data.test: the run was given no test folder"):
        locate_split(mine, "test")


def test_a_train_folder_alone_never_borrows_the_demo_splits(tmp_path):
    root = make_image_folder(tmp_path / "mine", per_split={"train": 6, "test": 2})
    bundle = build_data(DataConfig(train=str(root / "train")))
    assert set(bundle.splits) == {"train", "val"} and bundle.classes == ["cat", "dog", "emu"]
    assert bundle.splits["val"].from_train and len(bundle.splits["val"].ids) == 3  # 10 % of 6, at least 1
    with_test = build_data(DataConfig(train=str(root / "train"), test=str(root / "test")))
    assert set(with_test.splits) == {"train", "val", "test"}
    with pytest.raises(UserError, match="data.train: image folders cannot be mixed with the built-in fashion-mnist"):
        build_data(DataConfig(name="fashion-mnist", train=str(root / "train")))
    with pytest.raises(UserError, match=f"give --train {root / 'train'}"):  # a plain class folder as --data
        build_data(DataConfig(name=str(root / "train")))


def test_a_train_folder_without_data_is_saved_as_no_dataset_and_reads_the_same(tmp_path):
    from scarce.config import load_config, save_config

    root = make_image_folder(tmp_path / "mine", per_split={"train": 6})
    cfg = load_config("demo", extra={"data": {"train": str(root / "train")}})
    assert cfg.data.name is None  # was saved as `name: demo`, which the run never read
    save_config(cfg, tmp_path / "config.yaml")
    assert "name: null" in (tmp_path / "config.yaml").read_text()
    again = load_config(str(tmp_path / "config.yaml"))
    assert again.data == cfg.data and build_data(again.data).classes == ["cat", "dog", "emu"]
    # an older run's config (demo + train) loads as the same data
    old = load_config(None, ["data.name=demo", f"data.train={root / 'train'}"])
    assert (old.data.name, old.data.train) == (None, cfg.data.train)
    assert data_label(cfg.data) == str(root / "train")
    # a recipe that names no data (vipriors-effnet-b3) loads, and says what to give when trained as it is
    with pytest.raises(UserError, match=r"data.name is null and no data.train folder is given: give --data"):
        build_data(load_config("vipriors-effnet-b3").data)


def test_kept_batches_replay_the_first_pass_exactly_and_respect_the_budget():
    from scarce.data.loader import KeptBatches, keeps_batches

    reads = []

    class Counting(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            reads.append(i)
            return torch.full((1, 2, 2), i, dtype=torch.uint8), i

    loader = torch.utils.data.DataLoader(Counting(), batch_size=4)
    kept = KeptBatches(loader, keep=keeps_batches(10, 4, max_bytes=40))  # 10 images of 4 bytes fit in 40
    first = [(x.clone(), t.clone()) for x, t in kept]
    assert len(reads) == 10 and len(kept) == 3
    second = list(kept)
    assert len(reads) == 10  # replayed, not read again
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    partial = KeptBatches(loader, keep=True)
    next(iter(partial))
    assert partial.batches is None  # an interrupted pass keeps nothing
    assert not keeps_batches(10, 4, max_bytes=39)
    small = KeptBatches(loader, keep=False)  # too large: every pass reads, and nothing is held
    list(small), list(small)
    assert small.batches is None and len(reads) == 10 + 4 + 20


@pytest.mark.parametrize(
    "count, keep, batches", [(50, False, 3), (50, True, 4), (49, True, 3), (33, True, 2), (10, False, 1)]
)
def test_keep_last_batch_keeps_every_image_but_never_a_batch_of_one(count, keep, batches):
    from scarce.data.loader import build_train_loader

    class Tiny(torch.utils.data.Dataset):
        seed = 0

        def __len__(self):
            return count

        def __getitem__(self, item):
            return torch.zeros(1, 2, 2, dtype=torch.uint8), 0

    loader = build_train_loader(Tiny(), 16, 0, 0, keep_last_batch=keep)
    sizes = [len(t) for _, t in loader]
    assert len(loader) == len(sizes) == batches and min(sizes) > 1
    dropped = count > 16 and (not keep or count % 16 == 1)
    assert sum(sizes) == (count - count % 16 if dropped else count)


def test_data_subset_accepts_the_built_in_demo(tmp_path, capsys):
    from scarce.cli import main

    assert main(["data", "subset", "demo", str(tmp_path / "sub"), "--per-class", "2", "--val-per-class", "1"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"wrote {tmp_path / 'sub'}: 10 classes, 20 train, 10 val, 1000 test images (copied, seed 0); "
        f"list of sources: {tmp_path / 'sub' / 'manifest.csv'}"
    )
    classes = sorted(p.name for p in (tmp_path / "sub" / "train").iterdir())
    assert len(classes) == 10 and all(len(list((tmp_path / "sub" / "train" / c).iterdir())) == 2 for c in classes)
    assert sum(1 for _ in (tmp_path / "sub" / "test").rglob("*.png")) == 1000  # the demo's test set, whole


def test_data_subset_writes_fashion_mnist_as_an_image_folder(tmp_path, monkeypatch):
    import scarce.data.fashion_mnist as fmnist
    from scarce.cli import main

    labels = np.repeat(np.arange(10), 6)
    images = np.random.default_rng(0).integers(0, 256, size=(60, 28, 28))
    for name, arr in (
        ("train-images-idx3-ubyte.gz", images),
        ("train-labels-idx1-ubyte.gz", labels),
        ("t10k-images-idx3-ubyte.gz", images[:20]),
        ("t10k-labels-idx1-ubyte.gz", labels[:20]),
    ):
        _write_idx(tmp_path / name, arr)
    monkeypatch.setattr(fmnist, "DEBIAN_ROOT", tmp_path)
    out = tmp_path / "sub"
    assert (
        main(["data", "subset", "fashion-mnist", str(out), "--per-class", "2", "--val-per-class", "1", "--seed", "3"])
        == 0
    )
    train_idx = sample_per_class(labels, [2, 1], 3)[0]  # the same images a run with split_seed 3 trains on
    written = sorted(int(p.stem.split("-")[1]) for p in (out / "train").rglob("*.png"))
    assert written == sorted(train_idx.tolist())
    first = next((out / "train").rglob(f"train-{written[0]:05d}.png"))
    assert first.parent.name == CLASSES[labels[written[0]]]
    assert np.array_equal(np.asarray(Image.open(first)), images[written[0]].astype(np.uint8))
    assert sum(1 for _ in (out / "val").rglob("*.png")) == 10 and sum(1 for _ in (out / "test").rglob("*.png")) == 20


def test_same_classes_in_another_order_are_matched_by_name(tmp_path):
    """A run trained on a folder (sorted names) scores the built-in Fashion-MNIST (label order)."""
    from types import SimpleNamespace

    from scarce.data.datasets import Split
    from scarce.engine.evaluation import eval_dataset, in_run_class_order

    split = Split(
        ids=["a", "b", "c", "d", "e"], targets=[0, 1, 2, 2, 0], classes=["T-shirt_top", "Trouser", "Pullover"]
    )
    mapped = in_run_class_order(split, ["Pullover", "T-shirt_top", "Trouser"], "x")
    assert mapped.targets == [1, 2, 0, 0, 1] and mapped.classes == ["Pullover", "T-shirt_top", "Trouser"]
    with pytest.raises(
        UserError,
        match=r"^data 'x': classes the run was not trained on: 'Pullover' \(the run's: 'Bag', 'T-shirt_top', 'Trouser'\)",
    ):
        in_run_class_order(split, ["Bag", "T-shirt_top", "Trouser"], "x")
    # some of the run's classes (a folder whose train/ lacks one): scored, the absent class without images
    fewer = in_run_class_order(split, ["Bag", "Pullover", "T-shirt_top", "Trouser"], "x")
    assert fewer.targets == [2, 3, 1, 1, 2] and fewer.classes == ["Bag", "Pullover", "T-shirt_top", "Trouser"]

    labels = np.repeat(np.arange(10), 12)
    images = np.random.default_rng(0).integers(0, 256, size=(120, 28, 28))
    for name, arr in (("train-images-idx3-ubyte.gz", images), ("train-labels-idx1-ubyte.gz", labels)):
        _write_idx(tmp_path / name, arr)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:30])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[:30])
    data = DataConfig(name="fashion-mnist", root=str(tmp_path), per_class=5, val_per_class=3, img_size=28)
    # a stand-in LoadedRun: its run_dir holds no classes.json, so no val draw is on record
    run = SimpleNamespace(cfg=SimpleNamespace(data=data), classes=sorted(CLASSES), mode="L", run_dir=tmp_path / "run")
    dataset = eval_dataset(run, data, "test")
    assert [run.classes[t] for t in dataset.split.targets] == [CLASSES[t] for t in labels[:30]]
