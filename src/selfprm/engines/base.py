"""What every engine runs: a job cut into shards, and a worker that holds the job's state.

A :class:`ShardJob` knows how to set up what its shards share (the policy, loaded once per
worker) and how to do one shard: compute it, write it atomically (temp file, then rename) and
only then write its mark, the small JSON that says the shard is finished. A shard whose mark is
already there is read back, never redone, so a job handed a finished shard twice (a worker killed
after writing its mark but before its answer reached the driver) does no work twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence


class ShardJob(Protocol):
    """The work of one run, shard by shard (picklable: the Ray engine ships it to its actors)."""

    def setup(self) -> Any:
        """Once per worker: the state every shard reuses (a policy replica, a label source)."""

    def run(self, state: Any, i: int, items: Sequence[Any]) -> dict:
        """Shard ``i`` of ``items``: written atomically, then marked finished; returns the mark's
        info. A shard already marked finished is returned as it is, not redone."""


class ShardWorker:
    """A job's state across shards: set up once at construction, then one :meth:`run` per shard.

    In process it is one object; on Ray each actor is one, so a policy is loaded once per actor
    (and once more only when a killed actor is restarted), never per shard."""

    def __init__(self, job: ShardJob):
        self.job = job
        self.state = job.setup()

    def run(self, i: int, items: Sequence[Any]) -> dict:
        return self.job.run(self.state, i, items)

    def pid(self) -> int:
        """The worker's process id (the fault test kills it by this)."""
        return os.getpid()


@dataclass(frozen=True)
class Given:
    """A factory for an object already built (a study's in-memory policy): the Ray engine pickles
    it once into the object store and each actor unpickles its own replica."""

    value: Any

    def __call__(self) -> Any:
        return self.value


PolicyFactory = Callable[[], Any]
