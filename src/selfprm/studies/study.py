"""``selfprm study``: can self-generated step labels replace exact ones, where, and at what cost?

One grid, label source x training trajectories x domain x seed, every cell a PRM trained on the
first N trajectories of a seed's pool as one source labelled them, evaluated against the exact
step oracle on held-out problems (step AUROC, ProcessBench first-error F1, best-of-N,
calibration). Domains: ``arith`` (crisp outcome), ``arith-fuzzy`` (the same problems and pools,
the outcome from a noisy, lenient judge at each ``judge_errors`` rate:
:mod:`selfprm.domains.arith_fuzzy`), ``tools``, and any other name in ``selfprm.domains.DOMAINS``
with a tiny-policy worked solution.

From the grid:

* **replacement ratio** (the question in one number): for a source ``s`` and the oracle-label
  PRM trained on ``N0`` trajectories, ``ratio = N_s / N0`` where ``N_s`` is where ``s``'s curve
  (mean over seeds) first reaches the oracle's metric at ``N0``, interpolated linearly in
  ``log N``; its band is the 2.5-97.5 % range over a bootstrap of seeds; a source that never gets
  there has ``ratio: null`` and ``best``, how close it came;
* **rankings**: sources ranked by first-error F1 and by best-of-N at the largest N, and Kendall's
  tau-b between the two (the Qwen "Lessons" paper, arXiv 2501.07301, Sec. 3, found they disagree);
* **real text**: the ``real`` study (MiniLM on ProcessBench) over ``real_seeds`` seeds with
  bootstrap confidence intervals.

Every stage goes through the run directory (:mod:`selfprm.rundir`): a policy per domain family,
a pool per seed, a judge per fuzzy rate, labels per source, a PRM and its evaluation per N, so a
rerun recomputes nothing and a changed parameter recomputes only what is built from it.
``DIR/study.json`` holds everything; ``DIR/index.html`` (:mod:`selfprm.report.study_page`) is
rendered from that JSON alone.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from selfprm.domains.arith import ArithConfig
from selfprm.domains.code import CodeConfig
from selfprm.domains.tools import ToolsConfig
from selfprm.eval.calibration import ece_of, reliability
from selfprm.eval.metrics import (best_of_n, first_error_f1, predicted_first_error, solution_scores, step_auroc,
                                  tune_threshold)
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.policies.tool_calling import ToolCallingPolicy
from selfprm.prm.train import PRMTrainConfig
from selfprm.rundir import RunDir, Stage
from selfprm.studies.stages import label_stage, log, policy_stage, prm_stage, seed_streams
from selfprm.types import Trajectory, read_trajectories, write_trajectories

# the metrics a replacement ratio is computed for; the first is study.json's ``replacement_ratio``
RATIO_METRICS = ("step_auroc", "first_error_f1")


@dataclass
class StudyConfig:
    """The grid: label source x training trajectories x domain x seed, and the real-text comparison.

    Parameters:
        seed: seeds every policy's SFT and, through independent streams, each seed's pool, labels and PRMs.
        seeds: independent repeats of everything after the policy (at least 3: the bands are over seeds).
        domains: names from ``selfprm.domains.DOMAINS``; ``arith-fuzzy`` runs once per ``judge_errors`` rate.
        judge_errors: error rates of ``arith-fuzzy``'s judge.
        lenient_factor: the judge accepts a fluent wrong answer with ``lenient_factor * rate``.
        sources: registered label sources; ``oracle`` (the exact labels) is the reference and must be present.
        source_kwargs: keyword arguments of each source beyond its defaults.
        trajectories: training trajectories per PRM (the first N of the pool, so smaller sets nest in larger).
        arith: the ``arith`` (and ``arith-fuzzy``) problems.
        tools: the ``tools`` problems.
        code: the ``code`` problems (programs with unit tests, run in the sandbox).
        policy: ``hf`` (each domain's tiny causal LM writes the pools and rollouts) or ``simulated`` (the
            noisy arith solver writes them on ``arith``/``arith-fuzzy``; other domains keep ``hf``); the PRM
            backbone is the tiny causal LM either way.
        lm: shape of each domain's tiny causal LM (policy and PRM backbone).
        sft: its fine-tuning on worked solutions (the seed is taken from ``seed``).
        n_sft_problems: worked solutions per domain's SFT.
        temperature: sampling temperature of the policy.
        max_new_tokens: cap on a sampled solution's length.
        samples_per_train_problem: solutions per training problem.
        n_dev_problems: problems that tune the first-error threshold (4 solutions each).
        n_test_problems: held-out problems the PRMs are evaluated on.
        bon_n: solutions per test problem, the N of best-of-N.
        prm: PRM training; the loss is the one the label source names.
        prm_min_steps: fewest optimizer steps a PRM trains for: a small N gets more epochs (``prm.epochs``
            at least), so every N is trained about as long and a curve measures data, not training length.
        spr_warmup_steps: SPR: class-balanced BCE steps before the filter is on (as the demo; not in the paper).
        surprise_features: the PRM head also reads the backbone's token log-probs.
        aggregation: how step scores become a solution score for best-of-N.
        label_shard_size: trajectories per labelling shard (the unit of resume).
        engine: labelling engine: ``local`` (in-process) or ``ray`` (the label stage's shards on Ray actors,
            the same labels).
        address: with ``engine=ray``, the Ray cluster to join; empty starts a local one.
        bootstrap: bootstrap resamples over seeds for the bands.
        real: run the real-text comparison (MiniLM on ProcessBench; needs the shared data).
        real_seeds: seeds of the real-text comparison.
        real_preset: preset of the ``real`` study each seed runs (``quick`` or ``full``).
    """

    seed: int = 0
    seeds: int = 3
    domains: tuple[str, ...] = ("arith", "arith-fuzzy", "tools", "code")
    judge_errors: tuple[float, ...] = (0.1, 0.3)
    lenient_factor: float = 2.0
    sources: tuple[str, ...] = ("oracle", "outcome", "spr", "mc")
    source_kwargs: dict[str, dict[str, Any]] = field(default_factory=lambda: {"mc": {"n_rollouts": 2}})
    # Sized for about 90 minutes on a loaded 2-core machine from the quick run's measured costs:
    # a PRM step 0.17 s (batch 32), scoring 0.013 s a trajectory, SFT ~3 min per domain, a real-text
    # seed ~5-6 min. Per (variant, source, seed) N = 100/200/400 is 78 steps + 3 x 400 scored, ~30 s,
    # so 5 variants x 4 sources x 3 seeds ~30 min; adding N = 800 costs ~13 s more each (~+11 min).
    # Measured: the full preset took 68 min on one thread beside other runs (180 cells, real with 5
    # seeds), and redoing the code family at its harder default 10 min more.
    trajectories: tuple[int, ...] = (100, 200, 400)
    arith: ArithConfig = field(default_factory=ArithConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    # the code domain's defaults (4-7 lines, references up to 3 back) are learnt almost perfectly by
    # the 400-step SFT policy: 99.75 % right answers and 1 flawed trajectory in 400 (measured, full
    # preset, seed 0), so no step label could be measured there. 5-9 lines up to 5 back: 87.5 % right,
    # 13 % flawed (4.3 % unsound steps; 200 samples at T=0.7); 6-10 lines: 5 % right (the SFT fails)
    code: CodeConfig = field(default_factory=lambda: CodeConfig(min_ops=5, max_ops=9, max_back=5))
    policy: str = "hf"
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=400))
    n_sft_problems: int = 8000
    temperature: float = 0.7
    max_new_tokens: int = 96
    samples_per_train_problem: int = 4
    n_dev_problems: int = 40
    n_test_problems: int = 60
    bon_n: int = 4
    prm: PRMTrainConfig = field(default_factory=lambda: PRMTrainConfig(epochs=2, batch_size=32, head_lr=5e-2))
    prm_min_steps: int = 24
    spr_warmup_steps: int = 8
    surprise_features: bool = True
    aggregation: str = "min"
    label_shard_size: int = 128
    engine: str = "local"
    address: str = ""
    bootstrap: int = 1000
    real: bool = True
    real_seeds: int = 5
    real_preset: str = "quick"

    def __post_init__(self) -> None:
        from selfprm.domains import DOMAINS
        from selfprm.labels import LABEL_SOURCES

        DOMAINS.check(list(self.domains))
        LABEL_SOURCES.check(list(self.sources))
        if "oracle" not in self.sources:
            raise ValueError("study: sources must include 'oracle', the reference every ratio is measured against")
        if self.seeds < 3:
            raise ValueError(f"study: seeds must be >= 3 (bands are over seeds), got {self.seeds}")
        if not self.trajectories or min(self.trajectories) < 1:
            raise ValueError(f"study: trajectories must be positive counts, got {self.trajectories}")
        if self.policy not in ("hf", "simulated"):
            raise ValueError(f"study: policy must be 'hf' or 'simulated', not {self.policy!r}")
        from selfprm.engines import check_engine

        check_engine(self.engine, self.address)
        if self.real_preset not in ("quick", "full"):
            raise ValueError(f"study: real_preset must be 'quick' or 'full', not {self.real_preset!r}")


def _quick() -> StudyConfig:
    """5 min 3 s measured on the idle 2-core machine (``--threads 2``; 17 minutes at load ~8). The
    simulated arith solver writes the arith pools; the tiny LM at width 128 after 400 SFT steps is the PRM backbone and the tools policy (at width 64 after
    300 steps its SFT loss stayed at 1.0, it could not do the arithmetic, and even oracle-label
    PRMs reached a step AUROC of only 0.45-0.64); three spine sources, small pools, no real text."""
    return StudyConfig(judge_errors=(0.2,), sources=("oracle", "outcome", "spr"), trajectories=(30, 60, 120),
                       domains=("arith", "arith-fuzzy", "tools"), policy="simulated",
                       sft=SFTConfig(steps=400, batch_size=32), n_sft_problems=4000, n_dev_problems=20,
                       n_test_problems=25, max_new_tokens=80,
                       prm=PRMTrainConfig(epochs=2, batch_size=32, head_lr=5e-2), real=False)


Config = StudyConfig
PRESETS = {"full": StudyConfig, "quick": _quick}
DEFAULT_OUT = "runs/study"


# ----------------------------------------------------------------------------- pure pieces


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same items (ties in either count half):
    ``(C - D) / sqrt((n0 - T_a) (n0 - T_b))``, ``n0 = n(n-1)/2``; NaN when either is constant."""
    if len(a) != len(b):
        raise ValueError(f"kendall_tau: {len(a)} vs {len(b)} items")
    if any(x is None or math.isnan(x) for x in [*a, *b]):
        return math.nan  # an undefined metric ranks nothing
    conc = disc = ties_a = ties_b = 0
    n = len(a)
    for i in range(n):
        for j in range(i + 1, n):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            ties_a += da == 0
            ties_b += db == 0
            conc += da * db > 0
            disc += da * db < 0
    n0 = n * (n - 1) / 2
    denom = math.sqrt((n0 - ties_a) * (n0 - ties_b))
    return float((conc - disc) / denom) if denom > 0 else math.nan


def crossing(ns: Sequence[float], values: Sequence[float], target: float) -> float | None:
    """The smallest N at which the curve ``values(ns)`` reaches ``target``, linear in ``log N``
    between grid points; None when it never does (within the grid)."""
    pts = [(n, v) for n, v in sorted(zip(ns, values)) if v is not None and not math.isnan(v)]
    for k, (n, v) in enumerate(pts):
        if v >= target:
            if k == 0:
                return float(n)
            (n0, v0) = pts[k - 1]
            frac = (target - v0) / (v - v0)
            return float(math.exp(math.log(n0) + frac * (math.log(n) - math.log(n0))))
    return None


def prm_epochs(n: int, batch_size: int, epochs: int, min_steps: int) -> int:
    """Epochs over ``n`` examples that give at least ``min_steps`` optimizer steps, and at least
    ``epochs``: with ``ceil(n / batch_size)`` steps an epoch, a fixed epoch count would train a PRM
    on 30 trajectories for 2 steps and one on 800 for 50, and the small-N cells would collapse from
    training too short rather than from too little data."""
    per_epoch = max(1, math.ceil(n / batch_size))
    return max(epochs, math.ceil(min_steps / per_epoch))


def interp_cost(ns: Sequence[float], values: Sequence[float], n: float) -> float:
    """A cost at ``n`` trajectories, linear in N between grid points (costs grow with N, not log N)."""
    return float(np.interp(n, list(ns), list(values)))


def _curve(cells: list[dict], key: str, source: str, metric: str, seeds: Sequence[int]) -> tuple[list[int], list[float]]:
    """Mean over ``seeds`` of ``metric`` per N (seeds may repeat: a bootstrap sample)."""
    ns = sorted({c["trajectories"] for c in cells if c["domain_key"] == key and c["source"] == source})
    vals = []
    for n in ns:
        by_seed = {c["seed"]: c[metric] for c in cells
                   if c["domain_key"] == key and c["source"] == source and c["trajectories"] == n}
        xs = [by_seed[s] for s in seeds if s in by_seed and by_seed[s] is not None]
        vals.append(float(np.mean(xs)) if xs else math.nan)
    return ns, vals


def replacement_ratios(cells: list[dict], key: str, source: str, metric: str = "step_auroc",
                       n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """For each oracle N0: ``ratio`` (trajectories ``source`` needs to reach the oracle PRM's
    ``metric`` at N0, over N0), its bootstrap band over seeds (``lo``/``hi``, 2.5/97.5 %; ``hi``
    null when over 2.5 % of resamples never get there), the policy tokens and token passes at that
    N (interpolated linearly in N), and ``best``: the source's best mean over the grid."""
    seeds = sorted({c["seed"] for c in cells if c["domain_key"] == key})
    ns, vals = _curve(cells, key, source, metric, seeds)
    ons, ovals = _curve(cells, key, "oracle", metric, seeds)
    _, toks = _curve(cells, key, source, "policy_tokens", seeds)
    _, passes = _curve(cells, key, source, "token_passes", seeds)
    rng = np.random.default_rng(seed)
    boots = [list(rng.choice(seeds, len(seeds), replace=True)) for _ in range(n_boot)]
    boot_curves = [(_curve(cells, key, source, metric, b)[1], _curve(cells, key, "oracle", metric, b)[1]) for b in boots]
    out: dict[str, dict[str, Any]] = {}
    for i, n0 in enumerate(ons):
        target = ovals[i]
        hit = crossing(ns, vals, target) if not math.isnan(target) else None
        ratios = []
        for sv, ov in boot_curves:
            h = crossing(ns, sv, ov[i]) if not math.isnan(ov[i]) else None
            ratios.append(math.inf if h is None else h / n0)
        # nearest-rank percentiles: a resample that never gets there is +inf, which interpolation cannot take
        srt = sorted(ratios)
        lo, hi = (srt[max(0, math.ceil(q * len(srt)) - 1)] for q in (0.025, 0.975)) if srt else (math.inf, math.inf)
        finite = [v for v in vals if not math.isnan(v)]
        out[str(n0)] = {
            "ratio": None if hit is None else hit / n0, "lo": None if math.isinf(lo) else float(lo),
            "hi": None if math.isinf(hi) else float(hi), "target": target,
            "best": max(finite) if finite else None,
            "n_needed": hit, "policy_tokens": None if hit is None else interp_cost(ns, toks, hit),
            "token_passes": None if hit is None else interp_cost(ns, passes, hit),
            "reached_share": float(np.mean([not math.isinf(r) for r in ratios])) if ratios else 0.0,
        }
    return out


def ece(scores: Sequence[float], labels: Sequence[bool], bins: int = 10) -> tuple[float, list[list[float]]]:
    """Expected calibration error of step scores as P(sound) over equal-width bins (Guo et al., arXiv
    1706.04599, Eq. 3; :mod:`selfprm.eval.calibration`), and each non-empty bin's
    ``[mean score, share sound, count]`` for the page's reliability diagram."""
    r = reliability(scores, labels, bins, binning="width")
    return ece_of(r), [[c, a, n] for c, a, n in zip(r.confidence, r.accuracy, r.counts)]


def is_recovered(t: Trajectory) -> bool:
    """Right answer after a wrong step that a later ``redo:`` line fixed."""
    return bool(t.outcome) and not all(t.oracle_labels) and any(s.startswith("redo:") for s in t.steps)


def is_lucky(t: Trajectory) -> bool:
    """Right answer with a wrong step and no redo: right by luck."""
    return bool(t.outcome) and not all(t.oracle_labels) and not is_recovered(t)


def evaluate_prm(prm, dev: list[Trajectory], test: list[Trajectory], bon_n: int, how: str) -> dict[str, Any]:
    """A PRM against the oracle on ``test`` (threshold tuned on ``dev``): the demo's three metrics
    (step AUROC, first-error F1, best-of-N) plus calibration and where it fails."""
    dev_scores = prm.score_trajectories(dev)
    test_scores = prm.score_trajectories(test)
    th = tune_threshold(dev_scores, [t.first_error for t in dev])
    fe = first_error_f1(test_scores, [t.first_error for t in test], th)
    sol = solution_scores(test_scores, how)
    bon = best_of_n([[(t.final_answer, bool(t.meta.get("true_outcome", t.outcome)), s)
                      for t, s in zip(test[i:i + bon_n], sol[i:i + bon_n])] for i in range(0, len(test), bon_n)], bon_n)
    flat_s = [x for row in test_scores for x in row]
    flat_y = [y for t in test for y in t.oracle_labels]
    err, table = ece(flat_s, flat_y)
    flagged = [predicted_first_error(s, th) != -1 for s in test_scores]
    lucky = [f for f, t in zip(flagged, test) if is_lucky(t)]
    recovered = [f for f, t in zip(flagged, test) if is_recovered(t)]
    below = [x < th for x in flat_s if not math.isnan(x)]
    return {
        "step_auroc": step_auroc(test_scores, [t.oracle_labels for t in test]),
        "first_error_f1": fe.f1, "threshold": th, "bon_accuracy": bon.prm,
        "majority_vote": bon.majority_vote, "random_pick": bon.random_pick, "oracle_pick": bon.oracle_pick,
        "step_ece": err, "reliability": table,
        "predicted_unsound_share": float(np.mean(below)) if below else math.nan,
        "lucky": len(lucky), "lucky_flagged": float(np.mean(lucky)) if lucky else None,
        "recovered": len(recovered), "recovered_flagged": float(np.mean(recovered)) if recovered else None,
    }


# ----------------------------------------------------------------------------- the grid


def _make_domain(name: str, config: StudyConfig, judge_error: float | None = None, judge_seed: int = 0):
    from selfprm.domains import DOMAINS

    if name == "arith":
        return DOMAINS.get("arith")(config.arith)
    if name == "arith-fuzzy":
        from selfprm.domains.arith_fuzzy import FuzzyJudgeConfig

        return DOMAINS.get("arith-fuzzy")(config.arith, FuzzyJudgeConfig(judge_error, config.lenient_factor, judge_seed))
    if name == "tools":
        return DOMAINS.get("tools")(config.tools)
    if name == "code":
        return DOMAINS.get("code")(config.code)
    return DOMAINS.get(name)()


def _variants(config: StudyConfig) -> list[tuple[str, str, float | None]]:
    """``(key, domain, judge error)`` per grid domain; ``arith-fuzzy`` once per rate."""
    out = []
    for d in config.domains:
        if d == "arith-fuzzy":
            out += [(f"arith-fuzzy@{e:g}", d, float(e)) for e in config.judge_errors]
        else:
            out.append((d, d, 0.0 if d == "arith" else None))
    return out


def _family(domain: str) -> str:
    """Domains that share problems share a policy and pools (``arith-fuzzy`` is ``arith`` judged)."""
    return "arith" if domain == "arith-fuzzy" else domain


def _writer(config: StudyConfig, domain, model, tok, seed: int):
    """What writes a family's pools and rollouts: the tiny LM (running the domain's tool where it
    has one), or the simulated arith solver."""
    from selfprm.domains.arith import ArithDomain
    from selfprm.rl.rollout import uses_tools

    if config.policy == "simulated" and isinstance(domain, ArithDomain):
        from selfprm.policies.simulated import SimulatedPolicy, SimulatedPolicyConfig

        return SimulatedPolicy(domain, SimulatedPolicyConfig(seed=seed))
    if uses_tools(domain):
        return ToolCallingPolicy(model, tok, domain, config.temperature, config.max_new_tokens, seed)
    from selfprm.policies.hf import HFPolicy, HFPolicyConfig

    return HFPolicy(model, tok, domain, HFPolicyConfig(temperature=config.temperature,
                                                       max_new_tokens=config.max_new_tokens, seed=seed))


def _pool(config: StudyConfig, run: RunDir, family: str, domain, k: int, seed: int, policy, parent: Stage
          ) -> tuple[Stage, dict[str, list[Trajectory]]]:
    from selfprm.policies.base import reseed, sample_flat

    streams = seed_streams(seed, ["train", "dev", "test"])
    splits = {"train": (math.ceil(max(config.trajectories) / config.samples_per_train_problem),
                        config.samples_per_train_problem),
              "dev": (config.n_dev_problems, 4), "test": (config.n_test_problems, config.bon_n)}
    st = run.stage(f"{family}/seed-{k}/pool", {"splits": splits, "writer": type(policy).__name__,
                                               "temperature": config.temperature,
                                               "max_new_tokens": config.max_new_tokens, "seed": seed}, [parent])
    if st.done():
        return st, {s: [t for t, _ in read_trajectories(st.file(f"{s}.jsonl"))] for s in splits}
    st.begin()
    pool = {}
    for split, (n_prob, n_samp) in splits.items():
        reseed(policy, streams[split])
        pool[split] = sample_flat(policy, domain.sample_problems(n_prob, seed=streams[split], prefix=split), n_samp)
        write_trajectories(st.file(f"{split}.jsonl"), pool[split])
    st.finish({s: len(v) for s, v in pool.items()})
    return st, pool


def _cells_for(config: StudyConfig, run: RunDir, key: str, dom_name: str, judge_error: float | None, k: int,
               seed: int, policy_st: Stage, model, tok, pool_st: Stage, pool: dict[str, list[Trajectory]],
               progress: bool) -> tuple[list[dict], list[dict]]:
    """One (domain variant, seed): labels per source, then a PRM and its evaluation per N."""
    from selfprm.prm.model import PRMConfig

    streams = seed_streams(seed, ["labels", "prm", "judge"])
    domain = _make_domain(dom_name, config, judge_error, streams["judge"])
    parents = [pool_st]
    train = pool["train"]
    if dom_name == "arith-fuzzy":
        # the judge is a stage of its own: its config reaches every label and PRM built on it
        judge_st = run.stage(f"{key}/seed-{k}/judge", {"judge": domain.judge}, [pool_st])
        train = domain.rejudge(train)
        if not judge_st.done():
            judge_st.begin()
            judge_st.finish({"verdict_error_rate": float(np.mean([t.outcome != t.meta["true_outcome"] for t in train]))})
        parents = [judge_st]
    policy = _writer(config, domain, model, tok, streams["labels"])
    cells, quality = [], []
    for source in config.sources:
        # exact labels read no outcome, so a judged variant's oracle cells are its family's crisp ones:
        # they share the family's stages (computed once, whichever variant comes first)
        shared = source == "oracle" and _family(dom_name) != dom_name
        skey, sparents, strain = (_family(dom_name), [pool_st], pool["train"]) if shared else (key, parents, train)
        label_st, labels, meta = label_stage(run, f"{skey}/seed-{k}/labels/{source}", source,
                                             dict(config.source_kwargs.get(source, {})), strain, policy, sparents,
                                             config.label_shard_size, streams["labels"], progress=progress,
                                             engine=config.engine, address=config.address)
        flat = [(v, o) for l, t in zip(labels, train) if l is not None for v, o in zip(l.values, t.oracle_labels)]
        quality.append({"domain_key": key, "source": source, "seed": k,
                        "label_accuracy": float(np.mean([(v >= 0.5) == o for v, o in flat])) if flat else None,
                        "label_auroc": step_auroc([[v for v, _ in flat]], [[o for _, o in flat]]) if flat else None,
                        "policy_tokens_per_step_label": meta["policy_tokens"] / max(1, meta["labeled_steps"]),
                        "policy_tokens": meta["policy_tokens"], "token_passes": meta["token_passes"]})
        loss = meta["prm_loss"]
        tcfg = replace(config.prm, loss=loss, seed=streams["prm"],
                       spr_warmup_steps=config.spr_warmup_steps if loss == "spr" else 0)
        pcfg = PRMConfig(step_separator=domain.step_separator, surprise_features=config.surprise_features)
        for n in sorted(config.trajectories):
            pairs = list(zip(strain[:n], labels[:n]))
            ncfg = replace(tcfg, epochs=prm_epochs(sum(l is not None for _, l in pairs), config.prm.batch_size,
                                                   config.prm.epochs, config.prm_min_steps))
            prm_st, prm, hist = prm_stage(run, f"{skey}/seed-{k}/prm/{source}/n{n}", [label_st, policy_st],
                                          policy_st.file("model"), tok, pairs, ncfg, pcfg, init_seed=streams["prm"],
                                          data_config={"n": n}, progress=progress, desc=f"{key}/{source}/{n}")
            ev = run.stage(f"{skey}/seed-{k}/eval/{source}/n{n}",
                           {"bon_n": config.bon_n, "aggregation": config.aggregation}, [prm_st, pool_st])
            if not ev.done():
                ev.begin()
                ev.finish(evaluate_prm(prm, pool["dev"], pool["test"], config.bon_n, config.aggregation))
            row = dict(ev.result())
            # the ledger of the first n labels: their own policy tokens; label token passes prorated by
            # trajectories (the stage counts them for the pool), plus this PRM's training passes
            label_passes = meta["token_passes"] * min(n, len(train)) / max(1, len(train))
            row.update({"source": source, "domain": dom_name, "domain_key": key, "judge_error": judge_error,
                        "trajectories": min(n, len(train)), "seed": k,
                        "policy_tokens": int(sum(l.policy_tokens for l in labels[:n] if l is not None)),
                        "token_passes": float(label_passes + hist.get("token_passes", 0)),
                        "train_seconds": hist["seconds"]})
            cells.append(row)
            log(f"  {key:16s} seed {k} {source:8s} N={n:<5d} AUROC {_fmt(row['step_auroc'], 3)}  "
                f"F1 {_fmt(row['first_error_f1'], 3)}  BoN {_fmt(row['bon_accuracy'], 3)}")
    return cells, quality


def run_grid(config: StudyConfig, run: RunDir, progress: bool = True) -> tuple[list[dict], list[dict], dict]:
    """Every cell of the grid (cached), the label-quality rows, and each pool's failure statistics."""
    cells, quality, pools = [], [], {}
    streams = seed_streams(config.seed, [f"seed-{k}" for k in range(config.seeds)])
    variants = _variants(config)
    for family in dict.fromkeys(_family(d) for _, d, _ in variants):
        base = _make_domain(family, config, 0.0)
        log(f"[{family}] policy: tiny causal LM, SFT on worked solutions")
        policy_st, model, tok, _ = policy_stage(run, f"{family}/policy", base, config.n_sft_problems, config.lm,
                                                replace(config.sft, seed=config.seed), progress=progress)
        sampler = _writer(config, base, model, tok, config.seed)
        for k in range(config.seeds):
            seed = streams[f"seed-{k}"]
            pool_st, pool = _pool(config, run, family, base, k, seed, sampler, policy_st)
            tr = pool["train"]
            pools[f"{family}/seed-{k}"] = {
                "trajectories": len(tr), "wrong_answers": float(np.mean([not t.outcome for t in tr])),
                "flawed": float(np.mean([not all(t.oracle_labels) for t in tr])),
                "lucky": float(np.mean([is_lucky(t) for t in tr])),
                "recovered": float(np.mean([is_recovered(t) for t in tr])),
                "steps_per_trajectory": float(np.mean([len(t.steps) for t in tr]))}
            for key, dom_name, err in variants:
                if _family(dom_name) != family:
                    continue
                c, q = _cells_for(config, run, key, dom_name, err, k, seed, policy_st, model, tok, pool_st, pool,
                                  progress)
                cells += c
                quality += q
    return cells, quality, pools


# ----------------------------------------------------------------------------- summaries


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def rankings(cells: list[dict]) -> dict[str, dict[str, Any]]:
    """Per domain key, at its largest N: sources by mean first-error F1 and by mean best-of-N, and
    Kendall's tau-b between the two orders."""
    out = {}
    for key in dict.fromkeys(c["domain_key"] for c in cells):
        mine = [c for c in cells if c["domain_key"] == key]
        n = max(c["trajectories"] for c in mine)
        srcs = list(dict.fromkeys(c["source"] for c in mine))
        f1 = {s: _mean_sd([c["first_error_f1"] for c in mine if c["source"] == s and c["trajectories"] == n])[0]
              for s in srcs}
        bon = {s: _mean_sd([c["bon_accuracy"] for c in mine if c["source"] == s and c["trajectories"] == n])[0]
               for s in srcs}
        out[key] = {"trajectories": n, "by_first_error_f1": sorted(srcs, key=lambda s: -f1[s]),
                    "by_bon": sorted(srcs, key=lambda s: -bon[s]), "first_error_f1": f1, "bon_accuracy": bon,
                    "tau": kendall_tau([f1[s] for s in srcs], [bon[s] for s in srcs])}
    return out


ONE_SIDED_POOL = 0.02  # a training pool under 2 % (or over 98 %) flawed trajectories is flagged


def failures(cells: list[dict], pools: dict[str, dict]) -> dict[str, Any]:
    """What the page's "where it fails" section says, all counted from the cells."""
    collapses = [{k: c[k] for k in ("domain_key", "source", "trajectories", "seed", "step_auroc",
                                    "predicted_unsound_share")}
                 for c in cells if (c["step_auroc"] is not None and c["step_auroc"] <= 0.55)
                 or c["predicted_unsound_share"] in (0.0, 1.0)]
    flagged = {}
    for what in ("lucky", "recovered"):
        rows = {}
        for key in dict.fromkeys(c["domain_key"] for c in cells):
            for s in dict.fromkeys(c["source"] for c in cells if c["domain_key"] == key):
                m, sd = _mean_sd([c[f"{what}_flagged"] for c in cells if c["domain_key"] == key and c["source"] == s
                                  and c[f"{what}_flagged"] is not None])
                rows[f"{key}/{s}"] = {"flagged": m, "sd": sd,
                                      "count": int(sum(c[what] for c in cells if c["domain_key"] == key
                                                       and c["source"] == s))}
        flagged[what] = rows
    noise = []
    crisp = [c for c in cells if c["domain_key"] == "arith"]
    for key in dict.fromkeys(c["domain_key"] for c in cells if c["domain"] == "arith-fuzzy"):
        for s in dict.fromkeys(c["source"] for c in cells if c["domain_key"] == key):
            n = max(c["trajectories"] for c in cells if c["domain_key"] == key)
            for metric in ("step_auroc", "first_error_f1"):
                fz = _mean_sd([c[metric] for c in cells if c["domain_key"] == key and c["source"] == s
                               and c["trajectories"] == n])
                cr = _mean_sd([c[metric] for c in crisp if c["source"] == s and c["trajectories"] == n])
                noise.append({"domain_key": key, "judge_error": next(c["judge_error"] for c in cells
                                                                     if c["domain_key"] == key),
                              "source": s, "metric": metric, "trajectories": n, "crisp": cr[0], "crisp_sd": cr[1],
                              "fuzzy": fz[0], "fuzzy_sd": fz[1], "drop": cr[0] - fz[0]})
    # a pool with (almost) no flawed, or no sound, trajectories gives its PRMs nothing to learn or to be
    # measured on: its cells are reported, never silently averaged in
    one_sided = [{"pool": k, "flawed": p["flawed"], "trajectories": p["trajectories"]} for k, p in pools.items()
                 if not ONE_SIDED_POOL < p["flawed"] < 1 - ONE_SIDED_POOL]
    return {"collapses": collapses, "flagged": flagged, "judge_noise": noise, "pools": pools,
            "one_sided_pools": one_sided}


def _fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def answer(study: dict[str, Any]) -> str:
    """A few sentences from the data: the smallest oracle budget's ratio per source and domain,
    the judge's effect, and the ranking agreement."""
    out = []
    seeds = len({c["seed"] for c in study["cells"]})
    for key, by_src in study["replacement_ratio"].items():
        parts = []
        for s, by_n in by_src.items():
            n0 = min(by_n, key=int)
            r = by_n[n0]
            if r["target"] is None or (isinstance(r["target"], float) and math.isnan(r["target"])):
                parts.append(f"{s} cannot be compared (the oracle PRM's AUROC is undefined: test steps of one class)")
            elif r["ratio"] is None:
                parts.append(f"{s} never reaches it (best {_fmt(r['best'])} vs {_fmt(r['target'])})")
            else:
                parts.append(f"{s} needs {_fmt(r['ratio'], 1)}x the trajectories (band {_fmt(r['lo'], 1)}-"
                             f"{_fmt(r['hi'], 1)} over {seeds} seeds; {_fmt(r['policy_tokens'], 0)} policy tokens)")
        if parts:
            n0 = min(next(iter(by_src.values())), key=int)
            out.append(f"On {key}, to match the step AUROC of a PRM trained on {n0} exactly labelled trajectories, "
                       + "; ".join(parts) + ".")
    for row in study["failures"]["judge_noise"]:
        if row["metric"] == "step_auroc" and row["source"] == "outcome":
            out.append(f"A judge erring {row['judge_error']:.0%} of the time moves outcome labels' step AUROC from "
                       f"{_fmt(row['crisp'])} ± {_fmt(row['crisp_sd'])} to {_fmt(row['fuzzy'])} ± {_fmt(row['fuzzy_sd'])}"
                       f" at {row['trajectories']} trajectories.")
    taus = {k: v["tau"] for k, v in study["rankings"].items()}
    out.append("Kendall's tau between the first-error-F1 and best-of-N rankings: "
               + ", ".join(f"{k} {_fmt(t)}" for k, t in taus.items()) + ".")
    return " ".join(out)


# ----------------------------------------------------------------------------- real text


def run_real(config: StudyConfig, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """The ``real`` study once per seed, each source's ProcessBench F1 with a bootstrap CI over seeds."""
    if not config.real:
        return {"skipped": "real=False (the quick preset: MiniLM training on ProcessBench takes minutes per "
                           "source and seed); run the full preset or pass --real"}
    from selfprm.studies import real as real_study

    streams = seed_streams(config.seed, [f"real-{k}" for k in range(config.real_seeds)])
    per_seed = []
    for k in range(config.real_seeds):
        rc = replace(real_study.PRESETS[config.real_preset](), seed=streams[f"real-{k}"] % (2 ** 31))
        per_seed.append(real_study.run(rc, run.root / "real" / f"seed-{k}", progress=progress))
    rng = np.random.default_rng(config.seed)
    out: dict[str, Any] = {"seeds": config.real_seeds, "preset": config.real_preset, "sources": {}}
    f1 = {s: [r["sources"][s]["f1"]["average"] for r in per_seed] for s in per_seed[0]["sources"]}

    def band(vals: list[float]) -> dict[str, Any]:
        """Mean and its 95 % bootstrap interval over seeds (2.5/97.5 percentiles of resampled means)."""
        vals = [math.nan if v is None else v for v in vals]
        boot = [float(np.mean(rng.choice(vals, len(vals)))) for _ in range(config.bootstrap)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return {"f1": float(np.mean(vals)), "lo": float(lo), "hi": float(hi), "per_seed": vals}

    for s, vals in f1.items():
        out["sources"][s] = band(vals)
        if "human" in f1 and s != "human":
            # the gap to the human-label PRM, paired by seed, so a gap can be judged against its noise
            out["sources"][s]["gap_vs_human"] = band([v - h for v, h in zip(vals, f1["human"])])
    out["prmbench"] = prmbench_bands(per_seed, band)
    return out


def prmbench_bands(per_seed: list[dict], band) -> dict[str, Any]:
    """Per source and PRMBench error category: PRMScore and step AUROC, mean and bootstrap band over
    seeds (``band``'s ``f1`` key holds the mean); a note instead where no seed scored PRMBench."""
    if not all("prmbench" in r for res in per_seed for r in res["sources"].values()):
        return {"skipped": "the real study ran without prmbench=True (or without the shared PRMBench subset)"}
    out: dict[str, Any] = {}
    for s in per_seed[0]["sources"]:
        cats = per_seed[0]["sources"][s]["prmbench"]
        out[s] = {}
        for cat in cats:
            row = {"records": cats[cat]["records"]}
            for metric in ("prmscore", "step_auroc"):
                b = band([res["sources"][s]["prmbench"][cat][metric] for res in per_seed])
                row[metric] = {"mean": b["f1"], "lo": b["lo"], "hi": b["hi"]}
            out[s][cat] = row
    return out


# ----------------------------------------------------------------------------- the study


def summarise(cells: list[dict], quality: list[dict], pools: dict[str, dict], n_boot: int = 1000,
              seed: int = 0) -> dict[str, Any]:
    """Everything study.json derives from the cells: ratios, rankings, failures and the answer."""
    sources = [s for s in dict.fromkeys(c["source"] for c in cells) if s != "oracle"]
    keys = list(dict.fromkeys(c["domain_key"] for c in cells))
    by_metric = {m: {key: {s: replacement_ratios(cells, key, s, m, n_boot, seed) for s in sources} for key in keys}
                 for m in RATIO_METRICS}
    ranks = rankings(cells)
    study = {"cells": cells, "label_quality": quality, "replacement_ratio": by_metric[RATIO_METRICS[0]],
             "replacement_ratio_by_metric": by_metric, "rankings": ranks,
             "rank_tau": {k: v["tau"] for k, v in ranks.items()}, "failures": failures(cells, pools),
             "real": {"skipped": "not run"}, "deviations": []}
    study["answer"] = answer(study)
    return study


def run(config: StudyConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the grid into ``out``; writes ``out/study.json`` and ``out/index.html``, returns the JSON."""
    from selfprm.report.study_page import render_page

    t0 = time.perf_counter()
    run_dir = RunDir(out)
    cells, quality, pools = run_grid(config, run_dir, progress)
    study = summarise(cells, quality, pools, config.bootstrap, config.seed)
    study.update({
        "real": run_real(config, run_dir, progress),
        "config": {"seeds": config.seeds, "sources": list(config.sources), "trajectories": list(config.trajectories),
                   "domains": list(config.domains), "judge_errors": list(config.judge_errors),
                   "lenient_factor": config.lenient_factor, "bon_n": config.bon_n, "engine": config.engine,
                   "address": config.address},
        "deviations": [
            "labels are made once per source on the whole pool and the first N are used for each N, so a source "
            "that fits a model on what it labels (implicit, consensus) would see the whole pool; the grid's "
            "sources label each trajectory on its own",
            "a cell's label token passes are the label stage's, prorated by trajectories",
            "spr: the demo's PRM with MetaStone-S1's loss and a BCE warm start, not its reference score model",
        ] + (["arith pools and rollouts are written by the simulated solver (SimulatedPolicy defaults), not the "
              "tiny LM; the PRM backbone is still the SFT tiny LM"] if config.policy == "simulated" else []),
    })
    study["answer"] = answer(study)
    study["seconds"] = time.perf_counter() - t0
    run_dir.write_json("study.json", study)
    # the page is rendered from the file, as anyone else would render it
    render_page(json.loads((run_dir.root / "study.json").read_text()), run_dir.root / "index.html")
    log(study["answer"])
    log(f"wrote {run_dir.root}/study.json and index.html ({study['seconds']:.0f} s)")
    return study
