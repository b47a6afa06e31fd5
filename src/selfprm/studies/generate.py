"""``selfprm generate --policy SPEC --problems FILE --n N --out traj.jsonl``: sample solutions to label.

The first step from a user's model and problems to a PRM. Each problem gets ``n`` step-by-step
solutions from the policy (``hf:PATH``, ``vllm:PATH``, ``openai:URL#model``; see
:func:`selfprm.policies.spec.load_policy`), and the domain checks each one's final answer. What it
writes, all plain files::

    traj.jsonl           one solution a line, Hugging Face stepwise layout: ``prompt``, ``completions``
                         (one string per step), ``outcome``, ``final_answer``, ``problem_id``, ``answer``,
                         ``tokens_generated``, ``truncated`` — no step labels yet (``selfprm label`` adds
                         them; on ``arith`` the domain's exact oracle is written as ``labels``)
    traj.meta.json       counts (problems, solutions, correct, truncated), policy tokens, token passes,
                         seconds, and the config
    traj.jsonl.shards/   ``shard-00000.jsonl`` + ``shard-00000.json`` per ``shard_size`` problems

A shard is written atomically and only then marked finished (its ``.json``), so an interrupted run
resumes without sampling a finished problem again; the policy is reseeded per shard, so a redone
shard gets the solutions an unbroken run would have. The shards folder belongs to one config and
one problems file (a :class:`~selfprm.rundir.Stage` keyed by both): change either and it starts over.

Problems: ``--domain math`` reads GSM8K / MATH500 / any JSON(L) with a problem and an answer
(:func:`selfprm.domains.math.load_math_problems`); ``--domain arith`` reads JSONL records
``{"id": ..., "problem": "Q:7 +5 *3 -4"}`` (or ``prompt``), the answer worked out from the chain.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from selfprm.engines import check_engine
from selfprm.types import Problem, RecordError

# how a run executes, not what it computes: left out of the shards' key, so a run resumes on any engine
ENGINE_FIELDS = ("engine", "address", "workers")

DOMAIN_NAMES = ("math", "arith")  # the domains a user brings problems for (selfprm.domains.DOMAINS has more)
OUT_REQUIRED = True
OUT_HELP = "the solutions file (JSONL) to write; shards go to OUT.shards/, counts to <OUT stem>.meta.json"
WRITES_OWN_CONFIG = True  # --out is a file: the config goes into <OUT stem>.meta.json
PRESETS: dict = {}  # nothing to preset: the policy and the problems are the user's


@dataclass
class GenerateConfig:
    """Sample ``n`` step-by-step solutions per problem.

    Parameters:
        policy: the policy: ``hf:PATH`` (a local transformers causal LM), ``vllm:PATH`` or ``openai:URL#model``.
        problems: the problems file: GSM8K / MATH500 / JSON(L) with problem and answer (``math``); ``{"id", "problem"}`` JSONL (``arith``).
        n: solutions sampled per problem.
        domain: ``math`` (answers checked by math-verify) or ``arith`` (the synthetic domain, with a step oracle).
        template: the domain's prompt template (``math`` only; empty: the domain's default).
        temperature: sampling temperature.
        max_new_tokens: most tokens per solution.
        seed: sampling seed (each shard reseeds from it, so a redone shard repeats itself).
        limit: read only the first LIMIT problems (none: all).
        shard_size: problems per shard (the unit a resumed run redoes at most, and the unit of work an engine hands out).
        engine: where the shards run: ``local`` (this process) or ``ray`` (actors each holding a policy replica); both write the same shards, and a run resumes on either.
        address: the Ray cluster to join (``--engine ray``; empty: start a local one with ``--workers`` CPUs).
        workers: Ray actors, one CPU and one policy replica each (0: one per CPU of the cluster).
    """

    policy: str
    problems: str
    n: int
    domain: str = "math"
    template: str | None = None
    temperature: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    limit: int | None = None
    shard_size: int = 64
    engine: str = "local"
    address: str = ""
    workers: int = 0

    def __post_init__(self) -> None:
        # checked before anything is written (the CLI turns these into one line)
        if self.domain not in DOMAIN_NAMES:
            raise ValueError(f"--domain {self.domain!r} is not one of {', '.join(DOMAIN_NAMES)}")
        if self.n < 1:
            raise ValueError(f"--n must be at least 1, got {self.n}")
        if self.shard_size < 1:
            raise ValueError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {self.limit}")
        if self.template and self.domain != "math":
            raise ValueError(f"--template is read by the math domain only, not {self.domain!r}")
        if self.template:
            make_domain(self.domain, self.template)  # a template that is neither a preset nor holds {problem}
        if not Path(self.problems).is_file():
            raise ValueError(f"--problems {self.problems}: no such file")
        check_policy_spec(self.policy)
        check_engine(self.engine, self.address, self.workers)


Config = GenerateConfig


# ----------------------------------------------------------------------------- shared by the user-path commands


def check_policy_spec(spec: str) -> None:
    """The spec parses (:func:`~selfprm.policies.spec.parse_policy_spec`) and a local model folder
    exists: checked before anything is written or loaded, so a typo costs no model load."""
    from selfprm.policies.spec import parse_policy_spec

    try:
        scheme, target, _ = parse_policy_spec(spec)
    except ValueError as e:
        raise ValueError(f"--policy: {e}") from None
    if scheme in ("hf", "vllm") and not Path(target).expanduser().exists():
        raise ValueError(f"--policy {spec!r}: no such model folder {target}")


def user_error(command: str, e: BaseException) -> SystemExit:
    """A bad input as one line naming the command and what is wrong (file, line, field), not a traceback."""
    return SystemExit(f"selfprm {command}: {e}")


def make_domain(name: str, template: str | None = None):
    """``(domain, problem loader)``; a loader is ``(path, limit) -> list[Problem]``."""
    if name == "arith":
        from selfprm.domains.arith import ArithDomain

        domain = ArithDomain()
        return domain, lambda path, limit=None: load_arith_problems(path, domain, limit)
    if name == "math":
        from selfprm.domains.math import MathDomain, MathDomainConfig, load_math_problems

        domain = MathDomain(MathDomainConfig(template=template)) if template else MathDomain()
        return domain, load_math_problems
    raise ValueError(f"unknown domain {name!r}; choose from {', '.join(DOMAIN_NAMES)}")


def load_policy(command: str, spec: str, domain, *, temperature: float, max_new_tokens: int, seed: int):
    """The policy a spec names (:func:`selfprm.policies.spec.load_policy`, imported only when one is
    needed); a spec it cannot load is a one-line error naming the option."""
    from selfprm.policies.spec import load_policy as load

    try:
        return load(spec, domain, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    except (ValueError, OSError, KeyError) as e:
        raise user_error(command, ValueError(f"--policy {spec!r}: {e}")) from None


@dataclass(frozen=True)
class PolicySpec:
    """A policy as a spec and its settings, loaded where it is called: the Ray engine ships this to
    each actor, which loads its own replica (once) rather than receiving a pickled model."""

    spec: str
    domain: str
    template: str | None
    temperature: float
    max_new_tokens: int
    seed: int

    def __call__(self):
        from selfprm.policies.spec import load_policy as load

        domain, _ = make_domain(self.domain, self.template)
        return load(self.spec, domain, temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed)


def meta_path(out: str | Path, suffix: str) -> Path:
    """``traj.jsonl`` -> ``traj.<suffix>.json`` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{suffix}.json")


def shards_stage(out: str | Path, name: str, key_config: Any):
    """The stage holding ``<out>.shards/``: kept across reruns of the same key, wiped for another."""
    from selfprm.rundir import Stage, stage_key

    out = Path(out)
    return Stage(name, out.with_name(out.name + ".shards"), stage_key(name, key_config), key_config)


def finished_shard(stage, data: Path, mark: Path) -> dict | None:
    """A shard's info when it is finished under this stage's key (read only: nothing is claimed)."""
    from selfprm.rundir import _KEY_FILE  # the stage's own key mark, read without claiming the folder

    key_file = stage.path / _KEY_FILE
    if not (key_file.exists() and key_file.read_text() == stage.key and data.exists() and mark.exists()):
        return None
    return json.loads(mark.read_text())


@contextlib.contextmanager
def drop_if_empty(stage) -> Iterator[None]:
    """On an error, remove the shards folder when no shard in it is finished, so a run that failed
    at once (a policy that cannot sample, a source that rejects the input) leaves nothing behind;
    finished shards stay for the rerun."""
    try:
        yield
    except BaseException:
        if stage.path.is_dir() and not any(stage.path.glob("shard-*.json")):
            shutil.rmtree(stage.path, ignore_errors=True)
        raise


def file_digest(path: str | Path) -> str:
    """sha256 of a file, so a changed input never resumes from shards made of the old one."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- arith problems


def load_arith_problems(path: str | Path, domain, limit: int | None = None) -> list[Problem]:
    """``{"id"?, "problem" | "prompt": "Q:7 +5 *3 -4"}`` a line; the answer and the chain the oracle
    needs are worked out from the prompt. Errors name the file, the line and the field."""
    from selfprm.types import iter_jsonl

    out: list[Problem] = []
    seen: dict[str, int] = {}
    for line, rec in iter_jsonl(path):
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(rec, dict):
            raise RecordError(path, line, None, f"expected a JSON object, got {type(rec).__name__}")
        key = "problem" if "problem" in rec else "prompt"
        text = rec.get(key)
        if not isinstance(text, str):
            raise RecordError(path, line, "problem", "missing" if text is None else f"expected str, got {type(text).__name__}")
        pid = str(rec.get("id", f"line-{line}"))
        if pid in seen:
            raise RecordError(path, line, "id", f"{pid!r} already used on line {seen[pid]}")
        seen[pid] = line
        try:
            start, chain = parse_arith_prompt(text)
        except ValueError as e:
            raise RecordError(path, line, key, str(e)) from None
        out.append(domain.make_problem(pid, start, chain))
    return out


def parse_arith_prompt(text: str) -> tuple[int, list[tuple[str, int]]]:
    """``"Q:7 +5 *3"`` -> ``(7, [("+", 5), ("*", 3)])``."""
    if not text.startswith("Q:"):
        raise ValueError(f"an arith problem starts with 'Q:', got {text[:20]!r}")
    parts = text[2:].split()
    if not parts or not parts[0].isdigit():
        raise ValueError(f"no start value in {text!r}")
    chain = []
    for p in parts[1:]:
        if len(p) < 2 or p[0] not in "+-*" or not p[1:].isdigit():
            raise ValueError(f"bad operation {p!r} in {text!r}")
        chain.append((p[0], int(p[1:])))
    if not chain:
        raise ValueError(f"no operations in {text!r}")
    return int(parts[0]), chain


# ----------------------------------------------------------------------------- the command


def shard_seed(seed: int, i: int) -> int:
    # as labels.sharded does: shard i of a run always starts from the same stream
    return seed * 1_000_003 + i


class EmptyPolicyError(RuntimeError):
    """A policy that generated no tokens at all: a broken setup, not data."""


@dataclass
class GenerateShards:
    """Sampling shards as a :class:`~selfprm.engines.base.ShardJob`: shard ``i`` holds the solutions
    of its problems, sampled after reseeding the policy to :func:`shard_seed`; ``shard-i.jsonl`` is
    written atomically, then its mark ``shard-i.json`` (the counts)."""

    policy: Any  # () -> Policy: loaded once per worker
    n: int
    seed: int
    shard_dir: str
    policy_name: str = ""

    def setup(self):
        return self.policy()

    def run(self, policy, i: int, chunk) -> dict:
        from selfprm.policies.base import reseed
        from selfprm.types import atomic_write_text, write_trajectories

        data, mark = Path(self.shard_dir) / f"shard-{i:05d}.jsonl", Path(self.shard_dir) / f"shard-{i:05d}.json"
        if data.exists() and mark.exists():  # handed out again after its mark was written: read back
            info = json.loads(mark.read_text())
            if info.get("problems") == len(chunk):
                return info
        reseed(policy, shard_seed(self.seed, i))
        t0, passes0 = time.perf_counter(), getattr(policy, "token_passes", 0)
        groups = policy.sample(chunk, self.n)
        trajs = [t for group in groups for t in group]
        info = {"problems": len(chunk), "solutions": len(trajs), "correct": sum(bool(t.outcome) for t in trajs),
                "truncated": sum(t.truncated for t in trajs), "steps": sum(len(t.steps) for t in trajs),
                "policy_tokens": sum(t.tokens_generated for t in trajs),
                "token_passes": getattr(policy, "token_passes", 0) - passes0,
                "seconds": time.perf_counter() - t0}
        if trajs and info["policy_tokens"] == 0:
            raise EmptyPolicyError(f"the policy generated no tokens for shard {i} ({self.policy_name}); "
                                   "a prompt that fills the model's context leaves no room: check its context length, "
                                   "stop strings and max_new_tokens")
        write_trajectories(data, trajs)
        atomic_write_text(mark, json.dumps(info))  # the shard counts as finished only once this exists
        return info


def run(config: GenerateConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Sample, shard by shard, merge into ``out``; returns the counts written to the meta file."""
    from selfprm.engines import Given, run_shards
    from selfprm.rundir import config_blob
    from selfprm.types import atomic_write_text, write_json

    if out is None:
        raise user_error("generate", ValueError("--out is required (the solutions file to write)"))
    out = Path(out)
    if out.is_dir():  # found now, not after the sampling when the merged file cannot be written
        raise user_error("generate", ValueError(f"--out {out} is a folder; give the JSONL file to write"))
    domain, load = make_domain(config.domain, config.template)
    try:
        problems = load(config.problems, limit=config.limit)
    except (RecordError, OSError, ValueError) as e:
        raise user_error("generate", e) from None
    if not problems:
        raise user_error("generate", ValueError(f"{config.problems}: no problems"))
    blob = config_blob(config)
    # what the shards depend on: the sampling config and the problems (not where the merge goes,
    # nor the engine that runs them)
    key = {k: v for k, v in blob.items() if k not in ENGINE_FIELDS}
    stage = shards_stage(out, "generate", {**key, "problems": file_digest(config.problems)})
    chunks = [problems[s:s + config.shard_size] for s in range(0, len(problems), config.shard_size)]
    shard = [(stage.file(f"shard-{i:05d}.jsonl"), stage.file(f"shard-{i:05d}.json")) for i in range(len(chunks))]
    finished = {i: info for i, info in ((i, finished_shard(stage, data, mark)) for i, (data, mark) in enumerate(shard))
                if info is not None and info.get("problems") == len(chunks[i])}
    pending = {i: chunk for i, chunk in enumerate(chunks) if i not in finished}
    spec = PolicySpec(config.policy, config.domain, config.template, config.temperature, config.max_new_tokens,
                      config.seed)
    factory: Any = spec
    if pending and config.engine == "local":
        # loaded (and a bad spec found) before anything is written, and only when needed; Ray's
        # actors load their own replicas from the spec
        factory = Given(load_policy("generate", config.policy, domain, temperature=config.temperature,
                                    max_new_tokens=config.max_new_tokens, seed=config.seed))
    stage.begin()  # keeps this key's shards, wipes another key's
    job = GenerateShards(factory, config.n, config.seed, str(stage.path), config.policy)
    try:
        with drop_if_empty(stage):
            new = run_shards(job, pending, engine=config.engine, address=config.address, workers=config.workers,
                             progress=progress, desc="generate")
    except EmptyPolicyError as e:
        raise SystemExit(f"selfprm generate: {e}") from None
    infos = [finished[i] if i in finished else new[i] for i in range(len(chunks))]
    resumed = len(finished)
    # the merged file is the shards' lines in order: nothing is parsed or rewritten on the way
    atomic_write_text(out, "".join(stage.file(f"shard-{i:05d}.jsonl").read_text(encoding="utf-8")
                                   for i in range(len(chunks))))
    totals = {k: sum(info[k] for info in infos) for k in
              ("problems", "solutions", "correct", "truncated", "steps", "policy_tokens", "token_passes", "seconds")}
    summary = {"out": str(out), **totals, "accuracy": totals["correct"] / max(1, totals["solutions"]),
               "shards": len(chunks), "shards_resumed": resumed, "domain": config.domain, "config": blob}
    write_json(meta_path(out, "meta"), summary)
    stage.finish({k: summary[k] for k in ("problems", "solutions", "correct")})
    print(f"generate: {totals['solutions']} solutions of {totals['problems']} problems -> {out} "
          f"({summary['accuracy']:.1%} correct, {totals['policy_tokens']} policy tokens"
          + (f", {resumed} of {len(chunks)} shards resumed" if resumed else "") + ")", flush=True)
    return summary
