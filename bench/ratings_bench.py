"""Ratings at arena scale: 1,000,000 synthetic votes among 20 models, Bradley-Terry with
closed-form (sandwich) intervals and with 100 bootstrap rounds; then interval coverage by
simulation (2,000 votes among 20 models by default).

Votes are drawn from a Bradley-Terry model with known ratings (15% ties, 5% both_bad, 1%
identity leaks) and handed over as a pandas DataFrame, the shape a DuckDB query returns
(``con.execute("SELECT ... FROM votes").df()``). Timed stages:
  (a) DataFrame -> arrays, filter, aggregate into the (pair, outcome) count tensor
  (b) the point fit                (c) 100 bootstrap rounds      (c2) sandwich errors
  (d) the whole leaderboard via ``rate``, closed form (the default) and bootstrap
  (e) online Elo, for scale        (f) the style-controlled fit (four style features)
Peak memory: tracemalloc peak of a separate, untimed pass through ``rate``, and the process
maximum resident set size. With --records, also times converting a list of VoteRecord
(what ``Store.list_votes`` returns); that list alone takes a few hundred MB.

Coverage (--coverage-sims S, 0 to skip): S arenas of --coverage-votes votes among
--coverage-models models, true ratings drawn N(1000, 150), 15% ties and 5% both_bad; the target
of each interval is the rating the fit converges to with unlimited votes (ties as half wins
shrink the scale), i.e. the fit on the expected counts. Reports the share of intervals that
hold it, the mean width, and the closed-form width over the bootstrap's, plus the same with
inverse pair-frequency weights when one pair takes 30% of the votes (a target pair).

Usage: .venv/bin/python bench/ratings_bench.py [--votes N] [--models M] [--rounds R] [--records]
       [--coverage-sims S] [--coverage-votes N] [--coverage-models M]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qwen3arena.ratings import (  # noqa: E402
    OUTCOMES,
    bootstrap_bradley_terry,
    filter_votes,
    fit_bradley_terry,
    online_elo,
    pair_outcome_counts,
    rate,
    rating_table,
    sandwich_errors,
    strength_covariance,
    votes_to_arrays,
)


def synthetic_votes(n_votes: int, n_models: int, seed: int,
                    tie_rate: float = 0.15, both_bad_rate: float = 0.05,
                    leak_rate: float = 0.01, target_share: float = 0.0) -> tuple[pd.DataFrame, pd.Series]:
    """Votes from known ratings; ``target_share`` of them go to the pair (model-00, model-01)."""
    rng = np.random.default_rng(seed)
    names = np.array([f"model-{i:02d}" for i in range(n_models)], dtype=object)
    true = pd.Series(rng.normal(1000.0, 150.0, n_models), index=names)
    r = true.to_numpy()
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    targeted = rng.random(n_votes) < target_share
    a[targeted], b[targeted] = 0, 1
    p_a = 1.0 / (1.0 + 10.0 ** ((r[b] - r[a]) / 400.0))
    outcome = np.where(rng.random(n_votes) < p_a, 0, 1)
    u = rng.random(n_votes)
    outcome[u < tie_rate + both_bad_rate] = 3
    outcome[u < tie_rate] = 2
    df = pd.DataFrame({"model_a": names[a], "model_b": names[b],
                       "outcome": np.array(OUTCOMES, dtype=object)[outcome],
                       "identity_leak": rng.random(n_votes) < leak_rate})
    return df, true


def limit_ratings(true: pd.Series, n_votes: int, tie_rate: float, both_bad_rate: float,
                  target_share: float = 0.0) -> pd.Series:
    """What the fit converges to with unlimited votes: the fit on the expected count tensor."""
    r = true.to_numpy()
    m = len(r)
    p = 1.0 / (1.0 + 10.0 ** ((r[None, :] - r[:, None]) / 400.0))  # P(row beats column)
    pair = np.full((m, m), (1.0 - target_share) / (m * (m - 1)))
    np.fill_diagonal(pair, 0.0)
    pair[0, 1] += target_share
    decisive = 1.0 - tie_rate - both_bad_rate
    counts = n_votes * 1000 * np.stack([pair * p * decisive, pair * (1 - p) * decisive,
                                        pair * tie_rate, pair * both_bad_rate], axis=-1)
    _, s, _ = strength_covariance(counts)
    return pd.Series(1000.0 + 400.0 / np.log(10.0) * (s - s.mean()), index=true.index)


def coverage(sims: int, n_votes: int, n_models: int, target_share: float = 0.0,
             reweight: bool = False) -> dict[str, float]:
    """Share of 95% intervals holding the limit rating, mean widths, and wall time per board."""
    hits: dict[str, list[bool]] = {"sandwich": [], "bootstrap": []}
    widths: dict[str, list[float]] = {"sandwich": [], "bootstrap": []}
    seconds = {"sandwich": 0.0, "bootstrap": 0.0}
    for seed in range(sims):
        df, true = synthetic_votes(n_votes, n_models, 1000 + seed, leak_rate=0.0, target_share=target_share)
        # reweighted, every pair weighs the same in the limit: the target of a uniform design
        target = limit_ratings(true, n_votes, 0.15, 0.05, 0.0 if reweight else target_share)
        votes = votes_to_arrays(df)
        for method in hits:
            t0 = time.perf_counter()
            table = rating_table(votes, intervals=method, rounds=100, seed=seed, reweight=reweight).to_frame()
            seconds[method] += time.perf_counter() - t0
            table = table.set_index("model")
            goal = target.loc[table.index]
            hits[method] += list((table["lower"] <= goal) & (goal <= table["upper"]))
            widths[method] += list(table["upper"] - table["lower"])
    out = {}
    for method in hits:
        out[f"{method} coverage"] = float(np.mean(hits[method]))
        out[f"{method} width"] = float(np.mean(widths[method]))
        out[f"{method} s/board"] = seconds[method] / sims
    out["width ratio"] = out["sandwich width"] / out["bootstrap width"]
    # binomial standard error of the share (intervals of one arena are not independent: a rough guide)
    out["se"] = float(np.sqrt(out["sandwich coverage"] * (1 - out["sandwich coverage"]) / len(hits["sandwich"])))
    return out


def timed(label: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<58} {time.perf_counter() - t0:8.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--records", action="store_true",
                        help="also time converting a list of VoteRecord objects")
    parser.add_argument("--coverage-sims", type=int, default=200)
    parser.add_argument("--coverage-votes", type=int, default=2_000)
    parser.add_argument("--coverage-models", type=int, default=20)
    args = parser.parse_args()

    df, true = synthetic_votes(args.votes, args.models, args.seed)
    print(f"{args.votes:,} votes, {args.models} models, {args.rounds} bootstrap rounds; "
          f"numpy {np.__version__}, pandas {pd.__version__}")

    t0 = time.perf_counter()
    arrays = timed("(a1) DataFrame -> arrays (votes_to_arrays)", votes_to_arrays, df)
    kept = timed("(a2) filter (identity leaks out)", filter_votes, arrays)
    counts = timed("(a3) aggregate -> count tensor (pair_outcome_counts)",
                   pair_outcome_counts, kept)
    print(f"{'(a)  convert + filter + aggregate':<58} {time.perf_counter() - t0:8.3f} s")
    point = timed("(b)  point fit (fit_bradley_terry, incl. re-aggregation)",
                  fit_bradley_terry, kept)
    boot = timed(f"(c)  {args.rounds} bootstrap rounds (bootstrap_bradley_terry)",
                 bootstrap_bradley_terry, kept, rounds=args.rounds, seed=args.seed)
    errors = timed("(c2) sandwich errors (sandwich_errors, incl. point fit)", sandwich_errors, kept)
    table = timed("(d)  rate(df): whole leaderboard, closed-form intervals", rate, df)
    timed(f"(d2) rate(df): whole leaderboard, {args.rounds} bootstrap rounds", rate, df,
          intervals="bootstrap", rounds=args.rounds, seed=args.seed)
    timed("(d3) rate(df): closed form, inverse pair-frequency weights", rate, df, reweight=True)
    timed("(e)  online Elo, K=4 (sequential)", online_elo, kept)
    # style control fits battles, not counts: four random style differences per vote
    from qwen3arena.ratings.style import fit_style_controlled

    differences = np.random.default_rng(args.seed).uniform(-1, 1, (len(kept), 4))
    timed("(f)  style control (fit_style_controlled, Wald intervals)", fit_style_controlled, kept, differences)

    if args.records:
        from qwen3arena.store import VoteRecord

        when = datetime(2025, 1, 1, tzinfo=timezone.utc)
        records = [VoteRecord(str(i), str(i), "anon", o, ma, mb, 1, leak, when)
                   for i, (ma, mb, o, leak) in enumerate(df.itertuples(index=False))]
        timed(f"(a1') list of {len(records):,} VoteRecord -> arrays", votes_to_arrays, records)
        del records

    tracemalloc.start()
    rate(df, rounds=args.rounds, seed=args.seed)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"peak memory: rate() pass {peak / 2**20:.1f} MiB (tracemalloc), "
          f"process max RSS {maxrss_kb / 1024:.1f} MiB (includes the synthetic data)")

    centred = true - true.mean() + 1000.0

    def agreement(fitted: pd.Series) -> str:
        fitted = fitted.loc[true.index]
        corr = float(np.corrcoef(centred.to_numpy(), fitted.to_numpy())[0, 1])
        slope = float(np.polyfit(centred.to_numpy(), fitted.to_numpy(), 1)[0])
        swaps = int(sum(1 for i in range(len(true)) for j in range(len(true))
                        if centred.iloc[i] > centred.iloc[j] and fitted.iloc[i] < fitted.iloc[j]))
        return (f"corr(true, fitted) = {corr:.5f}, slope {slope:.3f}, "
                f"max |fitted - true| {float((fitted - centred).abs().max()):.2f}, "
                f"order swaps {swaps}")

    gap = float(np.diff(np.sort(true.to_numpy())).min())
    width = float((boot.quantile(0.975) - boot.quantile(0.025)).mean())
    closed_width = float(2 * 1.959964 * errors.mean())
    decisive = fit_bradley_terry(filter_votes(kept, exclude_ties=True, exclude_both_bad=True))
    print(f"sanity, all votes (ties as half wins, which shrinks the scale): {agreement(point)}")
    print(f"sanity, decisive votes only (the model the data came from): {agreement(decisive)}")
    print(f"sanity: smallest gap between true ratings {gap:.2f}; mean 95% CI width: bootstrap {width:.2f}, "
          f"closed form {closed_width:.2f}; "
          f"table rows {len(table)}, votes used {table.n_votes:,} of {len(df):,}; "
          f"nonzero cells {int((counts > 0).sum())}")

    if args.coverage_sims > 0:
        print(f"\ncoverage: {args.coverage_sims} arenas of {args.coverage_votes:,} votes among "
              f"{args.coverage_models} models (bootstrap: 100 rounds)")
        for label, share, reweight in [("uniform pairs", 0.0, False),
                                       ("one pair 30% of votes, plain", 0.3, False),
                                       ("one pair 30% of votes, reweighted", 0.3, True)]:
            t0 = time.perf_counter()
            c = coverage(args.coverage_sims, args.coverage_votes, args.coverage_models, share, reweight)
            print(f"  {label:<36} sandwich {c['sandwich coverage']:.4f} (+-{c['se']:.4f}), "
                  f"bootstrap {c['bootstrap coverage']:.4f}; mean width {c['sandwich width']:.1f} vs "
                  f"{c['bootstrap width']:.1f} (ratio {c['width ratio']:.3f}); per board "
                  f"{1000 * c['sandwich s/board']:.1f} ms vs {1000 * c['bootstrap s/board']:.1f} ms "
                  f"[{time.perf_counter() - t0:.0f} s]")

if __name__ == "__main__":
    main()
