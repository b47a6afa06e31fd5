import numpy as np

from selfprm.domains import ArithConfig, ArithDomain
from selfprm.policies import SimulatedPolicy, SimulatedPolicyConfig, sample_flat


def _problem(d=None):
    d = d or ArithDomain()
    return d, d.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])  # 7 -> 2 -> 6 -> 2 (mod 10)


def test_oracle_on_a_hand_checked_solution():
    d, p = _problem()
    assert p.prompt == "Q:7 +5 *3 -4" and p.answer == "2"
    t = d.make_trajectory(p, ["7+5=2", "2*3=6", "6-4=2"], "2")
    assert t.oracle_labels == [True, True, True] and t.outcome and t.first_error == -1
    t = d.make_trajectory(p, ["7+5=2", "2*3=7", "7-4=3"], "3")
    assert t.oracle_labels == [True, False, False] and not t.outcome and t.first_error == 1


def test_text_roundtrip_through_the_parser():
    d, p = _problem()
    t = d.from_text(p, ["7+5=2"], "2*3=6\n6-4=2\nA:2", tokens=14)
    assert t.steps == ["7+5=2", "2*3=6", "6-4=2"] and t.final_answer == "2" and t.outcome and not t.truncated
    t = d.from_text(p, [], "7+5=2\n2*3=6", tokens=12)
    assert t.truncated and not t.outcome and t.final_answer is None


def test_knob_a_lucky_answers_depend_on_the_answer_range():
    # a wrong step that still lands on the right answer: outcome labels get a false positive
    d, p = _problem()
    t = d.make_trajectory(p, ["7+5=2", "2*3=1", "1-4=7"], "7")  # 2*3 is 6, not 1
    assert not t.outcome
    lucky = ArithDomain(ArithConfig(answer_modulus=2))
    p2 = lucky.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])
    t2 = lucky.make_trajectory(p2, ["7+5=2", "2*3=8", "8-4=4"], "0")  # wrong step, 4 % 2 == 2 % 2
    assert t2.outcome and t2.oracle_labels == [True, False, False]

    def lucky_rate(domain):
        pol = SimulatedPolicy(domain, SimulatedPolicyConfig(recovery_rate=0.0, seed=1))
        trajs = sample_flat(pol, domain.sample_problems(300, seed=0), 2)
        flawed = [t for t in trajs if not all(t.oracle_labels)]
        return sum(t.outcome for t in flawed) / len(flawed)

    assert lucky_rate(ArithDomain(ArithConfig(answer_modulus=2))) > lucky_rate(ArithDomain()) + 0.2


def test_knob_b_recoverable_error():
    d, p = _problem()
    t = d.make_trajectory(p, ["7+5=2", "2*3=8", "redo:2*3=6", "6-4=2"], "2")
    assert t.oracle_labels == [True, False, True, True] and t.outcome and t.first_error == 1
    # a redo that gets it wrong again does not recover
    t = d.make_trajectory(p, ["7+5=2", "2*3=8", "redo:2*3=9", "9-4=5"], "5")
    assert t.oracle_labels == [True, False, False, False]
    # worked solutions contain recoveries at the set rate
    rng = np.random.default_rng(0)
    dd = ArithDomain(ArithConfig(recovery_rate=0.5))
    probs = dd.sample_problems(200, seed=1)
    n_redo = sum(any(s.startswith("redo:") for s in dd.worked_solution(q, rng)[0]) for q in probs)
    assert n_redo > 150
    assert all(all(dd.judge_steps(q, dd.worked_solution(q, rng)[0])[-1:]) for q in probs)


def test_knob_c_harmless_extra_step():
    d, p = _problem()
    t = d.make_trajectory(p, ["7+5=2", "2+0=2", "2*3=6", "6*1=6", "6-4=2"], "2")
    assert t.oracle_labels == [True] * 5 and t.outcome
    t = d.make_trajectory(p, ["7+5=2", "2+0=3", "3*3=9", "9-4=5"], "5")  # an extra step done wrong
    assert t.oracle_labels == [True, False, False, False]


def test_knob_d_step_difficulty():
    d, p = _problem()
    assert [d.step_difficulty(p, i) for i in range(3)] == ["easy", "hard", "medium"]
    only_mul = ArithDomain(ArithConfig(op_weights={"*": 1.0}))
    assert all(op == "*" for q in only_mul.sample_problems(20, seed=0) for op, _ in q.meta["chain"])
    # the simulated solver errs by difficulty at the rates it is given
    pol = SimulatedPolicy(d, SimulatedPolicyConfig(error_rate={"easy": 0.0, "medium": 0.0, "hard": 0.5},
                                                   recovery_rate=0.0, extra_step_rate=0.0, seed=0))
    trajs = sample_flat(pol, d.sample_problems(200, seed=3), 1)
    wrong_ops = [t.problem.meta["chain"][t.first_error][0] for t in trajs if t.first_error >= 0]
    assert wrong_ops and set(wrong_ops) == {"*"}


def test_problems_are_repeatable_from_a_seed():
    d = ArithDomain()
    assert d.sample_problems(5, seed=3) == d.sample_problems(5, seed=3)
    assert d.sample_problems(5, seed=3) != d.sample_problems(5, seed=4)
