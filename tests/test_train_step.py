"""The training step keeps the host out of the loop: no sync between logging intervals."""

import pytest
import torch

from scarce.engine.batch import BatchPreprocessor
from scarce.engine.loop import NonFiniteLossError, TrainStep, train_one_epoch

SYNCS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


@pytest.fixture
def sync_counter(monkeypatch):
    calls = []
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def _epoch(steps: int, log_every: int, loss_fn=None, info=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    batches = [
        (torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8), torch.randint(0, 5, (8,))) for _ in range(steps)
    ]
    step = TrainStep(model, loss_fn or torch.nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.1))
    pre = BatchPreprocessor([0.5] * 3, [0.25] * 3, torch.device("cpu"))
    return train_one_epoch(step, batches, pre, epoch=0, progress=False, info=info, log_every=log_every)


def test_no_host_sync_between_logging_intervals(sync_counter):
    stats, step = _epoch(steps=40, log_every=20)
    assert step == 40 and stats["images"] == 320
    # per logging point: one read of the non-finite flag; at the end: the loss sum
    assert sync_counter.count("__bool__") == 2, sync_counter  # the counter sees the two flag reads
    assert len(sync_counter) <= 2 * 2 + 1, sync_counter


def test_non_finite_loss_still_stops_the_epoch():
    def nan_at_step_3(outputs, target, calls=[0]):  # noqa: B006
        calls[0] += 1
        loss = torch.nn.functional.cross_entropy(outputs, target)
        return loss * float("nan") if calls[0] == 3 else loss

    with pytest.raises(NonFiniteLossError, match="loss is nan at epoch 0"):
        _epoch(steps=10, log_every=5, loss_fn=nan_at_step_3)


def test_the_logged_loss_under_torchrun_is_the_mean_over_every_process(monkeypatch):
    """Rank 0's loss alone was logged; the epoch's sums are all-reduced (here another rank's
    80 images at mean loss 9.0 are added, as gloo would add them)."""
    import scarce.engine.loop as loop
    from scarce.engine.distributed import DistInfo

    alone, _ = _epoch(steps=4, log_every=2)

    def with_another_rank(totals, info):
        if totals.dim() == 0:  # the non-finite flag, at each logging point
            return totals
        assert info.world_size == 2 and totals.dtype == torch.float64
        return totals + torch.tensor([9.0 * 80, 80.0], dtype=torch.float64)

    monkeypatch.setattr(loop, "all_reduce_sum", with_another_rank)
    both, _ = _epoch(steps=4, log_every=2, info=DistInfo(rank=0, world_size=2))
    assert both["images"] == alone["images"] == 32  # this process's images (images/s is scaled by the world)
    assert both["loss"] == pytest.approx((alone["loss"] * 32 + 9.0 * 80) / 112)


def test_a_non_finite_loss_in_another_process_stops_this_one_too(monkeypatch):
    """Under torchrun each process checked its own loss: the others went on into the next gradient
    all-reduce and waited there for the one that had stopped."""
    import scarce.engine.loop as loop
    from scarce.engine.distributed import DistInfo

    checks = []

    def another_rank_went_non_finite(tensor, info):
        checks.append(tensor.dim())
        return tensor + 1 if tensor.dim() == 0 and len(checks) == 2 else tensor  # its flag, at the 2nd check

    monkeypatch.setattr(loop, "all_reduce_sum", another_rank_went_non_finite)
    with pytest.raises(NonFiniteLossError, match=r"^loss is not finite in another process at epoch 0 \(by step 10\)$"):
        _epoch(steps=20, log_every=5, info=DistInfo(rank=0, world_size=2))
    assert checks == [0, 0]
