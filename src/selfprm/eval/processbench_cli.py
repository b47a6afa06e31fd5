"""``selfprm eval processbench --prm PATH [--data FILE ...]``: ProcessBench's metric on a saved PRM.

Without ``--data`` it runs the four shared splits; any file in ProcessBench's record format (a JSON
array or JSONL of ``{"problem", "steps", "label"}``) is accepted, its stem naming the split. The
threshold is tuned on the split named ``gsm8k`` (``--tune-split``) and reused, as the paper does;
``--threshold`` fixes it instead. Prints a table, writes ``processbench.json`` and per-record
predictions under ``--out``, and returns the result dict.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from selfprm.eval.processbench import (
    TUNE_SPLIT,
    evaluate_processbench,
    format_table,
    predictions,
    score_trajectories_sorted,
)
from selfprm.types import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prm", required=True, help="folder of a saved selfprm PRM (save_pretrained)")
    parser.add_argument("--data", nargs="+", default=None, metavar="FILE",
                        help="ProcessBench-format files (default: the four shared splits)")
    parser.add_argument("--out", default=None, help="folder for processbench.json and predictions.jsonl")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threshold", type=float, default=None, help="fixed threshold instead of tuning one")
    parser.add_argument("--tune-split", default=TUNE_SPLIT, help="split whose F1 picks the threshold")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")


def _load_splits(files: list[str] | None) -> dict[str, list]:
    from selfprm.data.paths import PROCESSBENCH_SPLITS, processbench_path
    from selfprm.data.processbench import load_processbench_file

    paths = [processbench_path(s) for s in PROCESSBENCH_SPLITS] if not files else [Path(f) for f in files]
    out: dict[str, list] = {}
    for p in paths:
        name, k = p.stem, 2
        while name in out:  # two files with one stem: keep both, distinctly named
            name, k = f"{p.stem}-{k}", k + 1
        out[name] = load_processbench_file(p, name)
    return out


def run(args: argparse.Namespace) -> dict:
    from selfprm.prm.model import ProcessRewardModel

    prm = ProcessRewardModel.from_pretrained(args.prm, device=args.device)
    data = _load_splits(args.data)
    scores, labels = {}, {}
    for name, trajs in data.items():
        scores[name] = score_trajectories_sorted(prm, trajs, args.batch_size, progress=not args.no_progress, desc=name)
        labels[name] = [t.first_error for t in trajs]
    result = evaluate_processbench(scores, labels, threshold=args.threshold, tune_split=args.tune_split)
    print(format_table(result, title=f"ProcessBench: {args.prm}"))
    out = {"prm": str(args.prm), **result.to_dict()}
    if args.out:
        folder = Path(args.out)
        atomic_write_text(folder / "processbench.json", json.dumps(out, indent=2))
        rows = []
        for name, trajs in data.items():
            for t, pred, s in zip(trajs, predictions(scores[name], result.threshold), scores[name]):
                rows.append(json.dumps({"split": name, "id": t.problem.id, "label": t.first_error,
                                        "prediction": pred,
                                        # NaN (a step cut off by truncation) is not JSON: null
                                        "step_scores": [None if math.isnan(x) else x for x in s]}))
        atomic_write_text(folder / "predictions.jsonl", "".join(r + "\n" for r in rows))
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="selfprm eval processbench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
