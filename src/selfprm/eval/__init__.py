"""Evaluation: step AUROC, ProcessBench first-error F1, best-of-N, label cost."""
from selfprm.eval.metrics import (
    BestOfN,
    FirstErrorF1,
    auroc,
    best_of_n,
    first_error_f1,
    predicted_first_error,
    solution_scores,
    step_auroc,
    tune_threshold,
)

__all__ = ["BestOfN", "FirstErrorF1", "auroc", "best_of_n", "first_error_f1", "predicted_first_error",
           "solution_scores", "step_auroc", "tune_threshold"]
