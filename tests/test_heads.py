import math

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from scarce.losses import create_loss
from scarce.models.heads import (
    PREDICTION_SOURCES,
    CosineHeadModel,
    prediction_probs,
    prediction_scores,
    wrap_with_head_g,
)

T = torch.tensor


@pytest.mark.parametrize("arch", ["resnet18", "efficientnet_b0"])
def test_head_g_wraps_timm_models(arch):
    torch.manual_seed(0)
    backbone = timm.create_model(arch, pretrained=False, num_classes=10)
    model = wrap_with_head_g(backbone, 10)
    assert isinstance(model, CosineHeadModel) and model.backbone is backbone
    assert isinstance(model.g[0], nn.ReLU) and isinstance(model.g[1], nn.BatchNorm1d)
    assert isinstance(model.g[2], nn.Linear) and model.g[2].out_features == 10
    x = torch.randn(4, 3, 32, 32)
    y = T([0, 1, 2, 3])

    model.train()
    out = model(x)
    assert set(out) == {"logits", "aux_logits"}
    assert out["logits"].shape == (4, 10) and out["aux_logits"].shape == (4, 10)
    loss = create_loss("focal_cosine")(out, y)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.g[2].weight.grad is not None and torch.isfinite(model.g[2].weight.grad).all()
    grads = [p.grad for p in backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)

    model.eval()
    with torch.no_grad():
        out = model(x)
        assert set(out) == {"logits", "aux_logits"} and out["aux_logits"].shape == (4, 10)
        # aux_logits = g(normalize(psi(f(x))))
        assert torch.allclose(out["aux_logits"], model.g(F.normalize(out["logits"], dim=1)), atol=1e-6)
        assert torch.allclose(out["logits"], backbone(x))


def test_wrap_is_idempotent_and_checks_classes():
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=10)
    model = wrap_with_head_g(backbone)
    assert model.num_classes == 10
    assert wrap_with_head_g(model) is model
    with pytest.raises(ValueError):
        wrap_with_head_g(backbone, 5)
    with pytest.raises(ValueError):
        wrap_with_head_g(model, 5)


# ---- prediction sources ---------------------------------------------------------


def _outputs(seed=0, b=5, c=4):
    g = torch.Generator().manual_seed(seed)
    return {"logits": torch.randn(b, c, generator=g) * 3, "aux_logits": torch.randn(b, c, generator=g)}


@pytest.mark.parametrize("source", PREDICTION_SOURCES)
def test_prediction_probs_sum_to_one(source):
    p = prediction_probs(_outputs(), source=source)
    assert p.shape == (5, 4) and (p >= 0).all()
    assert torch.allclose(p.sum(1), torch.ones(5))


def test_prediction_sources_select_the_right_scores():
    out = _outputs()
    # a head-g model's default is its cosine scores (as the config's auto for focal_cosine), not g
    assert torch.allclose(prediction_probs(out, "auto"), prediction_probs(out, "cosine"))
    assert not torch.allclose(prediction_probs(out, "cosine"), F.softmax(out["aux_logits"], 1))
    assert torch.allclose(prediction_probs(out, "g"), F.softmax(out["aux_logits"], 1))
    assert torch.allclose(prediction_probs(out, "logits"), F.softmax(out["logits"], 1))
    assert torch.allclose(prediction_probs(out["logits"], "auto"), F.softmax(out["logits"], 1))


def test_cosine_source_hand_value():
    # normalize([3, 4]) = [0.6, 0.8]; times 16 = [9.6, 12.8]; p_1 = 1 / (1 + e^-3.2)
    p = prediction_probs(T([[3.0, 4.0]]), source="cosine")
    assert p[0, 1].item() == pytest.approx(1.0 / (1.0 + math.exp(-3.2)), rel=1e-6)
    # scale of the embedding does not matter, the fixed cosine_scale does
    assert torch.allclose(p, prediction_probs(T([[30.0, 40.0]]), source="cosine"))
    p1 = prediction_probs(T([[3.0, 4.0]]), source="cosine", cosine_scale=1.0)
    assert p1[0, 1].item() == pytest.approx(1.0 / (1.0 + math.exp(-0.2)), rel=1e-6)
    s = prediction_scores(T([[3.0, 4.0]]), source="cosine")
    assert torch.allclose(s, T([[9.6, 12.8]]))


def test_temperature_behaviour():
    out = _outputs()
    p1 = prediction_probs(out, "logits")
    p_hot = prediction_probs(out, "logits", temperature=4.0)
    p_cold = prediction_probs(out, "logits", temperature=0.25)
    assert torch.allclose(p_hot, F.softmax(out["logits"] / 4.0, 1))
    assert (p_hot.max(1).values < p1.max(1).values).all()
    assert (p_cold.max(1).values > p1.max(1).values).all()
    # temperature never changes the predicted class
    assert torch.equal(p_hot.argmax(1), p1.argmax(1)) and torch.equal(p_cold.argmax(1), p1.argmax(1))
    with pytest.raises(ValueError):
        prediction_probs(out, temperature=0.0)


def test_prediction_source_errors():
    with pytest.raises(ValueError, match="cosine") as e:
        prediction_probs(_outputs(), source="softmax")
    assert "softmax" in str(e.value)
    with pytest.raises(ValueError, match="aux_logits"):
        prediction_probs(torch.randn(2, 3), source="g")


def test_half_precision_scores_are_float32():
    p = prediction_probs(torch.randn(2, 3).to(torch.bfloat16), source="cosine")
    assert p.dtype == torch.float32
