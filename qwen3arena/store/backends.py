"""The two databases the store runs on, and the little where their SQL differs.

DuckDB (a file, one writer process) is the embedded default; PostgreSQL (`store.url`) is the
shared store when several app processes serve one arena. The store modules write one statement
per query in DuckDB's spelling with `?` marks; a backend runs it, turning it into its own SQL
where needed (`?` marks, `DOUBLE`), and says the few clauses only one of them has
(`for_update`, `skip_locked`, `bulk_insert`). A backend also owns its connection: opening it
(with the errors a person can act on), transactions, and the migration lock between processes.
"""

from __future__ import annotations

import contextlib
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import urlsplit, urlunsplit

from qwen3arena.errors import Refused
from qwen3arena.procs import LockHolder, file_lock_holders

# How long opening the file waits for another process to let go of it: long enough for a script
# running one query, short enough that a second app on the same directory is refused at once.
LOCK_WAIT_S = 10.0
# How long opening PostgreSQL waits for the server (a server starting beside the app).
CONNECT_WAIT_S = 10.0
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# pg_advisory_lock key held while one process migrates (any constant; "q3a" in ASCII)
_MIGRATION_LOCK = 0x713361


class StoreLocked(Refused, RuntimeError):
    """Another process holds the database file (DuckDB allows one writer process, and no writer
    while a reader has it open); the message names the process and what to do."""


class StoreUnavailable(Refused, OSError):
    """The database cannot be opened for another reason (permissions, a read-only disk, a
    PostgreSQL server that cannot be reached at start)."""


class StoreUnreachable(Refused, ConnectionError):
    """The shared database went away mid-run: the action was not recorded (nothing is lost
    silently), and the next one reconnects."""


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def open_backend(target: str | Path, lock_wait_s: float | None = None) -> "Backend":
    """PostgreSQL for a postgresql:// URL, else the DuckDB file at `target`."""
    if is_postgres_url(target):
        return Postgres(str(target), CONNECT_WAIT_S if lock_wait_s is None else lock_wait_s)
    return DuckDB(Path(target), LOCK_WAIT_S if lock_wait_s is None else lock_wait_s)


class Backend:
    """One open database: its connection and its dialect. Not thread-safe: the Store's lock
    serialises every call."""

    name: str
    shared: bool          # several processes may write it at once
    for_update: str = ""  # appended to a SELECT whose rows the transaction then writes

    def run(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        raise NotImplementedError

    def begin(self) -> None:
        self.run("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.run("COMMIT")

    def rollback(self) -> None:
        self.run("ROLLBACK")

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """Where the data is, safe to show (no password)."""
        raise NotImplementedError

    def ddl(self, sql: str) -> str:
        """A migration in this database's spelling (migrations are written in DuckDB's)."""
        return sql

    def skip_locked(self, alias: str) -> str:
        """Appended to a SELECT ... LIMIT that picks a row to claim: rows another process is
        claiming right now are passed over instead of waited for."""
        return ""

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        """Held while migrating, so that two processes starting together migrate once."""
        yield

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
        """An INSERT of many rows in one statement, and its parameters."""
        marks = "(" + ", ".join("?" * len(columns)) + ")"
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([marks] * len(rows))}",
                [value for row in rows for value in row])


class DuckDB(Backend):
    """The embedded default: one file, one writer process."""

    name = "duckdb"
    shared = False

    def __init__(self, path: Path, lock_wait_s: float):
        import duckdb

        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + lock_wait_s
        while True:
            try:
                self._con = duckdb.connect(str(self.path))
                return
            except duckdb.IOException as exc:
                holders = file_lock_holders(self.path)
                if not holders and "lock" not in str(exc).lower():  # no /proc/locks: DuckDB's words
                    raise StoreUnavailable(f"cannot open the database {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreLocked(_locked_message(self.path, holders)) from exc
                time.sleep(0.5)

    def run(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self._con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self._con.close()

    def describe(self) -> str:
        return str(self.path)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, list]:
        # one list per column, zipped by unnest: binds in a fraction of a multi-row VALUES
        return (f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(['unnest(?)'] * len(columns))}",
                [list(column) for column in zip(*rows)])


class Postgres(Backend):
    """A PostgreSQL server shared by several app processes (psycopg 3). Values are bound on the
    client side (psycopg's ClientCursor), so DuckDB's `? IS NULL` filters and lists for unnest
    read the same here; JSON columns come back as text, as DuckDB gives them."""

    name = "postgres"
    shared = True
    for_update = " FOR UPDATE"

    def __init__(self, url: str, connect_wait_s: float):
        self.url = url
        self._connect_wait_s = connect_wait_s
        self._con = self._connect(connect_wait_s)
        self._in_transaction = False

    def _connect(self, wait_s: float):
        try:
            import psycopg
            from psycopg.types.string import TextLoader
        except ImportError as exc:
            raise StoreUnavailable("store.url names a PostgreSQL store, but psycopg is not installed: "
                                   "pip install 'psycopg[binary]' (requirements.txt)") from exc

        deadline = time.monotonic() + wait_s
        while True:
            try:
                con = psycopg.connect(self.url, autocommit=True, cursor_factory=psycopg.ClientCursor,
                                      connect_timeout=max(1, int(min(wait_s, 5))))
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() >= deadline:
                    reason = " ".join(str(exc).split())[:300]
                    raise StoreUnavailable(
                        f"cannot reach the PostgreSQL store {redacted(self.url)} ({reason}). Start the server "
                        "(python -m qwen3arena.store.postgres start DIR), or fix store.url "
                        "(QWEN3ARENA__STORE__URL); leave it empty for the DuckDB file.") from exc
                time.sleep(0.5)
        for json_type in ("json", "jsonb"):
            con.adapters.register_loader(json_type, TextLoader)
        con.execute("SET TIME ZONE 'UTC'")
        return con

    def run(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        import psycopg

        if self._con.broken or self._con.closed:
            if self._in_transaction:  # the statements before this one are gone with the connection
                raise self._unreachable()
            self._reconnect()
        try:
            cursor = self._con.execute(_postgres_sql(sql), params) if params else self._con.execute(sql)
            return cursor.fetchall() if cursor.description is not None else []
        except psycopg.OperationalError as exc:
            if self._con.broken or self._con.closed:
                raise self._unreachable() from exc
            raise

    def begin(self) -> None:
        self.run("BEGIN")
        self._in_transaction = True

    def commit(self) -> None:
        try:
            self.run("COMMIT")
        finally:
            self._in_transaction = False

    def rollback(self) -> None:
        try:
            if not (self._con.broken or self._con.closed):  # a lost connection rolled back by itself
                self.run("ROLLBACK")
        finally:
            self._in_transaction = False

    def _reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self._con.close()
        try:
            self._con = self._connect(0)
        except StoreUnavailable as exc:
            raise self._unreachable() from exc

    @staticmethod
    def _unreachable() -> StoreUnreachable:
        return StoreUnreachable("The database cannot be reached right now, so this was not recorded: "
                                "try again in a moment.")

    def close(self) -> None:
        self._con.close()

    def describe(self) -> str:
        return redacted(self.url)

    def ddl(self, sql: str) -> str:
        return re.sub(r"\bDOUBLE\b(?! PRECISION)", "DOUBLE PRECISION", sql)

    def skip_locked(self, alias: str) -> str:
        return f" FOR UPDATE OF {alias} SKIP LOCKED"

    @contextlib.contextmanager
    def migration_lock(self) -> Iterator[None]:
        self.run("SELECT pg_advisory_lock(?)", [_MIGRATION_LOCK])
        try:
            yield
        finally:
            self.run("SELECT pg_advisory_unlock(?)", [_MIGRATION_LOCK])


_QUOTED = re.compile(r"('(?:[^']|'')*')")


@lru_cache(maxsize=512)
def _postgres_sql(sql: str) -> str:
    """DuckDB's `?` marks as psycopg's `%s` (a literal `%` doubled), string literals untouched."""
    parts = _QUOTED.split(sql)
    return "".join(part if i % 2 else part.replace("%", "%%").replace("?", "%s") for i, part in enumerate(parts))


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
            "qwen3arena, or set QWEN3ARENA_HOME to another directory (or share a PostgreSQL store: "
            "store.url, docs/deploy.md).")
