"""Arguments of ``selfprm rl``: GRPO variants from one SFT checkpoint at equal samples, plus PRM search.

Writes ``OUT/rl_metrics.json`` (learning curves per method, and ``"search"``: accuracy against
policy tokens for best-of-N, weighted majority, majority vote and beam search), ``rl_curves.png``,
``search_curves.png`` and ``rl_table.md``. Runnable as ``python -m selfprm.rl_cli``.
"""

from __future__ import annotations

import argparse
import sys

from selfprm.rl.experiment import RLRunConfig, run_rl


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/rl", help="output folder (reruns resume from it)")
    parser.add_argument("--quick", action="store_true", help="one seed, a few steps: minutes on 2 CPU cores")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per method (default 3; 1 with --quick)")
    parser.add_argument("--prm", default=None, help="a saved selfprm PRM for the 'prm' method and search "
                                                    "(default: train one on oracle labels of a sampled pool)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    parser.add_argument("--steps", type=int, default=None, help="GRPO rounds per run (overrides the preset)")
    parser.add_argument("--no-search", action="store_true", help="skip the test-time search curves")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> dict:
    config = RLRunConfig.quick() if args.quick else RLRunConfig()
    if args.seeds is not None:
        config.seeds = args.seeds
    if args.methods:
        config.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.steps is not None:
        config.grpo.steps = args.steps
    if args.no_search:
        config.search = False
    return run_rl(config, args.out, prm_path=args.prm, progress=not args.no_progress)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="selfprm rl", description=__doc__)
    add_arguments(p)
    run(p.parse_args(sys.argv[1:]))
