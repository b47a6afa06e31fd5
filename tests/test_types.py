import json

import pytest

from selfprm.types import (
    Problem,
    RecordError,
    StepLabels,
    Trajectory,
    read_trajectories,
    write_trajectories,
)


def _traj():
    p = Problem("p1", "Q:1 +2", "3", {"start": 1})
    return Trajectory(p, ["1+2=3"], "3", True, [True], tokens_generated=9)


def test_roundtrip_keeps_every_field_and_labels(tmp_path):
    t = _traj()
    lab = StepLabels([0.25], source="mc", soft=True, policy_tokens=40, rollouts=4)
    path = tmp_path / "a.jsonl"
    write_trajectories(path, [t, t], [lab, None])
    (t1, l1), (t2, l2) = read_trajectories(path)
    assert t1 == t and t2 == t
    assert l1 == lab and l2 is None
    rec = json.loads(path.read_text().splitlines()[0])
    # the Hugging Face stepwise-supervision layout
    assert rec["prompt"] == "Q:1 +2" and rec["completions"] == ["1+2=3"] and rec["labels"] == [0.25]
    rec2 = json.loads(path.read_text().splitlines()[1])
    assert rec2["labels"] == [True]  # oracle labels when no source labels


def test_plain_trl_file_reads_labels_as_oracle(tmp_path):
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps({"prompt": "x", "completions": ["a", "b"], "labels": [True, False]}) + "\n")
    (t, l), = read_trajectories(path)
    assert t.oracle_labels == [True, False] and t.first_error == 1 and l is None


@pytest.mark.parametrize(
    "line, field",
    [
        ('{"prompt": "x", "completions": "not a list"}', "completions"),
        ('{"completions": ["a"]}', "prompt"),
        ('{"prompt": "x", "completions": ["a", 3]}', "completions[1]"),
        ('{"prompt": "x", "completions": ["a"], "oracle_labels": [true, false]}', "oracle_labels"),
        ('{"prompt": "x", "completions": ["a"], "labels": [2.0], "label_source": "mc"}', "labels[0]"),
        ('{"prompt": "x", "completions": ["a"], "tokens_generated": "many"}', "tokens_generated"),
    ],
)
def test_malformed_record_names_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "x", "completions": ["a"]})
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(RecordError) as e:
        read_trajectories(path)
    assert e.value.line == 3 and e.value.field == field and str(path) in str(e.value)
    assert "line 3" in str(e.value) and repr(field) in str(e.value)


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "x", "completions": []}\n{"prompt": \n')
    with pytest.raises(RecordError, match=r"bad.jsonl, line 2: invalid JSON"):
        read_trajectories(path)


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "a.jsonl"
    write_trajectories(path, [_traj()])
    before = path.read_text()
    with pytest.raises(ValueError):
        write_trajectories(path, [_traj()], [None, None])  # mismatched lengths: nothing written
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]  # no temp file left behind


def test_step_labels_reject_out_of_range():
    with pytest.raises(ValueError):
        StepLabels([1.5], source="x")
    assert StepLabels([1.0, 0.4, 0.0], source="x").first_error == 1
