"""Labelling on Ray against in process, and what kills cost (issue 14, part 1).

Throughput (default): the same ``selfprm label --source mc`` job (Math-Shepherd rollouts from a tiny
untrained HF policy saved to disk, as a user's ``hf:PATH``) run side by side in one process: in
process, then on a local Ray (2 CPUs) with 1 and with 2 workers. Prints seconds, solutions per
second and the ratios to in process, whether the labels are identical, and where Ray's time goes:
cluster start-up, actor start-up (imports and policy load, per run), the per-shard round trip
(measured on shards already finished, so no work is in it) and serialisation of the job and a shard.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_labeling.py [--trajectories 128] [--out r.json]

Kills (``--kills N``, N >= 5 for the note): the same job with N shard workers SIGKILLed at random
points, and separately the driver (a subprocess) SIGKILLed N times and then resumed; prints shards
finished / redone / lost and whether the labels equal the uninterrupted in-process run's.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_labeling.py --kills 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_inputs(root: Path, n: int, seed: int) -> None:
    """A saved tiny policy and ``n`` worked solutions (every other one with a wrong answer)."""
    from selfprm.domains import ArithDomain
    from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
    from selfprm.types import write_trajectories

    domain = ArithDomain()
    tok = build_char_tokenizer(domain.charset())
    build_tiny_lm(tok, TinyLMConfig(n_layer=2, n_head=2, n_embd=64, n_positions=128), seed=seed).save_pretrained(root / "policy")
    tok.save_pretrained(root / "policy")
    rng, trajs = np.random.default_rng(seed), []
    for i, p in enumerate(domain.sample_problems(n, seed=seed)):
        steps, answer = domain.worked_solution(p, rng)
        trajs.append(domain.make_trajectory(p, steps, answer if i % 2 else "x", tokens_generated=len(steps)))
    write_trajectories(root / "traj.jsonl", trajs)


def label_args(root: Path, out: Path, args, *extra: str) -> list[str]:
    return ["label", "--source", "mc", "--source-kwargs", json.dumps({"n_rollouts": args.rollouts}),
            "--policy", f"hf:{root / 'policy'}", "--in", str(root / "traj.jsonl"), "--out", str(out),
            "--shard-size", str(args.shard_size), "--domain", "arith", "--max-new-tokens", str(args.max_new_tokens),
            "--no-progress", *extra]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def pickle_cost(cloudpickle, obj) -> tuple[int, float]:
    """Bytes and seconds of one round trip through Ray's pickler (what a task argument costs)."""
    t0 = time.perf_counter()
    blob = cloudpickle.dumps(obj)
    cloudpickle.loads(blob)
    return len(blob), time.perf_counter() - t0


def throughput(root: Path, args, ray_init_s: float) -> dict:
    import ray
    import ray.cloudpickle as cloudpickle

    from selfprm.cli import main
    from selfprm.engines import ShardWorker
    from selfprm.engines.jobs import LabelShards
    from selfprm.studies.generate import PolicySpec
    from selfprm.types import read_trajectories

    runs = {}
    for name, extra in (("in-process", ("--engine", "local")), ("ray, 1 worker", ("--engine", "ray", "--workers", "1")),
                        ("ray, 2 workers", ("--engine", "ray", "--workers", "2"))):
        out = root / f"{name.replace(' ', '_').replace(',', '')}.jsonl"
        cost, wall = timed(lambda: main(label_args(root, out, args, *extra)))
        runs[name] = {"wall_s": wall, "compute_s": cost["seconds"], "solutions_per_s": cost["solutions"] / wall,
                      "identical": out.read_text() == (root / "in-process.jsonl").read_text(), "out": out}
    base = runs["in-process"]["solutions_per_s"]
    for r in runs.values():
        r["ratio_to_in_process"] = r["solutions_per_s"] / base
    # where Ray's time goes, on the engine's own primitives: one actor (a ShardWorker) created and
    # asked its pid (start-up: imports and policy load), then handed every shard again; they are
    # finished, so each call is read back, not redone: a round trip with no work in it
    trajs = [t for t, _ in read_trajectories(root / "traj.jsonl")]
    chunks = {i: trajs[s:s + args.shard_size] for i, s in enumerate(range(0, len(trajs), args.shard_size))}
    job = LabelShards("mc", {"n_rollouts": args.rollouts}, str(runs["ray, 1 worker"]["out"]) + ".shards", 0,
                      PolicySpec(f"hf:{root / 'policy'}", "arith", None, 1.0, args.max_new_tokens, 0))
    actor = ray.remote(num_cpus=1)(ShardWorker).remote(job)
    _, startup = timed(lambda: ray.get(actor.pid.remote()))
    _, trips = timed(lambda: [ray.get(actor.run.remote(i, c)) for i, c in chunks.items()])
    ray.kill(actor)
    per_shard = trips / len(chunks)
    (job_b, t_job), (shard_b, t_shard) = (pickle_cost(cloudpickle, o) for o in (job, chunks[0]))
    for r in runs.values():
        r.pop("out")
    return {"runs": runs, "shards": len(chunks), "solutions": len(trajs),
            "ray_init_s": ray_init_s, "actor_startup_s": startup, "per_shard_overhead_s": per_shard,
            "job_bytes": job_b, "job_pickle_s": t_job, "shard_bytes": shard_b, "shard_pickle_s": t_shard}


def kills(root: Path, args, address: str) -> dict:
    from selfprm.cli import main
    from selfprm.engines.faults import run_with_driver_kills, run_with_worker_kills

    n_shards = -(-args.trajectories // args.shard_size)
    reference = root / "reference.jsonl"
    main(label_args(root, reference, args, "--engine", "local"))
    res = {}
    out = root / "worker_kills.jsonl"
    res["worker"] = run_with_worker_kills(lambda: main(label_args(root, out, args, "--engine", "ray", "--workers", "2")),
                                          str(out) + ".shards", n_shards, args.kills, random.Random(args.seed))
    res["worker"]["identical"] = out.read_text() == reference.read_text()
    out = root / "driver_kills.jsonl"
    ray_args = label_args(root, out, args, "--engine", "ray", "--address", address, "--workers", "2")
    argv = [sys.executable, "-c", "import sys; from selfprm.cli import main; main(sys.argv[1:])", *ray_args]
    res["driver"] = run_with_driver_kills(argv, lambda: main(ray_args), str(out) + ".shards", n_shards, args.kills,
                                          random.Random(args.seed + 1), env={**os.environ, "OMP_NUM_THREADS": "1"})
    res["driver"]["identical"] = out.read_text() == reference.read_text()
    return {"shards": n_shards, "kills_asked": args.kills, **res}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trajectories", type=int, default=128)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--rollouts", type=int, default=4, help="mc rollouts per step")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--kills", type=int, default=0, help="run the fault counts with N kills of each kind (N >= 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as each one-CPU actor runs; the labels then match bit for bit
    import ray

    with tempfile.TemporaryDirectory(prefix="ray_labeling_") as tmp:
        root = Path(tmp)
        make_inputs(root, args.trajectories, args.seed)
        ctx, init_s = timed(lambda: ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024 ** 2,
                                             log_to_driver=False))
        try:
            res = kills(root, args, ctx.address_info["gcs_address"]) if args.kills else throughput(root, args, init_s)
        finally:
            ray.shutdown()
    res["machine"] = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    print(f"# ray_labeling: {args.trajectories} solutions, mc with {args.rollouts} rollouts, shards of "
          f"{args.shard_size}; {res['machine']}")
    if args.kills:
        for kind in ("worker", "driver"):
            r = res[kind]
            print(f"{kind} killed {r['kills']} times: {r['finished']} of {res['shards']} shards finished, "
                  f"{r['redone']} redone, {r['lost']} lost, labels identical to an uninterrupted run: {r['identical']}")
    else:
        for name, r in res["runs"].items():
            print(f"{name:15s} {r['wall_s']:7.2f} s wall ({r['compute_s']:6.2f} s labelling), "
                  f"{r['solutions_per_s']:6.2f} solutions/s, x{r['ratio_to_in_process']:.2f} of in-process, "
                  f"identical labels: {r['identical']}")
        print(f"ray start-up (local cluster, 2 CPUs): {res['ray_init_s']:.2f} s, once per session")
        print(f"actor start-up (imports + policy load): {res['actor_startup_s']:.2f} s per run")
        print(f"per-shard overhead (round trip, no work): {1000 * res['per_shard_overhead_s']:.1f} ms "
              f"over {res['shards']} shards")
        print(f"serialisation: job {res['job_bytes']} B ({1000 * res['job_pickle_s']:.2f} ms), "
              f"one shard {res['shard_bytes']} B ({1000 * res['shard_pickle_s']:.2f} ms)")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
