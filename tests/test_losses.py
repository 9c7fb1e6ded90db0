import math

import pytest
import torch
import torch.nn.functional as F
from timm.loss import LabelSmoothingCrossEntropy

from scarce.losses import (
    LOSS_NAMES,
    CosineCELoss,
    CosineLoss,
    CrossEntropy,
    FocalCosineLoss,
    FocalLoss,
    LabelSmoothingCE,
    cosine_ce_loss,
    cosine_loss,
    create_loss,
    focal_cosine_loss,
    focal_loss,
    loss_prediction_source,
    loss_requires_head_g,
)

T = torch.tensor
LN2 = math.log(2.0)


def _rand(b=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, c, generator=g), torch.randn(b, c, generator=g), torch.randint(0, c, (b,), generator=g))


# ---- cosine -------------------------------------------------------------------


def test_cosine_hand_values():
    emb = T([[3.0, 4.0], [3.0, 4.0], [-1.0, 0.0]])
    y = T([0, 1, 0])
    # |[3,4]| = 5: cos to e0 = 0.6 -> 0.4, to e1 = 0.8 -> 0.2; [-1,0] vs e0: cos -1 -> 2.
    assert torch.allclose(cosine_loss(emb, y, reduction="none"), T([0.4, 0.2, 2.0]))
    assert cosine_loss(emb, y).item() == pytest.approx(2.6 / 3)
    assert cosine_loss(emb, y, reduction="sum").item() == pytest.approx(2.6)


def test_cosine_is_scale_invariant():
    emb, _, y = _rand()
    assert torch.allclose(cosine_loss(emb, y), cosine_loss(emb * 37.0, y))


def test_cosine_zero_embedding_finite_grad():
    emb = torch.zeros(2, 3, requires_grad=True)
    loss = cosine_loss(emb, T([0, 2]))
    assert loss.item() == pytest.approx(1.0)  # cos(0, e_y) taken as 0
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_cosine_half_precision_zero_embedding():
    emb = torch.zeros(2, 3, dtype=torch.bfloat16, requires_grad=True)
    loss = cosine_loss(emb, T([0, 1]))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(emb.grad.float()).all()


def test_bad_reduction_and_shapes():
    with pytest.raises(ValueError, match="mean, sum, none"):
        cosine_loss(torch.ones(2, 3), T([0, 1]), reduction="avg")
    with pytest.raises(ValueError):
        cosine_loss(torch.ones(3), T([0]))
    with pytest.raises(ValueError):
        focal_loss(torch.ones(2, 3), T([0, 1, 2]))


# ---- focal --------------------------------------------------------------------


def test_focal_hand_values():
    # logits [0, 0]: p_t = 0.5 -> (0.5)^2 * ln 2
    assert focal_loss(T([[0.0, 0.0]]), T([0])).item() == pytest.approx(0.25 * LN2)
    assert focal_loss(T([[0.0, 0.0]]), T([0]), gamma=1.0).item() == pytest.approx(0.5 * LN2)
    # logits [ln 3, 0]: p_t = 3/4 -> (1/4)^2 * -ln(3/4)
    v = focal_loss(T([[math.log(3.0), 0.0]]), T([0])).item()
    assert v == pytest.approx(0.0625 * -math.log(0.75), rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_gamma0_is_cross_entropy(reduction):
    logits, _, y = _rand(8, 7)
    assert torch.allclose(
        focal_loss(logits, y, gamma=0.0, reduction=reduction), F.cross_entropy(logits, y, reduction=reduction)
    )


def test_focal_stable_for_large_logits():
    logits = T([[1000.0, 0.0], [1000.0, 0.0]], requires_grad=True)
    out = focal_loss(logits, T([1, 0]), reduction="none")
    # wrong class: p_t = e^-1000 -> factor 1, -log p_t = 1000; right class: ~0
    assert out[0].item() == pytest.approx(1000.0)
    assert out[1].item() == pytest.approx(0.0, abs=1e-12)
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_gamma_below_one_confident_grad_finite():
    logits = T([[100.0, 0.0]], requires_grad=True)
    focal_loss(logits, T([0]), gamma=0.5).backward()
    assert torch.isfinite(logits.grad).all()


def test_focal_down_weights_easy_examples():
    logits, _, y = _rand(8, 7)
    assert (focal_loss(logits, y, reduction="none") <= F.cross_entropy(logits, y, reduction="none") + 1e-7).all()


# ---- compositions -------------------------------------------------------------


def test_focal_cosine_hand_value():
    emb, aux, y = T([[3.0, 4.0]]), T([[0.0, 0.0]]), T([0])
    # 0.4 + 0.1 * 0.25 * ln 2 (the focal term is added, not subtracted)
    assert focal_cosine_loss(emb, aux, y).item() == pytest.approx(0.4 + 0.025 * LN2)


def test_focal_cosine_lam0_is_cosine_and_composition():
    emb, aux, y = _rand()
    assert torch.allclose(focal_cosine_loss(emb, aux, y, lam=0.0), cosine_loss(emb, y))
    expected = cosine_loss(emb, y, "none") + 0.3 * focal_loss(aux, y, 1.5, "none")
    assert torch.allclose(focal_cosine_loss(emb, aux, y, gamma=1.5, lam=0.3, reduction="none"), expected)


def test_cosine_ce_hand_value_and_composition():
    assert cosine_ce_loss(T([[3.0, 4.0]]), T([[0.0, 0.0]]), T([0])).item() == pytest.approx(0.4 + 0.1 * LN2)
    emb, aux, y = _rand()
    expected = cosine_loss(emb, y) + 0.1 * F.cross_entropy(aux, y)
    assert torch.allclose(cosine_ce_loss(emb, aux, y), expected)
    assert torch.allclose(
        cosine_ce_loss(emb, aux, y, lam=0.5, reduction="sum"),
        cosine_loss(emb, y, "sum") + 0.5 * F.cross_entropy(aux, y, reduction="sum"),
    )


def test_focal_cosine_authors_variant_hand_value():
    emb, y = T([[3.0, 4.0]]), T([0])
    # normalised logits [0.6, 0.8] at T=1: p_0 = 1 / (1 + e^0.2)
    p = 1.0 / (1.0 + math.exp(0.2))
    expected = 0.4 + 0.1 * (1 - p) ** 2 * -math.log(p)
    loss = FocalCosineLoss(variant="authors")
    assert loss.aux_head == "none"
    assert loss(emb, y).item() == pytest.approx(expected, rel=1e-6)
    # aux_logits, if present, are ignored by this variant
    assert loss({"logits": emb, "aux_logits": T([[9.0, -9.0]])}, y).item() == pytest.approx(expected, rel=1e-6)


# ---- modules ------------------------------------------------------------------


def test_modules_accept_tensor_and_dict():
    emb, aux, y = _rand()
    out = {"logits": emb, "aux_logits": aux}
    assert torch.allclose(CrossEntropy()(emb, y), F.cross_entropy(emb, y))
    assert torch.allclose(CrossEntropy()(out, y), F.cross_entropy(emb, y))
    assert torch.allclose(FocalLoss(gamma=2.0)(out, y), focal_loss(emb, y))
    assert torch.allclose(CosineLoss()(emb, y), cosine_loss(emb, y))
    assert torch.allclose(CosineLoss()(out, y), cosine_loss(emb, y))
    assert torch.allclose(CosineCELoss(lam=0.2)(out, y), cosine_ce_loss(emb, aux, y, lam=0.2))
    assert torch.allclose(FocalCosineLoss(gamma=2.0, lam=0.1)(out, y), focal_cosine_loss(emb, aux, y))


def test_label_smoothing_matches_timm():
    emb, _, y = _rand()
    assert torch.allclose(LabelSmoothingCE(0.1)(emb, y), LabelSmoothingCrossEntropy(0.1)(emb, y))
    assert torch.allclose(LabelSmoothingCE(0.0)(emb, y), F.cross_entropy(emb, y))


@pytest.mark.parametrize("cls", [CosineCELoss, FocalCosineLoss])
def test_head_g_losses_reject_plain_tensor(cls):
    emb, _, y = _rand()
    with pytest.raises(ValueError, match="wrap_with_head_g"):
        cls()(emb, y)


def test_attributes():
    expected = {  # name: (aux_head, normalized_embedding, prediction source)
        "ce": ("none", False, "logits"),
        "label_smoothing": ("none", False, "logits"),
        "focal": ("none", False, "logits"),
        "cosine": ("none", True, "cosine"),
        "cosine_ce": ("g", True, "cosine"),
        "focal_cosine": ("g", True, "cosine"),
        "focal_cosine_authors": ("none", True, "cosine"),
    }
    assert set(LOSS_NAMES) == set(expected)
    for name, (aux_head, norm, source) in expected.items():
        loss = create_loss(name)
        assert (loss.aux_head, loss.normalized_embedding) == (aux_head, norm), name
        assert loss_requires_head_g(name) == (aux_head == "g")
        assert loss_prediction_source(name) == source
    assert CosineCELoss.aux_head == "g" and FocalCosineLoss.aux_head == "g" and CosineLoss.aux_head == "none"


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_every_loss_has_finite_gradients(name):
    emb, aux, y = _rand()
    emb = torch.cat([emb, torch.zeros(1, emb.shape[1])]).requires_grad_(True)
    aux = torch.cat([aux, torch.zeros(1, aux.shape[1])]).requires_grad_(True)
    y = torch.cat([y, T([0])])
    loss = create_loss(name)({"logits": emb, "aux_logits": aux}, y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.isfinite(emb.grad).all()
    if loss_requires_head_g(name):
        assert torch.isfinite(aux.grad).all() and aux.grad.abs().sum() > 0


# ---- registry -----------------------------------------------------------------


def test_create_loss_kwargs():
    assert create_loss("focal", gamma=1.0).gamma == 1.0
    assert create_loss("focal_cosine", lam=0.3).lam == 0.3
    assert create_loss("focal_cosine_authors").variant == "authors"
    assert create_loss("label_smoothing", smoothing=0.2).smoothing == 0.2
    assert create_loss("cosine", reduction="none")(T([[3.0, 4.0]]), T([0])).shape == (1,)


def test_create_loss_unknown_name():
    with pytest.raises(ValueError, match="focal_cosine_authors") as e:
        create_loss("arcface")
    assert "arcface" in str(e.value)


def test_create_loss_unknown_kwarg():
    with pytest.raises(ValueError, match="gamma") as e:
        create_loss("ce", gamma=2.0)
    assert "reduction" in str(e.value)  # the accepted ones are listed
    with pytest.raises(ValueError, match="variant"):
        create_loss("focal_cosine", variant="authors")  # the name fixes the variant
    with pytest.raises(ValueError, match="variant"):
        FocalCosineLoss(variant="nope")
