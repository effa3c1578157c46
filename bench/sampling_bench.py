"""Pair sampling by simulation: how many votes until the board can tell models apart.

Voters are simulated from known ratings (Bradley-Terry, base 10, scale 400; --ties of the
votes are ties). After every --check-every votes the board is recomputed the way the app
computes it (closed-form 95% intervals, mean rating 1000) and two questions are asked:

  parent  9 established models (ratings 800..1200, 50 apart) with --history votes drawn
          uniformly; then a new checkpoint joins, 40 points better than its parent (rated
          1000). Votes counted from its arrival until it is separated from its parent.
  ladder  10 new models 40 points apart, no votes; votes until every adjacent pair is.

"Separated" two ways: "diff", the 95% interval of the difference (child - parent) excludes 0;
"board", the two models' own 95% intervals do not overlap (what the lineage view's "better"
and the board's ranks show). Both count only separation in the true direction, and only once
both models have --min-votes votes: a model that won its first 3 battles has a maximum-
likelihood rating hundreds of points up with a narrow interval (sandwich and bootstrap alike),
a "separation" that is an artefact of 3 votes (the boost's 30 votes is the floor used).

Samplers: uniform over pairs; today's default (weights, boost 3x until 30 votes, no target
pairs); today's with parent target pairs at target_share 0.3; the informative sampler
(qwen3arena.arena.informative) with the same boost and no target pairs. Each runs with the
same seeds; figures are the median and the 10th-90th percentile over seeds, and the smallest
share of battles any model took part in over the first 1,000 votes (uniform among 10 models:
0.2), lowest / median over seeds.

Usage: .venv/bin/python bench/sampling_bench.py [--seeds 10] [--scenario parent|ladder|both]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qwen3arena.arena.informative import InformativeOptions, sample_informative_pair  # noqa: E402
from qwen3arena.arena.sampling import model_weights, sample_pair  # noqa: E402
from qwen3arena.ratings import strength_covariance  # noqa: E402

POINTS = 400.0 / np.log(10.0)
Z = 1.959964
Sampler = Callable[[list[str], np.ndarray, list[tuple[str, str]], random.Random], tuple[str, str]]


def uniform(names: list[str], counts: np.ndarray, parents: list[tuple[str, str]],
            rng: random.Random) -> tuple[str, str]:
    return sample_pair({n: 1.0 for n in names}, rng)


def _boosted(names: list[str], counts: np.ndarray) -> dict[str, float]:
    played = counts.sum(axis=(1, 2)) + counts.sum(axis=(0, 2))
    return model_weights({n: 1.0 for n in names}, {n: int(v) for n, v in zip(names, played)}, 3.0, 30)


def today(names: list[str], counts: np.ndarray, parents: list[tuple[str, str]],
          rng: random.Random) -> tuple[str, str]:
    return sample_pair(_boosted(names, counts), rng)


def today_targets(names: list[str], counts: np.ndarray, parents: list[tuple[str, str]],
                  rng: random.Random) -> tuple[str, str]:
    return sample_pair(_boosted(names, counts), rng, parents, 0.3)


def informative(names: list[str], counts: np.ndarray, parents: list[tuple[str, str]],
                rng: random.Random, options: InformativeOptions = InformativeOptions()) -> tuple[str, str]:
    return sample_informative_pair(_boosted(names, counts), rng, counts, names, parents, options=options)


SAMPLERS: dict[str, Sampler] = {"uniform": uniform, "today (defaults)": today,
                                "today + parent targets 0.3": today_targets, "informative": informative}


def board(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Ratings, their standard errors and the strengths' covariance, as the board computes
    them (sandwich, mean 1000); None while a model has no votes."""
    rated, s, cov = strength_covariance(counts)
    m = counts.shape[0]
    if len(rated) < m:
        return None
    C = np.eye(m) - 1.0 / m
    se = POINTS * np.sqrt(np.clip(np.einsum("ij,jk,ik->i", C, cov, C), 0, None))
    return 1000.0 + POINTS * (s - s.mean()), se, cov


def separated(fit: tuple[np.ndarray, np.ndarray, np.ndarray], better: int, worse: int,
              played: np.ndarray, min_votes: int) -> tuple[bool, bool]:
    """(difference interval excludes 0, the two intervals do not overlap), in the true
    direction, once both models have min_votes votes."""
    if min(played[better], played[worse]) < min_votes:
        return False, False
    r, se, cov = fit
    diff_se = POINTS * np.sqrt(max(cov[better, better] + cov[worse, worse] - 2 * cov[better, worse], 0.0))
    return (r[better] - r[worse] > Z * diff_se,
            r[better] - Z * se[better] > r[worse] + Z * se[worse])


def vote(counts: np.ndarray, a: int, b: int, true: np.ndarray, rng: np.random.Generator, ties: float) -> None:
    if rng.random() < ties:
        counts[a, b, 2] += 1
    else:
        p = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
        counts[a, b, 0 if rng.random() < p else 1] += 1


def run(scenario: str, sampler_name: str, seed: int, ties: float, history: int, cap: int,
        check_every: int, min_votes: int = 30, horizon: int = 1_000) -> dict[str, float]:
    """One simulated arena: votes until the question is settled both ways (or the cap), and
    at least ``horizon`` votes, over which the battle shares are measured (a run that stops
    after 80 votes says nothing about starvation)."""
    sampler = SAMPLERS[sampler_name]
    np_rng, rng = np.random.default_rng(seed), random.Random(seed)
    if scenario == "parent":
        true = np.array([800.0 + 50 * k for k in range(9)] + [1040.0])  # m9 is m4's child
        names = [f"m{k}" for k in range(10)]
        parents = [("m9", "m4")]
        questions = [(9, 4)]
        counts = np.zeros((10, 10, 4))
        for _ in range(history):
            a, b = np_rng.choice(9, 2, replace=False)
            vote(counts, a, b, true, np_rng, ties)
    else:
        true = np.array([1000.0 + 40 * k for k in range(10)])
        names = [f"m{k}" for k in range(10)]
        parents = []
        questions = [(k + 1, k) for k in range(9)]
        counts = np.zeros((10, 10, 4))
    start = counts.copy()
    index = {n: i for i, n in enumerate(names)}
    done: dict[str, float] = {}
    n = 0
    shares: np.ndarray | None = None
    while n < cap and (len(done) < 2 or n < horizon):
        for _ in range(check_every):
            left, right = sampler(names, counts, parents, rng)
            vote(counts, index[left], index[right], true, np_rng, ties)
            n += 1
        if shares is None and n >= horizon:
            battles = (counts - start).sum(axis=2)
            shares = (battles.sum(axis=0) + battles.sum(axis=1)) / battles.sum()
        if len(done) == 2:
            continue
        fit = board(counts)
        if fit is None:
            continue
        played = counts.sum(axis=(1, 2)) + counts.sum(axis=(0, 2))
        flags = [separated(fit, b, w, played, min_votes) for b, w in questions]
        for k, key in enumerate(("diff", "board")):
            if key not in done and all(f[k] for f in flags):
                done[key] = n
    battles = (counts - start).sum(axis=2)
    return {"diff": done.get("diff", np.inf), "board": done.get("board", np.inf),
            "min share": float(shares.min()) if shares is not None else float("nan"),
            "parent pair share": float((battles[9, 4] + battles[4, 9]) / max(battles.sum(), 1))
            if scenario == "parent" else float("nan")}


def summary(values: list[float], cap: int) -> str:
    """Median (10th-90th percentile); a run that hit the cap counts as the cap (a lower bound)."""
    v = np.array(values, dtype=float)
    capped = int(np.isinf(v).sum())
    q = np.percentile(np.where(np.isinf(v), cap, v), [10, 50, 90])
    text = f"{q[1]:>7,.0f} ({q[0]:,.0f}-{q[2]:,.0f})"
    return text + (f" [{capped} capped]" if capped else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--scenario", choices=["parent", "ladder", "both"], default="both")
    parser.add_argument("--ties", type=float, default=0.1)
    parser.add_argument("--history", type=int, default=2_000)
    parser.add_argument("--cap", type=int, default=40_000)
    parser.add_argument("--check-every", type=int, default=10)
    parser.add_argument("--min-votes", type=int, default=30)
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS))
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    scenarios = ["parent", "ladder"] if args.scenario == "both" else [args.scenario]
    print(f"{args.seeds} seeds, {args.ties:.0%} ties, checks every {args.check_every} votes, cap {args.cap:,}, "
          f"at least {args.min_votes} votes per model before a question counts")
    for scenario in scenarios:
        print(f"\n{scenario}: votes to separation, median (10th-90th percentile over seeds)")
        print(f"  {'sampler':<28} {'diff interval':<24} {'board intervals':<24} {'min share':>11} "
              f"{'parent pair':>11} {'s/run':>6}")
        base: tuple[float, float] | None = None
        for name in args.samplers:
            t0 = time.perf_counter()
            jobs = [(scenario, name, seed, args.ties, args.history, args.cap, args.check_every, args.min_votes)
                    for seed in range(args.seeds)]
            with ProcessPoolExecutor(args.jobs) as pool:
                results = list(pool.map(run, *zip(*jobs)))
            diff = [r["diff"] for r in results]
            boards = [r["board"] for r in results]
            medians = (float(np.median(np.where(np.isinf(diff), args.cap, diff))),
                       float(np.median(np.where(np.isinf(boards), args.cap, boards))))
            base = medians if base is None else base
            shares = [r["min share"] for r in results]
            print(f"  {name:<28} {summary(diff, args.cap):<24} {summary(boards, args.cap):<24} "
                  f"{np.nanmin(shares):>5.3f}/{np.nanmedian(shares):.3f} "
                  f"{np.mean([r['parent pair share'] for r in results]):>11.3f} "
                  f"{(time.perf_counter() - t0) * args.jobs / args.seeds:>6.1f}"
                  f"   x{base[0] / medians[0]:.2f} / x{base[1] / medians[1]:.2f} fewer than uniform")

if __name__ == "__main__":
    main()
