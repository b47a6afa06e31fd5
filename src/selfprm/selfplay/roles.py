"""The five Ctx2Skill roles: the chat messages each receives, and offline rule-based players.

Ctx2Skill (Si et al., 2026, arXiv 2604.27660, Sec. 3) runs frozen LMs in five roles: the
**Challenger** writes probing tasks with rubrics from the context and its own skills, the
**Reasoner** answers with its skills in context, the **Judge** gives a binary verdict per task, a
**Proposer** per side turns the Judge's partition into proposed skill edits and a **Generator** per
side applies them. Every role here is reached through the chat API (:class:`ChatClient`), so any
served model can play it; the ``*_messages`` builders are the prompts, the ``parse_*`` functions
read the replies and name the offending line of a malformed one.

The *context* is the document skills are distilled from: here the ``arith`` operation table, one
fact per line (``7*8=6``), too long for the tiny Reasoner's window, so it must rely on skills.

Offline, the Challenger, Judge, Proposer and Generator are deterministic rule-based players
served by :mod:`selfprm.selfplay.offline_server` behind the same API; they
read only what their messages carry (the context table, the skill files, the tasks). The offline
Judge compares the Reasoner's ``A:`` line with the rubric and flips its verdict with probability
``judge_noise`` (a keyed hash of task and response, so it repeats), so its agreement with the
exact verifier is a measurement, not a given.
"""

from __future__ import annotations

import hashlib
import re
from typing import Mapping, Sequence

import numpy as np

from selfprm.domains.arith import ArithDomain, apply_op
from selfprm.selfplay.skills import (Edit, SkillSet, apply_edits, parse_edits, parse_skills, parse_support,
                                     render_support)
from selfprm.types import Problem

_TASK_RE = re.compile(r"^Q:(\d+)((?: [+\-*]\d+)+)\s*(?:=>\s*(\d+))?$")
_FACT_RE = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)$")
_LEN_RE = re.compile(r"^Write chains of (\d+) operations\.$")
_SOLVED_RE = re.compile(r"^The Reasoner solves (\d+[+\-*]\d+)\.$")


# ------------------------------------------------------------------ context and tasks
def context_document(domain: ArithDomain, facts: Sequence[tuple[int, str, int]]) -> str:
    """The context: every fact of the operation table, one per line."""
    m = domain.config.modulus
    return "\n".join(f"{a}{op}{b}={apply_op(a, op, b, m)}" for a, op, b in facts)


def read_context(text: str) -> dict[str, int]:
    """``{"7*8": 6}`` from the fact lines of a context (other lines ignored)."""
    table = {}
    for line in text.splitlines():
        mt = _FACT_RE.match(line.strip())
        if mt:
            table[f"{mt.group(1)}{mt.group(2)}{mt.group(3)}"] = int(mt.group(4))
    return table


def parse_task(line: str, domain: ArithDomain, pid: str = "task", source: str = "<tasks>", lineno: int = 1
               ) -> tuple[Problem, str | None]:
    """``(problem, rubric answer or None)`` from ``Q:7 *8 +3 => 9``; ``ValueError`` names the line."""
    mt = _TASK_RE.match(line.strip())
    if mt is None:
        raise ValueError(f"{source}:{lineno}: a task must read 'Q:<start> <op><operand>... => <answer>', got {line!r}")
    chain = [(s[0], int(s[1:])) for s in mt.group(2).split()]
    return domain.make_problem(pid, int(mt.group(1)) % domain.config.modulus, chain), mt.group(3)


def chain_keys(problem: Problem) -> list[str]:
    vals = problem.meta["values"]
    return [f"{vals[j]}{op}{b}" for j, (op, b) in enumerate(problem.meta["chain"])]


def final_answer(response: str) -> str | None:
    """The ``A:`` line of a response (the last one), else None."""
    found = None
    for line in response.splitlines():
        if line.strip().startswith("A:"):
            found = line.strip()[2:].strip()
    return found


def relevant_entries(skills: SkillSet, task_line: str) -> SkillSet:
    """The offline Reasoner's retrieval: the fact entries whose key ``task_line`` names, in file order.

    A chain's first fact is known from the task (``Q:4 *5`` needs ``4*5``), so its entry must match
    all of value, operation and operand; later running values are not known before solving, so an
    entry for a later step matches on operation and operand. Entries that are not facts (prose a
    served Proposer may write) are dropped: the tiny char-level Reasoner cannot read them. Why the
    offline Reasoner retrieves at all: among 7 other entries it finds the one it needs 0.06 of the
    time, alone 0.60 (:mod:`selfprm.selfplay.reasoner_lm`), so a full file would hide every good edit.
    """
    mt = _TASK_RE.match(task_line.strip())
    if mt is None:
        return SkillSet()
    ops = mt.group(2).split()
    first = f"{int(mt.group(1))}{ops[0]}"
    keep = []
    for e in skills.entries:
        fm = _FACT_RE.match(e.strip())
        if fm is None:
            continue
        key, opnd = f"{int(fm.group(1))}{fm.group(2)}{fm.group(3)}", f"{fm.group(2)}{fm.group(3)}"
        if key == first or opnd in ops[1:]:
            keep.append(e)
    return SkillSet(tuple(keep))


# ------------------------------------------------------------------ messages (the role prompts)
def challenger_messages(context: str, skills: SkillSet, n: int, seed: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are the Challenger. From the context below, write tasks that probe the "
         "Reasoner's weaknesses; follow your skills.\n\n## Context\n" + context + "\n\n## Your skills\n" + skills.render()},
        {"role": "user", "content": f"Write {n} tasks, one per line, as 'Q:<start> <op><operand> ... => <answer>' "
         f"where the answer is the rubric (the last value by the context's table).\nSeed: {seed}"},
    ]


def reasoner_messages(skills: SkillSet, task: Problem) -> list[dict[str, str]]:
    return [{"role": "system", "content": skills.render()}, {"role": "user", "content": task.prompt}]


def judge_messages(task: Problem, rubric: str, response: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are the Judge. Decide whether the response meets the rubric. Reply PASS or FAIL."},
        {"role": "user", "content": f"Task: {task.prompt}\nRubric: the final answer is {rubric}\nResponse:\n{response}"},
    ]


def proposer_messages(side: str, context: str, skills: SkillSet, cases: Sequence[tuple[Problem, str]],
                      n_tasks: int) -> list[dict[str, str]]:
    """``side`` ``"reasoner"`` gets the failed cases, ``"challenger"`` the solved ones (the routing)."""
    kind = "failed" if side == "reasoner" else "solved"
    body = "\n".join(f"### Task: {t.prompt}\nResponse:\n{r.strip()}\n" for t, r in cases)
    return [
        {"role": "system", "content": f"You are the Proposer for the {side}. Diagnose the {kind} cases and propose "
         "skill edits, one per line, as 'ADD: <entry>' or 'DELETE: <entry>'.\n\n## Context\n" + context
         + f"\n\n## Current {side} skills\n" + skills.render()},
        {"role": "user", "content": f"Side: {side}\n{kind.capitalize()} {len(cases)} of {n_tasks} tasks.\n\n{body}"},
    ]


def generator_messages(side: str, skills: SkillSet, edits: Sequence[Edit], capacity: int,
                       support: Mapping[str, int] | None = None) -> list[dict[str, str]]:
    """With ``support`` (per entry, how many failures so far proposed it) the Generator is asked to
    keep the best-supported entries; without it, to drop the oldest."""
    rule = "drop the least supported first, the oldest among equals" if support is not None else "drop the oldest first"
    tail = "" if support is None else "\n## Support\n" + render_support(support)
    return [
        {"role": "system", "content": f"You are the Generator for the {side}. Apply the edits to the skill file and "
         f"reply with the whole updated Markdown file, at most {capacity} entries ({rule})."},
        {"role": "user", "content": "## Skill file\n" + skills.render() + "\n## Edits\n"
         + "\n".join(e.render() for e in edits) + "\n" + tail},
    ]


def parse_verdict(reply: str, source: str = "<judge>") -> bool:
    """PASS -> True, FAIL -> False (the first of the two words in the reply)."""
    mt = re.search(r"\b(PASS|FAIL)\b", reply.upper())
    if mt is None:
        raise ValueError(f"{source}:1: the Judge must reply PASS or FAIL, got {reply[:80]!r}")
    return mt.group(1) == "PASS"


# ------------------------------------------------------------------ offline rule-based players
def _section(text: str, title: str) -> str:
    """The text under ``## title`` up to the next ``## `` heading."""
    mt = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return mt.group(1) if mt else ""


def _field(text: str, name: str) -> str:
    mt = re.search(rf"^{re.escape(name)}: ?(.*)$", text, flags=re.M)
    if mt is None:
        raise ValueError(f"<{name}>:1: the message has no '{name}:' line")
    return mt.group(1).strip()


def offline_challenger(messages: Sequence[dict[str, str]], domain: ArithDomain) -> str:
    """Tasks of the length its skills ask for, avoiding facts its skills say the Reasoner solves
    (so the tasks aim at what is left: the Reasoner's weaknesses); rubrics from the context."""
    system, user = messages[0]["content"], messages[-1]["content"]
    table = read_context(_section(system, "Context"))
    skills = parse_skills(_section(system, "Your skills"), "challenger skills")
    n = int(re.search(r"Write (\d+) tasks", user).group(1))  # type: ignore[union-attr]
    seed = int(_field(user, "Seed"))
    length, solved = domain.config.min_ops, set()
    for e in skills.entries:
        if (mt := _LEN_RE.match(e)):
            length = int(mt.group(1))
        elif (mt := _SOLVED_RE.match(e)):
            solved.add(mt.group(1))
    length = max(domain.config.min_ops, min(length, domain.config.max_ops))
    c = domain.config
    ops = list(c.op_weights)
    probs = np.array([c.op_weights[o] for o in ops], float)
    probs /= probs.sum()
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(n):
        best = None
        for _try in range(50):  # rejection toward unsolved facts
            start = int(rng.integers(0, c.modulus))
            chain, a, keys = [], start, []
            for _k in range(length):
                op = ops[int(rng.choice(len(ops), p=probs))]
                b = int(rng.integers(2 if op == "*" else 1, c.operand_max[op] + 1))
                key = f"{a}{op}{b}"
                if key not in table:
                    raise ValueError(f"<context>:1: the context has no fact for {key}")
                chain.append((op, b))
                keys.append(key)
                a = table[key]
            fresh = sum(k not in solved for k in keys)
            if best is None or fresh > best[0]:
                best = (fresh, start, chain, a)
            if fresh == len(keys):
                break
        _, start, chain, ans = best  # type: ignore[misc]
        lines.append(f"Q:{start}" + "".join(f" {op}{b}" for op, b in chain) + f" => {ans}")
    return "\n".join(lines)


def _keyed_uniform(*parts: str) -> float:
    h = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def offline_judge(messages: Sequence[dict[str, str]], noise: float, seed: int) -> str:
    """PASS when the response's ``A:`` line equals the rubric, flipped with probability ``noise``."""
    user = messages[-1]["content"]
    rubric = re.search(r"^Rubric: the final answer is (.*)$", user, flags=re.M)
    response = user.split("Response:\n", 1)[-1]
    ok = rubric is not None and final_answer(response) == rubric.group(1).strip()
    if _keyed_uniform(str(seed), user) < noise:
        ok = not ok
    return "PASS" if ok else "FAIL"


def offline_proposer(messages: Sequence[dict[str, str]]) -> str:
    """Reasoner side: per failed case, the context's fact for the first step the response got wrong
    (else, when every step is right, the first fact the skills lack: a useless edit a noisy verdict
    causes), one ``ADD`` line per case, so a fact two cases fail on is proposed twice. Challenger side: the facts of each solved case as 'The Reasoner solves ...', and a
    longer chain when at least half the tasks were solved (difficulty rises with success)."""
    system, user = messages[0]["content"], messages[-1]["content"]
    side = _field(user, "Side")
    table = read_context(_section(system, "Context"))
    skills = parse_skills(_section(system, f"Current {side} skills"), f"{side} skills")
    cases = re.findall(r"^### Task: ([^\n]*)\nResponse:\n(.*?)(?=^### Task: |\Z)", user, flags=re.S | re.M)
    edits: list[str] = []
    if side == "reasoner":
        for task, response in cases:
            keys, a = [], None
            mt = _TASK_RE.match(task.strip())
            if mt is None:
                continue
            a = int(mt.group(1))
            for s in mt.group(2).split():
                keys.append(f"{a}{s}")
                a = table[f"{a}{s}"]
            written = [ln.strip() for ln in response.splitlines() if _FACT_RE.match(ln.strip())]
            wrong = [k for j, k in enumerate(keys) if j >= len(written) or written[j] != f"{k}={table[k]}"]
            pick = wrong[0] if wrong else next((k for k in keys if f"{k}={table[k]}" not in skills.entries), None)
            if pick is not None:  # one line per failed case: a repeated line is a recurring failure
                edits.append(f"ADD: {pick}={table[pick]}")
    else:
        mt = re.search(r"^Solved (\d+) of (\d+) tasks", user, flags=re.M)
        solved, total = (int(mt.group(1)), int(mt.group(2))) if mt else (len(cases), max(1, len(cases)))
        for task, _ in cases:
            m2 = _TASK_RE.match(task.strip())
            if m2 is None:
                continue
            a = int(m2.group(1))
            for s in m2.group(2).split():
                e = f"ADD: The Reasoner solves {a}{s}."
                if e not in edits:
                    edits.append(e)
                a = table[f"{a}{s}"]
        if total and solved / total >= 0.5:
            cur = next((int(m3.group(1)) for e in skills.entries if (m3 := _LEN_RE.match(e))), None)
            n_ops = max(len(_TASK_RE.match(t.strip()).group(2).split()) for t, _ in cases) if cases else 1  # type: ignore[union-attr]
            if cur is not None:
                edits.append(f"DELETE: Write chains of {cur} operations.")
            edits.append(f"ADD: Write chains of {max(cur or 0, n_ops) + 1} operations.")
    return "\n".join(edits) if edits else "NONE"


def offline_generator(messages: Sequence[dict[str, str]]) -> str:
    """The skill file after the edits, trimmed to the stated capacity: by support when the message
    carries a ``## Support`` section (:func:`~selfprm.selfplay.skills.keep_supported`), else oldest first."""
    system, user = messages[0]["content"], messages[-1]["content"]
    capacity = int(re.search(r"at most (\d+) entries", system).group(1))  # type: ignore[union-attr]
    skills = parse_skills(_section(user, "Skill file"), "generator skill file")
    edits = parse_edits(_section(user, "Edits"), "generator edits")
    has_support = re.search(r"^## Support$", user, flags=re.M) is not None
    support = parse_support(_section(user, "Support"), "generator support") if has_support else None
    return apply_edits(skills, edits, capacity, support).render()
