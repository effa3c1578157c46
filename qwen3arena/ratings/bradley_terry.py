"""Bradley-Terry ratings with bootstrap intervals, fitted on aggregated counts.

Model: P(i beats j) = 1 / (1 + base ** ((R_j - R_i) / scale)), base 10, scale 400. A tie is
half a win for each side; a both_bad vote is a tie by default (``both_bad_as_tie=True``) or
ignored by the fit (``False``); it is always counted in the table's ``both_bad`` column.

Fit: the votes become win counts W[i, j] (a few hundred numbers), and the penalised
log-likelihood  sum_ij W_ij log sigma(s_i - s_j) - l2/2 * sum_i s_i**2  is maximised by
Newton's method with a backtracking line search, vectorised over bootstrap rounds. The tiny
L2 term keeps a model with only wins (or only losses) finite; it is negligible otherwise.

Anchoring: by default the mean rating of the rated models is ``offset`` (1000); with
``anchor="name"`` that model is fixed at ``offset`` instead (its interval is then a point).
Unrated models (no vote that enters the fit) get NaN from the fit functions and are left out
of the table (listed in ``RatingTable.unrated``). Models in parts of the comparison graph that
never meet each other are each centred by the L2 term; their relative level is not identified.

Bootstrap: resampling votes with replacement is the same as drawing the counts of the
(pair, outcome) cells from a multinomial with the observed proportions, so each round is one
multinomial draw over at most n*n*4 cells instead of a pass over every vote.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse
from scipy.special import expit

from qwen3arena.ratings.matrices import (
    BOTH_BAD,
    MODEL_B,
    TIE,
    VoteArrays,
    filter_votes,
    model_stats,
    pair_outcome_counts,
    votes_to_arrays,
)

DEFAULT_L2 = 1e-4  # on natural-log strengths: a N(0, 100**2) prior, i.e. practically flat


# -- fitting on win-count matrices ----------------------------------------------------------

def _objective(W: np.ndarray, s: np.ndarray, l2: float) -> np.ndarray:
    d = s[:, :, None] - s[:, None, :]
    return -(W * np.logaddexp(0.0, -d)).sum(axis=(1, 2)) - 0.5 * l2 * (s * s).sum(axis=1)


def _fit_strengths(W: np.ndarray, l2: float, max_iter: int = 200,
                   tol: float = 1e-9) -> np.ndarray:
    """Natural-log strengths s (R, m) maximising the penalised likelihood for each W (R, m, m).

    The objective is strictly concave (l2 > 0), so damped Newton converges from zero.
    """
    if l2 <= 0:
        raise ValueError("l2 must be > 0 (it keeps undefeated models finite)")
    R, m, _ = W.shape
    N = W + np.swapaxes(W, 1, 2)
    s = np.zeros((R, m))
    f = _objective(W, s, l2)
    eye = np.eye(m)
    for _ in range(max_iter):
        d = s[:, :, None] - s[:, None, :]
        P, Q = expit(d), expit(-d)  # Q = 1 - P without cancellation for lopsided pairs
        grad = (W * Q - np.swapaxes(W, 1, 2) * P).sum(axis=2) - l2 * s  # = sum_j W - N * P
        V = N * P * Q
        H = eye * (V.sum(axis=2) + l2)[:, :, None] - V  # minus the Hessian: positive definite
        step = np.linalg.solve(H, grad[:, :, None])[:, :, 0]
        slope = (grad * step).sum(axis=1)  # Newton decrement: twice the gain still on offer
        # done when the step is tiny, or when what is left to gain is below rounding (in
        # nearly flat directions, e.g. an undefeated model with a tiny l2, the step is noise)
        if ((np.abs(step).max(axis=1) < tol) | (slope <= 1e-15 * (1.0 + np.abs(f)))).all():
            break
        t = np.ones(R)
        for _ in range(60):
            s_new = s + t[:, None] * step
            f_new = _objective(W, s_new, l2)
            # Armijo, with slack for rounding: near the optimum the gain is below float noise
            ok = f_new >= f + 1e-4 * t * slope - 1e-12 * (1.0 + np.abs(f))
            if ok.all():
                break
            t = np.where(ok, t, 0.5 * t)
        s, f = s_new, f_new
    else:
        warnings.warn(f"Bradley-Terry fit stopped after {max_iter} Newton steps "
                      f"(last step {np.abs(step).max():.2g})", RuntimeWarning, stacklevel=3)
    return s


class _CellMap:
    """Maps counts of the nonzero (a, b, outcome) cells to win matrices of the rated models."""

    def __init__(self, counts: np.ndarray, both_bad_as_tie: bool):
        counts = counts.copy()
        if not both_bad_as_tie:
            counts[..., BOTH_BAD] = 0.0
        n = counts.shape[0]
        played = (counts.sum(axis=(1, 2)) + counts.sum(axis=(0, 2))) > 0
        self.rated = np.flatnonzero(played)
        self.cells = np.flatnonzero(counts)
        self.cell_counts = counts.reshape(-1)[self.cells]
        m = len(self.rated)
        pos = np.full(n, -1)
        pos[self.rated] = np.arange(m)
        a, rest = np.divmod(self.cells, n * 4)
        b, o = np.divmod(rest, 4)
        a, b = pos[a], pos[b]
        is_tie = (o == TIE) | (o == BOTH_BAD)
        # each cell adds 1 to W[winner, loser], or 1/2 to both W[a, b] and W[b, a] for a tie
        rows = np.concatenate([np.arange(len(o)), np.flatnonzero(is_tie)])
        first = np.where(o == MODEL_B, b * m + a, a * m + b)
        cols = np.concatenate([first, (b * m + a)[is_tie]])
        vals = np.concatenate([np.where(is_tie, 0.5, 1.0), np.full(is_tie.sum(), 0.5)])
        self.m = m
        self.matrix = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(o), m * m))

    def wins(self, cell_counts: np.ndarray) -> np.ndarray:
        """(R, k) cell counts -> (R, m, m) win matrices."""
        flat = np.asarray((self.matrix.T @ cell_counts.T).T)
        return flat.reshape(-1, self.m, self.m)


def _to_ratings(s: np.ndarray, anchor_pos: int | None, offset: float, scale: float,
                base: float) -> np.ndarray:
    ref = s.mean(axis=1, keepdims=True) if anchor_pos is None else s[:, [anchor_pos]]
    return offset + scale / math.log(base) * (s - ref)


def _anchor_pos(models: Sequence[str], rated: np.ndarray, anchor: str | None) -> int | None:
    if anchor is None:
        return None
    if anchor not in models:
        raise ValueError(f"anchor model {anchor!r} is not in the model list")
    hit = np.flatnonzero(rated == list(models).index(anchor))
    if not len(hit):
        raise ValueError(f"anchor model {anchor!r} has no rated votes")
    return int(hit[0])


def _spread(values: np.ndarray, rated: np.ndarray, n: int) -> np.ndarray:
    out = np.full(values.shape[:-1] + (n,), np.nan)
    out[..., rated] = values
    return out


# -- public API ------------------------------------------------------------------------------

def fit_bradley_terry(votes: VoteArrays, *, both_bad_as_tie: bool = True,
                      l2: float = DEFAULT_L2, anchor: str | None = None,
                      offset: float = 1000.0, scale: float = 400.0,
                      base: float = 10.0) -> pd.Series:
    """Maximum-likelihood Bradley-Terry ratings, indexed by model (NaN: no rated votes).

    ``votes`` are used as given: filter them first (``filter_votes``).
    """
    cmap = _CellMap(pair_outcome_counts(votes), both_bad_as_tie)
    n = len(votes.models)
    if cmap.m == 0:
        return pd.Series(np.full(n, np.nan), index=list(votes.models), dtype=float)
    s = _fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2)
    r = _to_ratings(s, _anchor_pos(votes.models, cmap.rated, anchor), offset, scale, base)
    return pd.Series(_spread(r[0], cmap.rated, n), index=list(votes.models))


def bootstrap_bradley_terry(votes: VoteArrays, *, rounds: int = 100, seed: int | None = 0,
                            both_bad_as_tie: bool = True, l2: float = DEFAULT_L2,
                            anchor: str | None = None, offset: float = 1000.0,
                            scale: float = 400.0, base: float = 10.0) -> pd.DataFrame:
    """Bootstrap ratings, one row per round, one column per model (NaN: no rated votes).

    Each round resamples as many votes as there are, with replacement (as a multinomial draw
    over the aggregated (pair, outcome) cells), and refits.
    """
    cmap = _CellMap(pair_outcome_counts(votes), both_bad_as_tie)
    return pd.DataFrame(_bootstrap(cmap, votes.models, rounds, seed, l2, anchor, offset,
                                   scale, base), columns=list(votes.models))


def _bootstrap(cmap: _CellMap, models: Sequence[str], rounds: int, seed: int | None,
               l2: float, anchor: str | None, offset: float, scale: float,
               base: float) -> np.ndarray:
    n = len(models)
    if cmap.m == 0 or rounds <= 0:
        return np.full((max(rounds, 0), n), np.nan)
    rng = np.random.default_rng(seed)
    total = int(round(cmap.cell_counts.sum()))
    draws = rng.multinomial(total, cmap.cell_counts / cmap.cell_counts.sum(), size=rounds)
    s = _fit_strengths(cmap.wins(draws.astype(np.float64)), l2)
    r = _to_ratings(s, _anchor_pos(models, cmap.rated, anchor), offset, scale, base)
    return _spread(r, cmap.rated, n)


def rank_from_intervals(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Rank = 1 + number of models whose lower bound is strictly above this model's upper bound.

    Models whose intervals overlap share a rank, so a rank is only claimed when the data
    support it (the Chatbot Arena convention).
    """
    lower, upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


@dataclass(frozen=True)
class ModelRating:
    """One row of the leaderboard. ``win_rate`` = wins / (wins + losses), NaN if neither."""

    model: str
    rating: float
    lower: float
    upper: float
    rank: int
    votes: int
    wins: int
    losses: int
    ties: int
    both_bad: int
    win_rate: float


@dataclass(frozen=True)
class RatingTable:
    """Leaderboard rows sorted by rating (best first), plus what the numbers rest on."""

    rows: list[ModelRating] = field(default_factory=list)
    unrated: tuple[str, ...] = ()
    n_votes: int = 0  # votes that entered the fit
    rounds: int = 0
    confidence: float = 0.95
    anchor: str | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ModelRating]:
        return iter(self.rows)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([asdict(r) for r in self.rows], columns=list(_COLUMN_TYPES))
        return frame.astype(_COLUMN_TYPES)  # typed even when empty


_COLUMN_TYPES = {"model": object, "rating": float, "lower": float, "upper": float,
                 "rank": int, "votes": int, "wins": int, "losses": int, "ties": int,
                 "both_bad": int, "win_rate": float}


def rating_table(votes: VoteArrays, *, rounds: int = 100, seed: int | None = 0,
                 confidence: float = 0.95, both_bad_as_tie: bool = True,
                 l2: float = DEFAULT_L2, anchor: str | None = None, offset: float = 1000.0,
                 scale: float = 400.0, base: float = 10.0) -> RatingTable:
    """Bradley-Terry leaderboard with percentile bootstrap intervals and interval-aware ranks.

    ``votes`` are used as given (see ``rate`` for the filtering defaults). With ``rounds=0``
    the bounds are NaN and the rank uses the point ratings. No votes -> an empty table.
    """
    counts = pair_outcome_counts(votes)
    cmap = _CellMap(counts, both_bad_as_tie)
    models = list(votes.models)
    n = len(models)
    unrated = tuple(models[i] for i in np.setdiff1d(np.arange(n), cmap.rated))
    meta: dict[str, Any] = {"unrated": unrated, "n_votes": int(round(cmap.cell_counts.sum())),
                            "rounds": rounds, "confidence": confidence, "anchor": anchor}
    if cmap.m == 0:
        return RatingTable(**meta)
    anchor_pos = _anchor_pos(models, cmap.rated, anchor)
    point = _to_ratings(_fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2),
                        anchor_pos, offset, scale, base)[0]
    if rounds > 0:
        boot = _bootstrap(cmap, models, rounds, seed, l2, anchor, offset, scale, base)
        tail = 50.0 * (1.0 - confidence)
        lower, upper = np.percentile(boot[:, cmap.rated], [tail, 100.0 - tail], axis=0)
        rank = rank_from_intervals(lower, upper)
    else:
        lower = upper = np.full(cmap.m, np.nan)
        rank = rank_from_intervals(point, point)
    stats = model_stats(counts)
    rows = []
    for k, i in enumerate(cmap.rated):
        w, lo = int(stats["wins"][i]), int(stats["losses"][i])
        rows.append(ModelRating(
            model=models[i], rating=float(point[k]), lower=float(lower[k]),
            upper=float(upper[k]), rank=int(rank[k]), votes=int(stats["votes"][i]), wins=w,
            losses=lo, ties=int(stats["ties"][i]), both_bad=int(stats["both_bad"][i]),
            win_rate=w / (w + lo) if w + lo else math.nan))
    rows.sort(key=lambda r: (-r.rating, r.model))
    return RatingTable(rows=rows, **meta)


def rate(votes: Any, models: Sequence[str] | None = None, *, exclude_identity_leak: bool = True,
         exclude_ties: bool = False, exclude_both_bad: bool = False,
         **table_options: Any) -> RatingTable:
    """One call from stored votes to a leaderboard: convert, filter, ``rating_table``.

    ``votes``: VoteArrays, a list of VoteRecord, a DataFrame or a DuckDB relation/result.
    Identity-leak votes are excluded by default (the vote was not blind).
    """
    arrays = votes if isinstance(votes, VoteArrays) else votes_to_arrays(votes, models)
    arrays = filter_votes(arrays, exclude_identity_leak=exclude_identity_leak,
                          exclude_ties=exclude_ties, exclude_both_bad=exclude_both_bad)
    return rating_table(arrays, **table_options)
