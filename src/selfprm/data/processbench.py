"""ProcessBench (Zheng et al., arXiv 2412.06559): model solutions labelled by people with the
index of their first wrong step.

A record is ``{"id", "generator", "problem", "steps": [str], "final_answer_correct", "label"}``
where ``label`` is the 0-based index of the earliest erroneous step, or -1 when every step is
right. The four splits (gsm8k, math, olympiadbench, omnimath) are JSON arrays; any file in that
record format — a JSON array or JSONL — loads the same way, so a user's own step-labelled data
runs through the same evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

from selfprm.data.answers import extract_boxed
from selfprm.data.paths import PROCESSBENCH_SPLITS, processbench_path
from selfprm.data.records import iter_records, need, need_str_list, problem_key
from selfprm.types import Problem, RecordError, Trajectory


def processbench_record_to_trajectory(rec: object, path: str | os.PathLike | None = None, line: int | None = None,
                                      split: str | None = None) -> Trajectory:
    """One ProcessBench record as a :class:`Trajectory`.

    ``oracle_labels`` encode ``label`` so that ``traj.first_error == label``: steps before it are
    True, the labelled step False. People labelled only the *first* error, so the steps after it
    are also marked False but carry no information of their own (``meta["labelled_upto"]`` says
    how far the labels speak; training weights those later steps 0).
    """
    problem = need(rec, "problem", str, path, line)
    steps = need_str_list(rec, "steps", path, line)
    label = need(rec, "label", int, path, line)
    if not -1 <= label < len(steps):
        raise RecordError(path, line, "label", f"{label} is not -1 or a step index below {len(steps)}")
    rid = need(rec, "id", (str, int), path, line, required=False, default=f"{split or 'record'}-{line}")
    correct = need(rec, "final_answer_correct", bool, path, line, required=False)
    oracle = [True] * len(steps) if label == -1 else [True] * label + [False] * (len(steps) - label)
    return Trajectory(
        problem=Problem(id=str(rid), prompt=problem, meta={"problem_key": problem_key(problem)}),
        steps=steps,
        final_answer=extract_boxed(steps[-1]),
        outcome=correct,
        oracle_labels=oracle,
        meta={
            "source": "processbench",
            "split": split,
            "generator": need(rec, "generator", str, path, line, required=False),
            "label": label,
            "labelled_upto": len(steps) if label == -1 else label + 1,
        },
    )


def load_processbench_file(path: str | os.PathLike, split: str | None = None) -> list[Trajectory]:
    """Every record of a ProcessBench-format file (JSON array or JSONL); ``split`` defaults to the file stem."""
    path = Path(path)
    split = split or path.stem
    return [processbench_record_to_trajectory(rec, path, line, split) for line, rec in iter_records(path)]


def load_processbench(split: str) -> list[Trajectory]:
    """One of ProcessBench's four splits from the shared data folder."""
    return load_processbench_file(processbench_path(split), split)


def load_processbench_all() -> dict[str, list[Trajectory]]:
    return {s: load_processbench(s) for s in PROCESSBENCH_SPLITS}
