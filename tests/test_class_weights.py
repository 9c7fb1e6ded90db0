"""loss.class_weights: the functional forms on exact values, and the switch in a run."""

import shutil

import pytest
import torch
import torch.nn.functional as F

from scarce.config import load_config
from scarce.engine.factories import build_loss
from scarce.errors import UserError
from scarce.losses import create_loss
from scarce.losses.class_weights import ClassWeighted, balanced_class_weights, class_weighted_mean


def test_balanced_weights_give_every_class_the_same_total():
    weights = balanced_class_weights([10, 30, 0, 40])
    assert torch.allclose(weights, torch.tensor([80 / 30, 80 / 90, 0.0, 80 / 120]))
    counts = torch.tensor([10.0, 30.0, 0.0, 40.0])
    totals = weights * counts
    assert torch.allclose(totals[[0, 1, 3]], torch.full((3,), 80 / 3))


def test_equal_counts_give_weight_one():
    assert torch.equal(balanced_class_weights([7, 7, 7]), torch.ones(3))


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        balanced_class_weights([3, -1])


def test_weighted_mean_equals_torch_weighted_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits, target = torch.randn(12, 4, generator=gen), torch.randint(0, 4, (12,), generator=gen)
    weights = torch.tensor([0.5, 2.0, 1.0, 3.0])
    ours = class_weighted_mean(F.cross_entropy(logits, target, reduction="none"), target, weights)
    assert torch.allclose(ours, F.cross_entropy(logits, target, weight=weights))


def test_data_parallel_ranks_average_to_the_global_batch_weighted_mean(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 3, generator=gen, requires_grad=True)
    target = torch.tensor([0, 0, 0, 1, 0, 2, 1, 0])
    weights = torch.tensor([0.5, 2.0, 4.0])
    full = class_weighted_mean(F.cross_entropy(logits, target, reduction="none"), target, weights)
    want = torch.autograd.grad(full, logits)[0]
    halves = [slice(0, 4), slice(4, 8)]  # rank 0's and rank 1's batch: total weights 3.5 and 7.0
    totals = [weights[target[h]].sum() for h in halves]
    loss = ClassWeighted(create_loss("ce", reduction="none"), weights, world_size=2)
    grads, naive = [], []
    for rank, half in enumerate(halves):
        # the all-reduce adds the other rank's total weight
        monkeypatch.setattr(torch.distributed, "all_reduce", lambda t, op=None, o=totals[1 - rank]: t.add_(o))
        x = logits.detach()[half].clone().requires_grad_()
        loss(x, target[half]).backward()
        grads.append(x.grad)
        y = logits.detach()[half].clone().requires_grad_()
        class_weighted_mean(F.cross_entropy(y, target[half], reduction="none"), target[half], weights).backward()
        naive.append(y.grad)
    assert torch.allclose(torch.cat(grads) / 2, want)  # DDP averages the ranks' gradients
    assert not torch.allclose(torch.cat(naive) / 2, want)  # a mean of per-rank weighted means is not


def test_wrapper_keeps_what_the_trainer_reads_and_weights_the_focal_cosine_loss():
    loss = ClassWeighted(create_loss("focal_cosine", reduction="none"), torch.tensor([1.0, 0.0]))
    assert loss.aux_head == "g" and loss.normalized_embedding
    gen = torch.Generator().manual_seed(1)
    outputs = {"logits": torch.randn(6, 2, generator=gen), "aux_logits": torch.randn(6, 2, generator=gen)}
    target = torch.tensor([0, 0, 0, 1, 1, 1])
    per_sample = create_loss("focal_cosine", reduction="none")(outputs, target)
    # weight 0 on class 1: only class-0 samples count
    assert torch.allclose(loss(outputs, target), per_sample[:3].mean())


def test_wrapper_refuses_a_reduced_loss():
    with pytest.raises(ValueError, match="reduction='none'"):
        ClassWeighted(create_loss("ce"), torch.ones(2))


def test_config_switch_builds_the_weighted_loss():
    cfg = load_config("demo", ["loss.class_weights=auto"])
    loss = build_loss(cfg, [90, 10])
    assert isinstance(loss, ClassWeighted) and torch.allclose(loss.weights, torch.tensor([100 / 180, 100 / 20]))
    assert not isinstance(build_loss(load_config("demo", []), [90, 10]), ClassWeighted)
    with pytest.raises(UserError, match="class_weights"):
        load_config("demo", ["loss.class_weights=balanced"])


def test_class_weights_and_pad_crop_are_switches_in_a_run(tmp_path, capsys):
    from scarce.cli import main
    from scarce.engine.prepare import prepare_run
    from tests.conftest import TINY, make_image_folder

    data = make_image_folder(tmp_path / "d", classes=("cat", "dog"), per_split={"train": 4, "val": 2})
    for extra in range(8):  # imbalanced: 4 cats, 12 dogs
        shutil.copy(data / "train" / "dog" / "0.png", data / "train" / "dog" / f"x{extra}.png")
    switches = [
        *TINY,
        "epochs=1",
        "loss.class_weights=auto",
        "loss.name=focal_cosine",
        "augment.crop=pad",
        "augment.pad=2",
        "batch_size=4",
    ]
    run = prepare_run(load_config(None, switches, {"data": {"name": str(data)}}), tmp_path / "p")
    assert isinstance(run.step.loss_fn, ClassWeighted)  # what the training step calls
    assert torch.allclose(run.step.loss_fn.weights, torch.tensor([16 / 8, 16 / 24]))
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), "--no-progress", *switches]) == 0
    saved = (out / "config.yaml").read_text()
    assert "class_weights: auto" in saved and "crop: pad" in saved
    assert "loss focal_cosine (gamma 2, lam 0.1) (class-weighted)" in capsys.readouterr().out
