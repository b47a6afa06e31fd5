"""Every loader on the real shared files (count, one field) and on malformed records."""

import json

import pytest

from selfprm.data import (
    answers_match,
    exclude_problems,
    export_stepwise,
    extract_boxed,
    extract_gsm8k_answer,
    key_of,
    load_gsm8k,
    load_gsm8k_example_solutions,
    load_math500,
    load_math_shepherd,
    load_prm800k,
    load_prmbench,
    load_processbench,
    load_processbench_file,
    math_reference_trajectory,
    reference_trajectory,
    shared_data_dir,
    shared_path,
    split_by_problem,
    verify_reference,
)
from selfprm.data.math500 import check_math_solution
from selfprm.types import RecordError, read_trajectories


def test_shared_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFPRM_SHARED_DATA", str(tmp_path))
    assert shared_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="SELFPRM_SHARED_DATA"):
        shared_path("processbench", "gsm8k.json")


@pytest.mark.needs_data
@pytest.mark.parametrize("split, n, n_ok", [("gsm8k", 400, 193), ("math", 1000, 406),
                                            ("olympiadbench", 1000, 339), ("omnimath", 1000, 241)])
def test_processbench_splits(split, n, n_ok):
    trajs = load_processbench(split)
    assert len(trajs) == n and sum(t.first_error == -1 for t in trajs) == n_ok
    assert all(t.first_error == t.meta["label"] for t in trajs)


@pytest.mark.needs_data
def test_processbench_spot_check():
    t = load_processbench("gsm8k")[0]
    assert t.problem.id == "gsm8k-0" and t.meta["generator"] == "Qwen2-7B-Instruct"
    assert t.first_error == 1 and t.outcome is False and t.problem.prompt.startswith("Sue lives")


@pytest.mark.needs_data
def test_gsm8k_problems_and_references():
    train, test = load_gsm8k("train"), load_gsm8k("test")
    assert len(train) == 7473 and len(test) == 1319
    p = test[0]
    assert p.prompt.startswith("Janet’s ducks") and p.answer == "18"
    ref = reference_trajectory(p)
    assert ref.steps == ["Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
                         "She makes 9 * 2 = $18 every day at the farmer’s market. The answer is 18."]
    assert ref.meta["raw_steps"][0] == "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day."
    assert verify_reference(ref)
    bad = reference_trajectory(p)
    bad.meta["raw_steps"] = ["Janet sells 16 - 3 - 4 = <<16-3-4=8>>8 duck eggs a day."] + bad.meta["raw_steps"][1:]
    assert not verify_reference(bad)  # a calculation that does not compute


@pytest.mark.needs_data
def test_gsm8k_example_solutions():
    sols = load_gsm8k_example_solutions()
    assert len(sols) == 1319 * 4
    first = sols[0]
    assert first.meta["model"] == "6b_finetuning" and first.outcome is False and first.final_answer == "26"
    assert sum(t.outcome for t in sols) == 2001
    # is_correct agrees with math-verify on the answer for the first problems
    assert all(answers_match(t.final_answer, t.problem.answer) == t.outcome for t in sols[:40])


@pytest.mark.needs_data
def test_math500():
    probs = load_math500()
    assert len(probs) == 500 and probs[0].meta["subject"] == "Precalculus"
    ref = math_reference_trajectory(probs[0])
    assert ref.final_answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert check_math_solution(probs[0].meta["reference"], probs[0])
    assert not check_math_solution("so \\boxed{(3, \\pi)}", probs[0])


@pytest.mark.needs_data
def test_prmbench():
    trajs = load_prmbench()
    assert len(trajs) == 394
    t = trajs[0]
    assert t.meta["classification"] == "confidence" and t.meta["error_steps"] == [5, 6]
    assert t.oracle_labels == [True, True, True, True, False, False] and t.first_error == 4
    assert sum(t.first_error == -1 for t in trajs) == 10  # the multi_solutions items with no error
    assert sum(bool(t.meta["out_of_range_error_steps"]) for t in trajs) == 11


@pytest.mark.needs_data
def test_math_shepherd_format():
    trajs = load_math_shepherd(shared_path("format_samples", "samples_math-shepherd.jsonl"))
    assert len(trajs) == 7
    t = trajs[0]
    assert t.problem.prompt.endswith("than clarinet lessons in a year?")
    assert t.steps[0].startswith("Janet spends 3 hours + 5 hours") and len(t.steps) == 5
    assert t.oracle_labels == [True, True, True, True, False]


@pytest.mark.needs_data
def test_prm800k_format():
    trajs = load_prm800k(shared_path("format_samples", "samples_prm800k.jsonl"))
    assert len(trajs) == 6
    t = trajs[0]
    assert t.steps[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."  # the human-written step
    assert t.meta["ratings"] == [1, None, 1, 1, 1, 1] and t.oracle_labels == [True] * 6
    assert t.final_answer == "29" and t.outcome is True
    phase2 = trajs[1]
    assert phase2.meta["phase"] == 2 and phase2.first_error == 6
    assert trajs[4].truncated  # gave up


@pytest.mark.parametrize(
    "loader, rec, field",
    [(load_math_shepherd, {"input": "Q? Step 1: a ки", "label": "Q? Step 1: a x"}, "label"),
     (load_math_shepherd, {"label": "x"}, "input"),
     (load_prm800k, {"question": {"problem": "q"}, "label": {"steps": [{"completions": [{"text": "a", "rating": 5}],
                                                                         "chosen_completion": 0}]}},
      "label.steps[0].rating"),
     (load_prmbench, {"modified_question": "q", "modified_process": ["a"], "error_steps": ["1"]}, "error_steps[0]"),
     (load_math500, {"problem": "q", "unique_id": "u", "answer": 1}, "answer"),
     (lambda p: load_gsm8k("test", p), {"question": "q", "answer": "no final line"}, "answer")],
)
def test_malformed_records_name_file_line_field(tmp_path, loader, rec, field):
    p = tmp_path / "bad.jsonl"
    p.write_text("\n" + json.dumps(rec) + "\n")  # a blank first line: the record is on line 2
    with pytest.raises(RecordError) as e:
        loader(p)
    assert (e.value.path, e.value.line, e.value.field) == (str(p), 2, field)


def test_invalid_json_names_the_line(tmp_path):
    p = tmp_path / "pb.jsonl"
    p.write_text('{"problem": "q", "steps": ["a"], "label": -1}\n{oops\n')
    with pytest.raises(RecordError, match="line 2"):
        load_processbench_file(p)


def test_answers_and_extraction():
    assert answers_match("18.00", "18") and answers_match("\\frac{1}{2}", "0.5") and not answers_match("17", "18")
    assert not answers_match(None, "1")
    assert extract_gsm8k_answer("x\n#### 1,000") == "1000" and extract_gsm8k_answer("y\nA: 26") == "26"
    assert extract_boxed("so \\boxed{\\frac{a}{b}} done") == "\\frac{a}{b}"


@pytest.mark.needs_data
def test_split_by_problem_keeps_each_problem_on_one_side():
    trajs = load_processbench("math")
    held, rest = split_by_problem(trajs, 0.5, seed=0)
    assert len(held) + len(rest) == 1000 and 300 < len(held) < 700
    assert not {key_of(t) for t in held} & {key_of(t) for t in rest}
    # ProcessBench's gsm8k split shares all its 375 problems with GSM8K's example solutions
    sols = load_gsm8k_example_solutions()
    left = exclude_problems(sols, {key_of(t) for t in load_processbench("gsm8k")})
    assert len(left) == (1319 - 375) * 4


@pytest.mark.needs_data
def test_export_stepwise_round_trips(tmp_path):
    trajs = load_processbench("gsm8k")[:3]
    assert export_stepwise(tmp_path / "full.jsonl", trajs) == 3
    back = read_trajectories(tmp_path / "full.jsonl")
    assert [t.first_error for t, _ in back] == [t.first_error for t in trajs]
    export_stepwise(tmp_path / "trl.jsonl", trajs, minimal=True)
    rec = json.loads((tmp_path / "trl.jsonl").read_text().splitlines()[0])
    assert set(rec) == {"prompt", "completions", "labels"} and rec["labels"] == [True, False, False, False][:len(rec["labels"])]
