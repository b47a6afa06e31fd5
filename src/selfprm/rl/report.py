"""The learning-curve plot and the markdown table of ``selfprm rl`` (``rl_metrics.json``'s
``regimes.<regime>.methods.<row>`` layout, see :mod:`selfprm.studies.rl`)."""

from __future__ import annotations

from typing import Any

BASELINES = {"tools": "outcome_tools"}  # the outcome-only row of each regime (``outcome`` elsewhere)
REFERENCE = "prm:oracle"


def _regimes(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return metrics.get("regimes") or {}


def plot_learning_curves(metrics: dict[str, Any], path) -> None:
    """Held-out accuracy against policy tokens (a PRM row's curve starts at its labels' cost), mean
    over seeds with a ±1 sd band; one panel per regime. A row without a token curve is drawn
    against sampled solutions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = _regimes(metrics)
    if not regimes:
        return
    fig, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 4.2), squeeze=False)
    for ax, (r, reg) in zip(axes[0], regimes.items()):
        xlabel = "policy tokens (GRPO + labels)"
        for name, m in reg["methods"].items():
            curve = m.get("tokens") or m["accuracy"]
            if not m.get("tokens"):
                xlabel = "policy tokens (GRPO + labels) / sampled solutions"
            xs = [p[0] for p in curve]
            ys = [p[1] for p in curve]
            sd = m.get("accuracy_std") or [0.0] * len(ys)
            ls = "--" if name == REFERENCE else "-"
            ax.plot(xs, ys, marker="o", ms=3, ls=ls, label=f"{name} (n={m['seeds']})")
            ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.15)
        if reg.get("sft_accuracy") is not None:
            ax.axhline(reg["sft_accuracy"], color="grey", ls=":", lw=1, label="SFT start")
        ax.set_title(f"regime {r}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def is_self_supervised(row: str) -> bool:
    """Whether a row's reward is made from the policy's own samples and outcomes alone: a PRM on
    self-generated labels, online SPR, PRIME, Tree-GRPO. Not outcome-only (the baseline), not the
    oracle-label PRM (the reference), not R3 and SRL (they read demonstrations), not the tools rows."""
    return (row.startswith("prm:") and row != REFERENCE) or row.split(":")[0] in ("spr_online", "prime", "tree_grpo")


def closest_to_reference(methods: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The self-supervised row whose final accuracy is nearest the oracle-label PRM row's, with the
    paired gap (the runs share held-out problems and sampling seeds, so seed k minus seed k) and its
    sample sd over seeds; every candidate's gap under ``gaps``. None without the reference row."""
    import numpy as np

    ref = methods.get(REFERENCE)
    if ref is None:
        return None
    gaps = {}
    for row, m in methods.items():
        if not is_self_supervised(row):
            continue
        d = [a[-1] - b[-1] for a, b in zip(m["accuracy_per_seed"], ref["accuracy_per_seed"])]
        gaps[row] = {"gap": float(np.mean(d)), "gap_sd": float(np.std(d, ddof=1)) if len(d) > 1 else 0.0,
                     "seeds": len(d)}
    if not gaps:
        return None
    best = min(gaps, key=lambda k: abs(gaps[k]["gap"]))
    return {"row": best, **gaps[best], "reference_accuracy": ref["final_accuracy"], "gaps": gaps}


def _versus(m: dict[str, Any], b: dict[str, Any] | None) -> str:
    """``m``'s final accuracy minus ``b``'s, with a verdict only where the gap exceeds both spreads."""
    if b is None:
        return "—"
    if b is m:
        return "baseline"
    diff = m["final_accuracy"] - b["final_accuracy"]
    noise = max(m.get("final_accuracy_std", 0.0), b.get("final_accuracy_std", 0.0))
    if min(m["seeds"], b["seeds"]) < 2:
        verdict = "one seed: no verdict"
    else:
        verdict = "better" if diff > noise else ("worse" if diff < -noise else "tie")
    return f"{diff:+.3f} ({verdict})"


def markdown_table(metrics: dict[str, Any]) -> str:
    """One row per reward per regime: final accuracy (mean ± sd over seeds), the policy tokens the
    labels cost and the run spent, and the gap to the outcome-only row and to the oracle-label PRM."""
    from selfprm.report.tables import cell, markdown_table as table
    from selfprm.search.curves import at_equal_tokens

    rows = []
    for r, reg in _regimes(metrics).items():
        methods = reg["methods"]
        base = methods.get(BASELINES.get(r, "outcome"))
        ref = methods.get(REFERENCE)
        for name, m in methods.items():
            label = m.get("label_policy_tokens")
            total = (m.get("policy_tokens") or 0) + (label or 0) if m.get("policy_tokens") is not None else None
            rows.append([r, name, m.get("reward", name), str(m["seeds"]), reg.get("sft_accuracy"),
                         f"{m['final_accuracy']:.3f} ± {m.get('final_accuracy_std', 0.0):.3f}",
                         cell(label, ".0f") if label is not None else "—",
                         cell(total, ".0f") if total is not None else "—",
                         _versus(m, base), _versus(m, ref) if name.startswith("prm:") or is_self_supervised(name)
                         else "—", cell(m.get("tokens_per_sample"), ".1f"), cell(m.get("final_kl"), ".3f")])
    lines = [table(["regime", "method", "reward", "seeds", "SFT start", "final accuracy", "label policy tokens",
                    "policy tokens in all", "vs outcome-only", f"vs {REFERENCE}", "tokens / sample", "final KL"],
                   rows)]
    for r, reg in _regimes(metrics).items():
        c = closest_to_reference(reg["methods"])
        if c is not None:
            lines += ["", f"Regime {r}: the self-supervised reward closest to {REFERENCE} "
                          f"({c['reference_accuracy']:.3f}) is {c['row']}, {c['gap']:+.3f} ± {c['gap_sd']:.3f} "
                          f"(paired over {c['seeds']} seeds)."]
    s = metrics.get("search")
    if s:
        search_rows = [[key, f"N={n}", cell(tok, ".0f"), acc]
                       for key in ("majority_vote", "best_of_n", "weighted_majority") for tok, acc, n in s.get(key, [])]
        search_rows += [["beam", f"{c['beam_width']}x{c['expansions_per_beam']} lookahead {c['lookahead']}",
                         cell(tok, ".0f"), acc] for tok, acc, c in s.get("beam", [])]
        lines += ["", f"Search on {s['problems']} short-regime problems with the {s.get('prm', '?')} PRM "
                      f"(T={s.get('temperature')}, aggregation {s['aggregation']}):", "",
                  table(["method", "setting", "policy tokens / problem", "accuracy"], search_rows)]
        beam_rows = [[f"{c['beam_width']}x{c['expansions_per_beam']}+{c['lookahead']}", cell(tok, ".0f"), acc,
                      *(at_equal_tokens(s, k, tok) for k in ("majority_vote", "best_of_n", "weighted_majority"))]
                     for tok, acc, c in s.get("beam", [])]
        if beam_rows:
            lines += ["", "Beam search beside the sampling methods at the same tokens (interpolated in log tokens):", "",
                      table(["beam", "tokens", "beam acc.", "majority vote", "best-of-N", "weighted majority"], beam_rows)]
    return "\n".join(lines) + "\n"
