import math

import numpy as np
import pytest
import torch

from selfprm.labels.verifier import OutcomeVerifier, VerifierConfig, first_below, tune_outcome_threshold
from selfprm.policies import HFPolicy, HFPolicyConfig, SimulatedPolicy
from selfprm.types import Problem, Trajectory


# the verifier's tiny models run on one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


GOOD, BAD = "e", "o"  # one-character steps; a solution ends right iff no step is BAD


def _toy_pool(n_problems=48, samples=2, n_steps=4, seed=0):
    """A separable toy: the first BAD step is the first error, and every later step is random, so
    the verifier must find *the first* BAD step, not any. First errors are uniform over -1..3."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(n_problems):
        prob = Problem(f"toy-{p}", f"Q:{p % 10}")
        for s in range(samples):
            fe = int(rng.integers(-1, n_steps))
            steps = [GOOD if (fe < 0 or i < fe) else BAD if i == fe else str(rng.choice([GOOD, BAD]))
                     for i in range(n_steps)]
            oracle = [fe < 0 or i < fe for i in range(n_steps)]
            out.append(Trajectory(prob, steps, final_answer="1" if fe < 0 else "0", outcome=fe < 0,
                                  oracle_labels=oracle))
    return out


@pytest.fixture
def policy(tiny_lm, char_tokenizer, domain):
    return HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig())


def test_the_verifier_needs_a_policy_with_a_model(domain):
    with pytest.raises(TypeError, match="HFPolicy"):
        OutcomeVerifier(SimulatedPolicy(domain))


def test_unknown_settings_and_too_few_problems_are_errors(policy):
    with pytest.raises(TypeError, match="unknown verifier settings"):
        OutcomeVerifier(policy, n_rollouts=2)
    with pytest.raises(ValueError, match="n_folds"):
        OutcomeVerifier(policy, n_folds=1)
    one_problem = [t for t in _toy_pool(4) if t.problem.id == "toy-0"]
    with pytest.raises(ValueError, match="distinct problems"):
        OutcomeVerifier(policy).first_errors(one_problem)


def test_threshold_rule_by_hand():
    # successes' lowest prefix values 0.8, 0.9; failures' 0.1, 0.3: the gap (0.3, 0.8) is split at its middle
    assert tune_outcome_threshold([0.8, 0.9, 0.1, 0.3], [True, True, False, False]) == pytest.approx(0.55)
    # only successes: nothing is flagged
    assert tune_outcome_threshold([0.4, 0.6], [True, True]) == 0.0
    assert first_below([0.9, math.nan, 0.4, 0.2], 0.5) == 2
    assert first_below([0.9, math.nan, 0.7], 0.5) == -1


def test_cross_fitting_no_trajectory_is_judged_by_a_model_trained_on_it(policy):
    pool = _toy_pool(12, samples=3)
    v = OutcomeVerifier(policy, epochs=1, batch_size=8)
    assert v.fold_ is None and v.trained_on_ is None and v.token_passes == 0  # nothing fitted yet
    fe = v.first_errors(pool)
    assert len(fe) == len(v.fold_) == len(pool) and all(-1 <= f < len(t.steps) for f, t in zip(fe, pool))
    assert len(v.trained_on_) == 2 and set(v.fold_) == {0, 1}
    for t, k in zip(pool, v.fold_):
        assert t.problem.id not in v.trained_on_[k]  # judged by model k, which never saw its problem
        assert t.problem.id in v.trained_on_[1 - k]  # ... and it trained the other model
    # a problem's samples share a fold; the folds split the problems in halves
    by_problem = {}
    for t, k in zip(pool, v.fold_):
        by_problem.setdefault(t.problem.id, set()).add(k)
    assert all(len(s) == 1 for s in by_problem.values())
    assert sorted(len(s) for s in v.trained_on_) == [6, 6]


def test_cost_is_training_calibration_and_judging_passes(policy):
    pool = _toy_pool(6)
    epochs = 2
    v = OutcomeVerifier(policy, epochs=epochs, batch_size=4)
    v.first_errors(pool)
    from selfprm.prm.model import PRMConfig, ProcessRewardModel

    prm = ProcessRewardModel(policy.model, policy.tokenizer, PRMConfig(surprise_features=True))
    lengths = prm.encode([t.problem.prompt for t in pool], [t.steps for t in pool]).attention_mask.sum(1).tolist()
    # 2 folds: each trajectory trains one model (forward + backward, each epoch), is scored once by
    # it to tune the threshold, and once by the other model to be judged
    assert v.token_passes_ == [(2 * epochs + 1 + 1) * n for n in lengths]
    assert v.token_passes > 0 and v.seconds_ > 0
    assert len(v.losses_) == 2 and all(len(l) == epochs * 2 for l in v.losses_)  # 3 problems x 2 samples, batch 4


def test_the_verifier_names_the_first_wrong_step_on_a_separable_toy(policy):
    pool = _toy_pool(48)
    before = [p.detach().clone() for p in policy.model.parameters()]
    v = OutcomeVerifier(policy, VerifierConfig(epochs=16, batch_size=16, lr=1e-2))
    fe = v.first_errors(pool)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters()))  # the policy is untouched
    truth = [t.first_error for t in pool]
    acc = np.mean([a == b for a, b in zip(fe, truth)])
    # outcome alone can only say "step 0" or "none": right for first errors -1 and 0 only
    outcome_acc = np.mean([(-1 if t.outcome else 0) == b for t, b in zip(pool, truth)])
    chance = 1 / 5
    assert outcome_acc < 0.5 and acc > 0.6 and acc > outcome_acc + 0.15, (acc, outcome_acc, chance)
