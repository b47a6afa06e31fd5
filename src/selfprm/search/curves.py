"""Accuracy against policy tokens spent: best-of-N, weighted majority, majority vote and beam search.

Best-of-N and the votes share one pool of ``max(ns)`` samples per problem; the point for N uses
each problem's first N samples, so the curves differ only in how they pick, never in luck of the
draw. Beam search runs once per configuration. The x axis is the mean number of policy tokens
spent per problem.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from tqdm.auto import tqdm

from selfprm.search.beam import BeamConfig, beam_search
from selfprm.search.best_of_n import pick_all
from selfprm.types import Problem


def search_curves(
    policy,
    prm,
    problems: Sequence[Problem],
    ns: Sequence[int] = (1, 2, 4, 8, 16),
    beams: Sequence[BeamConfig] = (BeamConfig(2, 2), BeamConfig(4, 4)),
    aggregation: str = "min",
    progress: bool = True,
) -> dict[str, Any]:
    """``{"best_of_n": [[tokens, acc, N], ...], "weighted_majority": ..., "majority_vote": ...,
    "beam": [[tokens, acc, {config}], ...]}`` over ``problems``."""
    problems = list(problems)
    n_max = max(ns)
    groups = policy.sample(problems, n_max)
    scores = [prm.score_trajectories(g) for g in groups]
    out: dict[str, Any] = {"best_of_n": [], "weighted_majority": [], "majority_vote": [], "beam": [],
                           "aggregation": aggregation, "problems": len(problems)}
    for n in sorted(ns):
        acc = {"best_of_n": 0.0, "weighted_majority": 0.0, "majority_vote": 0.0}
        toks = 0
        for g, s in zip(groups, scores):
            picks = pick_all(g[:n], s[:n], aggregation)
            for k in acc:
                acc[k] += picks[k].correct
            toks += picks["majority_vote"].policy_tokens
        for k in acc:
            out[k].append([toks / len(problems), acc[k] / len(problems), n])
    for cfg in tqdm(list(beams), desc="beam search", disable=not progress, leave=False):
        res = beam_search(policy, prm, problems, cfg)
        out["beam"].append([sum(r.policy_tokens for r in res) / len(problems),
                            sum(r.correct for r in res) / len(problems), asdict(cfg)])
    return out


def plot_search_curves(curves: dict[str, Any], path) -> None:
    """One line per method: accuracy against mean policy tokens per problem (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("majority_vote", "o--"), ("best_of_n", "s-"), ("weighted_majority", "^-")):
        pts = curves.get(key) or []
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=key.replace("_", " "))
    pts = sorted(curves.get("beam") or [], key=lambda p: p[0])  # a line drawn in token order
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "D:", label="beam search")
        for p in pts:
            c = p[2]
            ax.annotate(f"{c['beam_width']}x{c['expansions_per_beam']}" + (f"+{c['lookahead']}" if c["lookahead"] else ""),
                        (p[0], p[1]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("policy tokens per problem")
    ax.set_ylabel("accuracy")
    ax.set_title(f"PRM-guided search (aggregation: {curves.get('aggregation', 'min')})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def at_equal_tokens(curves: dict[str, Any], method: str, tokens: float) -> float | None:
    """``method``'s accuracy interpolated (linearly in log tokens) at ``tokens`` per problem; None outside its range."""
    import math

    pts = sorted((t, a) for t, a, *_ in curves.get(method) or [])
    if not pts or tokens < pts[0][0] or tokens > pts[-1][0]:
        return None
    for (t0, a0), (t1, a1) in zip(pts, pts[1:]):
        if t0 <= tokens <= t1:
            w = 0.0 if t1 == t0 else (math.log(tokens) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return a0 + w * (a1 - a0)
    return pts[-1][1]
