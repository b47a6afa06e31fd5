"""A skill set as a Markdown file of natural-language entries, and the edits that change it.

Ctx2Skill (Si et al., 2026, arXiv 2604.27660) keeps each side's skills as plain text the role
reads in its context; nothing else changes between rounds. The file is::

    # Skills
    - 7*8=6
    - Tasks with 2 operations are solved; write 3.

one entry per ``- `` bullet, in order. An edit is one line ``ADD: <entry>`` or ``DELETE: <entry>``
(the Proposer writes them, the Generator applies them); :func:`parse_edits` names the line of a
malformed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

HEADER = "# Skills"


@dataclass(frozen=True)
class SkillSet:
    """An ordered, duplicate-free tuple of entries; ``render()`` is what a role reads."""

    entries: tuple[str, ...] = ()

    def render(self) -> str:
        """The Markdown file: the header, then one bullet per entry (always ends in a newline)."""
        return HEADER + "\n" + "".join(f"- {e}\n" for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def parse_skills(text: str, source: str = "<skills>") -> SkillSet:
    """The entries of a Markdown skill file; a line that is neither blank, a heading nor a bullet
    raises ``ValueError`` naming ``source`` and the line number."""
    entries: list[str] = []
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not s.startswith("- "):
            raise ValueError(f"{source}:{i}: a skill entry must start with '- ', got {line!r}")
        e = s[2:].strip()
        if e and e not in entries:
            entries.append(e)
    return SkillSet(tuple(entries))


@dataclass(frozen=True)
class Edit:
    """``op`` is ``"ADD"`` or ``"DELETE"``; ``entry`` the skill text."""

    op: str
    entry: str

    def render(self) -> str:
        return f"{self.op}: {self.entry}"


def parse_edits(text: str, source: str = "<edits>") -> list[Edit]:
    """``ADD: ...`` / ``DELETE: ...`` lines (blank lines and ``NONE`` skipped); anything else raises
    ``ValueError`` naming ``source`` and the line number."""
    edits = []
    for i, line in enumerate(text.splitlines(), start=1):
        s = line.strip().lstrip("-* ").strip()
        if not s or s.upper() == "NONE":
            continue
        op, sep, entry = s.partition(":")
        if not sep or op.strip().upper() not in ("ADD", "DELETE") or not entry.strip():
            raise ValueError(f"{source}:{i}: an edit must read 'ADD: <entry>' or 'DELETE: <entry>', got {line!r}")
        edits.append(Edit(op.strip().upper(), entry.strip()))
    return edits


def apply_edits(skills: SkillSet, edits: Sequence[Edit], capacity: int | None = None) -> SkillSet:
    """``skills`` after ``edits`` in order: an ADD appends (moved to the end if present, so the
    order is by recency), a DELETE removes; past ``capacity`` the oldest entries go first, since
    the file must fit the reader's context."""
    entries = list(skills.entries)
    for e in edits:
        if e.entry in entries:
            entries.remove(e.entry)
        if e.op == "ADD":
            entries.append(e.entry)
    if capacity is not None and len(entries) > capacity:
        entries = entries[len(entries) - capacity:]
    return SkillSet(tuple(entries))
