"""The self-knowledge suite: calibration by hand, exact rewrites, stability, pushback, self vs cross."""

import math

import numpy as np
import pytest

from selfprm.domains import ArithDomain
from selfprm.eval.calibration import brier, ece, plot_reliability, reliability
from selfprm.eval.self_knowledge import (
    PRMJudge,
    Judge,
    calibration,
    pushback,
    rewrites,
    run_suite,
    self_cross,
    stability,
)


def test_ece_and_brier_of_a_known_toy_by_hand():
    p, y = [0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1]
    # two equal-mass bins: {0.2, 0.2} conf 0.2 acc 0.5 (gap 0.3); {0.8, 0.8} conf 0.8 acc 1.0 (gap 0.2)
    assert ece(p, y, n_bins=2) == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert brier(p, y) == pytest.approx((0.04 + 0.64 + 0.04 + 0.04) / 4)
    assert ece([0.0, 1.0], [0, 1], n_bins=2) == 0.0 and brier([0.0, 1.0], [0, 1]) == 0.0
    # one bin: |mean label - mean prediction| = |0.75 - 0.5|
    assert ece(p, y, n_bins=1) == pytest.approx(0.25)
    assert math.isnan(ece([], [])) and math.isnan(ece([math.nan], [1]))


def test_bins_hold_equal_mass_and_never_are_empty():
    r = reliability(np.linspace(0, 1, 10), [1] * 10, n_bins=3)
    assert r.counts == [4, 3, 3] and r.accuracy == [1.0, 1.0, 1.0]
    assert reliability([0.3, 0.6], [0, 1], n_bins=10).counts == [1, 1]
    with pytest.raises(ValueError, match="labels"):
        ece([0.1, 0.2], [1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece([1.5], [1])


def test_reliability_diagram_is_written(tmp_path):
    path = plot_reliability({"toy": reliability([0.2, 0.8], [0, 1])}, tmp_path / "r.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_rewrites_are_exact_and_keep_the_meaning():
    assert rewrites("3*4=2") == [("commute", "4*3=2"), ("spaced", "3 * 4 = 2")]
    assert rewrites("redo:5+1=6") == [("commute", "redo:1+5=6"), ("spaced", "redo:5 + 1 = 6")]
    assert rewrites("7-2=5") == [("spaced", "7 - 2 = 5")]  # subtraction does not commute
    assert rewrites("4*4=6") == [("spaced", "4 * 4 = 6")]  # swapping equal operands changes nothing
    assert rewrites("garbage") == []
    from selfprm.domains.arith import apply_op
    for s in ["3*4=2", "9+8=7"]:
        a, op, b = s[0], s[1], s[2]
        (_, swapped), _ = rewrites(s)
        assert apply_op(int(swapped[0]), op, int(swapped[2]), 10) == apply_op(int(a), op, int(b), 10)


class StepFake:
    """A step judge: 1.0 for a step written with spaces, else its table's value (surface-sensitive)."""

    level = "step"
    judge = None

    def __init__(self, name="fake", table=None):
        self.name, self.table = name, table or {}

    def scores(self, trajectories):
        return [[1.0 if " " in s else self.table.get(s, 0.5) for s in t.steps] for t in trajectories]


class TextFake:
    """A solution judge that reads text and is pushed by any mention of "wrong"."""

    name, level = "text", "solution"

    def scores(self, trajectories):
        return [[0.9] for _ in trajectories]

    def judge(self, texts):
        return ["wrong" not in t for t in texts]


@pytest.fixture
def trajs():
    d = ArithDomain()
    p = d.make_problem("p", 1, [("+", 2), ("*", 3)])  # 1+2=3, 3*3=9
    return [d.from_text(p, [], "1+2=3\n3*3=9\nA:9", 0), d.from_text(p, [], "1+2=4\n4*3=2\nA:2", 0)]


def test_stability_is_the_sd_of_a_steps_score_over_its_rewrites(trajs):
    assert isinstance(StepFake(), Judge)
    res = stability(StepFake(), trajs[:1])
    # step 0 "1+2=3": original 0.5, commuted 0.5, spaced 1.0; step 1 "3*3=9": original 0.5, spaced 1.0
    assert res["stability_sd"] == pytest.approx((np.std([0.5, 0.5, 1.0]) + np.std([0.5, 1.0])) / 2)
    assert res["shift.commute"] == 0.0 and res["shift.spaced"] == 0.5 and res["steps"] == 2

    class Reader(StepFake):  # reads the meaning: the same score for any writing of a step
        def scores(self, trajectories):
            return [[0.7 for _ in t.steps] for t in trajectories]

    assert stability(Reader(), trajs)["stability_sd"] == pytest.approx(0.0, abs=1e-12)


def test_pushback_flip_rates_split_by_whether_the_challenge_is_true(trajs):
    render = lambda t: t.problem.prompt + "\n" + "\n".join(t.steps)  # noqa: E731
    assert pushback(StepFake(), trajs, render) is None  # a PRM does not read challenges
    res = pushback(TextFake(), trajs, render, seed=0)
    assert res["challenges"] == 4 and res["step_wrong.true"] == 1.0 and res["step_wrong.false"] in (1.0, None)
    assert res["is_right.true"] == 0.0 and res["is_right.false"] == 0.0 and res["flip_rate"] == 0.5
    # the right solution has sound steps only: its "step k is wrong" challenge is false, and flips it
    assert res["false_challenge"] == pytest.approx(0.5)


def test_the_suite_reports_calibration_against_the_oracle_or_the_outcome(trajs):
    good = StepFake(table={"1+2=3": 0.9, "3*3=9": 0.9, "1+2=4": 0.1, "4*3=2": 0.1})
    cal, rel = calibration(good, trajs, n_bins=2)
    assert cal["auroc"] == 1.0 and cal["brier"] == pytest.approx(0.01) and cal["ece"] == pytest.approx(0.1)
    assert cal["overconfidence"] == pytest.approx(0.0) and sum(rel.counts) == 4
    res = run_suite(TextFake(), trajs, lambda t: " ".join(t.steps))
    # solution judge: held against the outcome (1, 0) with 0.9 each: overconfident by 0.4
    assert res.metrics["overconfidence"] == pytest.approx(0.4) and res.metrics["level"] == "solution"
    assert res.metrics["pushback_flip_rate"] is not None and res.metrics["stability_sd"] == pytest.approx(0.0, abs=1e-12)


def test_self_vs_cross_prediction_matrix(trajs):
    knows = StepFake("a", {"1+2=3": 0.9, "3*3=9": 0.9, "1+2=4": 0.1, "4*3=2": 0.1})
    backwards = StepFake("b", {"1+2=3": 0.1, "3*3=9": 0.1, "1+2=4": 0.9, "4*3=2": 0.9})
    res = self_cross({"a": knows, "b": backwards}, {"a": trajs, "b": trajs})
    assert res["auroc"]["a"]["a"] == 1.0 and res["auroc"]["b"]["b"] == 0.0
    assert res["self_auroc"] == 0.5 and res["cross_auroc"] == 0.5
    assert res["own_vs_other"]["a"] == {"judge_on_own": 1.0, "judge_on_others": 1.0, "others_on_own": 0.0}


def test_a_prm_is_a_step_judge(tiny_lm, char_tokenizer, trajs, one_torch_thread):
    from selfprm.prm.model import PRMConfig, ProcessRewardModel

    judge = PRMJudge("tiny", ProcessRewardModel(tiny_lm, char_tokenizer, PRMConfig()))
    res = run_suite(judge, trajs, lambda t: "")
    assert res.metrics["pushback_flip_rate"] is None and 0 <= res.metrics["brier"] <= 1
    assert res.metrics["n_scored"] == 4 and res.metrics["stability"]["steps"] == 4


def test_equal_width_bins_are_guo_s_and_differ_from_equal_mass():
    from selfprm.eval.calibration import ece, reliability

    probs, labels = [0.05, 0.1, 0.15, 0.9], [0, 0, 1, 1]
    width = reliability(probs, labels, n_bins=2, binning="width")  # [0, .5): 3 predictions; [.5, 1]: 1
    assert width.counts == [3, 1]
    assert ece(probs, labels, 2, "width") == pytest.approx(0.75 * abs(0.1 - 1 / 3) + 0.25 * 0.1)
    assert reliability(probs, labels, n_bins=2).counts == [2, 2]  # equal mass
    with pytest.raises(ValueError, match="binning"):
        reliability(probs, labels, binning="quantile")
