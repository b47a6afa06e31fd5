import math

import pytest

from selfprm.policies import Prefix, SimulatedPolicy, SimulatedPolicyConfig
from selfprm.search import BeamConfig, StepSampler, beam_search, best_of_n_pick, majority_vote_pick, pick_all, weighted_majority_pick
from selfprm.search.curves import search_curves


class OraclePRM:
    """Scores a step 0.9 when the oracle calls it sound, else 0.1: a perfect ranker for tests."""

    def __init__(self, domain):
        self.domain = domain
        self._by_prompt = {}

    def register(self, problems):
        self._by_prompt.update({p.prompt: p for p in problems})

    def score_steps(self, prompts, steps):
        return [[0.9 if ok else 0.1 for ok in self.domain.judge_steps(self._by_prompt[p], st)] for p, st in zip(prompts, steps)]

    def score_trajectories(self, trajs):
        return self.score_steps([t.problem.prompt for t in trajs], [t.steps for t in trajs])


def test_picks_by_hand():
    answers = ["3", "5", "5", "3", None]
    scores = [0.9, 0.2, 0.3, 0.1, 1.0]
    assert best_of_n_pick(answers, scores) == 4  # the unanswered one scores highest: best-of-N takes it
    assert majority_vote_pick(answers) == "3"  # 2 vs 2: the first met wins
    assert weighted_majority_pick(answers, scores) == "3"  # 1.0 vs 0.5
    assert weighted_majority_pick(answers, [0.1, 0.4, 0.4, 0.1, 0.0]) == "5"  # 0.8 vs 0.2
    assert majority_vote_pick([None, None]) is None


def test_pick_all_on_trajectories(domain):
    p = domain.sample_problems(1, seed=0)[0]
    good, _ = domain.worked_solution(p, __import__("numpy").random.default_rng(0))
    wrong = str((int(p.answer) + 1) % 10)
    group = [domain.make_trajectory(p, good, p.answer, tokens_generated=10),
             domain.make_trajectory(p, ["1+1=3"], wrong, tokens_generated=5),
             domain.make_trajectory(p, ["1+1=3"], wrong, tokens_generated=5)]
    picks = pick_all(group, [[0.9] * len(good), [0.2], [0.3]], "min")
    assert picks["majority_vote"].answer == wrong and not picks["majority_vote"].correct
    assert picks["best_of_n"].correct and picks["weighted_majority"].correct  # 0.9 > 0.2 + 0.3
    assert picks["best_of_n"].policy_tokens == 20


def test_step_sampler_stops_at_the_separator(domain, tiny_lm, char_tokenizer):
    from selfprm.policies import HFPolicy, HFPolicyConfig

    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(seed=1))
    s = StepSampler(pol, max_step_tokens=6)
    p = domain.sample_problems(2, seed=0)
    out = s.next_steps([Prefix(p[0], []), Prefix(p[1], ["1+1=2"])], 3)
    assert [len(r) for r in out] == [2 * 0 + 3, 3]
    assert all(1 <= ns.tokens <= 6 for r in out for ns in r)
    assert all(ns.step is None or "\n" not in ns.step for r in out for ns in r)


def test_beam_search_with_a_perfect_prm_beats_one_sample(domain):
    problems = domain.sample_problems(40, seed=3)
    noisy = SimulatedPolicyConfig(error_rate={"easy": 0.2, "medium": 0.3, "hard": 0.4}, recovery_rate=0.0, seed=0)
    prm = OraclePRM(domain)
    prm.register(problems)
    single = [t for g in SimulatedPolicy(domain, noisy).sample(problems, 1) for t in g]
    res = beam_search(SimulatedPolicy(domain, noisy), prm, problems, BeamConfig(beam_width=2, expansions_per_beam=4))
    assert len(res) == len(problems) and all(r.policy_tokens > 0 for r in res)
    assert all(r.trajectory.tokens_generated == r.policy_tokens for r in res)
    acc_beam = sum(r.correct for r in res) / len(res)
    acc_single = sum(bool(t.outcome) for t in single) / len(single)
    assert acc_beam > acc_single + 0.1
    # lookahead spends more tokens for the same beam
    la = beam_search(SimulatedPolicy(domain, noisy), prm, problems[:10], BeamConfig(2, 2, lookahead=1))
    nola = beam_search(SimulatedPolicy(domain, noisy), prm, problems[:10], BeamConfig(2, 2, lookahead=0))
    assert sum(r.policy_tokens for r in la) > sum(r.policy_tokens for r in nola)


def test_search_curves_shape(domain, tmp_path):
    from selfprm.search.curves import plot_search_curves

    problems = domain.sample_problems(12, seed=4)
    prm = OraclePRM(domain)
    prm.register(problems)
    pol = SimulatedPolicy(domain, SimulatedPolicyConfig(seed=1))
    c = search_curves(pol, prm, problems, ns=(1, 2, 4), beams=(BeamConfig(2, 2),), progress=False)
    for k in ("best_of_n", "weighted_majority", "majority_vote"):
        assert [n for _, _, n in c[k]] == [1, 2, 4]
        toks = [t for t, _, _ in c[k]]
        assert toks == sorted(toks) and all(0 <= a <= 1 for _, a, _ in c[k])
    assert len(c["beam"]) == 1 and c["beam"][0][2]["beam_width"] == 2
    # with a perfect PRM, best-of-4 is at least as good as one sample
    assert c["best_of_n"][-1][1] >= c["best_of_n"][0][1]
    plot_search_curves(c, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 0


def test_accuracy_at_equal_tokens_interpolates_in_log_tokens():
    from selfprm.search.curves import at_equal_tokens

    c = {"majority_vote": [[10, 0.2, 1], [20, 0.4, 2], [40, 0.5, 4]]}
    assert at_equal_tokens(c, "majority_vote", 20) == pytest.approx(0.4)
    assert at_equal_tokens(c, "majority_vote", math.sqrt(200)) == pytest.approx(0.3)  # halfway in log tokens
    assert at_equal_tokens(c, "majority_vote", 5) is None and at_equal_tokens(c, "majority_vote", 80) is None
