"""``selfprm real``: PRMs trained from each label source on real reasoning text, scored on
ProcessBench (Zheng et al., arXiv 2412.06559) and by best-of-4 on GSM8K.

Every source trains the same PRM — MiniLM with a `` [SEP]`` marker at each step end, every step
of a solution scored in one pass over the problem and the whole solution — and is measured the
same way. None of the self-supervised sources reads a human step label:

* ``outcome`` — GSM8K's example model solutions, the answer's correctness on every step (BCE);
* ``spr`` — the same pseudo-labels with MetaStone-S1's filtered SPR loss (arXiv 2507.01951);
* ``perturbation`` — verified GSM8K *train* reference solutions with one computation corrupted
  (:mod:`selfprm.labels.perturbation`), plus the clean solutions;
* ``human`` (the reference) — ProcessBench's own first-error labels.

Each trained PRM is also scored on the PRMBench subset (Song et al., arXiv 2501.03124; the shared
data folder) per error category (:func:`prmbench_categories`): PRMBench's PRMScore, the mean of the
F1 of sound steps and the F1 of erroneous ones at a fixed step threshold, as its public code
computes it (``mr_eval/tasks/prmtest_classified/task.py``: ``evaluate_function``), and a
threshold-free step AUROC beside it. PRMBench shares no problem with the training data here (its
problems are PRM800K *test* solutions, none of them GSM8K), so no leakage rule is needed.

Leakage rules (no problem is in both the training and the evaluation data of one comparison):

* every ProcessBench split is cut **by problem** into an evaluation part (``eval_fraction``) and
  a training part; the human-label PRM trains on the training parts only, every PRM is evaluated
  on the evaluation parts only;
* ProcessBench's gsm8k split holds GSM8K test problems: GSM8K example solutions of those problems
  are never trained on; a further set of GSM8K test problems is held out for best-of-4.

The threshold is ProcessBench's: tuned on the gsm8k split (its evaluation part) and reused on the
others. Each source is a stage of the run directory (:mod:`selfprm.rundir`) whose scores are written
as soon as it finishes, so a stopped run resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfprm.report.tables import cell, markdown_table
from selfprm.rundir import RunDir, config_blob
from selfprm.types import StepLabels, Trajectory, atomic_write_text

# the registered label sources this study runs, and which training data each one labels
TRAINING_DATA = {"human": "human_train", "outcome": "outcome_train", "spr": "outcome_train",
                 "perturbation": "perturbed"}
SOURCES = tuple(TRAINING_DATA)

# Published ProcessBench average F1 of 7B PRMs (ProcessBench paper, arXiv 2412.06559, Table 3);
# shown in the table, marked as published, never in the measured JSON.
PUBLISHED_7B = {"Math-Shepherd-PRM-7B": 31.5, "Qwen2.5-Math-7B-PRM800K": 56.5, "Qwen2.5-Math-PRM-7B": 73.5}


@dataclass
class RealStudyConfig:
    """PRMs on MiniLM from each label source, evaluated on ProcessBench and by best-of-4 on GSM8K.

    Parameters:
        seed: seeds the data splits, the PRM initialisation and training.
        sources: label sources to train a PRM on (``human`` is the reference).
        eval_fraction: share of each ProcessBench split's problems kept for evaluation.
        eval_per_split: cap on evaluated samples per split (none: all of the evaluation part).
        train_examples: labelled trajectories per source, sampled from what the source labelled.
        epochs: passes over them.
        batch_size: trajectories per optimizer step.
        lr: learning rate of the unfrozen backbone layers.
        head_lr: learning rate of the scoring head.
        freeze_layers: MiniLM's lower layers (of 6) kept as pretrained.
        max_length_train: tokens per training example (left-truncated: the problem's start goes first).
        max_length_eval: tokens per scored example.
        spr_warmup_fraction: SPR: share of steps of class-balanced BCE before the filter is on (not in the paper).
        spr_head_lr: learning rate of SPR's score head (its backbone gets 1e-4 of the gradient, so the head
            is nearly all that learns; the shared head_lr moves it too little in a short run).
        spr_one_sided_fallback: SPR: a batch whose filter kept one class only trains on class-balanced BCE
            (not in the paper; see PRMTrainConfig).
        spr_reference: SPR trains MetaStone-S1's score model (MLP head on the penultimate layer, 1e-4 of
            the gradient into the backbone, geometric-mean solution scores); off: the linear head (a deviation).
        perturb_variants: corrupted copies per reference solution (plus the clean one).
        bo4_problems: GSM8K test problems held out for best-of-4.
        score_batch_size: examples per scoring batch.
        prmbench: also score each PRM on the PRMBench subset per error category.
        prmbench_per_category: cap on PRMBench records per category (none: all, 48 each).
        prmbench_threshold: step score at or above which a step counts as predicted sound (PRMBench's
            code thresholds the model's step probability at 0.5).
    """

    seed: int = 0
    sources: tuple[str, ...] = SOURCES
    eval_fraction: float = 0.5
    # the gsm8k evaluation part (~200) is used whole, the others are sampled, to keep a full run
    # within about an hour on 2 CPU cores
    eval_per_split: int | None = 250
    train_examples: int = 600
    epochs: int = 2
    batch_size: int = 16
    lr: float = 1e-4
    head_lr: float = 1e-3
    freeze_layers: int = 3
    max_length_train: int = 320
    max_length_eval: int = 512
    spr_warmup_fraction: float = 0.3
    spr_head_lr: float = 1e-2
    spr_one_sided_fallback: bool = True
    spr_reference: bool = True
    perturb_variants: int = 2
    bo4_problems: int = 200
    score_batch_size: int = 16
    prmbench: bool = True
    prmbench_per_category: int | None = None
    prmbench_threshold: float = 0.5

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(TRAINING_DATA))
        if unknown:
            raise ValueError(f"unknown source(s) {unknown} for the real-data study; choose from {list(SOURCES)}")


def _quick() -> RealStudyConfig:
    return RealStudyConfig(eval_per_split=40, train_examples=160, epochs=1, bo4_problems=40, max_length_train=256,
                           prmbench_per_category=12)


Config = RealStudyConfig
PRESETS = {"full": RealStudyConfig, "quick": _quick}
DEFAULT_OUT = "runs/real"


# ----------------------------------------------------------------------------- data


@dataclass
class StudyData:
    eval_sets: dict[str, list[Trajectory]]  # ProcessBench evaluation parts
    human_train: list[Trajectory]  # ProcessBench training parts (all splits)
    outcome_train: list[Trajectory]  # GSM8K example solutions, problems outside ProcessBench & bo4
    references: list[Trajectory]  # verified GSM8K train reference solutions
    bo4_groups: list[list[Trajectory]]  # four example solutions per held-out problem
    counts: dict = field(default_factory=dict)
    prmbench: list[Trajectory] = field(default_factory=list)  # PRMBench records, each with its category


def prepare_data(c: RealStudyConfig, progress: bool = True) -> StudyData:
    from selfprm.data import (
        exclude_problems,
        key_of,
        load_gsm8k,
        load_gsm8k_example_solutions,
        load_processbench_all,
        reference_trajectory,
        split_by_problem,
        verify_reference,
    )

    rng = np.random.default_rng(c.seed)
    pb = load_processbench_all()
    eval_sets, human_train = {}, []
    for name, trajs in pb.items():
        held, rest = split_by_problem(trajs, c.eval_fraction, seed=c.seed)
        if c.eval_per_split is not None and len(held) > c.eval_per_split:
            held = [held[i] for i in sorted(rng.choice(len(held), c.eval_per_split, replace=False))]
        eval_sets[name] = held
        human_train.extend(rest)
    pb_keys = {key_of(t) for trajs in pb.values() for t in trajs}

    examples = exclude_problems(load_gsm8k_example_solutions(), pb_keys)
    groups: dict[str, list[Trajectory]] = {}
    for t in examples:
        groups.setdefault(key_of(t), []).append(t)
    keys = sorted(groups)
    rng.shuffle(keys)
    bo4_keys = keys[: c.bo4_problems]
    bo4_groups = [groups[k] for k in bo4_keys]
    outcome_train = [t for k in keys[c.bo4_problems:] for t in groups[k]]

    # Reference solutions to perturb: GSM8K *train* problems (ProcessBench uses test problems;
    # excluded by key anyway), only those whose every calculation and answer check. Only as many
    # as the source can use are verified: verification runs math-verify per solution.
    problems = load_gsm8k("train")
    order = rng.permutation(len(problems))
    need = max(1, math.ceil(c.train_examples / (1 + c.perturb_variants)) * 2)
    refs: list[Trajectory] = []
    for i in order:
        p = problems[int(i)]
        if p.meta["problem_key"] in pb_keys:
            continue
        r = reference_trajectory(p)
        if verify_reference(r):
            refs.append(r)
        if len(refs) >= need:
            break
    prmbench = prmbench_sample(c) if c.prmbench else []
    counts = {"eval": {k: len(v) for k, v in eval_sets.items()}, "human_train_pool": len(human_train),
              "outcome_train_pool": len(outcome_train), "references_verified": len(refs),
              "bo4_problems": len(bo4_groups), "prmbench": len(prmbench)}
    return StudyData(eval_sets, human_train, outcome_train, refs, bo4_groups, counts, prmbench)


def prmbench_sample(c: RealStudyConfig) -> list[Trajectory]:
    """The PRMBench subset, at most ``prmbench_per_category`` records of each category (drawn from
    ``seed``), in file order."""
    from selfprm.data import load_prmbench

    trajs = load_prmbench()
    if c.prmbench_per_category is None:
        return trajs
    rng = np.random.default_rng(c.seed + 2)
    by_cat: dict[str, list[int]] = {}
    for i, t in enumerate(trajs):
        by_cat.setdefault(t.meta["classification"], []).append(i)
    keep = set()
    for idx in by_cat.values():
        keep.update(idx if len(idx) <= c.prmbench_per_category
                    else rng.choice(idx, c.prmbench_per_category, replace=False).tolist())
    return [trajs[i] for i in sorted(keep)]


def _f1(tp: int, fp: int, fn: int) -> float | None:
    """``2PR / (P + R)`` as PRMBench's code computes it: a class that occurs but is never predicted
    (or predicted but never occurs) scores 0 there (its -1 precision times 0 recall); None only
    where the class neither occurs nor is predicted (its code's -1)."""
    if tp + fp == 0 and tp + fn == 0:
        return None
    if tp == 0:
        return 0.0
    p, r = tp / (tp + fp), tp / (tp + fn)
    return 2 * p * r / (p + r)


def prmbench_categories(scores: list[list[float]], trajectories: list[Trajectory],
                        threshold: float = 0.5) -> dict[str, dict]:
    """PRMBench's per-category step metrics (its ``evaluate_function``), plus ``overall``.

    A step is predicted sound when its score is ``>= threshold``. With sound steps positive:
    ``f1`` is the F1 of the sound steps (TP: sound, predicted sound), ``negative_f1`` that of the
    erroneous ones (TN: erroneous, predicted erroneous), ``prmscore = (f1 + negative_f1) / 2``, and
    ``step_auroc`` ranks every step of the category by score (no threshold). A step whose score
    is NaN (cut by truncation) is left out."""
    from selfprm.eval.metrics import step_auroc

    rows: dict[str, list[tuple[list[float], list[bool]]]] = {}
    for sc, t in zip(scores, trajectories):
        keep = [(x, y) for x, y in zip(sc, t.oracle_labels) if x is not None and not math.isnan(x)]
        item = ([x for x, _ in keep], [y for _, y in keep])
        rows.setdefault(t.meta["classification"], []).append(item)
        rows.setdefault("overall", []).append(item)
    out = {}
    for cat, items in rows.items():
        pairs = [(x >= threshold, y) for xs, ys in items for x, y in zip(xs, ys)]
        tp = sum(p and y for p, y in pairs)
        fp = sum(p and not y for p, y in pairs)
        tn = sum(not p and not y for p, y in pairs)
        fn = sum(not p and y for p, y in pairs)
        f1, nf1 = _f1(tp, fp, fn), _f1(tn, fn, fp)
        auc = step_auroc([xs for xs, _ in items], [ys for _, ys in items])
        out[cat] = {"records": len(items), "steps": len(pairs), "f1": f1, "negative_f1": nf1,
                    "prmscore": None if f1 is None or nf1 is None else (f1 + nf1) / 2,
                    "step_auroc": None if math.isnan(auc) else auc}
    return out


def source_data(name: str, data: StudyData, c: RealStudyConfig) -> tuple[list[tuple[Trajectory, StepLabels]], str]:
    """(trajectory, labels) pairs of one registered source on its training data (``TRAINING_DATA``),
    capped at ``train_examples``, and its PRM loss."""
    from selfprm.labels import run_label_source
    from selfprm.labels.perturbation import PerturbationConfig, perturb_solutions

    if TRAINING_DATA[name] == "perturbed":
        trajs = perturb_solutions(data.references, PerturbationConfig(variants=c.perturb_variants, seed=c.seed))
    else:
        trajs = getattr(data, TRAINING_DATA[name])
    res = run_label_source(name, trajs)
    pairs = [(t, l) for t, l in zip(trajs, res.labels) if l is not None]
    rng = np.random.default_rng(c.seed + 1)
    if len(pairs) > c.train_examples:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), c.train_examples, replace=False))]
    return pairs, res.prm_loss


# ----------------------------------------------------------------------------- one source


def run_source(name: str, data: StudyData, c: RealStudyConfig, run_dir: RunDir, progress: bool = True) -> dict:
    """Train one PRM, score the evaluation sets and best-of-4 solutions; the stage ``sources/NAME``."""
    import torch

    from selfprm.eval.processbench import score_trajectories_sorted
    from selfprm.prm.backbones import minilm_prm
    from selfprm.prm.model import SPR_REFERENCE
    from selfprm.prm.train import PRMTrainConfig, train_prm

    settings = config_blob(c)
    settings.pop("sources")  # adding a source does not redo the others
    stage = run_dir.stage(f"sources/{name}", {"source": name, "study": settings})
    if stage.done():
        return stage.result()
    stage.begin()
    pairs, loss = source_data(name, data, c)
    reference = loss == "spr" and c.spr_reference
    prm = minilm_prm(max_length=c.max_length_train, freeze_layers=c.freeze_layers, seed=c.seed,
                     **(SPR_REFERENCE if reference else {}))
    steps = math.ceil(len(pairs) / c.batch_size) * c.epochs
    tc = PRMTrainConfig(loss=loss, epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                        head_lr=c.spr_head_lr if reference else c.head_lr, seed=c.seed,
                        spr_warmup_steps=int(c.spr_warmup_fraction * steps) if loss == "spr" else 0,
                        spr_one_sided_fallback=c.spr_one_sided_fallback)
    torch.manual_seed(c.seed)  # dropout
    hist = train_prm(prm, pairs, tc, progress=progress, desc=name)
    prm.config.max_length = c.max_length_eval  # score with the whole 512-token window
    t0 = time.perf_counter()
    scores = {s: score_trajectories_sorted(prm, trajs, c.score_batch_size, progress, f"{name}/{s}")
              for s, trajs in data.eval_sets.items()}
    flat = [t for g in data.bo4_groups for t in g]
    bo4 = score_trajectories_sorted(prm, flat, c.score_batch_size, progress, f"{name}/bo4")
    # the PRM is not kept, so PRMBench is scored here, while it is in memory
    prmbench = score_trajectories_sorted(prm, data.prmbench, c.score_batch_size, progress, f"{name}/prmbench")
    rec = {"source": name, "loss": loss, "train_examples": hist.examples,
           "train_seconds": hist.seconds, "score_seconds": time.perf_counter() - t0,
           "final_loss": float(np.mean(hist.loss[-10:])) if hist.loss else None,
           # share of the *weighted* step labels that say "correct" (weight-0 steps claim nothing)
           "label_share_correct": float(np.mean([v >= 0.5 for _, l in pairs
                                                 for v, w in zip(l.values, l.weights or [1.0] * len(l.values)) if w > 0])),
           "scores": scores, "bo4_scores": bo4, "prmbench_scores": prmbench}
    if hist.spr_step:  # SPR: the filter's kept share per pseudo-label class over training
        rec["kept_share"] = {"step": hist.spr_step, "positive": hist.spr_kept_pos, "negative": hist.spr_kept_neg,
                             "fallback_steps": hist.spr_fallback_steps}
    # NaN scores (steps cut off by truncation) are stored as null and read back as NaN
    stage.finish(rec)
    return stage.result()


# ----------------------------------------------------------------------------- the study


def _nan(rows):
    return [[math.nan if v is None else v for v in r] for r in rows]


def run(c: RealStudyConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Run the study into ``out``; returns the result also written to ``out/real_metrics.json``."""
    from selfprm.eval.metrics import best_of_n, solution_scores
    from selfprm.prm.model import SPR_REFERENCE_AGGREGATION
    from selfprm.eval.processbench import evaluate_processbench

    run_dir = RunDir(out)
    out = run_dir.root
    t_start = time.perf_counter()
    data = prepare_data(c, progress)
    labels = {s: [t.first_error for t in trajs] for s, trajs in data.eval_sets.items()}
    result: dict = {"config": config_blob(c), "data": data.counts, "sources": {}}
    bo4_base = None
    for name in c.sources:
        rec = run_source(name, data, c, run_dir, progress)
        pb = evaluate_processbench({s: _nan(v) for s, v in rec["scores"].items()}, labels)
        # best-of-4: per problem (final answer, correct?, solution score), PRM pick vs the rest
        how = SPR_REFERENCE_AGGREGATION if rec["loss"] == "spr" and c.spr_reference else "min"
        sol = solution_scores(_nan(rec["bo4_scores"]), how)
        it = iter(sol)
        groups = [[(t.final_answer, bool(t.outcome), next(it)) for t in g] for g in data.bo4_groups]
        bo = best_of_n(groups, 4)
        bo4_base = bo
        result["sources"][name] = {
            "f1": pb.to_dict()["f1"],
            "train_examples": rec["train_examples"],
            "train_seconds": rec["train_seconds"],
            "score_seconds": rec["score_seconds"],
            "threshold": pb.threshold,
            "accuracy": {s: {"error": r.error_accuracy, "correct": r.correct_accuracy} for s, r in pb.splits.items()},
            "best_of_4": bo.prm,
            "label_share_correct": rec["label_share_correct"],
        }
        if "kept_share" in rec:
            result["sources"][name]["kept_share"] = rec["kept_share"]
        if data.prmbench:
            result["sources"][name]["prmbench"] = prmbench_categories(
                _nan(rec["prmbench_scores"]), data.prmbench, c.prmbench_threshold)
    if bo4_base is not None:
        result["best_of_4"] = {"majority_vote": bo4_base.majority_vote, "random_pick": bo4_base.random_pick,
                               "oracle_pick": bo4_base.oracle_pick, "problems": bo4_base.problems}
    result["total_seconds"] = time.perf_counter() - t_start
    result["deviations"] = deviations(c)
    table = format_table(result)
    run_dir.write_json("real_metrics.json", result)
    atomic_write_text(out / "real_metrics.md", table + "\n")
    plot(result, out / "real_f1.png")
    print(table)
    return result


def deviations(c: RealStudyConfig) -> list[str]:
    """Where the ``spr`` row does not run MetaStone-S1's method, or PRMBench is not scored, as their
    public code does."""
    out = []
    if "spr" in c.sources and not c.spr_reference:
        out.append("spr: a linear head on the last layer, not MetaStone-S1's score model")
    if "spr" in c.sources and c.spr_warmup_fraction:
        out.append(f"spr: the first {c.spr_warmup_fraction:.0%} of the steps train on class-balanced BCE before the "
                   "filter is on (not in the paper)")
    if "spr" in c.sources and c.spr_one_sided_fallback:
        out.append("spr: a batch whose filter kept one class only trains on class-balanced BCE (not in the paper)")
    if c.prmbench:
        out.append("PRMBench: the subset's records only; the upstream task also scores each redundancy record's "
                   "original (error-free) solution, which the subset file does not hold")
    return out


def format_table(result: dict) -> str:
    splits = list(next(iter(result["sources"].values()))["f1"].keys()) if result["sources"] else []
    splits = [s for s in splits if s != "average"]

    def pct(x):
        return cell(None if x is None else 100 * x, ".1f", "-")

    rows = [[f"{name} (MiniLM-22M)", *(pct(r["f1"][s]) for s in splits), f"**{pct(r['f1']['average'])}**",
             pct(r["best_of_4"]), str(r["train_examples"]), f"{r['train_seconds']:.0f}"]
            for name, r in result["sources"].items()]
    rows += [[f"{name} *(published, 7B)*", *("" for _ in splits), f"{avg:.1f}", "", "", ""]
             for name, avg in PUBLISHED_7B.items()]
    lines = [markdown_table(["PRM", *splits, "average F1", "best-of-4", "train ex.", "train s"], rows)]
    b = result.get("best_of_4")
    if b:
        lines.append("")
        lines.append(f"Best-of-4 on {b['problems']} held-out GSM8K test problems (accuracy %): "
                     f"majority vote {pct(b['majority_vote'])}, random pick {pct(b['random_pick'])}, "
                     f"any-correct (oracle) {pct(b['oracle_pick'])}; each PRM's pick in the table.")
    ev = result["data"]["eval"]
    lines.append("ProcessBench F1 (%) on the evaluation part of each split (by problem): "
                 + ", ".join(f"{k} {v}" for k, v in ev.items())
                 + "; threshold tuned on gsm8k and reused.")
    for name, r in result["sources"].items():
        k = r.get("kept_share")
        if k and k["step"]:
            lines.append(f"{name}'s filter kept, at its last step, {pct(k['positive'][-1])}% of the outcome-right steps "
                         f"and {pct(k['negative'][-1])}% of the outcome-wrong ones (lowest over training "
                         f"{pct(min(k['positive']))}% / {pct(min(k['negative']))}%; {k.get('fallback_steps', 0)} of "
                         f"{len(k['step'])} filtered steps fell back to class-balanced BCE).")
    scored = {n: r["prmbench"]["overall"] for n, r in result["sources"].items() if r.get("prmbench")}
    if scored:
        lines.append("PRMBench (subset, all categories) PRMScore / step AUROC (%): "
                     + ", ".join(f"{n} {pct(o['prmscore'])} / {pct(o['step_auroc'])}" for n, o in scored.items()) + ".")
    if result.get("deviations"):
        lines += ["", "Deviations from the papers:"] + [f"- {d}" for d in result["deviations"]]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["sources"])
    if not names:
        return
    keys = list(result["sources"][names[0]]["f1"].keys())
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        vals = [100 * (result["sources"][n]["f1"][k] or 0.0) for k in keys]
        ax.bar(np.arange(len(keys)) + i * w, vals, w, label=n)
    for name, avg in PUBLISHED_7B.items():
        ax.axhline(avg, ls=":", lw=1, color="gray")
        ax.text(len(keys) - 0.5, avg, f"{name} (published 7B)", fontsize=6, va="bottom", ha="right")
    ax.set_xticks(np.arange(len(keys)) + 0.4 - w / 2, keys)
    ax.set_ylabel("ProcessBench F1 (%)")
    ax.set_title("PRMs on MiniLM by label source")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
