"""The RL methods as their papers' public code runs them, each on a case small enough to check by hand.

Tree-GRPO (AMAP-ML/Tree-GRPO): every leaf is a full root-to-leaf response with its own advantage,
so a trunk shared by k leaves is trained k times. R3 (WooooDyy/LLM-Reverse-Curriculum-RL): one
mix of start states from every stage, the bare problem included, from the first step. Every
method reports the policy tokens it generated, SRL's one-step rollouts included.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, OutcomeAdvantage, generated_tokens, grpo_loss
from selfprm.rl.r3 import R3Config, R3Method
from selfprm.rl.rollout import Rollout
from selfprm.rl.srl import SRLConfig, SRLMethod
from selfprm.rl.tree_grpo import TreeGRPOConfig, TreeGRPOMethod, leaf_token_credit

TRUNK = "1+1=2"


def _rollout(tok, domain, problem, steps, answer, outcome, given_steps, tree, origins):
    """A leaf of a hand-built tree: its first ``given_steps`` steps were handed to it."""
    text = "".join(s + "\n" for s in steps) + f"A:{answer}"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    given = len(tok("".join(s + "\n" for s in steps[:given_steps]), add_special_tokens=False)["input_ids"])
    traj = domain.make_trajectory(problem, steps, answer)
    traj.outcome = outcome
    prompt = [tok.bos_token_id] + tok(domain.render(problem), add_special_tokens=False)["input_ids"]
    r = Rollout(prompt, ids, traj, 0, n_given=given, n_given_steps=given_steps)
    r.meta.update(problem=0, tree=tree, origins=origins)
    return r


def _forest(tok, domain):
    """One problem, two trees. Tree 0: leaf a1 writes TRUNK then "2+3=5"; leaf a2 is branched after
    TRUNK (given) and writes "2+2=4". Tree 1: two one-step chains. Rewards: a1 1, a2 1, b1 0, b2 1."""
    p = domain.sample_problems(1, seed=0)[0]
    return [
        _rollout(tok, domain, p, [TRUNK, "2+3=5"], "5", True, 0, 0, ["a1", "a1"]),
        _rollout(tok, domain, p, [TRUNK, "2+2=4"], "4", True, 1, 0, ["a1", "a2"]),
        _rollout(tok, domain, p, ["3+3=6"], "6", False, 0, 1, ["b1"]),
        _rollout(tok, domain, p, ["3+4=7"], "7", True, 0, 1, ["b2"]),
    ]


# by hand, the reference's unbiased std: inter-tree rewards 1, 1, 0, 1 -> mean .75, std sqrt(.75/3) = .5,
# so .5, .5, -1.5, .5; intra tree 0 has no spread (0, 0), tree 1 rewards 0, 1 -> -+.5/sqrt(.5) = -+sqrt(.5)
LEAF_ADV = [0.5, 0.5, -1.5 - math.sqrt(0.5), 0.5 + math.sqrt(0.5)]


@pytest.mark.parametrize("trunk_credit", ["per_leaf", "mean"])
def test_tree_grpo_trunk_weight_is_the_sum_of_its_leaves_advantages(char_tokenizer, domain, trunk_credit):
    tok = char_tokenizer
    cfg = TreeGRPOConfig(m_trees=2, l_rounds=1, n_branches=1, group_size=4, trunk_credit=trunk_credit)
    trainer = SimpleNamespace(tokenizer=tok, domain=domain)
    rolls, adv = TreeGRPOMethod(cfg).advantages(trainer, _forest(tok, domain))
    n_trunk = len(TRUNK) + 1  # "1+1=2\n": leaf a1 wrote it, leaf a2 was given it
    assert rolls[1].n_given == n_trunk
    mask = torch.tensor([[*r.train_mask, *[False] * (adv.shape[1] - len(r.train_mask))] for r in rolls])
    # each leaf's own tail: its own advantage, trained once
    assert adv[0, n_trunk].item() == pytest.approx(LEAF_ADV[0], abs=1e-4) and mask[0, n_trunk]
    assert adv[2, 0].item() == pytest.approx(LEAF_ADV[2], abs=1e-4) and mask[2, 0]

    # the trunk's weight in the loss: d loss / d log π(trunk token) = -(Σ over the rows that train it of Â) / N
    logp = torch.zeros(adv.shape, requires_grad=True)
    loss, _ = grpo_loss(logp, logp.detach(), logp.detach(), adv, mask, beta=0.0)
    loss.backward()
    n = mask.sum().item()
    weight = [-(logp.grad[0, t] + logp.grad[1, t]).item() * n for t in range(n_trunk)]
    if trunk_credit == "per_leaf":  # the reference: each leaf a full response, the trunk trained in both
        assert weight == pytest.approx([LEAF_ADV[0] + LEAF_ADV[1]] * n_trunk, abs=1e-4)  # 1.0: the sum
        assert mask[1, :n_trunk].all() and n == sum(len(r.completion_ids) for r in rolls)
    else:  # the named deviation: the trunk trained once with the mean
        assert weight == pytest.approx([(LEAF_ADV[0] + LEAF_ADV[1]) / 2] * n_trunk, abs=1e-4)  # 0.5: the mean
        assert not mask[1, :n_trunk].any() and n == sum(len(r.completion_ids) for r in rolls) - n_trunk


def test_tree_grpo_defaults_are_the_reference():
    c = TreeGRPOConfig()
    assert c.trunk_credit == "per_leaf" and c.std_ddof == 1
    with pytest.raises(ValueError):
        TreeGRPOConfig(trunk_credit="sum")
    # the pure function: per_leaf puts Â(l) on every token and trains all of them
    rows, masks = leaf_token_credit([[0, 0, -1], [0, 1]], [["t"], ["t", "u"]], [2.0, -1.0], "per_leaf")
    assert rows == [[2.0, 2.0, 2.0], [-1.0, -1.0]] and masks == [[True] * 3, [True] * 2]
    rows, masks = leaf_token_credit([[0, 0, -1], [0, 1]], [["t"], ["t", "u"]], [2.0, -1.0], "mean")
    assert rows == [[0.5, 0.5, 2.0], [0.5, -1.0]] and masks == [[True] * 3, [False, True]]


class _RecordingTrainer:
    """Enough of a GRPOTrainer for R3Method.rollouts: records the prefixes it is asked to sample."""

    def __init__(self, domain, steps=20, seed=0):
        self.domain = domain
        self.config = SimpleNamespace(steps=steps)
        self.rng = np.random.default_rng(seed)
        self.asked = []

    def budget_progress(self, step):
        return step, self.config.steps

    def sample(self, prefixes, n, step, **_):
        self.asked.append([len(p.steps) for p in prefixes])
        return []


def test_r3_mixed_schedule_gives_the_bare_problem_at_step_zero(domain):
    problems = domain.sample_problems(40, seed=1)
    mixed = _RecordingTrainer(domain)
    method = R3Method(R3Config(steps=20, group_size=2), demo_seed=0)
    assert method.config.schedule == "mixed"
    method.rollouts(mixed, problems, step=0)
    demos = [len(method.demonstration(domain, p)) for p in problems]
    kept = mixed.asked[0]
    assert 0 in kept  # stage S-1, the bare problem, at step 0
    assert all(k in {(n * (3 - s)) // 4 for s in range(4)} for k, n in zip(kept, demos))
    # the progressive option at step 0: only stage 0, the bare problem nowhere
    prog = _RecordingTrainer(domain)
    R3Method(R3Config(steps=20, group_size=2, schedule="progressive"), demo_seed=0).rollouts(prog, problems, step=0)
    assert prog.asked[0] == [(3 * n) // 4 for n in demos] and 0 not in prog.asked[0]
    with pytest.raises(ValueError):
        R3Config(schedule="reverse")


@pytest.mark.parametrize("name", ["outcome", "tree_grpo", "r3", "srl"])
def test_policy_tokens_are_what_the_rollouts_generated(name, tiny_lm, char_tokenizer, domain, one_torch_thread):
    base = dict(group_size=4, max_new_tokens=12, seed=0)
    method = {"outcome": lambda: OutcomeAdvantage(),
              "tree_grpo": lambda: TreeGRPOMethod(TreeGRPOConfig(m_trees=1, l_rounds=1, n_branches=3, **base)),
              "r3": lambda: R3Method(R3Config(**base)),
              "srl": lambda: SRLMethod(SRLConfig(**base))}[name]()
    cfg = getattr(method, "config", GRPOConfig(**base))
    trainer = GRPOTrainer(tiny_lm, char_tokenizer, domain, cfg, method, ref_model=tiny_lm)
    rolls = method.rollouts(trainer, domain.sample_problems(3, seed=2), 0)
    # measured, not estimated: the sampled ids after the given prefix, summed over every rollout
    assert trainer.policy_tokens == sum(len(r.completion_ids) - r.n_given for r in rolls) > 0
    assert [generated_tokens(r) for r in rolls] == [r.trajectory.tokens_generated for r in rolls]
    if name == "srl":  # one-step rollouts: each at most one step and its separator
        sep = char_tokenizer(domain.step_separator, add_special_tokens=False)["input_ids"][0]
        assert all(sep not in r.completion_ids[r.n_given:-1] for r in rolls)


def test_train_reports_tokens_and_stops_at_a_token_budget(tiny_lm, char_tokenizer, domain, one_torch_thread):
    cfg = SRLConfig(steps=4, prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=2, ppo_epochs=1, seed=0)
    train, evals = domain.sample_problems(6, seed=3), domain.sample_problems(2, seed=4)
    # budgeted in samples: 4 rounds, points at rounds 0, 2, 4; the token curve at the same points
    res = GRPOTrainer(tiny_lm, char_tokenizer, domain, cfg, SRLMethod(cfg)).train(train, evals, progress=False)
    assert [x for x, _ in res.accuracy] == [0, 8, 16] and res.samples == 16
    assert [a for _, a in res.tokens] == [a for _, a in res.accuracy]
    assert res.tokens[0][0] == 0 and res.tokens[-1][0] == res.policy_tokens > 0
    # budgeted in tokens: trains until the budget is spent, measuring at 2 evenly spaced marks
    budget = res.policy_tokens // 2
    res = GRPOTrainer(tiny_lm, char_tokenizer, domain, cfg, SRLMethod(cfg)).train(train, evals, progress=False,
                                                                                 token_budget=budget)
    assert res.policy_tokens >= budget and len(res.tokens) == 3 == len(res.accuracy)
    xs = [x for x, _ in res.tokens]
    assert xs[0] == 0 and xs[1] >= -(-budget // 2) and xs[2] == res.policy_tokens
    # the last round was needed: before it fewer than `budget` tokens had been spent
    assert res.policy_tokens - 4 * cfg.max_new_tokens < budget


@pytest.mark.slow
def test_rl_study_budgets_every_method_in_policy_tokens(tmp_path, one_torch_thread):
    from selfprm.policies.tiny import SFTConfig, TinyLMConfig
    from selfprm.prm.train import PRMTrainConfig
    from selfprm.studies.rl import RLConfig, run

    cfg = RLConfig(
        seeds=2, methods=("outcome", "srl"), regimes=("short",), lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128),
        sft=SFTConfig(steps=20), n_sft_problems=100, n_train_problems=12, n_eval_problems=4,
        grpo=GRPOConfig(steps=2, prompts_per_step=2, group_size=2, eval_every=1, max_new_tokens=16, ppo_epochs=1),
        token_budget=150, prm_pool_problems=4, prm_pool_samples=1,
        prm_train=PRMTrainConfig(epochs=1, batch_size=32, head_lr=5e-2), search=False,
    )
    m = run(cfg, tmp_path, progress=False)["regimes"]["short"]["methods"]
    for name, rec in m.items():
        assert rec["budget"] == "tokens" and rec["policy_tokens"] >= 150, name
        # 2 marks (steps // eval_every) after the start, every seed: 3 points
        assert len(rec["tokens"]) == len(rec["accuracy"]) == 3 and rec["tokens"][0][0] == 0
        assert rec["tokens"][-1][0] >= 150
    # one-step rollouts are short: at equal tokens SRL samples more rollouts than GRPO
    assert m["srl"]["samples"] > m["outcome"]["samples"]
