"""Online Elo: a secondary, order-dependent view of the votes.

Every vote moves both ratings by K * (score - expected). Unlike Bradley-Terry the result
depends on the order of the votes (recent votes weigh more, and the same votes shuffled give
different numbers), so it is a "how things moved" view, not the leaderboard. Votes are
processed in the order of the arrays; ``Store.list_votes`` returns them by creation time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qwen3arena.ratings.matrices import BOTH_BAD, MODEL_A, MODEL_B, TIE, VoteArrays


def online_elo(votes: VoteArrays, *, k: float = 4.0, initial: float = 1000.0,
               scale: float = 400.0, base: float = 10.0,
               both_bad_as_tie: bool = True) -> pd.Series:
    """Elo ratings after replaying the votes in order, indexed by model (NaN: no rated votes).

    Scores: model_a win 1, model_b win 0, tie 1/2; both_bad is a tie with ``both_bad_as_tie``
    and skipped without it. Every model starts at ``initial``.
    """
    score_of = {MODEL_A: 1.0, MODEL_B: 0.0, TIE: 0.5}
    if both_bad_as_tie:
        score_of[BOTH_BAD] = 0.5
    n = len(votes.models)
    ratings = [float(initial)] * n
    seen = np.zeros(n, dtype=bool)
    keep = np.isin(votes.outcome, list(score_of))
    a, b, outcome = votes.a[keep], votes.b[keep], votes.outcome[keep]
    seen[a] = True
    seen[b] = True
    scores = np.array([score_of.get(o, 0.0) for o in range(4)])[outcome]
    for i, j, s in zip(a.tolist(), b.tolist(), scores.tolist()):  # sequential by nature
        expected = 1.0 / (1.0 + base ** ((ratings[j] - ratings[i]) / scale))
        delta = k * (s - expected)
        ratings[i] += delta
        ratings[j] -= delta
    out = np.where(seen, np.array(ratings), np.nan)
    return pd.Series(out, index=list(votes.models), dtype=float)
