"""The CUDA path in one short run: a PRM on a causal-LM backbone built from a config, trained in
bf16 and used to score a batch, with its timings.

    bash benchmarks/gpu_check.sh            # on a machine with a GPU (under 5 minutes)
    python benchmarks/gpu_check.py --device cpu --layers 2 --width 128 --steps 5   # the same on a CPU

Nothing is downloaded: the backbone is a Llama built from a config (random weights; what is
measured is the path and its speed, not what it learns), the tokenizer the package's character
tokenizer, the data the arith domain's worked solutions. It checks that bf16 training lowers the
loss, that the scores are finite, and that batched scores equal one-at-a-time scores (to bf16
precision), then prints the timings: a pass/fail line per check and one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--trajectories", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps")
    args = ap.parse_args()

    from selfprm.domains import ArithDomain
    from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm
    from selfprm.prm import PRMConfig, PRMTrainConfig, ProcessRewardModel, train_prm
    from selfprm.types import StepLabels

    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    domain = ArithDomain()
    rng = np.random.default_rng(0)
    trajs = []
    for i, p in enumerate(domain.sample_problems(args.trajectories, seed=0)):
        steps, answer = domain.worked_solution(p, rng)
        if i % 2:  # half the solutions get a wrong last step: two classes to learn
            steps = steps[:-1] + [steps[-1].rsplit("=", 1)[0] + "=0"]
        trajs.append(domain.make_trajectory(p, steps, answer))
    labels = [StepLabels([float(v) for v in t.oracle_labels], "oracle") for t in trajs]

    tok = build_char_tokenizer(domain.charset())
    torch.manual_seed(0)
    lm = build_tiny_lm(tok, TinyLMConfig(n_layer=args.layers, n_head=max(1, args.width // 64), n_embd=args.width,
                                         n_positions=256))
    prm = ProcessRewardModel(lm, tok, PRMConfig(step_separator="\n")).to(dev, dtype)
    n_params = sum(p.numel() for p in prm.parameters())
    epochs = max(1, math.ceil(args.steps * args.batch_size / len(trajs)))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    sync()
    t0 = time.perf_counter()
    hist = train_prm(prm, list(zip(trajs, labels)), PRMTrainConfig(epochs=epochs, batch_size=args.batch_size,
                                                                   lr=3e-4, head_lr=3e-3), progress=False)
    sync()
    train_s = time.perf_counter() - t0

    batch = trajs[: args.batch_size]
    prm.score_trajectories(batch[:2])  # warm-up
    sync()
    t0 = time.perf_counter()
    scores = prm.score_trajectories(batch, batch_size=args.batch_size)
    sync()
    score_s = time.perf_counter() - t0
    alone = [prm.score_trajectories([t])[0] for t in batch[:8]]

    first, last = float(np.mean(hist.loss[:5])), float(np.mean(hist.loss[-5:]))
    finite = all(math.isfinite(v) for row in scores for v in row)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-4
    same = all(abs(a - b) <= tol for ra, rb in zip(alone, scores[:8]) for a, b in zip(ra, rb))
    checks = {"loss went down": last < first, "scores finite": finite, "batched = one at a time": same}
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    figures = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "dtype": args.dtype,
        "parameters_M": round(n_params / 1e6, 1), "optimizer_steps": len(hist.loss), "train_seconds": round(train_s, 2),
        "train_token_positions_per_s": round(hist.token_passes / 2 / train_s),
        "loss_first5": round(first, 4), "loss_last5": round(last, 4),
        "score_batch": len(batch), "score_seconds": round(score_s, 4),
        "solutions_scored_per_s": round(len(batch) / score_s, 1),
        "max_memory_MiB": round(torch.cuda.max_memory_allocated(dev) / 2**20) if dev.type == "cuda" else None,
    }
    print(json.dumps(figures))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
