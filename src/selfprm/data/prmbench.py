"""PRMBench (Song et al., arXiv 2501.03124): PRM800K test solutions into which errors of eight
kinds (redundancy, circular logic, counterfactual, step contradiction, domain inconsistency,
confidence, missing condition, deception) were injected, plus multi-solution items with none.

A record holds ``modified_question``, ``modified_process`` (the steps) and ``error_steps``
(1-indexed). A step is sound unless listed, so unlike ProcessBench the labels after the first
error are meaningful too.
"""

from __future__ import annotations

import os
from pathlib import Path

from selfprm.data.paths import shared_path
from selfprm.data.records import iter_records, need, need_str_list, problem_key
from selfprm.types import Problem, RecordError, Trajectory


def prmbench_record_to_trajectory(rec: object, path=None, line: int | None = None) -> Trajectory:
    question = need(rec, "modified_question", str, path, line)
    steps = need_str_list(rec, "modified_process", path, line)
    errors = need(rec, "error_steps", list, path, line)
    labels = [True] * len(steps)
    dropped = []
    for i, e in enumerate(errors):
        if not isinstance(e, int) or isinstance(e, bool):
            raise RecordError(path, line, f"error_steps[{i}]", f"expected int, got {type(e).__name__}")
        if 1 <= e <= len(steps):
            labels[e - 1] = False
        else:
            # The upstream subset has a few indices past the last step (11 of 394 records, each
            # with an in-range first error): kept visible in meta rather than fatal.
            dropped.append(e)
    if errors and len(dropped) == len(errors):
        raise RecordError(path, line, "error_steps", f"no index within 1..{len(steps)}: {errors}")
    return Trajectory(
        problem=Problem(id=str(need(rec, "idx", str, path, line, required=False, default=f"prmbench-{line}")),
                        prompt=question, meta={"problem_key": problem_key(question)}),
        steps=steps,
        oracle_labels=labels,
        meta={"source": "prmbench", "classification": need(rec, "classification", str, path, line, required=False),
              "reason": need(rec, "reason", str, path, line, required=False),
              "error_steps": list(errors), "out_of_range_error_steps": dropped},
    )


def load_prmbench(path: str | os.PathLike | None = None) -> list[Trajectory]:
    """The PRMBench subset (394 records) from the shared data folder, or any file in its format."""
    path = Path(path) if path is not None else shared_path("prmbench_subset400", "target_data.jsonl")
    return [prmbench_record_to_trajectory(rec, path, line) for line, rec in iter_records(path)]
