"""Tool calls run during RL rollouts: the calculator's answer is given, masked and not counted."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

from selfprm.domains.tools import ToolsDomain
from selfprm.policies.base import Prefix
from selfprm.policies.tiny import build_char_tokenizer
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, group_normalise, outcome_rewards, token_logprobs
from selfprm.rl.rollout import Rollout, sample_rollouts, uses_tools
from selfprm.rl.toolpo import ToolPOConfig, ToolPOMethod, call_reward, call_token_mask


class ScriptedLM(LlamaForCausalLM):
    """A causal LM that writes fixed lines, one character at a time, whatever the context.

    Line ``k`` of the completion (counted by the separators in the text so far, whoever wrote them)
    is ``lines[k]``, then the separator; after the last line, the end token. Its logits put all mass
    on that character, so sampling is deterministic. A tool that ends a line early moves it on to
    its next line — exactly what a policy conditioned on the tool's answer would do.
    """

    def __init__(self, config, tokenizer, lines):
        super().__init__(config)
        self.tok, self.lines = tokenizer, list(lines)
        self.generation_config.use_cache = False  # forward sees the whole row each step

    def next_char(self, text: str) -> str | None:
        completion = text.split("\n", 1)[1] if "\n" in text else ""
        k = completion.count("\n")
        if k >= len(self.lines):
            return None
        line = completion.rsplit("\n", 1)[-1]
        if len(line) < len(self.lines[k]):
            return self.lines[k][len(line)]
        return None if k == len(self.lines) - 1 else "\n"

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits = torch.full((*input_ids.shape, self.config.vocab_size), -100.0)
        for b, row in enumerate(input_ids.tolist()):
            ch = self.next_char(self.tok.decode(row, skip_special_tokens=True))
            t = self.tok.eos_token_id if ch is None else self.tok.convert_tokens_to_ids(ch)
            logits[b, -1, t] = 100.0
        return CausalLMOutputWithPast(logits=logits)


def scripted(lines, tok, n_positions=256):
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=n_positions,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return ScriptedLM(cfg, tok, lines)


@pytest.fixture(scope="module")
def setup():
    d = ToolsDomain()
    tok = build_char_tokenizer(d.charset())
    p = d.make_problem("x", 3, [("*", 4), ("+", 5)])  # 3*4=12, 12+5=17
    return d, tok, p


def test_the_tool_answers_even_where_the_policy_would_be_wrong(setup):
    d, tok, p = setup
    assert uses_tools(d)
    # the policy would write 13 (wrong) after its first call and 99 after its second
    model = scripted(["call calc(3*4) -> 13", "call calc(12+5) -> 99", "A:17"], tok)
    off = sample_rollouts(model, tok, d, [Prefix(p, [])], 1, tools=False)[0]
    assert off.trajectory.steps == ["call calc(3*4) -> 13", "call calc(12+5) -> 99"] and off.given_mask is None
    assert d.check_calls(p, off.trajectory.steps) == [False, False]

    r = sample_rollouts(model, tok, d, [Prefix(p, [])], 1)[0]
    text = tok.decode(r.completion_ids, skip_special_tokens=True)
    assert text == "call calc(3*4) -> 12\ncall calc(12+5) -> 17\nA:17"
    assert r.trajectory.steps == ["call calc(3*4) -> 12", "call calc(12+5) -> 17"]
    assert r.trajectory.outcome and d.check_calls(p, r.trajectory.steps) == [True, True]
    # the given tokens are exactly the tool's answers " 12\n" and " 17\n"
    given_at = [i for i, g in enumerate(r.given_mask) if g]
    spans = [(text.index(" 12\n"), text.index(" 12\n") + 4), (text.index(" 17\n"), text.index(" 17\n") + 4)]
    assert given_at == [i for a, b in spans for i in range(a, b)]
    assert [(c["start"], c["end"]) for c in r.meta["tool_calls"]] == spans
    assert [c["expression"] for c in r.meta["tool_calls"]] == ["3*4", "12+5"]
    assert r.train_mask == [not g for g in r.given_mask]
    # generated tokens: everything else, the end token included
    n_completion = len(text) + 1
    assert r.n_generated == n_completion - 8 == r.trajectory.tokens_generated
    assert r.n_given == 0 and r.is_given == r.given_mask


def test_tool_results_after_a_given_prefix_and_one_step_rollouts(setup):
    d, tok, p = setup
    # line 0 is the given first step; the policy goes on from line 1
    model = scripted(["3*4=12", "call calc(12+5) -> 99", "A:17"], tok)
    r = sample_rollouts(model, tok, d, [Prefix(p, ["3*4=12"])], 1)[0]
    assert r.n_given == len("3*4=12\n")
    text = tok.decode(r.completion_ids, skip_special_tokens=True)
    assert text == "3*4=12\ncall calc(12+5) -> 17\nA:17"
    a = text.index(" 17\n")
    assert [i for i, g in enumerate(r.given_mask) if g] == list(range(r.n_given)) + list(range(a, a + 4))
    assert r.n_generated == len(text) + 1 - r.n_given - 4
    # one step asked for: the tool's answer ends the step, and nothing more is generated
    one = sample_rollouts(model, tok, d, [Prefix(p, ["3*4=12"])], 1, stop_at_step=True)[0]
    assert tok.decode(one.completion_ids, skip_special_tokens=True) == "3*4=12\ncall calc(12+5) -> 17\n"
    assert not one.trajectory.truncated and one.trajectory.steps[-1] == "call calc(12+5) -> 17"


def test_a_refused_call_and_the_token_budget(setup):
    d, tok, p = setup
    model = scripted(["call calc(3*a) -> 12", "A:12"], tok)  # not arithmetic: the tool refuses
    r = sample_rollouts(model, tok, d, [Prefix(p, [])], 1)[0]
    text = tok.decode(r.completion_ids, skip_special_tokens=True)
    assert text == "call calc(3*a) ->\nA:12"  # an empty answer: the line just ends
    assert [text[i] for i, g in enumerate(r.given_mask) if g] == ["\n"]
    assert d.parse_step(r.trajectory.steps[0]).kind == "invalid"
    # max_new_tokens counts generated tokens only: 17 for the call, then 1 more, cut off
    long = scripted(["call calc(3*4) -> 13", "A:12"], tok)
    r = sample_rollouts(long, tok, d, [Prefix(p, [])], 1, max_new_tokens=18)[0]
    assert tok.decode(r.completion_ids, skip_special_tokens=True) == "call calc(3*4) -> 12\nA"
    assert r.n_generated == 18 == r.trajectory.tokens_generated and r.trajectory.truncated


def test_mixed_rows_in_one_batch(setup):
    d, tok, p = setup
    q = d.make_problem("y", 2, [("+", 3)])
    model = scripted(["call calc(3*4) -> 13", "A:12"], tok)
    rolls = sample_rollouts(model, tok, d, [Prefix(p, []), Prefix(q, ["2+3=5"])], 2)
    texts = [tok.decode(r.completion_ids, skip_special_tokens=True) for r in rolls]
    assert texts[:2] == ["call calc(3*4) -> 12\nA:12"] * 2
    # the second problem's given step already fills line 0 of the script: one call, then the answer
    assert texts[2:] == ["2+3=5\nA:12"] * 2 and all(sum(r.given_mask) == r.n_given for r in rolls[2:])


def test_toolpo_gives_tool_answers_no_advantage_and_no_loss(setup):
    d, tok, p = setup
    q = d.make_problem("y", 2, [("*", 3)])
    good = scripted(["call calc(3*4) -> 13", "call calc(12+5) -> 99", "A:17"], tok)
    probs = [p, q]
    rolls = sample_rollouts(good, tok, d, [Prefix(x, []) for x in probs], 1)
    # a second rollout per group with a wrong call so the call advantage is not zero
    bad = scripted(["call calc(3+4) -> 0", "A:1"], tok)
    rolls += sample_rollouts(bad, tok, d, [Prefix(x, []) for x in probs], 1)
    for i, r in enumerate(rolls):
        r.group = i % 2
    cfg = ToolPOConfig(group_size=2)
    trainer = GRPOTrainer(good, tok, d, GRPOConfig(group_size=2), ToolPOMethod(cfg), ref_model=good)
    kept, adv = ToolPOMethod(cfg).advantages(trainer, rolls)
    succ = group_normalise(outcome_rewards(rolls), [r.group for r in rolls])
    call = group_normalise([call_reward(d.check_calls(r.trajectory.problem, r.trajectory.steps)) for r in rolls],
                           [r.group for r in rolls])
    assert succ[0] > 0 and call[0] > 0  # the good rollout of the first problem
    for b, r in enumerate(kept):
        m = call_token_mask(tok, r.completion_ids, d)
        want = [0.0 if g else succ[b] + (call[b] if c else 0.0) for c, g in zip(m, r.given_mask)]
        assert adv[b, : len(r.completion_ids)].tolist() == pytest.approx(want)
    # the call tokens the policy wrote carry the call advantage, the tool's answer inside the call does not
    r, m = kept[0], call_token_mask(tok, kept[0].completion_ids, d)
    assert any(c and not g for c, g in zip(m, r.given_mask)) and any(c and g for c, g in zip(m, r.given_mask))
    # the loss never sees a tool's answer: the train mask token_logprobs hands grpo_loss
    _, mask = token_logprobs(good, kept, 1.0, tok.pad_token_id)
    for b, r in enumerate(kept):
        assert mask[b, : len(r.completion_ids)].tolist() == [not g for g in r.given_mask]


def test_rollout_mask_defaults_and_checks(setup):
    d, tok, p = setup
    traj = d.make_trajectory(p, [], None, True)
    old = Rollout([1, 2], [5, 6, 7], traj, 0, n_given=1)
    assert old.given_mask is None and old.train_mask == [False, True, True] and old.n_generated == 2
    new = Rollout([1, 2], [5, 6, 7, 8], traj, 0, n_given=1, given_mask=[True, False, True, False])
    assert new.train_mask == [False, True, False, True] and new.n_generated == 2
    with pytest.raises(ValueError):
        Rollout([1], [5, 6], traj, 0, given_mask=[True])
    with pytest.raises(ValueError):
        Rollout([1], [5, 6], traj, 0, n_given=1, given_mask=[False, True])


def test_a_real_tiny_lm_through_the_tool_loop(setup):
    """A real (untrained) tiny LM through the tool loop: shapes and counts agree, whatever it writes."""
    from selfprm.policies.tiny import TinyLMConfig, build_tiny_lm

    d, tok, p = setup
    model = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=16, n_positions=40))
    probs = d.sample_problems(2, seed=1)
    rolls = sample_rollouts(model, tok, d, [Prefix(x, []) for x in probs], 2, max_new_tokens=24, seed=3)
    for r in rolls:
        assert len(r.given_mask) == len(r.completion_ids) and r.n_generated <= 24
        assert len(r.prompt_ids) + len(r.completion_ids) <= 40
        assert r.n_generated == r.trajectory.tokens_generated
    again = sample_rollouts(model, tok, d, [Prefix(x, []) for x in probs], 2, max_new_tokens=24, seed=3)
    assert [r.completion_ids for r in again] == [r.completion_ids for r in rolls]
    assert np.all([sum(r.given_mask) == sum(c["end"] - c["start"] for c in r.meta["tool_calls"]) for r in rolls])
