"""The DuckDB store: one file, one writer process, one connection behind a lock.

DuckDB connections are not safe to share between threads without a lock, and Gradio runs
handlers on a thread pool; every public method takes the lock, so the store is safe under
concurrent handlers. DuckDB lets one process write a file, and none while another process has
it open, even read-only: opening waits a few seconds for such a process to let go (a script
running one query), then fails with StoreLocked, naming the process and what to do.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import duckdb

from qwen3arena.errors import Refused
from qwen3arena.procs import LockHolder, file_lock_holders
from qwen3arena.store.migrations import MIGRATIONS

Outcome = Literal["model_a", "model_b", "tie", "both_bad"]
OUTCOMES: tuple[Outcome, ...] = ("model_a", "model_b", "tie", "both_bad")
BattleStatus = Literal["open", "ready", "voted", "error", "interrupted"]
# One statement inside a transaction: what Store.atomic yields and a vote's `then` receives.
Execute = Callable[[str, list[Any] | None], list[tuple]]


class StoreLocked(Refused, RuntimeError):
    """Another process holds the database file (DuckDB allows one writer process, and no writer
    while a reader has it open); the message names the process and what to do."""


class StoreUnavailable(Refused, OSError):
    """The database file cannot be opened for another reason (permissions, a read-only disk)."""


class VoteRejected(Refused, ValueError):
    """The vote cannot be recorded; the message says why and is safe to show."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class ModelRecord:
    name: str
    kind: Literal["base", "adapter", "endpoint"]
    base_model: str | None = None
    path: str | None = None
    base_url: str | None = None
    model_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class BattleRecord:
    battle_id: str
    voter: str
    model_a: str
    model_b: str
    status: BattleStatus = "open"
    turns: int = 0
    conversation_a: list[dict[str, Any]] = field(default_factory=list)
    conversation_b: list[dict[str, Any]] = field(default_factory=list)
    thinking_a: list[str | None] = field(default_factory=list)
    thinking_b: list[str | None] = field(default_factory=list)
    generation_a: dict[str, Any] = field(default_factory=dict)
    generation_b: dict[str, Any] = field(default_factory=dict)
    metrics_a: list[dict[str, Any]] = field(default_factory=list)
    metrics_b: list[dict[str, Any]] = field(default_factory=list)
    identity_leak: bool = False
    leak_reason: str | None = None
    error: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    campaign_id: str | None = None   # set for battles served by a labelling campaign
    prompt_id: str | None = None


@dataclass
class VoteRecord:
    vote_id: str
    battle_id: str
    voter: str
    outcome: Outcome
    model_a: str
    model_b: str
    turns: int
    identity_leak: bool
    created_at: datetime
    campaign_id: str | None = None   # the battle's campaign (None: open arena)
    reason: str | None = None        # reason chip chosen with the vote
    comment: str | None = None


RunStatus = Literal["queued", "running", "succeeded", "stopped", "failed", "cancelled", "interrupted"]
ACTIVE_RUN_STATES = ("queued", "running")


@dataclass
class RunRecord:
    run_id: str
    name: str
    status: RunStatus
    config: dict[str, Any]
    output_dir: str
    dataset_sha: str | None = None
    parent: str | None = None
    round: int | None = None
    join_arena: bool = False
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pid: int | None = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    wandb: str | None = None


_RUN_COLUMNS = tuple(RunRecord.__dataclass_fields__)
_RUN_JSON = ("config", "metrics")

_BATTLE_JSON = (
    "conversation_a", "conversation_b", "thinking_a", "thinking_b",
    "generation_a", "generation_b", "metrics_a", "metrics_b",
)
_BATTLE_COLUMNS = (
    "battle_id", "created_at", "updated_at", "voter", "model_a", "model_b", "status", "turns",
    *_BATTLE_JSON, "identity_leak", "leak_reason", "error", "campaign_id", "prompt_id",
)
_VOTE_COLUMNS = (
    "vote_id", "battle_id", "voter", "outcome", "model_a", "model_b", "turns",
    "identity_leak", "created_at", "campaign_id", "reason", "comment",
)


# How long opening the file waits for another process to let go of it: long enough for a script
# running one query, short enough that a second app on the same directory is refused at once.
LOCK_WAIT_S = 10.0


def _locked_message(path: Path, holders: list[LockHolder]) -> str:
    """What to do about the processes holding the file: a reader is closed, a writer stopped."""
    def who(h: LockHolder) -> str:
        return f"PID {h.pid}" + (f": {' '.join(h.command.split())[:120]}" if h.command else "")

    readers = [h for h in holders if h.kind == "READ"]
    if readers and len(readers) == len(holders):
        return (f"{path} is open read-only in another process ({'; '.join(who(h) for h in readers)}). DuckDB "
                "lets no process write the file while another has it open, even read-only: close that reader "
                "and start again. To read the data while the app runs, open a copy (docs/store.md).")
    names = f" ({'; '.join(who(h) for h in holders)})" if holders else ""
    return (f"{path} is in use by another process{names}; DuckDB allows one writer. Stop the other "
            "qwen3arena, or set QWEN3ARENA_HOME to another directory.")


class Store:
    def __init__(self, path: str | Path, lock_wait_s: float | None = None):
        """Opens (or creates) the file; waits up to `lock_wait_s` (LOCK_WAIT_S) for another
        process to let go of it."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = self._connect(LOCK_WAIT_S if lock_wait_s is None else lock_wait_s)
        self._lock = threading.RLock()
        self._migrate()

    def _connect(self, lock_wait_s: float) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + lock_wait_s
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                holders = file_lock_holders(self.path)
                if not holders and "lock" not in str(exc).lower():  # no /proc/locks: DuckDB's words
                    raise StoreUnavailable(f"cannot open the database {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreLocked(_locked_message(self.path, holders)) from exc
                time.sleep(0.5)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Runs one statement under the store's lock; for the packages' own store modules
        (judge, evals, harvest, campaigns), which hold their tables' SQL (docs/store.md)."""
        with self._lock:
            return self._con.execute(sql, params or []).fetchall()

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            self._con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            current = self.schema_version()
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {current}, newer than this qwen3arena "
                    f"({len(MIGRATIONS)}): upgrade qwen3arena"
                )
            for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
                with self._transaction():
                    self._con.execute(sql)
                    self._con.execute(
                        "INSERT INTO schema_version VALUES (?, ?)", [version, utcnow()]
                    )

    def schema_version(self) -> int:
        with self._lock:
            row = self._con.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0] or 0)

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._con)

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Execute]:
        """Several statements as one transaction under the store's lock, for the store modules'
        read-then-write steps (a campaign claim): yields an execute(sql, params) function.
        Any exception rolls everything back."""
        with self._lock, self._transaction():
            yield self._execute

    # -- models -----------------------------------------------------------------------------

    def upsert_model(self, record: ModelRecord) -> ModelRecord:
        """Registers a model; keeps the first registration time (it drives the new-model boost)."""
        with self._lock:
            self._con.execute(
                """
                INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET
                    kind = excluded.kind, base_model = excluded.base_model, path = excluded.path,
                    base_url = excluded.base_url, model_id = excluded.model_id,
                    metadata = excluded.metadata
                """,
                [record.name, record.kind, record.base_model, record.path, record.base_url,
                 record.model_id, record.created_at, json.dumps(record.metadata)],
            )
            return self.get_model(record.name)  # type: ignore[return-value]

    def get_model(self, name: str) -> ModelRecord | None:
        with self._lock:
            rows = self._con.execute("SELECT * FROM models WHERE name = ?", [name]).fetchall()
        return self._model(rows[0]) if rows else None

    def list_models(self) -> list[ModelRecord]:
        with self._lock:
            rows = self._con.execute("SELECT * FROM models ORDER BY created_at, name").fetchall()
        return [self._model(row) for row in rows]

    @staticmethod
    def _model(row: tuple) -> ModelRecord:
        name, kind, base_model, path, base_url, model_id, created_at, metadata = row
        return ModelRecord(name, kind, base_model, path, base_url, model_id, created_at,
                           json.loads(metadata) if metadata else {})

    # -- battles ----------------------------------------------------------------------------

    def save_battle(self, battle: BattleRecord) -> None:
        """Inserts or updates a battle; a voted battle is never rewritten."""
        battle.updated_at = utcnow()
        values = [self._battle_value(battle, column) for column in _BATTLE_COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _BATTLE_COLUMNS[2:])
        with self._lock:
            status = self._con.execute(
                "SELECT status FROM battles WHERE battle_id = ?", [battle.battle_id]
            ).fetchone()
            if status and status[0] == "voted":
                raise VoteRejected("This battle already has a vote and is locked.")
            self._con.execute(
                f"INSERT INTO battles ({', '.join(_BATTLE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_BATTLE_COLUMNS))}) "
                f"ON CONFLICT (battle_id) DO UPDATE SET {updates}",
                values,
            )

    @staticmethod
    def _battle_value(battle: BattleRecord, column: str) -> Any:
        value = getattr(battle, column)
        return json.dumps(value) if column in _BATTLE_JSON else value

    def get_battle(self, battle_id: str) -> BattleRecord | None:
        with self._lock:
            rows = self._con.execute(
                f"SELECT {', '.join(_BATTLE_COLUMNS)} FROM battles WHERE battle_id = ?",
                [battle_id],
            ).fetchall()
        if not rows:
            return None
        data = dict(zip(_BATTLE_COLUMNS, rows[0]))
        for column in _BATTLE_JSON:
            data[column] = json.loads(data[column]) if data[column] else []
        if not data["generation_a"]:
            data["generation_a"] = {}
        if not data["generation_b"]:
            data["generation_b"] = {}
        return BattleRecord(**data)

    def conversations(self, battle_ids: Iterable[str]) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Both sides' conversations of many battles in one query (the scoreboard's style
        control reads every voted battle)."""
        ids = list(dict.fromkeys(battle_ids))
        if not ids:
            return {}
        with self._lock:
            rows = self._con.execute(
                "SELECT battle_id, conversation_a, conversation_b FROM battles "
                "WHERE battle_id IN (SELECT UNNEST(?::VARCHAR[]))", [ids]).fetchall()
        return {battle_id: (json.loads(a) if a else [], json.loads(b) if b else []) for battle_id, a, b in rows}

    def interrupt_unfinished_battles(self) -> int:
        """Marks battles left open by a previous process; they can no longer be voted."""
        with self._lock:
            rows = self._con.execute(
                "UPDATE battles SET status = 'interrupted', updated_at = ? "
                "WHERE status IN ('open', 'ready') RETURNING battle_id",
                [utcnow()],
            ).fetchall()
        return len(rows)

    def count_battles(self, status: BattleStatus | None = None) -> int:
        with self._lock:
            if status is None:
                return self._con.execute("SELECT count(*) FROM battles").fetchone()[0]
            return self._con.execute(
                "SELECT count(*) FROM battles WHERE status = ?", [status]
            ).fetchone()[0]

    # -- votes ------------------------------------------------------------------------------

    def record_vote(self, battle_id: str, outcome: Outcome, voter: str,
                    reason: str | None = None, comment: str | None = None,
                    then: Callable[[Execute], None] | None = None) -> VoteRecord:
        """Records the one vote of a ready battle and locks it, atomically. The vote takes
        the battle's campaign; `reason` and `comment` are a labeller's (optional). `then` runs
        in the same transaction once the vote is written (a campaign closes the vote's slot):
        if it raises, neither is written.

        Raises VoteRejected (nothing written) when the battle is unknown, already voted,
        unfinished, errored or interrupted.
        """
        if outcome not in OUTCOMES:
            raise VoteRejected(f"Unknown vote {outcome!r}.")
        with self._lock, self._transaction():
            row = self._con.execute(
                "SELECT status, model_a, model_b, turns, identity_leak, campaign_id FROM battles "
                "WHERE battle_id = ?",
                [battle_id],
            ).fetchone()
            if row is None:
                raise VoteRejected("This battle is unknown (was the app restarted?). Start a new round.")
            status, model_a, model_b, turns, leak, campaign_id = row
            if status == "voted":
                raise VoteRejected("This battle already has a vote.")
            if status == "error":
                raise VoteRejected("A model failed to answer in this battle, so it cannot be voted.")
            if status == "interrupted":
                raise VoteRejected("This battle was interrupted by a restart. Start a new round.")
            if status != "ready":
                raise VoteRejected("Wait until both answers are complete before voting.")
            vote = VoteRecord(uuid.uuid4().hex, battle_id, voter, outcome, model_a, model_b,
                              turns, bool(leak), utcnow(), campaign_id, reason or None, comment or None)
            self._con.execute(
                f"INSERT INTO votes ({', '.join(_VOTE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_VOTE_COLUMNS))})",
                [getattr(vote, c) for c in _VOTE_COLUMNS],
            )
            self._con.execute(
                "UPDATE battles SET status = 'voted', updated_at = ? WHERE battle_id = ?",
                [vote.created_at, battle_id],
            )
            if then is not None:
                then(self._execute)
            return vote

    def _execute(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self._con.execute(sql, params or []).fetchall()

    def list_votes(self, voter: str | None = None, since: datetime | None = None,
                   before: datetime | None = None, campaign_id: str | None = None) -> list[VoteRecord]:
        """Votes, oldest first, narrowed by whichever filters are given (the scoreboard's)."""
        with self._lock:
            rows = self._con.execute(
                f"SELECT {', '.join(_VOTE_COLUMNS)} FROM votes WHERE (? IS NULL OR voter = ?) "
                "AND (?::TIMESTAMPTZ IS NULL OR created_at >= ?) AND (?::TIMESTAMPTZ IS NULL OR created_at < ?) "
                "AND (? IS NULL OR campaign_id = ?) ORDER BY created_at",
                [voter, voter, since, since, before, before, campaign_id, campaign_id],
            ).fetchall()
        return [VoteRecord(**dict(zip(_VOTE_COLUMNS, row))) for row in rows]

    def recently_voted(self, limit: int) -> list[str]:
        """Battle ids of the newest votes, newest first (what the judge looks at first)."""
        with self._lock:
            rows = self._con.execute("SELECT battle_id FROM votes ORDER BY created_at DESC LIMIT ?", [limit]).fetchall()
        return [battle_id for (battle_id,) in rows]

    def vote_counts(self) -> dict[str, int]:
        """Votes each model took part in (both sides counted)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT m, count(*) FROM (SELECT model_a AS m FROM votes "
                "UNION ALL SELECT model_b FROM votes) GROUP BY m"
            ).fetchall()
        return {name: count for name, count in rows}

    def vote_tallies(self) -> dict[tuple[str, str, str], int]:
        """(model_a, model_b, outcome) -> votes, identity leaks left out: what the pair sampler
        fits ratings on, one aggregate query instead of reading every vote per battle."""
        with self._lock:
            rows = self._con.execute(
                "SELECT model_a, model_b, outcome, count(*) FROM votes WHERE NOT identity_leak "
                "GROUP BY model_a, model_b, outcome"
            ).fetchall()
        return {(a, b, outcome): count for a, b, outcome, count in rows}

    def voters(self) -> list[str]:
        """Everyone who has voted, by name (the Data tab's voter filter)."""
        with self._lock:
            rows = self._con.execute("SELECT DISTINCT voter FROM votes ORDER BY voter").fetchall()
        return [voter for (voter,) in rows]


    # -- training runs ----------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        values = [json.dumps(getattr(run, c)) if c in _RUN_JSON else getattr(run, c) for c in _RUN_COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _RUN_COLUMNS[1:])
        with self._lock:
            self._con.execute(
                f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join('?' * len(_RUN_COLUMNS))}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {updates}",
                values,
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        runs = self._runs("WHERE run_id = ?", [run_id])
        return runs[0] if runs else None

    def list_runs(self, limit: int | None = 100) -> list[RunRecord]:
        """Newest first; limit None: every run (the lineage)."""
        if limit is None:
            return self._runs("ORDER BY created_at DESC", [])
        return self._runs("ORDER BY created_at DESC LIMIT ?", [limit])

    def runs_in_state(self, *states: str) -> list[RunRecord]:
        marks = ", ".join("?" * len(states))
        return self._runs(f"WHERE status IN ({marks}) ORDER BY created_at", list(states))

    def _runs(self, where: str, params: list[Any]) -> list[RunRecord]:
        with self._lock:
            rows = self._con.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs {where}", params).fetchall()
        runs = []
        for row in rows:
            data = dict(zip(_RUN_COLUMNS, row))
            for column in _RUN_JSON:
                data[column] = json.loads(data[column]) if data[column] else {}
            runs.append(RunRecord(**data))
        return runs

class _Transaction:
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def __enter__(self) -> "_Transaction":
        self._con.execute("BEGIN TRANSACTION")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._con.execute("ROLLBACK" if exc_type else "COMMIT")
