"""Labeling in shards that survive interruption.

A label job over a large pool writes one shard per slice of trajectories, each atomically (temp
file, then rename) and only after the slice is fully labelled. A rerun loads finished shards and
labels only the rest, so a job stopped at any point loses at most the shard in flight.

:func:`label_shard` is the one body of a shard: the in-process loop here calls it, and so does
every engine (:class:`selfprm.engines.jobs.LabelShards`), so both write the same files with the
same seeds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from selfprm.labels.base import LabelResult, LabelSource, run_label_source
from selfprm.policies.base import Policy, reseed
from selfprm.types import StepLabels, Trajectory, atomic_write_text, read_trajectories, write_trajectories


def shard_seed(seed: int, i: int) -> int:
    """The policy's seed for shard ``i``: from the run's seed and the index, never from where or
    when the shard runs, so a redone shard gets the labels it would have got in one run."""
    return seed * 1_000_003 + i


def label_shard_paths(shard_dir: str | Path, i: int) -> tuple[Path, Path]:
    """Shard ``i``'s data (``shard-i.jsonl``) and its mark (``shard-i.json``)."""
    shard_dir = Path(shard_dir)
    return shard_dir / f"shard-{i:05d}.jsonl", shard_dir / f"shard-{i:05d}.json"


def finished_label_shard(shard_dir: str | Path, i: int, n: int) -> dict | None:
    """Shard ``i``'s mark (``seconds``, ``n``, ``policy_passes``) when it is finished for a slice of
    ``n`` trajectories: both files there and the mark's size right; else None."""
    data, mark = label_shard_paths(shard_dir, i)
    if not (data.exists() and mark.exists()):
        return None
    info = json.loads(mark.read_text())
    return info if info.get("n") == n else None


def label_shard(source: LabelSource, policy: Policy | None, items: Sequence[Trajectory], shard_dir: str | Path,
                i: int, seed: int, *, progress: bool = False) -> tuple[dict, list[StepLabels | None] | None]:
    """Label shard ``i`` (``items``) unless it is already finished; returns its mark's info and the
    labels it made (None for a shard found finished, which is left as it is, not redone).

    The policy is reseeded to :func:`shard_seed` first; the slice with its labels is written
    atomically, then the mark, and only the mark says the shard is done."""
    info = finished_label_shard(shard_dir, i, len(items))
    if info is not None:
        return info, None
    if policy is not None:
        reseed(policy, shard_seed(seed, i))
    res = run_label_source(source, list(items), policy, progress=progress)
    data, mark = label_shard_paths(shard_dir, i)
    write_trajectories(data, items, res.labels)
    info = {"seconds": res.seconds, "n": len(items), "policy_passes": res.policy_passes}
    atomic_write_text(mark, json.dumps(info))  # the shard counts as done only once this exists
    return info, res.labels


def run_label_source_sharded(
    source: LabelSource,
    trajectories: Sequence[Trajectory],
    policy: Policy | None,
    shard_dir: str | Path,
    shard_size: int = 256,
    seed: int = 0,
    *,
    progress: bool = False,
) -> LabelResult:
    """Like :func:`run_label_source`, resumable: shard ``i`` lives in ``shard_dir/shard-i.jsonl``.

    Shard ``i`` holds trajectories ``[i * shard_size, (i + 1) * shard_size)`` with their labels,
    labelled by :func:`label_shard` unless a finished one is on disk (a shard whose data does not
    hold its slice's size is relabelled). ``shard_dir`` must belong to one configuration (pool,
    source, settings, ``shard_size``, ``seed``): nothing here checks that the shards on disk were
    made by the same one, so the caller keeps the folder in a stage that is wiped whenever its
    configuration changes. ``progress`` goes to each shard's ``label()``.
    """
    labels, seconds, policy_passes = [], 0.0, 0
    for i, start in enumerate(range(0, len(trajectories), shard_size)):
        chunk = trajectories[start:start + shard_size]
        data, mark = label_shard_paths(shard_dir, i)
        info = finished_label_shard(shard_dir, i, len(chunk))
        # each record holds the trajectory and its labels; a dropped one is stored without
        got = [lab for _, lab in read_trajectories(data)] if info is not None else None
        if got is None or len(got) != len(chunk):
            mark.unlink(missing_ok=True)  # a short data file: the shard is not finished after all
            # labelled now: the labels as the source made them (the file keeps hard ones as booleans)
            info, got = label_shard(source, policy, chunk, shard_dir, i, seed, progress=progress)
        labels.extend(got)
        seconds += info["seconds"]
        policy_passes += info.get("policy_passes", 0)
    return LabelResult(source.name, labels, seconds, source.prm_loss, policy_passes)
