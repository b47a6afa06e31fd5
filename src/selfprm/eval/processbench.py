"""ProcessBench's metric (Zheng et al., *ProcessBench: Identifying Process Errors in Mathematical
Reasoning*, arXiv 2412.06559; code: QwenLM/ProcessBench ``code/run_eval_prm*.py``).

A PRM predicts the first erroneous step of a solution as the first step whose score falls below a
threshold τ, or -1 when none does:

    pred(x) = min{ i : r_i(x) < τ }   (-1 if the set is empty)

Per split, with E the samples whose label is a step index and C those labelled -1:

    acc_E = |{x ∈ E : pred(x) = label(x)}| / |E|        (the paper's "error" accuracy, acc1)
    acc_C = |{x ∈ C : pred(x) = -1}| / |C|              (the "correct" accuracy, acc2)
    F1    = 2 · acc_E · acc_C / (acc_E + acc_C)

The reported "Avg. F1" is the plain mean of the four splits' F1 (e.g. Math-Shepherd-PRM-7B:
(47.9 + 29.5 + 24.8 + 23.8) / 4 = 31.5). For PRMs, τ is chosen to maximise F1 on the gsm8k split
and reused unchanged on the others. The arithmetic is :func:`selfprm.eval.metrics.first_error_f1`
and :func:`~selfprm.eval.metrics.tune_threshold`; this module runs the protocol around them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

from selfprm.eval.metrics import FirstErrorF1, first_error_f1, predicted_first_error, tune_threshold
from selfprm.types import Trajectory, to_strict_json

TUNE_SPLIT = "gsm8k"


def scores_from_predictions(predictions: Sequence[int], n_steps: Sequence[int]) -> list[list[float]]:
    """Step scores that make :func:`predicted_first_error` return ``predictions`` at τ = 0.5.

    Lets a critic that outputs an index directly (as ProcessBench's LLM critics do) go through the
    same metric: 1.0 before the predicted step, 0.0 at it, 1.0 after (never read).
    """
    out = []
    for p, n in zip(predictions, n_steps):
        if not -1 <= p < n:
            raise ValueError(f"prediction {p} is not -1 or a step index below {n}")
        out.append([0.0 if i == p else 1.0 for i in range(n)])
    return out


@dataclass
class SplitResult:
    split: str
    n: int
    n_error: int
    n_correct: int
    error_accuracy: float | None  # acc_E
    correct_accuracy: float | None  # acc_C
    f1: float | None  # None when a class is absent from the split (F1 undefined)
    unscored: int = 0  # samples with a step the PRM could not score (cut off by truncation)


@dataclass
class ProcessBenchResult:
    threshold: float
    threshold_source: str  # "tuned on <split>" or "given"
    splits: dict[str, SplitResult] = field(default_factory=dict)

    @property
    def average_f1(self) -> float | None:
        """Mean F1 over the splits where it is defined (all four, on ProcessBench)."""
        vals = [r.f1 for r in self.splits.values() if r.f1 is not None]
        return sum(vals) / len(vals) if vals else None

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "splits": {k: asdict(v) for k, v in self.splits.items()},
                "f1": {**{k: v.f1 for k, v in self.splits.items()}, "average": self.average_f1}}


def _none_if_nan(x: float | None) -> float | None:
    return to_strict_json(None if x is None else float(x))


def split_result(name: str, step_scores: Sequence[Sequence[float]], labels: Sequence[int], threshold: float) -> SplitResult:
    r: FirstErrorF1 = first_error_f1(step_scores, labels, threshold)
    defined = r.n_error > 0 and r.n_correct > 0
    return SplitResult(
        split=name, n=len(labels), n_error=r.n_error, n_correct=r.n_correct,
        error_accuracy=_none_if_nan(r.error_accuracy), correct_accuracy=_none_if_nan(r.correct_accuracy),
        f1=_none_if_nan(r.f1) if defined else None,
        unscored=sum(any(math.isnan(x) for x in s) for s in step_scores),
    )


def evaluate_processbench(
    scores: Mapping[str, Sequence[Sequence[float]]],
    labels: Mapping[str, Sequence[int]],
    threshold: float | None = None,
    tune_split: str = TUNE_SPLIT,
) -> ProcessBenchResult:
    """ProcessBench's protocol on step scores of every split.

    ``labels[split]`` are first-error indices (-1: none). τ is ``threshold`` when given, else the
    F1-maximising one on ``tune_split`` (gsm8k), reused on every split; without either, 0.5.
    """
    if set(scores) != set(labels):
        raise ValueError("scores and labels name different splits")
    for k in scores:
        if len(scores[k]) != len(labels[k]):
            raise ValueError(f"split {k!r}: {len(scores[k])} scored samples for {len(labels[k])} labels")
    if threshold is not None:
        th, src = float(threshold), "given"
    elif tune_split in scores:
        th, src = tune_threshold(scores[tune_split], labels[tune_split]), f"tuned on {tune_split}"
    else:
        th, src = 0.5, f"default (no {tune_split} split to tune on)"
    res = ProcessBenchResult(th, src)
    for k in scores:
        res.splits[k] = split_result(k, scores[k], labels[k], th)
    return res


def predictions(step_scores: Sequence[Sequence[float]], threshold: float) -> list[int]:
    return [predicted_first_error(s, threshold) for s in step_scores]


def score_trajectories_sorted(prm, trajectories: Sequence[Trajectory], batch_size: int = 16,
                              progress: bool = True, desc: str = "score") -> list[list[float]]:
    """``prm.score_steps`` over ``trajectories`` in length-sorted batches (less padding), in input order."""
    from tqdm.auto import tqdm

    order = sorted(range(len(trajectories)),
                   key=lambda i: len(trajectories[i].problem.prompt) + sum(len(s) for s in trajectories[i].steps))
    out: list[list[float] | None] = [None] * len(trajectories)
    for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, leave=False):
        idx = order[s:s + batch_size]
        got = prm.score_steps([trajectories[i].problem.prompt for i in idx], [trajectories[i].steps for i in idx],
                              batch_size=len(idx))
        for i, row in zip(idx, got):
            out[i] = row
    return out  # type: ignore[return-value]


def format_table(result: ProcessBenchResult, title: str = "ProcessBench") -> str:
    """The paper's table, in percent: one row per split, then the average F1."""
    from selfprm.report.tables import cell, markdown_table

    def pct(x: float | None) -> str:
        return cell(None if x is None else 100 * x, ".1f", "-")

    rows = [[r.split, str(r.n), str(r.n_error), str(r.n_correct), pct(r.error_accuracy), pct(r.correct_accuracy),
             pct(r.f1)] for r in result.splits.values()]
    rows.append(["**average F1**", "", "", "", "", "", pct(result.average_f1)])
    return (f"{title} (threshold {result.threshold:.2f}, {result.threshold_source})\n\n"
            + markdown_table(["split", "n", "err", "ok", "acc_err", "acc_ok", "F1"], rows))
