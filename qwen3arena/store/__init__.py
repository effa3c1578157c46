"""Persistence: DuckDB file with models, battles and votes (schema in migrations.py)."""

from qwen3arena.store.db import (
    OUTCOMES,
    BattleRecord,
    ModelRecord,
    Outcome,
    Store,
    StoreLocked,
    VoteRecord,
    VoteRejected,
    utcnow,
)

__all__ = [
    "OUTCOMES", "BattleRecord", "ModelRecord", "Outcome", "Store", "StoreLocked",
    "VoteRecord", "VoteRejected", "utcnow",
]
