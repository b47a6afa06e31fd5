"""The policy protocol: write step-by-step solutions, and continue from a step prefix.

Every backend returns :class:`~selfprm.types.Trajectory` objects whose ``tokens_generated`` counts
the tokens *that call* generated (for a continuation, only the new ones), so label sources can
report their cost in policy tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from selfprm.domains.base import Domain
from selfprm.types import Problem, Trajectory


@dataclass
class Prefix:
    """A problem and the first steps of a solution, to be continued."""

    problem: Problem
    steps: list[str] = field(default_factory=list)


@runtime_checkable
class Policy(Protocol):
    domain: Domain

    def sample(self, problems: Sequence[Problem], n: int) -> list[list[Trajectory]]:
        """``n`` solutions for each problem: ``result[i][j]`` is the j-th for ``problems[i]``."""
        ...

    def continue_from(self, prefixes: Sequence[Prefix], n: int) -> list[list[Trajectory]]:
        """``n`` completions of each prefix; each trajectory holds the prefix steps and the new ones."""
        ...


class TextCompletionPolicy:
    """A policy whose backend completes prompt texts: subclasses give ``complete(prompts, n)`` ->
    ``n`` pairs ``(text, tokens generated)`` per prompt, seeded from ``config.seed`` and a call
    counter ``_calls``; rendering the prefixes and parsing the completions is the domain's."""

    domain: Domain

    def complete(self, prompts: Sequence[str], n: int) -> list[list[tuple[str, int]]]:
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        """Restart the request seeds from ``seed``: what follows is repeatable on its own."""
        self.config.seed = seed  # type: ignore[attr-defined]
        self._calls = 0

    def sample(self, problems: Sequence[Problem], n: int) -> list[list[Trajectory]]:
        return self.continue_from([Prefix(p, []) for p in problems], n)

    def continue_from(self, prefixes: Sequence[Prefix], n: int) -> list[list[Trajectory]]:
        groups = self.complete([self.domain.render(p.problem, p.steps) for p in prefixes], n)
        flat = judge_texts(self.domain, [(p.problem, p.steps, text, k) for p, group in zip(prefixes, groups)
                                         for text, k in group])
        rows = iter(flat)
        return [[next(rows) for _ in group] for _, group in zip(prefixes, groups)]


def judge_texts(domain: Domain, items: Sequence[tuple[Problem, Sequence[str], str, int]]) -> list[Trajectory]:
    """``domain.from_text`` for many continuations ``(problem, steps_before, generated, tokens)``, in
    order: one ``from_texts`` call where the domain's class defines it (``code`` judges the whole
    batch in one sandboxed process), one ``from_text`` per item otherwise. The lookup is on the
    class so a wrapper that delegates by ``__getattr__`` (PCL's) keeps its own ``from_text``."""
    batch = getattr(type(domain), "from_texts", None)
    if batch is not None:
        return list(batch(domain, list(items)))
    return [domain.from_text(p, before, text, k) for p, before, text, k in items]


def reseed(policy: Policy, seed: int) -> None:
    """Reseed a policy that supports it (``reseed(seed)``), so a slice of work is repeatable on its
    own: a resumed job then redoes an unfinished shard exactly as an uninterrupted one would."""
    fn = getattr(policy, "reseed", None)
    if fn is not None:
        fn(seed)


def sample_flat(policy: Policy, problems: Sequence[Problem], n: int) -> list[Trajectory]:
    """All ``n`` samples of every problem in one list, problem by problem."""
    return [t for group in policy.sample(problems, n) for t in group]
