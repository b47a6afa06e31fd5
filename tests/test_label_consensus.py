import pytest

from selfprm.labels import run_label_source
from selfprm.labels.consensus import ConsensusLabels
from selfprm.types import Trajectory


def _pool(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])  # 7 -> 2 -> 6 -> 2
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6", "6-4=2"], "2")  # no error
    late = domain.make_trajectory(p, ["7+5=2", "2*3=7", "7-4=3"], "3")  # first error at step 1
    early = domain.make_trajectory(p, ["7+5=3", "3*3=9", "9-4=5"], "5")  # first error at step 0
    return [good, late, early]


def test_consensus_keeps_only_where_both_sources_agree_on_the_first_error(domain):
    pool = _pool(domain)
    # oracle first errors: -1, 1, 0; outcome broadcast: -1 (right answer), 0, 0 (wrong answers)
    r = run_label_source("consensus", pool, None, primary="oracle", second="outcome")
    kept = [l.weights is None for l in r.labels]
    assert kept == [True, False, True]
    assert r.labels[1].weights == [0.0, 0.0, 0.0]  # the disagreement stays, weightless, so its cost still counts
    assert [l.values for l in r.labels] == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]  # the primary's labels
    assert r.prm_loss == "bce"


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
    src = ConsensusLabels(primary="oracle", judge=_Judge(["-1", "2", "nonsense"]))
    r = run_label_source(src, pool, None)
    assert [l.weights is None for l in r.labels] == [True, False, False]  # 2 != 1, unreadable never agrees
    assert r.policy_tokens == 3 * 7 and r.rollouts == 3


def test_consensus_of_mc_and_omega_charges_both(domain):
    from selfprm.policies import SimulatedPolicy, SimulatedPolicyConfig

    pool = _pool(domain)
    perfect = lambda: SimulatedPolicy(domain, SimulatedPolicyConfig(  # noqa: E731
        error_rate={"easy": 0, "medium": 0, "hard": 0}, recovery_rate=0, extra_step_rate=0, answer_error_rate=0))
    mc = run_label_source("mc", pool, perfect(), n_rollouts=2, soft=False, progress=False)
    om = run_label_source("omega", pool, perfect(), n_rollouts=2, progress=False)
    r = run_label_source("consensus", pool, perfect(), primary_kwargs={"n_rollouts": 2, "soft": False},
                         second_kwargs={"n_rollouts": 2})
    assert r.policy_tokens == mc.policy_tokens + om.policy_tokens
    assert all(l.weights is None for l in r.labels)  # a perfect solver: both find the oracle's first errors


def test_consensus_needs_a_second_opinion(domain):
    with pytest.raises(ValueError, match="second"):
        run_label_source("consensus", _pool(domain), None, primary="oracle", second=None)


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
    run_label_source("consensus", pool, None, primary="oracle", second="outcome")
    run_label_source("consensus", pool, None, primary="oracle", second="outcome", progress=True)
    assert seen == [("oracle", False), ("outcome", False), ("oracle", True), ("outcome", True)]
