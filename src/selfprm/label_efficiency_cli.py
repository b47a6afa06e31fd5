"""``selfprm label-efficiency``: label quality per policy token for every label source."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from selfprm.label_efficiency import LabelEfficiencyConfig, run_label_efficiency


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/label_efficiency", help="output folder (JSON, PNG, cached policy)")
    parser.add_argument("--quick", action="store_true", help="a small study that finishes in under 3 minutes on 2 cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy", choices=("hf", "simulated"), default=None,
                        help="the embedded tiny causal LM after SFT (default) or the simulated solver")
    parser.add_argument("--problems", type=int, default=None,
                        help="problems in the shared pool (each sampled --samples times); more gives tighter accuracies")
    parser.add_argument("--samples", type=int, default=None, help="solutions sampled per pool problem")
    parser.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace) -> LabelEfficiencyConfig:
    cfg = LabelEfficiencyConfig.quick_config(args.seed) if args.quick else LabelEfficiencyConfig(seed=args.seed)
    if getattr(args, "policy", None):
        cfg = replace(cfg, policy=args.policy)
    if getattr(args, "problems", None):
        cfg = replace(cfg, n_problems=args.problems)
    if getattr(args, "samples", None):
        cfg = replace(cfg, samples_per_problem=args.samples)
    return cfg


def run(args: argparse.Namespace) -> dict[str, Any]:
    report = run_label_efficiency(config_from_args(args), args.out, progress=not getattr(args, "no_progress", False))
    for c in report["omega_vs_mc"]:
        print(f"omega vs mc at {c['n_rollouts']} rollouts/prefix: accuracy {c['omega_accuracy']:.3f} vs "
              f"{c['mc_accuracy']:.3f}, {c['token_ratio']:.1f}x fewer tokens -> {'holds' if c['holds'] else 'fails'}")
    print(f"wrote {args.out}/label_efficiency.json and label_efficiency.png ({report['seconds']:.0f} s)")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="selfprm label-efficiency", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
