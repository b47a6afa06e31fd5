"""Each method's advantage computation on a case worked out by hand."""
import math

import numpy as np
import pytest
import torch

from selfprm.rl.grpo import broadcast, group_normalise, grpo_loss, token_logprobs
from selfprm.rl.prm_reward import normalise_step_rewards, step_token_advantages
from selfprm.rl.r3 import r3_kept_steps, r3_stage, r3_start_states
from selfprm.rl.rollout import ANSWER_SEGMENT, OTHER_SEGMENT, Rollout, token_segments
from selfprm.rl.srl import keep_spread_groups, srl_reward, well_formed
from selfprm.rl.tree_grpo import node_credit, tree_advantages


def test_group_normalise_by_hand():
    # group a: rewards 1, 0 -> mean .5, std .5 -> +1, -1; group b: no spread -> 0
    assert group_normalise([1, 0, 1, 1], ["a", "a", "b", "b"]) == pytest.approx([1, -1, 0, 0], abs=1e-5)
    # unbiased std (torch.std, the reference's): group a's std is sqrt(.5/1) -> +-.5/sqrt(.5) = +-sqrt(.5)
    got = group_normalise([1, 0, 1, 1], ["a", "a", "b", "b"], ddof=1)
    assert got == pytest.approx([math.sqrt(0.5), -math.sqrt(0.5), 0, 0], abs=1e-5)
    # a lone rollout: no std; verl gives it mean 0, std 1 (advantage = reward), population std gives 0
    assert group_normalise([1, 0, 1], ["a", "a", "b"], ddof=1)[2] == pytest.approx(1.0, abs=1e-5)
    assert group_normalise([1, 0, 1], ["a", "a", "b"])[2] == 0.0
    assert torch.tensor([1.0, 0.0]).std().item() == pytest.approx(math.sqrt(0.5))  # torch.std is ddof=1


def test_grpo_loss_clip_and_kl_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0]])
    mask = torch.tensor([[True, True]])
    # old == current, ref == current: ratio 1, KL 0 -> loss = -mean(A) = 0
    loss, st = grpo_loss(logp, logp, logp, adv, mask)
    assert loss.item() == pytest.approx(0.0) and st["kl"] == pytest.approx(0.0)
    # ratio 1.5 on a positive advantage is clipped to 1.2; on a negative one min() keeps 1.5
    old = logp - math.log(1.5)
    loss, st = grpo_loss(logp, old, logp, adv, mask, clip_eps=0.2, beta=0.0)
    assert loss.item() == pytest.approx(-(1.2 * 1 + 1.5 * -1) / 2, abs=1e-5)
    assert st["clip_frac"] == pytest.approx(1.0)
    # k3 KL: ref prob 0.25 vs 0.5 -> r = 0.5, KL = r - log r - 1
    ref = torch.log(torch.tensor([[0.25, 0.25]]))
    _, st = grpo_loss(logp, logp, ref, adv, mask, beta=1.0)
    assert st["kl"] == pytest.approx(0.5 - math.log(0.5) - 1, abs=1e-5)


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_token_segments_map_tokens_to_steps(char_tokenizer):
    ids = _ids(char_tokenizer, "7+5=2\n2*3=6\nA:6")
    seg = token_segments(char_tokenizer, ids)
    assert seg == [0] * 6 + [1] * 6 + [ANSWER_SEGMENT] * 4  # "7+5=2\n", "2*3=6\n", "A:6" + <eos>
    seg = token_segments(char_tokenizer, char_tokenizer("1+1=2\n\n", add_special_tokens=False)["input_ids"])
    assert seg == [0] * 6 + [OTHER_SEGMENT]


def test_prm_step_advantages_by_hand():
    # one group, two rollouts: step scores [0.9, 0.5] and [0.1]; mean .5, std sqrt(.32/3)
    sa = normalise_step_rewards([[0.9, 0.5], [0.1]], [0, 0])
    sd = math.sqrt(((0.4 ** 2) + 0 + (0.4 ** 2)) / 3)
    assert sa[0] == pytest.approx([0.4 / sd, 0.0], abs=1e-4) and sa[1] == pytest.approx([-0.4 / sd], abs=1e-4)
    # tokens of step 0, step 1, the answer: outcome 1.0 + alpha * step reward
    got = step_token_advantages([0, 0, 1, ANSWER_SEGMENT], 1.0, [2.0, -1.0], alpha=0.5)
    assert got == [2.0, 2.0, 0.5, 1.0]
    got = step_token_advantages([0, 1, ANSWER_SEGMENT], 0.0, [2.0, -1.0], alpha=1.0, cumulative=True)
    assert got == [1.0, -1.0, 0.0]


def test_tree_grpo_intra_and_inter_normalisation_of_two_trees():
    # tree A leaves: 1, 0; tree B leaves: 1, 1 (one problem)
    adv = tree_advantages([1, 0, 1, 1], ["A", "A", "B", "B"], [0, 0, 0, 0])
    # inter: mean .75, std sqrt(.1875) -> (.25/.433, -.75/.433, ...); intra A: +1, -1; intra B: 0, 0
    s = math.sqrt(0.1875)
    expect = [1 + 0.25 / s, -1 - 0.75 / s, 0.25 / s, 0.25 / s]
    assert adv == pytest.approx(expect, abs=1e-4)
    assert adv == pytest.approx([1.57735, -2.73205, 0.57735, 0.57735], abs=1e-4)
    # the reference's unbiased std: inter std sqrt(.75/3) = .5, intra A std sqrt(.5)
    ref = tree_advantages([1, 0, 1, 1], ["A", "A", "B", "B"], [0, 0, 0, 0], ddof=1)
    assert ref == pytest.approx([math.sqrt(0.5) + 0.5, -math.sqrt(0.5) - 1.5, 0.5, 0.5], abs=1e-4)
    # the "mean" trunk credit: the trunk shared by A's two leaves gets their mean; each leaf's own tail its own advantage
    credit = node_credit([["trunkA", "a1"], ["trunkA", "a2"], ["b1"], ["b2"]], adv)
    assert credit["trunkA"] == pytest.approx((expect[0] + expect[1]) / 2, abs=1e-4)
    assert credit["a1"] == pytest.approx(expect[0], abs=1e-4) and credit["b2"] == pytest.approx(expect[3], abs=1e-4)


class _Draws:
    """A stand-in rng: hands out the given stage draws in order and records each range asked for."""

    def __init__(self, draws):
        self.draws, self.asked = list(draws), []

    def integers(self, lo, hi):
        self.asked.append((lo, hi))
        return self.draws.pop(0)


def test_r3_start_state_schedule():
    # a 4-step demonstration over 4 stages: keep 3, 2, 1, then 0 steps (the bare problem)
    assert [r3_kept_steps(4, s, 4) for s in range(4)] == [3, 2, 1, 0]
    assert [r3_kept_steps(6, s, 3) for s in range(3)] == [4, 2, 0]
    # 20 training steps over 4 stages: 5 steps each
    assert [r3_stage(t, 20, 4) for t in (0, 4, 5, 9, 10, 19)] == [0, 0, 1, 1, 2, 3]


def test_r3_mixed_schedule_draws_every_stage_from_step_zero():
    # the reference's mix (default): at step 0 of 20, each prompt's stage is drawn from all of
    # 0..3; draws 3, 0, 2 on demonstrations of 4, 4, 8 steps keep 0 (bare problem), 3 and 8·1/4 = 2 steps
    rng = _Draws([3, 0, 2])
    assert r3_start_states([4, 4, 8], step=0, total_steps=20, n_stages=4, rng=rng) == [0, 3, 2]
    assert rng.asked == [(0, 4)] * 3
    # the same at the last step: the schedule does not move
    rng = _Draws([3])
    assert r3_start_states([4], step=19, total_steps=20, n_stages=4, rng=rng, schedule="mixed") == [0]
    assert rng.asked == [(0, 4)]
    # with a real generator, step 0 already reaches every stage, the bare problem (0 kept) included
    g = np.random.default_rng(0)
    assert {k for _ in range(100) for k in r3_start_states([4], 0, 20, 4, g)} == {3, 2, 1, 0}


def test_r3_progressive_schedule_by_hand():
    # the named deviation: at step 0 only stage 0 is open, so the start keeps 3 of 4 steps
    rng = _Draws([0, 0])
    assert r3_start_states([4, 8], step=0, total_steps=20, n_stages=4, rng=rng, schedule="progressive") == [3, 6]
    assert rng.asked == [(0, 1)] * 2
    # step 10 of 20 is stage 2: draws come from 0..2; without mixing all use stage 2
    rng = _Draws([1, 2])
    assert r3_start_states([4, 8], 10, 20, 4, rng, schedule="progressive") == [2, 2]
    assert rng.asked == [(0, 3)] * 2
    assert r3_start_states([4, 8], step=10, total_steps=20, n_stages=4, mix=False, schedule="progressive") == [1, 2]
    # the bare problem only from stage 3, the last quarter of training
    g = np.random.default_rng(0)
    assert 0 not in {k for t in range(15) for k in r3_start_states([4] * 20, t, 20, 4, g, schedule="progressive")}
    assert {k for _ in range(100) for k in r3_start_states([4], 10, 20, 4, g, schedule="progressive")} == {3, 2, 1}


def test_srl_reward_for_known_strings(domain):
    # SequenceMatcher: "7+5=2" vs "7+5=12": 5 matched chars, 11 in all -> 10/11
    assert srl_reward("7+5=2", "7+5=12") == pytest.approx(10 / 11)
    assert srl_reward("7+5=12", "7+5=12") == 1.0
    assert srl_reward("garbage", "7+5=12", parses=well_formed(domain, "garbage")) == -1.0
    assert well_formed(domain, "A:3") and well_formed(domain, "redo:1+2=3") and not well_formed(domain, "1+=")
    assert keep_spread_groups([0.5, 0.5, 1.0, -1.0], [0, 0, 1, 1], 1e-4) == [False, False, True, True]


def test_broadcast_and_logprob_alignment(tiny_lm, char_tokenizer, domain):
    tok = char_tokenizer
    p = domain.sample_problems(1, seed=0)[0]
    prompt = [tok.bos_token_id] + tok(domain.render(p), add_special_tokens=False)["input_ids"]
    comp = _ids(tok, "1+1=2\nA:2")
    r1 = Rollout(prompt, comp, domain.make_trajectory(p, [], None, True), 0)
    r2 = Rollout(prompt[:3], comp[:2], domain.make_trajectory(p, [], None, True), 0)
    adv = broadcast([r1, r2], [1.5, -2.0])
    assert adv.shape == (2, len(comp)) and adv[1, :2].tolist() == [-2.0, -2.0] and adv[1, 2:].abs().sum() == 0
    logp, mask = token_logprobs(tiny_lm, [r1, r2], temperature=1.0)
    with torch.no_grad():
        full = torch.tensor([prompt + comp])
        manual = torch.log_softmax(tiny_lm(input_ids=full).logits[0], -1)
        want = [manual[len(prompt) + j - 1, comp[j]].item() for j in range(len(comp))]
    assert logp[0].tolist() == pytest.approx(want, abs=1e-4)
    assert mask[0].all() and mask[1, :2].all() and not mask[1, 2:].any()
