
import pytest

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.labels import run_label_source
from selfprm.labels.mcts import MCTSLabels, Node, add_child, allowed_children, backup, insert_path, uct_child
from selfprm.policies import Prefix, SimulatedPolicy, SimulatedPolicyConfig


def _child(parent, text, visits, q):
    ch = Node(parent.steps + (text,), parent=parent, visits=visits, total=q * visits)
    parent.children[text] = ch
    return ch


def test_uct_selection_by_hand():
    root = Node((), visits=10)
    a = _child(root, "a", 5, 0.6)  # 0.6 + sqrt(ln 10 / 5) = 1.2786
    b = _child(root, "b", 1, 0.2)  # 0.2 + sqrt(ln 10 / 1) = 1.7174
    assert uct_child(root, 1.0) is b
    assert uct_child(root, 0.1) is a  # 0.6 + 0.0679 > 0.2 + 0.1517
    c = _child(root, "c", 0, 0.0)
    assert uct_child(root, 1.0) is c  # an unvisited option first


def test_adaptive_branching_by_the_spread_of_child_values():
    root = Node((), visits=4)
    _child(root, "a", 2, 1.0)
    _child(root, "b", 2, 0.0)
    assert allowed_children(root, 2, 4, spread=0.2) == 4  # std 0.5: the choice matters, branch wider
    flat = Node((), visits=4)
    _child(flat, "a", 2, 0.5)
    _child(flat, "b", 2, 0.5)
    assert allowed_children(flat, 2, 4, spread=0.2) == 2


def test_near_duplicate_siblings_merge():
    root = Node(())
    a = add_child(root, "7+5=2", merge_threshold=1.0)
    assert add_child(root, " 7+5=2 ", merge_threshold=1.0) is a  # same step up to spaces
    assert add_child(root, "7+5=12", merge_threshold=1.0) is not a
    root2 = Node(())
    a2 = add_child(root2, "7+5=2", merge_threshold=0.8)
    assert add_child(root2, "7+5=12", merge_threshold=0.8) is a2  # similarity 0.91 >= 0.8
    assert len(root2.children) == 1


def test_backup_and_insert_path():
    root = Node(())
    path = insert_path(root, ["a", "b"], outcome=False)
    backup(path[0], 1.0)
    assert [n.visits for n in (root, *path)] == [2, 2, 1]
    assert path[0].q == 0.5 and path[1].q == 0.0 and path[1].terminal


class _FakePRM:
    def score_steps(self, prompts, steps):
        return [[0.2] * len(s) for s in steps]


def test_node_value_mixes_the_critics_by_hand(domain):
    prob = domain.sample_problems(1, seed=0)[0]
    src = MCTSLabels(w_rollout=1.0, w_prm=1.0, w_value=2.0, prm=_FakePRM(), value_fn=lambda p, s: 0.5)
    n = Node(("x",))
    # (2 · 0.5 + 1 · rollout + 1 · 0.2) / (2 + 1 + 1)
    assert src._evaluate([(prob, n, 1.0)]) == pytest.approx([(1.0 + 1.0 + 0.2) / 4])
    assert src._evaluate([(prob, n, 0.0)]) == pytest.approx([(1.0 + 0.0 + 0.2) / 4])
    assert MCTSLabels()._evaluate([(prob, n, 1.0)]) == [1.0]  # only the fast rollout


def test_mcts_q_labels_and_preference_pairs_with_a_perfect_solver():
    domain = ArithDomain(ArithConfig(min_ops=3, max_ops=3, recovery_rate=0, extra_step_rate=0))
    p = domain.sample_problems(1, seed=3)[0]
    v = p.meta["values"]
    (op0, b0), (op1, b1), (op2, b2) = p.meta["chain"]
    wrong = (v[2] + 1) % 10
    steps = [f"{v[0]}{op0}{b0}={v[1]}", f"{v[1]}{op1}{b1}={wrong}", f"{wrong}{op2}{b2}=0"]
    bad = domain.make_trajectory(p, steps, "0")
    assert bad.first_error == 1 and not bad.outcome
    perfect = SimulatedPolicy(domain, SimulatedPolicyConfig(
        error_rate={"easy": 0, "medium": 0, "hard": 0}, recovery_rate=0, extra_step_rate=0, answer_error_rate=0))
    src = MCTSLabels(n_simulations=6)
    assert src.trees_ is None and src.preference_pairs() == []  # nothing fitted yet
    r = run_label_source(src, [bad], perfect)
    assert set(src.trees_) == {p.id}
    q = r.labels[0].values
    # the sound first step's subtree holds the solver's successes; the wrong step has only failures
    assert q[0] > 0.5 and q[1] == 0.0 and q[2] == 0.0
    assert r.labels[0].first_error == 1
    assert 0 < r.rollouts <= 6 and r.policy_tokens > 0 and r.prm_loss == "soft_bce"
    pairs = src.preference_pairs()
    assert pairs, "the wrong step and its correct sibling make a pair"
    pair = next(x for x in pairs if x["prefix"] == steps[:1])
    assert pair["rejected"] == steps[1] and pair["chosen"] != steps[1] and pair["margin"] >= 0.3


def test_mcts_needs_a_policy(domain):
    with pytest.raises(ValueError, match="policy"):
        run_label_source("mcts", [], None)
