"""``assume_correct_sound``: one switch, one meaning, on every rollout source (``mc`` and ``omega``)."""

import pytest

from selfprm.labels import get_label_source, run_label_source
from selfprm.policies import SimulatedPolicy, SimulatedPolicyConfig

ROLLOUT_SOURCES = ["mc", "omega"]


def _perfect(domain):
    return SimulatedPolicy(domain, SimulatedPolicyConfig(
        error_rate={"easy": 0, "medium": 0, "hard": 0}, recovery_rate=0, extra_step_rate=0, answer_error_rate=0))


def _pool(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])  # 7 -> 2 -> 6 -> 2
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6", "6-4=2"], "2")
    bad = domain.make_trajectory(p, ["7+5=2", "2*3=7", "7-4=3"], "3")  # shares its first step with good
    recovered = domain.make_trajectory(p, ["7+5=2", "2*3=8", "redo:2*3=6", "6-4=2"], "2")  # right answer, a wrong step
    assert good.outcome and recovered.outcome and not bad.outcome
    return good, bad, recovered


@pytest.mark.parametrize("source", ROLLOUT_SOURCES)
def test_the_switch_has_one_name_and_the_same_default(source):
    assert get_label_source(source).assume_correct_sound is False  # off: mc and omega compare on equal terms
    assert get_label_source(source, assume_correct_sound=True).assume_correct_sound is True


@pytest.mark.parametrize("source", ROLLOUT_SOURCES)
def test_with_the_switch_on_a_right_answer_is_all_sound_for_free(source, domain):
    good, bad, recovered = _pool(domain)
    r = run_label_source(source, [good, bad, recovered], _perfect(domain), n_rollouts=2, assume_correct_sound=True)
    for i in (0, 2):
        lab = r.labels[i]
        assert lab.values == [1.0] * len(lab.values) and lab.policy_tokens == 0 and lab.rollouts == 0
    # the recovered error at step 1 goes unseen: that is the switch's trade
    assert r.labels[2].first_error == -1 and recovered.first_error == 1
    # the wrong answer still pays for its rollouts, the prefix it shares with good included
    assert r.labels[1].rollouts > 0 and r.labels[1].first_error == 1
    assert r.policy_tokens == r.labels[1].policy_tokens > 0


@pytest.mark.parametrize("source", ROLLOUT_SOURCES)
def test_with_the_switch_off_a_right_answer_costs_rollouts(source, domain):
    good, bad, recovered = _pool(domain)
    r = run_label_source(source, [good, recovered], _perfect(domain), n_rollouts=2)
    for lab in r.labels:
        assert lab.rollouts > 0  # good's first prefix is charged to good, recovered pays for its own
    assert r.labels[0].policy_tokens > 0 and r.labels[0].values == [1.0, 1.0, 1.0]
    on = run_label_source(source, [good, recovered], _perfect(domain), n_rollouts=2, assume_correct_sound=True)
    assert on.policy_tokens == 0 and on.rollouts == 0


def test_mc_labels_repeat_under_a_seed(domain):
    rates = {"easy": 0.3, "medium": 0.3, "hard": 0.3}
    cfg = SimulatedPolicyConfig(error_rate=rates, seed=5)
    pool = [t for g in SimulatedPolicy(domain, cfg).sample(domain.sample_problems(3, seed=0), 3) for t in g]
    runs = [[(l.values, l.policy_tokens) for l in run_label_source("mc", pool, SimulatedPolicy(domain, cfg), n_rollouts=3).labels]
            for _ in range(2)]
    assert runs[0] == runs[1]
