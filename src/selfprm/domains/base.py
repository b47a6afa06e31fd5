"""The domain protocol every policy and label source relies on."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from selfprm.types import Problem, Trajectory


@runtime_checkable
class Domain(Protocol):
    """A family of problems with a checkable outcome.

    ``render`` gives the text a policy continues from; ``from_text`` turns what it generated into
    a trajectory with its outcome (and oracle step labels where the domain has an oracle).
    """

    name: str
    step_separator: str

    def render(self, problem: Problem, steps: Sequence[str] = ()) -> str: ...

    def from_text(self, problem: Problem, steps_before: Sequence[str], generated: str, tokens: int) -> Trajectory: ...

    def check_answer(self, problem: Problem, answer: str | None) -> bool: ...


ANSWER = "A:"


class LineDomain:
    """The text format ``arith`` and ``tools`` share: the prompt, one step per line, ``A:answer``.

    Subclasses say how to judge a step (``judge_steps``); parsing, rendering, outcome checking and
    turning generated text into a judged trajectory live here once.
    """

    name = "line"
    step_separator = "\n"

    def render(self, problem: Problem, steps: Sequence[str] = ()) -> str:
        """The text a policy continues from: prompt and the steps so far, one per line."""
        return problem.prompt + "\n" + "".join(s + "\n" for s in steps)

    @staticmethod
    def render_answer(answer: str) -> str:
        return ANSWER + answer

    def sft_text(self, problem: Problem, steps: Sequence[str], answer: str) -> str:
        return self.render(problem, steps) + self.render_answer(answer)

    def parse_completion(self, text: str) -> tuple[list[str], str | None, bool]:
        """Split generated text into steps and final answer; ``truncated`` when no answer line."""
        steps: list[str] = []
        for line in text.split("\n"):
            line = line.strip()
            if not line:
                continue
            if line.startswith(ANSWER):
                return steps, line[len(ANSWER):].strip(), False
            steps.append(line)
        return steps, None, True

    def judge_steps(self, problem: Problem, steps: Sequence[str]) -> list[bool] | None:
        """Each step's soundness by the domain's oracle; None for a domain without one (math)."""
        raise NotImplementedError

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        return answer is not None and answer.strip() == problem.answer

    def make_trajectory(
        self,
        problem: Problem,
        steps: Sequence[str],
        final_answer: str | None,
        truncated: bool = False,
        tokens_generated: int = 0,
    ) -> Trajectory:
        """A trajectory with its outcome and the oracle's step labels (None without an oracle)."""
        return Trajectory(
            problem=problem,
            steps=list(steps),
            final_answer=final_answer,
            outcome=(not truncated) and self.check_answer(problem, final_answer),
            oracle_labels=self.judge_steps(problem, steps),
            tokens_generated=tokens_generated,
            truncated=truncated,
        )

    def from_text(self, problem: Problem, steps_before: Sequence[str], generated: str, tokens: int) -> Trajectory:
        """Turn a policy's continuation of ``steps_before`` into a judged trajectory."""
        new_steps, answer, truncated = self.parse_completion(generated)
        return self.make_trajectory(problem, list(steps_before) + new_steps, answer, truncated, tokens)
