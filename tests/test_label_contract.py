"""The contract every registered label source keeps, checked on each one.

In the spirit of scikit-learn's ``parametrize_with_checks``: a new source is checked as soon as it
is registered, with its default settings on the default pool; one that needs something else (a
model, special trajectories, a smaller budget) gets an entry in ``KWARGS`` / ``POOL_KIND``.
"""

import inspect

import pytest

from selfprm.labels import available_label_sources, get_label_source, run_label_source
from selfprm.labels.perturbation import PerturbationConfig, perturb_solutions
from selfprm.policies import HFPolicy, HFPolicyConfig, SimulatedPolicy, SimulatedPolicyConfig
from selfprm.policies.base import reseed
from selfprm.types import Problem, StepLabels, Trajectory

# the cheapest settings that still exercise each source
KWARGS = {
    "mc": {"n_rollouts": 2},
    "omega": {"n_rollouts": 2},
    "mcts": {"n_simulations": 2},
    "tree": {"m_trees": 2, "l_rounds": 1, "n_branches": 1},
    "consensus": {"primary_kwargs": {"n_rollouts": 2}, "judge_kwargs": {"epochs": 1}},
    "implicit": {"train_steps": 2, "batch_size": 4},
}
# what a source labels, and with which policy: "arith" (default) samples a SimulatedPolicy,
# "hf" labels the same pool with a tiny causal LM, "perturbed" needs perturb_solutions' output
POOL_KIND = {"implicit": "hf", "consensus": "hf", "mcts": "hf", "perturbation": "perturbed"}
PRM_LOSSES = {"bce", "soft_bce", "spr"}


def _arith_pool(domain):
    """3 problems x 2 samples; errors are common so wrong answers and first errors occur."""
    rates = {"easy": 0.3, "medium": 0.3, "hard": 0.3}
    policy = SimulatedPolicy(domain, SimulatedPolicyConfig(error_rate=rates, seed=1))
    return [t for g in policy.sample(domain.sample_problems(3, seed=0), 2) for t in g], policy


def _perturbed_pool():
    p = Problem("p", "Ann has 16 eggs. She eats 3 and bakes with 4. She sells the rest at $2 each. How much does she make?",
                answer="18")
    steps = ["First count the eggs she uses.", "She sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = $18.",
             "The answer is 18."]
    return perturb_solutions([Trajectory(p, steps, final_answer="18", outcome=True)], PerturbationConfig(variants=2))


def _setting(name, domain, request):
    kind = POOL_KIND.get(name, "arith")
    if kind == "perturbed":
        return _perturbed_pool(), None
    pool, policy = _arith_pool(domain)
    if kind == "hf":
        tok = request.getfixturevalue("char_tokenizer")
        policy = HFPolicy(request.getfixturevalue("tiny_lm"), tok, domain, HFPolicyConfig())
    return pool, policy


def _snapshot(pool):
    return [(list(t.steps), t.final_answer, t.outcome, t.oracle_labels and list(t.oracle_labels), dict(t.meta))
            for t in pool]


def check_label_source(source, pool, policy, **kwargs):
    """Assert the label-source contract for ``source`` (a registered name or an instance)."""
    before = _snapshot(pool)
    src = get_label_source(source, **kwargs) if isinstance(source, str) else source
    if isinstance(source, str):
        assert src.name == source, f"registered as {source!r} but named {src.name!r}"
    assert src.prm_loss in PRM_LOSSES, f"{src.name}: unknown prm_loss {src.prm_loss!r}"
    progress = inspect.signature(src.label).parameters.get("progress")
    assert progress is not None and progress.kind is inspect.Parameter.KEYWORD_ONLY and progress.default is False, \
        f"{src.name}: label() must take a keyword-only progress=False"

    if policy is not None:
        reseed(policy, 7)
    res = run_label_source(source, pool, policy, progress=False, **kwargs)
    assert len(res.labels) == len(pool), f"{src.name}: {len(res.labels)} label sets for {len(pool)} trajectories"
    assert any(l is not None for l in res.labels), f"{src.name} labelled none of {len(pool)} trajectories"
    for t, lab in zip(pool, res.labels):
        if lab is None:
            continue
        assert isinstance(lab, StepLabels), f"{src.name}: {type(lab).__name__} instead of StepLabels"
        assert len(lab.values) == len(t.steps), f"{src.name}: {len(lab.values)} labels for {len(t.steps)} steps"
        assert all(0.0 <= v <= 1.0 for v in lab.values), f"{src.name}: a label outside [0, 1]: {lab.values}"
        assert lab.weights is None or (len(lab.weights) == len(t.steps) and all(w >= 0 for w in lab.weights))
        for field in ("policy_tokens", "rollouts", "token_passes"):
            n = getattr(lab, field)
            assert isinstance(n, int) and not isinstance(n, bool) and n >= 0, f"{src.name}: {field} = {n!r}"
    assert _snapshot(pool) == before, f"{src.name} modified the trajectories it labelled"

    assert res.token_passes >= 0 and res.seconds >= 0
    # repeatable under a seed: the same policy stream gives the same labels (progress changes nothing)
    if policy is not None:
        reseed(policy, 7)
    again = src.label(pool, policy, progress=True)
    assert len(again) == len(pool), f"{src.name}: label(progress=True) returned {len(again)} label sets"
    values = lambda labs: [None if l is None else [round(v, 6) for v in l.values] for l in labs]  # noqa: E731
    assert values(again) == values(res.labels), f"{src.name}: labels differ between two runs on one seed"
    return res


@pytest.mark.parametrize("name", available_label_sources())
def test_label_source_contract(name, domain, request):
    pool, policy = _setting(name, domain, request)
    check_label_source(name, pool, policy, **KWARGS.get(name, {}))


class _LabelsNothing:
    """A broken source: keeps the signature, silently drops every trajectory."""

    name, prm_loss = "nothing", "bce"

    def label(self, trajectories, policy=None, *, progress=False):
        return [None] * len(trajectories)


class _OldSignature(_LabelsNothing):
    """Labels every step 1 but takes ``progress`` as configuration, not as a keyword of ``label``."""

    def label(self, trajectories, policy=None):
        return [StepLabels([1.0] * len(t.steps), source=self.name) for t in trajectories]


def test_the_contract_catches_a_source_that_labels_nothing(domain):
    pool, policy = _arith_pool(domain)
    with pytest.raises(AssertionError, match="labelled none"):
        check_label_source(_LabelsNothing(), pool, policy)
    with pytest.raises(AssertionError, match="progress"):
        check_label_source(_OldSignature(), pool, policy)
