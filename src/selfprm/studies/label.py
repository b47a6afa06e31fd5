"""``selfprm label --source NAME [--policy SPEC] --in traj.jsonl --out labeled.jsonl``: step labels.

Any registered label source (:data:`selfprm.labels.LABEL_SOURCES`: ``outcome``, ``mc``, ``omega``,
``tree``, ...) labels every step of the solutions ``selfprm generate`` wrote (or any stepwise JSONL
with ``prompt``, ``completions`` and, for the sources that read it, ``outcome``). What it writes::

    labeled.jsonl            the labelled solutions, Hugging Face stepwise layout (``prompt``,
                             ``completions``, ``labels``: booleans, or numbers in [0, 1] for soft
                             sources) plus ``label_source`` and the label's cost; solutions a source
                             drops (SPR drops truncated ones) are left out, so every line has labels
    labeled.cost.json        the ledger: policy tokens, token passes, seconds, rollouts, labelled steps,
                             the PRM loss the labels are meant for, and the config
    labeled.jsonl.shards/    the shards of :func:`~selfprm.labels.sharded.run_label_source_sharded`

Labelling runs in shards of ``shard_size`` solutions, each written atomically; a rerun (after a
kill, or of a finished job) relabels nothing finished. The shards belong to one source, its
settings, the input file and the policy (a :class:`~selfprm.rundir.Stage` keyed by all of them).

Sources that read only what a solution carries (``outcome``, ``spr``, ``oracle``, ``human``,
``perturbation``) run without ``--policy``; the others roll the policy out from step prefixes and
need it. The policy's domain and sampling settings default to those of the ``generate`` run that
wrote the input (``<in stem>.meta.json``), so rollouts sample as the solutions were sampled.
An unknown source, bad ``--source-kwargs`` or a malformed input line is one error naming it,
raised before anything is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfprm.engines import check_engine
from selfprm.studies.generate import (
    DOMAIN_NAMES,
    PolicySpec,
    check_policy_spec,
    drop_if_empty,
    file_digest,
    load_policy,
    make_domain,
    meta_path,
    shards_stage,
    user_error,
)
from selfprm.types import RecordError, StepLabels, Trajectory

OUT_REQUIRED = True
OUT_HELP = "the labelled solutions file (JSONL) to write; shards go to OUT.shards/, costs to <OUT stem>.cost.json"
WRITES_OWN_CONFIG = True  # --out is a file: the config goes into <OUT stem>.cost.json
PRESETS: dict = {}

# what the policy-free sources read from each record: checked up front, so a missing field is
# reported with its file and line rather than as a problem id from deep inside the source
NEEDS_FIELD = {"outcome": "outcome", "spr": "outcome", "oracle": "oracle_labels", "human": "oracle_labels"}


@dataclass
class LabelConfig:
    """Label every step of sampled solutions with a registered label source.

    Parameters:
        source: the label source (``selfprm.labels.LABEL_SOURCES``: outcome, spr, mc, omega, tree, mcts, implicit, consensus, ...).
        input: the solutions to label (stepwise JSONL, e.g. from ``selfprm generate``); ``--in`` works too.
        policy: the policy the source rolls out (``hf:PATH``, ``vllm:PATH``, ``openai:URL#model``); not needed by outcome, spr, oracle, human, perturbation.
        source_kwargs: the source's settings as JSON, e.g. ``{"n_rollouts": 4}`` for mc.
        shard_size: solutions per shard (the unit a resumed run redoes at most).
        seed: the policy is reseeded per shard from this, so a redone shard repeats itself.
        domain: the policy's domain (``math``, ``arith``; none: as the generate run's meta file says, else math).
        template: the math domain's prompt template (none: as the generate run used).
        temperature: rollout sampling temperature (none: as the generate run used, else 1.0).
        max_new_tokens: most tokens per rollout (none: as the generate run used, else 256).
        engine: where the shards run: ``local`` (this process) or ``ray`` (actors each holding a policy replica); both write the same labels, and a run resumes on either.
        address: the Ray cluster to join (``--engine ray``; empty: start a local one with ``--workers`` CPUs).
        workers: Ray actors, one CPU and one policy replica each (0: one per CPU of the cluster).
    """

    source: str
    input: str
    policy: str | None = None
    source_kwargs: dict[str, Any] = field(default_factory=dict)
    shard_size: int = 256
    seed: int = 0
    domain: str | None = None
    template: str | None = None
    temperature: float | None = None
    max_new_tokens: int | None = None
    engine: str = "local"
    address: str = ""
    workers: int = 0

    def __post_init__(self) -> None:
        # every check that needs no model runs here, before anything is written
        from selfprm.labels import LABEL_SOURCES

        if self.source not in LABEL_SOURCES:
            raise ValueError(f"--source {self.source!r} is not a label source; available: {', '.join(LABEL_SOURCES.names())}")
        if not isinstance(self.source_kwargs, dict):
            raise ValueError(f"--source-kwargs must be a JSON object, got {json.dumps(self.source_kwargs)}")
        try:
            LABEL_SOURCES.get(self.source)(**self.source_kwargs)
        except TypeError as e:  # an unknown setting
            raise ValueError(f"--source-kwargs {json.dumps(self.source_kwargs)} for source {self.source!r}: {e}") from None
        # (whether the source needs --policy is checked by run: the CLI builds the config from the
        # required fields first, so a check across source and policy here would see no policy yet)
        if self.policy:
            check_policy_spec(self.policy)
        if not Path(self.input).is_file():
            raise ValueError(f"--in {self.input}: no such file")
        if self.shard_size < 1:
            raise ValueError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.domain is not None and self.domain not in DOMAIN_NAMES:
            raise ValueError(f"--domain {self.domain!r} is not one of {', '.join(DOMAIN_NAMES)}")
        check_engine(self.engine, self.address, self.workers)


Config = LabelConfig


def needs_policy(source) -> bool:
    """False for the sources that label from what each solution already carries."""
    from selfprm.labels.base import PerTrajectoryLabels
    from selfprm.labels.perturbation import PerturbationLabels

    return not isinstance(source, (PerTrajectoryLabels, PerturbationLabels))


def read_solutions(path: str | Path, need: str | None = None) -> list[Trajectory]:
    """The trajectories of a stepwise JSONL file; a record without ``need`` is an error naming its line."""
    from selfprm.types import iter_jsonl, record_to_trajectory

    out = []
    for line, rec in iter_jsonl(path):
        traj, _ = record_to_trajectory(rec, path, line)
        if need is not None and getattr(traj, need) is None:
            raise RecordError(path, line, need, "missing")
        out.append(traj)
    return out


def generate_settings(input_path: str | Path) -> dict[str, Any]:
    """The config of the ``selfprm generate`` run that wrote ``input_path`` (empty when there is none)."""
    meta = meta_path(input_path, "meta")
    if not meta.is_file():
        return {}
    try:
        return dict(json.loads(meta.read_text()).get("config") or {})
    except (json.JSONDecodeError, AttributeError):
        return {}  # not ours: fall back to the defaults


def policy_settings(config: LabelConfig) -> dict[str, Any]:
    """Domain, template and sampling of the rollouts: the flags, else the generate run's, else defaults."""
    gen = generate_settings(config.input)

    def pick(name: str, default: Any) -> Any:
        if getattr(config, name) is not None:
            return getattr(config, name)
        return gen[name] if gen.get(name) is not None else default

    return {"domain": pick("domain", "math"), "template": pick("template", None),
            "temperature": pick("temperature", 1.0), "max_new_tokens": pick("max_new_tokens", 256)}


def label_on_engine(source: str, source_kwargs: dict[str, Any], trajectories: list[Trajectory], policy,
                    shard_dir: str | Path, shard_size: int, seed: int, *, engine: str = "ray", address: str = "",
                    workers: int = 0, progress: bool = True) -> dict[int, dict]:
    """Label the unfinished shards of ``shard_dir`` on ``engine``, in the layout of
    :func:`~selfprm.labels.sharded.run_label_source_sharded` (which then reads them back);
    ``policy`` is a factory (``PolicySpec``, ``engines.Given``) or None. Returns index -> info of
    the shards labelled now."""
    from selfprm.engines import run_shards
    from selfprm.engines.jobs import LabelShards, pending_label_shards

    job = LabelShards(source, source_kwargs, str(shard_dir), seed, policy)
    return run_shards(job, pending_label_shards(trajectories, shard_dir, shard_size), engine=engine,
                      address=address, workers=workers, progress=progress, desc=f"label {source}")


def run(config: LabelConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Label in resumable shards, write the labelled file and its cost ledger; returns the ledger."""
    from selfprm.labels import get_label_source
    from selfprm.labels.sharded import run_label_source_sharded
    from selfprm.rundir import config_blob
    from selfprm.studies.generate import finished_shard
    from selfprm.types import write_json, write_trajectories

    if out is None:
        raise user_error("label", ValueError("--out is required (the labelled file to write)"))
    out = Path(out)
    if out.is_dir():  # found now, not after the labelling when the file cannot be written
        raise user_error("label", ValueError(f"--out {out} is a folder; give the JSONL file to write"))
    try:
        trajs = read_solutions(config.input, NEEDS_FIELD.get(config.source))
    except (RecordError, OSError) as e:
        raise user_error("label", e) from None
    if not trajs:
        raise user_error("label", ValueError(f"{config.input}: no solutions to label"))
    source = get_label_source(config.source, **config.source_kwargs)
    uses_policy = needs_policy(source)
    if uses_policy and not config.policy:
        raise user_error("label", ValueError(f"--source {config.source} rolls the policy out from step prefixes: "
                                             "give --policy SPEC"))
    settings = policy_settings(config) if uses_policy else {}
    blob = config_blob(config)
    key = {"source": config.source, "kwargs": config.source_kwargs, "shard_size": config.shard_size,
           "seed": config.seed, "input": file_digest(config.input),
           **({"policy": config.policy, **settings} if uses_policy else {})}
    stage = shards_stage(out, "label", key)
    n_shards = math.ceil(len(trajs) / config.shard_size)
    finished = sum(finished_shard(stage, stage.file(f"shard-{i:05d}.jsonl"), stage.file(f"shard-{i:05d}.json")) is not None
                   for i in range(n_shards))
    policy = None
    if uses_policy and finished < n_shards and config.engine == "local":
        # loaded before anything is written, and only when needed (Ray's actors load their own)
        domain, _ = make_domain(settings["domain"], settings["template"])
        policy = load_policy("label", config.policy, domain, temperature=settings["temperature"],
                             max_new_tokens=settings["max_new_tokens"], seed=config.seed)
    stage.begin()
    try:
        with drop_if_empty(stage):
            if config.engine != "local" and finished < n_shards:
                spec = PolicySpec(config.policy, settings["domain"], settings["template"], settings["temperature"],
                                  settings["max_new_tokens"], config.seed) if uses_policy else None
                label_on_engine(config.source, config.source_kwargs, trajs, spec, stage.path, config.shard_size,
                                config.seed, engine=config.engine, address=config.address, workers=config.workers,
                                progress=progress)
            # in process: labels what is left; after an engine: reads every shard back, labels nothing
            res = run_label_source_sharded(source, trajs, policy, stage.path, shard_size=config.shard_size,
                                           seed=config.seed, progress=progress)
    except ValueError as e:  # a source that rejects the input (a field it needs is missing)
        raise user_error("label", ValueError(f"--source {config.source} on {config.input}: {e}")) from None
    kept: list[tuple[Trajectory, StepLabels]] = [(t, l) for t, l in zip(trajs, res.labels) if l is not None]
    # only labelled solutions: every line of the file is then valid stepwise supervision
    write_trajectories(out, [t for t, _ in kept], [l for _, l in kept])
    cost = {
        "out": str(out), "source": config.source, "source_kwargs": config.source_kwargs, "prm_loss": res.prm_loss,
        "solutions": len(trajs), "labeled": len(kept), "dropped": len(trajs) - len(kept),
        "labeled_steps": res.labeled_steps, "policy_tokens": res.policy_tokens,
        "policy_tokens_per_step_label": res.tokens_per_step_label, "rollouts": res.rollouts,
        "token_passes": res.token_passes, "policy_passes": res.policy_passes, "seconds": res.seconds,
        "shards": n_shards, "shards_resumed": finished, "policy_settings": settings, "config": blob,
    }
    write_json(meta_path(out, "cost"), cost)
    stage.finish({k: cost[k] for k in ("labeled", "dropped", "policy_tokens")})
    print(f"label {config.source}: {len(kept)} of {len(trajs)} solutions labelled -> {out} "
          f"({res.labeled_steps} steps, {res.policy_tokens} policy tokens, {res.seconds:.1f} s"
          + (f", {finished} of {n_shards} shards resumed" if finished else "") + ")", flush=True)
    return cost
