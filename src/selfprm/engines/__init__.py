"""Where sharded work runs: in this process (``local``, the default) or on Ray actors (``ray``).

Labelling and sampling are embarrassingly parallel over problems, and both already run in shards
written atomically with a mark per finished shard (:mod:`selfprm.labels.sharded`,
:mod:`selfprm.studies.generate`). An engine takes a :class:`~selfprm.engines.base.ShardJob` and
the shards still to do and runs them: :func:`~selfprm.engines.local.run_local` one after the other
in this process, :func:`~selfprm.engines.ray_engine.run_on_ray` on actors that each hold a policy
replica. A shard's seed comes from the run's seed and the shard's index, never from where or when
it runs, so both engines write the same shards.
"""

from __future__ import annotations

from typing import Any, Sequence

from selfprm.engines.base import Given, ShardJob, ShardWorker
from selfprm.engines.local import run_local

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "Given", "ShardJob", "ShardWorker", "check_engine", "run_local", "run_shards"]


def check_engine(engine: str, address: str = "", workers: int = 0) -> None:
    """A ValueError naming the flag for an engine setting that cannot work (checked before any work)."""
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise ValueError(f"--address {address!r} is for --engine ray (the engine is {engine!r})")
    if workers < 0:
        raise ValueError(f"--workers must be 0 (one per CPU) or more, got {workers}")


def run_shards(job: ShardJob, shards: dict[int, Sequence[Any]], *, engine: str = "local", address: str = "",
               workers: int = 0, progress: bool = True, desc: str = "shards") -> dict[int, dict]:
    """Run the shards (index -> items) of ``job`` on ``engine``; returns index -> the shard's info."""
    check_engine(engine, address, workers)
    if engine == "local":
        return run_local(job, shards, progress=progress, desc=desc)
    from selfprm.engines.ray_engine import run_on_ray

    return run_on_ray(job, shards, address=address, workers=workers, progress=progress, desc=desc)
