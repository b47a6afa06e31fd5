import math

import numpy as np
import pytest
import torch

from selfprm.labels import run_label_source
from selfprm.labels.implicit import ImplicitPRMLabels, encode_with_step_ends
from selfprm.policies import HFPolicy, HFPolicyConfig, SimulatedPolicy


def _pool(domain, n=8):
    """Half right, half with a planted wrong step (wrong answers)."""
    out = []
    for i, p in enumerate(domain.sample_problems(n, seed=4)):
        steps, ans = domain.worked_solution(p, np.random.default_rng(i))
        if i % 2:
            steps = steps[:-1] + [steps[-1].split("=")[0] + "=" + str((int(steps[-1].split("=")[1]) + 1) % 10)]
            ans = str((int(ans) + 1) % 10)
        out.append(domain.make_trajectory(p, steps, ans))
    return out


def test_implicit_needs_a_policy_with_a_model(domain):
    with pytest.raises(TypeError, match="model"):
        run_label_source("implicit", _pool(domain, 2), SimulatedPolicy(domain))


def test_step_ends_mark_each_steps_last_token(domain, char_tokenizer):
    t = _pool(domain, 1)[0]
    ids, start, ends = encode_with_step_ends(char_tokenizer, domain, t)
    text = char_tokenizer.decode(ids[start:ends[0] + 1])
    assert text == t.steps[0] + "\n" and ids[-1] == char_tokenizer.eos_token_id
    assert char_tokenizer.decode(ids[ends[-2] + 1: ends[-1] + 1]) == t.steps[-1] + "\n"


def test_untrained_ratio_is_zero_so_every_label_is_one_half(domain, tiny_lm, char_tokenizer):
    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig())
    r = run_label_source("implicit", _pool(domain, 4), pol, train_steps=0, progress=False)
    # πθ = π_ref: log πθ/π_ref = 0 at every token, q_k = 0, σ(0) = 1/2
    assert all(v == pytest.approx(0.5) for l in r.labels for v in l.values)
    assert r.policy_tokens == 0 and r.rollouts == 0 and r.prm_loss == "soft_bce"


def test_outcome_training_separates_right_from_wrong_and_step_rewards_are_differences(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain, 8)
    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig())
    before = [p.detach().clone() for p in tiny_lm.parameters()]
    src = ImplicitPRMLabels(beta=0.5, train_steps=40, batch_size=8, lr=3e-3)
    assert src.model_ is None and src.losses_ is None and src.train_seconds_ is None  # nothing fitted yet
    q_labels = src.label(pool, pol)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_lm.parameters()))  # π_ref is left untouched
    assert len(src.losses_) == 40 and np.mean(src.losses_[-5:]) < np.mean(src.losses_[:5])
    assert src.train_seconds_ > 0 and src.model_ is not None and src.model_ is not tiny_lm
    last = [l.values[-1] for l in q_labels]  # σ(q_T): the implied chance the solution is right
    right = [v for v, t in zip(last, pool) if t.outcome]
    wrong = [v for v, t in zip(last, pool) if not t.outcome]
    assert min(right) > max(wrong)
    # label_kind="reward": σ(q_k - q_{k-1}), the change of the log-ratio across step k
    src2 = ImplicitPRMLabels(beta=0.5, train_steps=40, batch_size=8, lr=3e-3, label_kind="reward")
    r_labels = src2.label(pool, HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig()))
    logit = lambda v: math.log(v / (1 - v))  # noqa: E731
    for ql, rl in zip(q_labels, r_labels):
        q = [logit(v) for v in ql.values]
        assert [logit(v) for v in rl.values] == pytest.approx([a - b for a, b in zip(q, [0.0] + q[:-1])], abs=1e-4)
