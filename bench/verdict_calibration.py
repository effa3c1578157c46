"""How often "vs parent" says better or worse for a child that is no better than its parent
(false verdicts), and how often it sees a real gain (power), by the child's vote count.

A simulated board: the parent and three other models with 300 votes among them, the child with
N votes (half against its parent); 20% ties. The verdict is `RatingDifference.verdict`'s interval
rule without its minimum-votes guard, for the sandwich (the default) and for the inverse Fisher
information. This is what set the guard at 10 votes (docs/harvest.md).

Usage: .venv/bin/python bench/verdict_calibration.py [--boards 600] [--gain 0.35]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qwen3arena.ratings import VoteArrays, rating_difference  # noqa: E402

MODELS = ("parent", "child", "m2", "m3", "m4")


def board(rng: np.random.Generator, n_child: int, gain: float, others: int = 300) -> VoteArrays:
    strength = np.array([0.0, gain, 0.2, -0.2, 0.1])
    pairs = [rng.choice([0, 2, 3, 4], 2, replace=False) for _ in range(others)]
    pairs += [(1, 0 if k % 2 == 0 else int(rng.choice([2, 3, 4]))) for k in range(n_child)]
    a, b = (np.array(side, dtype=np.int32) for side in zip(*pairs))
    p_a = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    tie = rng.random(len(a)) < 0.2
    outcome = np.where(tie, 2, np.where(rng.random(len(a)) < p_a, 0, 1)).astype(np.int8)
    return VoteArrays(MODELS, a, b, outcome, np.zeros(len(a), bool))


def decided(votes: VoteArrays, robust: bool) -> bool:
    d = rating_difference(votes, "child", "parent", robust=robust)
    return d is not None and (d.lower > 0 or d.upper < 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=600)
    parser.add_argument("--gain", type=float, default=0.35, help="the child's real gain (log-odds)")
    parser.add_argument("--votes", default="4,10,20,40,100")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print("| child's votes | intervals | false verdicts (equal) | power (gain) |")
    print("|---|---|---|---|")
    for n in (int(v) for v in args.votes.split(",")):
        for robust in (True, False):
            false = np.mean([decided(board(rng, n, 0.0), robust) for _ in range(args.boards)])
            power = np.mean([decided(board(rng, n, args.gain), robust) for _ in range(args.boards // 3)])
            print(f"| {n} | {'sandwich' if robust else 'Fisher'} | {false:.3f} | {power:.3f} |", flush=True)


if __name__ == "__main__":
    main()
