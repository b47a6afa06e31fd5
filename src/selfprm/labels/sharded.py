"""Labeling in shards that survive interruption.

A label job over a large pool writes one shard per slice of trajectories, each atomically (temp
file, then rename) and only after the slice is fully labelled. A rerun loads finished shards and
labels only the rest, so a job stopped at any point loses at most the shard in flight.
"""

from __future__ import annotations

import json
import time
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
    key: str = "",
    seed: int = 0,
) -> LabelResult:
    """Like :func:`run_label_source`, resumable: shard ``i`` lives in ``shard_dir/shard-i.jsonl``.

    ``key`` identifies what produced the shards (pool, source, settings); shards written under
    another key are ignored and overwritten, never mixed in. The policy is reseeded from ``seed``
    and the shard index before each shard, so a redone shard gets the labels it would have got.
    """
    shard_dir = Path(shard_dir)
    labels, seconds = [], 0.0
    for i, start in enumerate(range(0, len(trajectories), shard_size)):
        chunk = trajectories[start:start + shard_size]
        data, meta = shard_dir / f"shard-{i:05d}.jsonl", shard_dir / f"shard-{i:05d}.json"
        done = meta.exists() and data.exists() and json.loads(meta.read_text()).get("key") == key
        if done:
            info = json.loads(meta.read_text())
            # each record holds the trajectory and its labels; a dropped one is stored without
            got = [lab for _, lab in read_trajectories(data)]
            if len(got) != len(chunk):
                done = False
        if not done:
            if policy is not None:
                reseed(policy, seed * 1_000_003 + i)
            res = run_label_source(source, chunk, policy)
            got = res.labels
            write_trajectories(data, chunk, got)
            info = {"key": key, "seconds": res.seconds, "n": len(chunk)}
            atomic_write_text(meta, json.dumps(info))  # the shard counts as done only once this exists
        labels.extend(got)
        seconds += info["seconds"]
    return LabelResult(source.name, labels, seconds, source.prm_loss)
