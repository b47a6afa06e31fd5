"""Stages more than one study runs: the tiny policy's SFT, a labelled pool, a PRM trained on labels.

Each takes the :class:`~selfprm.rundir.RunDir` and the configs it depends on, and returns its
:class:`~selfprm.rundir.Stage` with what it made, so a caller passes the stage on as a parent of
the stages built from it (their keys then change whenever this one's does).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np

from selfprm.rundir import RunDir, Stage
from selfprm.types import StepLabels, Trajectory, write_trajectories


def log(msg: str) -> None:
    """A study's stage line: always printed (``progress`` governs the bars only)."""
    print(msg, flush=True)


def seed_streams(seed: int, names: Sequence[str]) -> dict[str, int]:
    """Independent integer seeds, one per name, spawned from ``seed`` by ``numpy.random.SeedSequence``
    (so no two streams collide the way ``seed * 100 + k`` and ``seed * 1_000_003 + i`` can)."""
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: int(c.generate_state(1)[0]) for name, c in zip(names, children)}


def policy_stage(run: RunDir, name: str, domain, n_sft_problems: int, lm, sft,
                 progress: bool = True) -> tuple[Stage, Any, Any, list[float]]:
    """The embedded tiny causal LM after SFT on ``domain``: trained once, then loaded from
    ``name/model``; returns ``(stage, model, tokenizer, sft_losses)``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfprm.policies.tiny import train_policy_model

    stage = run.stage(name, {"domain": domain.config, "lm": lm, "sft": sft, "n_sft_problems": n_sft_problems})
    if stage.done():
        model = AutoModelForCausalLM.from_pretrained(stage.file("model"))
        model.eval()
        tok = AutoTokenizer.from_pretrained(stage.file("model"))
        return stage, model, tok, stage.read_json("sft_losses.json")
    stage.begin()
    model, tok, losses = train_policy_model(domain, n_sft_problems, lm, sft, progress=progress)
    with stage.atomic_dir("model") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    stage.write_json("sft_losses.json", losses)
    stage.finish({"sft_final_loss": float(np.mean(losses[-20:])) if losses else math.nan})
    return stage, model, tok, losses


def label_stage(run: RunDir, name: str, source_name: str, kwargs: dict[str, Any], trajectories: Sequence[Trajectory],
                policy, parents: Sequence[Stage], shard_size: int, seed: int,
                progress: bool = True, engine: str = "local",
                address: str = "") -> tuple[Stage, list[StepLabels | None], dict[str, Any]]:
    """``source_name``'s labels of ``trajectories``, labelled in shards under ``name/shards`` so an
    interrupted job resumes from its finished shards; the labelled ones are also exported as
    ``name/labels.jsonl`` (stepwise supervision). ``engine="ray"`` labels the shards on Ray actors
    (at ``address``, else a local cluster), each with a replica of ``policy``; the labels are the
    same. Returns ``(stage, labels, cost summary)``."""
    from selfprm.labels import get_label_source
    from selfprm.labels.sharded import run_label_source_sharded

    stage = run.stage(name, {"source": source_name, "kwargs": kwargs, "shard_size": shard_size, "seed": seed},
                      parents)
    done = stage.done()
    if not done:
        stage.begin()
    src = get_label_source(source_name, **kwargs)
    if engine != "local" and not done:
        from selfprm.engines import Given
        from selfprm.studies.label import label_on_engine

        label_on_engine(source_name, kwargs, list(trajectories), None if policy is None else Given(policy),
                        stage.file("shards"), shard_size, seed, engine=engine, address=address, progress=progress)
    # finished shards are read back, not relabelled
    res = run_label_source_sharded(src, trajectories, policy, stage.file("shards"), shard_size=shard_size,
                                   seed=seed, progress=progress)
    if done:
        return stage, res.labels, stage.result()
    kept = [(t, l) for t, l in zip(trajectories, res.labels) if l is not None]
    # the export holds only labelled trajectories, so it stays valid stepwise supervision
    write_trajectories(stage.file("labels.jsonl"), [t for t, _ in kept], [l for _, l in kept])
    meta = {"seconds": res.seconds, "policy_tokens": res.policy_tokens, "rollouts": res.rollouts,
            "labeled_steps": res.labeled_steps, "dropped": sum(l is None for l in res.labels),
            "prm_loss": res.prm_loss, "token_passes": res.token_passes}
    return stage, res.labels, stage.finish(meta)


def prm_stage(run: RunDir, name: str, parents: Sequence[Stage], backbone_dir, tokenizer,
              pairs: Sequence[tuple[Trajectory, StepLabels | None]] | Callable[[], Sequence[tuple[Trajectory, StepLabels | None]]],
              train_config, prm_config, init_seed: int, data_config: Any = None, progress: bool = True,
              desc: str = "PRM"):
    """A PRM (head on the causal LM saved at ``backbone_dir``, with its LM head so the surprise
    features can read token log-probs) trained on ``pairs`` (or on what ``pairs()`` returns, called
    only when the PRM must be trained); saved as ``name/model`` with its training history.
    ``data_config`` describes how ``pairs`` are made where no parent stage does; it joins the key.
    Returns ``(stage, prm, history dict)``."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfprm.prm.model import ProcessRewardModel
    from selfprm.prm.train import train_prm

    stage = run.stage(name, {"train": train_config, "prm": prm_config, "init_seed": init_seed, "data": data_config},
                      parents)
    if stage.done():
        return stage, ProcessRewardModel.from_pretrained(stage.file("model")), stage.read_json("history.json")
    stage.begin()
    data = list(pairs() if callable(pairs) else pairs)
    # the head's initialisation and its dropout masks come from init_seed, not the global stream
    with torch.random.fork_rng():
        torch.manual_seed(init_seed)
        prm = ProcessRewardModel(AutoModelForCausalLM.from_pretrained(backbone_dir), tokenizer, prm_config)
        hist = asdict(train_prm(prm, data, train_config, progress=progress, desc=desc))
    with stage.atomic_dir("model") as tmp:
        prm.save_pretrained(tmp)
    stage.write_json("history.json", hist)
    stage.finish({"examples": hist["examples"], "seconds": hist["seconds"], "token_passes": hist["token_passes"]})
    return stage, prm, hist

