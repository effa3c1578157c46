"""Flags answers that reveal who wrote them ("I am Qwen, made by Alibaba").

A flagged battle keeps its vote (nothing is lost) but ratings and harvests exclude it, as
Chatbot Arena does: the vote was no longer blind.
"""

from __future__ import annotations

import re
from typing import Iterable


def _variants(name: str) -> set[str]:
    lowered = name.lower().strip()
    spaced = re.sub(r"[-_/:.]+", " ", lowered).strip()
    return {v for v in (lowered, spaced, spaced.replace(" ", "")) if len(v) >= 3}


def find_identity_leak(texts: Iterable[str], names: Iterable[str], terms: Iterable[str]) -> str | None:
    """The first model name or identity term found in the texts, or None."""
    patterns: list[tuple[str, re.Pattern]] = []
    for needle in sorted({v for n in names for v in _variants(n)} | {t.lower() for t in terms if t}):
        words = [re.escape(part) for part in needle.split()]
        patterns.append((needle, re.compile(r"(?<![a-z0-9])" + r"[\s\-_]*".join(words) + r"(?![a-z])")))
    for text in texts:
        lowered = (text or "").lower()
        for needle, pattern in patterns:
            if pattern.search(lowered):
                return needle
    return None
