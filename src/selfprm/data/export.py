"""Export to the Hugging Face *stepwise supervision* layout (``prompt``, ``completions``,
``labels``) that TRL's ``PRMTrainer`` reads."""

from __future__ import annotations

import json
import os
from typing import Sequence

from selfprm.types import StepLabels, Trajectory, atomic_write_text, trajectory_to_record


def stepwise_record(traj: Trajectory, labels: StepLabels | None = None, minimal: bool = False) -> dict:
    """One record; ``minimal`` keeps only TRL's three fields (labels as booleans)."""
    if minimal:
        if labels is not None:
            lab = [bool(v >= 0.5) for v in labels.values]
        elif traj.oracle_labels is not None:
            lab = list(traj.oracle_labels)
        else:
            raise ValueError(f"trajectory of problem {traj.problem.id!r} has neither labels nor oracle labels")
        return {"prompt": traj.problem.prompt, "completions": list(traj.steps), "labels": lab}
    return trajectory_to_record(traj, labels)


def export_stepwise(path: str | os.PathLike, trajectories: Sequence[Trajectory],
                    labels: Sequence[StepLabels | None] | None = None, minimal: bool = False) -> int:
    """Write JSONL atomically (temp file + rename); returns the number of records written.

    Without ``minimal`` the records are selfprm's full form (readable back with
    :func:`selfprm.types.read_trajectories`); with it, only what TRL needs.
    """
    labs = [None] * len(trajectories) if labels is None else list(labels)
    if len(labs) != len(trajectories):
        raise ValueError(f"{len(labs)} label sets for {len(trajectories)} trajectories")
    lines = [json.dumps(stepwise_record(t, l, minimal), ensure_ascii=False) for t, l in zip(trajectories, labs)]
    atomic_write_text(path, "".join(s + "\n" for s in lines))
    return len(lines)
