"""``selfprm selfeval``: introspective signals — PCL, how far self-reports hold, Ctx2Skill self-play.

Three parts (``parts`` picks which run), each a stage of the run directory (:mod:`selfprm.rundir`),
so an interrupted run resumes and a changed parameter recomputes what it reaches:

1. **pcl** — Post-Completion Learning (:mod:`selfprm.rl.pcl`, arXiv 2507.20252) on ``arith``: a
   tiny policy trained by dual-track SFT, then GRPO with PCL's rewards, against plain SFT + outcome
   GRPO at equal SFT steps (the plain policy gets the reasoning and the mixed steps both) and equal
   GRPO samples, ``seeds`` times. Measured on held-out problems: accuracy (inference mode: generation
   stops at the marker), the extra tokens inference writes after the marker (0 when it stops
   there), the self-evaluation's calibration against the actual outcome (ECE, Brier, AUROC; the
   evaluation mode continues after the marker, its tokens counted apart), and best-of-N with the
   self-evaluation as verifier beside the PRMs of part 2 on the same samples.
2. **self_knowledge** — the suite of :mod:`selfprm.eval.self_knowledge` on every judge: PRMs of the
   label sources in ``prm_sources`` (trained on the plain SFT policy's samples, backbone from that
   policy, as ``selfprm rl`` builds them), each measured on held-out samples of that policy, and
   PCL's self-evaluation (seed 0) on its own inference samples. PRMs read steps, not challenges:
   their pushback is None. PCL's char-level tokenizer lacks most letters of a challenge ("I think
   step 2 is wrong" reads largely as ``<unk>``), so its flip rate says how far appended text of any
   kind moves its verdict, not whether it understands the challenge. Self vs cross prediction: the
   oracle-label PRM of the plain policy and of a second policy with a shorter SFT
   (``cross_sft_steps``), each on both policies' samples.
3. **ctx2skill** — Ctx2Skill self-play (:mod:`selfprm.selfplay.ctx2skill`), run with the overrides in
   ``ctx2skill``; its result is copied in.

Writes ``selfeval_metrics.json``::

    {"pcl": {"accuracy", "baseline_accuracy", "ece", "brier", "auroc", "inference_extra_tokens", ...},
     "self_knowledge": {"<judge>": {"ece", "brier", "stability_sd", "pushback_flip_rate", ...}},
     "self_vs_cross": {...}, "ctx2skill": {"accuracy": {"evolved", "none", "random"}, "rounds", ...}}

(means over seeds, ``*_std`` their sample sd, ``per_seed`` the values), ``selfeval_table.md`` and
``reliability.png`` (every judge's reliability diagram).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.rl.grpo import GRPOConfig
from selfprm.rl.pcl import DualTrackConfig
from selfprm.rundir import RunDir, Stage
from selfprm.studies.stages import label_stage, log, policy_stage, prm_stage

PARTS = ("pcl", "self_knowledge", "ctx2skill")


@dataclass
class SelfEvalConfig:
    """Introspective signals: Post-Completion Learning, the self-knowledge suite, Ctx2Skill self-play.

    Parameters:
        parts: which parts run (``pcl``, ``self_knowledge``, ``ctx2skill``).
        seeds: GRPO runs per method (PCL and its baseline).
        arith: the problems.
        lm: shape of every tiny causal LM.
        sft: reasoning-track SFT of the PCL policy (the plain policy gets these steps plus ``dual_track.steps``).
        n_sft_problems: worked solutions each policy is fine-tuned on.
        dual_track: PCL's evaluation track and the mixed SFT phase.
        grpo: GRPO settings shared by PCL and the outcome baseline (PCL's rollouts get 12 more tokens for its evaluation).
        pcl_kwargs: PCL's reward weights beyond ``grpo`` (``w_acc``, ``w_fmt``, ``w_cons``), JSON on the command line.
        n_train_problems: problems GRPO draws its prompts from.
        n_eval_problems: held-out problems accuracy is measured on.
        eval_temperature: sampling temperature of every held-out measurement.
        bon_problems: held-out problems of the best-of-N and calibration measurements.
        bon_n: samples per problem there.
        prm_sources: label sources, one PRM each, judged by the suite and used as best-of-N verifiers.
        prm_pool_problems: problems of the plain policy's pool the PRMs are trained on.
        prm_pool_samples: solutions sampled per pool problem.
        prm_train: PRM training; the loss is the one the label source names.
        spr_warmup_steps: SPR warm start: steps of class-balanced BCE before the filter (as ``selfprm rl``).
        spr_head_lr: learning rate of SPR's score head (as ``selfprm rl``).
        judge_problems: held-out problems whose samples the suite judges.
        judge_samples: samples per judge problem.
        stability_trajectories: trajectories whose steps are rewritten for the stability measure.
        pushback_trajectories: trajectories challenged for the pushback measure.
        n_bins: equal-mass bins of ECE and the reliability diagram.
        cross_sft_steps: SFT steps of the second policy of the self vs cross comparison.
        ctx2skill: overrides of ``selfprm.selfplay.ctx2skill.Ctx2SkillConfig`` (JSON on the command line;
            dotted names or nested objects reach the Reasoner's config, see :func:`ctx2skill_config`).
    """

    parts: tuple[str, ...] = PARTS
    seeds: int = 3
    arith: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=2, max_ops=4))
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=400))
    n_sft_problems: int = 8000
    dual_track: DualTrackConfig = field(default_factory=lambda: DualTrackConfig(problems=400, samples=2, steps=200,
                                                                               max_new_tokens=64))
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(steps=30, prompts_per_step=8, group_size=8, lr=1e-4,
                                                                 eval_every=10, eval_samples=2, max_new_tokens=64))
    pcl_kwargs: dict[str, Any] = field(default_factory=dict)
    n_train_problems: int = 500
    n_eval_problems: int = 100
    eval_temperature: float = 1.0
    bon_problems: int = 60
    bon_n: int = 8
    prm_sources: tuple[str, ...] = ("oracle", "outcome", "spr")
    prm_pool_problems: int = 200
    prm_pool_samples: int = 4
    prm_train: PRMTrainConfig = field(default_factory=lambda: PRMTrainConfig(epochs=2, batch_size=32, head_lr=5e-2))
    spr_warmup_steps: int = 8
    spr_head_lr: float = 1e-2
    judge_problems: int = 100
    judge_samples: int = 2
    stability_trajectories: int = 40
    pushback_trajectories: int = 40
    n_bins: int = 10
    cross_sft_steps: int = 250
    ctx2skill: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from selfprm.labels import LABEL_SOURCES

        bad = [p for p in self.parts if p not in PARTS]
        if bad:
            raise ValueError(f"unknown part(s) {bad}; known: {list(PARTS)}")
        LABEL_SOURCES.check(self.prm_sources)
        if "self_knowledge" in self.parts and "oracle" not in self.prm_sources:
            raise ValueError("the self vs cross comparison reads the oracle-label PRM: keep 'oracle' in prm_sources")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")


def _quick() -> SelfEvalConfig:
    return SelfEvalConfig(
        seeds=1, lm=TinyLMConfig(n_embd=96), sft=SFTConfig(steps=160), n_sft_problems=2000,
        dual_track=DualTrackConfig(problems=60, samples=2, steps=60, max_new_tokens=64),
        grpo=GRPOConfig(steps=4, prompts_per_step=4, group_size=4, lr=1e-4, eval_every=4, eval_samples=1,
                        max_new_tokens=64),
        n_train_problems=100, n_eval_problems=30, bon_problems=16, bon_n=4, prm_pool_problems=40,
        prm_pool_samples=2, prm_train=PRMTrainConfig(epochs=1, batch_size=32, head_lr=5e-2),
        judge_problems=24, judge_samples=2, stability_trajectories=12, pushback_trajectories=12, n_bins=5,
        cross_sft_steps=100, ctx2skill={"rounds": 3, "tasks_per_round": 12, "n_test": 50, "probe_problems": 100},
    )


Config = SelfEvalConfig
PRESETS = {"full": SelfEvalConfig, "quick": _quick}
DEFAULT_OUT = "runs/selfeval"


def ctx2skill_config(base: Any, overrides: dict[str, Any]) -> Any:
    """``base`` (a ``Ctx2SkillConfig``) with ``overrides``: dotted names (``"reasoner.sft.steps"``) or
    nested objects (``{"reasoner": {"sft": {"steps": 300}}}``) reach nested configs, which are rebuilt
    so their checks run; an unknown name raises ``ValueError`` naming it."""
    import dataclasses

    from selfprm.cli import apply_overrides

    def flat(obj: Any, d: dict[str, Any], prefix: str = ""):
        for k, v in d.items():
            head = k.split(".")[0]
            if not any(f.name == head for f in dataclasses.fields(obj)):
                raise ValueError(f"ctx2skill override {prefix + k!r}: {type(obj).__name__} has no field {head!r}")
            sub = getattr(obj, k, None)
            if isinstance(v, dict) and dataclasses.is_dataclass(sub):
                yield from flat(sub, v, prefix + k + ".")
            else:
                yield prefix + k, v

    return apply_overrides(base, dict(flat(base, overrides)))


# ----------------------------------------------------------------------------- stages


def _pcl_policy_stage(run: RunDir, cfg: SelfEvalConfig, pc_domain, progress: bool):
    """PCL's dual-track SFT policy: trained once, then loaded."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfprm.rl.pcl import train_pcl_policy

    stage = run.stage("policy/pcl", {"domain": cfg.arith, "lm": cfg.lm, "sft": cfg.sft, "track": cfg.dual_track,
                                     "n_sft_problems": cfg.n_sft_problems})
    if stage.done():
        model = AutoModelForCausalLM.from_pretrained(stage.file("model")).eval()
        return stage, model, AutoTokenizer.from_pretrained(stage.file("model"))
    stage.begin()
    model, tok, info = train_pcl_policy(pc_domain, cfg.n_sft_problems, cfg.lm, cfg.sft, cfg.dual_track, progress)
    with stage.atomic_dir("model") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    stage.finish({k: info[k] for k in ("eval_track", "eval_track_correct")})
    return stage, model, tok


def _pool(run: RunDir, name: str, parent: Stage, model, tok, domain, problems: int, samples: int, temperature: float,
          max_new_tokens: int, seed: int):
    """Samples of a policy on fresh problems (prefix ``name``), cached as a stage."""
    from selfprm.policies.hf import HFPolicy, HFPolicyConfig
    from selfprm.types import read_trajectories, write_trajectories

    st = run.stage(name, {"problems": problems, "samples": samples, "temperature": temperature,
                          "max_new_tokens": max_new_tokens, "seed": seed}, [parent])
    if st.done():
        return st, [t for t, _ in read_trajectories(st.file("samples.jsonl"))]
    st.begin()
    pol = HFPolicy(model, tok, domain, HFPolicyConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed))
    trajs = [t for g in pol.sample(domain.sample_problems(problems, seed=seed, prefix=name.replace("/", "-")), samples)
             for t in g]
    write_trajectories(st.file("samples.jsonl"), trajs)
    st.finish({"trajectories": len(trajs), "accuracy": float(np.mean([bool(t.outcome) for t in trajs]))})
    return st, trajs


def _prm(run: RunDir, cfg: SelfEvalConfig, prefix: str, src: str, pool_st: Stage, pool, policy_st: Stage, tok,
         progress: bool):
    """A PRM on ``src``'s labels of ``pool`` (backbone: the policy), as ``selfprm rl`` trains them."""
    from selfprm.prm.model import SPR_REFERENCE, PRMConfig

    lst, labels, meta = label_stage(run, f"{prefix}/labels/{src}", src, {}, pool, None, [pool_st], max(1, len(pool)),
                                    seed=4242, progress=progress)
    loss = meta["prm_loss"]
    tcfg = replace(cfg.prm_train, loss=loss, spr_warmup_steps=cfg.spr_warmup_steps if loss == "spr" else 0)
    pcfg = PRMConfig(step_separator="\n", surprise_features=True)
    if loss == "spr":
        pcfg = replace(pcfg, **{**SPR_REFERENCE, "surprise_features": True})
        tcfg = replace(tcfg, head_lr=cfg.spr_head_lr)
    _, prm, _ = prm_stage(run, f"{prefix}/prm/{src}", [lst, policy_st], policy_st.file("model"), tok,
                          lambda: list(zip(pool, labels)), tcfg, pcfg, init_seed=0, progress=progress,
                          desc=f"PRM {prefix}/{src}")
    return prm


def _grpo_stage(run: RunDir, name: str, parent: Stage, model_dir: Path, tok, domain, gcfg: GRPOConfig, method,
                train, evals, progress: bool):
    """One GRPO run from the SFT weights: the trained model and its curve, cached."""
    from transformers import AutoModelForCausalLM

    from selfprm.rl.grpo import GRPOTrainer

    st = run.stage(name, {"grpo": gcfg, "method": method.name, "n_train": len(train), "n_eval": len(evals)}, [parent])
    if st.done():
        return st, AutoModelForCausalLM.from_pretrained(st.file("model")).eval(), st.result()
    st.begin()
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    res = GRPOTrainer(model, tok, domain, gcfg, method).train(train, evals, progress, desc=name)
    model.eval()
    with st.atomic_dir("model") as tmp:
        model.save_pretrained(tmp)
    out = {"accuracy": res.accuracy, "samples": res.samples, "policy_tokens": res.policy_tokens,
           "seconds": res.seconds, "log": getattr(method, "log_", [])}
    return st, model, st.finish(out)


def _scored(groups_of: list[list[Any]], scores: list[float]) -> list[list[tuple[Any, float]]]:
    """``(trajectory, score)`` per sample, grouped as ``groups_of`` (``scores`` runs over them flat)."""
    it = iter(scores)
    return [[(t, next(it)) for t in g] for g in groups_of]


def _bon(groups_of: list[list[Any]], scores: list[float], n: int) -> float:
    from selfprm.eval.metrics import best_of_n

    return best_of_n([[(t.final_answer, bool(t.outcome), s) for t, s in g] for g in _scored(groups_of, scores)], n).prm


def _within(groups_of: list[list[Any]], scores: list[float]) -> float:
    from selfprm.eval.metrics import within_group_auroc

    return within_group_auroc([[(s, bool(t.outcome)) for t, s in g] for g in _scored(groups_of, scores)])


def _pcl_seed(cfg: SelfEvalConfig, pc_model, pc_tok, base_model, base_tok, domain, pc_domain, bon_problems,
              eval_problems, prms: dict[str, Any], seed: int) -> dict[str, Any]:
    """Every PCL measurement of one seed's trained models."""
    from selfprm.eval.calibration import brier, ece
    from selfprm.eval.metrics import auroc, best_of_n
    from selfprm.policies.hf import HFPolicy, HFPolicyConfig
    from selfprm.prm.aggregate import aggregate
    from selfprm.rl.grpo import evaluate_accuracy
    from selfprm.rl.pcl import actual_reward, extra_tokens, inference_tokenizer, self_evaluate

    g = cfg.grpo
    inf_tok = inference_tokenizer(pc_tok)
    acc = evaluate_accuracy(pc_model, inf_tok, pc_domain, eval_problems, cfg.eval_temperature, g.max_new_tokens,
                            g.eval_samples)
    base_acc = evaluate_accuracy(base_model, base_tok, domain, eval_problems, cfg.eval_temperature, g.max_new_tokens,
                                 g.eval_samples)
    pcfg = HFPolicyConfig(temperature=cfg.eval_temperature, max_new_tokens=g.max_new_tokens, seed=777 + seed)
    groups = HFPolicy(pc_model, inf_tok, pc_domain, pcfg).sample(bon_problems, cfg.bon_n)
    base_groups = HFPolicy(base_model, base_tok, domain, replace(pcfg)).sample(bon_problems, cfg.bon_n)
    trajs = [t for gr in groups for t in gr]
    evs = self_evaluate(pc_model, pc_tok, pc_domain, trajs)
    p = [e.p_correct for e in evs]
    y = [bool(t.outcome) for t in trajs]
    keep = [i for i, x in enumerate(p) if not math.isnan(x)]
    pk, yk = [p[i] for i in keep], [y[i] for i in keep]
    cons = [abs(e.predicted_reward - sum(actual_reward(t))) for e, t in zip(evs, trajs) if e.predicted_reward is not None]
    bon = {"self_eval": _bon(groups, [x if not math.isnan(x) else 0.0 for x in p], cfg.bon_n)}
    within = {"self_eval": _within(groups, p)}
    for src, prm in prms.items():
        scores = [aggregate(s, "min") for s in prm.score_trajectories(trajs)]
        bon[f"prm:{src}"] = _bon(groups, scores, cfg.bon_n)
        within[f"prm:{src}"] = _within(groups, scores)
    ref = best_of_n([[(t.final_answer, bool(t.outcome), 0.0) for t in gr] for gr in groups], cfg.bon_n)
    return {
        "accuracy": acc, "baseline_accuracy": base_acc,
        "ece": ece(pk, yk, cfg.n_bins), "brier": brier(pk, yk), "auroc": auroc(pk, yk),
        # the verifiers' AUROC among each problem's own samples: what best-of-N can use
        "within_problem_auroc": within,
        "inference_extra_tokens": float(np.mean([extra_tokens(pc_tok, t) for t in trajs])),
        "inference_tokens": float(np.mean([t.tokens_generated for t in trajs])),
        "baseline_inference_tokens": float(np.mean([t.tokens_generated for gr in base_groups for t in gr])),
        "evaluation_mode_tokens": float(np.mean([e.tokens for e in evs])),
        "self_eval_parsed": len(keep) / max(1, len(evs)),
        "predicted_reward_abs_error": float(np.mean(cons)) if cons else math.nan,
        "sample_accuracy": float(np.mean(y)), "mean_p_correct": float(np.mean(pk)) if pk else math.nan,
        "bon": bon, "bon_majority_vote": ref.majority_vote, "bon_random": ref.random_pick, "bon_oracle": ref.oracle_pick,
    }


def _mean_seeds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every number (nested dicts too), ``<key>_std`` the sample sd, ``per_seed`` the rows."""
    def merge(ds: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in ds[0].items():
            if isinstance(v, dict):
                out[k] = merge([d[k] for d in ds])
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                xs = [float(d[k]) for d in ds]
                out[k] = float(np.mean(xs))
                out[f"{k}_std"] = float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0
        return out

    return {**merge(rows), "seeds": len(rows), "per_seed": rows}


def ctx2skill_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Ctx2Skill over seeds: the numbers of every seed's metrics averaged (``*_std`` their sd), the
    replay guard's uses summed, each seed's curve and skill files kept under ``per_seed``."""
    keep = ("accuracy", "vs_none", "latest_accuracy", "judge_agreement", "entry_effect", "seconds")
    out = _mean_seeds([{k: m[k] for k in keep if k in m} for m in per_seed])
    out.pop("per_seed")
    out.update(rounds=per_seed[0]["rounds"], replay_guard_used=int(sum(m["replay_guard_used"] for m in per_seed)),
               replay_guard_rounds=int(sum(m["rounds"] for m in per_seed)), per_seed=per_seed)
    return out


# ----------------------------------------------------------------------------- the run


def run(config: SelfEvalConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run the chosen parts into ``out``; returns ``selfeval_metrics.json``'s content."""
    from selfprm.eval.calibration import plot_reliability
    from selfprm.eval.self_knowledge import PCLJudge, PRMJudge, run_suite, self_cross
    from selfprm.rl.pcl import PCLConfig, PCLMethod, PostCompletionDomain, inference_tokenizer, solution_text
    from selfprm.rl.outcome import OutcomeMethod
    from selfprm.types import atomic_write_text

    cfg = config
    run_dir = RunDir(out)
    domain = ArithDomain(cfg.arith)
    pc_domain = PostCompletionDomain(domain)
    g = cfg.grpo
    metrics: dict[str, Any] = {}
    need_models = {"pcl", "self_knowledge"} & set(cfg.parts)

    if need_models:
        log("selfeval: policies")
        plain_sft = replace(cfg.sft, steps=cfg.sft.steps + cfg.dual_track.steps)  # equal SFT steps
        base_st, base_model, base_tok, _ = policy_stage(run_dir, "policy/plain", domain, cfg.n_sft_problems, cfg.lm,
                                                        plain_sft, progress)
        pc_st, pc_model, pc_tok = _pcl_policy_stage(run_dir, cfg, pc_domain, progress)
        pool_st, pool = _pool(run_dir, "plain/pool", base_st, base_model, base_tok, domain, cfg.prm_pool_problems,
                              cfg.prm_pool_samples, g.temperature, g.max_new_tokens, 4242)
        prms = {src: _prm(run_dir, cfg, "plain", src, pool_st, pool, base_st, base_tok, progress)
                for src in cfg.prm_sources}
        train = domain.sample_problems(cfg.n_train_problems, seed=1, prefix="train")
        evals = domain.sample_problems(cfg.n_eval_problems, seed=2, prefix="eval")
        bon_problems = domain.sample_problems(cfg.bon_problems, seed=3, prefix="bon")

        log("selfeval: GRPO, PCL and the outcome baseline")
        rows, pcl_models = [], {}
        for seed in range(cfg.seeds):
            gb = replace(g, seed=seed)
            gp = PCLConfig(**{**asdict(g), "seed": seed, "max_new_tokens": g.max_new_tokens + 12, **cfg.pcl_kwargs})
            _, b_model, b_res = _grpo_stage(run_dir, f"grpo/outcome/seed{seed}", base_st, base_st.file("model"),
                                            base_tok, domain, gb, OutcomeMethod(gb), train, evals, progress)
            _, p_model, p_res = _grpo_stage(run_dir, f"grpo/pcl/seed{seed}", pc_st, pc_st.file("model"), pc_tok,
                                            pc_domain, gp, PCLMethod(gp), train, evals, progress)
            pcl_models[seed] = p_model
            row = _pcl_seed(cfg, p_model, pc_tok, b_model, base_tok, domain, pc_domain, bon_problems, evals, prms, seed)
            row.update({"grpo_samples": p_res["samples"], "baseline_grpo_samples": b_res["samples"],
                        "grpo_policy_tokens": p_res["policy_tokens"],
                        "baseline_grpo_policy_tokens": b_res["policy_tokens"],
                        "sft_accuracy": p_res["accuracy"][0][1], "baseline_sft_accuracy": b_res["accuracy"][0][1]})
            log(f"      seed {seed}: PCL {row['accuracy']:.3f} vs outcome GRPO {row['baseline_accuracy']:.3f}; "
                f"self-eval ECE {row['ece']:.3f} AUROC {row['auroc']:.3f}; extra tokens {row['inference_extra_tokens']}")
            rows.append(row)
        if "pcl" in cfg.parts:
            metrics["pcl"] = _mean_seeds(rows)

    if "self_knowledge" in cfg.parts:
        log("selfeval: self-knowledge suite")
        judge_st, judged = _pool(run_dir, "plain/judged", base_st, base_model, base_tok, domain, cfg.judge_problems,
                                 cfg.judge_samples, cfg.eval_temperature, g.max_new_tokens, 5151)
        from selfprm.policies.hf import HFPolicy, HFPolicyConfig

        pcl_judged = [t for gr in HFPolicy(pcl_models[0], inference_tokenizer(pc_tok), pc_domain, HFPolicyConfig(
            temperature=cfg.eval_temperature, max_new_tokens=g.max_new_tokens, seed=5151)).sample(
            domain.sample_problems(cfg.judge_problems, seed=5151, prefix="judged"), cfg.judge_samples) for t in gr]
        suites, curves = {}, {}
        judges = [(PRMJudge(f"prm:{s}", prm), judged) for s, prm in prms.items()]
        judges.append((PCLJudge("pcl_self_eval", pcl_models[0], pc_tok, pc_domain), pcl_judged))
        for judge, trajs in judges:
            res = run_suite(judge, trajs, lambda t: solution_text(domain, t), cfg.n_bins, cfg.stability_trajectories,
                            cfg.pushback_trajectories, seed=0)
            suites[judge.name] = res.metrics
            curves[judge.name] = res.reliability
            if isinstance(judge, PCLJudge):
                suites[judge.name]["evaluation_mode_tokens"] = judge.tokens
        metrics["self_knowledge"] = suites
        # self vs cross: the oracle-label PRM of this policy and of one with a shorter SFT
        short_st, short_model, short_tok, _ = policy_stage(run_dir, "policy/short", domain, cfg.n_sft_problems, cfg.lm,
                                                           replace(cfg.sft, steps=cfg.cross_sft_steps), progress)
        spool_st, spool = _pool(run_dir, "short/pool", short_st, short_model, short_tok, domain,
                                cfg.prm_pool_problems, cfg.prm_pool_samples, g.temperature, g.max_new_tokens, 4242)
        short_prm = _prm(run_dir, cfg, "short", "oracle", spool_st, spool, short_st, short_tok, progress)
        _, short_judged = _pool(run_dir, "short/judged", short_st, short_model, short_tok, domain, cfg.judge_problems,
                                cfg.judge_samples, cfg.eval_temperature, g.max_new_tokens, 5151)
        metrics["self_vs_cross"] = {
            **self_cross({"long_sft": PRMJudge("long_sft", prms["oracle"]), "short_sft": PRMJudge("short_sft", short_prm)},
                         {"long_sft": judged, "short_sft": short_judged}),
            "sft_steps": {"long_sft": cfg.sft.steps + cfg.dual_track.steps, "short_sft": cfg.cross_sft_steps},
            "sample_accuracy": {"long_sft": judge_st.result()["accuracy"],
                                "short_sft": float(np.mean([bool(t.outcome) for t in short_judged]))}}
        plot_reliability(curves, run_dir.root / "reliability.png", "judges: reliability (equal-mass bins)")

    if "ctx2skill" in cfg.parts:
        log("selfeval: Ctx2Skill self-play")
        from selfprm.selfplay.ctx2skill import Ctx2SkillConfig, plot_curve, run_ctx2skill

        base = ctx2skill_config(Ctx2SkillConfig(), cfg.ctx2skill)
        # one self-play per seed, each with its own Reasoner (a training run), held-out tasks and draws
        per = [run_ctx2skill(replace(base, seed=base.seed + k, reasoner=replace(base.reasoner, seed=base.reasoner.seed + k)),
                             run_dir.root / "ctx2skill" / f"seed-{k}", progress=progress) for k in range(cfg.seeds)]
        metrics["ctx2skill"] = ctx2skill_summary(per)
        plot_curve(per, run_dir.root / "ctx2skill_accuracy.png")  # the curve over rounds, a band over seeds

    run_dir.write_json("selfeval_metrics.json", metrics)
    atomic_write_text(run_dir.root / "selfeval_table.md", table(metrics))
    return metrics


def _pm(d: dict[str, Any], k: str) -> str:
    """``mean ± sd`` of a key averaged over seeds (just the value where no sd was kept)."""
    from selfprm.report.tables import cell

    return f"{cell(d.get(k))} ± {cell(d.get(f'{k}_std'))}" if f"{k}_std" in d else cell(d.get(k))


def table(metrics: dict[str, Any]) -> str:
    """The markdown tables of ``selfeval_metrics.json``."""
    from selfprm.report.tables import cell, markdown_table

    parts = []
    if "pcl" in metrics:
        m = metrics["pcl"]
        parts.append("## Post-Completion Learning\n\n" + markdown_table(
            ["accuracy", "baseline (SFT+GRPO)", "ECE", "Brier", "AUROC", "inference extra tokens",
             "evaluation-mode tokens", "seeds"],
            [[_pm(m, "accuracy"), _pm(m, "baseline_accuracy"), _pm(m, "ece"), _pm(m, "brier"), _pm(m, "auroc"),
              cell(m["inference_extra_tokens"], ".1f"), cell(m["evaluation_mode_tokens"], ".1f"), str(m["seeds"])]]))
        within = m.get("within_problem_auroc", {})
        parts.append("Best-of-N on PCL's inference samples (within-problem AUROC: the verifier's ranking of one "
                     "problem's own samples, right above wrong):\n\n" + markdown_table(
            ["verifier", "accuracy", "within-problem AUROC"],
            [[k, _pm(m["bon"], k), _pm(within, k)] for k in m["bon"] if not k.endswith("_std")]
            + [["majority vote", cell(m["bon_majority_vote"]), "—"], ["random pick", cell(m["bon_random"]), "—"],
               ["oracle pick", cell(m["bon_oracle"]), "—"]]))
    if "self_knowledge" in metrics:
        parts.append("## Self-knowledge\n\n" + markdown_table(
            ["judge", "level", "ECE", "Brier", "AUROC", "overconfidence", "stability sd", "pushback flip rate"],
            [[n, r["level"], cell(r["ece"]), cell(r["brier"]), cell(r["auroc"]), cell(r["overconfidence"], "+.3f"),
              cell(r["stability_sd"]), cell(r["pushback_flip_rate"])] for n, r in metrics["self_knowledge"].items()]))
    if "self_vs_cross" in metrics:
        sc = metrics["self_vs_cross"]
        names = list(sc["auroc"])
        parts.append("Step AUROC, judge (rows) on samples (columns):\n\n" + markdown_table(
            ["judge \\ samples", *names], [[j, *[cell(sc["auroc"][j][s]) for s in names]] for j in names]))
    if "ctx2skill" in metrics:
        c = metrics["ctx2skill"]
        a = c.get("accuracy", {})
        parts.append("## Ctx2Skill\n\nHeld-out accuracy (mean ± sd over seeds):\n\n" + markdown_table(
            ["evolved", "none", "random", "fixed by evolved", "broken by evolved", "fixed by random", "judge agreement",
             "replay guard used", "rounds", "seeds"],
            [[_pm(a, "evolved"), _pm(a, "none"), _pm(a, "random"), _pm(c["vs_none"]["evolved"], "fixed"),
              _pm(c["vs_none"]["evolved"], "broken"), _pm(c["vs_none"]["random"], "fixed"), _pm(c, "judge_agreement"),
              f"{c['replay_guard_used']}/{c['replay_guard_rounds']} rounds", str(c["rounds"]), str(c["seeds"])]]))
    return "\n\n".join(parts) + "\n"
