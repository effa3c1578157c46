"""Agreement between raters (labellers on battles several of them judged; humans and the LLM
judge on the scoreboard). Pure functions.

Input: {item: {labeller: label}}. Items with fewer than two labels say nothing about
agreement and are left out. Labels are the four vote outcomes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence

CATEGORIES = ("model_a", "model_b", "tie", "both_bad")


def percent_agreement(items: Sequence[Sequence[str]]) -> float | None:
    """Share of agreeing labeller pairs, averaged over items (each item weighs the same)."""
    scores = []
    for labels in items:
        pairs = list(itertools.combinations(labels, 2))
        if pairs:
            scores.append(sum(a == b for a, b in pairs) / len(pairs))
    return sum(scores) / len(scores) if scores else None


def fleiss_kappa(items: Sequence[Sequence[str]], categories: Sequence[str] = CATEGORIES) -> float | None:
    """Fleiss' kappa, in the form that allows a different number of labellers per item.

    None when fewer than two items have two or more labels, or when chance agreement is
    total (every label the same category), where kappa is undefined."""
    rated = [labels for labels in items if len(labels) >= 2]
    if len(rated) < 2:
        return None
    totals: Counter = Counter()
    observed = []
    for labels in rated:
        counts = Counter(labels)
        n = len(labels)
        observed.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
        totals.update(labels)
    everything = sum(totals.values())
    chance = sum((totals[c] / everything) ** 2 for c in set(categories) | set(totals))
    if chance >= 1.0:
        return None
    mean_observed = sum(observed) / len(observed)
    return (mean_observed - chance) / (1 - chance)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two labellers over the same items, in order. None when undefined."""
    if len(a) != len(b):
        raise ValueError("both labellers need a label for every item")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    chance = sum(ca[c] * cb[c] for c in set(ca) | set(cb)) / (n * n)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)


@dataclass
class PairAgreement:
    labellers: tuple[str, str]
    items: int
    percent: float
    kappa: float | None


@dataclass
class AgreementReport:
    items: int                      # items with two or more labels
    labels: int
    percent: float | None
    fleiss: float | None
    pairs: list[PairAgreement] = field(default_factory=list)


def agreement(judgements: Mapping[str, Mapping[str, str]]) -> AgreementReport:
    """Percent agreement and Fleiss' kappa over all shared items, Cohen's kappa per pair."""
    shared = {item: dict(by) for item, by in judgements.items() if len(by) >= 2}
    lists = [list(by.values()) for by in shared.values()]
    pairs = []
    labellers = sorted({name for by in shared.values() for name in by})
    for first, second in itertools.combinations(labellers, 2):
        both = [(by[first], by[second]) for by in shared.values() if first in by and second in by]
        if not both:
            continue
        a, b = zip(*both)
        pairs.append(PairAgreement((first, second), len(both),
                                   sum(x == y for x, y in both) / len(both), cohen_kappa(a, b)))
    return AgreementReport(len(shared), sum(len(x) for x in lists), percent_agreement(lists),
                           fleiss_kappa(lists), pairs)
