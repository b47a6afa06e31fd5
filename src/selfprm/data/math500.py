"""MATH500: the 500 MATH test problems PRM800K held out (Lightman et al., arXiv 2305.20050;
MATH: Hendrycks et al., arXiv 2103.03874), with their reference solutions and answers."""

from __future__ import annotations

import os
from pathlib import Path

from selfprm.data.answers import answers_match, extract_boxed
from selfprm.data.paths import shared_path
from selfprm.data.records import iter_records, need, problem_key
from selfprm.types import Problem, Trajectory


def load_math500(path: str | os.PathLike | None = None) -> list[Problem]:
    """Problems with ``answer`` and ``meta`` = level, subject, unique_id and the reference solution."""
    path = Path(path) if path is not None else shared_path("math500", "test500.jsonl")
    out = []
    for line, rec in iter_records(path):
        prompt = need(rec, "problem", str, path, line)
        uid = need(rec, "unique_id", str, path, line)
        out.append(Problem(
            id=uid, prompt=prompt, answer=need(rec, "answer", str, path, line),
            meta={"reference": need(rec, "solution", str, path, line), "level": need(rec, "level", str, path, line),
                  "subject": need(rec, "subject", str, path, line), "problem_key": problem_key(prompt)},
        ))
    return out


def math_reference_trajectory(problem: Problem) -> Trajectory:
    """The reference solution, one step per paragraph (MATH solutions separate steps by blank lines)."""
    ref = problem.meta["reference"]
    steps = [p.strip() for p in ref.split("\n\n") if p.strip()]
    return Trajectory(problem=problem, steps=steps, final_answer=extract_boxed(ref), outcome=True,
                      oracle_labels=[True] * len(steps), meta={"source": "math500-reference"})


def check_math_solution(solution: str, problem: Problem) -> bool:
    """Is the last ``\\boxed{}`` answer of ``solution`` equal to the problem's, by ``math-verify``?"""
    return answers_match(extract_boxed(solution), problem.answer)
