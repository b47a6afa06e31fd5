"""SPR's filter from a cold head against the demo's warm start, side by side on a demo run's pools.

    selfprm demo --quick --seeds 3 --out runs/demo-quick
    python benchmarks/spr_warm_start.py --run runs/demo-quick [--inits 4] [--warmup 8]

For every seed pool of the run (``seed-K/pool``) and several head initialisations, trains
MetaStone-S1's score model (the demo's SPR setup: reference head, penultimate layer, 1e-4
backbone gradient, surprise features, head lr 1e-2) on the pool's outcome pseudo-labels twice:
with the filter on from the first step (``cold``, the paper's start) and after ``--warmup`` steps
of class-balanced BCE (``warm``, the demo's default). Prints each run's test step AUROC, its
kept shares (outcome-right / outcome-wrong steps) at the first filtered step and at the end, and
the mean ± sd of each arm with the count of runs that ended at one class or at AUROC <= 0.55.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a `selfprm demo --seeds N` output folder")
    ap.add_argument("--inits", type=int, default=4, help="head initialisations per pool")
    ap.add_argument("--warmup", type=int, default=8, help="class-balanced BCE steps of the warm arm")
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfprm.eval.metrics import step_auroc
    from selfprm.labels.outcome import outcome_broadcast
    from selfprm.prm.model import SPR_REFERENCE, PRMConfig, ProcessRewardModel
    from selfprm.prm.train import PRMTrainConfig, train_prm
    from selfprm.types import read_trajectories

    torch.set_num_threads(1)
    root = Path(args.run)
    model_dir = root / "policy" / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    pools = sorted(p for p in root.glob("seed-*/pool") if (p / "train.jsonl").exists()) or [root / "pool"]
    results: dict[str, list[tuple[float, float, float]]] = {"cold": [], "warm": []}
    for pool in pools:
        train = [t for t, _ in read_trajectories(pool / "train.jsonl")]
        test = [t for t, _ in read_trajectories(pool / "test.jsonl")]
        pairs = [(t, None if t.truncated else outcome_broadcast(t, "spr")) for t in train]
        for j in range(args.inits):
            for arm, warm in (("cold", 0), ("warm", args.warmup)):
                torch.manual_seed(1000 + 17 * j)  # both arms start from the same head
                prm = ProcessRewardModel(AutoModelForCausalLM.from_pretrained(model_dir), tok,
                                         PRMConfig(step_separator="\n", **{**SPR_REFERENCE, "surprise_features": True}))
                h = train_prm(prm, pairs, PRMTrainConfig(loss="spr", epochs=args.epochs, batch_size=32, head_lr=1e-2,
                                                         seed=j, spr_warmup_steps=warm), progress=False)
                auc = step_auroc(prm.score_trajectories(test), [t.oracle_labels for t in test])
                results[arm].append((auc, h.spr_kept_pos[-1], h.spr_kept_neg[-1]))
                print(f"{pool.parent.name} init {j} {arm:4s}: step AUROC {auc:.3f}; kept right/wrong "
                      f"first {h.spr_kept_pos[0]:.2f}/{h.spr_kept_neg[0]:.2f}, last {h.spr_kept_pos[-1]:.2f}/"
                      f"{h.spr_kept_neg[-1]:.2f}", flush=True)
    for arm, rows in results.items():
        a = np.array([r[0] for r in rows])
        one_class = sum(1 for _, p, n in rows if p == 0.0 or n == 0.0)
        print(f"{arm}: step AUROC {a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f} over {len(a)} runs; "
              f"{one_class} ended keeping one class; {int((a <= 0.55).sum())} at AUROC <= 0.55")
    print(f"ratio warm/cold mean AUROC: {np.mean([r[0] for r in results['warm']]) / np.mean([r[0] for r in results['cold']]):.3f}")


if __name__ == "__main__":
    main()
