"""``selfprm rl``: do self-generated step signals replace exact ones as an RL reward?

Every method from the same SFT checkpoint, at the same budget and seeds, in two arith regimes.
Stages of the run directory (:mod:`selfprm.rundir`), each keyed by its config and the stages it is
built from, so an interrupted run resumes and a changed parameter recomputes exactly what it
reaches (a PRM retrained with new settings also reruns the ``prm:<source>`` rows that read it and
the search curves):

1. SFT policies (the embedded tiny causal LM), one per regime: ``short`` (``arith``, the chains the
   tiny policy learns), ``sparse`` (``sparse_arith``, long chains the SFT policy rarely finishes
   right, so the outcome reward is sparse), and one on ``tools`` (ToolPO and its outcome-only
   baseline, regime ``tools``).
2. Per arith regime, one labelled pool sampled from that regime's SFT policy, and a PRM per label
   source in ``prm_sources`` (labels from the registered source on the policy's own samples,
   backbone initialised from the policy, as in ``selfprm demo``; SPR with the demo's reference
   model, warm start and head learning rate) — and ``prm_path``, a user's PRM, if given.
3. Every method × seed in every regime (any method in :data:`selfprm.rl.RL_METHODS`; tools methods
   once, in regime ``tools``): GRPO from the SFT weights, held-out accuracy measured at equal
   numbers of sampled trajectories — or, with ``token_budget``, at equal generated policy tokens.
   The registered ``prm`` method runs once per PRM, as rows ``prm:<source>`` (``prm:path`` for
   ``prm_path``); each such row's token curve starts at the policy tokens its labels cost (pool
   generation + labelling rollouts), so the rows compare at equal policy tokens in all.
   ``prm:oracle`` (exact step labels) is the reference the self-generated sources are held against.
4. Search at test time with the ``short`` SFT policy and one PRM (``prm_path``, else the oracle's):
   accuracy against policy tokens for best-of-N, weighted majority, majority vote and beam search.

``rl_metrics.json``: ``regimes.<regime>`` (``short``, ``sparse``, ``tools``) holds ``sft_accuracy``
(the SFT policy's held-out accuracy), the pool's cost and ``methods.<row>``, each row with
``accuracy`` / ``tokens`` curves (mean over seeds; ``tokens`` is ``[[policy_tokens, accuracy], ...]``
including the label cost), ``final_accuracy`` ± ``final_accuracy_std`` over ``seeds``, ``reward``
(``outcome``, ``prm:<source>``, ``spr_online``, ``prime``, ... read off the row name), ``regime``,
and for PRM rows ``label_policy_tokens`` and ``label_token_passes``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.tools import ToolsConfig, ToolsDomain
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.rl import RL_METHODS
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer
from selfprm.rundir import RunDir, Stage, config_blob
from selfprm.prm.train import PRMTrainConfig
from selfprm.search.beam import BeamConfig
from selfprm.studies.stages import label_stage, log, policy_stage, prm_stage
from selfprm.types import atomic_write_text, read_trajectories, write_trajectories

ARITH_REGIMES = ("short", "sparse")
REFERENCE_ROW = "prm:oracle"


@dataclass
class RLConfig:
    """GRPO variants at equal budgets in two regimes, one PRM per label source, PRM-guided search.

    Parameters:
        seeds: independent runs per method.
        methods: registered RL methods to run (``outcome``, ``prm``, ``spr_online``, ``prime``, ``tree_grpo``, ``r3``, ``srl``,
            ``outcome_tools``, ``toolpo``, ...); ``prm`` runs once per PRM, as rows ``prm:<source>``;
            ``<method>:<variant>`` runs ``<method>`` with the settings ``row_variants`` gives it.
        regimes: the arith regimes every arith method × seed runs in: ``short`` (``arith``) and
            ``sparse`` (``sparse_arith``), each with its own SFT policy, pool and PRMs.
        arith: the ``short`` regime's problems (chains the tiny policy learns within a few hundred SFT steps).
        sparse_arith: the ``sparse`` regime's problems: long chains the SFT policy rarely gets right.
        sparse_max_new_tokens: cap on a rollout's length in the ``sparse`` regime (its solutions run
            to ~130 tokens; ``grpo.max_new_tokens`` elsewhere).
        tools: the tools problems.
        lm: shape of the tiny causal LM.
        sft: SFT of each arith policy.
        tools_sft: SFT of the tools policy.
        n_sft_problems: worked solutions each policy is fine-tuned on.
        n_train_problems: problems GRPO draws its prompts from.
        n_eval_problems: held-out problems accuracy is measured on.
        grpo: the GRPO core's settings (every method's config starts from them).
        method_kwargs: per-method settings beyond ``grpo`` (JSON on the command line), keyed by the
            method or by a row (``prm:mc``), the row's winning.
        row_variants: rows ``<method>:<variant>`` (named in ``methods``) and the settings that make
            each differ from ``<method>``'s own row; ``method_kwargs`` keyed by the row still win.
        token_budget: policy tokens each method × seed generates in GRPO before it stops (0: train
            ``grpo.steps`` rounds, equal samples); with a budget, accuracy is measured when the
            tokens spent reach each of ``grpo.steps // grpo.eval_every`` evenly spaced marks.
        prm_path: a saved selfprm PRM: an extra row ``prm:path`` in every arith regime, and the
            search's PRM (empty: none).
        prm_sources: label sources, one PRM and one ``prm:<source>`` row each per arith regime.
        prm_source_kwargs: keyword arguments of each label source beyond its defaults (the demo's).
        mc_rollouts: Monte Carlo rollouts per step prefix of the ``mc`` source.
        spr_warmup_steps: SPR warm start: steps of class-balanced BCE before the filter (as the demo).
        spr_head_lr: learning rate of SPR's score head (as the demo).
        label_shard_size: trajectories per labelling shard (the unit of resume).
        whole_pool_sources: sources labelled in one shard (they fit models on what they label).
        prm_pool_problems: problems of the pool the PRMs are trained on (per regime).
        prm_pool_samples: solutions sampled per pool problem.
        prm_train: PRM training; the loss is the one the label source names.
        search_problems: held-out problems of the search curves.
        search_temperature: sampling temperature of the search.
        search_ns: N of best-of-N and the votes.
        search_beams: beam search settings, (width, expansions per beam, lookahead) each.
        search: whether to draw the search curves.
    """

    seeds: int = 3
    methods: tuple[str, ...] = ("outcome", "prm", "spr_online", "spr_online:step", "prime", "tree_grpo", "r3", "srl",
                                "outcome_tools", "toolpo")
    regimes: tuple[str, ...] = ARITH_REGIMES
    arith: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=2, max_ops=4))
    # SFT policy's held-out accuracy (100 problems x 2 samples, T=0.7; answers mod 10, so ~0.1 is chance):
    # 6-9 ops measured 0.26 after the full preset's 500 SFT steps (0.133 after the quick preset's 300;
    # short: 0.183 after 300). 8-11 ops are meant to bring the full preset under 0.25 (at ~0.8 per-step
    # success, ~0.20 expected) -- not yet measured; regimes.sparse.sft_accuracy of a run records it
    sparse_arith: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=8, max_ops=11))
    sparse_max_new_tokens: int = 176
    tools: ToolsConfig = field(default_factory=lambda: ToolsConfig(min_ops=1, max_ops=2, start_max=9,
                                                                   operand_max={"+": 9, "-": 9, "*": 5}))
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500))
    tools_sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=500))
    n_sft_problems: int = 8000
    n_train_problems: int = 500
    n_eval_problems: int = 100
    # lr: Adam turns even a pure-noise gradient into steps of size lr on every weight, which at 1e-3
    # wiped out the tiny policy's arithmetic within 5 rounds (reward 0.50 -> 0.05); 1e-4 climbs steadily
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(steps=30, prompts_per_step=8, group_size=8, lr=1e-4,
                                                                 eval_every=10, eval_samples=2, max_new_tokens=64))
    method_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # online SPR's paper form rewards the outcome only; its step scores in the advantage are a second row
    row_variants: dict[str, dict[str, Any]] = field(default_factory=lambda: {"spr_online:step": {"advantage": "step"}})
    # 0 here (equal samples); the full preset sets FULL_TOKEN_BUDGET, the quick one QUICK_TOKEN_BUDGET
    token_budget: int = 0
    prm_path: str = ""
    prm_sources: tuple[str, ...] = ("oracle", "outcome", "spr", "mc", "omega", "implicit", "tree")
    prm_source_kwargs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        # the demo's: OmegaPRM's Q/U search (8 extra searches per problem, popped 4 per round)
        "omega": {"n_rollouts": 4, "extra_searches": 8, "searches_per_round": 4},
        "tree": {"m_trees": 4, "l_rounds": 2},
        "implicit": {"train_steps": 160},  # per cross-fitted fold model, on the whole pool
    })
    mc_rollouts: int = 4
    spr_warmup_steps: int = 8
    spr_head_lr: float = 1e-2
    label_shard_size: int = 128
    whole_pool_sources: tuple[str, ...] = ("implicit", "consensus", "mcts")
    prm_pool_problems: int = 200
    prm_pool_samples: int = 4
    prm_train: PRMTrainConfig = field(default_factory=lambda: PRMTrainConfig(epochs=2, batch_size=32, head_lr=5e-2))
    search_problems: int = 60
    search_temperature: float = 0.7
    search_ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    search_beams: tuple[tuple[int, int, int], ...] = ((2, 2, 0), (4, 2, 0), (4, 4, 0), (2, 2, 1))
    search: bool = True

    def __post_init__(self) -> None:
        from selfprm.labels import LABEL_SOURCES

        RL_METHODS.check([method_of(m) for m in self.methods])
        loose = [m for m in self.methods if ":" in m and m not in self.row_variants]
        if loose:
            raise ValueError(f"row(s) {loose} name a variant with no settings in row_variants: they would rerun "
                             "their method unchanged")
        LABEL_SOURCES.check(self.prm_sources)
        bad = [r for r in self.regimes if r not in ARITH_REGIMES]
        if bad:
            raise ValueError(f"unknown regime(s) {bad}; known: {list(ARITH_REGIMES)}")


def _full() -> RLConfig:
    return RLConfig(token_budget=FULL_TOKEN_BUDGET)


def _quick() -> RLConfig:
    return RLConfig(
        seeds=1, sft=SFTConfig(steps=300), tools_sft=SFTConfig(steps=300), n_sft_problems=4000, n_train_problems=200,
        n_eval_problems=60,
        grpo=GRPOConfig(steps=6, prompts_per_step=6, group_size=8, lr=1e-4, eval_every=3, max_new_tokens=64),
        # prm_sources left at every source, as the full run: quick is the plumbing check of every row
        token_budget=QUICK_TOKEN_BUDGET,
        prm_pool_problems=60, prm_pool_samples=2, prm_train=PRMTrainConfig(epochs=1, batch_size=32, head_lr=5e-2),
        search_problems=30, search_ns=(1, 2, 4), search_beams=((2, 2, 0),),
    )


# Policy tokens per GRPO run (one method x seed x regime), so the methods compare at equal
# generated tokens. Measured on the quick run (2 shared CPU cores): outcome GRPO on the short
# regime generated 8488 tokens over 288 sampled solutions, 29.5 per solution; today's 30 rounds of
# 8 x 8 are 1920 solutions, about 56,600 tokens -> 56,000 (sparse solutions run ~62 tokens, so
# the sparse regime gets about half the rounds at the same tokens). Quick: 7,200 tokens, 6 outcome
# rounds of 6 x 8 on short.
FULL_TOKEN_BUDGET = 56_000
QUICK_TOKEN_BUDGET = 7_200

Config = RLConfig
PRESETS = {"full": _full, "quick": _quick}
DEFAULT_OUT = "runs/rl"


def method_of(row: str) -> str:
    """The registered method a ``methods`` entry runs: ``spr_online:step`` runs ``spr_online``."""
    return row.split(":", 1)[0]


def method_config(name: str, base: GRPOConfig, seed: int, extra: dict[str, Any] | None = None) -> GRPOConfig:
    """The method's own config class, from the shared GRPO settings, the seed and its extras."""
    return RL_METHODS.get(name).config_cls(**{**asdict(base), "seed": seed, **(extra or {})})


def reward_of(row: str) -> str:
    """What a row is rewarded by, read off its name: ``outcome`` for the outcome-only baselines,
    ``prm:<source>`` for the PRM rows, the method's name otherwise (``spr_online``, ``prime``, ...)."""
    if row in ("outcome", "outcome_tools"):
        return "outcome"
    return row


def _regime_setup(run: RLConfig, regime: str) -> tuple[Any, GRPOConfig]:
    """The domain and GRPO settings of a regime."""
    if regime == "short":
        return ArithDomain(run.arith), run.grpo
    if regime == "sparse":
        return ArithDomain(run.sparse_arith), replace(run.grpo, max_new_tokens=run.sparse_max_new_tokens)
    return ToolsDomain(run.tools), run.grpo


def _prms(run: RLConfig, run_dir: RunDir, regime: str, policy: tuple[Stage, Any, Any], domain, grpo: GRPOConfig,
          sources: tuple[str, ...], progress: bool) -> tuple[dict[str, tuple[Stage, Any, dict]], dict[str, Any]]:
    """The regime's labelled pool and one PRM per source: ``({source: (stage, prm, cost)}, pool summary)``.

    ``cost`` holds ``label_policy_tokens`` (pool generation + the source's labelling rollouts) and
    ``label_token_passes`` (every token position the labelling ran through a model)."""
    from selfprm.prm.model import SPR_REFERENCE, PRMConfig

    pstage, model, tok = policy
    pol = HFPolicy(model, tok, domain, HFPolicyConfig(temperature=grpo.temperature,
                                                      max_new_tokens=grpo.max_new_tokens, seed=4242))
    pool_st = run_dir.stage(f"{regime}/pool", {"problems": run.prm_pool_problems, "samples": run.prm_pool_samples,
                                               "temperature": grpo.temperature,
                                               "max_new_tokens": grpo.max_new_tokens, "seed": 4242}, [pstage])
    if pool_st.done():
        pool = [t for t, _ in read_trajectories(pool_st.file("pool.jsonl"))]
    else:
        pool_st.begin()
        problems = domain.sample_problems(run.prm_pool_problems, seed=4242, prefix="prm-pool")
        pool = [t for g in pol.sample(problems, run.prm_pool_samples) for t in g]
        write_trajectories(pool_st.file("pool.jsonl"), pool)
        pool_st.finish({"trajectories": len(pool), "policy_tokens": sum(t.tokens_generated for t in pool),
                        "accuracy": sum(bool(t.outcome) for t in pool) / max(1, len(pool))})
    pool_meta = pool_st.result()
    out = {}
    for src in sources:
        kwargs = dict(run.prm_source_kwargs.get(src, {}))
        if src == "mc":
            kwargs.setdefault("n_rollouts", run.mc_rollouts)
        shard = len(pool) if src in run.whole_pool_sources else run.label_shard_size
        lst, labels, meta = label_stage(run_dir, f"{regime}/labels/{src}", src, kwargs, pool, pol, [pool_st],
                                        max(1, shard), seed=4242, progress=progress)
        loss = meta["prm_loss"]
        tcfg = replace(run.prm_train, loss=loss, spr_warmup_steps=run.spr_warmup_steps if loss == "spr" else 0)
        # the demo's PRM: the policy's body with its LM head, so the head also reads token log-probs
        pcfg = PRMConfig(step_separator=domain.step_separator, surprise_features=True)
        if loss == "spr":  # the demo's SPR row: MetaStone-S1's score model (+ the surprise features)
            pcfg = replace(pcfg, **{**SPR_REFERENCE, "surprise_features": True})
            tcfg = replace(tcfg, head_lr=run.spr_head_lr)
        st, prm, hist = prm_stage(run_dir, f"{regime}/prm/{src}", [lst, pstage], pstage.file("model"), tok,
                                  lambda labels=labels: list(zip(pool, labels)), tcfg, pcfg, init_seed=0,
                                  progress=progress, desc=f"PRM {regime}/{src}")
        cost = {"label_policy_tokens": int(pool_meta["policy_tokens"] + meta["policy_tokens"]),
                "label_token_passes": int(meta["token_passes"]), "prm_token_passes": int(hist.get("token_passes", 0))}
        log(f"      {regime:6s} {src:8s} labels {cost['label_policy_tokens']} policy tokens "
            f"(pool {pool_meta['policy_tokens']}), {cost['label_token_passes']} token passes")
        out[src] = (st, prm, cost)
    return out, pool_meta


def _summarise(recs: list[dict[str, Any]], budget: str, offset: int = 0) -> dict[str, Any]:
    """A row of ``rl_metrics.json`` from its seeds' run results; ``offset`` shifts the token curve."""
    # budgeted in samples every seed has the same x; in tokens, the same number of points,
    # each at the seeds' mean x
    xs = np.mean([[p[0] for p in r["accuracy"]] for r in recs], axis=0)
    per_seed = np.array([[p[1] for p in r["accuracy"]] for r in recs])
    finals = per_seed[:, -1]
    # stages cached before tokens were counted have no "tokens": no token curve then
    tok_x = (np.mean([[p[0] for p in r["tokens"]] for r in recs], axis=0) + offset
             if all(r.get("tokens") for r in recs) else None)
    return {
        "accuracy": [[int(round(x)), float(a)] for x, a in zip(xs, per_seed.mean(0))],
        "tokens": None if tok_x is None else [[int(round(x)), float(a)] for x, a in zip(tok_x, per_seed.mean(0))],
        "policy_tokens": (int(round(np.mean([r["policy_tokens"] for r in recs])))
                          if all("policy_tokens" in r for r in recs) else None),
        "method_token_passes": (int(round(np.mean([r["method_token_passes"] for r in recs])))
                                if all("method_token_passes" in r for r in recs) else None),
        "budget": budget,
        "accuracy_std": [float(s) for s in per_seed.std(0, ddof=1)] if len(recs) > 1 else [0.0] * per_seed.shape[1],
        "accuracy_per_seed": per_seed.tolist(),
        "final_accuracy": float(finals.mean()),
        "final_accuracy_std": float(finals.std(ddof=1)) if len(recs) > 1 else 0.0,  # sample sd, as the demo
        "seeds": len(recs),
        "samples": int(round(np.mean([r["samples"] for r in recs]))),
        # what a reward pushed the policy towards: longer solutions, and how far it moved from the SFT policy
        "tokens_per_sample": (float(np.mean([r["policy_tokens"] / max(1, r["samples"]) for r in recs]))
                              if all("policy_tokens" in r for r in recs) else None),
        "final_kl": float(np.mean([r["kl"][-1] for r in recs])) if all(r.get("kl") for r in recs) else None,
        "domain": recs[0]["domain"],
        "seconds": float(np.mean([r["seconds"] for r in recs])),
    }


def run(run: RLConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run every method × seed × regime and the search curves into ``out``; returns ``rl_metrics.json``'s content."""
    from transformers import AutoModelForCausalLM

    from selfprm.prm.model import ProcessRewardModel
    from selfprm.rl.report import closest_to_reference, markdown_table, plot_learning_curves

    run_dir = RunDir(out)
    t_start = time.perf_counter()
    arith_methods = [m for m in run.methods if RL_METHODS.get(method_of(m)).domain == "arith"]
    tools_methods = [m for m in run.methods if RL_METHODS.get(method_of(m)).domain == "tools"]
    regimes = list(run.regimes) if arith_methods else []
    if run.search and "short" not in regimes:
        regimes.insert(0, "short")  # the search runs on the short regime's policy
    regimes += ["tools"] if tools_methods else []
    setups = {r: _regime_setup(run, r) for r in regimes}

    # 1. SFT policies ---------------------------------------------------------------------------
    policies: dict[str, tuple[Stage, Any, Any]] = {}
    for r in regimes:
        sft = run.tools_sft if r == "tools" else run.sft
        log(f"[1/4] SFT policy of regime {r} ({sft.steps} steps)")
        name = {"short": "policy_arith", "tools": "policy_tools"}.get(r, f"policy_arith_{r}")
        stage, model, tok, _ = policy_stage(run_dir, name, setups[r][0], run.n_sft_problems, run.lm, sft,
                                            progress=progress)
        policies[r] = (stage, model, tok)

    # 2. pools and PRMs -------------------------------------------------------------------------
    needs_prm = any(RL_METHODS.get(method_of(m)).needs_prm for m in arith_methods)
    search_src = None if run.prm_path else ("oracle" if "oracle" in run.prm_sources else
                                            (run.prm_sources[0] if run.prm_sources else None))
    user_prm = None
    if run.prm_path:
        user_prm = (run_dir.stage("prm_path", {"path": str(Path(run.prm_path).resolve())}),
                    ProcessRewardModel.from_pretrained(run.prm_path),
                    {"label_policy_tokens": None, "label_token_passes": None, "prm_token_passes": None})
    prms: dict[str, dict[str, tuple[Stage, Any, dict]]] = {}
    pools: dict[str, Any] = {}
    for r in regimes:
        if r == "tools":
            continue
        wanted = run.prm_sources if needs_prm else ()
        if r == "short" and run.search and search_src and search_src not in wanted:
            wanted = (search_src,)
        if not wanted:
            prms[r] = {}
            continue
        log(f"[2/4] {r}: PRMs on {list(wanted)} labels of {run.prm_pool_problems}x{run.prm_pool_samples} sampled solutions")
        prms[r], pools[r] = _prms(run, run_dir, r, policies[r], setups[r][0], setups[r][1], tuple(wanted), progress)
        if user_prm:
            prms[r]["path"] = user_prm
    # the PRM a method other than ``prm`` that reads one gets: the reference's (or the user's)
    ref_src = "path" if run.prm_path else ("oracle" if "oracle" in run.prm_sources else
                                           (run.prm_sources[0] if run.prm_sources else None))

    # 3. methods × seeds × regimes --------------------------------------------------------------
    budget = "tokens" if run.token_budget else "samples"
    log(f"[3/4] {len(run.methods)} methods x {run.seeds} seeds x regimes {regimes}, "
        + (f"{run.token_budget} policy tokens each" if run.token_budget else
           f"{run.grpo.steps * run.grpo.prompts_per_step * run.grpo.group_size} sampled solutions each"))
    out_regimes: dict[str, dict[str, Any]] = {}
    for r in regimes:
        domain, grpo = setups[r]
        names = tools_methods if r == "tools" else (arith_methods if r in run.regimes else [])
        if not names:
            continue
        problems = (domain.sample_problems(run.n_train_problems, seed=101, prefix="rl-train"),
                    domain.sample_problems(run.n_eval_problems, seed=202, prefix="rl-eval"))
        pstage, _, tok = policies[r]
        rows: list[tuple[str, str, Any]] = []  # (row, method, prm source or None)
        for entry in names:
            name = method_of(entry)
            spec = RL_METHODS.get(name)
            if entry == "prm":
                rows += [(f"prm:{src}", name, src) for src in prms[r]]
            else:
                rows.append((entry, name, ref_src if spec.needs_prm else None))
        methods: dict[str, Any] = {}
        for row, name, src in rows:
            spec = RL_METHODS.get(name)
            if spec.needs_prm and src is None:
                raise ValueError(f"{name} reads a PRM: give prm_sources or prm_path")
            prm_st, prm, cost = prms[r][src] if src else (None, None, None)
            recs = []
            for seed in range(run.seeds):
                cfg = method_config(name, grpo, seed, {**run.method_kwargs.get(name, {}), **run.row_variants.get(row, {}),
                                                       **run.method_kwargs.get(row, {})})
                key = {"method": name, "row": row, "config": cfg,
                       "problems": [run.n_train_problems, run.n_eval_problems]}
                if run.token_budget:  # only when set, so runs budgeted in samples keep their cached stages
                    key["token_budget"] = run.token_budget
                stage = run_dir.stage(f"runs/{r}/{row.replace(':', '-')}-seed{seed}", key,
                                      [pstage, prm_st] if prm_st is not None else [pstage])
                if not stage.done():
                    stage.begin()
                    model = AutoModelForCausalLM.from_pretrained(pstage.file("model"))
                    trainer = GRPOTrainer(model, tok, domain, cfg, spec.build(cfg, prm))
                    res = trainer.train(*problems, progress=progress, desc=f"{r} {row} seed {seed}",
                                        token_budget=run.token_budget or None)
                    stage.finish({"accuracy": res.accuracy, "samples": res.samples, "seconds": res.seconds,
                                  "kl": res.kl, "mean_reward": res.mean_reward, "domain": spec.domain,
                                  "policy_tokens": res.policy_tokens, "tokens": res.tokens,
                                  # models a method runs beside the policy (PRIME's πφ and π_ref, the
                                  # online SPR head's backbone passes): the rest of the compute ledger
                                  "method_token_passes": int(getattr(trainer.method, "token_passes", 0))})
                    log(f"      {r:6s} {row:13s} seed {seed}: accuracy {res.accuracy[0][1]:.3f} -> "
                        f"{res.accuracy[-1][1]:.3f} ({res.seconds:.0f}s)")
                recs.append(stage.result())
            offset = (cost or {}).get("label_policy_tokens") or 0
            m = _summarise(recs, budget, offset if name == "prm" else 0)
            m.update(reward=reward_of(row), regime=r, method=name)
            if name == "prm":
                m.update(label_policy_tokens=cost["label_policy_tokens"], label_token_passes=cost["label_token_passes"],
                         prm_token_passes=cost["prm_token_passes"])
            methods[row] = m
        # every run starts from the same SFT weights and is evaluated on the same held-out problems
        # with the same sampling seed: its first point is the SFT policy's accuracy
        sft_acc = float(np.mean([m["accuracy_per_seed"][0][0] for m in methods.values()]))
        out_regimes[r] = {"domain": domain.name, "task": asdict(domain.config), "sft_accuracy": sft_acc,
                          "max_new_tokens": grpo.max_new_tokens, "pool": pools.get(r), "methods": methods,
                          "closest_to_oracle": closest_to_reference(methods)}
        log(f"      regime {r}: SFT policy accuracy {sft_acc:.3f}")

    # 4. search ---------------------------------------------------------------------------------
    from selfprm.search.curves import plot_search_curves, search_curves

    search = None
    search_prm = user_prm or (prms.get("short", {}).get(search_src) if search_src else None)
    if run.search and search_prm is not None:
        log(f"[4/4] search on {run.search_problems} held-out problems: best-of-N, votes, beam search")
        pstage, model, tok = policies["short"]
        domain = setups["short"][0]
        stage = run_dir.stage("search", {"problems": run.search_problems, "temperature": run.search_temperature,
                                         "ns": run.search_ns, "beams": run.search_beams,
                                         "max_new_tokens": run.grpo.max_new_tokens}, [pstage, search_prm[0]])
        if not stage.done():
            stage.begin()
            pol = HFPolicy(model, tok, domain, HFPolicyConfig(temperature=run.search_temperature,
                                                              max_new_tokens=run.grpo.max_new_tokens, seed=303))
            sprobs = domain.sample_problems(run.search_problems, seed=303, prefix="search")
            beams = [BeamConfig(beam_width=w, expansions_per_beam=e, lookahead=k) for w, e, k in run.search_beams]
            search = search_curves(pol, search_prm[1], sprobs, run.search_ns, beams, progress=progress)
            search["temperature"] = run.search_temperature
            stage.finish(search)
        search = stage.result()
        search["prm"] = "path" if run.prm_path else search_src
        plot_search_curves(search, run_dir.root / "search_curves.png")

    metrics = {
        "regimes": out_regimes,
        "reference": REFERENCE_ROW,
        "sft_accuracy": {r: v["sft_accuracy"] for r, v in out_regimes.items()},
        "search": search,
        "config": config_blob(run),
        "prm": run.prm_path or (str(search_prm[0].file("model")) if search_prm else None),
        "seconds": time.perf_counter() - t_start,
    }
    run_dir.write_json("rl_metrics.json", metrics)
    plot_learning_curves(metrics, run_dir.root / "rl_curves.png")
    table = markdown_table(metrics)
    atomic_write_text(run_dir.root / "rl_table.md", table)
    print(table)
    return metrics
