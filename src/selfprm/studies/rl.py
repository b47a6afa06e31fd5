"""``selfprm rl``: every method from the same SFT checkpoint, at the same sample budget and seeds.

Stages of the run directory (:mod:`selfprm.rundir`), each keyed by its config and the stages it is
built from, so an interrupted run resumes and a changed parameter recomputes exactly what it
reaches (a PRM retrained on a new pool also reruns the ``prm`` method and the search curves):

1. SFT policies (the embedded tiny causal LM): one on ``arith``, one on ``tools`` (for ToolPO and its
   outcome-only baseline on the same domain).
2. A PRM for the ``prm`` method (and for search): trained on step labels of a pool sampled from
   the SFT policy (``prm_labels``: ``oracle`` by default, any registered label source works),
   its backbone initialised from the policy as in ``selfprm demo`` — or loaded with ``prm_path``.
3. Every method × seed (any method in :data:`selfprm.rl.RL_METHODS`): GRPO from the SFT weights,
   held-out accuracy measured along the way at equal numbers of sampled trajectories — or, with
   ``token_budget``, at equal numbers of generated policy tokens (a one-step SRL rollout or a tree
   expansion costs what it generates, not a whole sample). Every run reports both.
4. Search at test time with the SFT policy and the PRM: accuracy against policy tokens for
   best-of-N, weighted majority, majority vote and beam search.
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
from selfprm.studies.stages import log, policy_stage, prm_stage
from selfprm.types import atomic_write_text


@dataclass
class RLConfig:
    """GRPO variants at equal samples, and PRM-guided search.

    Parameters:
        seeds: independent runs per method.
        methods: registered RL methods to run (``outcome``, ``prm``, ``tree_grpo``, ``r3``, ``srl``, ``outcome_tools``, ``toolpo``).
        arith: the arith problems (short chains the tiny policy learns within a few hundred SFT steps).
        tools: the tools problems.
        lm: shape of the tiny causal LM.
        sft: SFT of the arith policy.
        tools_sft: SFT of the tools policy.
        n_sft_problems: worked solutions each policy is fine-tuned on.
        n_train_problems: problems GRPO draws its prompts from.
        n_eval_problems: held-out problems accuracy is measured on.
        grpo: the GRPO core's settings (every method's config starts from them).
        method_kwargs: per-method settings beyond ``grpo`` (JSON on the command line).
        token_budget: policy tokens each method × seed generates before it stops (0: train
            ``grpo.steps`` rounds, equal samples); with a budget, accuracy is measured when the
            tokens spent reach each of ``grpo.steps // grpo.eval_every`` evenly spaced marks.
        prm_path: a saved selfprm PRM for the ``prm`` method and search (empty: train one here).
        prm_labels: the label source of the PRM trained here.
        prm_pool_problems: problems of the pool it is trained on.
        prm_pool_samples: solutions sampled per pool problem.
        prm_train: its training.
        search_problems: held-out problems of the search curves.
        search_temperature: sampling temperature of the search.
        search_ns: N of best-of-N and the votes.
        search_beams: beam search settings, (width, expansions per beam, lookahead) each.
        search: whether to draw the search curves.
    """

    seeds: int = 3
    methods: tuple[str, ...] = ("outcome", "prm", "tree_grpo", "r3", "srl", "outcome_tools", "toolpo")
    arith: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=2, max_ops=4))
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
    token_budget: int = 0
    prm_path: str = ""
    prm_labels: str = "oracle"
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

        RL_METHODS.check(self.methods)
        LABEL_SOURCES.check([self.prm_labels])


def _quick() -> RLConfig:
    return RLConfig(
        seeds=1, sft=SFTConfig(steps=300), tools_sft=SFTConfig(steps=300), n_sft_problems=4000, n_train_problems=200,
        n_eval_problems=60,
        grpo=GRPOConfig(steps=6, prompts_per_step=6, group_size=8, lr=1e-4, eval_every=3, max_new_tokens=64),
        prm_pool_problems=60, prm_pool_samples=2, prm_train=PRMTrainConfig(epochs=1, batch_size=32, head_lr=5e-2),
        search_problems=30, search_ns=(1, 2, 4), search_beams=((2, 2, 0),),
    )


Config = RLConfig
PRESETS = {"full": RLConfig, "quick": _quick}
DEFAULT_OUT = "runs/rl"


def method_config(name: str, base: GRPOConfig, seed: int, extra: dict[str, Any] | None = None) -> GRPOConfig:
    """The method's own config class, from the shared GRPO settings, the seed and its extras."""
    return RL_METHODS.get(name).config_cls(**{**asdict(base), "seed": seed, **(extra or {})})


def _prm(run: RLConfig, run_dir: RunDir, policy: tuple[Stage, Any, Any], domain, progress: bool):
    """The PRM stage: trained here on ``prm_labels`` of a sampled pool, or loaded from ``prm_path``."""
    from selfprm.labels import get_label_source, run_label_source
    from selfprm.prm.model import PRMConfig, ProcessRewardModel

    if run.prm_path:
        stage = run_dir.stage("prm", {"path": str(Path(run.prm_path).resolve())})
        return stage, ProcessRewardModel.from_pretrained(run.prm_path)
    pstage, model, tok = policy

    def labelled_pool():
        pol = HFPolicy(model, tok, domain, HFPolicyConfig(temperature=run.grpo.temperature,
                                                          max_new_tokens=run.grpo.max_new_tokens, seed=4242))
        problems = domain.sample_problems(run.prm_pool_problems, seed=4242, prefix="prm-pool")
        pool = [t for g in pol.sample(problems, run.prm_pool_samples) for t in g]
        return list(zip(pool, run_label_source(run.prm_labels, pool, pol, progress=progress).labels))

    loss = get_label_source(run.prm_labels).prm_loss
    # the demo's PRM: the policy's body with its LM head, so the head also reads token log-probs
    pool_config = {"labels": run.prm_labels, "problems": run.prm_pool_problems, "samples": run.prm_pool_samples,
                   "temperature": run.grpo.temperature, "max_new_tokens": run.grpo.max_new_tokens}
    stage, prm, _ = prm_stage(run_dir, "prm", [pstage], pstage.file("model"), tok, labelled_pool,
                              replace(run.prm_train, loss=loss),
                              PRMConfig(step_separator=domain.step_separator, surprise_features=True),
                              init_seed=0, data_config=pool_config, progress=progress,
                              desc=f"PRM ({run.prm_labels})")
    return stage, prm


def run(run: RLConfig, out: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Run every method × seed and the search curves into ``out``; returns ``rl_metrics.json``'s content."""
    from transformers import AutoModelForCausalLM

    run_dir = RunDir(out)
    t_start = time.perf_counter()
    domains = {"arith": ArithDomain(run.arith), "tools": ToolsDomain(run.tools)}
    needed = sorted({RL_METHODS.get(m).domain for m in run.methods} | {"arith"})

    # 1. SFT policies ---------------------------------------------------------------------------
    policies: dict[str, tuple[Stage, Any, Any]] = {}
    for dname in needed:
        sft = run.sft if dname == "arith" else run.tools_sft
        log(f"[1/4] SFT policy on {dname} ({sft.steps} steps)")
        stage, model, tok, _ = policy_stage(run_dir, f"policy_{dname}", domains[dname], run.n_sft_problems, run.lm, sft,
                                            progress=progress)
        policies[dname] = (stage, model, tok)

    # 2. PRM ------------------------------------------------------------------------------------
    log(f"[2/4] PRM: {run.prm_path or f'on {run.prm_labels!r} labels of {run.prm_pool_problems}x{run.prm_pool_samples} sampled solutions'}")
    prm_st, prm = _prm(run, run_dir, policies["arith"], domains["arith"], progress)

    # 3. methods × seeds ------------------------------------------------------------------------
    budget = (f"{run.token_budget} policy tokens each" if run.token_budget else
              f"{run.grpo.steps * run.grpo.prompts_per_step * run.grpo.group_size} sampled solutions each")
    log(f"[3/4] {len(run.methods)} methods x {run.seeds} seeds, {budget}")
    problems = {d: (domains[d].sample_problems(run.n_train_problems, seed=101, prefix="rl-train"),
                    domains[d].sample_problems(run.n_eval_problems, seed=202, prefix="rl-eval")) for d in needed}
    results: dict[str, list[dict[str, Any]]] = {}
    for name in run.methods:
        spec = RL_METHODS.get(name)
        pstage, _, tok = policies[spec.domain]
        for seed in range(run.seeds):
            cfg = method_config(name, run.grpo, seed, run.method_kwargs.get(name))
            parents = [pstage, prm_st] if spec.needs_prm else [pstage]
            key = {"method": name, "config": cfg, "problems": [run.n_train_problems, run.n_eval_problems]}
            if run.token_budget:  # only when set, so runs budgeted in samples keep their cached stages
                key["token_budget"] = run.token_budget
            stage = run_dir.stage(f"runs/{name}-seed{seed}", key, parents)
            if not stage.done():
                stage.begin()
                model = AutoModelForCausalLM.from_pretrained(pstage.file("model"))
                trainer = GRPOTrainer(model, tok, domains[spec.domain], cfg, spec.build(cfg, prm))
                res = trainer.train(*problems[spec.domain], progress=progress, desc=f"{name} seed {seed}",
                                    token_budget=run.token_budget or None)
                stage.finish({"accuracy": res.accuracy, "samples": res.samples, "seconds": res.seconds,
                              "kl": res.kl, "mean_reward": res.mean_reward, "domain": spec.domain,
                              "policy_tokens": res.policy_tokens, "tokens": res.tokens})
                log(f"      {name:13s} seed {seed}: accuracy {res.accuracy[0][1]:.3f} -> {res.accuracy[-1][1]:.3f} "
                    f"({res.seconds:.0f}s)")
            results.setdefault(name, []).append(stage.result())
    methods: dict[str, Any] = {}
    for name, recs in results.items():
        # budgeted in samples every seed has the same x; in tokens, the same number of points,
        # each at the seeds' mean x
        xs = np.mean([[p[0] for p in r["accuracy"]] for r in recs], axis=0)
        per_seed = np.array([[p[1] for p in r["accuracy"]] for r in recs])
        finals = per_seed[:, -1]
        # stages cached before tokens were counted have no "tokens": no token curve then
        tok_x = (np.mean([[p[0] for p in r["tokens"]] for r in recs], axis=0)
                 if all(r.get("tokens") for r in recs) else None)
        methods[name] = {
            "accuracy": [[int(round(x)), float(a)] for x, a in zip(xs, per_seed.mean(0))],
            "tokens": None if tok_x is None else [[int(round(x)), float(a)] for x, a in zip(tok_x, per_seed.mean(0))],
            "policy_tokens": (int(round(np.mean([r["policy_tokens"] for r in recs])))
                              if all("policy_tokens" in r for r in recs) else None),
            "budget": "tokens" if run.token_budget else "samples",
            "accuracy_std": [float(s) for s in per_seed.std(0)],
            "accuracy_per_seed": per_seed.tolist(),
            "final_accuracy": float(finals.mean()),
            "final_accuracy_std": float(finals.std()),
            "seeds": len(recs),
            "samples": int(round(np.mean([r["samples"] for r in recs]))),
            "domain": recs[0]["domain"],
            "seconds": float(np.mean([r["seconds"] for r in recs])),
        }
    initial = {d: float(next(m["accuracy"][0][1] for m in methods.values() if m["domain"] == d))
               for d in needed if any(m["domain"] == d for m in methods.values())}

    # 4. search ---------------------------------------------------------------------------------
    from selfprm.search.curves import plot_search_curves, search_curves

    search = None
    if run.search:
        log(f"[4/4] search on {run.search_problems} held-out problems: best-of-N, votes, beam search")
        pstage, model, tok = policies["arith"]
        stage = run_dir.stage("search", {"problems": run.search_problems, "temperature": run.search_temperature,
                                         "ns": run.search_ns, "beams": run.search_beams,
                                         "max_new_tokens": run.grpo.max_new_tokens}, [pstage, prm_st])
        if not stage.done():
            stage.begin()
            pol = HFPolicy(model, tok, domains["arith"], HFPolicyConfig(temperature=run.search_temperature,
                                                                        max_new_tokens=run.grpo.max_new_tokens, seed=303))
            sprobs = domains["arith"].sample_problems(run.search_problems, seed=303, prefix="search")
            beams = [BeamConfig(beam_width=w, expansions_per_beam=e, lookahead=k) for w, e, k in run.search_beams]
            search = search_curves(pol, prm, sprobs, run.search_ns, beams, progress=progress)
            search["temperature"] = run.search_temperature
            stage.finish(search)
        search = stage.result()
        plot_search_curves(search, run_dir.root / "search_curves.png")

    metrics = {
        "methods": methods,
        "initial_accuracy": initial.get("arith"),
        "initial_accuracy_by_domain": initial,
        "search": search,
        "config": config_blob(run),
        "prm": run.prm_path or str(prm_st.file("model")),
        "seconds": time.perf_counter() - t_start,
    }
    from selfprm.rl.report import markdown_table, plot_learning_curves

    run_dir.write_json("rl_metrics.json", metrics)
    plot_learning_curves(metrics, run_dir.root / "rl_curves.png")
    table = markdown_table(metrics)
    atomic_write_text(run_dir.root / "rl_table.md", table)
    print(table)
    return metrics
