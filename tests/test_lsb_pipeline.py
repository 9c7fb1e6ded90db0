"""LSB Swap inside the training pipeline: the swapped low bits reach the model."""

import torch

from scarce.augment import lsb_swap_batch
from scarce.config import AugmentConfig, DataConfig, LsbSwapConfig
from scarce.data import build_data, build_dataset
from scarce.engine.batch import BatchPreprocessor
from scarce.engine.loop import TrainStep, train_one_epoch


class RecordingModel(torch.nn.Module):
    """A linear classifier that keeps every input it is given."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.fc = torch.nn.Linear(in_features, num_classes)
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.fc(x.flatten(1))


def _denormalise(x: torch.Tensor, pre: BatchPreprocessor) -> torch.Tensor:
    return (x * pre.std + pre.mean).round().clamp(0, 255).to(torch.uint8)


def _batches(image_folder, augment):
    data = DataConfig(name=str(image_folder), img_size=20)
    bundle = build_data(data)
    ds = build_dataset(bundle, "train", data, augment)
    torch.manual_seed(0)
    xs = torch.stack([ds[i][0] for i in range(8)])
    ys = torch.tensor([ds.targets[i] for i in range(8)])
    return bundle, [(xs, ys)]


def _train_once(bundle, batches, augment, seed=0):
    pre = BatchPreprocessor(bundle.mean, bundle.std, torch.device("cpu"), augment)
    pre.seed(seed)
    model = RecordingModel(3 * 20 * 20, len(bundle.classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    step = TrainStep(model, lambda out, y: torch.nn.functional.cross_entropy(out, y), opt)
    train_one_epoch(step, batches, pre, epoch=0, progress=False)
    return pre, model.inputs[0]


def test_batch_stage_low_bits_reach_the_model(image_folder):
    swap = LsbSwapConfig(enabled=True, bits=2, p=1.0, stage="batch", placement="last")
    augment = AugmentConfig(lsb_swap=swap)
    bundle, batches = _batches(image_folder, AugmentConfig())
    pre, received = _train_once(bundle, batches, augment, seed=3)
    seen = _denormalise(received, pre)
    x = batches[0][0]
    expected = lsb_swap_batch(x, bits=2, p=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(seen, expected)
    assert torch.equal(seen >> 2, x >> 2)  # own high bits (and label)
    assert not torch.equal(seen & 3, x & 3)  # someone else's low bits


def test_without_swap_the_model_sees_the_exact_uint8_batch(image_folder):
    bundle, batches = _batches(image_folder, AugmentConfig())
    pre, received = _train_once(bundle, batches, AugmentConfig())
    assert torch.equal(_denormalise(received, pre), batches[0][0])


def test_sample_stage_low_bits_reach_the_model(image_folder):
    swap = LsbSwapConfig(enabled=True, bits=2, p=1.0, stage="sample", placement="last")
    augment = AugmentConfig(scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0, lsb_swap=swap)
    bundle, batches = _batches(image_folder, augment)
    plain_bundle, plain = _batches(image_folder, AugmentConfig(scale=[1.0, 1.0], ratio=[1.0, 1.0], hflip=0.0))
    pre, received = _train_once(bundle, batches, augment)
    seen = _denormalise(received, pre)
    assert torch.equal(seen, batches[0][0])
    assert torch.equal(seen >> 2, plain[0][0] >> 2)
    assert not torch.equal(seen & 3, plain[0][0] & 3)


def test_a_class_of_one_image_is_not_swapped_with_itself(tmp_path):
    """``partner=same_class`` with no other image of the class: the image was swapped with another
    crop of itself; now it is left as it is."""
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "d", per_split={"train": 3})
    for extra in ("1.png", "2.png"):  # emu keeps one image
        (root / "train" / "emu" / extra).unlink()
    swap = LsbSwapConfig(enabled=True, bits=2, p=1.0, stage="sample", partner="same_class")
    data = DataConfig(name=str(root), img_size=16, val_fraction=0)
    bundle = build_data(data)
    swapped, plain = (build_dataset(bundle, "train", data, AugmentConfig(lsb_swap=s)) for s in (swap, LsbSwapConfig()))
    alone = bundle.splits["train"].targets.index(2)
    assert torch.equal(swapped[(0, alone)][0], plain[(0, alone)][0])
    assert not torch.equal(swapped[(0, 0)][0], plain[(0, 0)][0])  # a class of three: swapped


import pytest  # noqa: E402

from scarce.cli import main  # noqa: E402
from tests.conftest import TINY  # noqa: E402


@pytest.mark.parametrize(
    "switches",
    [
        ["augment.lsb_swap.stage=batch"],
        ["augment.lsb_swap.stage=sample", "augment.lsb_swap.partner=same_class"],
        [
            "augment.lsb_swap.stage=sample",
            "augment.lsb_swap.placement=before_randaugment",
            "augment.randaugment=rand-m9-mstd0.5",
            "augment.lsb_swap.bits=3",
        ],
    ],
)
def test_lsb_swap_is_one_switch_in_a_run(tmp_path, switches):
    args = [
        "train",
        "--recipe",
        "demo",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        *TINY,
        "epochs=1",
        "augment.lsb_swap.enabled=true",
        *switches,
    ]
    assert main(args) == 0


def test_batch_stage_cannot_take_the_paper_placement(tmp_path, capsys):
    args = [
        "train",
        "--out",
        str(tmp_path / "r"),
        *TINY,
        "augment.lsb_swap.enabled=true",
        "augment.lsb_swap.stage=batch",
        "augment.lsb_swap.placement=before_randaugment",
    ]
    assert main(args) == 2
    assert "placement before_randaugment needs stage sample" in capsys.readouterr().err


class TwoImages:
    """The dataset side of ``TrainTransform``: two grey 4x4 images, one class each."""

    targets = [0, 1]

    def __init__(self):
        self.images = [
            torch.arange(16, dtype=torch.uint8).reshape(4, 4) * 13 + 7,
            torch.full((4, 4), 0b10110110, dtype=torch.uint8),
        ]

    def __len__(self) -> int:
        return 2

    def load(self, index: int):
        from PIL import Image

        return Image.fromarray(self.images[index].numpy())


@pytest.mark.parametrize("placement", ["before_randaugment", "last"])
def test_placement_orders_the_swap_and_randaugment(placement):
    from scarce.augment import lsb_swap
    from scarce.data.transforms import TrainTransform

    swap = LsbSwapConfig(enabled=True, bits=2, p=1.0, stage="sample", placement=placement)
    transform = TrainTransform(DataConfig(img_size=4), AugmentConfig(lsb_swap=swap), fill=[0])
    transform.geometric = lambda img: img  # no crop or flip: only the order under test varies
    # a stand-in for RandAugment that does not commute with the swap (it moves bits down)
    transform.randaugment = lambda img: img.point(lambda v: v // 2)
    data = TwoImages()
    own, partner = (x.unsqueeze(0) for x in data.images)
    torch.manual_seed(0)
    out = transform(data, 0, data.load(0))
    if placement == "before_randaugment":  # the paper's: RandAugment sees the swapped image
        expected = lsb_swap(own, partner, 2) // 2
    else:
        expected = lsb_swap(own // 2, partner // 2, 2)
    assert torch.equal(out, expected)
    other = lsb_swap(own // 2, partner // 2, 2) if placement != "last" else lsb_swap(own, partner, 2) // 2
    assert not torch.equal(out, other)  # the two orders give different images here
