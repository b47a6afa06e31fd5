"""The in-process engine: one worker, the shards in order, a bar over them."""

from __future__ import annotations

from typing import Any, Sequence

from selfprm.engines.base import ShardJob, ShardWorker


def run_local(job: ShardJob, shards: dict[int, Sequence[Any]], *, progress: bool = True,
              desc: str = "shards") -> dict[int, dict]:
    """Run every shard of ``shards`` (index -> items) in this process; returns index -> info."""
    from tqdm.auto import tqdm

    if not shards:
        return {}
    worker = ShardWorker(job)
    return {i: worker.run(i, shards[i])
            for i in tqdm(sorted(shards), desc=desc, unit="shard", disable=not progress, leave=False)}
