"""``math``: problems with a reference answer (GSM8K, MATH500, any problem/answer JSONL), checked by
``math-verify``; no step oracle.

A solution is free text that a policy writes after a prompt template. It is cut into steps the way
the public PRM data sets cut it: by blank lines when the text has any (MATH / PRM800K solutions
are paragraphs, ProcessBench's ``steps`` likewise), else one step per line (GSM8K solutions). The
final answer is the last ``\\boxed{...}`` (the MATH convention, and what Qwen2.5-Math's prompt asks
for), else the last "The answer is X" / "#### X" / "Final Answer: X" line; a solution with neither
was cut off before it answered: ``truncated=True``, outcome False (SPR drops those). The outcome is
``math-verify``'s verdict against the reference (:func:`selfprm.data.answers.answers_match`), so
``1/2``, ``0.5`` and ``\\frac12`` agree.

The prompt template is per policy (:data:`TEMPLATES`): ``plain`` for base models, ``qwen-chat``
for ChatML instruct models (Qwen2.5-Math-Instruct's system prompt, from its model card). Whatever
the template, ``render(problem, steps)`` is the template followed by each step and the separator,
so a policy continues a step prefix exactly as it would have written it.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from selfprm.data.answers import answers_match, extract_boxed, extract_gsm8k_answer
from selfprm.data.records import iter_records, need, problem_key
from selfprm.domains.base import LineDomain
from selfprm.types import Problem, RecordError, Trajectory

PROBLEM_SLOT = "{problem}"

# The text each policy continues; ``{problem}`` is replaced by the problem (str.replace, not
# str.format, so the braces of ``\boxed{}`` in an instruction need no escaping).
TEMPLATES: dict[str, str] = {
    # base models: a solution follows "Solution:" on its own line
    "plain": "Problem: {problem}\nSolution:\n",
    # ChatML (Qwen2.5 / Qwen2.5-Math instruct); the system prompt is the one Qwen2.5-Math's model
    # card uses for chain-of-thought, which is what makes those models end with \boxed{}
    "qwen-chat": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n{problem}<|im_end|>\n<|im_start|>assistant\n"
    ),
}

# What ends a solution under each preset: a base model runs on into a new "Problem:"; a chat model
# closes its turn. A server stops there (the completions API's ``stop``); a backend without stop
# strings (HFPolicy) has its text cut there by ``from_text``.
STOPS: dict[str, tuple[str, ...]] = {
    "plain": ("\nProblem:",),
    "qwen-chat": ("<|im_end|>", "<|endoftext|>"),
}

MATH500_FIELDS = ("problem", "answer", "solution", "level", "subject", "unique_id")

_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# "The answer is X" and the like, to the end of the line (commas kept: MATH answers hold tuples)
_ANSWER_LINE = re.compile(r"(?:####|The (?:final )?answer is:?|Final Answer:?)\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


@dataclass
class MathDomainConfig:
    """How the ``math`` domain prompts a policy and cuts its text into steps.

    Parameters:
        template: a preset name (:data:`TEMPLATES`: ``plain``, ``qwen-chat``) or a template text
            holding ``{problem}``; the policy writes its solution right after it.
        step_separator: written after each step when a prefix is rendered; the PRM's step boundary.
        stop: strings that end a solution (None: the preset's; a template text of one's own: none).
    """

    template: str = "plain"
    step_separator: str = "\n\n"
    stop: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if PROBLEM_SLOT not in resolve_template(self.template):
            raise ValueError(
                f"math template {self.template!r} is neither a preset ({', '.join(TEMPLATES)}) "
                f"nor a text holding {PROBLEM_SLOT}"
            )
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")
        if self.stop is not None:
            self.stop = tuple(self.stop)


def resolve_template(template: str) -> str:
    """The template text of a preset name, or ``template`` itself."""
    return TEMPLATES.get(template, template)


# ----------------------------------------------------------------------------- parsing


def split_steps(text: str, by_blank_lines: bool | None = None) -> list[str]:
    """Steps of a solution: paragraphs when it has a blank line (or ``by_blank_lines``), else lines."""
    text = text.strip()
    if by_blank_lines is None:
        by_blank_lines = _BLANK_LINE.search(text) is not None
    parts = _BLANK_LINE.split(text) if by_blank_lines else text.split("\n")
    return [p.strip() for p in parts if p.strip()]


def extract_final_answer(text: str) -> str | None:
    """The last ``\\boxed{}`` of ``text``, else its last "The answer is X" / "#### X" / "Final Answer: X"."""
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    found = _ANSWER_LINE.findall(text)
    if not found:
        return None
    ans = found[-1].strip().rstrip(".").strip()
    if ans.startswith("$") and ans.endswith("$"):
        ans = ans.strip("$").strip()
    if _THOUSANDS.match(ans):  # "1,000" is a number, not the pair (1, 000)
        ans = ans.replace(",", "")
    return ans or None


# ----------------------------------------------------------------------------- the domain


class MathDomain(LineDomain):
    """Math word problems and competition problems; answers checked by ``math-verify``, no step oracle.

    A :class:`LineDomain` with its own template, step splitting and answer format; trajectories are
    built by the shared ``make_trajectory``, with ``oracle_labels`` None (nobody judged the steps).
    """

    name = "math"

    def __init__(self, config: MathDomainConfig | None = None):
        self.config = config or MathDomainConfig()
        self.template = resolve_template(self.config.template)
        self.step_separator = self.config.step_separator
        c = self.config
        self.stop: tuple[str, ...] = c.stop if c.stop is not None else STOPS.get(c.template, ())

    # ------------------------------------------------------------------ text
    def render(self, problem: Problem, steps: Sequence[str] = ()) -> str:
        """The template around the problem, then each step followed by the separator."""
        head = self.template.replace(PROBLEM_SLOT, problem.prompt)
        return head + "".join(s + self.step_separator for s in steps)

    @staticmethod
    def render_answer(answer: str) -> str:
        return f"The answer is \\boxed{{{answer}}}."

    def cut_at_stop(self, text: str) -> str:
        """``text`` up to the first stop string (a backend without stop strings runs past them)."""
        cut = min((i for i in (text.find(s) for s in self.stop if s) if i >= 0), default=-1)
        return text if cut < 0 else text[:cut]

    def parse_completion(self, text: str, steps_before: Sequence[str] = ()) -> tuple[list[str], str | None, bool]:
        """``(new steps, final answer, truncated)`` of ``text`` written after ``steps_before``.

        Paragraph or line steps is decided on the whole solution, so a continuation is cut the way
        the full solution would be (a prefix rendered with a blank-line separator means paragraphs).
        """
        text = self.cut_at_stop(text)
        whole = "".join(s + self.step_separator for s in steps_before) + text
        by_blank = _BLANK_LINE.search(whole.strip()) is not None
        answer = extract_final_answer(text)
        if answer is None and steps_before:  # the prefix may already hold the answer
            answer = extract_final_answer(self.step_separator.join(steps_before))
        return split_steps(text, by_blank), answer, answer is None

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        """``math-verify``'s verdict against the reference (needs ``pip install 'selfprm[real]'``)."""
        return answers_match(answer, problem.answer)

    def judge_steps(self, problem: Problem, steps: Sequence[str]) -> None:
        """No oracle on real math: nobody judged the steps."""
        return None

    def from_text(self, problem: Problem, steps_before: Sequence[str], generated: str, tokens: int) -> Trajectory:
        """The trajectory a policy wrote after ``render(problem, steps_before)``."""
        new_steps, answer, truncated = self.parse_completion(generated, steps_before)
        return self.make_trajectory(problem, list(steps_before) + new_steps, answer, truncated, tokens)


# ----------------------------------------------------------------------------- problems


def load_math_problems(path: str | os.PathLike, limit: int | None = None) -> list[Problem]:
    """Problems with reference answers from GSM8K (``question`` / ``answer`` ending ``#### x``),
    MATH500 (``problem``, ``answer``, ``solution``, ...) or any JSON(L) of ``problem`` / ``answer``.

    The format is told by the first record; GSM8K and MATH500 files go through their own loaders
    (:func:`selfprm.data.gsm8k.load_gsm8k`, :func:`selfprm.data.math500.load_math500`). A
    malformed line or a missing field raises :class:`~selfprm.types.RecordError` naming file and line.
    """
    from selfprm.data.gsm8k import load_gsm8k
    from selfprm.data.math500 import load_math500

    if limit is not None and limit < 0:
        raise ValueError(f"limit must be at least 0, got {limit}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such problems file")
    with contextlib.closing(iter_records(path)) as records:
        first = next(records, None)
    if first is None:
        return []
    rec = first[1]
    if isinstance(rec, dict) and isinstance(rec.get("question"), str) and "####" in str(rec.get("answer", "")):
        split = "train" if "train" in path.stem else "test"  # only names the ids (gsm8k-<split>-<line>)
        problems = load_gsm8k(split, path)
    elif isinstance(rec, dict) and all(k in rec for k in MATH500_FIELDS):
        problems = load_math500(path)
    else:
        problems = _load_problem_answer(path, limit)
    return problems if limit is None else problems[:limit]


def _load_problem_answer(path: Path, limit: int | None) -> list[Problem]:
    """Records with a ``problem`` (or ``question``) and an ``answer`` (a string or a number; a
    ``\\boxed{}`` or ``#### x`` inside it is read out); ``id`` / ``unique_id`` name them when given."""
    out: list[Problem] = []
    for line, rec in iter_records(path):
        if limit is not None and len(out) >= limit:
            break
        key = "question" if isinstance(rec, dict) and "problem" not in rec and "question" in rec else "problem"
        text = need(rec, key, str, path, line)
        raw = need(rec, "answer", (str, int, float), path, line)
        if not isinstance(raw, str):
            answer: str | None = str(raw)
        elif "\\boxed" in raw:
            answer = extract_boxed(raw)
        elif "####" in raw:
            answer = extract_gsm8k_answer(raw)
        else:
            answer = raw.strip()
        if not answer:
            raise RecordError(path, line, "answer", "empty")
        pid = rec.get("id", rec.get("unique_id"))
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, (str, int))):
            raise RecordError(path, line, "id", f"expected str/int, got {type(pid).__name__}")
        meta = {"problem_key": problem_key(text)}
        if isinstance(rec.get("solution"), str):
            meta["reference"] = rec["solution"]
        out.append(Problem(id=str(pid) if pid is not None else f"{path.stem}-{line}", prompt=text, answer=answer,
                           meta=meta))
    return out
