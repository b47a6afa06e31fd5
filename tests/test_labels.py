import pytest
import torch

from selfprm.labels import available_label_sources, get_label_source, run_label_source
from selfprm.policies import SimulatedPolicy, SimulatedPolicyConfig
from selfprm.prm.losses import spr_loss


def _setup(domain):
    p = domain.make_problem("p", 7, [("+", 5), ("*", 3), ("-", 4)])  # 7 -> 2 -> 6 -> 2
    good = domain.make_trajectory(p, ["7+5=2", "2*3=6", "6-4=2"], "2")
    bad = domain.make_trajectory(p, ["7+5=2", "2*3=7", "7-4=3"], "3")
    recovered = domain.make_trajectory(p, ["7+5=2", "2*3=8", "redo:2*3=6", "6-4=2"], "2")
    cut = domain.make_trajectory(p, ["7+5=2"], None, truncated=True)
    return good, bad, recovered, cut


def test_registry_lists_the_spine_sources():
    assert {"oracle", "outcome", "spr", "mc"} <= set(available_label_sources())
    with pytest.raises(KeyError, match="available"):
        get_label_source("nope")


def test_oracle_and_outcome(domain):
    good, bad, recovered, _ = _setup(domain)
    r = run_label_source("oracle", [good, bad, recovered])
    assert [l.values for l in r.labels] == [[1, 1, 1], [1, 0, 0], [1, 0, 1, 1]]
    r = run_label_source("outcome", [good, bad, recovered])
    # outcome broadcast: wrong about bad's sound first step and recovered's wrong second step
    assert [l.values for l in r.labels] == [[1, 1, 1], [0, 0, 0], [1, 1, 1, 1]]
    assert r.policy_tokens == 0 and r.tokens_per_step_label == 0


def test_spr_labels_are_outcome_and_drop_truncated(domain):
    good, bad, _, cut = _setup(domain)
    r = run_label_source("spr", [good, bad, cut])
    assert r.labels[0].values == [1, 1, 1] and r.labels[1].values == [0, 0, 0] and r.labels[2] is None
    assert r.prm_loss == "spr"


def test_spr_step_that_disagrees_contributes_nothing():
    # three steps of a correct solution (pseudo-label 1): the head predicts the first two positive,
    # the third negative. The third disagrees with its pseudo-label and must not be in the loss.
    logits = torch.tensor([[2.0, 0.5, -1.0]], requires_grad=True)
    y = torch.ones(1, 3)
    m = torch.ones(1, 3, dtype=torch.bool)
    out = spr_loss(logits, y, m)
    out.loss.backward()
    assert logits.grad[0, 2] == 0 and logits.grad[0, 0] != 0 and logits.grad[0, 1] != 0
    assert (out.kept_pos, out.total_pos, out.kept_neg) == (2, 3, 0)
    # by hand: only positives kept, so the class weights cancel: mean BCE of steps 0 and 1
    expected = (torch.nn.functional.softplus(torch.tensor(-2.0)) + torch.nn.functional.softplus(torch.tensor(-0.5))) / 2
    assert torch.isclose(out.loss, expected, atol=1e-4)
    # moving the disagreeing logit (keeping its sign) changes nothing
    moved = spr_loss(torch.tensor([[2.0, 0.5, -5.0]]), y, m)
    assert torch.isclose(moved.loss, out.loss)
    # without the filter (warm start) the third step counts
    assert not torch.isclose(spr_loss(logits.detach(), y, m, filter_by_prediction=False).loss, out.loss)


def test_spr_class_balance_weights_by_hand():
    # kept: one positive (logit 1, y=1) and two negatives (logits -1, y=0)
    logits = torch.tensor([[1.0, -1.0, -1.0]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    out = spr_loss(logits, y, torch.ones(1, 3, dtype=torch.bool), pos_factor=1.5)
    kp, kn = 2.0, 3.0  # counts + 1
    wp, wn = 1.5 * kn / (kp + kn), kp / (kp + kn)
    bce = torch.nn.functional.softplus(torch.tensor(-1.0))  # same for all three
    expected = (wp * bce + 2 * wn * bce) / (wp + 2 * wn)
    assert torch.isclose(out.loss, expected, atol=1e-4)


class _ScriptedPolicy:
    """Continuations whose outcomes are scripted per prefix length, each costing 10 tokens."""

    def __init__(self, domain, outcomes_by_len):
        self.domain = domain
        self.outcomes = outcomes_by_len
        self.calls = 0

    def continue_from(self, prefixes, n):
        self.calls += 1
        out = []
        for pre in prefixes:
            res = self.outcomes[len(pre.steps)]
            assert len(res) == n
            group = []
            for ok in res:
                t = self.domain.make_trajectory(pre.problem, pre.steps, pre.problem.answer if ok else "9", tokens_generated=10)
                group.append(t)
            out.append(group)
        return out

    def sample(self, problems, n):
        raise NotImplementedError


def test_mc_hard_and_soft_estimates_by_hand(domain):
    good, _, _, _ = _setup(domain)
    pol = _ScriptedPolicy(domain, {1: [True, True, True, True], 2: [True, False, False, True], 3: [False] * 4})
    soft = run_label_source("mc", [good], pol, n_rollouts=4, progress=False)
    assert soft.labels[0].values == [1.0, 0.5, 0.0] and soft.labels[0].soft
    assert soft.policy_tokens == 3 * 4 * 10 and soft.rollouts == 12
    hard = run_label_source("mc", [good], pol, n_rollouts=4, soft=False, progress=False)
    assert hard.labels[0].values == [1.0, 1.0, 0.0] and not hard.labels[0].soft
    assert soft.prm_loss == "soft_bce" and hard.prm_loss == "bce"


def test_mc_shares_identical_prefixes_and_charges_them_once(domain):
    good, bad, _, _ = _setup(domain)  # both open with "7+5=2"
    pol = _ScriptedPolicy(domain, {1: [True] * 2, 2: [False] * 2, 3: [False] * 2})
    r = run_label_source("mc", [good, bad], pol, n_rollouts=2, progress=False)
    assert r.labels[0].values[0] == r.labels[1].values[0] == 1.0
    assert r.labels[0].policy_tokens == 3 * 2 * 10 and r.labels[1].policy_tokens == 2 * 2 * 10


def test_mc_with_a_perfect_solver_finds_the_first_error(domain):
    _, bad, recovered, _ = _setup(domain)
    perfect = SimulatedPolicy(domain, SimulatedPolicyConfig(
        error_rate={"easy": 0, "medium": 0, "hard": 0}, recovery_rate=0, extra_step_rate=0, answer_error_rate=0))
    r = run_label_source("mc", [bad, recovered], perfect, n_rollouts=3, progress=False)
    assert r.labels[0].values == [1.0, 0.0, 0.0]
    # after the redo the prefix is sound again, so rollouts from it succeed
    assert r.labels[1].values == [1.0, 0.0, 1.0, 1.0]
    assert r.policy_tokens > 0


def test_mc_needs_a_policy(domain):
    good, *_ = _setup(domain)
    with pytest.raises(ValueError, match="policy"):
        run_label_source("mc", [good], None)


def test_human_labels_mark_only_the_first_error_by_hand(domain):
    good, bad, recovered, _ = _setup(domain)
    r = run_label_source("human", [good, bad, recovered])
    # oracle: good [T, T, T], bad [T, F, F], recovered [T, F, T, T] (the redo fixes step 1)
    assert [l.values for l in r.labels] == [[1, 1, 1], [1, 0, 0], [1, 0, 0, 0]]
    # nothing is claimed after the first error: weight 1 up to and including it, 0 after
    assert [l.weights for l in r.labels] == [None, [1, 1, 0], [1, 1, 0, 0]]
    assert r.prm_loss == "bce" and r.policy_tokens == 0 and r.rollouts == 0
    assert {l.source for l in r.labels} == {"human"}
    good.oracle_labels = None
    with pytest.raises(ValueError, match="'p'"):
        run_label_source("human", [good])


def test_run_label_source_passes_progress_and_refuses_settings_for_an_instance(domain):
    good, *_ = _setup(domain)
    seen = []

    class _Recorder:
        name, prm_loss = "rec", "bce"

        def label(self, trajectories, policy=None, *, progress=False):
            seen.append(progress)
            return [None] * len(trajectories)

    run_label_source(_Recorder(), [good])
    run_label_source(_Recorder(), [good], progress=True)
    assert seen == [False, True]
    with pytest.raises(TypeError, match="n_rollouts"):
        run_label_source(_Recorder(), [good], n_rollouts=2)


def test_sharded_labeling_resumes_from_finished_shards(domain, tmp_path):
    from selfprm.labels.sharded import run_label_source_sharded

    probs = domain.sample_problems(5, seed=0)
    pool = [t for g in SimulatedPolicy(domain).sample(probs, 1) for t in g]  # 5 trajectories: shards of 2, 2, 1

    class _Counting:
        """mc labels, recording which trajectories it was asked to label and the policy's seed."""

        name, prm_loss = "mc", "soft_bce"

        def __init__(self):
            self.asked, self.inner = [], get_label_source("mc", n_rollouts=2)

        def label(self, trajectories, policy=None, *, progress=False):
            self.asked.append([t.problem.id for t in trajectories])
            return self.inner.label(trajectories, policy, progress=progress)

    first = _Counting()
    whole = run_label_source_sharded(first, pool, SimulatedPolicy(domain), tmp_path, shard_size=2, seed=3)
    assert len(first.asked) == 3 and len(whole.labels) == 5
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["shard-00000.json", "shard-00001.json", "shard-00002.json"]
    # a job killed while writing shard 1: its completion mark never appeared
    (tmp_path / "shard-00001.json").unlink()
    again = _Counting()
    resumed = run_label_source_sharded(again, pool, SimulatedPolicy(domain), tmp_path, shard_size=2, seed=3)
    assert again.asked == [[pool[2].problem.id, pool[3].problem.id]]  # only the unfinished shard is redone
    # reseeded per shard, so the redone shard gets exactly the labels of the uninterrupted run
    assert [(l.values, l.policy_tokens) for l in resumed.labels] == [(l.values, l.policy_tokens) for l in whole.labels]
    assert resumed.prm_loss == "soft_bce" and resumed.policy_tokens == whole.policy_tokens
