import math

import pytest

from selfprm.eval import auroc, best_of_n, first_error_f1, predicted_first_error, step_auroc, tune_threshold


def test_auroc_by_hand():
    # pairs (pos, neg): (0.35,0.1) (0.35,0.4)x (0.8,0.1) (0.8,0.4) -> 3/4
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)  # a tie counts one half
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    assert step_auroc([[0.9, 0.1], [0.8]], [[True, False], [True]]) == 1.0


def test_first_error_prediction_and_f1_by_hand():
    assert predicted_first_error([0.9, 0.4, 0.2], 0.5) == 1
    assert predicted_first_error([0.9, 0.8], 0.5) == -1
    scores = [
        [0.9, 0.2, 0.1],  # label 1 -> predicted 1: right
        [0.3, 0.9, 0.9],  # label 2 -> predicted 0: wrong
        [0.9, 0.9],  # label -1 -> predicted -1: right
        [0.9, 0.4],  # label -1 -> predicted 1: wrong
        [0.8, 0.7],  # label -1 -> predicted -1: right
    ]
    r = first_error_f1(scores, [1, 2, -1, -1, -1], 0.5)
    assert r.error_accuracy == 0.5 and r.correct_accuracy == pytest.approx(2 / 3)
    assert r.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))  # = 4/7
    assert r.f1 == pytest.approx(4 / 7)


def test_threshold_is_tuned_on_the_given_split():
    scores = [[0.9, 0.45], [0.9, 0.9]]
    labels = [1, -1]
    th = tune_threshold(scores, labels)
    assert first_error_f1(scores, labels, th).f1 == 1.0 and 0.45 < th <= 0.9


def test_best_of_n_by_hand():
    groups = [
        [("1", False, 0.2), ("2", True, 0.9), ("1", False, 0.5)],  # PRM right, majority "1" wrong
        [("3", True, 0.1), ("3", True, 0.3), ("4", False, 0.8)],  # PRM wrong, majority right
    ]
    r = best_of_n(groups, 3)
    assert r.prm == 0.5 and r.majority_vote == 0.5 and r.oracle_pick == 1.0
    assert r.random_pick == pytest.approx((1 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError):
        best_of_n(groups, 4)


def test_within_group_auroc_ignores_what_separates_problems():
    from selfprm.eval.metrics import within_group_auroc

    # an easy problem scored high and a hard one low, each ranked backwards among its own samples
    easy = [(0.9, False), (0.8, True), (0.7, True), (0.6, True)]
    hard = [(0.4, False), (0.3, False), (0.2, False), (0.1, True)]
    flat = easy + hard
    assert auroc([s for s, _ in flat], [ok for _, ok in flat]) == pytest.approx(9 / 16)  # pooled: looks informative
    assert within_group_auroc([easy, hard]) == 0.0  # but it would pick a wrong sample on both problems
    assert within_group_auroc([[(0.5, True), (0.5, False)]]) == 0.5
    assert within_group_auroc([[(0.7, True), (float("nan"), False), (0.2, False)]]) == 1.0
    assert math.isnan(within_group_auroc([[(0.9, True), (0.8, True)], [(0.1, False)]]))
