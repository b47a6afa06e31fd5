"""Label shards as a :class:`~selfprm.engines.base.ShardJob`: each shard is
:func:`selfprm.labels.sharded.label_shard`, the body the in-process
:func:`~selfprm.labels.sharded.run_label_source_sharded` runs too (same files, same seeds), so a
folder the engines filled is one that ``run_label_source_sharded`` reads back whole, which is how
the callers merge it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from selfprm.labels.sharded import finished_label_shard, label_shard
from selfprm.types import Trajectory


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
        source, policy = state
        return label_shard(source, policy, items, self.shard_dir, i, self.seed)[0]
