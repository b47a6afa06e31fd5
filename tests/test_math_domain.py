import json
import sys

import pytest

from selfprm.domains import DOMAINS
from selfprm.domains.base import Domain
from selfprm.domains.math import (
    TEMPLATES,
    MathDomain,
    MathDomainConfig,
    extract_final_answer,
    load_math_problems,
    split_steps,
)
from selfprm.types import Problem, RecordError


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- loaders on the real files


@pytest.mark.needs_data
def test_loads_gsm8k_and_math500_from_the_shared_files():
    from selfprm.data.paths import shared_path

    gsm = load_math_problems(shared_path("gsm8k", "test.jsonl"), limit=5)
    assert len(gsm) == 5 and gsm[0].id == "gsm8k-test-1" and gsm[0].answer == "18"
    assert "Janet" in gsm[0].prompt and "####" in gsm[0].meta["reference"]
    assert load_math_problems(shared_path("gsm8k", "train.jsonl"), limit=1)[0].id == "gsm8k-train-1"
    math = load_math_problems(shared_path("math500", "test500.jsonl"))
    assert len(math) == 500 and len({p.id for p in math}) == 500
    assert math[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)" and math[0].meta["level"] == "Level 2"
    assert [p.id for p in load_math_problems(shared_path("math500", "test500.jsonl"), limit=3)] == [p.id for p in math[:3]]


@pytest.mark.needs_data
def test_reference_solutions_parse_to_their_own_answers():
    """A reference written after the template is read back as a correct, untruncated solution."""
    from selfprm.data.gsm8k import strip_calculator
    from selfprm.data.paths import shared_path

    dom = MathDomain()
    for p in load_math_problems(shared_path("math500", "test500.jsonl"), limit=8):
        t = dom.from_text(p, [], p.meta["reference"], tokens=1)
        assert not t.truncated and t.outcome, (p.id, t.final_answer, p.answer)
        ref = p.meta["reference"].strip()
        sep = "\n\n" if "\n\n" in ref else "\n"  # paragraphs, or lines in a one-paragraph solution
        assert t.steps == [s.strip() for s in ref.split(sep) if s.strip()]
    for p in load_math_problems(shared_path("gsm8k", "test.jsonl"), limit=8):
        ref = strip_calculator(p.meta["reference"])
        t = dom.from_text(p, [], ref, tokens=1)
        assert t.outcome and t.final_answer == p.answer
        assert len(t.steps) == ref.strip().count("\n") + 1  # no blank line: one step per line


# ----------------------------------------------------------------------------- loaders on small files


def test_loads_problem_answer_jsonl_with_numbers_boxed_and_ids(tmp_path):
    f = write_jsonl(tmp_path / "mine.jsonl", [
        {"problem": "What is 2+2?", "answer": 4},
        {"id": "half", "problem": "Half of one?", "answer": "\\boxed{\\frac{1}{2}}", "solution": "It is 1/2."},
        {"question": "Twice 3?", "answer": "6"},
    ])
    probs = load_math_problems(f)
    assert [p.id for p in probs] == ["mine-1", "half", "mine-3"]
    assert [p.answer for p in probs] == ["4", "\\frac{1}{2}", "6"]
    assert probs[1].meta["reference"] == "It is 1/2." and probs[2].prompt == "Twice 3?"
    assert len(load_math_problems(f, limit=2)) == 2


def test_loads_a_json_array_and_a_gsm8k_style_file(tmp_path):
    arr = tmp_path / "arr.json"
    arr.write_text(json.dumps([{"problem": "1+1?", "answer": "2"}]), encoding="utf-8")
    assert load_math_problems(arr)[0].answer == "2"
    gsm = write_jsonl(tmp_path / "test.jsonl", [{"question": "Q?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"}])
    p = load_math_problems(gsm)[0]
    assert p.answer == "7" and p.id == "gsm8k-test-1"


def test_a_malformed_line_or_a_missing_field_names_file_and_line(tmp_path):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "1+1?", "answer": "2"}, "{not json"])
    with pytest.raises(RecordError, match=r"bad\.jsonl.*line 2.*invalid JSON"):
        load_math_problems(bad)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"problem": "1+1?", "answer": "2"}, {}, {"problem": "x"}])
    with pytest.raises(RecordError) as e:
        load_math_problems(missing)
    assert e.value.line == 2 and e.value.field == "problem" and "missing.jsonl" in str(e.value)
    no_answer = write_jsonl(tmp_path / "noans.jsonl", [{"problem": "x"}])
    with pytest.raises(RecordError, match=r"noans\.jsonl, line 1, field 'answer'"):
        load_math_problems(no_answer)
    gsm = write_jsonl(tmp_path / "g.jsonl", [{"question": "Q?", "answer": "#### 1"}, {"question": "Q?", "answer": "7"}])
    with pytest.raises(RecordError, match=r"g\.jsonl, line 2, field 'answer'"):
        load_math_problems(gsm)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_math_problems(tmp_path / "nope.jsonl")


# ----------------------------------------------------------------------------- steps and answers


def test_steps_are_paragraphs_when_there_is_a_blank_line_else_lines():
    assert split_steps("a\nb\n\nc\n\n\n  d  \n") == ["a\nb", "c", "d"]
    assert split_steps("a\nb\n c\n") == ["a", "b", "c"]
    assert split_steps("  \n") == []
    assert split_steps("a\nb", by_blank_lines=True) == ["a\nb"]


def test_final_answer_from_boxed_or_the_answer_is():
    assert extract_final_answer("so \\boxed{5} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert extract_final_answer("The answer is $1,000$.") == "1000"
    assert extract_final_answer("The final answer is (3, \\frac{\\pi}{2}).") == "(3, \\frac{\\pi}{2})"
    assert extract_final_answer("#### 42") == "42"
    assert extract_final_answer("I think it is five") is None


def test_from_text_splits_checks_and_marks_truncation():
    dom = MathDomain()
    p = Problem("p", "What is 1+1?", "2")
    t = dom.from_text(p, [], "One plus one.\n\nThat is two, so the answer is \\boxed{2}.", tokens=9)
    assert t.steps == ["One plus one.", "That is two, so the answer is \\boxed{2}."]
    assert (t.final_answer, t.outcome, t.truncated, t.tokens_generated, t.oracle_labels) == ("2", True, False, 9, None)
    wrong = dom.from_text(p, [], "It is \\boxed{3}.", tokens=4)
    assert wrong.outcome is False and not wrong.truncated
    cut = dom.from_text(p, [], "One plus one is", tokens=4)
    assert cut.truncated and cut.outcome is False and cut.final_answer is None
    # a base model running on into the next problem is cut at the plain template's stop string
    on = dom.from_text(p, [], "It is 2.\nThe answer is 2.\nProblem: What is 3+3?\nSolution: 6", tokens=20)
    assert on.steps == ["It is 2.", "The answer is 2."] and on.final_answer == "2"


def test_render_and_from_text_round_trip():
    """What the policy writes after ``render(problem, steps[:k])`` parses back to the same steps."""
    dom = MathDomain()
    p = Problem("p", "Add 1 and 2, then double.", "6")
    steps = ["First, 1 + 2 = 3.\nThat is the sum.", "Then 3 * 2 = 6.", "The answer is \\boxed{6}."]
    full = dom.render(p, steps)
    assert full.startswith(dom.render(p)) and dom.render(p).endswith("Solution:\n")
    for k in range(len(steps) + 1):
        prefix = dom.render(p, steps[:k])
        assert full.startswith(prefix)
        t = dom.from_text(p, steps[:k], full[len(prefix):], tokens=1)
        assert t.steps == steps and t.outcome and t.final_answer == "6"
    # a continuation without blank lines after a paragraph prefix still reads as one paragraph
    t = dom.from_text(p, steps[:1], "Then 3 * 2 = 6.\nThe answer is 6.", tokens=1)
    assert t.steps == [steps[0], "Then 3 * 2 = 6.\nThe answer is 6."]
    # the answer may already sit in the prefix
    assert dom.from_text(p, steps, "", tokens=0).final_answer == "6"


def test_templates_presets_and_custom():
    p = Problem("p", "Compute $\\{1\\}$.", "1")
    chat = MathDomain(MathDomainConfig(template="qwen-chat"))
    text = chat.render(p, ["Step one."])
    assert text.startswith("<|im_start|>system\n") and "\\boxed{}" in text
    assert text.endswith("<|im_start|>user\nCompute $\\{1\\}$.<|im_end|>\n<|im_start|>assistant\nStep one.\n\n")
    assert "<|im_end|>" in chat.stop
    t = chat.from_text(p, [], "So \\boxed{1}.<|im_end|>\n<|im_start|>user\nmore", tokens=5)
    assert t.steps == ["So \\boxed{1}."] and t.outcome
    own = MathDomain(MathDomainConfig(template="Q: {problem}\nA (use \\boxed{}):\n", step_separator="\n"))
    assert own.render(p, ["x"]) == "Q: Compute $\\{1\\}$.\nA (use \\boxed{}):\nx\n" and own.stop == ()
    with pytest.raises(ValueError, match="plain, qwen-chat"):
        MathDomainConfig(template="chatml")
    assert set(TEMPLATES) >= {"plain", "qwen-chat"}


def test_check_answer_uses_math_verify_and_names_the_extra(monkeypatch):
    dom = MathDomain()
    p = Problem("p", "Half?", "\\frac{1}{2}")
    assert dom.check_answer(p, "0.5") and dom.check_answer(p, "1/2")
    assert not dom.check_answer(p, "2") and not dom.check_answer(p, None)
    monkeypatch.setitem(sys.modules, "math_verify", None)
    with pytest.raises(ImportError, match=r"selfprm\[real\]"):
        dom.check_answer(p, "0.5")


def test_math_is_a_registered_domain():
    assert DOMAINS.get("math") is MathDomain and {"arith", "math", "tools"} <= set(DOMAINS.names())
    dom = DOMAINS.get("math")()
    assert isinstance(dom, Domain) and dom.name == "math" and dom.step_separator == "\n\n"
