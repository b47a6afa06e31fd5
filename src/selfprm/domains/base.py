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
