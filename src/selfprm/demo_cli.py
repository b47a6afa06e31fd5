"""Arguments of ``selfprm demo``."""

from __future__ import annotations

import argparse

from selfprm.demo import DemoConfig, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", help="output folder (reruns resume from it)")
    parser.add_argument("--quick", action="store_true", help="a smaller run: under 2 minutes on 2 CPU cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=None, help="policy sampling temperature")
    parser.add_argument("--spr-warmup-steps", type=int, default=None,
                        help="SPR warm start: optimizer steps of class-balanced BCE before the filter is on")
    parser.add_argument("--sources", default=None,
                        help="comma-separated label sources (default: the four spine sources with --quick, all nine without)")
    parser.add_argument("--no-surprise", action="store_true",
                        help="PRM head reads the hidden state only, not the backbone's token log-probs (the ablation)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> dict:
    config = DemoConfig.quick(args.seed) if args.quick else DemoConfig(seed=args.seed)
    if args.temperature is not None:
        config.temperature = args.temperature
    if args.spr_warmup_steps is not None:
        config.spr_warmup_steps = args.spr_warmup_steps
    if args.sources:
        from selfprm.labels import available_label_sources

        names = tuple(n.strip() for n in args.sources.split(",") if n.strip())
        unknown = sorted(set(names) - set(available_label_sources()))
        if unknown:
            raise SystemExit(f"unknown label source(s) {unknown}; available: {sorted(available_label_sources())}")
        config.sources = names
    if args.no_surprise:
        config.surprise_features = False
    return run_demo(config, args.out, progress=not args.no_progress)
