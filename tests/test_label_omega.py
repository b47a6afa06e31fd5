import math

import pytest

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.labels import run_label_source
from selfprm.labels.omega import OmegaLabels, qu_score, records_to_training, _State
from selfprm.policies import SimulatedPolicy, SimulatedPolicyConfig


def _perfect(domain):
    """A solver that never errs: from a sound prefix it always reaches the answer, from a wrong one never."""
    return SimulatedPolicy(domain, SimulatedPolicyConfig(
        error_rate={"easy": 0, "medium": 0, "hard": 0}, recovery_rate=0, extra_step_rate=0, answer_error_rate=0))


def _planted(domain, n_steps, wrong_at):
    """A solution of ``n_steps`` operations whose step ``wrong_at`` writes a wrong value (-1: only the answer is wrong)."""
    from selfprm.domains.arith import apply_op

    p = domain.sample_problems(1, seed=n_steps * 31 + wrong_at + 5)[0]
    chain = p.meta["chain"]
    assert len(chain) == n_steps
    value, steps = p.meta["start"], []
    for j, (op, b) in enumerate(chain):
        right = apply_op(value, op, b, domain.config.modulus)
        written = (right + 3) % domain.config.modulus if j == wrong_at else right
        steps.append(f"{value}{op}{b}={written}")
        value = written
    answer = str((value + 1) % 10) if wrong_at == -1 else str(value)
    t = domain.make_trajectory(p, steps, answer)
    assert not t.outcome and t.first_error == wrong_at
    return t


@pytest.mark.parametrize("wrong_at", [-1, 0, 1, 3, 5, 6, 7])
def test_binary_search_finds_a_planted_first_error_in_log2_estimates(wrong_at):
    domain = ArithDomain(ArithConfig(min_ops=8, max_ops=8, recovery_rate=0, extra_step_rate=0))
    t = _planted(domain, 8, wrong_at)
    r = run_label_source("omega", [t], _perfect(domain), n_rollouts=2, progress=False)
    lab = r.labels[0]
    assert lab.first_error == wrong_at
    assert lab.values == [1.0 if wrong_at == -1 or j < wrong_at else 0.0 for j in range(8)]
    estimates = lab.rollouts // 2
    # T = 8 steps: ⌈log2(8 + 1)⌉ = 4 midpoint estimates, where Math-Shepherd's mc needs 8
    assert estimates <= math.ceil(math.log2(9)) == 4
    mc = run_label_source("mc", [t], _perfect(domain), n_rollouts=2, progress=False)
    assert mc.rollouts // 2 == 8 and lab.policy_tokens < mc.policy_tokens


def test_right_answers_are_not_searched_unless_asked(domain):
    domain = ArithDomain(ArithConfig(min_ops=4, max_ops=4))
    good = _perfect(domain).sample(domain.sample_problems(1, seed=2), 1)[0][0]
    assert good.outcome
    # OmegaPRM's rule: a right answer is taken as sound throughout, for free
    r = run_label_source("omega", [good], _perfect(domain), n_rollouts=2, progress=False)
    assert r.labels[0].values == [1.0] * 4 and r.policy_tokens == 0 and r.rollouts == 0
    r = run_label_source("omega", [good], _perfect(domain), n_rollouts=2, search_correct=True, progress=False)
    assert r.labels[0].values == [1.0] * 4 and 0 < r.rollouts <= 2 * math.ceil(math.log2(5))


def test_a_recovered_error_breaks_the_premise_and_is_stepped_over(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])
    recovered = domain.make_trajectory(p, ["7+5=2", "2*3=8", "redo:2*3=6", "6-4=2"], "2")
    assert recovered.outcome and recovered.first_error == 1
    # midpoints: prefix to step 2 (after the redo: sound again) -> right half; step 3 sound -> none found
    r = run_label_source("omega", [recovered], _perfect(domain), n_rollouts=2, search_correct=True, progress=False)
    assert r.labels[0].first_error == -1 and r.rollouts == 2 * 2
    mc = run_label_source("mc", [recovered], _perfect(domain), n_rollouts=2, soft=False, progress=False)
    assert mc.labels[0].first_error == 1  # the linear scan sees the one failing prefix


def test_omega_needs_a_policy(domain):
    with pytest.raises(ValueError, match="policy"):
        run_label_source("omega", [], None)


def test_qu_score_by_hand():
    s = _State(problem=None, steps=("a",), mc=0.5, visits=1)
    # Q = α^(1-MC) β^(len/L) = 0.5^0.5 · 0.9^(4/20);  U = c sqrt(ΣN) / (1 + N) = 0.125 · sqrt(3) / 2
    want = 0.5 ** 0.5 * 0.9 ** 0.2 + 0.125 * math.sqrt(3) / 2
    assert qu_score(s, 4, 3, alpha=0.5, beta=0.9, length_scale=20, c_puct=0.125) == pytest.approx(want)
    # a state closer to right, with a shorter rollout, scores higher
    assert qu_score(_State(None, (), 0.9, 1), 2, 3, 0.5, 0.9, 20, 0.125) > qu_score(s, 4, 3, 0.5, 0.9, 20, 0.125)


def test_tree_records_and_extra_searches_export_soft_labels():
    domain = ArithDomain(ArithConfig(min_ops=8, max_ops=8, recovery_rate=0, extra_step_rate=0))
    trajs = [_planted(domain, 8, 5)]
    noisy = SimulatedPolicy(domain, SimulatedPolicyConfig(error_rate={"easy": 0.2, "medium": 0.2, "hard": 0.2},
                                                          recovery_rate=0, extra_step_rate=0, seed=1))
    src = OmegaLabels(n_rollouts=4)
    assert src.estimator_ is None and src.records() == [] and src.training_pairs() == []  # nothing fitted yet
    base = src.label(trajs, noisy)
    assert src.estimator_ is not None
    n_base = len(src.records())
    assert n_base == base[0].rollouts // 4
    for rec in src.records():
        assert 0.0 <= rec["mc"] <= 1.0 and rec["visits"] >= 1
    more = OmegaLabels(n_rollouts=4, extra_searches=3)
    extra = more.label(trajs, SimulatedPolicy(domain, noisy.config))
    assert len(more.records()) >= n_base and extra[0].policy_tokens >= base[0].policy_tokens
    pairs = more.training_pairs()
    assert len(pairs) == len([r for r in more.records() if r["prefix"]])
    t, lab = pairs[0]
    assert lab.soft and lab.weights[-1] == 1.0 and sum(lab.weights) == 1.0 and len(lab.values) == len(t.steps)


def test_records_to_training_by_hand(domain):
    p = domain.sample_problems(1, seed=0)[0]
    [(t, lab)] = records_to_training([(p, ["a", "b"], 0.25), (p, [], 1.0)])
    assert t.steps == ["a", "b"] and lab.values == [0.0, 0.25] and lab.weights == [0.0, 1.0]


class _FixedMC:
    """MC of the prefix ending at step i is ``mc[i]``: a lucky 1-in-4 after the real first error at 2."""

    def __init__(self, mc):
        self.mc, self.asked = mc, []

    def estimate(self, requests):
        self.asked += [len(steps) - 1 for _, _, steps in requests]
        return [self.mc[len(steps) - 1] for _, _, steps in requests]


def test_threshold_keeps_lucky_successes_from_passing_a_wrong_prefix():
    from selfprm.labels.omega import binary_search_first_errors

    mc = [0.9, 0.8, 0.25, 0.25, 0.25, 0.25, 0.0, 0.0]
    steps = [f"s{i}" for i in range(8)]
    # the paper's rule (MC > 0): midpoints 4 (0.25 -> sound), 6 (0 -> wrong), 5 (sound) -> first error 6
    assert binary_search_first_errors(_FixedMC(mc), [(0, None, steps, 0)]) == [6]
    est = _FixedMC(mc)
    # MC > 0.3: midpoint 4 fails, 2 fails, 1 passes -> first error 2, in 3 estimates
    assert binary_search_first_errors(est, [(0, None, steps, 0)], threshold=0.3) == [2]
    assert est.asked == [4, 2, 1]
