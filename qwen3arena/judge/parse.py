"""The judge's verdict, read from the judge's own reply and nothing else.

Rules (tested in tests/test_judge.py):
- A verdict tag is ``[[X op Y]]`` with X, Y the letters A and B (either order, any case),
  op one of ``>>``, ``>``, ``=``, ``==``, ``<``, ``<<``, spaces allowed around each part,
  optionally markdown-escaped (``\\[\\[A>B\\]\\]``). ``[[B<A]]`` means ``[[A>B]]``.
- The LAST tag in the reply wins: the judge is told to end with its verdict, and it may name
  other labels earlier while it reasons ("this is not [[A>>B]] because...").
- No tag means no verdict (None): the caller records an error and leaves the game out. An
  unreadable reply is never turned into a tie.
- MT-bench single-letter labels (``[[A]]``, ``[[B]]``, ``[[C]]``) are NOT verdicts: our prompt
  never asks for them, and nested lists in code (``[[a]]``) would read as one.

A contestant's answer cannot forge a verdict: the text parsed here is the judge's reply, and
tags inside contestant answers are defanged before the judge sees them (prompts.defang), so a
judge that quotes an answer cannot copy a valid tag out of it.
"""

from __future__ import annotations

import enum
import re


class Verdict(enum.StrEnum):
    """A verdict in the positions the judge saw (Assistant A is whichever answer came first)."""

    A_MUCH_BETTER = "A>>B"
    A_BETTER = "A>B"
    TIE = "A=B"
    B_BETTER = "B>A"
    B_MUCH_BETTER = "B>>A"

    @property
    def winner(self) -> str | None:
        """'A', 'B', or None for a tie."""
        return None if self is Verdict.TIE else self.value[0]

    @property
    def strong(self) -> bool:
        return ">>" in self.value

    def swapped(self) -> "Verdict":
        """The same judgement with the positions exchanged (A>>B becomes B>>A)."""
        return _SWAP[self]


_SWAP = {
    Verdict.A_MUCH_BETTER: Verdict.B_MUCH_BETTER, Verdict.A_BETTER: Verdict.B_BETTER,
    Verdict.TIE: Verdict.TIE,
    Verdict.B_BETTER: Verdict.A_BETTER, Verdict.B_MUCH_BETTER: Verdict.A_MUCH_BETTER,
}

# [[A>>B]] with optional spaces, either letter order, optional markdown backslash escapes.
VERDICT_TAG = re.compile(
    r"\\?\[\\?\[\s*([AB])\s*(>>|>|==|=|<<|<)\s*([AB])\s*\\?\]\\?\]", re.IGNORECASE
)

_FROM_A = {">>": Verdict.A_MUCH_BETTER, ">": Verdict.A_BETTER, "=": Verdict.TIE,
           "==": Verdict.TIE, "<": Verdict.B_BETTER, "<<": Verdict.B_MUCH_BETTER}


def _tag_verdict(match: re.Match[str]) -> Verdict | None:
    left, op, right = match.group(1).upper(), match.group(2), match.group(3).upper()
    if left == right:
        return None  # [[A>A]] says nothing
    verdict = _FROM_A[op]
    return verdict if left == "A" else verdict.swapped()


def parse_verdict(reply: str) -> Verdict | None:
    """The last valid verdict tag in the judge's reply, or None when there is none."""
    found = None
    for match in VERDICT_TAG.finditer(reply or ""):
        verdict = _tag_verdict(match)
        if verdict is not None:
            found = verdict
    return found
