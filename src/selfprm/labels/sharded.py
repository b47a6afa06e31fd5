"""Labeling in shards that survive interruption.

A label job over a large pool writes one shard per slice of trajectories, each atomically (temp
file, then rename) and only after the slice is fully labelled. A rerun loads finished shards and
labels only the rest, so a job stopped at any point loses at most the shard in flight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from selfprm.labels.base import LabelResult, LabelSource, run_label_source
from selfprm.policies.base import Policy, reseed
from selfprm.types import Trajectory, atomic_write_text, read_trajectories, write_trajectories


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
    written atomically; then ``shard-i.json`` (its seconds and size) is written atomically too,
    and only that file marks the shard finished. A rerun loads every finished shard whose size
    still matches its slice and labels the rest.

    ``shard_dir`` must belong to one configuration (pool, source, settings, ``shard_size``,
    ``seed``): nothing here checks that the shards on disk were made by the same one, so the
    caller keeps the folder in a stage that is wiped whenever its configuration changes.

    The policy is reseeded before each shard it labels, from ``seed`` and the shard index
    (``seed * 1_000_003 + i``), so a redone shard gets the labels it would have got in one run.
    ``progress`` goes to each shard's ``label()``.
    """
    shard_dir = Path(shard_dir)
    labels, seconds, policy_passes = [], 0.0, 0
    for i, start in enumerate(range(0, len(trajectories), shard_size)):
        chunk = trajectories[start:start + shard_size]
        data, meta = shard_dir / f"shard-{i:05d}.jsonl", shard_dir / f"shard-{i:05d}.json"
        got = None
        if meta.exists() and data.exists():
            info = json.loads(meta.read_text())
            # each record holds the trajectory and its labels; a dropped one is stored without
            got = [lab for _, lab in read_trajectories(data)]
            if info.get("n") != len(chunk) or len(got) != len(chunk):
                got = None
        if got is None:
            if policy is not None:
                reseed(policy, seed * 1_000_003 + i)
            res = run_label_source(source, chunk, policy, progress=progress)
            got = res.labels
            write_trajectories(data, chunk, got)
            info = {"seconds": res.seconds, "n": len(chunk), "policy_passes": res.policy_passes}
            atomic_write_text(meta, json.dumps(info))  # the shard counts as done only once this exists
        labels.extend(got)
        seconds += info["seconds"]
        policy_passes += info.get("policy_passes", 0)
    return LabelResult(source.name, labels, seconds, source.prm_loss, policy_passes)
