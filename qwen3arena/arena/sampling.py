"""Pair sampling: per-model weights, a boost for new models, target pairs (FastChat's
``--targets``: chosen pairs, such as a new checkpoint against its parent, drawn a set share of
the time), never a model against itself, random left/right. Pure functions of their inputs
(the caller passes the RNG)."""

from __future__ import annotations

import random
from typing import Mapping, Sequence


def model_weights(
    base_weights: Mapping[str, float],
    vote_counts: Mapping[str, int],
    boost_factor: float,
    boost_until_votes: int,
) -> dict[str, float]:
    """Configured weight, multiplied by boost_factor while a model has few votes, so a fresh
    checkpoint collects the votes it needs for a rating quickly."""
    weights = {}
    for name, weight in base_weights.items():
        if weight < 0:
            raise ValueError(f"weight of {name!r} is negative")
        boosted = vote_counts.get(name, 0) < boost_until_votes
        weights[name] = weight * (boost_factor if boosted else 1.0)
    return weights


def sample_pair(weights: Mapping[str, float], rng: random.Random,
                targets: Sequence[tuple[str, str]] = (), target_share: float = 0.0) -> tuple[str, str]:
    """Two distinct models in random order. With probability `target_share` one of the
    `targets` whose two models can both be drawn (positive weight), uniformly; otherwise
    drawn with probability proportional to weight."""
    live = live_targets(weights, targets) if target_share > 0 else []
    if live and rng.random() < target_share:
        pair = list(rng.choice(live))
        rng.shuffle(pair)
        return pair[0], pair[1]
    names = sorted(name for name, w in weights.items() if w > 0)
    if len(names) < 2:
        raise ValueError("need at least two models with a positive weight")
    first = _draw(names, [weights[n] for n in names], rng)
    rest = [n for n in names if n != first]
    second = _draw(rest, [weights[n] for n in rest], rng)
    return (first, second) if rng.random() < 0.5 else (second, first)


def live_targets(weights: Mapping[str, float], targets: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The target pairs (sorted, once each) whose two models can both be drawn: a pair with a
    model down is skipped, never drawn half."""
    return sorted({tuple(sorted(pair)) for pair in targets if pair[0] != pair[1]  # type: ignore[misc]
                   and weights.get(pair[0], 0) > 0 and weights.get(pair[1], 0) > 0})


def _draw(names: Sequence[str], weights: Sequence[float], rng: random.Random) -> str:
    return rng.choices(list(names), weights=list(weights), k=1)[0]
