"""Bradley-Terry ratings with closed-form (sandwich) or bootstrap intervals, fitted on counts.

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

Intervals (``intervals=``): "sandwich" (the default, as LMArena since 2025-07) is the
central-limit interval of an M-estimator, rating +- z * standard error with the covariance
H^-1 M H^-1: H the Hessian of the fit, M the sum of the squared per-vote scores. It needs no
refit, and it stays right when the model is only an approximation (ties as half wins are
not a Bradley-Terry outcome). "bootstrap": resampling votes with replacement is the same as
drawing the counts of the (pair, outcome) cells from a multinomial with the observed
proportions, so each round is one multinomial draw over at most n*n*4 cells instead of a pass
over every vote; the percentile interval of the refits.

Reweighting (``reweight=True``): each vote weighs 1 / max(votes of its pair, min_pair_votes),
scaled so the weights average 1, so a pair sampled far more often than the others (a target
pair, a parent against its child) does not dominate the fit (LMArena's inverse pair-frequency
weights). Both interval methods honour the weights (the bootstrap keeps them fixed).
"""

from __future__ import annotations

import math
import typing
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse
import scipy.stats
from scipy.special import expit

from qwen3arena.ratings.matrices import (
    BOTH_BAD,
    MODEL_A,
    MODEL_B,
    TIE,
    VoteArrays,
    filter_votes,
    model_stats,
    pair_outcome_counts,
    votes_to_arrays,
)

DEFAULT_L2 = 1e-4  # on natural-log strengths: a N(0, 100**2) prior, i.e. practically flat
MIN_PAIR_VOTES = 50  # reweighting: a pair with fewer votes weighs as if it had this many (LMArena's floor)
IntervalMethod = Literal["sandwich", "bootstrap", "none"]
INTERVAL_METHODS: tuple[str, ...] = typing.get_args(IntervalMethod)


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


def pair_weights(counts: np.ndarray, min_pair_votes: float = MIN_PAIR_VOTES) -> np.ndarray:
    """Weight of one vote of each (a, b) cell, shape (n, n): 1 / max(votes of the pair, floor),
    the pair counted in both seatings, scaled so the votes' weights average 1.

    Inverse pair frequency: every pair with at least ``min_pair_votes`` votes carries the same
    total weight, so a pair drawn ten times as often (a target pair) counts like any other;
    the floor keeps a pair with a handful of votes from weighing as much as a well-sampled one.
    """
    per_pair = counts.sum(axis=-1)
    per_pair = per_pair + per_pair.T
    weights = 1.0 / np.maximum(per_pair, max(float(min_pair_votes), 1e-12))
    total = counts.sum()
    used = (weights[..., None] * counts).sum()
    return weights * (total / used) if used > 0 else weights


class _CellMap:
    """Maps counts of the nonzero (a, b, outcome) cells to win matrices of the rated models.

    With ``reweight`` every cell's wins are scaled by its pair's weight (``pair_weights`` of the
    votes that enter the fit); the weights stay fixed when a bootstrap redraws the counts."""

    def __init__(self, counts: np.ndarray, both_bad_as_tie: bool, reweight: bool = False,
                 min_pair_votes: float = MIN_PAIR_VOTES):
        counts = counts.copy()
        if not both_bad_as_tie:
            counts[..., BOTH_BAD] = 0.0
        weights = pair_weights(counts, min_pair_votes) if reweight else None
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
        self.cell_weights = np.ones(len(o)) if weights is None else weights[a, b]
        a, b = pos[a], pos[b]
        is_tie = (o == TIE) | (o == BOTH_BAD)
        # each cell's score for its model a: 1 a win, 0 a loss, 1/2 a tie (the sandwich's y)
        self.a, self.b = a, b
        self.score = np.where(o == MODEL_A, 1.0, np.where(o == MODEL_B, 0.0, 0.5))
        # each cell adds 1 to W[winner, loser], or 1/2 to both W[a, b] and W[b, a] for a tie
        rows = np.concatenate([np.arange(len(o)), np.flatnonzero(is_tie)])
        first = np.where(o == MODEL_B, b * m + a, a * m + b)
        cols = np.concatenate([first, (b * m + a)[is_tie]])
        vals = np.concatenate([np.where(is_tie, 0.5, 1.0), np.full(is_tie.sum(), 0.5)])
        vals = vals * self.cell_weights[rows]
        self.m = m
        self.matrix = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(len(o), m * m))

    def wins(self, cell_counts: np.ndarray) -> np.ndarray:
        """(R, k) cell counts -> (R, m, m) win matrices (weighted when the map is)."""
        flat = np.asarray((self.matrix.T @ cell_counts.T).T)
        return flat.reshape(-1, self.m, self.m)

    def covariance(self, s: np.ndarray, l2: float, robust: bool = True) -> np.ndarray:
        """Sandwich covariance H^-1 M H^-1 of the strengths s (m,) fitted on these counts
        (``robust=False``: the model's own H^-1, the inverse Fisher information).

        Per vote of cell (a, b) with weight w and score y: gradient w * (y - p) * (e_a - e_b),
        Hessian w * p * (1 - p) * (e_a - e_b)(e_a - e_b)^T, p = sigma(s_a - s_b). H carries the
        fit's L2 term, so a direction no vote pins down (a component's level) stays finite;
        M is the uncentred sum of squared gradients, as in LMArena's arena-rank.
        """
        p = expit(s[self.a] - s[self.b])
        hess = self.cell_counts * self.cell_weights * p * (1.0 - p)
        meat = self.cell_counts * self.cell_weights ** 2 * (self.score - p) ** 2
        H = _laplacian(self.a, self.b, hess, self.m) + l2 * np.eye(self.m)
        H_inv = np.linalg.inv(H)
        if not robust:
            return H_inv
        M = _laplacian(self.a, self.b, meat, self.m)
        cov = H_inv @ M @ H_inv
        return 0.5 * (cov + cov.T)


def _laplacian(a: np.ndarray, b: np.ndarray, values: np.ndarray, m: int) -> np.ndarray:
    """sum_k values_k (e_a - e_b)(e_a - e_b)^T over cells k: one bincount, any number of cells."""
    flat = np.concatenate([a * m + a, b * m + b, a * m + b, b * m + a])
    return np.bincount(flat, np.concatenate([values, values, -values, -values]),
                       minlength=m * m).reshape(m, m)


def _to_ratings(s: np.ndarray, anchor_pos: int | None, offset: float, scale: float,
                base: float) -> np.ndarray:
    ref = s.mean(axis=1, keepdims=True) if anchor_pos is None else s[:, [anchor_pos]]
    return offset + scale / math.log(base) * (s - ref)


def _rating_errors(cov: np.ndarray, anchor_pos: int | None, scale: float, base: float) -> np.ndarray:
    """Standard errors of the ratings (m,) from the strengths' covariance: the rating is a
    linear map of the strengths (minus their mean, or minus the anchor's), so its covariance
    is C cov C^T; the anchor's own error is 0."""
    m = cov.shape[0]
    ref = np.full((m, m), 1.0 / m) if anchor_pos is None else np.outer(np.ones(m), np.eye(m)[anchor_pos])
    C = np.eye(m) - ref
    var = np.einsum("ij,jk,ik->i", C, cov, C)
    return scale / math.log(base) * np.sqrt(np.clip(var, 0.0, None))


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
                      base: float = 10.0, reweight: bool = False,
                      min_pair_votes: float = MIN_PAIR_VOTES) -> pd.Series:
    """Maximum-likelihood Bradley-Terry ratings, indexed by model (NaN: no rated votes).

    ``votes`` are used as given: filter them first (``filter_votes``). ``reweight``: inverse
    pair-frequency weights (``pair_weights``).
    """
    cmap = _CellMap(pair_outcome_counts(votes), both_bad_as_tie, reweight, min_pair_votes)
    n = len(votes.models)
    if cmap.m == 0:
        return pd.Series(np.full(n, np.nan), index=list(votes.models), dtype=float)
    s = _fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2)
    r = _to_ratings(s, _anchor_pos(votes.models, cmap.rated, anchor), offset, scale, base)
    return pd.Series(_spread(r[0], cmap.rated, n), index=list(votes.models))


def bootstrap_bradley_terry(votes: VoteArrays, *, rounds: int = 100, seed: int | None = 0,
                            both_bad_as_tie: bool = True, l2: float = DEFAULT_L2,
                            anchor: str | None = None, offset: float = 1000.0,
                            scale: float = 400.0, base: float = 10.0, reweight: bool = False,
                            min_pair_votes: float = MIN_PAIR_VOTES) -> pd.DataFrame:
    """Bootstrap ratings, one row per round, one column per model (NaN: no rated votes).

    Each round resamples as many votes as there are, with replacement (as a multinomial draw
    over the aggregated (pair, outcome) cells), and refits.
    """
    cmap = _CellMap(pair_outcome_counts(votes), both_bad_as_tie, reweight, min_pair_votes)
    return pd.DataFrame(_bootstrap(cmap, votes.models, rounds, seed, l2, anchor, offset,
                                   scale, base), columns=list(votes.models))


def sandwich_errors(votes: VoteArrays, *, both_bad_as_tie: bool = True, l2: float = DEFAULT_L2,
                    anchor: str | None = None, scale: float = 400.0, base: float = 10.0,
                    reweight: bool = False, min_pair_votes: float = MIN_PAIR_VOTES) -> pd.Series:
    """Closed-form (sandwich) standard errors of the ratings, in rating points, by model
    (NaN: no rated votes; 0 for the anchor). The 95% interval is rating +- 1.96 * error."""
    cmap = _CellMap(pair_outcome_counts(votes), both_bad_as_tie, reweight, min_pair_votes)
    n = len(votes.models)
    if cmap.m == 0:
        return pd.Series(np.full(n, np.nan), index=list(votes.models), dtype=float)
    s = _fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2)[0]
    errors = _rating_errors(cmap.covariance(s, l2), _anchor_pos(votes.models, cmap.rated, anchor),
                            scale, base)
    return pd.Series(_spread(errors, cmap.rated, n), index=list(votes.models))


def strength_covariance(counts: np.ndarray, *, l2: float = DEFAULT_L2, both_bad_as_tie: bool = True,
                        robust: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rated model indices, strengths, their covariance) in natural-log units from a count
    tensor (``pair_outcome_counts``): what a caller needs to ask how uncertain a comparison
    is (the pair sampler) without building a table. ``robust=False``: inverse Fisher
    information instead of the sandwich (steadier with a handful of votes)."""
    cmap = _CellMap(counts, both_bad_as_tie)
    if cmap.m == 0:
        return cmap.rated, np.zeros(0), np.zeros((0, 0))
    s = _fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2)[0]
    return cmap.rated, s, cmap.covariance(s, l2, robust=robust)


@dataclass(frozen=True)
class RatingDifference:
    """Rating of `a` minus rating of `b` (rating points) with its interval: the question "did
    the new checkpoint beat its parent" is this interval, not whether two marginal intervals
    overlap (those are correlated through the shared mean, and too wide or too narrow for a
    difference depending on the covariance)."""

    a: str
    b: str
    difference: float
    lower: float
    upper: float
    votes_a: int
    votes_b: int
    confidence: float
    min_votes: int = 10

    @property
    def verdict(self) -> str:
        """'better' / 'worse' when the interval excludes 0 and each side has `min_votes`;
        'too few votes' below that (with 4 votes a side the sandwich interval excluded 0 for
        10% of equal pairs, at 10 for 6%, nominal 5%: bench/verdict_calibration.py); else
        'unclear'."""
        if min(self.votes_a, self.votes_b) < self.min_votes:
            return "too few votes"
        if self.lower > 0:
            return "better"
        if self.upper < 0:
            return "worse"
        return "unclear"


def rating_difference(votes: VoteArrays, a: str, b: str, *, confidence: float = 0.95,
                      robust: bool = True, both_bad_as_tie: bool = True, l2: float = DEFAULT_L2,
                      scale: float = 400.0, base: float = 10.0) -> RatingDifference | None:
    """The sandwich interval of rating(a) - rating(b); None when either has no rated votes.
    ``robust=False``: inverse Fisher information instead of the sandwich."""
    cmap = _CellMap(pair_outcome_counts(votes), both_bad_as_tie)
    models = list(votes.models)
    if a not in models or b not in models:
        return None
    pos = {int(model): k for k, model in enumerate(cmap.rated)}
    ia, ib = models.index(a), models.index(b)
    if ia not in pos or ib not in pos:
        return None
    s = _fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2)[0]
    cov = cmap.covariance(s, l2, robust=robust)
    ka, kb = pos[ia], pos[ib]
    points = scale / math.log(base)
    diff = points * float(s[ka] - s[kb])
    se = points * math.sqrt(max(cov[ka, ka] + cov[kb, kb] - 2 * cov[ka, kb], 0.0))
    half = float(scipy.stats.norm.ppf(0.5 + confidence / 2.0)) * se
    stats = model_stats(pair_outcome_counts(votes))
    return RatingDifference(a, b, diff, diff - half, diff + half, int(stats["votes"][ia]),
                            int(stats["votes"][ib]), confidence)


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
    rounds: int = 0  # bootstrap rounds (0 unless intervals == "bootstrap")
    confidence: float = 0.95
    anchor: str | None = None
    intervals: str = "sandwich"  # how lower/upper were computed (INTERVAL_METHODS)
    reweighted: bool = False  # inverse pair-frequency weights were on

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


def rating_table(votes: VoteArrays, *, intervals: IntervalMethod = "sandwich", rounds: int = 100,
                 seed: int | None = 0, confidence: float = 0.95, both_bad_as_tie: bool = True,
                 l2: float = DEFAULT_L2, anchor: str | None = None, offset: float = 1000.0,
                 scale: float = 400.0, base: float = 10.0, reweight: bool = False,
                 min_pair_votes: float = MIN_PAIR_VOTES) -> RatingTable:
    """Bradley-Terry leaderboard with intervals and interval-aware ranks.

    ``intervals``: "sandwich" (closed form, the default), "bootstrap" (percentile interval of
    ``rounds`` refits; ``rounds=0`` means none) or "none" (NaN bounds, ranks from the point
    ratings). ``reweight``: inverse pair-frequency weights. ``votes`` are used as given (see
    ``rate`` for the filtering defaults). No votes -> an empty table.
    """
    if intervals not in INTERVAL_METHODS:
        raise ValueError(f"intervals must be one of {INTERVAL_METHODS}, not {intervals!r}")
    if intervals == "bootstrap" and rounds <= 0:
        intervals = "none"
    counts = pair_outcome_counts(votes)
    cmap = _CellMap(counts, both_bad_as_tie, reweight, min_pair_votes)
    models = list(votes.models)
    n = len(models)
    unrated = tuple(models[i] for i in np.setdiff1d(np.arange(n), cmap.rated))
    meta: dict[str, Any] = {"unrated": unrated, "n_votes": int(round(cmap.cell_counts.sum())),
                            "rounds": rounds if intervals == "bootstrap" else 0,
                            "confidence": confidence, "anchor": anchor, "intervals": intervals,
                            "reweighted": reweight}
    if cmap.m == 0:
        return RatingTable(**meta)
    anchor_pos = _anchor_pos(models, cmap.rated, anchor)
    s = _fit_strengths(cmap.wins(cmap.cell_counts[None, :]), l2)
    point = _to_ratings(s, anchor_pos, offset, scale, base)[0]
    if intervals == "sandwich":
        z = float(scipy.stats.norm.ppf(0.5 + confidence / 2.0))
        half = z * _rating_errors(cmap.covariance(s[0], l2), anchor_pos, scale, base)
        lower, upper = point - half, point + half
        rank = rank_from_intervals(lower, upper)
    elif intervals == "bootstrap":
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
