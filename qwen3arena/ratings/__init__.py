"""Ratings from arena votes: Bradley-Terry leaderboard with closed-form (sandwich) or bootstrap
intervals, optional inverse pair-frequency weights, online Elo,
win-rate and battle-count matrices. Pure functions on numpy arrays of aggregated votes.

Typical use:  ``rate(store.list_votes()).to_frame()``  (identity-leak votes excluded, ties
half a win, both_bad a tie, mean rating 1000; see ``bradley_terry`` for the details).
"""

from qwen3arena.ratings.agreement import cohen_kappa, fleiss_kappa, percent_agreement
from qwen3arena.ratings.bradley_terry import (
    DEFAULT_L2,
    INTERVAL_METHODS,
    MIN_PAIR_VOTES,
    IntervalMethod,
    ModelRating,
    RatingDifference,
    RatingTable,
    bootstrap_bradley_terry,
    fit_bradley_terry,
    pair_weights,
    rank_from_intervals,
    rate,
    rating_difference,
    rating_table,
    sandwich_errors,
    strength_covariance,
)
from qwen3arena.ratings.elo import online_elo
from qwen3arena.ratings.matrices import (
    OUTCOMES,
    VoteArrays,
    battle_count_matrix,
    filter_votes,
    pair_outcome_counts,
    votes_to_arrays,
    win_rate_matrix,
)

__all__ = [
    "DEFAULT_L2", "INTERVAL_METHODS", "MIN_PAIR_VOTES", "OUTCOMES", "IntervalMethod", "ModelRating",
    "RatingDifference", "RatingTable", "VoteArrays",
    "battle_count_matrix", "bootstrap_bradley_terry", "cohen_kappa", "filter_votes", "fit_bradley_terry", "rating_difference",
    "fleiss_kappa", "pair_weights", "percent_agreement",
    "online_elo", "pair_outcome_counts", "rank_from_intervals", "rate", "rating_table",
    "sandwich_errors", "strength_covariance", "votes_to_arrays", "win_rate_matrix",
]
