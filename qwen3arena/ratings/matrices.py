"""Votes as numpy arrays, and the aggregated count matrices every rating is computed from.

Ratings are fitted on aggregated counts, not on vote rows: a (model_a, model_b, outcome)
count tensor has n_models**2 * 4 cells however many votes there are, which is what makes a
million votes cheap. Outcome codes follow the order of ``qwen3arena.store.OUTCOMES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the store pulls in duckdb; the ratings only need its field names
    from qwen3arena.store import VoteRecord

OUTCOMES: tuple[str, ...] = ("model_a", "model_b", "tie", "both_bad")
MODEL_A, MODEL_B, TIE, BOTH_BAD = range(4)


@dataclass(frozen=True)
class VoteArrays:
    """Votes in column form: ``a[i]``, ``b[i]`` index ``models``; ``outcome[i]`` is a code 0..3.

    Row order is vote order (it matters for online Elo only).
    """

    models: tuple[str, ...]
    a: np.ndarray  # int32
    b: np.ndarray  # int32
    outcome: np.ndarray  # int8, index into OUTCOMES
    identity_leak: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def take(self, mask_or_index: np.ndarray) -> "VoteArrays":
        return VoteArrays(self.models, self.a[mask_or_index], self.b[mask_or_index],
                          self.outcome[mask_or_index], self.identity_leak[mask_or_index])


def votes_to_arrays(votes: Iterable["VoteRecord"] | pd.DataFrame | Any,
                    models: Sequence[str] | None = None) -> VoteArrays:
    """Converts votes to arrays.

    ``votes`` is an iterable of ``VoteRecord``, a pandas DataFrame with columns model_a,
    model_b, outcome (and optionally identity_leak), or anything with a ``.df()`` method that
    returns such a frame (a DuckDB relation or result). The model list is ``models`` (in that
    order) followed by any other model seen in the votes, sorted by name; listing a model with
    no votes is allowed (it ends up unrated). An unknown outcome raises ValueError.
    """
    if not isinstance(votes, pd.DataFrame) and hasattr(votes, "df"):
        votes = votes.df()
    if isinstance(votes, pd.DataFrame):
        col_a, col_b, col_o = votes["model_a"], votes["model_b"], votes["outcome"]
        leak = (votes["identity_leak"].to_numpy(dtype=bool) if "identity_leak" in votes
                else np.zeros(len(votes), dtype=bool))
    else:
        rows = list(votes)
        col_a = np.array([v.model_a for v in rows], dtype=object)
        col_b = np.array([v.model_b for v in rows], dtype=object)
        col_o = np.array([v.outcome for v in rows], dtype=object)
        leak = np.fromiter((bool(v.identity_leak) for v in rows), dtype=bool, count=len(rows))

    names = list(models or ())
    if len(set(names)) != len(names):
        raise ValueError("models has duplicate names")
    # factorize each column once (fast on a million rows), then map the few distinct values
    codes_a, seen_a = pd.factorize(col_a)
    codes_b, seen_b = pd.factorize(col_b)
    if (codes_a < 0).any() or (codes_b < 0).any():
        raise ValueError("a vote has no model name")
    known = set(names)
    names += sorted({str(m) for m in (*seen_a, *seen_b)} - known)
    position = {name: i for i, name in enumerate(names)}
    a = _recode(codes_a, [position[str(m)] for m in seen_a], np.int32)
    b = _recode(codes_b, [position[str(m)] for m in seen_b], np.int32)
    codes_o, seen_o = pd.factorize(col_o)
    bad = sorted(str(o) for o in seen_o if o not in OUTCOMES)
    if bad or (codes_o < 0).any():
        raise ValueError(f"unknown vote outcome(s): {bad or ['<missing>']}; "
                         f"expected one of {OUTCOMES}")
    outcome = _recode(codes_o, [OUTCOMES.index(o) for o in seen_o], np.int8)
    if (a == b).any():
        raise ValueError("a vote pits a model against itself")
    return VoteArrays(tuple(names), a, b, outcome, leak)


def _recode(codes: np.ndarray, lookup: list[int], dtype: type) -> np.ndarray:
    return np.asarray(lookup, dtype=dtype)[codes] if lookup else np.zeros(0, dtype=dtype)


def filter_votes(votes: VoteArrays, *, exclude_identity_leak: bool = True,
                 exclude_ties: bool = False, exclude_both_bad: bool = False) -> VoteArrays:
    """Drops votes that should not count.

    Identity-leak votes are dropped by default: once a model has named itself the vote is no
    longer blind. Ties and both_bad are kept by default (see ``both_bad_as_tie`` in the fits).
    """
    keep = np.ones(len(votes), dtype=bool)
    if exclude_identity_leak:
        keep &= ~votes.identity_leak
    if exclude_ties:
        keep &= votes.outcome != TIE
    if exclude_both_bad:
        keep &= votes.outcome != BOTH_BAD
    return votes if keep.all() else votes.take(keep)


def pair_outcome_counts(votes: VoteArrays) -> np.ndarray:
    """Count tensor ``C[a, b, outcome]`` (float64, shape n x n x 4), one pass of bincount."""
    n = len(votes.models)
    flat = (votes.a.astype(np.int64) * n + votes.b) * 4 + votes.outcome
    return np.bincount(flat, minlength=n * n * 4).astype(np.float64).reshape(n, n, 4)


def win_matrix(counts: np.ndarray, *, both_bad_as_tie: bool = True) -> np.ndarray:
    """``W[i, j]``: how often i beat j, whichever side it sat on; a tie is half a win each.

    With ``both_bad_as_tie`` a both_bad vote counts as a tie; without it, it is ignored.
    Works on one tensor (n, n, 4) or a stack of them (..., n, n, 4).
    """
    ties = counts[..., TIE] + counts[..., BOTH_BAD] if both_bad_as_tie else counts[..., TIE]
    swap = lambda m: np.swapaxes(m, -1, -2)  # noqa: E731
    return counts[..., MODEL_A] + swap(counts[..., MODEL_B]) + 0.5 * (ties + swap(ties))


def model_stats(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per model: votes, wins, losses, ties, both_bad (as seen from that model's side)."""
    row, col = counts.sum(axis=1), counts.sum(axis=0)  # (n, 4): as model_a / as model_b
    wins = row[:, MODEL_A] + col[:, MODEL_B]
    losses = row[:, MODEL_B] + col[:, MODEL_A]
    ties = row[:, TIE] + col[:, TIE]
    both_bad = row[:, BOTH_BAD] + col[:, BOTH_BAD]
    return {"votes": wins + losses + ties + both_bad, "wins": wins, "losses": losses,
            "ties": ties, "both_bad": both_bad}


def battle_count_matrix(votes: VoteArrays) -> pd.DataFrame:
    """Battles between each pair (all outcomes, symmetric), indexed by model name."""
    pair = pair_outcome_counts(votes).sum(axis=2)
    return pd.DataFrame((pair + pair.T).astype(np.int64), index=list(votes.models),
                        columns=list(votes.models))


def win_rate_matrix(votes: VoteArrays, *, ties_as_half: bool = False,
                    both_bad_as_tie: bool = True) -> pd.DataFrame:
    """Fraction of battles the row model won against the column model (NaN: no battles).

    By default over decisive battles only (ties and both_bad left out). With ``ties_as_half``
    ties count as half a win in a denominator that includes them; ``both_bad_as_tie`` then
    decides whether both_bad votes count as ties or are left out.
    """
    counts = pair_outcome_counts(votes)
    if ties_as_half:
        wins = win_matrix(counts, both_bad_as_tie=both_bad_as_tie)
    else:
        wins = counts[..., MODEL_A] + counts[..., MODEL_B].T
    total = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, wins / total, np.nan)
    return pd.DataFrame(rate, index=list(votes.models), columns=list(votes.models))
