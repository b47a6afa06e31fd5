import json
import os
from pathlib import Path

import pytest

from selfprm.types import (
    Problem,
    RecordError,
    StepLabels,
    Trajectory,
    atomic_write_text,
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


def test_write_rejects_mismatched_label_count_before_touching_the_file(tmp_path):
    path = tmp_path / "a.jsonl"
    write_trajectories(path, [_traj()])
    before = path.read_text()
    with pytest.raises(ValueError):
        write_trajectories(path, [_traj()], [None, None])  # mismatched lengths: raised before any write
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


OLD, NEW = "old contents\n" * 10, "new contents, longer than the old ones\n" * 100


def _others(folder, name):
    """Every file in ``folder`` but ``name``: the temp files of an atomic write."""
    return sorted(p for p in folder.iterdir() if p.name != name)


def test_atomic_write_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text(OLD)
    atomic_write_text(path, NEW)
    assert path.read_text() == NEW and _others(tmp_path, "out.txt") == []
    # the mode a plain open() gives (mkstemp's 0600 would hide a report from other readers)
    import os
    import stat

    plain = tmp_path / "plain.txt"
    plain.write_text(NEW)
    assert stat.S_IMODE(os.stat(path).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


class _HalfWriter:
    """A file whose write puts half the text on disk, calls ``at_failure``, then fails as a full disk would."""

    def __init__(self, f, at_failure):
        self._f, self._at_failure = f, at_failure

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False

    def write(self, text):
        self._f.write(text[: len(text) // 2])
        self._f.flush()
        self._at_failure()
        raise OSError(28, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)


def test_atomic_write_failing_halfway_through_the_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text(OLD)
    seen = []  # (temp file, its contents) at the moment the write failed
    real_fdopen = os.fdopen

    def at_failure():
        seen.extend((p, p.read_text()) for p in _others(tmp_path, "out.txt"))

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _HalfWriter(real_fdopen(fd, *a, **k), at_failure))
    with pytest.raises(OSError, match="No space left"):
        atomic_write_text(path, NEW)
    monkeypatch.undo()
    # the write went to a temp file beside the target, and half the new text had reached it
    assert [text for _, text in seen] == [NEW[: len(NEW) // 2]]
    assert path.read_text() == OLD
    assert _others(tmp_path, "out.txt") == []  # the half-written temp file is gone


@pytest.mark.parametrize("exc", [OSError("fsync failed"), KeyboardInterrupt()])
def test_atomic_write_failing_at_fsync_keeps_the_old_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "out.txt"
    path.write_text(OLD)
    seen = []

    def fsync(fd):
        # everything was written and flushed: the temp file holds the whole new text, the target the old
        seen.extend((p, p.read_text()) for p in _others(tmp_path, "out.txt"))
        assert path.read_text() == OLD
        raise exc

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(type(exc)):
        atomic_write_text(path, NEW)
    monkeypatch.undo()
    assert [text for _, text in seen] == [NEW]
    assert path.read_text() == OLD and _others(tmp_path, "out.txt") == []


@pytest.mark.parametrize("existed", [True, False])
def test_atomic_write_failing_at_the_rename_keeps_the_old_file(tmp_path, monkeypatch, existed):
    path = tmp_path / "out.txt"
    if existed:
        path.write_text(OLD)
    calls = []

    def replace(src, dst):
        calls.append((Path(src), Path(src).read_text(), Path(dst)))
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(path, NEW)
    monkeypatch.undo()
    # the rename was the last step: a complete temp file beside the target, renamed onto it
    [(src, text, dst)] = calls
    assert src.parent == tmp_path and text == NEW and dst == path
    if existed:
        assert path.read_text() == OLD
    else:
        assert not path.exists()
    assert _others(tmp_path, "out.txt") == []


def test_write_trajectories_failing_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.jsonl"
    write_trajectories(path, [_traj()])
    before = path.read_text()

    def fsync(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="disk gone"):
        write_trajectories(path, [_traj(), _traj()])
    monkeypatch.undo()
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]  # no temp file left behind


def test_step_labels_reject_out_of_range():
    with pytest.raises(ValueError):
        StepLabels([1.5], source="x")
    assert StepLabels([1.0, 0.4, 0.0], source="x").first_error == 1
