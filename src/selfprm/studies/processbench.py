"""``selfprm eval processbench --prm PATH [--data FILE ...]``: ProcessBench's metric on a saved PRM.

Without ``--data`` it runs the four shared splits; any file in ProcessBench's record format (a JSON
array or JSONL of ``{"problem", "steps", "label"}``) is accepted, its stem naming the split. The
threshold is tuned on the split named ``gsm8k`` (``--tune-split``) and reused, as the paper does;
``--threshold`` fixes it instead. Prints a table, writes ``processbench.json`` and per-record
predictions under ``--out`` (when given), and returns the result dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from selfprm.eval.processbench import (
    TUNE_SPLIT,
    evaluate_processbench,
    format_table,
    predictions,
    score_trajectories_sorted,
)
from selfprm.types import atomic_write_text, to_strict_json, write_json


@dataclass
class ProcessBenchEvalConfig:
    """ProcessBench's protocol on a saved PRM.

    Parameters:
        prm: folder of a saved selfprm PRM (``save_pretrained``).
        data: ProcessBench-format files (empty: the four shared splits).
        batch_size: trajectories per scoring batch.
        threshold: a fixed threshold instead of tuning one.
        tune_split: the split whose F1 picks the threshold.
        device: where the PRM runs (``cpu``, ``cuda``).
    """

    prm: str
    data: tuple[str, ...] = ()
    batch_size: int = 16
    threshold: float | None = None
    tune_split: str = TUNE_SPLIT
    device: str = "cpu"


Config = ProcessBenchEvalConfig
PRESETS: dict = {}  # nothing to preset: the PRM is the user's


def _load_splits(files) -> dict[str, list]:
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


def run(config: ProcessBenchEvalConfig, out: str | Path | None = None, *, progress: bool = True) -> dict:
    """Score every split with the PRM, tune or apply the threshold, print the table."""
    from selfprm.prm.model import ProcessRewardModel

    prm = ProcessRewardModel.from_pretrained(config.prm, device=config.device)
    data = _load_splits(config.data)
    scores, labels = {}, {}
    for name, trajs in data.items():
        scores[name] = score_trajectories_sorted(prm, trajs, config.batch_size, progress=progress, desc=name)
        labels[name] = [t.first_error for t in trajs]
    result = evaluate_processbench(scores, labels, threshold=config.threshold, tune_split=config.tune_split)
    print(format_table(result, title=f"ProcessBench: {config.prm}"))
    summary = {"prm": str(config.prm), **result.to_dict()}
    if out:
        folder = Path(out)
        write_json(folder / "processbench.json", summary)
        rows = []
        for name, trajs in data.items():
            for t, pred, s in zip(trajs, predictions(scores[name], result.threshold), scores[name]):
                # NaN (a step cut off by truncation) is written as null
                rows.append(json.dumps(to_strict_json({"split": name, "id": t.problem.id, "label": t.first_error,
                                                       "prediction": pred, "step_scores": s})))
        atomic_write_text(folder / "predictions.jsonl", "".join(r + "\n" for r in rows))
    return summary
