"""Plurality voting (Kim et al. 2020, Algorithm 1), soft voting and threshold choice."""

import numpy as np
import pytest
import torch

from scarce.inference.voting import choose_threshold, plurality_vote, soft_vote


def _members(*rows_per_member):
    """``[M, N, C]`` float32 from nested lists (one list of rows per member)."""
    return torch.tensor(rows_per_member, dtype=torch.float32)


# Three members, four classes, one sample each case; member 0 is the base model.
CONFIDENT = _members([[0.8, 0.1, 0.05, 0.05]], [[0.1, 0.7, 0.1, 0.1]], [[0.1, 0.7, 0.1, 0.1]])
UNSURE = _members([[0.5, 0.3, 0.1, 0.1]], [[0.1, 0.7, 0.1, 0.1]], [[0.2, 0.6, 0.1, 0.1]])


def test_confident_base_keeps_its_answer():
    assert plurality_vote(CONFIDENT[0], CONFIDENT, threshold=0.7).tolist() == [0]


def test_unconfident_base_is_replaced_by_the_mode():
    assert plurality_vote(UNSURE[0], UNSURE, threshold=0.7).tolist() == [1]


def test_threshold_is_inclusive():
    base_exact = _members([[0.7, 0.3, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0, 0.0]])
    assert plurality_vote(base_exact[0], base_exact, threshold=0.7).tolist() == [0]
    assert plurality_vote(base_exact[0], base_exact, threshold=0.71).tolist() == [1]


def test_tie_goes_to_the_highest_mean_probability():
    # Votes 0, 1, 2, 1, 2: classes 1 and 2 tie with two votes each. Mean probabilities
    # over the five members: class 0 0.44 (one vote: out), class 2 0.30, class 1 0.26.
    m = _members([[1.0, 0.0, 0.0]], [[0.3, 0.4, 0.3]], [[0.3, 0.3, 0.4]], [[0.3, 0.4, 0.3]], [[0.3, 0.2, 0.5]])
    assert m.mean(0)[0].argsort(descending=True).tolist() == [0, 2, 1]
    assert plurality_vote(m[0], m, threshold=1.01).tolist() == [2]
    assert plurality_vote(m[0], m, threshold=0.7).tolist() == [0]  # base confident (1.0)


def test_tie_in_votes_and_mean_goes_to_the_lowest_class():
    m = _members([[0.0, 0.4, 0.6]], [[0.0, 0.6, 0.4]])
    assert plurality_vote(m[0], m, threshold=1.01).tolist() == [1]
    assert plurality_vote(m[1], m.flip(0), threshold=1.01).tolist() == [1]  # member order does not matter


def test_threshold_zero_is_base_only_and_above_one_is_pure_plurality():
    # Base fully confident (prob 1.0) yet outvoted: only threshold > 1 replaces it.
    m = _members([[1.0, 0.0, 0.0]], [[0.0, 0.9, 0.1]], [[0.1, 0.8, 0.1]])
    assert plurality_vote(m[0], m, threshold=0.0).tolist() == [0]
    assert plurality_vote(m[0], m, threshold=1.0).tolist() == [0]
    assert plurality_vote(m[0], m, threshold=1.01).tolist() == [1]
    assert plurality_vote(UNSURE[0], UNSURE, threshold=0).tolist() == [0]


def test_many_rows_match_a_reference_loop_both_paths():
    g = torch.Generator().manual_seed(0)
    m, n, c = 5, 400, 6
    members = torch.softmax(torch.randn(m, n, c, generator=g) * 2, dim=2)
    for threshold in (0.3, 0.9, 2.0):  # few rows voted, most rows voted, all rows voted
        got = plurality_vote(members[0], members, threshold).tolist()
        assert got == [_reference(members[:, i], threshold) for i in range(n)]


def _reference(p: torch.Tensor, threshold: float) -> int:
    """Algorithm 1 for one sample, written plainly. p: [M, C], member 0 the base."""
    if p[0].max() >= threshold:
        return int(p[0].argmax())
    votes = np.bincount(p.argmax(1).numpy(), minlength=p.shape[1])
    tied = np.flatnonzero(votes == votes.max())
    mean = p.mean(0).numpy()
    return int(tied[np.argmax(mean[tied])])


def test_accepts_numpy_and_returns_long():
    out = plurality_vote(UNSURE[0].numpy(), UNSURE.numpy())
    assert out.dtype == torch.int64 and out.tolist() == [1]


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\[M, N, C\]"):
        plurality_vote(UNSURE[0], UNSURE[0])
    with pytest.raises(ValueError, match="base_probs must be"):
        plurality_vote(UNSURE[0, :, :3], UNSURE)
    with pytest.raises(ValueError, match="threshold"):
        plurality_vote(UNSURE[0], UNSURE, threshold=-0.1)


def test_soft_vote_exact_values_and_weights():
    m = _members([[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]])
    assert torch.allclose(soft_vote(m), torch.tensor([[0.5, 0.5]]))
    assert torch.allclose(soft_vote(m, [3, 1, 0]), torch.tensor([[0.75, 0.25]]))
    assert torch.allclose(soft_vote(m.numpy(), np.array([0.0, 2.0, 2.0])), torch.tensor([[0.25, 0.75]]))
    assert soft_vote(m).dtype == torch.float32


def test_soft_vote_rejects_bad_weights():
    m = _members([[1.0, 0.0]], [[0.0, 1.0]])
    for bad in ([1.0], [1.0, -1.0], [0.0, 0.0], [float("nan"), 1.0]):
        with pytest.raises(ValueError, match="weights"):
            soft_vote(m, bad)


def test_choose_threshold_hand_case():
    # Base (member 0) answers class 0 everywhere, with confidence 0.9, 0.6, 0.5;
    # members 1 and 2 vote class 1 everywhere, so the vote is 1 wherever it is used.
    base = [[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]]
    other = [[0.1, 0.9], [0.2, 0.8], [0.1, 0.9]]
    members = _members(base, other, other)
    targets = torch.tensor([0, 1, 0])
    best, table = choose_threshold(members[0], members, targets, candidates=[0.0, 0.55, 0.65, 0.95, 1.01])
    third = 1 / 3
    assert [v for r in table for v in r] == pytest.approx(
        [
            v
            for row in [
                (0.0, 2 * third, 0.0),  # base only: samples 1 and 3 right
                (0.55, third, third),  # sample 3 replaced, wrongly
                (0.65, 2 * third, 2 * third),  # samples 2 (rightly) and 3 (wrongly) replaced
                (0.95, third, 1.0),
                (1.01, third, 1.0),
            ]
            for v in row
        ]
    )
    assert best == 0.0  # 0.0 and 0.65 tie at 2/3: the one replacing fewer answers wins


def test_choose_threshold_prefers_fewest_replacements_on_ties():
    base = [[0.9, 0.1], [0.6, 0.4]]
    other = [[0.1, 0.9], [0.2, 0.8]]
    members = _members(base, other, other)
    targets = torch.tensor([0, 1])
    best, table = choose_threshold(members[0], members, targets, candidates=[1.01, 0.0, 0.7, 0.8])
    assert [r.threshold for r in table] == [0.0, 0.7, 0.8, 1.01]
    assert [r.accuracy for r in table] == [0.5, 1.0, 1.0, 0.5]
    assert best == 0.7


def test_choose_threshold_needs_known_targets():
    with pytest.raises(ValueError, match="targets"):
        choose_threshold(UNSURE[0], UNSURE, torch.tensor([-1]))


def test_oracle_accuracy_exact():
    from scarce.inference.voting import oracle_accuracy

    members = np.array(
        [
            [[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]],  # answers 0, 0, 0
            [[0.2, 0.8], [0.7, 0.3], [0.3, 0.7]],
        ]
    )  # answers 1, 0, 1
    assert oracle_accuracy(members, [1, 1, 0]) == pytest.approx(2 / 3)  # sample 1: nobody says 1
