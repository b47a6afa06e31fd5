"""Reward server under load: concurrent clients against the batching server and against ``batch_size=1``.

Both servers run side by side in one process on the same tiny PRM (built from a config, untrained:
weights do not change the cost) and the same queries: arith worked solutions as OpenRLHF would
send them (``query`` = prompt + steps, ``prompts`` = the prompt). ``--clients`` threads post
``--requests`` requests to each server, one query per request, ``--repeats`` times with the servers
alternating; all runs together stop at ``--seconds``. Prints requests/second, p50/p99 latency and
errors of each server's best run, the errors of all runs, and the throughput ratio; ``--out FILE``
writes every run's figures as JSON.

The clients run in the same process as the servers and share its interpreter lock, so the absolute
rates are a floor; the ratio is what the script is for. The PRM is tiny, so a forward pass costs
little next to the HTTP work: the ratio here understates what batching gains on a large PRM.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reward_server_load.py [--requests 400] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from selfprm.domains import ArithDomain
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
from selfprm.prm import PRMConfig, ProcessRewardModel
from selfprm.serving.reward_server import build_reward_server
from selfprm.serving.verl_reward import RemoteRewardClient


def tiny_prm(seed: int = 0) -> tuple[ProcessRewardModel, ArithDomain]:
    """An untrained PRM on the embedded tiny Llama and char tokenizer: nothing downloaded."""
    domain = ArithDomain()
    tok = build_char_tokenizer(domain.charset())
    lm_config = TinyLMConfig()
    prm = ProcessRewardModel(build_tiny_lm(tok, lm_config, seed=seed), tok,
                             PRMConfig(step_separator="\n", max_length=lm_config.n_positions))
    return prm.eval(), domain


def arith_queries(domain: ArithDomain, n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``(prompt, query)`` pairs: a worked solution per problem, steps one a line."""
    rng = np.random.default_rng(seed)
    out = []
    for p in domain.sample_problems(n, seed=seed):
        steps, _ = domain.worked_solution(p, rng)
        out.append((p.prompt, p.prompt + "\n" + "\n".join(steps) + "\n"))
    return out


def load_test(url: str, items: Sequence[tuple[str, str]], requests: int, clients: int, seconds: float,
              timeout: float = 60.0) -> dict:
    """``requests`` posts of one query each from ``clients`` threads (stopping at ``seconds``).

    A request counts as an error when it raises or its reply does not hold one reward.
    """
    client = RemoteRewardClient(url, timeout=timeout, retries=0)  # an error is counted, not retried
    lock = threading.Lock()
    next_index = [0]
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                if i >= requests:
                    return
                next_index[0] += 1
            prompt, query = items[i % len(items)]
            t0 = time.perf_counter()
            try:
                if len(client.rewards([query], [prompt])) != 1:
                    raise ValueError("reply does not hold one reward")
            except Exception as e:  # noqa: BLE001 - counted and reported, the load goes on
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                continue
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(worker) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    done = len(latencies) + len(errors)
    return {"requests": done, "ok": len(latencies), "errors": len(errors), "first_errors": errors[:3],
            "seconds": wall, "rps": len(latencies) / wall if wall > 0 else 0.0,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


class _Serving:
    """A reward server on loopback, serving from a thread until ``close``."""

    def __init__(self, prm: ProcessRewardModel, batch_size: int, max_wait_ms: float):
        self.server = build_reward_server(prm, "127.0.0.1", 0, batch_size=batch_size, max_wait_ms=max_wait_ms)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400, help="requests per server per repeat")
    ap.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    ap.add_argument("--repeats", type=int, default=3, help="load runs per server, alternating servers")
    ap.add_argument("--seconds", type=float, default=120.0, help="cap on all load runs together")
    ap.add_argument("--batch-size", type=int, default=32, help="the batching server's batch_size")
    ap.add_argument("--max-wait-ms", type=float, default=5.0)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.torch_threads)
    prm, domain = tiny_prm()
    items = arith_queries(domain, 64)
    names = {"batch_size=1": 1, f"batch_size={args.batch_size}": args.batch_size}
    servers = {name: _Serving(prm, bs, args.max_wait_ms) for name, bs in names.items()}
    runs: dict[str, list[dict]] = {name: [] for name in names}
    deadline = time.monotonic() + args.seconds
    try:
        for s in servers.values():  # warm-up: first calls pay for lazy initialisation
            warm = RemoteRewardClient(s.server.url, retries=0)
            for prompt, query in items[:4]:
                warm.rewards([query], [prompt])
        left = args.repeats * len(servers)
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            for name, s in servers.items():
                budget = max(0.0, deadline - time.monotonic()) / left
                left -= 1
                before = s.server.stats()
                r = load_test(s.server.url, items, args.requests, args.clients, budget)
                after = s.server.stats()
                r["batches"] = after["batches"] - before["batches"]
                r["queries_per_batch"] = (after["items"] - before["items"]) / max(1, r["batches"])
                runs[name].append(r)
    finally:
        for s in servers.values():
            s.close()
    best = {name: max(rs, key=lambda r: r["rps"]) for name, rs in runs.items()}
    one, many = best["batch_size=1"], best[f"batch_size={args.batch_size}"]
    ratio = many["rps"] / one["rps"] if one["rps"] > 0 else float("nan")
    errors = {name: sum(r["errors"] for r in rs) for name, rs in runs.items()}
    print(f"{args.clients} clients, {args.requests} requests per run, {args.repeats} runs per server "
          f"(cap {args.seconds:g} s), torch threads {args.torch_threads}; the best run of each server:")
    print(f"{'server':>15} {'done':>6} {'errors':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'q/batch':>8}")
    for name, r in best.items():
        print(f"{name:>15} {r['requests']:>6} {errors[name]:>6} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['queries_per_batch']:>8.1f}")
    print(f"ratio          : {ratio:.2f}x the requests/second with batching")
    for name, rs in runs.items():
        for e in [e for r in rs for e in r["first_errors"]][:3]:
            print(f"error ({name}): {e}")
    figures = {"config": vars(args) | {"out": str(args.out) if args.out else None},
               "best": best, "runs": runs, "errors": errors, "batched_over_unbatched_rps": ratio}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
