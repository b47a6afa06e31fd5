"""The data model: problems, trajectories and step labels, and their JSONL form.

On disk a trajectory is one JSON object per line in the Hugging Face *stepwise supervision*
layout that TRL's PRM trainer reads — ``prompt``, ``completions`` (one string per step) and
``labels`` (one per step) — plus the fields selfprm needs to measure labels against an oracle and
count what they cost (``final_answer``, ``outcome``, ``oracle_labels``, ``tokens_generated``, ...).

A malformed record raises :class:`RecordError`, which names the file, the line and the field, so
a broken shard of a labeling job is found without a debugger.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator


class RecordError(ValueError):
    """A record that cannot be read; the message names file, line and field."""

    def __init__(self, path: str | os.PathLike | None, line: int | None, field_name: str | None, why: str):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field_name
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field_name is not None:
            where.append(f"field {field_name!r}")
        super().__init__(f"{', '.join(where) or 'record'}: {why}")


@dataclass
class Problem:
    """A problem with a checkable outcome.

    ``answer`` is the reference final answer (a string so math and code answers fit too);
    ``meta`` carries what the domain needs to judge steps (e.g. ``arith``'s operation chain).
    """

    id: str
    prompt: str
    answer: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trajectory:
    """One step-by-step solution of a problem.

    ``oracle_labels[i]`` is True when step ``i`` is sound (exact on a synthetic domain, human on
    ProcessBench); None when nobody knows. ``tokens_generated`` is what the policy spent writing it.
    ``truncated`` marks a solution cut off before a final answer (SPR drops those).
    """

    problem: Problem
    steps: list[str]
    final_answer: str | None = None
    outcome: bool | None = None
    oracle_labels: list[bool] | None = None
    tokens_generated: int = 0
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def first_error(self) -> int:
        """Index of the first step the oracle marks wrong, -1 when none is (ProcessBench's ``label``)."""
        if self.oracle_labels is None:
            raise ValueError(f"trajectory of problem {self.problem.id!r} has no oracle labels")
        for i, ok in enumerate(self.oracle_labels):
            if not ok:
                return i
        return -1


@dataclass
class StepLabels:
    """Per-step labels for one trajectory, and what making them cost.

    ``values`` are in [0, 1]: hard labels are 0.0 / 1.0, soft ones (e.g. a Monte Carlo success
    share) anything between. ``weights`` lets a source mark steps it has no opinion on (0.0);
    None means every step counts. ``policy_tokens`` counts the tokens the policy generated *for
    labeling* (rollouts, search), beyond sampling the trajectory itself; ``rollouts`` counts
    the policy calls' completions. ``token_passes`` counts the token positions run through a
    model by the source itself for these labels beyond the policy's generation (training a model:
    forward + backward, each pass counted; scoring with one: forward) — the policy's own
    generation compute is read off the policy by :func:`selfprm.labels.run_label_source`.
    """

    values: list[float]
    source: str
    soft: bool = False
    policy_tokens: int = 0
    rollouts: int = 0
    weights: list[float] | None = None
    token_passes: int = 0

    def __post_init__(self) -> None:
        for v in self.values:
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"label {v} from source {self.source!r} is outside [0, 1]")
        if self.weights is not None and len(self.weights) != len(self.values):
            raise ValueError("weights and values differ in length")

    @property
    def first_error(self) -> int:
        """First step labelled below 0.5, -1 when none is."""
        for i, v in enumerate(self.values):
            if v < 0.5:
                return i
        return -1


# ----------------------------------------------------------------------------- JSONL


def trajectory_to_record(traj: Trajectory, labels: StepLabels | None = None) -> dict[str, Any]:
    """The stepwise-supervision record of a trajectory.

    ``labels`` are the given step labels, or the oracle's when none are given (booleans, as TRL
    expects), or absent when neither exists.
    """
    rec: dict[str, Any] = {
        "prompt": traj.problem.prompt,
        "completions": list(traj.steps),
    }
    if labels is not None:
        rec["labels"] = [bool(v >= 0.5) for v in labels.values] if not labels.soft else list(labels.values)
        rec["label_source"] = labels.source
        rec["soft_labels"] = labels.soft
        rec["label_policy_tokens"] = labels.policy_tokens
        rec["label_rollouts"] = labels.rollouts
        rec["label_token_passes"] = labels.token_passes
        if labels.weights is not None:
            rec["label_weights"] = list(labels.weights)
    elif traj.oracle_labels is not None:
        rec["labels"] = list(traj.oracle_labels)
    rec.update(
        problem_id=traj.problem.id,
        answer=traj.problem.answer,
        problem_meta=traj.problem.meta,
        final_answer=traj.final_answer,
        outcome=traj.outcome,
        oracle_labels=traj.oracle_labels,
        tokens_generated=traj.tokens_generated,
        truncated=traj.truncated,
        meta=traj.meta,
    )
    return rec


def _get(rec: dict, key: str, types: type | tuple[type, ...], path, line, required: bool = True, default=None):
    if key not in rec or rec[key] is None:
        if required:
            raise RecordError(path, line, key, "missing")
        return default
    val = rec[key]
    # bool is an int in Python; an int field must not accept True silently, and vice versa.
    if isinstance(val, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise RecordError(path, line, key, f"expected {types}, got bool")
    if not isinstance(val, types):
        raise RecordError(path, line, key, f"expected {getattr(types, '__name__', types)}, got {type(val).__name__}")
    return val


def record_to_trajectory(
    rec: Any, path: str | os.PathLike | None = None, line: int | None = None
) -> tuple[Trajectory, StepLabels | None]:
    """Parse one record; errors name ``path``, ``line`` and the offending field."""
    if not isinstance(rec, dict):
        raise RecordError(path, line, None, f"expected a JSON object, got {type(rec).__name__}")
    prompt = _get(rec, "prompt", str, path, line)
    steps = _get(rec, "completions", list, path, line)
    for i, s in enumerate(steps):
        if not isinstance(s, str):
            raise RecordError(path, line, f"completions[{i}]", f"expected str, got {type(s).__name__}")
    oracle = _get(rec, "oracle_labels", list, path, line, required=False)
    if oracle is not None:
        if len(oracle) != len(steps):
            raise RecordError(path, line, "oracle_labels", f"{len(oracle)} labels for {len(steps)} steps")
        for i, v in enumerate(oracle):
            if not isinstance(v, bool):
                raise RecordError(path, line, f"oracle_labels[{i}]", f"expected bool, got {type(v).__name__}")
    problem = Problem(
        id=str(_get(rec, "problem_id", (str, int), path, line, required=False, default=f"line-{line}")),
        prompt=prompt,
        answer=_get(rec, "answer", str, path, line, required=False),
        meta=_get(rec, "problem_meta", dict, path, line, required=False, default={}),
    )
    traj = Trajectory(
        problem=problem,
        steps=list(steps),
        final_answer=_get(rec, "final_answer", str, path, line, required=False),
        outcome=_get(rec, "outcome", bool, path, line, required=False),
        oracle_labels=None if oracle is None else list(oracle),
        tokens_generated=_get(rec, "tokens_generated", int, path, line, required=False, default=0),
        truncated=_get(rec, "truncated", bool, path, line, required=False, default=False),
        meta=_get(rec, "meta", dict, path, line, required=False, default={}),
    )
    labels = None
    raw = _get(rec, "labels", list, path, line, required=False)
    if raw is not None and "label_source" in rec:
        if len(raw) != len(steps):
            raise RecordError(path, line, "labels", f"{len(raw)} labels for {len(steps)} steps")
        values = []
        for i, v in enumerate(raw):
            if not isinstance(v, (bool, int, float)) or not 0.0 <= float(v) <= 1.0:
                raise RecordError(path, line, f"labels[{i}]", f"expected a bool or a number in [0, 1], got {v!r}")
            values.append(float(v))
        weights = _get(rec, "label_weights", list, path, line, required=False)
        labels = StepLabels(
            values=values,
            source=_get(rec, "label_source", str, path, line),
            soft=_get(rec, "soft_labels", bool, path, line, required=False, default=False),
            policy_tokens=_get(rec, "label_policy_tokens", int, path, line, required=False, default=0),
            rollouts=_get(rec, "label_rollouts", int, path, line, required=False, default=0),
            token_passes=_get(rec, "label_token_passes", int, path, line, required=False, default=0),
            weights=None if weights is None else [float(w) for w in weights],
        )
    elif raw is not None and traj.oracle_labels is None:
        # A plain stepwise-supervision file (e.g. exported by TRL tooling): its labels are the oracle.
        for i, v in enumerate(raw):
            if not isinstance(v, bool):
                raise RecordError(path, line, f"labels[{i}]", f"expected bool, got {type(v).__name__}")
        if len(raw) != len(steps):
            raise RecordError(path, line, "labels", f"{len(raw)} labels for {len(steps)} steps")
        traj.oracle_labels = list(raw)
    return traj, labels


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line; bad JSON names file and line."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(path, n, None, f"invalid JSON ({e.msg} at column {e.colno})") from None


def read_trajectories(path: str | os.PathLike) -> list[tuple[Trajectory, StepLabels | None]]:
    """Read a stepwise-supervision JSONL file written by :func:`write_trajectories` (or TRL)."""
    return [record_to_trajectory(obj, path, n) for n, obj in iter_jsonl(path)]


def _umask() -> int:
    """The process's umask, read without setting it (Linux's /proc), else set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so a reader never sees half a file: temp file, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_strict_json(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None (numpy scalars and arrays made plain), so
    any JSON parser reads the result."""
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: to_strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict_json(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """The one JSON writer: atomic, and NaN/inf written as ``null`` (strict JSON)."""
    atomic_write_text(path, json.dumps(to_strict_json(obj), indent=indent, default=str))


def write_trajectories(
    path: str | os.PathLike,
    trajectories: Iterable[Trajectory],
    labels: Iterable[StepLabels | None] | None = None,
) -> None:
    """Write trajectories (with optional labels) as stepwise-supervision JSONL, atomically."""
    trajs = list(trajectories)
    labs = [None] * len(trajs) if labels is None else list(labels)
    if len(labs) != len(trajs):
        raise ValueError(f"{len(labs)} label sets for {len(trajs)} trajectories")
    lines = [json.dumps(trajectory_to_record(t, l), ensure_ascii=False) for t, l in zip(trajs, labs)]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
