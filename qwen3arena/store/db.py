"""The store: a DuckDB file (the default: one writer process) or a PostgreSQL database shared by
several app processes (`store.url`), one connection behind a lock either way.

Connections are not safe to share between threads without a lock, and Gradio runs handlers on a
thread pool; every public method takes the lock, so the store is safe under concurrent handlers.
DuckDB lets one process write a file, and none while another process has it open, even
read-only: opening waits a few seconds for such a process to let go (a script running one
query), then fails with StoreLocked, naming the process and what to do. On PostgreSQL, what must
hold across processes is held by the database: a vote locks its battle's row (FOR UPDATE) and
votes.battle_id is UNIQUE, a campaign claim is a compare-and-set, migrations take an advisory
lock. Where the two databases' SQL differs is in backends.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

from qwen3arena.errors import Refused
from qwen3arena.store.backends import (  # the errors are re-exported by qwen3arena.store
    Backend, StoreLocked, StoreUnavailable, StoreUnreachable, open_backend,
)
from qwen3arena.store.migrations import MIGRATIONS

Outcome = Literal["model_a", "model_b", "tie", "both_bad"]
OUTCOMES: tuple[Outcome, ...] = ("model_a", "model_b", "tie", "both_bad")
BattleStatus = Literal["open", "ready", "voted", "error", "interrupted"]
# One statement inside a transaction: what Store.atomic yields and a vote's `then` receives.
Execute = Callable[[str, list[Any] | None], list[tuple]]


class VoteRejected(Refused, ValueError):
    """The vote cannot be recorded; the message says why and is safe to show."""


class UndoRejected(VoteRejected):
    """A vote cannot be undone (there is none, it is someone else's, or it is final); nothing
    changed."""


class VoteFinal(UndoRejected):
    """The vote is final: its names were shown, or its undo window closed."""


class RepairRejected(VoteRejected):
    """A repair cannot be kept (empty, too long, no vote, someone else's, past its window);
    nothing changed."""


class NotYourVote(UndoRejected, RepairRejected):
    """The vote belongs to another voter or page."""


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
    final_at: datetime | None = None  # undo allowed before this (None: final; migration 8)
    repair: str | None = None         # the voter's own better answer (plain text)
    repair_original: str | None = None  # the preferred answer it replaced (None: tie, both bad)
    repaired_by: str | None = None
    repaired_at: datetime | None = None

    def final(self, now: datetime | None = None) -> bool:
        """Whether the vote can no longer be undone."""
        return self.final_at is None or self.final_at <= (now or utcnow())


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
    "final_at", "repair", "repair_original", "repaired_by", "repaired_at",
)
# a vote counts (ratings, harvest, sampling) once it is final: past its undo window, or revealed
_FINAL = "coalesce(final_at, created_at) <= ?"


# The most votes one commit carries. A commit costs the same for 1 vote or 64 (its WAL flush),
# so votes arriving together share one (group commit; bench/vote_ingest.py).
VOTE_BATCH = 64


@dataclass
class _VoteRequest:
    """One record_vote call waiting for the commit that carries it."""

    args: tuple
    done: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # done, or made the leader
    leads: bool = False
    result: "VoteRecord | None" = None
    error: BaseException | None = None


class _ThenFailed(Exception):
    """A vote's `then` raised after the vote was written: its batch must be undone."""

    def __init__(self, original: BaseException):
        super().__init__(str(original))
        self.original = original


class Store:
    def __init__(self, target: str | Path, lock_wait_s: float | None = None, vote_batch: int = VOTE_BATCH):
        """Opens (or creates) the DuckDB file at `target`, or the PostgreSQL database a
        `postgresql://` URL names; waits up to `lock_wait_s` (LOCK_WAIT_S for a file, CONNECT_WAIT_S
        for a server) for another process to let go of the file, or for the server to answer.
        `vote_batch`: the most votes one commit carries (1: a commit per vote)."""
        self.backend: Backend = open_backend(target, lock_wait_s)
        self.path: Path | None = getattr(self.backend, "path", None)  # the DuckDB file; None on PostgreSQL
        self._lock = threading.RLock()
        self.vote_batch = max(1, vote_batch)
        self.vote_commits = 0  # transactions that carried votes (bench/vote_ingest.py reads it)
        self._vote_queue: list[_VoteRequest] = []
        self._vote_queue_lock = threading.Lock()
        self._vote_leading = False  # a record_vote call is writing the queue
        try:
            self._migrate()
        except BaseException:
            self.backend.close()
            raise

    @property
    def shared(self) -> bool:
        """Whether other app processes may write this store too (PostgreSQL)."""
        return self.backend.shared

    def close(self) -> None:
        with self._lock:
            self.backend.close()

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        """Runs one statement under the store's lock; for the packages' own store modules
        (judge, evals, harvest, campaigns), which hold their tables' SQL (docs/store.md)."""
        with self._lock:
            return self._run(sql, params)

    def _run(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self.backend.run(sql, params)

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock, self.backend.migration_lock():
            self._run(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
            )
            current = self.schema_version()
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.backend.describe()} has schema version {current}, newer than this qwen3arena "
                    f"({len(MIGRATIONS)}): upgrade qwen3arena"
                )
            for version, sql in enumerate(MIGRATIONS[current:], start=current + 1):
                with self._transaction():
                    self._run(self.backend.ddl(sql))
                    self._run(
                        "INSERT INTO schema_version VALUES (?, ?)", [version, utcnow()]
                    )

    def schema_version(self) -> int:
        with self._lock:
            return int(self._run("SELECT max(version) FROM schema_version")[0][0] or 0)

    def _transaction(self) -> "_Transaction":
        return _Transaction(self.backend)

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
            self._run(
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
            rows = self._run("SELECT * FROM models WHERE name = ?", [name])
        return self._model(rows[0]) if rows else None

    def list_models(self) -> list[ModelRecord]:
        with self._lock:
            rows = self._run("SELECT * FROM models ORDER BY created_at, name")
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
            # the WHERE keeps a battle voted by another process meanwhile (PostgreSQL) as it is
            written = self._run(
                f"INSERT INTO battles ({', '.join(_BATTLE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_BATTLE_COLUMNS))}) "
                f"ON CONFLICT (battle_id) DO UPDATE SET {updates} WHERE battles.status <> 'voted' "
                "RETURNING battle_id",
                values,
            )
            if not written:
                raise VoteRejected("This battle already has a vote and is locked.")

    @staticmethod
    def _battle_value(battle: BattleRecord, column: str) -> Any:
        value = getattr(battle, column)
        return json.dumps(value) if column in _BATTLE_JSON else value

    def get_battle(self, battle_id: str) -> BattleRecord | None:
        with self._lock:
            rows = self._run(
                f"SELECT {', '.join(_BATTLE_COLUMNS)} FROM battles WHERE battle_id = ?",
                [battle_id],
            )
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
            rows = self._run(
                "SELECT battle_id, conversation_a, conversation_b FROM battles "
                "WHERE battle_id IN (SELECT UNNEST(?::VARCHAR[]))", [ids])
        return {battle_id: (json.loads(a) if a else [], json.loads(b) if b else []) for battle_id, a, b in rows}

    def interrupt_unfinished_battles(self, idle_s: float | None = None) -> int:
        """Marks battles left open by a previous process; they can no longer be voted. `idle_s`:
        only those untouched for that long (a shared store, whose other app processes' live
        battles must stay votable: theirs are never idle that long)."""
        now = utcnow()
        before = now if idle_s is None else now - timedelta(seconds=idle_s)
        with self._lock:
            rows = self._run(
                "UPDATE battles SET status = 'interrupted', updated_at = ? "
                "WHERE status IN ('open', 'ready') AND updated_at <= ? RETURNING battle_id",
                [now, before],
            )
        return len(rows)

    def count_battles(self, status: BattleStatus | None = None) -> int:
        with self._lock:
            if status is None:
                return self._run("SELECT count(*) FROM battles")[0][0]
            return self._run(
                "SELECT count(*) FROM battles WHERE status = ?", [status]
            )[0][0]

    # -- votes ------------------------------------------------------------------------------

    def record_vote(self, battle_id: str, outcome: Outcome, voter: str,
                    reason: str | None = None, comment: str | None = None,
                    then: Callable[[Execute], None] | None = None, undo_window_s: float = 0.0) -> VoteRecord:
        """Records the one vote of a ready battle and locks it, atomically. The vote takes
        the battle's campaign; `reason` and `comment` are a labeller's (optional). `then` runs
        in the same transaction once the vote is written (a campaign closes the vote's slot):
        if it raises, neither is written. `undo_window_s`: how long the voter may undo it
        (undo_vote); until then, or until reveal_vote, it is not final and nothing counts it.

        Raises VoteRejected (nothing written) when the battle is unknown, already voted,
        unfinished, errored or interrupted.
        """
        if outcome not in OUTCOMES:
            raise VoteRejected(f"Unknown vote {outcome!r}.")
        request = _VoteRequest((battle_id, outcome, voter, reason, comment, then, undo_window_s))
        # group commit: one caller at a time leads, writing every vote queued meanwhile in one
        # transaction until its own is written, then hands the lead to the oldest waiting vote;
        # the others sleep on their own event (no chain of lock hand-offs)
        with self._vote_queue_lock:
            self._vote_queue.append(request)
            if not self._vote_leading:
                self._vote_leading = request.leads = True
        while not request.done.is_set():
            if request.leads:
                self._lead_votes(request)
            else:
                request.wake.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _lead_votes(self, own: _VoteRequest) -> None:
        try:
            while not own.done.is_set():
                with self._vote_queue_lock:
                    batch = self._vote_queue[:self.vote_batch]
                    del self._vote_queue[:self.vote_batch]
                with self._lock:
                    self._write_votes(batch)
        finally:
            with self._vote_queue_lock:
                if self._vote_queue:
                    self._vote_queue[0].leads = True
                    self._vote_queue[0].wake.set()
                else:
                    self._vote_leading = False

    def _write_votes(self, batch: list[_VoteRequest]) -> None:
        """The batch in one transaction, acknowledged after its commit. A refused vote (checked
        before anything is written) leaves the others be; a `then` or the database failing
        undoes the batch, which is then written vote by vote, each in its own transaction."""
        try:
            try:
                with self._transaction():
                    self._insert_votes(batch)
                self.vote_commits += 1
            except Exception as exc:
                if len(batch) == 1:  # its own failure: say it, without running `then` twice
                    batch[0].result, batch[0].error = None, exc.original if isinstance(exc, _ThenFailed) else exc
                    return
                for request in batch:
                    request.result = request.error = None
                    try:
                        with self._transaction():
                            self._insert_votes([request])
                        self.vote_commits += 1
                    except _ThenFailed as failed:
                        request.result, request.error = None, failed.original
                    except Exception as failed:
                        request.result, request.error = None, failed
        finally:
            for request in batch:
                request.done.set()
                request.wake.set()

    def _insert_votes(self, batch: list[_VoteRequest]) -> None:
        """Checks and writes the batch's votes inside the caller's transaction, set-wise (one
        read, one insert, one update: a statement costs about 1 ms here, whatever its rows).
        A refusal is the request's VoteRejected, decided before any write; a `then` raising
        after the writes is _ThenFailed."""
        ids = list(dict.fromkeys(request.args[0] for request in batch))
        battles = {row[0]: row[1:] for row in self._run(
            "SELECT battle_id, status, model_a, model_b, turns, identity_leak, campaign_id FROM battles "
            # locked until the commit (PostgreSQL): a vote from another process on the same
            # battle waits here, then reads it voted
            f"WHERE battle_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY battle_id{self.backend.for_update}", [ids])}
        accepted: list[tuple[_VoteRequest, VoteRecord]] = []
        claimed: set[str] = set()
        now = utcnow()
        for request in batch:
            battle_id, outcome, voter, reason, comment, _then, undo_window_s = request.args
            try:
                row = battles.get(battle_id)
                if row is None:
                    raise VoteRejected("This battle is unknown (was the app restarted?). Start a new round.")
                status, model_a, model_b, turns, leak, campaign_id = row
                if status == "voted" or battle_id in claimed:
                    raise VoteRejected("This battle already has a vote.")
                if status == "error":
                    raise VoteRejected("A model failed to answer in this battle, so it cannot be voted.")
                if status == "interrupted":
                    raise VoteRejected("This battle was interrupted by a restart. Start a new round.")
                if status != "ready":
                    raise VoteRejected("Wait until both answers are complete before voting.")
            except VoteRejected as exc:
                request.error = exc
                continue
            claimed.add(battle_id)
            accepted.append((request, VoteRecord(
                uuid.uuid4().hex, battle_id, voter, outcome, model_a, model_b, turns, bool(leak), now,
                campaign_id, reason or None, comment or None,
                final_at=now + timedelta(seconds=max(0.0, undo_window_s)))))
        if not accepted:
            return
        self._run(*self.backend.bulk_insert(
            "votes", _VOTE_COLUMNS, [[getattr(vote, c) for c in _VOTE_COLUMNS] for _, vote in accepted]))
        self._run("UPDATE battles SET status = 'voted', updated_at = ? "
                  "WHERE battle_id IN (SELECT unnest(?::VARCHAR[]))", [now, [vote.battle_id for _, vote in accepted]])
        for request, vote in accepted:
            then = request.args[5]
            if then is not None:
                try:
                    then(self._execute)
                except Exception as exc:
                    raise _ThenFailed(exc) from exc
            request.result = vote

    def _execute(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        return self._run(sql, params)

    def get_vote(self, battle_id: str) -> VoteRecord | None:
        """The battle's vote, final or not."""
        with self._lock:
            return self._vote_row(battle_id)

    def _vote_row(self, battle_id: str, for_update: bool = False) -> VoteRecord | None:
        """`for_update`: the row stays locked until the transaction ends (PostgreSQL), so an
        undo and a repair from two processes take turns."""
        rows = self._run(f"SELECT {', '.join(_VOTE_COLUMNS)} FROM votes WHERE battle_id = ?"
                         f"{self.backend.for_update if for_update else ''}", [battle_id])
        return VoteRecord(**dict(zip(_VOTE_COLUMNS, rows[0]))) if rows else None

    def reveal_vote(self, battle_id: str) -> VoteRecord | None:
        """Makes the battle's vote final now (its names are about to be shown): no undo after
        this. None when the battle has no vote (it was undone)."""
        with self._lock:
            rows = self._run(
                "UPDATE votes SET final_at = least(coalesce(final_at, created_at), ?) WHERE battle_id = ? "
                "RETURNING vote_id", [utcnow(), battle_id])
            return self._vote_row(battle_id) if rows else None

    def undo_vote(self, battle_id: str, voter: str) -> VoteRecord:
        """Takes back a vote that is not final yet, by its own voter, in one transaction: the
        vote leaves the votes table (nothing counts it any more), a copy goes to vote_undos, and
        the battle is votable again. Refused, nothing changed: UndoRejected (no vote: never
        cast, or undone already), NotYourVote, VoteFinal (revealed, or the window closed)."""
        with self._lock, self._transaction():
            vote = self._vote_row(battle_id, for_update=True)
            if vote is None:
                raise UndoRejected("There is no vote to undo on this battle (it was undone already, or never cast).")
            if vote.voter != voter:
                raise NotYourVote("This vote is not yours, so you cannot undo it.")
            now = utcnow()
            if vote.final(now):
                raise VoteFinal("This vote is final: the models were shown, or its undo time ran out.")
            record = {c: (v.isoformat() if isinstance(v, datetime) else v)
                      for c, v in dataclasses.asdict(vote).items()}
            self._run("INSERT INTO vote_undos VALUES (?, ?, ?, ?, ?)",
                              [vote.vote_id, battle_id, voter, now, json.dumps(record)])
            self._run("DELETE FROM votes WHERE vote_id = ?", [vote.vote_id])
            self._run("UPDATE battles SET status = 'ready', updated_at = ? "
                              "WHERE battle_id = ? AND status = 'voted'", [now, battle_id])
            return vote

    def undone_votes(self, battle_id: str | None = None) -> list[dict[str, Any]]:
        """The audit of undone votes (oldest first): each vote as it was, with who undid it when."""
        with self._lock:
            rows = self._run(
                "SELECT vote_id, battle_id, voter, undone_at, vote FROM vote_undos "
                "WHERE (? IS NULL OR battle_id = ?) ORDER BY undone_at", [battle_id, battle_id])
        return [{"vote_id": v, "battle_id": b, "voter": who, "undone_at": at, "vote": json.loads(data)}
                for v, b, who, at, data in rows]

    def repair_vote(self, battle_id: str, vote_id: str, voter: str, text: str, original: str | None,
                    window_s: float) -> VoteRecord:
        """Keeps the voter's repair with their vote `vote_id` (who, when, the answer it replaces),
        within `window_s` of the vote; a later repair replaces an earlier one. Refused, nothing
        changed: RepairRejected (no such vote any more, or past the window), NotYourVote."""
        with self._lock, self._transaction():
            vote = self._vote_row(battle_id, for_update=True)
            if vote is None or vote.vote_id != vote_id:
                raise RepairRejected("This battle has no such vote any more (it was undone): vote, then repair.")
            if vote.voter != voter:
                raise NotYourVote("You can only repair your own vote.")
            now = utcnow()
            if now > vote.created_at + timedelta(seconds=window_s):
                raise RepairRejected(f"Too late to repair this vote: a repair is taken up to "
                                     f"{_span(window_s)} after the vote.")
            self._run("UPDATE votes SET repair = ?, repair_original = ?, repaired_by = ?, repaired_at = ? "
                              "WHERE vote_id = ?", [text, original, voter, now, vote_id])
            return self._vote_row(battle_id)  # type: ignore[return-value]

    def list_votes(self, voter: str | None = None, since: datetime | None = None,
                   before: datetime | None = None, campaign_id: str | None = None,
                   final_only: bool = False) -> list[VoteRecord]:
        """Votes, oldest first, narrowed by whichever filters are given (the scoreboard's).
        `final_only`: only votes that can no longer be undone (what ratings count)."""
        with self._lock:
            rows = self._run(
                f"SELECT {', '.join(_VOTE_COLUMNS)} FROM votes WHERE (? IS NULL OR voter = ?) "
                "AND (?::TIMESTAMPTZ IS NULL OR created_at >= ?) AND (?::TIMESTAMPTZ IS NULL OR created_at < ?) "
                f"AND (? IS NULL OR campaign_id = ?) AND (NOT ? OR {_FINAL}) ORDER BY created_at",
                [voter, voter, since, since, before, before, campaign_id, campaign_id, final_only, utcnow()],
            )
        return [VoteRecord(**dict(zip(_VOTE_COLUMNS, row))) for row in rows]

    def recently_voted(self, limit: int) -> list[str]:
        """Battle ids of the newest votes, newest first (what the judge looks at first)."""
        with self._lock:
            rows = self._run("SELECT battle_id FROM votes ORDER BY created_at DESC LIMIT ?", [limit])
        return [battle_id for (battle_id,) in rows]

    def vote_counts(self) -> dict[str, int]:
        """Votes each model took part in (both sides counted)."""
        with self._lock:
            rows = self._run(
                f"SELECT m, count(*) FROM (SELECT model_a AS m FROM votes WHERE {_FINAL} "
                f"UNION ALL SELECT model_b FROM votes WHERE {_FINAL}) AS sides GROUP BY m", [utcnow()] * 2
            )
        return {name: count for name, count in rows}

    def vote_tallies(self) -> dict[tuple[str, str, str], int]:
        """(model_a, model_b, outcome) -> votes, identity leaks left out: what the pair sampler
        fits ratings on, one aggregate query instead of reading every vote per battle."""
        with self._lock:
            rows = self._run(
                f"SELECT model_a, model_b, outcome, count(*) FROM votes WHERE NOT identity_leak AND {_FINAL} "
                "GROUP BY model_a, model_b, outcome", [utcnow()]
            )
        return {(a, b, outcome): count for a, b, outcome, count in rows}

    def voters(self) -> list[str]:
        """Everyone who has voted, by name (the Data tab's voter filter)."""
        with self._lock:
            rows = self._run("SELECT DISTINCT voter FROM votes ORDER BY voter")
        return [voter for (voter,) in rows]


    # -- training runs ----------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        values = [json.dumps(getattr(run, c)) if c in _RUN_JSON else getattr(run, c) for c in _RUN_COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _RUN_COLUMNS[1:])
        with self._lock:
            self._run(
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
            rows = self._run(f"SELECT {', '.join(_RUN_COLUMNS)} FROM runs {where}", params)
        runs = []
        for row in rows:
            data = dict(zip(_RUN_COLUMNS, row))
            for column in _RUN_JSON:
                data[column] = json.loads(data[column]) if data[column] else {}
            runs.append(RunRecord(**data))
        return runs

def _span(seconds: float) -> str:
    """A window's length in words: "5 s", "10 min", "1 h"."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


class _Transaction:
    def __init__(self, backend: Backend):
        self._backend = backend

    def __enter__(self) -> "_Transaction":
        self._backend.begin()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type:
            self._backend.rollback()
        else:
            self._backend.commit()
