"""Label shards as a :class:`~selfprm.engines.base.ShardJob`, in the layout of
:func:`selfprm.labels.sharded.run_label_source_sharded`: ``shard-i.jsonl`` (the slice with its
labels) and then ``shard-i.json`` (``seconds``, ``n``, ``policy_passes``), both atomic, the policy
reseeded to ``seed * 1_000_003 + i`` first. A folder the engines filled is therefore one that
``run_label_source_sharded`` reads back whole, which is how the callers merge it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from selfprm.types import Trajectory


def label_shard_paths(shard_dir: str | Path, i: int) -> tuple[Path, Path]:
    shard_dir = Path(shard_dir)
    return shard_dir / f"shard-{i:05d}.jsonl", shard_dir / f"shard-{i:05d}.json"


def finished_label_shard(shard_dir: str | Path, i: int, n: int) -> dict | None:
    """Shard ``i``'s info when it is finished for a slice of ``n`` trajectories (as the sharded
    runner decides it: both files there, the mark's size right)."""
    data, mark = label_shard_paths(shard_dir, i)
    if not (data.exists() and mark.exists()):
        return None
    info = json.loads(mark.read_text())
    return info if info.get("n") == n else None


def pending_label_shards(trajectories: Sequence[Trajectory], shard_dir: str | Path,
                         shard_size: int) -> dict[int, list[Trajectory]]:
    """The slices (index -> trajectories) not yet finished in ``shard_dir``."""
    chunks = [list(trajectories[s:s + shard_size]) for s in range(0, len(trajectories), shard_size)]
    return {i: c for i, c in enumerate(chunks) if finished_label_shard(shard_dir, i, len(c)) is None}


@dataclass
class LabelShards:
    """Label shards of one source with one policy (``policy()`` builds it; None: a source that
    needs none)."""

    source: str
    source_kwargs: dict[str, Any]
    shard_dir: str
    seed: int
    policy: Callable[[], Any] | None = None

    def setup(self) -> tuple[Any, Any]:
        from selfprm.labels import get_label_source

        return get_label_source(self.source, **self.source_kwargs), (self.policy() if self.policy else None)

    def run(self, state: tuple[Any, Any], i: int, items: Sequence[Trajectory]) -> dict:
        from selfprm.labels.base import run_label_source
        from selfprm.policies.base import reseed
        from selfprm.types import atomic_write_text, write_trajectories

        info = finished_label_shard(self.shard_dir, i, len(items))
        if info is not None:  # handed out again after its mark was written: read back, not redone
            return info
        source, policy = state
        if policy is not None:
            reseed(policy, self.seed * 1_000_003 + i)  # as run_label_source_sharded seeds shard i
        res = run_label_source(source, list(items), policy)
        data, mark = label_shard_paths(self.shard_dir, i)
        write_trajectories(data, items, res.labels)
        info = {"seconds": res.seconds, "n": len(items), "policy_passes": res.policy_passes}
        atomic_write_text(mark, json.dumps(info))  # the shard counts as done only once this exists
        return info
