"""PRM scoring: every step of a trajectory in one forward pass vs. re-running on each prefix.

    python benchmarks/prm_scoring.py [--steps 8] [--trajectories 64] [--repeats 3]

Both ways run side by side in one process on the same PRM and trajectories; the script checks
they give the same scores and prints the time ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from selfprm.domains import ArithConfig, ArithDomain
from selfprm.policies import SimulatedPolicy, sample_flat
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
from selfprm.prm import PRMConfig, ProcessRewardModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--trajectories", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    domain = ArithDomain(ArithConfig(min_ops=args.steps, max_ops=args.steps, recovery_rate=0, extra_step_rate=0))
    trajs = sample_flat(SimulatedPolicy(domain), domain.sample_problems(args.trajectories, seed=0), 1)
    trajs = [t for t in trajs if len(t.steps) >= args.steps]
    for t in trajs:
        t.steps = t.steps[: args.steps]
    tok = build_char_tokenizer(domain.charset())
    prm = ProcessRewardModel(build_tiny_lm(tok, TinyLMConfig()), tok, PRMConfig()).eval()
    prompts = [t.problem.prompt for t in trajs]
    steps = [t.steps for t in trajs]

    def one_pass():
        return prm.score_steps(prompts, steps, batch_size=args.batch_size)

    def per_prefix():
        # the naive way: one sequence per prefix, keep the score of its last step
        flat_p = [p for p, st in zip(prompts, steps) for _ in st]
        flat_s = [st[: i + 1] for st in steps for i in range(len(st))]
        last = [s[-1] for s in prm.score_steps(flat_p, flat_s, batch_size=args.batch_size)]
        out, k = [], 0
        for st in steps:
            out.append(last[k:k + len(st)])
            k += len(st)
        return out

    a, b = one_pass(), per_prefix()
    diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
    times = {"one_pass": [], "per_prefix": []}
    with torch.inference_mode():
        for _ in range(args.repeats):  # interleaved, so machine noise hits both alike
            for name, fn in (("one_pass", one_pass), ("per_prefix", per_prefix)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    print(f"{len(trajs)} trajectories x {args.steps} steps, max score difference {diff:.2e}")
    print(f"one pass   : {best['one_pass'] * 1000:8.1f} ms")
    print(f"per prefix : {best['per_prefix'] * 1000:8.1f} ms")
    print(f"ratio      : {best['per_prefix'] / best['one_pass']:.1f}x faster in one pass")


if __name__ == "__main__":
    main()
