"""Round by round: which data trained which checkpoint, and how its rating moved.

Joins the rounds (harvest), the training runs (their round, parent, dataset) and the human
ratings with their intervals, so a team can see whether a round helped: the child's interval
against its parent's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qwen3arena.store import Store

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

    def change_vs(self, parent: "LineageEntry | None") -> str:
        """'+12 (better)' when the intervals do not overlap, else the difference and 'unclear'."""
        if parent is None or self.rating is None or parent.rating is None:
            return ""
        diff = self.rating - parent.rating
        verdict = "unclear"
        if None not in (self.lower, self.upper, parent.lower, parent.upper):
            if self.lower > parent.upper:  # type: ignore[operator]
                verdict = "better"
            elif self.upper < parent.lower:  # type: ignore[operator]
                verdict = "worse"
        return f"{diff:+.0f} ({verdict})"


def lineage(store: Store, ratings: pd.DataFrame | None = None) -> list[LineageEntry]:
    """Every checkpoint with its round and human rating. `ratings` (model, rating, lower, upper,
    votes) defaults to the scoreboard's, with its default filters."""
    if ratings is None:
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
        entries.append(LineageEntry(
            round=int(run[2]) if run and run[2] is not None else 0,
            checkpoint=name,
            parent=run[3] if run else None,
            method=config.get("method", "sft") if run else None,
            data=Path(config["dataset"]).parent.name + "/" + Path(config["dataset"]).name
            if config.get("dataset") else None,
            rows=run[5].get("rows") if run else None,
            run_status=run[1] if run else None,
            rating=_number(rating, "rating"), lower=_number(rating, "lower"), upper=_number(rating, "upper"),
            votes=int(getattr(rating, "votes", 0) or 0) if rating is not None else 0,
        ))
    return sorted(entries, key=lambda e: (e.round, e.checkpoint))


def lineage_frame(entries: list[LineageEntry]) -> pd.DataFrame:
    by_name = {e.checkpoint: e for e in entries}
    rows = [[e.round, e.checkpoint, e.parent or "", e.method or "", e.data or "", e.rows if e.rows is not None else "",
             e.run_status or "", _fmt(e.rating), _fmt(e.lower), _fmt(e.upper), e.votes,
             e.change_vs(by_name.get(e.parent or ""))] for e in entries]
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(row, column: str) -> float | None:
    if row is None:
        return None
    value = getattr(row, column, None)
    return float(value) if value is not None and np.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
