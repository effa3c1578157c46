"""Round by round: which data trained which checkpoint, and how its rating moved.

Joins the rounds (harvest), the training runs (their round, parent, dataset) and the human
ratings with their intervals, so a team can see whether a round helped: the child's interval
against its parent's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from qwen3arena.ratings import RatingDifference
from qwen3arena.store import Store

if TYPE_CHECKING:
    from qwen3arena.scoreboard import Scoreboard

COLUMNS = ["round", "checkpoint", "parent", "method", "data", "rows", "run", "rating", "lower", "upper",
           "votes", "vs parent"]


@dataclass(frozen=True)
class LineageEntry:
    round: int                 # 0: a model that no round trained (the base, shipped adapters)
    checkpoint: str
    parent: str | None
    method: str | None
    data: str | None           # the dataset file the run trained on
    rows: int | None
    run_status: str | None
    rating: float | None
    lower: float | None
    upper: float | None
    votes: int
    vs_parent: RatingDifference | None = None  # this checkpoint's rating minus its parent's

    def change_vs_parent(self) -> str:
        """'+40 [+12, +68] (better)': the difference and its 95% interval; 'better' or 'worse'
        only when the interval excludes 0 and each has enough votes (RatingDifference.verdict)."""
        d = self.vs_parent
        if d is None:
            return ""
        return f"{d.difference:+.0f} [{d.lower:+.0f}, {d.upper:+.0f}] ({d.verdict})"


def lineage(store: Store, board: "Scoreboard | None" = None) -> list[LineageEntry]:
    """Every checkpoint with its round, human rating and change against its parent, from
    `board` (default: the scoreboard with its default filters)."""
    if board is None:
        from qwen3arena.scoreboard import build_scoreboard

        board = build_scoreboard(store)
    ratings = board.intervals.merge(board.table[["model", "votes"]], on="model", how="left")
    ratings_by_model = {row.model: row for row in ratings.itertuples()} if len(ratings) else {}
    runs = {}
    for r in reversed(store.list_runs(limit=None)):  # oldest first: a name's latest run wins
        runs[r.name] = (r.run_id, r.status, r.round, r.parent, r.config, r.metrics)
    names = [model.name for model in store.list_models()]
    names += [name for name in runs if name not in names]
    entries = []
    for name in names:
        run = runs.get(name)
        rating = ratings_by_model.get(name)
        config = run[4] if run else {}
        parent = run[3] if run else None
        entries.append(LineageEntry(
            round=int(run[2]) if run and run[2] is not None else 0,
            checkpoint=name,
            parent=parent,
            method=config.get("method", "sft") if run else None,
            data=Path(config["dataset"]).parent.name + "/" + Path(config["dataset"]).name
            if config.get("dataset") else None,
            rows=run[5].get("rows") if run else None,
            run_status=run[1] if run else None,
            rating=_number(rating, "rating"), lower=_number(rating, "lower"), upper=_number(rating, "upper"),
            votes=int(getattr(rating, "votes", 0) or 0) if rating is not None else 0,
            vs_parent=board.difference(name, parent) if parent else None,
        ))
    return sorted(entries, key=lambda e: (e.round, e.checkpoint))


def lineage_frame(entries: list[LineageEntry]) -> pd.DataFrame:
    rows = [[e.round, e.checkpoint, e.parent or "", e.method or "", e.data or "", e.rows if e.rows is not None else "",
             e.run_status or "", _fmt(e.rating), _fmt(e.lower), _fmt(e.upper), e.votes,
             e.change_vs_parent()] for e in entries]
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(row, column: str) -> float | None:
    if row is None:
        return None
    value = getattr(row, column, None)
    return float(value) if value is not None and np.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
