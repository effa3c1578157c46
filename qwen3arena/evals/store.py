"""The benchmark_scores table (migration 4), through Store.execute only.

The evals package owns its SQL next to its logic; the Store provides the lock and the schema.
"""

from __future__ import annotations

from typing import Any

from qwen3arena.evals.report import BenchmarkScore
from qwen3arena.store import Store

_COLUMNS = (
    "run_id", "created_at", "model", "source", "source_version", "benchmark", "dataset", "subset",
    "metric", "is_primary", "score", "num", "status", "error", "config", "work_dir",
)


def save_scores(store: Store, scores: list[BenchmarkScore]) -> int:
    """Appends the rows of one run (a run is never rewritten: each job has its own run_id)."""
    marks = ", ".join("?" * len(_COLUMNS))
    for s in scores:
        if s.status == "failed" and s.score is not None:
            raise ValueError(f"{s.dataset}/{s.metric}: a failed row cannot carry a score")
        store.execute(
            f"INSERT INTO benchmark_scores ({', '.join(_COLUMNS)}) VALUES ({marks})",
            [s.run_id or "", s.created_at, s.model, s.source, s.source_version, s.benchmark, s.dataset,
             s.subset, s.metric, s.primary, s.score, s.num, s.status, s.error, s.config_json, s.work_dir],
        )
    return len(scores)


def list_scores(store: Store, model: str | None = None, dataset: str | None = None,
                run_id: str | None = None, include_failed: bool = True) -> list[BenchmarkScore]:
    """Rows, newest run first."""
    where, params = [], []
    for column, value in (("model", model), ("dataset", dataset), ("run_id", run_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if not include_failed:
        where.append("status = 'ok'")
    sql = f"SELECT {', '.join(_COLUMNS)} FROM benchmark_scores"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, dataset, subset, metric"
    return [_score(row) for row in store.execute(sql, params)]


def latest_primary_scores(store: Store) -> list[BenchmarkScore]:
    """The primary metric of each model x dataset from its latest successful run (a leaderboard)."""
    rows = store.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM (SELECT *, row_number() OVER (PARTITION BY model, dataset "
        "  ORDER BY created_at DESC, (subset = 'OVERALL') DESC, subset) AS latest "
        "  FROM benchmark_scores WHERE status = 'ok' AND is_primary) AS ranked "
        "WHERE latest = 1 ORDER BY dataset, score DESC",
    )
    return [_score(row) for row in rows]


def _score(row: tuple[Any, ...]) -> BenchmarkScore:
    d = dict(zip(_COLUMNS, row))
    return BenchmarkScore(
        model=d["model"], dataset=d["dataset"], metric=d["metric"], score=d["score"], num=d["num"],
        subset=d["subset"], created_at=d["created_at"], config_json=d["config"] or "{}",
        work_dir=d["work_dir"], benchmark=d["benchmark"], primary=bool(d["is_primary"]),
        status=d["status"], error=d["error"], run_id=d["run_id"], source=d["source"],
        source_version=d["source_version"],
    )
