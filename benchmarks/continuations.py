"""Continuations from shared prefixes: the ``hf`` policy's prefix KV cache against re-encoding.

Both paths run side by side in one process on the same model, prefixes and seed: ``prefix_cache``
on (each prefix encoded once, its cache repeated across its ``n`` continuations) and off
(``model.generate`` re-encodes the prefix in every row). Prints seconds per call and the ratio.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/continuations.py [--n 8] [--prefixes 32]

The model is the embedded tiny GPT-2 at its default size, untrained (weights do not change the
cost; an untrained model runs to ``--max-new-tokens`` every time, which fixes the work per row).
"""

from __future__ import annotations

import argparse
import time

import torch

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.policies.base import Prefix
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm


def main(argv: list[str] | None = None) -> dict[str, dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="continuations per prefix")
    ap.add_argument("--prefixes", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    domain = ArithDomain(ArithConfig(min_ops=8, max_ops=10))
    tok = build_char_tokenizer(domain.charset())
    model = build_tiny_lm(tok, TinyLMConfig(), seed=args.seed).eval()
    # prefixes as a label source asks for them: worked solutions cut after 4..8 steps (long prompts)
    import numpy as np

    rng = np.random.default_rng(args.seed)
    # (a) independent prefixes: what the n continuations of each share is the prefix itself
    independent = []
    for p in domain.sample_problems(args.prefixes, seed=args.seed):
        steps, _ = domain.worked_solution(p, rng)
        independent.append(Prefix(p, steps[: int(rng.integers(4, min(8, len(steps)) + 1))]))
    # (b) Math-Shepherd's ask: every step prefix of a few solutions, nested siblings
    nested = []
    for p in domain.sample_problems(max(1, args.prefixes // 8), seed=args.seed + 1):
        steps, _ = domain.worked_solution(p, rng)
        nested += [Prefix(p, steps[: i + 1]) for i in range(len(steps))]
    res = {}
    for label, prefixes in (("independent prefixes", independent), ("nested sibling prefixes (mc)", nested)):
        res[label] = _compare(model, tok, domain, prefixes, args, label)
    return res


def _compare(model, tok, domain, prefixes, args, label: str) -> dict:
    import numpy as np

    mean_len = float(np.mean([len(domain.render(p.problem, p.steps)) for p in prefixes]))

    def timed(cache: bool) -> tuple[float, list]:
        pol = HFPolicy(model, tok, domain, HFPolicyConfig(max_new_tokens=args.max_new_tokens, seed=args.seed,
                                                          prefix_cache=cache))
        pol.continue_from(prefixes[:2], 2)  # warm-up
        best, out = float("inf"), None
        for _ in range(args.repeats):
            pol._calls = 0  # the same seed stream on every repeat and both paths
            t0 = time.perf_counter()
            out = pol.continue_from(prefixes, args.n)
            best = min(best, time.perf_counter() - t0)
        return best, out

    t_re, out_re = timed(False)
    t_kv, out_kv = timed(True)
    same = [[t.steps for t in g] for g in out_re] == [[t.steps for t in g] for g in out_kv]
    res = {"reencode_s": t_re, "prefix_cache_s": t_kv, "speedup": t_re / t_kv, "identical_samples": same}
    print(f"{label}: {len(prefixes)} prefixes (mean {mean_len:.0f} tokens) x {args.n} continuations x "
          f"{args.max_new_tokens} new tokens, torch threads {torch.get_num_threads()}")
    print(f"  re-encode (model.generate): {t_re:.3f} s")
    print(f"  prefix KV cache           : {t_kv:.3f} s")
    print(f"  ratio re-encode / cached  : {t_re / t_kv:.2f}x   identical samples on the same seed: {same}")
    return res


if __name__ == "__main__":
    main()
