"""Style control: a model that wins only by writing longer answers must not keep its lead."""

from __future__ import annotations

import numpy as np

from qwen3arena.ratings import rate
from qwen3arena.ratings.matrices import MODEL_A, MODEL_B, TIE, VoteArrays
from qwen3arena.ratings.style import answer_style, fit_style_controlled, style_difference


def test_answer_style_counts_length_and_markdown():
    conversation = [{"role": "user", "content": "# not counted"},
                    {"role": "assistant", "content": "## Steps\n- one\n- **two**\n1. three"},
                    {"role": "user", "content": "more"},
                    {"role": "assistant", "content": "plain"}]
    length, headers, items, bold = answer_style(conversation)
    assert (headers, items, bold) == (1, 3, 1)
    assert length == len("## Steps\n- one\n- **two**\n1. three\nplain")
    np.testing.assert_allclose(style_difference(np.array([3.0, 0.0]), np.array([1.0, 0.0])), [0.5, 0.0])


def _battles(n=3000, seed=1):
    """Three equally good models; "chatty" writes about twice as long, and voters pick the
    longer answer 80% of the time whoever wrote it."""
    rng = np.random.default_rng(seed)
    models = ("chatty", "concise", "neutral")
    mean_length = np.array([800.0, 400.0, 400.0])
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(1, 3, n)) % 3
    length_a = rng.lognormal(np.log(mean_length[a]), 0.6)
    length_b = rng.lognormal(np.log(mean_length[b]), 0.6)
    longer_a = length_a > length_b
    picks_longer = rng.random(n) < 0.8
    outcome = np.where(longer_a == picks_longer, MODEL_A, MODEL_B).astype(np.int8)
    outcome[rng.random(n) < 0.1] = TIE
    votes = VoteArrays(models, a.astype(np.int32), b.astype(np.int32), outcome, np.zeros(n, dtype=bool))
    styles_a = np.stack([length_a, np.zeros(n), np.zeros(n), np.zeros(n)], axis=1)
    styles_b = np.stack([length_b, np.zeros(n), np.zeros(n), np.zeros(n)], axis=1)
    return votes, style_difference(styles_a, styles_b)


def test_a_lead_won_by_length_alone_disappears_under_style_control():
    votes, differences = _battles()
    plain = rate(votes, rounds=0).to_frame().set_index("model")["rating"]
    assert plain["chatty"] - plain["concise"] > 80, plain  # the plain board rewards length

    controlled = fit_style_controlled(votes, differences)
    ratings = controlled.ratings.set_index("model")
    gap = ratings.loc["chatty", "rating"] - ratings.loc["concise", "rating"]
    assert abs(gap) < 25, ratings
    # the intervals of equally good models overlap
    assert ratings.loc["chatty", "lower"] < ratings.loc["concise", "upper"]
    length = controlled.coefficients.set_index("feature").loc["length"]
    assert length["lower"] > 50, controlled.coefficients  # length itself is what voters reward
    # features nobody varied get no weight
    assert (controlled.coefficients.set_index("feature").loc[["headers", "bold"], "points"].abs() < 1e-6).all()
    assert abs(ratings["rating"].mean() - 1000) < 1e-6


def test_without_a_style_effect_the_ratings_match_the_plain_board():
    votes, differences = _battles(seed=2)
    rng = np.random.default_rng(3)
    shuffled = differences[rng.permutation(len(differences))]  # style unrelated to the outcome
    controlled = fit_style_controlled(votes, shuffled).ratings.set_index("model")["rating"]
    plain = rate(votes, rounds=0).to_frame().set_index("model")["rating"]
    assert (controlled - plain).abs().max() < 15, (controlled, plain)
