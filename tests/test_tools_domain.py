import numpy as np

from selfprm.domains import ToolsDomain
from selfprm.policies.tiny import build_char_tokenizer
from selfprm.rl.toolpo import call_reward, call_token_mask


def test_worked_solutions_are_sound_and_use_the_calculator():
    d = ToolsDomain()
    rng = np.random.default_rng(0)
    n_calls = 0
    for p in d.sample_problems(50, seed=0):
        steps, ans = d.worked_solution(p, rng)
        t = d.from_text(p, [], d.sft_text(p, steps, ans)[len(d.render(p)):], 0)
        assert t.outcome and all(t.oracle_labels) and t.steps == steps
        checks = d.check_calls(p, steps)
        assert all(c is None or c for c in checks)
        n_calls += sum(c is not None for c in checks)
        assert set(d.sft_text(p, steps, ans)) <= set(d.charset())
    assert n_calls > 50


def test_calls_are_checked():
    d = ToolsDomain()
    p = d.make_problem("x", 3, [("*", 4), ("+", 5)])
    assert p.prompt == "Q:3 *4 +5" and p.answer == "17"
    steps = ["call calc(3*4) -> 13", "call calc(12+5) -> 17"]  # the first call misreports the tool
    assert d.check_calls(p, steps) == [False, True]
    assert d.judge_steps(p, steps) == [False, False]
    assert d.check_calls(p, ["3*4=12", "call calc(12+5) -> 17"]) == [None, True]
    assert d.check_calls(p, ["call calc(3+5) -> 8"]) == [False]  # not the operation the chain needs
    assert d.step_well_formed("call calc(3*4) -> 12") and d.step_well_formed("A:17") and not d.step_well_formed("calc(")
    assert call_reward([None, True, False]) == 0.5 and call_reward([None]) == 0.0


def test_toolpo_mask_covers_exactly_the_call_tokens():
    d = ToolsDomain()
    tok = build_char_tokenizer(d.charset())
    text = "3*4=12\ncall calc(12+5) -> 17\nA:17"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    mask = call_token_mask(tok, ids, d)
    start = text.index("call")
    end = start + len("call calc(12+5) -> 17")
    assert mask == [start <= i < end for i in range(len(text))] + [False]
    assert d.call_spans(text) == [(start, end)]


def test_the_sandboxed_tool_writes_what_the_worked_solutions_write():
    """Every call of a worked solution, cut at its marker, is a pending call; the sandboxed
    calculator's answer is exactly the rest of that line as SFT taught it (one process for all)."""
    d = ToolsDomain()
    rng = np.random.default_rng(1)
    lines = [s for p in d.sample_problems(30, seed=3) for s in d.worked_solution(p, rng)[0] if s.startswith("call")]
    heads = [s[: s.index("->") + 2] for s in lines]
    exprs = [d.pending_call(h) for h in heads]
    assert all(e is not None for e in exprs) and all(d.pending_call(s) is None for s in lines)
    answers = d.run_calls(exprs)
    assert [h + a for h, a in zip(heads, answers)] == [s + d.step_separator for s in lines]
