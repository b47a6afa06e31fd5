import dataclasses
import math

import numpy as np
import pytest
import torch

from selfprm.labels import run_label_source
from selfprm.labels.implicit import (ImplicitPRMLabels, assign_folds, encode_with_step_ends, spread, step_rewards,
                                     token_log_ratios)
from selfprm.policies import HFPolicy, HFPolicyConfig, SimulatedPolicy


def _pool(domain, n=8, samples=1):
    """``n`` problems x ``samples``; odd problems end with a wrong last step and a wrong answer."""
    out = []
    for i, p in enumerate(domain.sample_problems(n, seed=4)):
        for s in range(samples):
            steps, ans = domain.worked_solution(p, np.random.default_rng(100 * i + s))
            if i % 2:
                steps = steps[:-1] + [steps[-1].split("=")[0] + "=" + str((int(steps[-1].split("=")[1]) + 1) % 10)]
                ans = str((int(ans) + 1) % 10)
            out.append(domain.make_trajectory(p, steps, ans))
    return out


def _policy(domain, tiny_lm, char_tokenizer):
    return HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig())


def _logit(v):
    return math.log(v / (1 - v))


def test_implicit_needs_a_policy_with_a_model(domain):
    with pytest.raises(TypeError, match="model"):
        run_label_source("implicit", _pool(domain, 2), SimulatedPolicy(domain))


def test_step_ends_mark_each_steps_last_token(domain, char_tokenizer):
    t = _pool(domain, 1)[0]
    ids, start, ends = encode_with_step_ends(char_tokenizer, domain, t)
    text = char_tokenizer.decode(ids[start:ends[0] + 1])
    assert text == t.steps[0] + "\n" and ids[-1] == char_tokenizer.eos_token_id
    assert char_tokenizer.decode(ids[ends[-2] + 1: ends[-1] + 1]) == t.steps[-1] + "\n"


def test_step_rewards_are_differences_of_q_by_hand():
    # q = (0.2, -0.3, 0.5): r = (0.2, -0.5, 0.8), and the rewards sum back to q_T
    assert step_rewards([0.2, -0.3, 0.5]) == pytest.approx([0.2, -0.5, 0.8])
    assert step_rewards([]) == []
    assert spread(7, 3) == [3, 2, 2] and sum(spread(10, 4)) == 10


def test_folds_group_problems_and_need_enough_of_them(domain):
    pool = _pool(domain, 5, samples=3)
    folds = assign_folds(pool, 2, seed=0)
    by_problem = {}
    for t, f in zip(pool, folds):
        by_problem.setdefault(t.problem.id, set()).add(f)
    assert all(len(fs) == 1 for fs in by_problem.values())  # all samples of a problem in one fold
    assert sorted(folds.count(k) for k in (0, 1)) == [6, 9]  # 5 problems dealt round-robin: 2 and 3
    assert folds == assign_folds(pool, 2, seed=0)
    with pytest.raises(ValueError, match="at least 2 distinct problems; got 1"):
        assign_folds(_pool(domain, 1, samples=4), 2, seed=0)
    with pytest.raises(ValueError, match="n_folds >= 2"):
        assign_folds(pool, 1, seed=0)


def test_untrained_ratio_is_zero_so_every_label_is_one_half(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain, 4)
    r = run_label_source("implicit", pool, _policy(domain, tiny_lm, char_tokenizer), train_steps=0, progress=False)
    # πθ = π_ref: log πθ/π_ref = 0 at every token, q_t = r_t = 0, σ(0) = 1/2
    assert all(v == pytest.approx(0.5) for l in r.labels for v in l.values)
    assert r.policy_tokens == 0 and r.rollouts == 0 and r.prm_loss == "soft_bce"
    # no training: one π_ref forward and one πθ forward over each trajectory, nothing else
    lengths = [len(encode_with_step_ends(char_tokenizer, domain, t)[0]) for t in pool]
    assert [l.token_passes for l in r.labels] == [2 * n for n in lengths]


def test_cross_fitting_no_model_labels_what_it_trained_on(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain, 4, samples=2)
    pol = _policy(domain, tiny_lm, char_tokenizer)
    before = [p.detach().clone() for p in tiny_lm.parameters()]
    src = ImplicitPRMLabels(beta=0.5, train_steps=4, batch_size=4, lr=3e-3)
    assert src.models_ is None and src.folds_ is None and src.losses_ is None and src.train_seconds_ is None
    labels = src.label(pool, pol)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_lm.parameters()))  # π_ref is left untouched
    assert len(src.models_) == 2 and all(m is not tiny_lm for m in src.models_)
    assert len(src.losses_) == 2 and all(len(l) == 4 for l in src.losses_) and src.train_seconds_ > 0
    # the model that labelled a trajectory (its fold's) never trained on its problem
    for t, k in zip(pool, src.folds_):
        assert t.problem.id not in src.trained_on_[k]
        assert t.problem.id in src.trained_on_[1 - k]
    # flip the outcomes of fold 0 (so its trajectories train model 1 differently): fold 0's own
    # labels come from model 0, which never saw them, and stay exactly the same
    flipped = [dataclasses.replace(t, outcome=not t.outcome) if k == 0 else t for t, k in zip(pool, src.folds_)]
    again = ImplicitPRMLabels(beta=0.5, train_steps=4, batch_size=4, lr=3e-3).label(flipped, pol)
    same = [a.values == b.values for a, b in zip(labels, again)]
    assert all(s for s, k in zip(same, src.folds_) if k == 0)
    assert not all(same)  # ... while fold 1's labels, from the retrained model 1, move


def test_step_labels_are_differences_of_q_labels_and_q_T_is_the_outcome_reward(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain, 4)
    kw = dict(beta=0.5, train_steps=8, batch_size=4, lr=3e-3)
    q_src = ImplicitPRMLabels(label_kind="q", **kw)
    q_labels = q_src.label(pool, _policy(domain, tiny_lm, char_tokenizer))
    s_labels = ImplicitPRMLabels(**kw).label(pool, _policy(domain, tiny_lm, char_tokenizer))  # "step" default
    assert ImplicitPRMLabels().label_kind == "step"
    for t, ql, sl, k in zip(pool, q_labels, s_labels, q_src.folds_):
        q = [_logit(v) for v in ql.values]
        r = [_logit(v) for v in sl.values]
        assert r == pytest.approx([a - b for a, b in zip(q, [0.0] + q[:-1])], abs=1e-6)  # r_t = q_t - q_{t-1}
        assert sum(r) == pytest.approx(q[-1], abs=1e-6)
        assert any(abs(v) > 1e-3 for v in r)  # training moved the ratio
        # q_T is the trained outcome reward r_θ(y) = β Σ log πθ/π_ref over the whole solution
        ids, start, _ = encode_with_step_ends(char_tokenizer, domain, t)
        with torch.no_grad():
            lr = token_log_ratios(q_src.models_[k], tiny_lm, [ids], char_tokenizer.pad_token_id, "cpu")
        assert q[-1] == pytest.approx(0.5 * float(lr[0, start - 1:].sum()), abs=1e-4)


def test_token_passes_by_hand(domain, tiny_lm, char_tokenizer):
    # 4 problems, 2 folds of 2 trajectories; batch_size 8 covers a model's whole training set, so
    # each of T steps runs πθ forward + backward over it: model k costs 2·T·Σ_{j ∉ fold k} n_j,
    # split evenly over fold k's complement; plus π_ref and πθ-scoring forwards, n_i each.
    pool = _pool(domain, 4)
    T = 3
    src = ImplicitPRMLabels(train_steps=T, batch_size=8)
    labels = src.label(pool, _policy(domain, tiny_lm, char_tokenizer))
    n = [len(encode_with_step_ends(char_tokenizer, domain, t)[0]) for t in pool]
    assert sum(l.token_passes for l in labels) == (2 * T + 2) * sum(n)
    for i, (lab, k) in enumerate(zip(labels, src.folds_)):
        mates = [j for j, f in enumerate(src.folds_) if f == k]  # who trained model 1 - k with i
        share = 2 * T * sum(n[j] for j in mates) / len(mates)
        assert lab.token_passes == pytest.approx(2 * n[i] + share, abs=1)
        assert lab.policy_tokens == 0 and lab.rollouts == 0


def test_repeatable_under_a_seed(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain, 4, samples=2)
    kw = dict(beta=0.5, train_steps=5, batch_size=3, lr=3e-3)
    a = ImplicitPRMLabels(seed=1, **kw)
    la = a.label(pool, _policy(domain, tiny_lm, char_tokenizer))
    b = ImplicitPRMLabels(seed=1, **kw)
    lb = b.label(pool, _policy(domain, tiny_lm, char_tokenizer))
    assert [l.values for l in la] == [l.values for l in lb]
    assert [l.token_passes for l in la] == [l.token_passes for l in lb]
    assert a.losses_ == b.losses_ and a.folds_ == b.folds_
    c = ImplicitPRMLabels(seed=2, **kw)
    lc = c.label(pool, _policy(domain, tiny_lm, char_tokenizer))
    assert c.folds_ != a.folds_ or [l.values for l in lc] != [l.values for l in la]


def test_bad_label_kind_is_refused(domain, tiny_lm, char_tokenizer):
    with pytest.raises(ValueError, match="label_kind"):
        ImplicitPRMLabels(label_kind="reward").label(_pool(domain, 2), _policy(domain, tiny_lm, char_tokenizer))
