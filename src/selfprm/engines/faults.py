"""Fault injection for the engines' resume guarantee (issue 14): kill workers or the driver with
SIGKILL at random points of a sharded run, and count what that cost.

A :class:`ShardWatch` follows a shard folder from the outside: the first time it sees each
shard's mark it records the file's identity (inode, mtime, content); a mark that later changes was
rewritten, i.e. a finished shard was redone. The counts of issue 14 follow from it: finished
(marks at the end), redone (marks rewritten after they first appeared), lost (shards without a
mark at the end). The test suite and ``benchmarks/ray_labeling.py`` both use these helpers.

Only processes this process started are ever signalled: workers are looked up among its own
descendants (a local Ray started by ``ray.init`` is a child of its driver), the driver is a
subprocess it launched.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

WORKER_TITLE = "ray::ShardWorker"  # Ray names an actor's process after its class


class ShardWatch(threading.Thread):
    """Polls ``shard_dir`` for ``shard-*.json`` marks; :attr:`redone` names the marks rewritten."""

    def __init__(self, shard_dir: str | Path, interval: float = 0.02):
        super().__init__(daemon=True)
        self.shard_dir, self.interval = Path(shard_dir), interval
        self.first: dict[str, tuple] = {}
        self.redone: set[str] = set()
        self._halt = threading.Event()

    def _identity(self, path: Path) -> tuple | None:
        try:
            st = path.stat()
            return st.st_ino, st.st_mtime_ns, path.read_bytes()
        except FileNotFoundError:  # replaced between the listing and the read
            return None

    def poll(self) -> None:
        for path in self.shard_dir.glob("shard-*.json"):
            ident = self._identity(path)
            if ident is None:
                continue
            if path.name not in self.first:
                self.first[path.name] = ident
            elif ident != self.first[path.name]:
                self.redone.add(path.name)

    def run(self) -> None:
        while not self._halt.is_set():
            self.poll()
            time.sleep(self.interval)

    def finished(self) -> int:
        return len(self.first)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.poll()  # the last word: what is on disk now

    def counts(self, n_shards: int) -> dict[str, int]:
        """``finished``, ``redone`` (finished shards written again) and ``lost`` (never finished)."""
        done = {f"shard-{i:05d}.json" for i in range(n_shards)}
        have = {p.name for p in self.shard_dir.glob("shard-*.json")}
        return {"finished": len(done & have), "redone": len(self.redone), "lost": len(done - have)}


def worker_pids(root: int | None = None) -> list[int]:
    """Pids of the Ray shard workers among the descendants of ``root`` (this process)."""
    import psutil

    out = []
    for proc in psutil.Process(root or os.getpid()).children(recursive=True):
        try:
            cmd = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if cmd and cmd[0].startswith(WORKER_TITLE) and proc.status() != psutil.STATUS_ZOMBIE:
            out.append(proc.pid)
    return out


def wait_until(cond, timeout: float, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(interval)
    return cond()


def random_targets(rng: random.Random, n_kills: int, n_shards: int) -> list[int]:
    """Increasing counts of finished shards at which to kill, drawn from the first half of the run
    (a kill can land before the first shard finishes, even while a worker loads its policy; with
    half the shards still to do, the run cannot end before the kill lands)."""
    return sorted(rng.randrange(0, max(1, n_shards // 2)) for _ in range(n_kills))


def kill_workers(watch: ShardWatch, targets: Sequence[int], rng: random.Random, done: threading.Event,
                 root: int | None = None, max_delay: float = 0.3) -> list[int]:
    """For each target: once ``target`` shards are finished, wait a random moment (mid-shard) and
    SIGKILL one random live shard worker. Stops early when ``done`` is set. Returns the pids killed."""
    killed = []
    for target in targets:
        if not wait_until(lambda: watch.finished() >= target or done.is_set(), timeout=600):
            break
        if done.is_set():
            break
        time.sleep(rng.uniform(0, max_delay))
        if not wait_until(lambda: bool(worker_pids(root)) or done.is_set(), timeout=60) or done.is_set():
            break
        pid = rng.choice(worker_pids(root))
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:  # it went on its own between the listing and the kill
            continue
        # the next kill waits for the restart, so two kills are two faults, not one
        wait_until(lambda: pid not in worker_pids(root), timeout=30)
    return killed


def kill_driver(argv: Sequence[str], watch: ShardWatch, targets: Sequence[int], rng: random.Random,
                env: dict | None = None, max_delay: float = 0.3, timeout: float = 300) -> int:
    """Run ``argv`` (a driver) once per target and SIGKILL it once ``target`` shards are finished
    (after a random moment); the driver's actors go with it and are awaited before the next run.
    Returns the kills made (a run that finished before its target was not killed)."""
    kills = 0
    for target in targets:
        proc = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_until(lambda: watch.finished() >= target or proc.poll() is not None, timeout=timeout)
            time.sleep(rng.uniform(0, max_delay))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)  # the driver alone; its actors die with its job
                kills += 1
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # a second driver must not meet the first one's actors still writing
        wait_until(lambda: not worker_pids(), timeout=60)
    return kills


def run_with_worker_kills(run: Callable[[], Any], shard_dir: str | Path, n_shards: int, n_kills: int,
                          rng: random.Random) -> dict[str, Any]:
    """``run()`` (a Ray-engine run driven from this process) while ``n_kills`` shard workers are
    SIGKILLed at random points; returns ``kills`` and the :meth:`ShardWatch.counts`."""
    watch, done, killed = ShardWatch(shard_dir), threading.Event(), []
    targets = random_targets(rng, n_kills, n_shards)
    killer = threading.Thread(target=lambda: killed.extend(kill_workers(watch, targets, rng, done)), daemon=True)
    watch.start()
    killer.start()
    try:
        run()
    finally:
        done.set()
        killer.join()
        watch.stop()
    return {"kills": len(killed), **watch.counts(n_shards)}


def run_with_driver_kills(argv: Sequence[str], resume: Callable[[], Any], shard_dir: str | Path, n_shards: int,
                          n_kills: int, rng: random.Random, env: dict | None = None) -> dict[str, Any]:
    """The driver ``argv`` SIGKILLed ``n_kills`` times at random points, then ``resume()`` (the same
    run, uninterrupted); returns ``kills``, ``finished_before_resume`` and the counts."""
    watch = ShardWatch(shard_dir)
    watch.start()
    try:
        kills = kill_driver(argv, watch, random_targets(rng, n_kills, n_shards), rng, env=env)
        before = watch.finished()
        resume()
    finally:
        watch.stop()
    return {"kills": kills, "finished_before_resume": before, **watch.counts(n_shards)}
