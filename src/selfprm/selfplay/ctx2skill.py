"""Ctx2Skill self-play: Challenger, Reasoner, Judge, Proposer and Generator evolve skill files.

Si et al., 2026, "From Context to Skills: Can Language Models Learn from Context Skillfully?"
(arXiv 2604.27660; code github.com/S1s-Z/Ctx2Skill). Each round ``t``:

1. the Challenger, reading the context and its skills ``C_t``, writes tasks with rubrics;
2. the Reasoner answers each task reading only its skills ``S_t`` (no weights change);
3. the Judge gives a binary verdict per task, partitioning them into solved ``P_t`` and failed ``F_t``;
4. routing: ``F_t`` goes to the Reasoner's Proposer and Generator, ``S_{t+1} = Gen(S_t, Prop(F_t))``,
   and ``P_t`` to the Challenger's, ``C_{t+1} = Gen(C_t, Prop(P_t))`` (the Challenger learns what
   the Reasoner already solves, so its tasks move to the Reasoner's weaknesses and grow longer);
5. Cross-time Replay (:mod:`selfprm.selfplay.replay`) replays every ``S_j, j <= t+1`` on the easy
   (solved) and hard (failed) probes kept so far and selects the balanced one.

All roles talk through the OpenAI-compatible chat API (:class:`~selfprm.policies.openai_chat.ChatClient`).
With ``base_url`` unset, the embedded default runs: a tiny Reasoner trained to use in-context
``arith`` facts (:mod:`selfprm.selfplay.reasoner_lm`, cached in the run directory) and rule-based
Challenger, Judge, Proposer and Generator (:mod:`selfprm.selfplay.roles`), served by a child
process on loopback (:func:`~selfprm.selfplay.offline_server.serve_offline`).

Measured, with the exact ``arith`` verifier (never shown to the loop): the Reasoner's accuracy on
held-out tasks with the replay-selected skills after every round, with no skills, and with as many
randomly chosen true facts; the Judge's agreement with the verifier on every judged task; and how
many rounds the replay guard picked an earlier skill set than the latest; offline, also what a
single entry does (:func:`~selfprm.selfplay.reasoner_lm.entry_effect`: no, true, wrong entry for a
weak fact), so a flat curve can be told apart from a Reasoner that ignores its skills.

Status of the embedded default. Read whole, a full skill file hid every good edit from the tiny
Reasoner: it uses a true weak-fact entry alone (0.60 vs 0.00 without) but not among the file's
other entries (0.06), and self-play stayed flat (seed 0, 6 rounds x 16 tasks: evolved 0.72 vs 0.75
without skills and 0.71 with random ones; see :mod:`selfprm.selfplay.reasoner_lm`). With the
offline Reasoner reading only the entries its task names (``offline_retrieval``) and the file's
capacity at :data:`RETRIEVAL_CAPACITY`, the same Reasoner and seed give evolved 0.82 against 0.60
without skills and 0.68 with as many random true facts, rising every round (0.60, 0.67, 0.75, 0.76,
0.79, 0.82); the evolved file fixes 0.55 of the tasks the Reasoner fails without skills and breaks
none of those it solves (random facts: 0.20 and none). Over 3 seeds (``selfprm selfeval``, each
seed its own Reasoner): evolved 0.797 ± 0.021, none 0.630 ± 0.052, random 0.687 ± 0.040.

Deviations from the paper and its code (whose source was not reachable from here; the method
follows the paper's abstract, README and summaries): the context is the ``arith`` operation table,
not a CL-bench document; offline, four roles are rule-based players, not LMs, and the Reasoner
retrieves the entries its task names instead of reading the whole file (``offline_retrieval``; a
served Reasoner gets the whole file, as in the paper); tasks have one rubric
(the final answer) rather than several; past a capacity (the tiny Reasoner's window) the Generator
keeps the entries proposed by the most failures so far (``retention="supported"``, a tally the loop
keeps and shows the Generator; the paper's Generator consolidates edits by an LM's judgement,
``retention="oldest"`` drops the oldest instead); the replay score weighs easy and hard pass rates equally; the loop
keeps evolving from the latest set while the replay-selected one is what is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from selfprm.domains.arith import ArithDomain, apply_op
from selfprm.policies.openai_chat import ChatClient, ChatClientConfig
from selfprm.rundir import RunDir
from selfprm.selfplay import roles
from selfprm.selfplay.reasoner_lm import ReasonerLMConfig, all_facts, entry_effect, fact_text, weak_facts
from selfprm.selfplay.replay import ReplayScore, pass_rate, select_balanced
from selfprm.selfplay.skills import SkillSet, parse_edits, parse_skills
from selfprm.studies.stages import log, seed_streams
from selfprm.types import Problem


# Reasoner skill-file capacity when the offline Reasoner retrieves: about half of the 140-fact
# table, so the Generator's retention still has to choose (measured, seed 0, 6 rounds x 16 tasks:
# capacity 8 held the file at 8 entries from round 2 and evolved 0.67 vs none 0.60; 64 grew it to
# 41 entries and 0.82)
RETRIEVAL_CAPACITY = 64


@dataclass
class Ctx2SkillConfig:
    """Ctx2Skill self-play (Si et al., 2026) over ``arith``.

    Parameters:
        reasoner: the offline tiny Reasoner (its world, shape and training); its ``domain`` is the tasks'.
        base_url: an OpenAI-compatible server for every role; None: start the offline one.
        reasoner_model: ``model`` name of the Reasoner.
        challenger_model: ``model`` name of the Challenger.
        judge_model: ``model`` name of the Judge.
        proposer_model: ``model`` name of the Proposer (both sides).
        generator_model: ``model`` name of the Generator (both sides).
        rounds: self-play rounds.
        tasks_per_round: tasks the Challenger writes per round.
        reasoner_capacity: most entries in the Reasoner's skill file; None: :data:`RETRIEVAL_CAPACITY`
            when the offline Reasoner retrieves (its window then holds only the entries a task names),
            else the tiny Reasoner's ``max_skills`` (the whole file must fit its window).
        challenger_capacity: most entries in the Challenger's skill file.
        probes_per_round: easy and hard probes kept per round (each) for the replay.
        retention: past the Reasoner's capacity, drop the ``"oldest"`` entries or the least ``"supported"``
            (fewest failures that proposed them so far; the loop keeps the tally and shows it to the Generator).
        n_test: held-out tasks for the accuracy measurements.
        probe_problems: offline only: problems drawn for :func:`~selfprm.selfplay.reasoner_lm.entry_effect`
            (those using a weak fact are probed with no, a true, a wrong entry); 0: no probe.
        judge_noise: offline Judge's chance of flipping a verdict.
        offline_retrieval: offline only: the tiny Reasoner reads the entries its task names, not the
            whole file (:func:`~selfprm.selfplay.roles.relevant_entries`; a listed deviation, see above).
        reasoner_max_tokens: most tokens of a Reasoner reply.
        seed: the held-out tasks, the random skills, the Challenger's draws and the Judge's noise.
    """

    reasoner: ReasonerLMConfig = field(default_factory=ReasonerLMConfig)
    base_url: str | None = None
    reasoner_model: str = "reasoner"
    challenger_model: str = "challenger"
    judge_model: str = "judge"
    proposer_model: str = "proposer"
    generator_model: str = "generator"
    rounds: int = 6
    tasks_per_round: int = 16
    reasoner_capacity: int | None = None
    challenger_capacity: int = 64
    probes_per_round: int = 4
    retention: str = "supported"
    n_test: int = 100
    probe_problems: int = 200
    judge_noise: float = 0.1
    offline_retrieval: bool = True
    reasoner_max_tokens: int = 48
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.tasks_per_round < 1 or self.n_test < 1:
            raise ValueError("rounds, tasks_per_round and n_test must be at least 1")
        if not 0.0 <= self.judge_noise <= 1.0:
            raise ValueError(f"judge_noise must lie in [0, 1], got {self.judge_noise}")
        if self.retention not in ("oldest", "supported"):
            raise ValueError(f"retention must be 'oldest' or 'supported', got {self.retention!r}")

    @property
    def capacity(self) -> int:
        """The Reasoner's skill-file capacity (left None, it follows the offline Reasoner's reading:
        see ``reasoner_capacity``; also after a ``replace`` of ``reasoner``)."""
        if self.reasoner_capacity is not None:
            return self.reasoner_capacity
        return RETRIEVAL_CAPACITY if self.offline_retrieval else self.reasoner.max_skills


class SelfPlay:
    """One run's roles over a chat client: each method is one role's turn."""

    def __init__(self, config: Ctx2SkillConfig, client: ChatClient, domain: ArithDomain):
        self.c, self.client, self.domain = config, client, domain
        self.context = roles.context_document(domain, all_facts(domain))
        self._verdicts: dict[tuple[str, str], bool] = {}
        self._answers: dict[tuple[str, str], str] = {}  # held-out replies (greedy, so they repeat)
        self.support: dict[str, int] = {}  # Reasoner entry -> failed cases that proposed it, all rounds

    def challenge(self, skills: SkillSet, round_: int, seed: int) -> list[tuple[Problem, str]]:
        reply = self.client.chat(self.c.challenger_model,
                                 roles.challenger_messages(self.context, skills, self.c.tasks_per_round, seed))
        tasks = []
        for i, line in enumerate(reply.splitlines(), start=1):
            if not line.strip():
                continue
            p, rubric = roles.parse_task(line, self.domain, f"r{round_}-{i}", f"challenger reply (round {round_})", i)
            if rubric is None:
                raise ValueError(f"challenger reply (round {round_}):{i}: the task has no '=> <answer>' rubric")
            tasks.append((p, rubric))
        return tasks

    def answer(self, skills: SkillSet, task: Problem) -> str:
        return self.client.chat(self.c.reasoner_model, roles.reasoner_messages(skills, task),
                                max_tokens=self.c.reasoner_max_tokens)

    def judge(self, task: Problem, rubric: str, response: str) -> bool:
        return roles.parse_verdict(self.client.chat(self.c.judge_model, roles.judge_messages(task, rubric, response)))

    def evolve(self, side: str, skills: SkillSet, cases: list[tuple[Problem, str]], n_tasks: int,
               capacity: int) -> SkillSet:
        """Proposer then Generator of one side; unchanged when it has no cases."""
        if not cases:
            return skills
        proposal = self.client.chat(self.c.proposer_model,
                                    roles.proposer_messages(side, self.context, skills, cases, n_tasks))
        edits = parse_edits(proposal, f"{side} proposer reply")
        if not edits:
            return skills
        support = None
        if side == "reasoner" and self.c.retention == "supported":
            for e in edits:
                if e.op == "ADD":
                    self.support[e.entry] = self.support.get(e.entry, 0) + 1
            support = {e: self.support.get(e, 0) for e in dict.fromkeys([*skills.entries, *(e.entry for e in edits)])}
        reply = self.client.chat(self.c.generator_model,
                                 roles.generator_messages(side, skills, edits, capacity, support))
        new = parse_skills(reply, f"{side} generator reply")
        return SkillSet(new.entries[-capacity:])

    def replay_verdict(self, skills: SkillSet, task: Problem, rubric: str) -> bool:
        """The Judge's verdict on the Reasoner's answer with ``skills`` (memoised: sets are frozen)."""
        key = (skills.render(), task.prompt)
        if key not in self._verdicts:
            self._verdicts[key] = self.judge(task, rubric, self.answer(skills, task))
        return self._verdicts[key]

    def correct(self, skills: SkillSet, problems: list[Problem]) -> list[bool]:
        """Per held-out task, whether the Reasoner's answer with ``skills`` is right (exact verifier)."""
        out = []
        for p in problems:
            key = (skills.render(), p.prompt)
            if key not in self._answers:
                self._answers[key] = self.answer(skills, p)
            _, ans, _ = self.domain.parse_completion(self._answers[key])
            out.append(bool(self.domain.check_answer(p, ans)))
        return out

    def accuracy(self, skills: SkillSet, problems: list[Problem]) -> float:
        """Held-out accuracy by the exact verifier."""
        return float(np.mean(self.correct(skills, problems)))


def random_skills(domain: ArithDomain, n: int, seed: int) -> SkillSet:
    """``n`` true facts of the context drawn at random (the equal-count control)."""
    facts = all_facts(domain)
    rng = np.random.default_rng(seed)
    m = domain.config.modulus
    picks = rng.choice(len(facts), size=min(n, len(facts)), replace=False)
    return SkillSet(tuple(fact_text(facts[i], apply_op(*facts[i], m)) for i in picks))


def fixed_and_broken(base: list[bool], new: list[bool]) -> dict[str, float | None]:
    """What a skill file changes against ``base`` (no skills), task by task: ``fixed``, the share of
    the tasks ``base`` gets wrong that ``new`` gets right; ``broken``, the share of those ``base``
    gets right that ``new`` gets wrong (None where ``base`` has no such task)."""
    wrong = [n for b, n in zip(base, new) if not b]
    right = [n for b, n in zip(base, new) if b]
    return {"fixed": float(np.mean(wrong)) if wrong else None,
            "broken": float(1 - np.mean(right)) if right else None,
            "base_wrong": len(wrong), "base_right": len(right)}


def self_play(sp: SelfPlay, test: list[Problem], seeds: dict[str, int], progress: bool = True) -> dict[str, Any]:
    """The loop of the module docstring; returns the metrics (see :func:`run_ctx2skill`)."""
    c = sp.c
    reasoner, challenger = SkillSet(), SkillSet()
    history = [reasoner]
    easy: list[tuple[Problem, str]] = []
    hard: list[tuple[Problem, str]] = []
    agree, judged, guard_used = 0, 0, 0
    none_ok = sp.correct(SkillSet(), test)
    none_acc = float(np.mean(none_ok))
    curve: list[dict[str, Any]] = [{"round": 0, "evolved": none_acc, "latest": none_acc, "n_skills": 0}]
    selected = reasoner
    for r in range(1, c.rounds + 1):
        tasks = sp.challenge(challenger, r, seeds["challenger"] + r)
        solved, failed = [], []
        for p, rubric in tasks:
            resp = sp.answer(reasoner, p)
            verdict = sp.judge(p, rubric, resp)
            _, ans, _ = sp.domain.parse_completion(resp)
            agree += verdict == sp.domain.check_answer(p, ans)
            judged += 1
            cases, probes = (solved, easy) if verdict else (failed, hard)
            cases.append((p, resp))
            if len(cases) <= c.probes_per_round:  # the round's representatives for the replay
                probes.append((p, rubric))
        # routing: failures teach the Reasoner, successes teach the Challenger
        reasoner = sp.evolve("reasoner", reasoner, failed, len(tasks), c.capacity)
        challenger = sp.evolve("challenger", challenger, solved, len(tasks), c.challenger_capacity)
        history.append(reasoner)
        scores = [ReplayScore(pass_rate([sp.replay_verdict(s, p, rb) for p, rb in easy]),
                              pass_rate([sp.replay_verdict(s, p, rb) for p, rb in hard])) for s in history]
        j = select_balanced(scores)
        guard_used += j != len(history) - 1
        selected = history[j]
        evolved_acc = sp.accuracy(selected, test)
        latest_acc = evolved_acc if j == len(history) - 1 else sp.accuracy(reasoner, test)
        curve.append({"round": r, "evolved": evolved_acc, "latest": latest_acc, "selected": j,
                      "n_skills": len(selected), "solved_rate": len(solved) / max(1, len(tasks)),
                      "task_ops": float(np.mean([len(p.meta["chain"]) for p, _ in tasks])) if tasks else 0.0,
                      "replay": [[s.easy, s.hard] for s in scores]})
        if progress:
            log(f"ctx2skill round {r}: solved {len(solved)}/{len(tasks)}, replay picks set {j} "
                f"({len(selected)} skills), held-out accuracy {evolved_acc:.3f} (latest {latest_acc:.3f})")
    rand = random_skills(sp.domain, len(selected), seeds["random"])
    rand_ok = sp.correct(rand, test)
    return {
        "accuracy": {"evolved": curve[-1]["evolved"], "none": none_acc, "random": float(np.mean(rand_ok))},
        # task by task against no skills: a good file fixes failures without breaking solved tasks
        "vs_none": {"evolved": fixed_and_broken(none_ok, sp.correct(selected, test)),
                    "random": fixed_and_broken(none_ok, rand_ok)},
        "latest_accuracy": curve[-1]["latest"],
        "rounds": c.rounds,
        "curve": curve,
        "judge_agreement": agree / max(1, judged),
        "judged_tasks": judged,
        "replay_guard_used": guard_used,
        "reasoner_skills": selected.render(),
        "latest_reasoner_skills": reasoner.render(),
        "challenger_skills": challenger.render(),
        "random_skills": rand.render(),
    }


def quick_config(seed: int = 0) -> Ctx2SkillConfig:
    """The ``--quick`` setting: the same Reasoner (fewer SFT steps do not learn to read the skills),
    fewer rounds, tasks and held-out problems."""
    return Ctx2SkillConfig(reasoner=ReasonerLMConfig(seed=seed), rounds=3, tasks_per_round=12, n_test=50,
                           probe_problems=100, seed=seed)


PRESETS = {"full": Ctx2SkillConfig(), "quick": quick_config()}


def plot_curve(per_seed: list[dict[str, Any]], path: Path) -> None:
    """Held-out accuracy over rounds, mean over the given runs (seeds) with a ±1 sd band where there
    are several: the replay-selected and the latest skills, beside no and random skills."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [p["round"] for p in per_seed[0]["curve"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for key, style, label in (("evolved", dict(marker="o"), "evolved (replay-selected)"),
                              ("latest", dict(ls="--", marker="."), "latest skills")):
        ys = np.array([[p[key] for p in m["curve"]] for m in per_seed])
        ax.plot(rounds, ys.mean(0), label=label + (f", {len(per_seed)} seeds" if len(per_seed) > 1 else ""), **style)
        if len(per_seed) > 1:
            sd = ys.std(0, ddof=1)
            ax.fill_between(rounds, ys.mean(0) - sd, ys.mean(0) + sd, alpha=0.15)
    for key, color, label in (("none", "grey", "no skills"), ("random", "tab:red", "random skills (same count)")):
        ax.axhline(float(np.mean([m["accuracy"][key] for m in per_seed])), color=color, ls=":", label=label)
    ax.set_xlabel("self-play round")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Ctx2Skill: Reasoner accuracy over rounds")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reasoner_stage(run: RunDir, config: ReasonerLMConfig, progress: bool = True):
    """The offline tiny Reasoner, trained once and saved as ``ctx2skill/reasoner/model``."""
    stage = run.stage("ctx2skill/reasoner", config)
    if stage.done():
        return stage
    from selfprm.selfplay.reasoner_lm import train_reasoner

    stage.begin()
    t0 = time.time()
    model, tok, losses = train_reasoner(config, progress=progress)
    with stage.atomic_dir("model") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    stage.write_json("sft_losses.json", losses)
    stage.finish({"sft_final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
                  "seconds": time.time() - t0})
    return stage


def run_ctx2skill(config: Ctx2SkillConfig, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Self-play against ``config.base_url`` (or the offline server it starts), measured on held-out
    tasks; writes ``ctx2skill_metrics.json``, the skill files and ``ctx2skill_accuracy.png`` into
    ``out`` and returns the metrics: ``accuracy`` {evolved, none, random}, ``rounds``, ``curve``
    (one entry per round, round 0 without skills), ``judge_agreement``, ``replay_guard_used``, ..."""
    from selfprm.selfplay.offline_server import serve_offline

    out = Path(out)
    run = RunDir(out)
    domain = ArithDomain(config.reasoner.domain)
    seeds = seed_streams(config.seed, ["test", "challenger", "random", "judge", "probe"])
    test = domain.sample_problems(config.n_test, seed=seeds["test"], prefix="heldout")
    client_cfg = ChatClientConfig(temperature=0.0, seed=config.seed)
    t0 = time.time()
    if config.base_url is None:
        rstage = reasoner_stage(run, config.reasoner, progress=progress)
        stage = run.stage("ctx2skill/selfplay", config, [rstage])
        if stage.done():
            metrics = stage.read_json("metrics.json")
        else:
            stage.begin()
            with serve_offline(rstage.file("model"), config.reasoner.domain, config.judge_noise, seeds["judge"],
                               stage.file("server.log"), retrieval=config.offline_retrieval) as url:
                client = ChatClient(url, client_cfg)
                sp = SelfPlay(config, client, domain)
                metrics = self_play(sp, test, seeds, progress)
                if config.probe_problems:
                    probe = domain.sample_problems(config.probe_problems, seed=seeds["probe"], prefix="probe")
                    metrics["entry_effect"] = entry_effect(sp.answer, domain, probe, set(weak_facts(config.reasoner)),
                                                           n_distractors=config.capacity - 1, seed=seeds["probe"])
            metrics["chat_requests"] = client.requests
            metrics["seconds"] = time.time() - t0
            stage.write_json("metrics.json", metrics)
            stage.finish({k: metrics[k] for k in ("judge_agreement", "replay_guard_used")})
    else:
        client = ChatClient(config.base_url, client_cfg)
        metrics = self_play(SelfPlay(config, client, domain), test, seeds, progress)
        metrics["chat_requests"] = client.requests
        metrics["seconds"] = time.time() - t0
    for name in ("reasoner_skills", "challenger_skills"):
        (out / f"ctx2skill_{name}.md").write_text(metrics[name])
    run.write_json("ctx2skill_metrics.json", metrics)
    plot_curve([metrics], out / "ctx2skill_accuracy.png")
    metrics["plot"] = str(out / "ctx2skill_accuracy.png")
    return metrics
