"""Record formats of the two large step-label corpora, read into trajectories.

* **Math-Shepherd** (Wang et al., arXiv 2312.08935): ``input`` is the question followed by
  ``Step k: ... ки`` pieces; ``label`` is the same text with each ``ки`` replaced by ``+`` (the
  step can still reach the right answer, estimated by Monte Carlo completion) or ``-``.
* **PRM800K** (Lightman et al., arXiv 2305.20050): one labelling session per line; for each step
  the candidate ``completions`` with a human ``rating`` in {-1, 0, +1}, the one the labeller chose
  to continue with (``chosen_completion``) or a ``human_completion`` written when every candidate
  was wrong. The path the labeller walked is the trajectory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from selfprm.data.answers import answers_match
from selfprm.data.records import iter_records, need, problem_key
from selfprm.types import Problem, RecordError, Trajectory

SHEPHERD_TAG = "ки"
_STEP_PREFIX = re.compile(r"^\s*Step \d+:\s*")


def math_shepherd_record_to_trajectory(rec: object, path=None, line: int | None = None) -> Trajectory:
    """One Math-Shepherd record; ``oracle_labels[i]`` is True for ``+``."""
    text = need(rec, "input", str, path, line)
    label = need(rec, "label", str, path, line)
    start = text.find("Step 1:")
    if start < 0:
        raise RecordError(path, line, "input", "no 'Step 1:' after the question")
    parts = text.split(SHEPHERD_TAG)
    if len(parts) < 2:
        raise RecordError(path, line, "input", f"no step tag {SHEPHERD_TAG!r}")
    # The label text is the input with each 2-character tag replaced by a 1-character '+'/'-':
    # walk both strings together and read the character where each tag was.
    pos, tags = 0, []
    for k, part in enumerate(parts[:-1]):
        if label[pos:pos + len(part)] != part:
            raise RecordError(path, line, "label", f"text differs from 'input' before step tag {k + 1}")
        pos += len(part)
        if pos >= len(label) or label[pos] not in "+-":
            raise RecordError(path, line, "label", f"step {k + 1} has no '+'/'-' tag")
        tags.append(label[pos] == "+")
        pos += 1
    question = parts[0][:start].strip()
    steps = [_STEP_PREFIX.sub("", p[start:] if k == 0 else p).strip() for k, p in enumerate(parts[:-1])]
    return Trajectory(
        problem=Problem(id=f"math-shepherd-{line}", prompt=question, meta={"problem_key": problem_key(question)}),
        steps=steps, oracle_labels=tags,
        meta={"source": "math-shepherd", "task": need(rec, "task", str, path, line, required=False)},
    )


def load_math_shepherd(path: str | os.PathLike) -> list[Trajectory]:
    path = Path(path)
    return [math_shepherd_record_to_trajectory(r, path, n) for n, r in iter_records(path)]


@dataclass
class PRM800KConfig:
    # PRM800K's 0 rating means "neither helps nor hurts"; the PRM800K paper counts it as not
    # wrong when it looks for the first mistake, so the default treats it as sound.
    neutral_is_correct: bool = True
    check_outcome: bool = True  # judge a finished solution's answer with math-verify


def prm800k_record_to_trajectory(rec: object, path=None, line: int | None = None,
                                 config: PRM800KConfig | None = None) -> Trajectory:
    """The path a PRM800K labeller walked, with its human ratings as oracle labels.

    At each step: the chosen completion, else the human-written one (no rating: a person wrote it
    as correct), else — the step where the session stopped — the first candidate, and the walk ends.
    """
    c = config or PRM800KConfig()
    q = need(rec, "question", dict, path, line)
    prompt = need(q, "problem", str, path, line) if "problem" in q else None
    if prompt is None:
        raise RecordError(path, line, "question.problem", "missing")
    lab = need(rec, "label", dict, path, line)
    steps_raw = lab.get("steps")
    if not isinstance(steps_raw, list):
        raise RecordError(path, line, "label.steps", "missing or not a list")
    steps, labels, ratings = [], [], []
    for i, st in enumerate(steps_raw):
        if not isinstance(st, dict):
            raise RecordError(path, line, f"label.steps[{i}]", "expected an object")
        comps = st.get("completions")
        chosen, human = st.get("chosen_completion"), st.get("human_completion")
        if chosen is not None:
            if not isinstance(comps, list) or not isinstance(chosen, int) or not 0 <= chosen < len(comps):
                raise RecordError(path, line, f"label.steps[{i}].chosen_completion", f"{chosen!r} is not a candidate index")
            pick, stop = comps[chosen], False
        elif isinstance(human, dict):
            pick, stop = human, False
        elif isinstance(comps, list) and comps:
            pick, stop = comps[0], True
        else:
            break
        text, rating = pick.get("text"), pick.get("rating")
        if not isinstance(text, str):
            raise RecordError(path, line, f"label.steps[{i}].text", "missing or not a string")
        if rating not in (-1, 0, 1, None):
            raise RecordError(path, line, f"label.steps[{i}].rating", f"{rating!r} is not -1, 0, 1 or null")
        steps.append(text.strip())
        ratings.append(rating)
        labels.append(rating is None or rating == 1 or (rating == 0 and c.neutral_is_correct))
        if stop:
            break
    if not steps:
        raise RecordError(path, line, "label.steps", "no step to read")
    finish = lab.get("finish_reason")
    answer = q.get("ground_truth_answer")
    final = None
    m = re.search(r"# Answer\s*(.+?)\s*$", steps[-1], re.S)
    if m:
        final = m.group(1).strip()
    outcome = answers_match(final, answer) if (c.check_outcome and final is not None and answer) else None
    return Trajectory(
        problem=Problem(id=f"prm800k-{line}", prompt=prompt, answer=answer, meta={"problem_key": problem_key(prompt)}),
        steps=steps, final_answer=final, outcome=outcome, oracle_labels=labels,
        truncated=finish not in ("solution", "found_error"),
        meta={"source": "prm800k", "ratings": ratings, "finish_reason": finish,
              "phase": 2 if rec.get("generation") is not None else 1, "labeler": rec.get("labeler")},
    )


def load_prm800k(path: str | os.PathLike, config: PRM800KConfig | None = None) -> list[Trajectory]:
    path = Path(path)
    return [prm800k_record_to_trajectory(r, path, n, config) for n, r in iter_records(path)]
