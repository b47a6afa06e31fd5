import math

import pytest

from selfprm.labels import run_label_source
from selfprm.labels.tree_rollout import TreeRolloutLabels, node_credit, tree_grpo_advantages
from selfprm.types import Trajectory


def test_tree_grpo_advantages_by_hand():
    # tree A: leaves 0, 1, 0; tree B: leaves 1, 1.  All five: mean 0.6, std sqrt(0.24).
    adv = tree_grpo_advantages([[0, 1, 0], [1, 1]], eps=0.0 + 1e-12)
    s_all, s_a = math.sqrt(0.24), math.sqrt(2 / 9)
    a0 = (0 - 1 / 3) / s_a + (0 - 0.6) / s_all  # intra -0.7071 + inter -1.2247 = -1.9319
    a1 = (1 - 1 / 3) / s_a + (1 - 0.6) / s_all  # intra 1.4142 + inter 0.8165 = 2.2307
    b = 0.0 + (1 - 0.6) / s_all  # tree B is all ones: its intra term is 0
    assert adv[0] == pytest.approx([a0, a1, a0], abs=1e-6)
    assert adv[1] == pytest.approx([b, b], abs=1e-6)
    assert a0 == pytest.approx(-1.9319, abs=1e-4) and a1 == pytest.approx(2.2307, abs=1e-4)


def test_a_step_earns_what_the_leaves_below_it_earn():
    # the 3-step chain s1 s2 s3 (leaf 0), a branch from [s1] (leaf 1), a branch from [s1, s2] (leaf 2)
    leaves = [["s1", "s2", "s3"], ["s1", "x2", "x3"], ["s1", "s2", "y3"]]
    adv = [-1.9319, 2.2307, -1.9319]
    assert node_credit(leaves, adv, ["s1"]) == pytest.approx((-1.9319 + 2.2307 - 1.9319) / 3)
    assert node_credit(leaves, adv, ["s1", "s2"]) == pytest.approx(-1.9319)
    assert node_credit(leaves, adv, ["s1", "s2", "s3"]) == pytest.approx(-1.9319)
    assert math.isnan(node_credit(leaves, adv, ["z"]))


class _ByPrefix:
    """Continuations whose outcome depends only on the prefix length: from 1 step they succeed."""

    def __init__(self, domain):
        self.domain = domain
        self.calls = []

    def _t(self, p, steps, ok):
        return Trajectory(problem=p, steps=list(steps), final_answer="1" if ok else "0", outcome=ok,
                          oracle_labels=[True] * len(steps), tokens_generated=10)

    def sample(self, problems, n):
        return [[self._t(p, ["r1", "r2", "r3"], False) for _ in range(n)] for p in problems]

    def continue_from(self, prefixes, n):
        self.calls.append([len(p.steps) for p in prefixes])
        return [[self._t(p.problem, p.steps + [f"b{len(p.steps)}"] * (3 - len(p.steps)), len(p.steps) == 1)
                 for _ in range(n)] for p in prefixes]


def test_tree_labels_on_a_3_step_chain_by_hand(domain):
    p = domain.sample_problems(1, seed=0)[0]
    seed = Trajectory(problem=p, steps=["s1", "s2", "s3"], final_answer="0", outcome=False,
                      oracle_labels=[True, False, False], tokens_generated=30)
    pol = _ByPrefix(domain)
    # one tree (M = 1), one round of N = 2 branches: the chain has exactly two inner nodes, [s1] and [s1, s2]
    r = run_label_source(TreeRolloutLabels(m_trees=1, l_rounds=1, n_branches=2), [seed], pol)
    assert sorted(pol.calls[0]) == [1, 2]
    # leaves: the chain (R = 0), s1 -> b1 b1 (R = 1), s1 s2 -> b2 (R = 0): mean 1/3, std 0.4714.
    # With M = 1 the inter- and intra-tree terms coincide: Â = 2 (R - 1/3) / 0.4714 = -1.4142, 2.8284, -1.4142
    # credit(s1) = mean of all three = 0 -> σ = 0.5;  credit(s2) = credit(s3) = -1.4142 -> σ = 0.1956
    assert r.labels[0].values == pytest.approx([0.5, 0.1956, 0.1956], abs=1e-4)
    assert r.policy_tokens == 2 * 10 and r.rollouts == 2 and r.prm_loss == "soft_bce"
    value = run_label_source(TreeRolloutLabels(m_trees=1, l_rounds=1, n_branches=2, label_kind="value"), [seed], _ByPrefix(domain))
    assert value.labels[0].values == pytest.approx([1 / 3, 0.0, 0.0])


def test_tree_grows_m_trees_of_1_plus_l_n_leaves_and_keeps_k(domain):
    probs = domain.sample_problems(2, seed=1)
    pool = [Trajectory(problem=p, steps=["a", "b", "c"], final_answer="0", outcome=False,
                       oracle_labels=[True] * 3, tokens_generated=5) for p in probs]
    src = TreeRolloutLabels(m_trees=3, l_rounds=2, n_branches=2, k_leaves=4)
    forest = src.label_trees(pool, _ByPrefix(domain))
    for p in probs:
        trees = forest[p.id]
        assert len(trees) == 3 and all(len(t["leaves"]) == 4 for t in trees)
        assert trees[0]["leaves"][0] is pool[probs.index(p)]  # the pool trajectory stays its tree's root chain
    r = run_label_source(TreeRolloutLabels(m_trees=3, l_rounds=2, n_branches=2), pool, _ByPrefix(domain))
    # per problem: 2 sampled roots + 3 trees x 2 rounds x 2 branches, 10 tokens each
    assert r.rollouts == 2 * (2 + 12) and r.policy_tokens == 2 * (2 + 12) * 10
    assert all(len(l.values) == 3 and l.soft for l in r.labels)


def test_tree_needs_a_policy(domain):
    with pytest.raises(ValueError, match="policy"):
        run_label_source("tree", [], None)
