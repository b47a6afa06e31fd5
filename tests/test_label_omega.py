import math

import pytest

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.labels import run_label_source
from selfprm.labels.omega import OmegaLabels, _State, qu_score, records_to_training, select_rollout
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


@pytest.mark.parametrize("mode", ["tree", "binary"])
@pytest.mark.parametrize("wrong_at", [-1, 0, 1, 3, 5, 6, 7])
def test_binary_search_finds_a_planted_first_error_in_log2_estimates(wrong_at, mode):
    domain = ArithDomain(ArithConfig(min_ops=8, max_ops=8, recovery_rate=0, extra_step_rate=0))
    t = _planted(domain, 8, wrong_at)
    r = run_label_source("omega", [t], _perfect(domain), n_rollouts=2, mode=mode, progress=False)
    lab = r.labels[0]
    assert lab.first_error == wrong_at
    # a perfect solver: every MC is 0 or 1, so the tree's soft labels are the hard ones
    assert lab.values == [1.0 if wrong_at == -1 or j < wrong_at else 0.0 for j in range(8)]
    estimates = lab.rollouts // 2
    # T = 8 steps: ⌈log2(8 + 1)⌉ = 4 midpoint estimates, where Math-Shepherd's mc needs 8; and no
    # state has 0 < MC < 1, so the tree search finds nothing more to search
    assert estimates <= math.ceil(math.log2(9)) == 4
    mc = run_label_source("mc", [t], _perfect(domain), n_rollouts=2, progress=False)
    assert mc.rollouts // 2 == 8 and lab.policy_tokens < mc.policy_tokens


def test_right_answers_are_searched_unless_assumed_sound(domain):
    domain = ArithDomain(ArithConfig(min_ops=4, max_ops=4))
    good = _perfect(domain).sample(domain.sample_problems(1, seed=2), 1)[0][0]
    assert good.outcome
    # the default (as in mc): a right answer is searched like any other
    r = run_label_source("omega", [good], _perfect(domain), n_rollouts=2, progress=False)
    assert r.labels[0].values == [1.0] * 4 and 0 < r.rollouts <= 2 * math.ceil(math.log2(5))
    # the switch: a right answer is taken as sound throughout, for free
    r = run_label_source("omega", [good], _perfect(domain), n_rollouts=2, assume_correct_sound=True, progress=False)
    assert r.labels[0].values == [1.0] * 4 and r.policy_tokens == 0 and r.rollouts == 0
    # the old name still works, inverted, and says it is deprecated
    with pytest.warns(DeprecationWarning, match="assume_correct_sound"):
        src = OmegaLabels(n_rollouts=2, search_correct=False)
    assert src.assume_correct_sound and src.label([good], _perfect(domain))[0].rollouts == 0
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="contradicts"):
        OmegaLabels(search_correct=True, assume_correct_sound=True)


def test_a_recovered_error_breaks_the_premise_and_is_stepped_over(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])
    recovered = domain.make_trajectory(p, ["7+5=2", "2*3=8", "redo:2*3=6", "6-4=2"], "2")
    assert recovered.outcome and recovered.first_error == 1
    # midpoints: prefix to step 2 (after the redo: sound again) -> right half; step 3 sound -> none found
    r = run_label_source("omega", [recovered], _perfect(domain), n_rollouts=2, progress=False)
    assert r.labels[0].first_error == -1 and r.rollouts == 2 * 2
    mc = run_label_source("mc", [recovered], _perfect(domain), n_rollouts=2, soft=False, progress=False)
    assert mc.labels[0].first_error == 1  # the linear scan sees the one failing prefix


def test_omega_needs_a_policy_and_a_known_mode(domain):
    with pytest.raises(ValueError, match="policy"):
        run_label_source("omega", [], None)
    with pytest.raises(ValueError, match="mode"):
        OmegaLabels(mode="mcts")
    assert OmegaLabels().prm_loss == "soft_bce" and OmegaLabels(soft=False).prm_loss == "bce"
    assert OmegaLabels(mode="binary").prm_loss == "bce"
    # the paper's settings are the defaults (§4): k = 8, α = 0.5, β = 0.9, L = 500 tokens, c_puct = 0.125
    d = OmegaLabels()
    assert (d.mode, d.n_rollouts, d.alpha, d.beta, d.length_scale, d.c_puct, d.threshold) == \
        ("tree", 8, 0.5, 0.9, 500.0, 0.125, 0.0)
    assert d.extra_searches > 0 and d.assume_correct_sound is False


def test_qu_score_by_hand():
    s = _State(problem=None, steps=("a",), mc=0.5, visits=1)
    # Q = α^(1-MC) β^(len/L) = 0.5^0.5 · 0.9^(100/500);  U = c sqrt(ΣN) / (1 + N) = 0.125 · sqrt(3) / 2
    want = 0.5 ** 0.5 * 0.9 ** 0.2 + 0.125 * math.sqrt(3) / 2
    assert qu_score(s, 100, 3, alpha=0.5, beta=0.9, length_scale=500, c_puct=0.125) == pytest.approx(want)
    # a state closer to right, with a shorter rollout, scores higher
    assert qu_score(_State(None, (), 0.9, 1), 50, 3, 0.5, 0.9, 500, 0.125) > qu_score(s, 100, 3, 0.5, 0.9, 500, 0.125)


def _hand_tree():
    """A hand-made tree: the root, two candidate states and three that are not candidates."""
    root = _State(None, (), 0.5, visits=4, in_tree=True)  # its rollouts were all searched
    a = _State(None, ("a",), 0.5, visits=1, in_tree=True, wrong_rollouts=[(("a", "x"), 100), (("a", "y"), 400)])
    b = _State(None, ("b",), 0.75, visits=0, in_tree=True, wrong_rollouts=[(("b", "z"), 300)])
    sure = _State(None, ("c",), 1.0, in_tree=True, wrong_rollouts=[(("c", "w"), 10)])  # MC = 1: not in the pool
    lost = _State(None, ("d",), 0.0, in_tree=True, wrong_rollouts=[(("d", "w"), 10)])  # MC = 0: not in the pool
    past = _State(None, ("e",), 0.9, in_tree=False, wrong_rollouts=[(("e", "w"), 10)])  # not kept in the tree
    return [root, a, b, sure, lost, past]


def test_qu_selection_picks_what_the_formula_says_on_a_hand_made_tree():
    states = _hand_tree()
    root, a, b = states[:3]
    kw = dict(alpha=0.5, beta=0.9, length_scale=500, c_puct=0.125)
    searched = set()
    # ΣN = 5. (a, x): 0.5^0.5 · 0.9^0.2 + 0.125 · sqrt(5) / 2 = 0.6924 + 0.1398 = 0.8321
    #         (a, y): 0.5^0.5 · 0.9^0.8 + 0.1398 = 0.6160 + 0.1398 = 0.7558
    #         (b, z): 0.5^0.25 · 0.9^0.6 + 0.125 · sqrt(5) / 1 = 0.7894 + 0.2795 = 1.0689  <- argmax
    s, r, score = select_rollout(states, searched=searched, **kw)
    assert (s, r) == (b, ("b", "z")) and score == pytest.approx(0.5 ** 0.25 * 0.9 ** 0.6 + 0.125 * math.sqrt(5))
    assert score == pytest.approx(1.0689, abs=1e-4)
    # the loop pops it: N(b) += 1, z is searched. ΣN = 6, and b has no rollout left:
    # (a, x): 0.6924 + 0.125 · sqrt(6) / 2 = 0.8455 beats (a, y) = 0.7690
    b.visits += 1
    searched.add(r)
    s, r, score = select_rollout(states, searched=searched, **kw)
    assert (s, r) == (a, ("a", "x")) and score == pytest.approx(0.5 ** 0.5 * 0.9 ** 0.2 + 0.125 * math.sqrt(6) / 2)
    a.visits += 1
    searched.add(r)
    assert select_rollout(states, searched=searched, **kw)[1] == ("a", "y")
    searched.add(("a", "y"))
    assert select_rollout(states, searched=searched, **kw) is None  # the pool is empty


def test_qu_selection_explores_a_rarely_visited_state_before_a_near_right_one():
    far = _State(None, ("f",), 0.25, visits=0, in_tree=True, wrong_rollouts=[(("f", "x"), 100)])
    near = _State(None, ("g",), 0.75, visits=10, in_tree=True, wrong_rollouts=[(("g", "x"), 100)])
    # ΣN = 10. far: 0.5^0.75 · 0.9^0.2 + 0.125 · sqrt(10) = 0.5822 + 0.3953 = 0.9775
    #          near: 0.5^0.25 · 0.9^0.2 + 0.125 · sqrt(10) / 11 = 0.8234 + 0.0359 = 0.8593
    s, _, score = select_rollout([far, near], 0.5, 0.9, 500, 0.125)
    assert s is far and score == pytest.approx(0.9775, abs=1e-4)
    # without exploration (c_puct = 0) Q alone prefers the near-right state
    assert select_rollout([far, near], 0.5, 0.9, 500, 0.0)[0] is near


def _noisy_pool(domain, n_problems=3, seed=1):
    noisy = SimulatedPolicy(domain, SimulatedPolicyConfig(error_rate={"easy": 0.25, "medium": 0.25, "hard": 0.25},
                                                          recovery_rate=0, extra_step_rate=0, seed=seed))
    pool = [t for g in noisy.sample(domain.sample_problems(n_problems, seed=4), 4) for t in g]
    return pool, noisy.config


def test_tree_search_runs_several_searches_per_problem_and_keeps_soft_records():
    domain = ArithDomain(ArithConfig(min_ops=6, max_ops=6, recovery_rate=0, extra_step_rate=0))
    pool, cfg = _noisy_pool(domain)
    base = OmegaLabels(n_rollouts=4, extra_searches=0)
    assert base.estimator_ is None and base.records() == [] and base.training_pairs() == []  # nothing fitted yet
    base_labels = base.label(pool, SimulatedPolicy(domain, cfg))
    src = OmegaLabels(n_rollouts=4, extra_searches=3)
    labels = src.label(pool, SimulatedPolicy(domain, cfg))
    qu = [s for s in src.searches_ if s["phase"] == "qu"]
    per_problem = {}
    for s in qu:
        per_problem[s["problem_id"]] = per_problem.get(s["problem_id"], 0) + 1
        assert 0 < s["state_mc"] < 1 and s["start"] > 0  # picked from a state of the pool, below the root
    assert per_problem and max(per_problem.values()) >= 2 and all(n <= 3 for n in per_problem.values())
    assert sum(s["phase"] == "pool" for s in src.searches_) == len(pool)  # every trajectory searched once first
    # the searches add states: soft records (multiples of 1/k), each one example for the PRM
    recs = src.records()
    assert len(recs) > len(base.records())
    assert any(0 < r["mc"] < 1 for r in recs) and all((r["mc"] * 4).is_integer() for r in recs)
    assert sum(r["visits"] for r in recs) == len(qu) - sum(s["start"] == 0 for s in qu)
    pairs = src.training_pairs()
    assert len(pairs) == len(recs)
    t, lab = pairs[0]
    assert lab.soft and lab.weights[-1] == 1.0 and sum(lab.weights) == 1.0 and len(lab.values) == len(t.steps)
    # the extra searches cost more, and their cost stays on the trajectories' ledger
    assert sum(l.policy_tokens for l in labels) > sum(l.policy_tokens for l in base_labels)


def test_tree_labels_are_the_trees_estimates_where_it_has_them():
    domain = ArithDomain(ArithConfig(min_ops=6, max_ops=6, recovery_rate=0, extra_step_rate=0))
    pool, cfg = _noisy_pool(domain)
    src = OmegaLabels(n_rollouts=4, extra_searches=2, inferred_weight=0.0)
    labels = src.label(pool, SimulatedPolicy(domain, cfg))
    est = src.estimator_
    n_est = n_soft = 0
    for t, lab in zip(pool, labels):
        assert lab.soft and lab.weights is not None
        for j, (v, w) in enumerate(zip(lab.values, lab.weights)):
            st = est.states.get((t.problem.id, tuple(t.steps[: j + 1])))
            if st is not None and st.in_tree:  # a state of the tree: its MC, with weight 1
                assert (v, w) == (st.mc, 1.0)
                n_est += 1
                n_soft += 0 < v < 1
            else:  # skipped over by the search: inferred, weight inferred_weight (0: the paper's data only)
                assert v in (0.0, 1.0) and w == 0.0
    assert n_est > 0 and n_soft > 0
    # soft=False: the paper's hard label 1[MC > 0] on the same estimates
    hard = OmegaLabels(n_rollouts=4, extra_searches=2, soft=False).label(pool, SimulatedPolicy(domain, cfg))
    assert all(v in (0.0, 1.0) for l in hard for v in l.values) and not hard[0].soft
    assert [[v > 0 for v in l.values] for l in hard] == [[v > 0 for v in l.values] for l in labels]


def test_binary_mode_is_the_plain_search_with_hard_labels():
    domain = ArithDomain(ArithConfig(min_ops=6, max_ops=6, recovery_rate=0, extra_step_rate=0))
    pool, cfg = _noisy_pool(domain)
    src = OmegaLabels(n_rollouts=4, mode="binary", extra_searches=5)  # extra_searches is a tree setting
    labels = src.label(pool, SimulatedPolicy(domain, cfg))
    assert all(s["phase"] == "pool" for s in src.searches_)
    for l in labels:
        assert not l.soft and l.weights is None
        fe = l.first_error
        assert l.values == [1.0 if fe == -1 or j < fe else 0.0 for j in range(len(l.values))]
    # the same pool searches as the tree's first phase: the same first errors, the same cost
    tree = OmegaLabels(n_rollouts=4, extra_searches=0, soft=False)
    tree_labels = tree.label(pool, SimulatedPolicy(domain, cfg))
    assert [l.policy_tokens for l in labels] == [l.policy_tokens for l in tree_labels]


def test_searches_per_round_pops_several_pairs_per_problem_into_one_batch_of_calls():
    domain = ArithDomain(ArithConfig(min_ops=6, max_ops=6, recovery_rate=0, extra_step_rate=0))
    pool, cfg = _noisy_pool(domain)
    calls = []
    for per_round in (1, 3):
        pol = _Counting(SimulatedPolicy(domain, cfg))
        src = OmegaLabels(n_rollouts=4, extra_searches=3, searches_per_round=per_round)
        src.label(pool, pol)
        qu = [s for s in src.searches_ if s["phase"] == "qu"]
        assert {s["round"] for s in qu} == (set(range(3)) if per_round == 1 else {0})
        per_problem = {}
        for s in qu:
            per_problem[s["problem_id"]] = per_problem.get(s["problem_id"], 0) + 1
        assert max(per_problem.values()) >= 2 and all(n <= 3 for n in per_problem.values())
        calls.append(pol.calls)
    assert calls[1] < calls[0]  # one round of binary searches instead of three


class _Counting:
    """A policy wrapper that counts every token and completion the source asks for."""

    def __init__(self, inner):
        self.inner, self.domain, self.tokens, self.rollouts, self.calls = inner, inner.domain, 0, 0, 0

    def continue_from(self, prefixes, n):
        self.calls += 1
        out = self.inner.continue_from(prefixes, n)
        self.tokens += sum(r.tokens_generated for g in out for r in g)
        self.rollouts += sum(len(g) for g in out)
        return out

    def sample(self, problems, n):
        raise NotImplementedError


@pytest.mark.parametrize("kwargs", [{}, {"mode": "binary"}, {"assume_correct_sound": True}])
def test_every_token_is_charged_once_and_labels_repeat_under_a_seed(kwargs):
    domain = ArithDomain(ArithConfig(min_ops=6, max_ops=6, recovery_rate=0, extra_step_rate=0))
    pool, cfg = _noisy_pool(domain)
    runs = []
    for _ in range(2):
        pol = _Counting(SimulatedPolicy(domain, cfg))
        r = run_label_source("omega", pool, pol, n_rollouts=4, extra_searches=3, **kwargs)
        assert r.policy_tokens == pol.tokens > 0 and r.rollouts == pol.rollouts  # nothing double counted
        assert r.token_passes == 0  # the policy's generation is read off the policy, here without a model
        runs.append([(l.values, l.weights, l.policy_tokens, l.rollouts) for l in r.labels])
    assert runs[0] == runs[1]


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
