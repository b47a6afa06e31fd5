import dataclasses
import json
import math

import pytest
import torch

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.labels import run_label_source
from selfprm.labels.mcts import (MCTSLabels, Node, add_child, allowed_children, allowed_children_spread, backup,
                                 combine, importance, insert_path, merge_key, uct_child)
from selfprm.policies import HFPolicy, HFPolicyConfig, SimulatedPolicy, SimulatedPolicyConfig
from selfprm.prm.train import PRMTrainConfig


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


def test_importance_of_a_node_by_hand():
    s = Node((), visits=4, total=2.0)  # v(s) = 0.5
    _child(s, "a", 1, 0.9)  # |0.9 - 0.5| = 0.4
    _child(s, "b", 2, 0.2)  # 0.3
    _child(s, "c", 1, 0.6)  # 0.1
    _child(s, "d", 0, 0.0)  # no value yet: not counted
    assert importance(s) == pytest.approx(0.4)
    # c(s) = max(c_min, min(floor(alpha * I) + 1, c_max))
    assert allowed_children(s, 2, 4, alpha=6.0) == 3  # floor(2.4) + 1
    assert allowed_children(s, 2, 4, alpha=10.0) == 4  # floor(4.0) + 1 = 5, capped
    assert allowed_children(s, 2, 4, alpha=1.0) == 2  # floor(0.4) + 1 = 1, floored
    assert importance(Node(())) == 0.0 and allowed_children(Node(()), 2, 4, 6.0) == 2


def test_children_are_allotted_by_importance():
    src = MCTSLabels(min_children=2, max_children=4, branch_alpha=6.0, critics=("outcome",))
    flat = Node((), visits=4, total=2.0)
    _child(flat, "a", 2, 0.5)
    _child(flat, "b", 2, 0.5)
    # I = 0: two options are enough, so selection goes past the root by UCT
    assert src._select(flat) in flat.children.values()
    steep = Node((), visits=4, total=2.0)
    _child(steep, "a", 2, 1.0)
    _child(steep, "b", 2, 0.0)
    # I = 0.5: c = floor(3) + 1 = 4 options, so the root itself is expanded again
    assert src._select(steep) is steep
    # the earlier rule survives as an option: wide when the children's Q spread
    assert allowed_children_spread(steep, 2, 4, spread=0.2) == 4 and allowed_children_spread(flat, 2, 4, 0.2) == 2


def test_differently_written_equal_steps_merge():
    root = Node(())
    a = add_child(root, "7+5=2")
    assert add_child(root, " 7 + 5 = 2 ") is a  # the same computation writing the same value
    assert add_child(root, "07+5=02") is a
    assert add_child(root, "7+5=3") is not a  # another value
    assert add_child(root, "7*5=5") is not a  # another computation
    assert len(root.children) == 3 and a.text == "7+5=2"  # a merged state keeps its first wording
    assert merge_key("redo: 7+5=2") == "redo:7+5=2"
    # the "exact" rule only ignores runs of whitespace
    ex = Node(())
    b = add_child(ex, "7+5=2", "exact")
    assert add_child(ex, " 7+5=2 ", "exact") is b and add_child(ex, "7 + 5 = 2", "exact") is not b


def test_pool_paths_with_equal_steps_share_a_node():
    root = Node(())
    p1 = insert_path(root, ["7+5=2", "2*3=6"], outcome=True)
    p2 = insert_path(root, ["7 + 5 = 2", "2*3=7"], outcome=False)
    assert p1[0] is p2[0] and p1[1] is not p2[1]
    assert p1[0].q == 0.5 and p1[0].visits == 2 and p1[0].mc_q == 0.5


def test_backup_and_insert_path():
    root = Node(())
    path = insert_path(root, ["a", "b"], outcome=False)
    backup(path[0], 1.0)  # a critic value: the Monte Carlo statistics stay outcome-only
    assert [n.visits for n in (root, *path)] == [2, 2, 1]
    assert path[0].q == 0.5 and path[1].q == 0.0 and path[1].terminal
    assert path[0].mc_visits == 1 and path[0].mc_q == 0.0
    backup(path[1], 0.25, outcome=1.0)
    assert path[0].mc_q == 0.5 and path[1].q == pytest.approx(0.125)


def test_critics_combine_by_hand():
    w = {"value": 2.0, "prm": 1.0, "outcome": 1.0}
    # (2 · 0.5 + 1 · 0.2 + 1 · 1) / (2 + 1 + 1)
    assert combine({"value": 0.5, "prm": 0.2, "outcome": 1.0}, w) == pytest.approx(2.2 / 4)
    # a critic without a number (NaN: no step to score; absent: not trained yet) drops out
    assert combine({"value": math.nan, "prm": 0.2, "outcome": 1.0}, w) == pytest.approx(1.2 / 2)
    assert combine({"value": 0.5, "outcome": 0.0}, w) == pytest.approx(1.0 / 3)
    assert MCTSLabels(critics=("outcome",)).weights == {"outcome": 1.0}
    assert MCTSLabels().weights == {"value": 1.0, "prm": 1.0, "outcome": 1.0}


def _perfect_setting():
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
    return domain, p, steps, bad, perfect


def test_mcts_q_labels_and_preference_pairs_with_a_perfect_solver():
    _, p, steps, bad, perfect = _perfect_setting()
    src = MCTSLabels(n_simulations=6, critics=("outcome",))
    assert src.trees_ is None and src.preference_pairs() == []  # nothing fitted yet
    r = run_label_source(src, [bad], perfect)
    assert set(src.trees_) == {p.id} and src.folds_ is None and src.critics_ == {}
    q = r.labels[0].values
    # the sound first step's subtree holds the solver's successes; the wrong step has only failures
    assert q[0] > 0.5 and q[1] == 0.0 and q[2] == 0.0
    assert r.labels[0].first_error == 1
    assert 0 < r.rollouts <= 6 and r.policy_tokens > 0 and r.prm_loss == "soft_bce"
    assert r.labels[0].token_passes == 0  # no trained critic, nothing run through a model
    pairs = src.preference_pairs()
    pair = next(x for x in pairs if x["prefix"] == steps[:1])
    assert pair["rejected"] == steps[1] and pair["chosen"] != steps[1] and pair["margin"] >= 0.3


def test_dpo_file_holds_prompt_chosen_rejected_with_the_better_step_chosen(tmp_path):
    domain, p, steps, bad, perfect = _perfect_setting()
    src = MCTSLabels(n_simulations=6, critics=("outcome",))
    with pytest.raises(RuntimeError, match="label"):
        src.write_preference_pairs(tmp_path / "none.jsonl")
    run_label_source(src, [bad], perfect)
    n = src.write_preference_pairs(tmp_path / "dpo" / "pairs.jsonl")
    lines = (tmp_path / "dpo" / "pairs.jsonl").read_text().splitlines()
    assert n == len(lines) > 0
    _, root = src.trees_[p.id]
    for line in lines:
        rec = json.loads(line)
        assert set(rec) == {"prompt", "chosen", "rejected"}
        # the prompt is the problem and the shared prefix as the policy reads them
        prefix = [s for s in rec["prompt"].split("\n")[1:] if s]
        assert rec["prompt"] == domain.render(p, prefix)
        node = root
        for s in prefix:
            node = node.children[merge_key(s)]
        chosen, rejected = node.children[merge_key(rec["chosen"])], node.children[merge_key(rec["rejected"])]
        assert chosen.q - rejected.q >= src.pair_margin > 0
    assert {"prompt": domain.render(p, steps[:1]), "chosen": next(
        x["chosen"] for x in src.preference_pairs() if x["rejected"] == steps[1]), "rejected": steps[1]} in \
        [json.loads(line) for line in lines]


def test_mcts_needs_a_policy(domain):
    with pytest.raises(ValueError, match="policy"):
        run_label_source("mcts", [], None)


def test_trained_critics_need_a_policy_with_a_model(domain):
    sim = SimulatedPolicy(domain)
    pool = [t for g in sim.sample(domain.sample_problems(2, seed=0), 1) for t in g]
    with pytest.raises(TypeError, match="model"):
        run_label_source("mcts", pool, sim)
    with pytest.raises(ValueError, match="critics"):
        run_label_source("mcts", pool, sim, critics=("outcome", "orm"))


# ----------------------------------------------------------------------------- critics on a tiny LM

_FAST = PRMTrainConfig(loss="soft_bce", epochs=1, batch_size=8, lr=1e-3, head_lr=1e-2)


def _pool(domain, n_problems=4, samples=2):
    sim = SimulatedPolicy(domain, SimulatedPolicyConfig(error_rate={"easy": 0.3, "medium": 0.3, "hard": 0.3}, seed=2))
    return [t for g in sim.sample(domain.sample_problems(n_problems, seed=5), samples) for t in g]


def test_critics_are_cross_fitted_and_cost_token_passes(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain)
    policy = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=12))
    before = [w.detach().clone() for w in tiny_lm.parameters()]
    src = MCTSLabels(n_simulations=1, critic_train=_FAST)
    assert src.folds_ is None and src.critics_ is None and src.critic_token_passes_ is None
    r = run_label_source(src, pool, policy)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_lm.parameters()))  # critics train on copies
    fold_of = {}
    for t, k in zip(pool, src.folds_):
        assert fold_of.setdefault(t.problem.id, k) == k  # all samples of a problem in one fold
    assert sorted(set(src.folds_)) == [0, 1]
    assert set(src.critics_) == {"value", "prm"}
    for crit in src.critics_.values():
        assert len(crit.models) == 2
        for k, seen in enumerate(crit.trained_on):
            # model k trained on every problem outside fold k and on none inside it
            assert seen == {pid for pid, f in fold_of.items() if f != k}
            assert not seen & {pid for pid, f in fold_of.items() if f == k}
    passes = [l.token_passes for l in r.labels]
    assert all(p > 0 for p in passes)
    assert sum(passes) == sum(src.critic_token_passes_.values())
    assert all(src.critic_token_passes_[k] > 0 for k in ("value_train", "prm_train", "scoring"))
    assert all(0.0 <= v <= 1.0 for l in r.labels for v in l.values)


def test_a_folds_value_critic_never_sees_its_outcomes(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain)
    policy = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=12))
    kw = dict(n_simulations=0, critics=("value", "outcome"), critic_train=_FAST)
    a = MCTSLabels(**kw)
    a.label(pool, policy)
    # flip the outcomes of fold 0: the value critic that scores fold 0 trained on fold 1 only and
    # stays exactly the same, the one that scores fold 1 moves
    flipped = [dataclasses.replace(t, outcome=not t.outcome) if k == 0 else t for t, k in zip(pool, a.folds_)]
    b = MCTSLabels(**kw)
    b.label(flipped, policy)
    assert b.folds_ == a.folds_

    def same(m, n):
        return all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), n.state_dict().values()))

    va, vb = a.critics_["value"].models, b.critics_["value"].models
    assert same(va[0], vb[0]) and not same(va[1], vb[1])


def test_too_few_problems_for_the_folds(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain, n_problems=1)
    policy = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=12))
    with pytest.raises(ValueError, match="at least 2 distinct problems"):
        MCTSLabels(n_simulations=1).label(pool, policy)
