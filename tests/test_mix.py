"""Mixup / CutMix: the functional forms on exact values, the sampler, the train step, a run."""

import json

import pytest
import torch
import torch.nn.functional as F

from scarce.augment.mix import BatchMixer, MixParams, apply_mix, mixed_loss, sample_mix_params
from scarce.config import load_config
from scarce.engine.loop import TrainStep
from scarce.engine.trainer import train
from tests.conftest import TINY


def _batch():
    return torch.arange(2 * 1 * 2 * 2, dtype=torch.float32).view(2, 1, 2, 2)  # image 0: 0..3, image 1: 4..7


def test_mixup_blends_each_image_with_its_partner():
    x = _batch()
    out = apply_mix(x, MixParams(lam=0.25))  # partners: the batch reversed
    assert out[0].flatten().tolist() == [3.0, 4.0, 5.0, 6.0]  # 0.25 * (0..3) + 0.75 * (4..7)
    assert out[1].flatten().tolist() == [1.0, 2.0, 3.0, 4.0]
    assert x[0].flatten().tolist() == [0.0, 1.0, 2.0, 3.0]  # the input is not changed


def test_cutmix_pastes_the_partners_box_only():
    x = _batch()
    out = apply_mix(x, MixParams(lam=0.75, box=(0, 1, 1, 2)))  # row 0, column 1
    assert out[0, 0].tolist() == [[0.0, 5.0], [2.0, 3.0]]
    assert out[1, 0].tolist() == [[4.0, 1.0], [6.0, 7.0]]
    assert x[0, 0].tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_mixed_ce_equals_soft_target_ce():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    target, lam = torch.tensor([0, 2]), 0.7
    soft = lam * F.one_hot(target, 3) + (1 - lam) * F.one_hot(torch.tensor([2, 0]), 3)
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    got = mixed_loss(F.cross_entropy, logits, target, MixParams(lam))
    assert torch.allclose(got, expected)
    assert torch.equal(mixed_loss(F.cross_entropy, logits, target, None), F.cross_entropy(logits, target))


def _draws(n=200, **kwargs):
    g = torch.Generator().manual_seed(0)
    return [sample_mix_params(16, 16, generator=g, **kwargs) for _ in range(n)]


def test_sampler_draws_are_pinned():
    # a change of the draw order changes every past run: these are seed 0's first draws
    g = torch.Generator().manual_seed(0)
    assert sample_mix_params(8, 8, cutmix_alpha=1.0, generator=g) == MixParams(0.875, (0, 2, 1, 5))
    assert sample_mix_params(8, 8, mixup_alpha=0.8, generator=g).lam == pytest.approx(0.8458788593890415)


def test_sampler_is_reproducible_and_lam_matches_the_box():
    a, b = _draws(cutmix_alpha=1.0), _draws(cutmix_alpha=1.0)
    assert a == b
    for p in a:
        y0, y1, x0, x1 = p.box
        assert 0 <= y0 <= y1 <= 16 and 0 <= x0 <= x1 <= 16
        assert p.lam == 1 - (y1 - y0) * (x1 - x0) / 256  # clipped boxes: lam is the area actually kept
    lams = torch.tensor([p.lam for p in _draws(mixup_alpha=1.0)])
    assert all(p.box is None for p in _draws(n=20, mixup_alpha=1.0))
    assert 0.4 < float(lams.mean()) < 0.6 and float(lams.min()) < 0.1 and float(lams.max()) > 0.9  # Beta(1, 1)


def test_sampler_switch_and_prob():
    both = _draws(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5)
    cutmix = sum(p.box is not None for p in both)
    assert 60 < cutmix < 140  # about half of 200
    assert all(p.box is not None for p in _draws(n=20, mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=1.0))
    assert all(p is None for p in _draws(n=20, mixup_alpha=1.0, prob=0.0))
    assert all(p is None for p in _draws(n=5))  # both alphas 0: off
    mixed = sum(p is not None for p in _draws(mixup_alpha=1.0, prob=0.5))
    assert 60 < mixed < 140


@pytest.mark.parametrize("kwargs", [{"mixup_alpha": -1.0}, {"cutmix_alpha": 1.0, "prob": 1.5}])
def test_sampler_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="alpha|probabilit"):
        sample_mix_params(8, 8, generator=torch.Generator(), **kwargs)


def test_train_step_feeds_the_model_the_mixed_batch_and_mixes_the_loss():
    seen = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x):
            seen.append(x.clone())
            return self.linear(x.flatten(1))

    model, mixer = Recorder(), BatchMixer(mixup_alpha=1.0, cutmix_alpha=0.0)
    x, target = _batch(), torch.tensor([0, 2])
    mixer.seed(3)
    expected_x, params = mixer(x)
    mixer.seed(3)
    step = TrainStep(model, F.cross_entropy, torch.optim.SGD(model.parameters(), lr=0.0), mixer=mixer)
    loss = step(x, target, 0)
    assert torch.equal(seen[0], expected_x) and not torch.equal(seen[0], x)
    assert torch.allclose(loss, mixed_loss(F.cross_entropy, model(expected_x), target, params))


@pytest.mark.parametrize(
    "loss", [[], ["loss.name=focal_cosine", "loss.class_weights=auto"]], ids=["ce", "fcl_weighted"]
)
def test_mix_is_one_switch_in_a_run(tmp_path, image_folder, loss):
    def train_loss(name, *extra):
        overrides = TINY + ["epochs=1", "deterministic=true", *loss, *extra]
        train(load_config(None, overrides, {"data": {"name": str(image_folder)}}), tmp_path / name, progress=False)
        return json.loads((tmp_path / name / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]

    on = ["augment.mix.mixup_alpha=0.8", "augment.mix.cutmix_alpha=1.0"]
    plain, mixed_a, mixed_b = train_loss("plain"), train_loss("mixed_a", *on), train_loss("mixed_b", *on)
    assert mixed_a == mixed_b and mixed_a != plain  # reproducible, and the switch changes training


def test_an_unmixed_batch_still_calls_the_loss_twice():
    # under DDP a class-weighted loss all-reduces on every call: every rank must call it as often
    calls = []

    def loss_fn(outputs, target):
        calls.append(target.clone())
        return F.cross_entropy(outputs, target)

    mixer = BatchMixer(mixup_alpha=1.0, cutmix_alpha=0.0, prob=0.0)
    x, target = _batch(), torch.tensor([0, 2])
    mixed_x, params = mixer(x)
    assert mixed_x is x and params == MixParams(1.0)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    assert torch.equal(mixed_loss(loss_fn, logits, target, params), F.cross_entropy(logits, target))
    assert len(calls) == 2


def test_the_run_log_names_every_regulariser_that_is_on():
    from scarce.engine.describe import describe_regularisation

    cfg = load_config(
        "fashion-mnist-50",
        [  # the recipe has mixup 0.8; LSB Swap is off there since session 17
            *("augment.lsb_swap.enabled=true", "augment.lsb_swap.bits=2", "augment.lsb_swap.p=0.5"),
            *("augment.lsb_swap.placement=before_randaugment", "augment.lsb_swap.stage=sample"),
            *("augment.mix.cutmix_alpha=1", "augment.mix.prob=0.5", "model.drop_rate=0.3"),
        ],
    )
    assert describe_regularisation(cfg) == (
        "regularisation: crop pad 4, hflip 0.5, randaugment rand-m9-mstd0.5, lsb_swap 2 bits p 0.5 "
        "(before_randaugment, sample), mixup 0.8 / cutmix 1 (p 0.5), dropout 0.3"
    )
    assert (
        describe_regularisation(load_config(None, ["augment.hflip=0"])) == "regularisation: crop resized (scale 0.35-1)"
    )


def test_settings_of_a_switched_off_part_are_noted_and_loss_settings_shown():
    """A sweep of ema.decay with EMA off (or of loss.gamma on CE) trains one run N times: said at start."""
    from scarce.engine.describe import describe_regularisation, inert_settings, loss_settings

    cfg = load_config(
        None, ["ema.decay=0.9", "loss.gamma=5", "augment.mix.prob=0.5", "augment.lsb_swap.partner=same_class"]
    )
    assert inert_settings(cfg) == [
        "note: ema.decay=0.9 has no effect: ema.enabled is false",
        "note: augment.lsb_swap.partner=same_class has no effect: augment.lsb_swap.enabled is false",
        "note: augment.mix.prob=0.5 has no effect: mixup_alpha and cutmix_alpha are 0",
        "note: loss.gamma=5.0 has no effect: loss ce does not take it",
    ]
    on = load_config(None, ["ema.enabled=true", "ema.decay=0.9", "loss.name=focal_cosine", "loss.gamma=5"])
    assert inert_settings(on) == [] and loss_settings(on) == " (gamma 5, lam 0.1)"
    assert loss_settings(load_config(None, ["loss.name=label_smoothing"])) == " (smoothing 0.1)"
    assert loss_settings(cfg) == ""
    for recipe in ("demo", "fashion-mnist-50", "small"):  # the shipped recipes set nothing inert
        assert inert_settings(load_config(recipe)) == [], recipe
    swap = ["augment.lsb_swap.enabled=true", "augment.lsb_swap.partner=same_class"]
    assert "lsb_swap 2 bits p 0.5 (last, batch, partner same_class)" in describe_regularisation(load_config(None, swap))
