"""GSM8K (Cobbe et al., arXiv 2110.14168): grade-school word problems with reference solutions,
and OpenAI's four sampled model solutions per test problem.

Reference solutions write each computation twice, once for the reader and once for a calculator:
``16 - 3 - 4 = <<16-3-4=9>>9``, and end with ``#### 9``. The calculator annotations are what
makes a reference *verifiable* step by step (:func:`verify_reference`) and what the
``perturbation`` label source edits; the text a PRM reads has them stripped, as ProcessBench's
solutions have none.
"""

from __future__ import annotations

import ast
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path

from selfprm.data.answers import answers_match, extract_gsm8k_answer, normalize_number
from selfprm.data.paths import shared_path
from selfprm.data.records import iter_records, need, problem_key
from selfprm.types import Problem, RecordError, Trajectory

GSM8K_SPLITS = ("train", "test")
EXAMPLE_MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")

CALC = re.compile(r"<<([^<>]*)>>")
_FINAL_LINE = re.compile(r"^\s*(?:####|A:)\s*(.*)$")


def strip_calculator(text: str) -> str:
    """Drop ``<<expr=result>>`` annotations, leaving the prose the solution shows."""
    return CALC.sub("", text)


def split_solution(text: str, keep_calculator: bool = False) -> tuple[list[str], str | None]:
    """``(steps, final_answer)`` of a GSM8K solution: one step per line; the closing ``#### x`` /
    ``A: x`` line becomes ``The answer is x.`` appended to the last step (a step of its own would
    be a trivial one every PRM gets right)."""
    steps, final = [], None
    for raw in text.split("\n"):
        m = _FINAL_LINE.match(raw)
        if m:
            final = m.group(1).strip()
            continue
        line = raw if keep_calculator else strip_calculator(raw)
        if line.strip():
            steps.append(line.strip())
    if final is not None:
        tail = f"The answer is {final}."
        if steps:
            steps[-1] = f"{steps[-1]} {tail}"
        else:
            steps.append(tail)
    return steps, (None if final is None else final.replace(",", "").replace("$", "").strip())


def load_gsm8k(split: str = "test", path: str | os.PathLike | None = None) -> list[Problem]:
    """GSM8K problems; ``answer`` is the reference's ``#### x``, ``meta["reference"]`` the full solution."""
    if split not in GSM8K_SPLITS:
        raise ValueError(f"unknown GSM8K split {split!r}; choose from {GSM8K_SPLITS}")
    path = Path(path) if path is not None else shared_path("gsm8k", f"{split}.jsonl")
    out = []
    for line, rec in iter_records(path):
        q = need(rec, "question", str, path, line)
        ref = need(rec, "answer", str, path, line)
        ans = extract_gsm8k_answer(ref)
        if ans is None:
            raise RecordError(path, line, "answer", "no '#### <answer>' line in the reference solution")
        out.append(Problem(id=f"gsm8k-{split}-{line}", prompt=q, answer=ans,
                           meta={"reference": ref, "problem_key": problem_key(q), "split": split}))
    return out


def reference_trajectory(problem: Problem) -> Trajectory:
    """The reference solution as a trajectory (outcome True: it is the reference).

    ``meta["raw_steps"]`` keeps the calculator annotations, aligned one to one with ``steps``.
    """
    ref = problem.meta.get("reference")
    if not isinstance(ref, str):
        raise ValueError(f"problem {problem.id!r} has no reference solution")
    steps, final = split_solution(ref)
    raw, _ = split_solution(ref, keep_calculator=True)
    return Trajectory(problem=problem, steps=steps, final_answer=final, outcome=True,
                      oracle_labels=[True] * len(steps), meta={"source": "gsm8k-reference", "raw_steps": raw})


# ----------------------------------------------------------------------------- calculator checks

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def eval_arith(expr: str) -> float:
    """Evaluate a calculator expression (numbers, + - * / // % **, parentheses) without ``eval``."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large")
            return float(_OPS[type(node.op)](left, right))
        raise ValueError(f"not plain arithmetic: {ast.dump(node)[:60]}")

    return ev(ast.parse(expr.replace(",", "").strip(), mode="eval"))


@dataclass
class Calculation:
    step: int  # index of the step holding it
    expr: str  # left of '=' inside <<...>>
    result: str  # right of '='


def calculations(raw_steps: list[str]) -> list[Calculation]:
    """The ``<<expr=result>>`` annotations of a solution, in order."""
    out = []
    for i, s in enumerate(raw_steps):
        for m in CALC.finditer(s):
            body = m.group(1)
            if body.count("=") != 1:
                continue
            expr, result = body.split("=")
            out.append(Calculation(i, expr.strip(), result.strip()))
    return out


def verify_reference(traj: Trajectory, tol: float = 1e-6) -> bool:
    """True when every calculator annotation computes (``eval(expr) == result``) and the final
    answer equals the problem's answer by ``math-verify``: the check that makes a reference
    solution *verified-correct* before it is perturbed."""
    calcs = calculations(traj.meta.get("raw_steps", []))
    for c in calcs:
        try:
            if abs(eval_arith(c.expr) - eval_arith(c.result)) > tol * max(1.0, abs(eval_arith(c.result))):
                return False
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):
            return False
    return answers_match(traj.final_answer, traj.problem.answer)


# ----------------------------------------------------------------------------- example solutions


def load_gsm8k_example_solutions(path: str | os.PathLike | None = None) -> list[Trajectory]:
    """OpenAI's ``example_model_solutions.jsonl``: per GSM8K test problem, four sampled solutions
    (GPT-3 6B / 175B, finetuned or verifier-selected), each with ``is_correct``.

    ``outcome`` is the file's ``is_correct``; ``final_answer`` is the solution's ``A: x``,
    normalised so majority vote pools ``18`` and ``18.0``; ``meta["group"]`` is the problem's
    line, shared by its four solutions.
    """
    path = Path(path) if path is not None else shared_path("gsm8k", "example_model_solutions.jsonl")
    out = []
    for line, rec in iter_records(path):
        q = need(rec, "question", str, path, line)
        gt = need(rec, "ground_truth", str, path, line)
        problem = Problem(id=f"gsm8k-test-{line}", prompt=q, answer=extract_gsm8k_answer(gt),
                          meta={"reference": gt, "problem_key": problem_key(q), "split": "test"})
        for model in EXAMPLE_MODELS:
            sol = need(rec, model, dict, path, line)
            text = need(sol, "solution", str, path, line) if "solution" in sol else None
            if text is None:
                raise RecordError(path, line, f"{model}.solution", "missing")
            if not isinstance(sol.get("is_correct"), bool):
                raise RecordError(path, line, f"{model}.is_correct", "missing or not a bool")
            steps, final = split_solution(text)
            if not steps:
                raise RecordError(path, line, f"{model}.solution", "no steps")
            out.append(Trajectory(problem=problem, steps=steps, final_answer=normalize_number(final),
                                  outcome=sol["is_correct"], truncated=final is None,
                                  meta={"source": "gsm8k-example", "model": model, "group": line}))
    return out
