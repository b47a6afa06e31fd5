"""The Ray engine: shards handed to actors that each hold a policy replica, resumable after kills.

Each actor is a :class:`~selfprm.engines.base.ShardWorker` built from the job, which the driver
puts into the object store once; the actor loads its policy in its constructor, so a policy is
loaded once per actor, not per shard. The driver keeps at most one shard in flight per actor and
hands an actor its next shard as soon as it answers, so a slow shard holds up only its own actor.

Surviving kills, the two cases of issue 14:

* **a worker is killed** (SIGKILL, OOM): the actor is restarted by Ray (``max_restarts=-1``,
  loading its policy again) and the driver resubmits the shard it was working on. Ray's own task
  retries are off (``max_task_retries=0``) so the driver sees each death and can give up on a
  shard that kills its worker every time (``retries``) instead of looping on it. A restarting
  actor is probed (a ``pid()`` call) until it answers, and only then handed a shard: a call that
  meets an actor mid-restart fails at once, and must not count as a try of the shard.
* **the driver is killed**: its actors go with it (they are not detached), and a rerun of the same
  command resumes: every shard is written atomically and marked finished only afterwards, the
  finished ones are not handed out again, and a worker handed a finished shard reads it back.

Ray is imported only here and only when this engine is used; without it the error names the
extra to install.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter, deque
from typing import Any, Iterator, Sequence

from selfprm.engines.base import ShardJob, ShardWorker

INSTALL_HINT = "pip install 'selfprm[ray]'"
PROBE_INTERVAL = 0.2  # seconds between asking a restarting actor whether it is back


def import_ray():
    """The ``ray`` module, or an ImportError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str = "", num_cpus: int | None = None) -> Iterator[Any]:
    """Ray, connected: the session already open in this process if there is one (left open), else
    the cluster at ``address``, else a local one with ``num_cpus`` CPUs (both shut down after)."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def run_on_ray(job: ShardJob, shards: dict[int, Sequence[Any]], *, address: str = "", workers: int = 0,
               retries: int = 3, restart_timeout: float = 300.0, progress: bool = True,
               desc: str = "shards") -> dict[int, dict]:
    """Run every shard of ``shards`` (index -> items) on Ray actors; returns index -> info.

    ``workers`` actors (0: one per CPU of the cluster), each one CPU; a local cluster is started
    with ``workers`` CPUs when there is no ``address``. A shard whose worker dies more than
    ``retries`` times is an error naming it, and so is a worker that is not back within
    ``restart_timeout`` seconds; an error raised by the job itself is raised here as the job raised it.
    """
    from tqdm.auto import tqdm

    if not shards:
        return {}
    with ray_session(address, workers or None) as ray:
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor_cls = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(ShardWorker)
        # the job goes inline with each actor's creation (small: a spec, or a tiny in-memory policy),
        # so a restarted actor never depends on an object-store copy that may be gone
        actors = [actor_cls.remote(job) for _ in range(min(n, len(shards)))]
        todo, tries, done = deque(sorted(shards)), Counter(), {}
        # ref -> (shard, actor, since): shard None for a probe of an actor restarting since `since`
        running: dict[Any, tuple[int | None, Any, float | None]] = {}
        probe_at: list[tuple[float, Any, float]] = []  # (when, actor, since): actors being restarted

        def submit(actor) -> None:
            if todo:
                i = todo.popleft()
                tries[i] += 1
                running[actor.run.remote(i, shards[i])] = (i, actor, None)

        try:
            with tqdm(total=len(shards), desc=desc, unit="shard", disable=not progress, leave=False) as bar:
                for actor in actors:  # calls on an actor still being created wait for it
                    submit(actor)
                while running or (todo and probe_at):
                    now = time.monotonic()
                    for item in [p for p in probe_at if p[0] <= now]:
                        probe_at.remove(item)
                        _, actor, since = item
                        running[actor.pid.remote()] = (None, actor, since)
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=PROBE_INTERVAL)
                    if not ready:
                        continue
                    i, actor, since = running.pop(ready[0])
                    try:  # a probe (i None) answers once its actor is back
                        result = ray.get(ready[0])
                    except RayTaskError as e:  # the job failed: no retry makes it pass
                        raise e.as_instanceof_cause() from None
                    except (RayActorError, WorkerCrashedError) as e:
                        if getattr(e, "actor_init_failed", False):  # the policy cannot be loaded at all
                            raise RuntimeError(f"{desc}: a worker could not start: {e}") from None
                        if i is not None:  # the worker died during shard i: it goes back in the queue
                            if tries[i] > retries:
                                raise RuntimeError(f"{desc}: shard {i} lost its worker {tries[i]} times; "
                                                   f"giving up (last: {e})") from None
                            todo.appendleft(i)
                        since = since if since is not None else time.monotonic()
                        if time.monotonic() - since > restart_timeout:
                            raise RuntimeError(f"{desc}: a worker has not come back in {restart_timeout:.0f} s "
                                               f"(last: {e})") from None
                        # only an actor known to be back gets a shard, so a restart is not a try
                        probe_at.append((time.monotonic() + PROBE_INTERVAL, actor, since))
                        continue
                    if i is not None:
                        done[i] = result
                        bar.update(1)
                    submit(actor)
        finally:
            for actor in actors:  # their policies' memory is freed now, not when the session ends
                ray.kill(actor, no_restart=True)
    return done
