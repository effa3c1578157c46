"""Pairs chosen for information: the next battle goes where one more vote shrinks the
uncertainty that matters most, "did this round beat its parent" above all, then the order of
neighbours on the board.

Why: drawn uniformly, a new checkpoint meets its parent in 1 battle of 45 among 10 models, and
most votes go to pairs whose order is long settled. Here every drawable pair gets a score:

  the questions  each (checkpoint, parent) pair, weighted ``parent_focus``, and each pair of
                 neighbours in the current order of the drawable models, weighted 1; each
                 asked two ways: "diff", does the 95% interval of the difference exclude 0,
                 and "board", have the two models' own 95% intervals stopped overlapping (what
                 the lineage view's "better" and the board's ranks show);
  still open     a question whose gap is z standard errors (the difference's, or the sum of
                 the two models' own) is weighted Phi(z_stop - z): about 1 while far from
                 settled, fading once settled;
  one more vote  on pair (i, j) adds p(1 - p) (e_i - e_j)(e_i - e_j)^T to the Fisher
                 information, so (Sherman-Morrison) the variance of any contrast c falls by
                 v (u_i - u_j)^2 / (1 + v d_ij), u = Cov c, d_ij = Var(s_i - s_j); the score
                 sums the open questions' relative falls (of the difference's variance, of
                 the sum of the two standard errors), so a question that already had many
                 votes gains less from one more: no question absorbs every battle.

The constraints stay those of ``sample_pair``: only models that are up (positive weight) are
drawn; ``target_share`` of battles still go to the target pairs; each pair's score is
multiplied by its two models' weights (configured weight times the new-model boost); and a
share ``explore`` of battles is drawn exactly as ``sample_pair`` draws them, so no model is
starved of battles whatever the scores say. Pairs are drawn at random in proportion to their
score, not taken greedily, so concurrent battles do not all land on one pair.

The covariance is the model's (inverse Fisher information) with a N(0, prior_sd^2) prior on
each rating, so a model with no votes is maximally uncertain rather than undefined.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
from scipy.special import expit, ndtr

from qwen3arena.arena.sampling import live_targets, sample_pair
from qwen3arena.config import ArenaSettings
from qwen3arena.ratings import OUTCOMES, strength_covariance

if TYPE_CHECKING:  # the store pulls in duckdb; only its method names are used here
    from qwen3arena.store import ModelRecord


class VoteSource(Protocol):
    """What a draw reads: the Store, or the arena's copy of its answers (a second or two old)."""

    def vote_tallies(self) -> dict[tuple[str, str, str], int]: ...

    def list_models(self) -> "list[ModelRecord]": ...

POINTS = 400.0 / math.log(10.0)  # natural-log strength -> rating points


@dataclass(frozen=True)
class InformativeOptions:
    """The sampler's knobs; the first two are ArenaSettings' (their defaults live there), the
    rest are fixed here (the benchmarked values)."""

    parent_focus: float = ArenaSettings.parent_focus  # weight of each "did the checkpoint beat its parent"
    explore: float = ArenaSettings.explore_share      # share of battles drawn as sample_pair draws them
    z_stop: float = 1.96        # a question counts as settled past this z (95%)
    prior_sd: float = 200.0     # rating points: how far a model with no votes may be from the mean
    sharpness: float = 8.0      # pairs are drawn in proportion to score ** sharpness (large: greedy;
                                # 1 spreads battles over every pair that helps a little)


def contrast_fall(cov: np.ndarray, C: np.ndarray, i: np.ndarray, j: np.ndarray, v: np.ndarray) -> np.ndarray:
    """How much one more vote on pair (i[k], j[k]), of Fisher information v[k], lowers the
    variance of each contrast (column of C): (pairs, contrasts). Sherman-Morrison: adding
    v x x^T (x = e_i - e_j) to the information turns Cov into Cov - v Cov x x^T Cov / (1 + v x^T Cov x),
    so no matrix is inverted per pair."""
    U = cov @ C
    shrink = v / (1.0 + v * (cov[i, i] + cov[j, j] - 2.0 * cov[i, j]))
    return shrink[:, None] * (U[i] - U[j]) ** 2


def pair_scores(counts: np.ndarray, names: Sequence[str], drawable: Sequence[str],
                parents: Sequence[tuple[str, str]] = (),
                options: InformativeOptions = InformativeOptions()) -> dict[tuple[str, str], float]:
    """Score of one more vote on each pair of drawable models (sorted name pairs), from the
    votes so far: ``counts`` is the (a, b, outcome) tensor over ``names``
    (``ratings.pair_outcome_counts``); ``parents`` lists (checkpoint, parent) pairs."""
    index = {name: i for i, name in enumerate(names)}
    live = sorted({index[name] for name in drawable if name in index})
    n = len(names)
    if len(live) < 2:
        return {}
    prior = (POINTS / options.prior_sd) ** 2  # precision of the N(0, prior_sd^2) prior, natural units
    s = np.zeros(n)
    if counts.sum() > 0:
        rated, fitted, _ = strength_covariance(counts, l2=prior, robust=False)
        s[rated] = fitted
    played = counts.sum(axis=-1)
    played = played + played.T
    p = expit(s[:, None] - s[None, :])
    info = played * p * (1.0 - p)
    cov = np.linalg.inv(np.diag(info.sum(axis=1)) - info + prior * np.eye(n))

    questions, importance = [], []
    for child, parent in parents:
        if child in index and parent in index and child != parent and (index[child] in live or index[parent] in live):
            questions.append((index[child], index[parent]))
            importance.append(options.parent_focus)
    order = sorted(live, key=lambda i: s[i])
    for low, high in zip(order, order[1:]):
        questions.append((high, low))
        importance.append(1.0)
    first, second = np.array([q[0] for q in questions]), np.array([q[1] for q in questions])
    k = np.arange(len(questions))
    # "diff": the difference's own interval; its contrast c = e_first - e_second
    C = np.zeros((n, len(questions)))
    C[first, k] = 1.0
    C[second, k] -= 1.0
    V = np.einsum("iq,iq->q", C, cov @ C)
    gap = np.abs(s @ C)
    diff_open = np.asarray(importance) * ndtr(options.z_stop - gap / np.sqrt(V))
    # "board": the two models' own intervals (rating minus the mean), which must stop overlapping
    E = np.eye(n) - 1.0 / n
    se = np.sqrt(np.einsum("im,im->m", E, cov @ E))
    spread = se[first] + se[second]
    board_open = np.asarray(importance) * ndtr(options.z_stop - gap / spread)

    i, j = np.array([(a, b) for k, a in enumerate(live) for b in live[k + 1:]]).T
    v = p[i, j] * (1.0 - p[i, j])
    diff_fall = contrast_fall(cov, C, i, j, v) / V[None, :]            # relative fall of V_q
    se_fall = contrast_fall(cov, E, i, j, v) / (2.0 * se[None, :])      # fall of each model's se
    board_fall = (se_fall[:, first] + se_fall[:, second]) / spread[None, :]  # relative fall of se + se
    score = diff_fall @ diff_open + board_fall @ board_open
    return {tuple(sorted((names[a], names[b]))): float(x) for a, b, x in zip(i, j, score)}


def sample_informative_pair(weights: Mapping[str, float], rng: random.Random, counts: np.ndarray,
                            names: Sequence[str], parents: Sequence[tuple[str, str]] = (),
                            targets: Sequence[tuple[str, str]] = (), target_share: float = 0.0,
                            options: InformativeOptions = InformativeOptions()) -> tuple[str, str]:
    """Two distinct models in random order: a target pair (``target_share``), a plain weighted
    draw (``options.explore``), else a pair drawn in proportion to its weights times its score
    (``pair_scores``). Models missing from ``names`` (no votes yet) are added as unvoted."""
    names = list(names)
    missing = sorted(set(weights) - set(names))
    if missing:
        n = len(names) + len(missing)
        grown = np.zeros((n, n, counts.shape[-1] if counts.ndim == 3 else 4))
        grown[:len(names), :len(names)] = counts
        counts, names = grown, names + missing
    live = {name: w for name, w in weights.items() if w > 0}
    if target_share > 0 and live_targets(weights, targets) and rng.random() < target_share:
        return sample_pair(weights, rng, targets, 1.0)  # the target draw, as sample_pair makes it
    if len(live) < 2 or rng.random() < options.explore:
        return sample_pair(weights, rng)
    scores = pair_scores(counts, names, sorted(live), parents, options)
    pairs = sorted(scores)
    mass = [live[a] * live[b] * scores[(a, b)] ** options.sharpness for a, b in pairs]
    if not sum(mass) > 0:
        return sample_pair(weights, rng)
    pair = list(rng.choices(pairs, weights=mass, k=1)[0])
    rng.shuffle(pair)
    return pair[0], pair[1]


def tally_counts(tallies: Mapping[tuple[str, str, str], int]) -> tuple[list[str], np.ndarray]:
    """Model names and the (a, b, outcome) count tensor from ``Store.vote_tallies``."""
    names = sorted({name for a, b, _ in tallies for name in (a, b)})
    index = {name: i for i, name in enumerate(names)}
    counts = np.zeros((len(names), len(names), len(OUTCOMES)))
    for (a, b, outcome), n in tallies.items():
        if a != b and outcome in OUTCOMES:
            counts[index[a], index[b], OUTCOMES.index(outcome)] += n
    return names, counts


def draw_pair(store: "VoteSource", settings: ArenaSettings, weights: Mapping[str, float], rng: random.Random,
              targets: Sequence[tuple[str, str]] = ()) -> tuple[str, str]:
    """The arena's draw under its settings: ``sample_pair`` when ``pair_sampler`` is
    "weighted", else ``sample_informative_pair`` on the stored votes (one aggregate query) with
    every checkpoint's parent as a question when ``parent_pairs`` is on."""
    if settings.pair_sampler != "informative":
        return sample_pair(weights, rng, targets, settings.target_share)
    names, counts = tally_counts(store.vote_tallies())
    parents = ([(m.name, str(m.metadata["parent"])) for m in store.list_models() if m.metadata.get("parent")]
               if settings.parent_pairs else [])
    options = InformativeOptions(parent_focus=settings.parent_focus, explore=settings.explore_share)
    return sample_informative_pair(weights, rng, counts, names, parents, targets, settings.target_share, options)
