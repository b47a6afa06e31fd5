import pytest

from selfprm.labels import run_label_source
from selfprm.labels.consensus import ConsensusLabels
from selfprm.policies import HFPolicy, HFPolicyConfig, SimulatedPolicy
from selfprm.types import Trajectory


# the verifier's tiny models run on one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pool(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])  # 7 -> 2 -> 6 -> 2
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6", "6-4=2"], "2")  # no error
    late = domain.make_trajectory(p, ["7+5=2", "2*3=7", "7-4=3"], "3")  # first error at step 1
    early = domain.make_trajectory(p, ["7+5=3", "3*3=9", "9-4=5"], "5")  # first error at step 0
    return [good, late, early]


def test_the_default_judge_is_the_learned_verifier_not_a_second_mc_estimate():
    src = ConsensusLabels()
    assert src.judge == "verifier" and src.primary == "mc" and src.primary_kwargs == {"soft": False}
    assert src.prm_loss == "bce"  # the paper's hard MC labels


def test_consensus_keeps_only_where_both_sources_agree_on_the_first_error(domain):
    pool = _pool(domain)
    # oracle first errors: -1, 1, 0; outcome broadcast: -1 (right answer), 0, 0 (wrong answers)
    r = run_label_source("consensus", pool, None, primary="oracle", primary_kwargs={}, judge="outcome")
    kept = [l.weights is None for l in r.labels]
    assert kept == [True, False, True]
    assert r.labels[1].weights == [0.0, 0.0, 0.0]  # the disagreement stays, weightless, so its cost still counts
    assert [l.values for l in r.labels] == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]  # the primary's labels
    assert r.prm_loss == "bce"


class _FakeVerifier:
    """Stands in for OutcomeVerifier: fixed first errors and a fixed cost per trajectory."""

    verdicts: list = []

    def __init__(self, policy, **kwargs):
        self.kwargs = kwargs

    def assign_folds(self, trajectories):
        return [0] * len(trajectories)

    def first_errors(self, trajectories, *, progress=False):
        self.token_passes_ = [100 + i for i in range(len(trajectories))]
        return list(self.verdicts)


def test_consensus_with_the_verifier_keeps_exactly_the_agreeing_trajectories(domain, monkeypatch):
    import selfprm.labels.verifier as verifier

    pool = _pool(domain)  # oracle first errors -1, 1, 0
    _FakeVerifier.verdicts = [-1, 2, 0]  # agrees on the first and the last
    monkeypatch.setattr(verifier, "OutcomeVerifier", _FakeVerifier)
    src = ConsensusLabels(primary="oracle", primary_kwargs={}, judge_kwargs={"epochs": 3})
    r = run_label_source(src, pool, None)
    assert [l.weights is None for l in r.labels] == [True, False, True]
    assert src.agree_ == [True, False, True] and src.judge_first_errors_ == [-1, 2, 0]
    assert src.verifier_.kwargs == {"epochs": 3}  # judge_kwargs configure the verifier
    assert [l.token_passes for l in r.labels] == [100, 101, 102]  # the oracle costs nothing
    assert r.policy_tokens == 0 and r.rollouts == 0


def test_consensus_of_mc_and_the_real_verifier_fills_every_cost_field(domain, tiny_lm, char_tokenizer):
    pool = _pool(domain) + [domain.make_trajectory(domain.make_problem("q", 3, [("+", 1), ("*", 2)]),
                                                   ["3+1=4", "4*2=8"], "8")]  # a second problem: 2 folds
    policy = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=8))
    src = ConsensusLabels(primary_kwargs={"n_rollouts": 1, "soft": False}, judge_kwargs={"epochs": 1})
    r = run_label_source(src, pool, policy)
    assert all(l is not None for l in r.labels)
    for lab, passes in zip(r.labels, src.verifier_.token_passes_):
        assert lab.policy_tokens > 0 and lab.rollouts > 0  # MC's rollouts
        assert passes > 0 and lab.token_passes == passes  # MC has no model of its own; the verifier's compute
    assert r.token_passes == r.policy_passes + src.verifier_.token_passes and r.policy_passes > 0
    assert sorted(set(src.verifier_.fold_)) == [0, 1]


def test_the_verifier_judge_fails_before_any_rollout_is_paid_for(domain, tiny_lm, char_tokenizer):
    class _Counting(SimulatedPolicy):
        calls = 0

        def continue_from(self, prefixes, n):
            _Counting.calls += 1
            return super().continue_from(prefixes, n)

    with pytest.raises(TypeError, match="HFPolicy"):  # no model to start the verifier from
        run_label_source("consensus", _pool(domain), _Counting(domain))
    assert _Counting.calls == 0
    policy = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=8))
    with pytest.raises(ValueError, match="distinct problems"):  # one problem cannot be cross-fitted
        run_label_source("consensus", _pool(domain), policy)
    assert policy.token_passes == 0


class _Judge:
    """A judge behind the policy protocol: its 'answer' is the first-error index it believes in."""

    def __init__(self, verdicts):
        self.verdicts = list(verdicts)

    def continue_from(self, prefixes, n):
        return [[Trajectory(problem=p.problem, steps=list(p.steps), final_answer=v, tokens_generated=7)]
                for p, v in zip(prefixes, self.verdicts)]

    def sample(self, problems, n):
        raise NotImplementedError


def test_consensus_with_a_judge_model_and_its_cost(domain):
    pool = _pool(domain)
    src = ConsensusLabels(primary="oracle", primary_kwargs={}, judge="policy",
                          judge_model=_Judge(["-1", "2", "nonsense"]))
    r = run_label_source(src, pool, None)
    assert [l.weights is None for l in r.labels] == [True, False, False]  # 2 != 1, unreadable never agrees
    assert r.policy_tokens == 3 * 7 and r.rollouts == 3
    assert src.judge_first_errors_ == [-1, 2, None]


def test_consensus_of_mc_and_omega_charges_both(domain):
    from selfprm.policies import SimulatedPolicyConfig

    pool = _pool(domain)
    perfect = lambda: SimulatedPolicy(domain, SimulatedPolicyConfig(  # noqa: E731
        error_rate={"easy": 0, "medium": 0, "hard": 0}, recovery_rate=0, extra_step_rate=0, answer_error_rate=0))
    mc = run_label_source("mc", pool, perfect(), n_rollouts=2, soft=False, progress=False)
    om = run_label_source("omega", pool, perfect(), n_rollouts=2, progress=False)
    r = run_label_source("consensus", pool, perfect(), primary_kwargs={"n_rollouts": 2, "soft": False},
                         judge="omega", judge_kwargs={"n_rollouts": 2})
    assert r.policy_tokens == mc.policy_tokens + om.policy_tokens
    assert all(l.weights is None for l in r.labels)  # a perfect solver: both find the oracle's first errors


def test_consensus_judge_settings_are_checked():
    with pytest.raises(ValueError, match="judge_model"):
        ConsensusLabels(judge="policy")
    with pytest.raises(ValueError, match="judge='policy'"):
        ConsensusLabels(judge_model=_Judge([]))
    with pytest.raises(TypeError, match="judge_model"):
        ConsensusLabels(judge=_Judge([]))  # a model goes in judge_model, not judge
    with pytest.raises(KeyError, match="no-such-source"):
        ConsensusLabels(judge="no-such-source")


def test_consensus_passes_its_progress_to_both_sources(domain, monkeypatch):
    import selfprm.labels.consensus as consensus
    from selfprm.labels import get_label_source

    seen = []

    class _Recording:
        def __init__(self, inner):
            self.inner, self.name, self.prm_loss = inner, inner.name, inner.prm_loss

        def label(self, trajectories, policy=None, *, progress=False):
            seen.append((self.name, progress))
            return self.inner.label(trajectories, policy, progress=progress)

    monkeypatch.setattr(consensus, "get_label_source", lambda name, **kw: _Recording(get_label_source(name, **kw)))
    pool = _pool(domain)
    kw = dict(primary="oracle", primary_kwargs={}, judge="outcome")
    run_label_source("consensus", pool, None, **kw)
    run_label_source("consensus", pool, None, progress=True, **kw)
    assert seen == [("oracle", False), ("outcome", False), ("oracle", True), ("outcome", True)]
