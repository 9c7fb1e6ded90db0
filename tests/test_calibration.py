import math

import pytest
import torch
import torch.nn.functional as F

from scarce.calibration import expected_calibration_error, fit_temperature, nll, reliability_bins, soft_vote_nll

T = torch.tensor


def test_ece_overconfident_half_right():
    # confidence 1.0 everywhere, 50% accuracy -> ECE = |0.5 - 1.0| = 0.5
    probs = T([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, T([0, 1, 1, 0])) == pytest.approx(0.5)
    assert expected_calibration_error(probs, T([0, 0, 1, 1])) == pytest.approx(0.0)


def test_ece_two_bins_hand_value():
    # confidences sit mid-bin: float32 0.6 is 0.6000000238 and would land in (0.6, 0.7]
    probs = T([[0.85, 0.15], [0.85, 0.15], [0.85, 0.15], [0.45, 0.55]])
    y = T([0, 0, 1, 1])
    # bin (0.8, 0.9]: 3 samples, acc 2/3, conf 0.85; bin (0.5, 0.6]: 1 sample, acc 1, conf 0.55
    # ECE = 3/4 * |2/3 - 0.85| + 1/4 * |1 - 0.55| = 0.1375 + 0.1125
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.25)
    bins = reliability_bins(probs, y, n_bins=10)
    assert bins["counts"] == [0, 0, 0, 0, 0, 1, 0, 0, 3, 0]
    assert bins["accuracy"][8] == pytest.approx(2 / 3) and bins["confidence"][8] == pytest.approx(0.85)
    assert bins["accuracy"][5] == pytest.approx(1.0) and bins["confidence"][5] == pytest.approx(0.55)
    assert bins["accuracy"][0] == 0.0 and bins["confidence"][0] == 0.0  # empty bins
    assert len(bins["edges"]) == 11 and bins["ece"] == pytest.approx(0.25) and bins["n"] == 4


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    z, y = _synthetic(1.0)  # labels drawn from softmax(z): these probabilities are calibrated
    calibrated = expected_calibration_error(F.softmax(z, 1), y)
    assert isinstance(calibrated, float) and calibrated < 0.02
    assert expected_calibration_error(F.softmax(z * 3, 1), y) > 0.1  # sharpened: over-confident
    assert sum(reliability_bins(F.softmax(z, 1), y)["counts"]) == len(y)


def _synthetic(t0: float, n: int = 20000, c: int = 10, seed: int = 0):
    """Scores z and labels drawn from softmax(z / t0): the true temperature is t0."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * 4.0
    y = torch.multinomial(F.softmax(z / t0, 1), 1, generator=g).squeeze(1)
    return z, y


@pytest.mark.parametrize("t0", [0.5, 2.0, 3.0])
def test_fit_temperature_recovers_known_temperature(t0):
    z, y = _synthetic(t0)
    t = fit_temperature(z, y)
    assert isinstance(t, float)
    assert abs(t - t0) / t0 < 0.1
    assert t == fit_temperature(z, y)  # deterministic


def test_fit_temperature_fixes_overconfidence():
    z, y = _synthetic(3.0, n=5000, seed=1)
    logits = z.float()  # a model that reports z as its logits is over-confident (T0 = 3)
    t = fit_temperature(logits, y)
    assert t > 1.0
    assert nll(logits, y, t) < nll(logits, y, 1.0)
    ece_before = expected_calibration_error(F.softmax(logits, 1), y)
    ece_after = expected_calibration_error(F.softmax(logits / t, 1), y)
    assert ece_after < ece_before


def test_fit_temperature_edge_cases():
    assert fit_temperature(torch.zeros(4, 3), T([0, 1, 2, 0])) == 1.0  # NLL independent of T
    # every prediction right: NLL decreases as T -> 0; the search stops at the bound
    t = fit_temperature(T([[2.0, 0.0], [0.0, 2.0]]), T([0, 1]), bounds=(0.05, 20.0))
    assert t == pytest.approx(0.05, rel=1e-3)
    with pytest.raises(ValueError):
        fit_temperature(torch.zeros(3), T([0, 1, 2]))


def test_class_metrics_exact_values():
    import torch

    from scarce.engine.calibrate import class_metrics

    pred, targets = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 2])
    m = class_metrics(pred, targets, num_classes=4)  # class 3 absent: left out of the means
    assert m["support"] == [1, 3, 1, 0]
    assert m["precision"][:3] == pytest.approx([0.5, 1.0, 1.0]) and m["recall"][:3] == pytest.approx([1.0, 2 / 3, 1.0])
    assert m["f1"][:3] == pytest.approx([2 / 3, 0.8, 1.0])
    assert m["balanced_accuracy"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)


def test_per_epoch_evaluate_and_end_of_run_scoring_give_the_same_numbers():
    """Two paths score a model: ``loop.evaluate`` (summed over DDP ranks, every epoch) and
    ``collect_scores`` + ``accuracy_metrics`` (the end of the run): they must agree exactly."""
    from scarce.engine.batch import BatchPreprocessor
    from scarce.engine.calibrate import accuracy_metrics, collect_scores
    from scarce.engine.loop import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 7))  # varied answers, unlike a fresh CNN
    images = torch.randint(0, 256, (37, 1, 16, 16), dtype=torch.uint8)
    targets = torch.arange(37) % 7
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, targets), batch_size=8)
    preprocess = BatchPreprocessor([0.5], [0.25], torch.device("cpu"))
    per_epoch = evaluate(model, loader, preprocess, 7)
    scores, seen = collect_scores(model, loader, preprocess, "logits")
    at_end = accuracy_metrics(scores, seen, 7)
    assert len(set(scores.argmax(1).tolist())) > 2 and 0 < at_end["top1"] < at_end["top5"] < 1  # not degenerate
    assert per_epoch["count"] == at_end["count"] == 37
    assert per_epoch["top1"] == at_end["top1"] and per_epoch["top5"] == at_end["top5"]
    assert per_epoch["per_class"] == at_end["per_class"]


def test_calibrate_keeps_the_model_confidence_when_the_fit_runs_to_its_bound(tmp_path):
    import json

    from scarce.engine.calibrate import calibrate

    perfect = (T([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0]]), T([0, 1, 0]))  # every val image right
    result = calibrate({"val": perfect}, "logits", tmp_path)
    assert result["temperature"] == 1.0 and result["temperature_fitted"] == pytest.approx(0.01, rel=1e-3)
    assert "kept T=1" in result["note"] and "every val image right with a margin" in result["note"]
    assert json.loads((tmp_path / "calibration.json").read_text())["temperature"] == 1.0
    # scores against the labels (every image confidently wrong): the NLL wants uniform probabilities
    wrong = (T([[0.0, 3.0], [3.0, 0.0], [0.0, 2.0]]), T([0, 1, 0]))
    result = calibrate({"val": wrong}, "logits", tmp_path)
    assert result["temperature"] == 1.0 and result["temperature_fitted"] == pytest.approx(100.0, rel=1e-3)
    assert "val prefers uniform probabilities" in result["note"]
    z, y = _synthetic(3.0, n=2000, seed=2)
    fitted = calibrate({"val": (z.float(), y)}, "logits", tmp_path)
    assert fitted["note"] is None and fitted["temperature"] == fitted["temperature_fitted"] > 1.0


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"temperature": 1.', "not valid JSON"),
        ('{"T": 1.5}', "key 'temperature' should be int/float, got nothing"),
        ('{"temperature": "1.5"}', "key 'temperature' should be int/float, got str"),
        ('{"temperature": 0}', "key 'temperature' should be a positive number, got 0.0"),
        (
            '{"temperature": 1.5, "temperatures": {"best.safetensors": "x"}}',
            "key 'temperatures.best.safetensors' should be a positive number, got 'x'",
        ),
        ("[1.5]", "expected a JSON object"),
    ],
)
def test_a_damaged_calibration_file_is_one_line_naming_it(tmp_path, text, said):
    from scarce.engine.calibrate import read_temperature
    from scarce.errors import UserError

    assert read_temperature(tmp_path) == 1.0  # none: no val split, nothing fitted
    (tmp_path / "calibration.json").write_text(text)
    with pytest.raises(UserError) as caught:
        read_temperature(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'calibration.json'}: ") and said in message and "\n" not in message
    (tmp_path / "calibration.json").write_text('{"temperature": 1.5}')
    assert read_temperature(tmp_path) == 1.5


def test_each_weights_file_of_a_run_has_its_own_temperature(tmp_path):
    """calibration.json was fitted on best.safetensors and applied to any weights file of the run:
    last.safetensors or last_ema.safetensors (another epoch, or EMA) got best's temperature."""
    import json

    from scarce.config import load_config
    from scarce.data.loader import build_eval_loader
    from scarce.engine.calibrate import collect_scores, fitted_temperature
    from scarce.engine.evaluation import eval_dataset, load_run
    from scarce.engine.trainer import train
    from scarce.io import tensors_metadata
    from tests.conftest import TINY

    run_dir = tmp_path / "run"
    cfg = load_config(None, [*TINY, "epochs=3", "ema.enabled=true", "ema.decay=0.9", "checkpoint.select=best"])
    train(cfg, run_dir, progress=False)
    temperatures = json.loads((run_dir / "calibration.json").read_text())["temperatures"]
    best = load_run(run_dir, "cpu")
    assert best.temperature == temperatures["best.safetensors"]
    refitted = 0
    for name in ("last.safetensors", "last_ema.safetensors"):
        final = load_run(run_dir / name, "cpu")
        if tensors_metadata(run_dir / name) == tensors_metadata(run_dir / "best.safetensors"):
            assert name not in temperatures and final.temperature == best.temperature  # the same weights
            continue
        loader = build_eval_loader(eval_dataset(final, final.cfg.data, "val"), 64, 0)
        val = collect_scores(final.model, loader, final.preprocessor(), "logits", final.amp)
        assert final.temperature == temperatures[name] == fitted_temperature(*val)[0] != best.temperature
        refitted += 1
    assert refitted >= 1  # with EMA on, the raw and the EMA weights cannot both be best's
    calibration = json.loads((run_dir / "calibration.json").read_text())
    del calibration["temperatures"]  # a run from before: best's temperature for every file
    (run_dir / "calibration.json").write_text(json.dumps(calibration))
    assert load_run(run_dir / "last_ema.safetensors", "cpu").temperature == best.temperature


def test_soft_vote_nll_hand_value_and_one_view_is_plain_nll():
    # views (1/4, 3/4) and (3/4, 1/4) vote (1/2, 1/2): NLL ln 2 whatever the label
    views = torch.tensor([[[0.0, math.log(3.0)], [math.log(3.0), 0.0]]], dtype=torch.float64)
    assert soft_vote_nll(views, T([1])) == pytest.approx(math.log(2.0), abs=1e-12)
    z, y = _synthetic(2.0, n=500)
    assert soft_vote_nll(z.unsqueeze(1), y, 1.5) == pytest.approx(nll(z, y, 1.5), abs=1e-12)
    assert fit_temperature(z.unsqueeze(1), y) == fit_temperature(z, y)


def test_a_vote_over_disagreeing_views_gets_a_sharper_temperature():
    """Views that disagree (logits z + noise, labels from softmax(z)): their soft vote is less
    confident than any one view, so at the T fitted on single views it is under-confident; the T
    fitted on the vote itself is smaller and brings its calibration back."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(20000, 10, generator=g, dtype=torch.float64) * 4.0
    y = torch.multinomial(F.softmax(z, 1), 1, generator=g).squeeze(1)
    noise = torch.randn(20000, 4, 10, generator=g, dtype=torch.float64) * 2.0
    views = z.unsqueeze(1) + noise - noise.mean(dim=1, keepdim=True)  # views disagree, mean is z
    single, vote = fit_temperature(views[:, 0], y), fit_temperature(views, y)
    assert vote < 0.9 * single
    assert soft_vote_nll(views, y, vote) < soft_vote_nll(views, y, single)

    def vote_ece(t: float) -> float:
        return expected_calibration_error(F.softmax(views / t, 2).mean(1), y)

    assert vote_ece(vote) < 0.6 * vote_ece(single)  # 0.093 vs 0.207
