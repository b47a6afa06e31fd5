"""ProcessBench's metric on hand-made predictions (F1 computed on paper) and on the real splits."""

import json
import math

import pytest

from selfprm.data import load_processbench, load_processbench_file
from selfprm.eval.processbench import evaluate_processbench, format_table, scores_from_predictions, split_result
from selfprm.types import RecordError


def test_f1_on_hand_made_predictions():
    # 3 erroneous samples (labels 1, 0, 2) and 2 error-free ones (-1).
    # predictions: 1 (hit), 1 (miss: label 0), -1 (miss), -1 (hit), 0 (miss)
    # acc_err = 1/3, acc_ok = 1/2, F1 = 2 * 1/3 * 1/2 / (1/3 + 1/2) = (1/3) / (5/6) = 0.4
    labels = [1, 0, 2, -1, -1]
    preds = [1, 1, -1, -1, 0]
    scores = scores_from_predictions(preds, [3, 3, 4, 2, 3])
    r = split_result("x", scores, labels, 0.5)
    assert (r.n_error, r.n_correct) == (3, 2)
    assert r.error_accuracy == pytest.approx(1 / 3)
    assert r.correct_accuracy == pytest.approx(0.5)
    assert r.f1 == pytest.approx(0.4)


def test_threshold_tuned_on_gsm8k_only_and_reused():
    # gsm8k: one erroneous sample whose wrong step scores 0.3 and an error-free one whose lowest
    # step is 0.6: any threshold in (0.3, 0.6] gives F1 = 1 there; the grid's first such is 0.31.
    gsm = [[0.9, 0.3, 0.95], [0.8, 0.6]]
    gsm_labels = [1, -1]
    # math: the same scores shifted so that 0.31 gets one of two right in each class:
    # err: [0.2 at step 0 -> hit], [0.9, 0.35 -> miss: 0.35 >= 0.31 predicted -1]
    # ok: [0.9] -> hit, [0.25] -> predicted 0, miss.  acc_err = acc_ok = 0.5 -> F1 = 0.5
    math_scores = [[0.2, 0.9], [0.9, 0.35], [0.9], [0.25, 0.9]]
    math_labels = [0, 1, -1, -1]
    res = evaluate_processbench({"gsm8k": gsm, "math": math_scores}, {"gsm8k": gsm_labels, "math": math_labels})
    assert res.threshold == pytest.approx(0.31)
    assert res.threshold_source == "tuned on gsm8k"
    assert res.splits["gsm8k"].f1 == pytest.approx(1.0)
    assert res.splits["math"].f1 == pytest.approx(0.5)
    assert res.average_f1 == pytest.approx(0.75)  # plain mean over splits, as the paper's Avg.
    d = res.to_dict()
    assert d["f1"] == {"gsm8k": pytest.approx(1.0), "math": pytest.approx(0.5), "average": pytest.approx(0.75)}
    assert "average F1" in format_table(res)


def test_fixed_threshold_and_undefined_f1():
    res = evaluate_processbench({"mine": [[0.1], [0.9]]}, {"mine": [0, 0]}, threshold=0.5)
    assert res.threshold_source == "given"
    r = res.splits["mine"]
    assert r.error_accuracy == 0.5 and r.correct_accuracy is None and r.f1 is None
    assert res.average_f1 is None
    res = evaluate_processbench({"mine": [[0.1], [0.9]]}, {"mine": [0, -1]})
    assert res.threshold == 0.5 and "default" in res.threshold_source


def test_unscored_steps_are_counted_not_flagged():
    # a NaN step (cut off by truncation) is not a predicted error; the sample is still counted
    r = split_result("x", [[math.nan, 0.9], [math.nan, 0.1]], [-1, 1], 0.5)
    assert r.f1 == pytest.approx(1.0) and r.unscored == 2 and r.n == 2


@pytest.mark.needs_data
def test_real_gsm8k_split_with_oracle_and_trivial_predictions():
    trajs = load_processbench("gsm8k")
    labels = [t.first_error for t in trajs]
    n_steps = [len(t.steps) for t in trajs]
    perfect = split_result("gsm8k", scores_from_predictions(labels, n_steps), labels, 0.5)
    assert perfect.f1 == 1.0 and perfect.n_error == 207 and perfect.n_correct == 193
    never = split_result("gsm8k", scores_from_predictions([-1] * len(trajs), n_steps), labels, 0.5)
    assert never.error_accuracy == 0.0 and never.correct_accuracy == 1.0 and never.f1 == 0.0


@pytest.mark.parametrize("fmt", ["array", "jsonl"])
def test_any_file_in_processbench_format_loads(tmp_path, fmt):
    recs = [{"id": "a", "problem": "1+1?", "steps": ["1+1=3", "so 3"], "label": 0, "final_answer_correct": False},
            {"problem": "2+2?", "steps": ["2+2=4"], "label": -1}]
    p = tmp_path / ("mine.json" if fmt == "array" else "mine.jsonl")
    p.write_text(json.dumps(recs) if fmt == "array" else "".join(json.dumps(r) + "\n" for r in recs))
    trajs = load_processbench_file(p)
    assert [t.first_error for t in trajs] == [0, -1]
    assert trajs[0].meta["split"] == "mine" and trajs[0].outcome is False


@pytest.mark.parametrize(
    "bad, field",
    [({"problem": "q", "steps": ["a"], "label": 1}, "label"),
     ({"problem": "q", "steps": ["a", 3], "label": -1}, "steps[1]"),
     ({"problem": "q", "label": -1}, "steps"),
     ({"problem": "q", "steps": ["a"], "label": True}, "label")],
)
def test_malformed_processbench_record_names_file_line_field(tmp_path, bad, field):
    good = {"problem": "q", "steps": ["a"], "label": -1}
    p = tmp_path / "pb.json"
    p.write_text(json.dumps([good, good, bad]))
    with pytest.raises(RecordError) as e:
        load_processbench_file(p)
    assert e.value.path == str(p) and e.value.line == 2 and e.value.field == field
    assert "pb.json" in str(e.value) and "line 2" in str(e.value)
