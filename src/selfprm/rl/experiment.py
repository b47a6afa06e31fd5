"""``selfprm rl``: every method from the same SFT checkpoint, at the same sample budget and seeds.

Stages, each cached under the out folder so an interrupted run resumes:

1. SFT policies (the embedded tiny causal LM): one on ``arith``, one on ``tools`` (for ToolPO and its
   outcome-only baseline on the same domain).
2. A PRM for the ``prm`` method (and for search): trained on step labels of a pool sampled from
   the SFT policy (``prm_labels``: ``oracle`` by default, any registered label source works),
   its backbone initialised from the policy as in ``selfprm demo`` — or loaded with ``--prm``.
3. Every method × seed: GRPO from the SFT weights, held-out accuracy measured along the way at
   equal numbers of sampled trajectories.
4. Search at test time with the SFT policy and the PRM: accuracy against policy tokens for
   best-of-N, weighted majority, majority vote and beam search.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.domains.tools import ToolsConfig, ToolsDomain
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig, load_or_train_policy_model
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer
from selfprm.rl.outcome import OutcomeConfig, OutcomeMethod
from selfprm.rl.prm import PRMRewardConfig, PRMRewardMethod
from selfprm.rl.r3 import R3Config, R3Method
from selfprm.rl.srl import SRLConfig, SRLMethod
from selfprm.rl.toolpo import ToolPOConfig, ToolPOMethod
from selfprm.rl.tree_grpo import TreeGRPOConfig, TreeGRPOMethod
from selfprm.search.beam import BeamConfig
from selfprm.types import atomic_write_text

# method name -> (config class, domain it runs on)
_METHODS = {
    "outcome": (OutcomeConfig, "arith"),
    "prm": (PRMRewardConfig, "arith"),
    "tree_grpo": (TreeGRPOConfig, "arith"),
    "r3": (R3Config, "arith"),
    "srl": (SRLConfig, "arith"),
    "outcome_tools": (OutcomeConfig, "tools"),  # ToolPO's baseline: outcome-only GRPO on the same domain
    "toolpo": (ToolPOConfig, "tools"),
}


@dataclass
class RLRunConfig:
    seeds: int = 3
    methods: tuple[str, ...] = ("outcome", "prm", "tree_grpo", "r3", "srl", "outcome_tools", "toolpo")
    arith: ArithConfig = field(default_factory=lambda: ArithConfig(min_ops=2, max_ops=4))
    # short chains with small numbers: the tiny policy learns them within a few hundred SFT steps
    tools: ToolsConfig = field(default_factory=lambda: ToolsConfig(min_ops=1, max_ops=2, start_max=9,
                                                                   operand_max={"+": 9, "-": 9, "*": 5}))
    lm: TinyLMConfig = field(default_factory=TinyLMConfig)
    sft_steps: int = 500
    tools_sft_steps: int = 500
    n_sft_problems: int = 8000
    n_train_problems: int = 500
    n_eval_problems: int = 100
    # lr: Adam turns even a pure-noise gradient into steps of size lr on every weight, which at 1e-3
    # wiped out the tiny policy's arithmetic within 5 rounds (reward 0.50 -> 0.05); 1e-4 climbs steadily
    grpo: GRPOConfig = field(default_factory=lambda: GRPOConfig(steps=30, prompts_per_step=8, group_size=8, lr=1e-4,
                                                                 eval_every=10, eval_samples=2, max_new_tokens=64))
    method_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    prm_labels: str = "oracle"
    prm_pool_problems: int = 200
    prm_pool_samples: int = 4
    prm_epochs: int = 2
    search_problems: int = 60
    search_temperature: float = 0.7
    search_ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    search_beams: tuple[tuple[int, int, int], ...] = ((2, 2, 0), (4, 2, 0), (4, 4, 0), (2, 2, 1))
    search: bool = True

    @classmethod
    def quick(cls) -> "RLRunConfig":
        return cls(
            seeds=1, sft_steps=300, tools_sft_steps=300, n_sft_problems=4000, n_train_problems=200, n_eval_problems=60,
            grpo=GRPOConfig(steps=6, prompts_per_step=6, group_size=8, lr=1e-4, eval_every=3, max_new_tokens=64),
            prm_pool_problems=60, prm_pool_samples=2, prm_epochs=1,
            search_problems=30, search_ns=(1, 2, 4), search_beams=((2, 2, 0),),
        )


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _log(msg: str) -> None:
    print(msg, flush=True)


def method_for(name: str, config: GRPOConfig, prm=None):
    """The method object for ``name`` with its config class built from ``config``."""
    cls = _METHODS[name][0]
    if name in ("outcome", "outcome_tools"):
        return OutcomeMethod(config)
    if name == "prm":
        return PRMRewardMethod(prm, config)
    if name == "tree_grpo":
        return TreeGRPOMethod(config)
    if name == "r3":
        return R3Method(config, config.seed)
    if name == "srl":
        return SRLMethod(config, config.seed)
    if name == "toolpo":
        return ToolPOMethod(config)
    raise ValueError(f"unknown method {name!r}; choose from {sorted(_METHODS)}")


def method_config(name: str, base: GRPOConfig, seed: int, extra: dict[str, Any] | None = None) -> GRPOConfig:
    cls = _METHODS[name][0]
    return cls(**{**asdict(base), "seed": seed, **(extra or {})})


def _train_prm(run: RLRunConfig, policy_dir: Path, model, tok, domain, out: Path, progress: bool):
    from transformers import AutoModelForCausalLM

    from selfprm.labels import run_label_source
    from selfprm.prm.model import PRMConfig, ProcessRewardModel
    from selfprm.prm.train import PRMTrainConfig, train_prm

    key = _hash([asdict(run.arith), asdict(run.lm), run.sft_steps, run.n_sft_problems, run.prm_labels,
                 run.prm_pool_problems, run.prm_pool_samples, run.prm_epochs, run.grpo.temperature, "surprise"])
    pdir = out / "prm"
    stamp = pdir / "selfprm_rl_prm.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("key") == key:
        return ProcessRewardModel.from_pretrained(pdir)
    pol = HFPolicy(model, tok, domain, HFPolicyConfig(temperature=run.grpo.temperature,
                                                      max_new_tokens=run.grpo.max_new_tokens, seed=4242))
    problems = domain.sample_problems(run.prm_pool_problems, seed=4242, prefix="prm-pool")
    pool = [t for g in pol.sample(problems, run.prm_pool_samples) for t in g]
    res = run_label_source(run.prm_labels, pool, pol)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        # the demo's PRM: the policy's body with its LM head, so the head also reads token log-probs
        prm = ProcessRewardModel(AutoModelForCausalLM.from_pretrained(policy_dir), tok,
                                 PRMConfig(step_separator=domain.step_separator, surprise_features=True))
    train_prm(prm, list(zip(pool, res.labels)),
              PRMTrainConfig(loss=res.prm_loss, epochs=run.prm_epochs, batch_size=32, head_lr=5e-2),
              progress=progress, desc=f"PRM ({run.prm_labels})")
    tmp = pdir.with_name("prm.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    prm.save_pretrained(tmp)
    (tmp / "selfprm_rl_prm.json").write_text(json.dumps({"key": key, "labels": run.prm_labels, "pool": len(pool)}))
    shutil.rmtree(pdir, ignore_errors=True)
    os.replace(tmp, pdir)
    return prm


def run_rl(run: RLRunConfig, out: str | os.PathLike, prm_path: str | None = None, progress: bool = True) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    domains = {"arith": ArithDomain(run.arith), "tools": ToolsDomain(run.tools)}
    needed = sorted({_METHODS[m][1] for m in run.methods} | {"arith"})

    # 1. SFT policies ---------------------------------------------------------------------------
    policies: dict[str, tuple[Path, Any, Any]] = {}
    for dname in needed:
        sft = SFTConfig(steps=run.sft_steps if dname == "arith" else run.tools_sft_steps, seed=0)
        _log(f"[1/4] SFT policy on {dname} ({sft.steps} steps)")
        pdir = out / f"policy_{dname}"
        model, tok, _ = load_or_train_policy_model(domains[dname], pdir, run.n_sft_problems, run.lm, sft, progress=progress)
        policies[dname] = (pdir, model, tok)

    # 2. PRM ------------------------------------------------------------------------------------
    from selfprm.prm.model import ProcessRewardModel

    pdir, model, tok = policies["arith"]
    if prm_path:
        _log(f"[2/4] PRM loaded from {prm_path}")
        prm = ProcessRewardModel.from_pretrained(prm_path)
    else:
        _log(f"[2/4] PRM on '{run.prm_labels}' labels of {run.prm_pool_problems}x{run.prm_pool_samples} sampled solutions")
        prm = _train_prm(run, pdir, model, tok, domains["arith"], out, progress)

    # 3. methods × seeds ------------------------------------------------------------------------
    _log(f"[3/4] {len(run.methods)} methods x {run.seeds} seeds, "
         f"{run.grpo.steps * run.grpo.prompts_per_step * run.grpo.group_size} sampled solutions each")
    problems = {d: (domains[d].sample_problems(run.n_train_problems, seed=101, prefix="rl-train"),
                    domains[d].sample_problems(run.n_eval_problems, seed=202, prefix="rl-eval")) for d in needed}
    results: dict[str, list[dict[str, Any]]] = {}
    for name in run.methods:
        dname = _METHODS[name][1]
        pdir, _, tok = policies[dname]
        for seed in range(run.seeds):
            cfg = method_config(name, run.grpo, seed, run.method_kwargs.get(name))
            key = _hash([asdict(cfg), asdict(run.arith), asdict(run.tools), asdict(run.lm), run.sft_steps,
                         run.tools_sft_steps, run.n_sft_problems,
                         run.n_train_problems, run.n_eval_problems, prm_path, run.prm_labels, name])
            cache = out / "runs" / f"{name}-seed{seed}.json"
            if cache.exists() and json.loads(cache.read_text()).get("key") == key:
                results.setdefault(name, []).append(json.loads(cache.read_text()))
                continue
            model = AutoModelForCausalLM.from_pretrained(pdir)
            trainer = GRPOTrainer(model, tok, domains[dname], cfg, method_for(name, cfg, prm))
            res = trainer.train(*problems[dname], progress=progress, desc=f"{name} seed {seed}")
            rec = {"key": key, "accuracy": res.accuracy, "samples": res.samples, "seconds": res.seconds,
                   "kl": res.kl, "mean_reward": res.mean_reward, "domain": dname}
            atomic_write_text(cache, json.dumps(rec))
            results.setdefault(name, []).append(rec)
            _log(f"      {name:13s} seed {seed}: accuracy {res.accuracy[0][1]:.3f} -> {res.accuracy[-1][1]:.3f} "
                 f"({res.seconds:.0f}s)")
    methods: dict[str, Any] = {}
    for name, recs in results.items():
        xs = [p[0] for p in recs[0]["accuracy"]]
        per_seed = np.array([[p[1] for p in r["accuracy"]] for r in recs])
        finals = per_seed[:, -1]
        methods[name] = {
            "accuracy": [[int(x), float(a)] for x, a in zip(xs, per_seed.mean(0))],
            "accuracy_std": [float(s) for s in per_seed.std(0)],
            "accuracy_per_seed": per_seed.tolist(),
            "final_accuracy": float(finals.mean()),
            "final_accuracy_std": float(finals.std()),
            "seeds": len(recs),
            "samples": int(recs[0]["samples"]),
            "domain": recs[0]["domain"],
            "seconds": float(np.mean([r["seconds"] for r in recs])),
        }
    initial = {d: float(next(m["accuracy"][0][1] for m in methods.values() if m["domain"] == d))
               for d in needed if any(m["domain"] == d for m in methods.values())}

    # 4. search ---------------------------------------------------------------------------------
    from selfprm.search.curves import plot_search_curves, search_curves

    _log(f"[4/4] search on {run.search_problems} held-out problems: best-of-N, votes, beam search")
    skey = _hash([asdict(run.arith), asdict(run.lm), run.sft_steps, run.n_sft_problems, prm_path, run.prm_labels, run.search_problems,
                  run.search_temperature, list(run.search_ns), [list(b) for b in run.search_beams], run.grpo.max_new_tokens])
    spath = out / "search.json"
    if not run.search:
        search = None
    elif spath.exists() and json.loads(spath.read_text()).get("key") == skey:
        search = json.loads(spath.read_text())["search"]
    else:
        _, model, tok = policies["arith"]
        pol = HFPolicy(model, tok, domains["arith"], HFPolicyConfig(temperature=run.search_temperature,
                                                                    max_new_tokens=run.grpo.max_new_tokens, seed=303))
        sprobs = domains["arith"].sample_problems(run.search_problems, seed=303, prefix="search")
        beams = [BeamConfig(beam_width=w, expansions_per_beam=e, lookahead=k) for w, e, k in run.search_beams]
        search = search_curves(pol, prm, sprobs, run.search_ns, beams, progress=progress)
        search["temperature"] = run.search_temperature
        atomic_write_text(spath, json.dumps({"key": skey, "search": search}))
    if search is not None:
        plot_search_curves(search, out / "search_curves.png")

    metrics = {
        "methods": methods,
        "initial_accuracy": initial.get("arith"),
        "initial_accuracy_by_domain": initial,
        "search": search,
        "config": json.loads(json.dumps(asdict(run), default=str)),
        "prm": prm_path or str(out / "prm"),
        "seconds": time.perf_counter() - t_start,
    }
    from selfprm.rl.report import markdown_table, plot_learning_curves

    atomic_write_text(out / "rl_metrics.json", json.dumps(metrics, indent=2))
    plot_learning_curves(metrics, out / "rl_curves.png")
    table = markdown_table(metrics)
    atomic_write_text(out / "rl_table.md", table)
    print(table)
    return metrics
