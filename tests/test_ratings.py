"""Ratings: hand-checked Bradley-Terry cases, simulations with known strengths, closed-form
and bootstrap interval coverage, inverse pair-frequency weights, interval ranks, online Elo,
matrices and the no-vote edge cases."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

from qwen3arena.ratings import (
    OUTCOMES,
    battle_count_matrix,
    bootstrap_bradley_terry,
    filter_votes,
    fit_bradley_terry,
    online_elo,
    pair_outcome_counts,
    pair_weights,
    rank_from_intervals,
    rate,
    rating_difference,
    rating_table,
    sandwich_errors,
    strength_covariance,
    votes_to_arrays,
    win_rate_matrix,
)
from qwen3arena.store import VoteRecord

TINY = 1e-10  # regularisation small enough to compare with closed forms


def frame(*triples: tuple[str, str, str], leak: list[bool] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(triples, columns=["model_a", "model_b", "outcome"])
    if leak is not None:
        df["identity_leak"] = leak
    return df


def arrays(*triples: tuple[str, str, str], models=None):
    return votes_to_arrays(frame(*triples), models=models)


def record(i: int, model_a: str, model_b: str, outcome: str, leak: bool = False) -> VoteRecord:
    return VoteRecord(f"v{i}", f"b{i}", "anon:1", outcome, model_a, model_b, 1, leak,
                      datetime(2025, 1, 1, tzinfo=timezone.utc))


def simulate(true: np.ndarray, n_votes: int, rng: np.random.Generator,
             tie_rate: float = 0.0, both_bad_rate: float = 0.0) -> pd.DataFrame:
    """Votes from a Bradley-Terry model with the given ratings (base 10, scale 400)."""
    m = len(true)
    a = rng.integers(0, m, n_votes)
    b = (a + rng.integers(1, m, n_votes)) % m
    p_a = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
    outcome = np.where(rng.random(n_votes) < p_a, 0, 1)
    u = rng.random(n_votes)
    outcome[u < tie_rate + both_bad_rate] = 3
    outcome[u < tie_rate] = 2
    names = np.array([f"m{i}" for i in range(m)])
    return pd.DataFrame({"model_a": names[a], "model_b": names[b],
                         "outcome": np.array(OUTCOMES)[outcome]})


# -- hand-checked Bradley-Terry ---------------------------------------------------------------

def test_three_wins_of_four_gives_400_log10_3():
    v = arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b"))
    r = fit_bradley_terry(v, l2=TINY)
    assert r["A"] - r["B"] == pytest.approx(400 * math.log10(3), abs=1e-4)
    assert (r["A"] + r["B"]) / 2 == pytest.approx(1000.0, abs=1e-9)  # mean anchored at 1000


def test_side_does_not_matter_and_symmetric_data_gives_equal_ratings():
    v = arrays(("A", "B", "model_a"), ("B", "A", "model_a"), ("B", "C", "model_b"),
               ("B", "C", "model_a"), ("C", "A", "model_a"), ("A", "C", "model_a"))
    r = fit_bradley_terry(v, l2=TINY)
    assert r.to_numpy() == pytest.approx([1000.0] * 3, abs=1e-6)
    # A beats B 3:1 no matter whether A sat on the left or the right
    left = fit_bradley_terry(arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b")), l2=TINY)
    right = fit_bradley_terry(arrays(*[("B", "A", "model_b")] * 3, ("B", "A", "model_a")), l2=TINY)
    assert left["A"] == pytest.approx(right["A"], abs=1e-6)


def test_a_tie_is_half_a_win_for_each_side():
    with_ties = arrays(("A", "B", "model_a"), ("B", "A", "model_b"), ("A", "B", "tie"),
                       ("B", "A", "tie"))
    decisive = arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b"))
    r_ties, r_dec = fit_bradley_terry(with_ties, l2=TINY), fit_bradley_terry(decisive, l2=TINY)
    assert r_ties["A"] == pytest.approx(r_dec["A"], abs=1e-6)
    assert r_ties["A"] - r_ties["B"] == pytest.approx(400 * math.log10(3), abs=1e-4)


def test_both_bad_is_a_tie_when_the_option_is_on_and_ignored_when_off():
    v = arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b"), ("A", "B", "both_bad"),
               ("B", "A", "both_bad"))
    on = fit_bradley_terry(v, l2=TINY, both_bad_as_tie=True)
    off = fit_bradley_terry(v, l2=TINY, both_bad_as_tie=False)
    assert on["A"] - on["B"] == pytest.approx(400 * math.log10(4 / 2), abs=1e-4)  # 4:2
    assert off["A"] - off["B"] == pytest.approx(400 * math.log10(3), abs=1e-4)  # 3:1
    # kept as its own outcome in the table either way
    for option in (True, False):
        rows = {r.model: r for r in rating_table(v, rounds=20, both_bad_as_tie=option, l2=TINY)}
        a = rows["A"]
        assert (a.wins, a.losses, a.ties, a.both_bad) == (3, 1, 0, 2)
        assert a.votes == 6 and a.win_rate == pytest.approx(0.75)
        assert rows["B"].both_bad == 2 and rows["B"].wins == 1
    # and can be dropped entirely
    assert len(filter_votes(v, exclude_both_bad=True)) == 4


def test_identity_leak_votes_are_excluded_by_default():
    clean = [record(i, "A", "B", "model_a") for i in range(3)] + [record(3, "A", "B", "model_b")]
    leaked = [record(10 + i, "A", "B", "model_b", leak=True) for i in range(5)]
    table = {r.model: r for r in rate(clean + leaked, rounds=10, l2=TINY)}
    assert table["A"].rating - table["B"].rating == pytest.approx(400 * math.log10(3), abs=1e-4)
    assert table["A"].votes == 4
    kept = {r.model: r for r in rate(clean + leaked, exclude_identity_leak=False, rounds=10,
                                     l2=TINY)}
    assert kept["A"].rating - kept["B"].rating == pytest.approx(400 * math.log10(3 / 6), abs=1e-4)
    assert len(filter_votes(votes_to_arrays(clean + leaked))) == 4


def test_exclude_ties_filter():
    v = arrays(("A", "B", "tie"), ("A", "B", "model_a"), ("A", "B", "both_bad"))
    assert OUTCOMES[int(filter_votes(v, exclude_ties=True, exclude_both_bad=True).outcome[0])] \
        == "model_a"
    assert len(filter_votes(v, exclude_ties=True)) == 2


def test_records_frames_and_duckdb_convert_alike():
    import duckdb

    triples = [("A", "B", "model_a"), ("C", "A", "tie"), ("B", "C", "both_bad")]
    from_records = votes_to_arrays([record(i, *t) for i, t in enumerate(triples)])
    from_frame = votes_to_arrays(frame(*triples))
    df = frame(*triples)  # noqa: F841  (read by duckdb below)
    from_duck = votes_to_arrays(duckdb.sql("SELECT * FROM df"))
    for other in (from_frame, from_duck):
        assert other.models == from_records.models == ("A", "B", "C")
        for name in ("a", "b", "outcome", "identity_leak"):
            assert np.array_equal(getattr(other, name), getattr(from_records, name))
    # listed models come first, in the given order; the rest sorted
    assert votes_to_arrays(frame(*triples), models=["Z", "C"]).models == ("Z", "C", "A", "B")
    with pytest.raises(ValueError, match="unknown vote outcome"):
        votes_to_arrays(frame(("A", "B", "draw")))
    with pytest.raises(ValueError, match="no model name"):
        votes_to_arrays(frame(("A", None, "tie")))
    with pytest.raises(ValueError, match="against itself"):
        votes_to_arrays(frame(("A", "A", "tie")))


def test_anchor_model_is_fixed():
    v = arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b"), ("B", "C", "model_a"),
               ("C", "B", "model_a"))
    r = fit_bradley_terry(v, l2=TINY, anchor="B")
    assert r["B"] == pytest.approx(1000.0, abs=1e-9)
    assert r["A"] == pytest.approx(1000.0 + 400 * math.log10(3), abs=1e-3)
    table = {row.model: row for row in rating_table(v, rounds=30, anchor="B", l2=TINY)}
    assert table["B"].lower == table["B"].upper == pytest.approx(1000.0)
    with pytest.raises(ValueError):
        fit_bradley_terry(v, anchor="nobody")


def test_undefeated_model_stays_finite():
    v = arrays(*[("A", "B", "model_a")] * 5, ("B", "C", "model_a"), ("C", "B", "model_a"))
    r = fit_bradley_terry(v)
    assert np.isfinite(r.to_numpy()).all()
    assert r["A"] > r["B"] + 400 and r["A"] > r["C"]


def test_newton_fit_matches_a_generic_optimiser_on_the_raw_likelihood():
    rng = np.random.default_rng(7)
    df = simulate(np.array([1100.0, 1000.0, 950.0, 900.0]), 300, rng, tie_rate=0.15)
    v = votes_to_arrays(df)
    l2 = 0.05
    ours = fit_bradley_terry(v, l2=l2)
    score = np.select([v.outcome == 0, v.outcome == 1], [1.0, 0.0], 0.5)

    def negloglik(s: np.ndarray) -> float:
        d = s[v.a] - s[v.b]
        return float(np.sum(score * np.logaddexp(0, -d) + (1 - score) * np.logaddexp(0, d))
                     + 0.5 * l2 * s @ s)

    s = scipy.optimize.minimize(negloglik, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    theirs = 1000 + 400 / math.log(10) * (s - s.mean())
    assert ours.to_numpy() == pytest.approx(theirs, abs=1e-3)


# -- simulations with known strengths ---------------------------------------------------------

TRUE = np.array([1250.0, 1160.0, 1080.0, 1000.0, 930.0, 830.0])


def test_simulated_ratings_recover_the_true_order_and_values():
    rng = np.random.default_rng(1)
    v = votes_to_arrays(simulate(TRUE, 20_000, rng))
    fitted = fit_bradley_terry(v).loc[[f"m{i}" for i in range(len(TRUE))]].to_numpy()
    assert list(np.argsort(-fitted)) == list(range(len(TRUE)))
    assert fitted == pytest.approx(TRUE - TRUE.mean() + 1000.0, abs=25.0)


def test_bootstrap_intervals_cover_the_true_ratings_about_95_percent():
    anchored = TRUE - TRUE.mean() + 1000.0
    covered, widths = [], []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        v = votes_to_arrays(simulate(TRUE, 2_000, rng))
        rows = {r.model: r for r in rating_table(v, intervals="bootstrap", rounds=200, seed=seed)}
        for i, true in enumerate(anchored):
            row = rows[f"m{i}"]
            covered.append(row.lower <= true <= row.upper)
            widths.append(row.upper - row.lower)
    coverage = float(np.mean(covered))
    assert coverage >= 0.8, coverage
    # and the intervals are not trivially wide: about 2 * 1.96 * 14 points for 2,000 votes
    assert 20.0 < float(np.mean(widths)) < 120.0, np.mean(widths)


def test_multinomial_bootstrap_matches_resampling_vote_rows():
    rng = np.random.default_rng(3)
    v = votes_to_arrays(simulate(TRUE[:4], 1_500, rng, tie_rate=0.1, both_bad_rate=0.05))
    fast = bootstrap_bradley_terry(v, rounds=300, seed=4).std().to_numpy()
    rows = np.random.default_rng(5)
    slow = np.array([fit_bradley_terry(v.take(rows.integers(0, len(v), len(v)))).to_numpy()
                     for _ in range(300)]).std(axis=0)
    assert fast == pytest.approx(slow, rel=0.2)


def test_bootstrap_is_reproducible_with_a_seed():
    v = votes_to_arrays(simulate(TRUE, 1_000, np.random.default_rng(9)))
    one = bootstrap_bradley_terry(v, rounds=20, seed=11)
    assert one.equals(bootstrap_bradley_terry(v, rounds=20, seed=11))
    assert not one.equals(bootstrap_bradley_terry(v, rounds=20, seed=12))
    assert one.shape == (20, len(TRUE))


# -- ranks ------------------------------------------------------------------------------------

def test_rank_counts_models_whose_lower_bound_beats_this_upper_bound():
    lower = np.array([1100.0, 1050.0, 900.0, 850.0, 700.0])
    upper = np.array([1200.0, 1150.0, 1000.0, 1060.0, 800.0])
    # A: nobody above 1200 -> 1; B: A's 1100 is not > 1150 -> 1; C: A, B above 1000 -> 3;
    # D: A (1100) above 1060, B (1050) is not -> 2; E: all four above 800 -> 5
    assert rank_from_intervals(lower, upper).tolist() == [1, 1, 3, 2, 5]


def test_table_ranks_share_a_place_when_intervals_overlap():
    rng = np.random.default_rng(21)
    v = votes_to_arrays(simulate(np.array([1200.0, 1195.0, 900.0]), 3_000, rng))
    rows = rating_table(v, rounds=100, seed=0).rows
    assert [r.rank for r in rows] == [1, 1, 3]
    assert rows[2].model == "m2"
    assert rows[0].rating >= rows[1].rating >= rows[2].rating
    assert all(r.lower <= r.rating <= r.upper for r in rows)


# -- online Elo -------------------------------------------------------------------------------

def test_elo_update_by_hand():
    r = online_elo(arrays(("A", "B", "model_a")))
    assert r["A"] == pytest.approx(1002.0) and r["B"] == pytest.approx(998.0)  # 4 * (1 - 0.5)
    r = online_elo(arrays(("A", "B", "model_a"), ("B", "A", "model_a")))
    expected_b = 1 / (1 + 10 ** ((1002 - 998) / 400))  # 0.494244...
    assert r["B"] == pytest.approx(998 + 4 * (1 - expected_b))
    assert r["A"] + r["B"] == pytest.approx(2000.0)  # zero sum
    assert online_elo(arrays(("A", "B", "tie")))["A"] == pytest.approx(1000.0)
    assert online_elo(arrays(("A", "B", "model_a")), k=32)["A"] == pytest.approx(1016.0)


def test_elo_depends_on_vote_order():
    votes = [("A", "B", "model_a"), ("A", "B", "model_a"), ("B", "A", "model_a")]
    forward = online_elo(arrays(*votes))
    backward = online_elo(arrays(*votes[::-1]))
    assert abs(forward["A"] - backward["A"]) > 1e-3
    # whereas Bradley-Terry does not care
    assert fit_bradley_terry(arrays(*votes))["A"] == pytest.approx(
        fit_bradley_terry(arrays(*votes[::-1]))["A"], abs=1e-9)


def test_elo_both_bad_option_and_unvoted_models():
    v = arrays(("A", "B", "model_a"), ("A", "B", "both_bad"), models=["A", "B", "C"])
    on, off = online_elo(v), online_elo(v, both_bad_as_tie=False)
    assert off["A"] == pytest.approx(1002.0)
    assert on["A"] < 1002.0  # the tie pulled A back toward B
    assert math.isnan(on["C"])


# -- matrices ---------------------------------------------------------------------------------

def test_win_rate_and_battle_count_matrices():
    v = arrays(("A", "B", "model_a"), ("B", "A", "model_b"), ("A", "B", "model_b"),
               ("A", "B", "tie"), ("A", "C", "both_bad"), models=["A", "B", "C", "D"])
    wr = win_rate_matrix(v)
    assert wr.loc["A", "B"] == pytest.approx(2 / 3) and wr.loc["B", "A"] == pytest.approx(1 / 3)
    assert math.isnan(wr.loc["A", "C"]) and math.isnan(wr.loc["A", "D"])
    half = win_rate_matrix(v, ties_as_half=True)
    assert half.loc["A", "B"] == pytest.approx(2.5 / 4)
    assert half.loc["A", "C"] == pytest.approx(0.5)
    assert math.isnan(win_rate_matrix(v, ties_as_half=True, both_bad_as_tie=False).loc["A", "C"])
    counts = battle_count_matrix(v)
    assert counts.loc["A", "B"] == counts.loc["B", "A"] == 4
    assert counts.loc["A", "C"] == 1 and counts.loc["D"].sum() == 0
    assert list(counts.index) == ["A", "B", "C", "D"]
    assert pair_outcome_counts(v).sum() == len(v)


# -- no votes ---------------------------------------------------------------------------------

def test_no_votes_gives_an_empty_result():
    empty = votes_to_arrays([])
    assert len(empty) == 0 and empty.models == ()
    table = rate([])
    assert len(table) == 0 and table.to_frame().empty and table.n_votes == 0
    assert list(table.to_frame().columns)[:3] == ["model", "rating", "lower"]
    listed = votes_to_arrays(pd.DataFrame(columns=["model_a", "model_b", "outcome"]),
                             models=["A", "B"])
    table = rating_table(listed)
    assert len(table) == 0 and table.unrated == ("A", "B")
    assert fit_bradley_terry(listed).isna().all()
    assert bootstrap_bradley_terry(listed, rounds=5).isna().all().all()
    assert online_elo(listed).isna().all()
    assert win_rate_matrix(listed).isna().all().all()
    assert battle_count_matrix(listed).to_numpy().sum() == 0


def test_listed_model_without_votes_is_not_rated():
    v = arrays(("A", "B", "model_a"), ("B", "A", "model_a"), models=["A", "B", "C"])
    table = rating_table(v, rounds=10)
    assert [r.model for r in table] == ["A", "B"] or [r.model for r in table] == ["B", "A"]
    assert table.unrated == ("C",)
    assert math.isnan(fit_bradley_terry(v)["C"])
    # only both_bad votes, ignored by the fit -> unrated as well
    v = arrays(("A", "B", "model_a"), ("A", "C", "both_bad"))
    assert rating_table(v, rounds=5, both_bad_as_tie=False).unrated == ("C",)
    assert rating_table(v, rounds=5, both_bad_as_tie=True).unrated == ()


@pytest.mark.parametrize("options", [{"intervals": "none"}, {"intervals": "bootstrap", "rounds": 0}])
def test_no_intervals_ranks_by_point_rating(options):
    v = arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b"))
    table = rating_table(v, **options)
    assert [(r.model, r.rank) for r in table] == [("A", 1), ("B", 2)]
    assert math.isnan(table.rows[0].lower) and table.intervals == "none"
    with pytest.raises(ValueError, match="intervals must be one of"):
        rating_table(v, intervals="jackknife")


# -- closed-form (sandwich) intervals and inverse pair-frequency weights -----------------------

POINTS = 400 / math.log(10)  # natural-log strength -> rating points


def test_sandwich_error_by_hand_for_two_models():
    """A beats B 3 times of 4: p = 3/4, the score variance sum (y - p)^2 equals the Hessian
    n p (1 - p), so Var(s_A - s_B) = 1 / (n p (1 - p)); A's rating is half the difference."""
    v = arrays(*[("A", "B", "model_a")] * 3, ("A", "B", "model_b"))
    var_diff = 1 / (4 * 0.75 * 0.25)
    errors = sandwich_errors(v, l2=TINY)
    assert errors["A"] == pytest.approx(POINTS * 0.5 * math.sqrt(var_diff), rel=1e-6)
    table = {r.model: r for r in rating_table(v, l2=TINY)}  # the default method
    assert table["A"].upper - table["A"].rating == pytest.approx(1.959964 * errors["A"], rel=1e-5)
    assert table["A"].rating - table["A"].lower == pytest.approx(1.959964 * errors["A"], rel=1e-5)
    # against an anchor the whole difference is uncertain; the anchor itself is a point
    anchored = sandwich_errors(v, l2=TINY, anchor="B")
    assert anchored["A"] == pytest.approx(POINTS * math.sqrt(var_diff), rel=1e-6) and anchored["B"] == 0
    narrower = {r.model: r for r in rating_table(v, l2=TINY, confidence=0.5)}
    assert narrower["A"].upper - narrower["A"].rating == pytest.approx(0.674490 * errors["A"], rel=1e-5)


def test_sandwich_intervals_cover_about_95_percent_at_2000_votes_among_20_models():
    """300 arenas of 2,000 votes among 20 models whose true ratings are drawn N(1000, 150):
    the share of the 6,000 intervals holding the true (mean-centred) rating is near 95%."""
    covered = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        true = rng.normal(1000.0, 150.0, 20)
        table = {r.model: r for r in rating_table(votes_to_arrays(simulate(true, 2_000, rng)))}
        assert table and next(iter(table.values())) is not None
        centred = true - true.mean() + 1000.0
        covered += [table[f"m{i}"].lower <= centred[i] <= table[f"m{i}"].upper
                    for i in range(20) if f"m{i}" in table]
    assert len(covered) >= 5_900
    assert 0.94 <= float(np.mean(covered)) <= 0.96, np.mean(covered)


def test_sandwich_widths_match_a_long_bootstrap_within_10_percent():
    for seed in range(4):
        rng = np.random.default_rng(50 + seed)
        v = votes_to_arrays(simulate(rng.normal(1000.0, 150.0, 20), 2_000, rng, tie_rate=0.15))
        closed = rating_table(v).to_frame().set_index("model")
        boot = rating_table(v, intervals="bootstrap", rounds=1_000, seed=seed).to_frame().set_index("model")
        ratio = (closed["upper"] - closed["lower"]) / (boot["upper"] - boot["lower"])
        assert ratio.between(0.9, 1.1).all(), ratio.describe()  # every model's width
        assert closed["rating"].equals(boot["rating"])  # same point fit either way


def test_with_ties_the_sandwich_follows_the_data_not_the_model():
    """Ties are half wins, not a Bradley-Terry outcome: a vote that is often a tie carries
    less noise than a win/loss coin. The inverse Fisher information ignores that and is too
    wide; the sandwich reads the spread off the votes, as the bootstrap does."""
    rng = np.random.default_rng(8)
    v = votes_to_arrays(simulate(TRUE, 3_000, rng, tie_rate=0.4))
    _, _, robust = strength_covariance(pair_outcome_counts(v))
    _, _, model = strength_covariance(pair_outcome_counts(v), robust=False)
    assert np.all(np.diag(robust) < 0.8 * np.diag(model))
    closed = np.array([r.upper - r.lower for r in rating_table(v)])
    boot = np.array([r.upper - r.lower for r in rating_table(v, intervals="bootstrap", rounds=1_000)])
    assert closed.mean() == pytest.approx(boot.mean(), rel=0.1)


def test_pair_weights_are_inverse_pair_frequency_with_a_floor():
    v = arrays(*[("A", "B", "model_a")] * 60, *[("B", "A", "model_a")] * 40,  # A-B: 100 votes
               *[("A", "C", "tie")] * 50, *[("B", "C", "model_b")] * 10)
    w = pair_weights(pair_outcome_counts(v), min_pair_votes=50)
    a, b, c = 0, 1, 2
    assert w[a, b] == w[b, a] == pytest.approx(w[a, c] / 2)  # 100 votes weigh half of 50 each
    assert w[b, c] == pytest.approx(w[a, c])                  # under the floor: as if 50
    counts = pair_outcome_counts(v).sum(axis=2)
    assert (w * counts).sum() == pytest.approx(counts.sum())  # a vote weighs 1 on average


def test_an_oversampled_pair_does_not_dominate_the_reweighted_fit():
    """A beats B 80% of the time but is level with everyone else (no single rating explains
    both). Sampling A-B ten times as often drags the plain fit toward that one pair; with
    inverse pair-frequency weights the fit is the same as with A-B sampled like the rest."""
    level = [("A", "C", "model_a"), ("C", "A", "model_a"), ("A", "D", "model_a"), ("D", "A", "model_a"),
             ("B", "C", "model_a"), ("C", "B", "model_a"), ("B", "D", "model_a"), ("D", "B", "model_a"),
             ("C", "D", "model_a"), ("D", "C", "model_a")] * 30
    a_beats_b = [("A", "B", "model_a")] * 48 + [("A", "B", "model_b")] * 12
    once, tenfold = arrays(*level, *a_beats_b), arrays(*level, *a_beats_b * 10)
    plain = fit_bradley_terry(tenfold, l2=TINY) - fit_bradley_terry(once, l2=TINY)
    weighted = (fit_bradley_terry(tenfold, l2=TINY, reweight=True)
                - fit_bradley_terry(once, l2=TINY, reweight=True))
    assert plain["A"] > 30 and plain["B"] < -30  # the plain fit follows the over-sampled pair
    assert np.abs(weighted.to_numpy()).max() < 1e-4
    # fewer effective votes: the reweighted intervals are wider, and the table says so
    on = {r.model: r for r in rating_table(tenfold, reweight=True)}
    off = {r.model: r for r in rating_table(tenfold)}
    assert on["A"].upper - on["A"].lower > 1.1 * (off["A"].upper - off["A"].lower)
    assert rating_table(tenfold, reweight=True).reweighted and not rating_table(tenfold).reweighted
    boot = rating_table(tenfold, reweight=True, intervals="bootstrap", rounds=400)
    assert {r.model: r.rating for r in boot} == pytest.approx({m: r.rating for m, r in on.items()})


# -- the difference of two ratings (lineage's "vs parent") ------------------------------------

def test_the_difference_interval_matches_the_bootstrap_spread_of_the_difference():
    rng = np.random.default_rng(7)
    votes = votes_to_arrays(simulate(np.array([1000.0, 1040.0, 980.0, 1010.0, 950.0]), 2000, rng, tie_rate=0.2))
    d = rating_difference(votes, "m1", "m0")
    point = fit_bradley_terry(votes)
    assert d.difference == pytest.approx(point["m1"] - point["m0"], abs=1e-6)
    boot = bootstrap_bradley_terry(votes, rounds=400, seed=3)
    boot_se = float((boot["m1"] - boot["m0"]).std())
    sandwich_se = (d.upper - d.lower) / (2 * 1.959964)
    assert sandwich_se == pytest.approx(boot_se, rel=0.15)
    assert (d.votes_a, d.votes_b) == (int(battle_count_matrix(votes).loc["m1"].sum()),
                                      int(battle_count_matrix(votes).loc["m0"].sum()))


def test_the_verdict_needs_an_interval_clear_of_zero_and_ten_votes_a_side():
    clear = arrays(*[("new", "old", "model_a")] * 9, ("new", "old", "model_b"))
    d = rating_difference(clear, "new", "old")
    assert d.lower > 0 and d.votes_a == 10 and d.verdict == "better"
    assert rating_difference(clear, "old", "new").verdict == "worse"
    few = arrays(*[("new", "old", "model_a")] * 9)
    assert rating_difference(few, "new", "old").verdict == "too few votes"
    even = arrays(*[("new", "old", "model_a"), ("new", "old", "model_b")] * 10)
    assert rating_difference(even, "new", "old").verdict == "unclear"
    assert rating_difference(even, "new", "absent") is None
