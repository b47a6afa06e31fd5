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
from typing import Mapping, Sequence

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


def apply_edits(skills: SkillSet, edits: Sequence[Edit], capacity: int | None = None,
                support: Mapping[str, int] | None = None) -> SkillSet:
    """``skills`` after ``edits`` in order: an ADD appends (moved to the end if present, so the
    order is by recency), a DELETE removes. Past ``capacity`` (the file must fit the reader's
    context) entries go by :func:`keep_supported` when ``support`` is given, else oldest first."""
    entries = list(skills.entries)
    for e in edits:
        if e.entry in entries:
            entries.remove(e.entry)
        if e.op == "ADD":
            entries.append(e.entry)
    if capacity is not None and len(entries) > capacity:
        entries = (keep_supported(entries, capacity, support) if support is not None
                   else entries[len(entries) - capacity:])
    return SkillSet(tuple(entries))


def keep_supported(entries: Sequence[str], capacity: int, support: Mapping[str, int]) -> list[str]:
    """The ``capacity`` entries with the most support (how many failures proposed them so far),
    the more recent among equals, in their original order: an entry that recurs across failures
    is consolidated rather than pushed out by one-off edits."""
    rank = sorted(range(len(entries)), key=lambda i: (support.get(entries[i], 0), i), reverse=True)
    keep = set(rank[:capacity])
    return [e for i, e in enumerate(entries) if i in keep]


def render_support(support: Mapping[str, int]) -> str:
    """``support`` as lines ``<count> <entry>`` (the Generator's message section)."""
    return "".join(f"{n} {e}\n" for e, n in support.items())


def parse_support(text: str, source: str = "<support>") -> dict[str, int]:
    """The inverse of :func:`render_support`; a line that is not ``<count> <entry>`` raises
    ``ValueError`` naming ``source`` and the line number."""
    out: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        n, _, e = line.strip().partition(" ")
        if not n.isdigit() or not e.strip():
            raise ValueError(f"{source}:{i}: a support line must read '<count> <entry>', got {line!r}")
        out[e.strip()] = int(n)
    return out
