"""Persistence: a DuckDB file (default) or a shared PostgreSQL database with models, battles and votes
(schema in migrations.py, where the two differ in backends.py)."""

from qwen3arena.store.db import (
    ACTIVE_RUN_STATES,
    OUTCOMES,
    BattleRecord,
    Execute,
    ModelRecord,
    NotYourVote,
    RepairRejected,
    RunRecord,
    Outcome,
    Store,
    StoreLocked,
    StoreUnavailable,
    StoreUnreachable,
    UndoRejected,
    VoteFinal,
    VoteRecord,
    VoteRejected,
    utcnow,
)

__all__ = [
    "ACTIVE_RUN_STATES", "Execute", "RunRecord", "OUTCOMES", "BattleRecord", "ModelRecord", "Outcome", "Store", "StoreLocked", "StoreUnavailable",
    "StoreUnreachable", "VoteRecord", "VoteRejected", "utcnow", "NotYourVote", "RepairRejected", "UndoRejected", "VoteFinal",
]
