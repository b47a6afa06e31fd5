"""`selfprm jepa`: the UI-JEPA label-efficiency study (arXiv 2409.04081)."""

from __future__ import annotations

import argparse
from pathlib import Path

from selfprm.jepa.report import write_report
from selfprm.jepa.study import StudyConfig, run_study


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/jepa"), help="output directory")
    parser.add_argument("--quick", action="store_true", help="smaller budget (a few minutes on 2 cores)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    """Run the study, write DIR/jepa_metrics.json, jepa_report.md and jepa_accuracy.png."""
    cfg = StudyConfig.quick(args.seed) if args.quick else StudyConfig(seed=args.seed)
    metrics = run_study(cfg)
    table = write_report(metrics, Path(args.out))
    print(table)
    print(f"wrote {Path(args.out) / 'jepa_metrics.json'}")
    return metrics
