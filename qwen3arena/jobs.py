"""The jobs table (migration 7): benchmark and judge jobs, through Store.execute only.

A job lives in the app process, not in a browser session; its row is what any page reads to
re-attach, and what an app restart finds. A job still queued or running when the app died is
marked interrupted on the next start (its child, if any, is asked to stop). Training runs keep
their own table (runs): they carry lineage and a queue that survives a restart.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Literal, TypeVar

from qwen3arena.procs import end_orphan
from qwen3arena.store import Store, utcnow

T = TypeVar("T")
JobKind = Literal["benchmark", "judge"]
ACTIVE_JOB_STATES = ("queued", "running")
INTERRUPTED = "the app stopped while this job was running"


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: what was asked (params), how far it got (progress: done, total,
    stage), what it produced (result), and why it failed (error, safe to show)."""

    job_id: str
    kind: JobKind
    status: str = "queued"
    created_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pid: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_JOB_STATES

    @property
    def done(self) -> int:
        return int(self.progress.get("done", 0))

    @property
    def total(self) -> int:
        return int(self.progress.get("total", 0))

    @property
    def stage(self) -> str:
        return str(self.progress.get("stage", self.status))


_COLUMNS = tuple(f.name for f in fields(JobRecord))
_JSON = ("params", "progress", "result")


class JobTable:
    def __init__(self, store: Store):
        self.store = store

    def save(self, job: JobRecord) -> JobRecord:
        values = [json.dumps(getattr(job, c), default=str) if c in _JSON else getattr(job, c) for c in _COLUMNS]
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:])
        self.store.execute(
            f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
            f"ON CONFLICT (job_id) DO UPDATE SET {updates}", values)
        return job

    def get(self, job_id: str) -> JobRecord | None:
        rows = self._select("WHERE job_id = ?", [job_id])
        return rows[0] if rows else None

    def list(self, kind: JobKind, limit: int = 50) -> list[JobRecord]:
        """Newest first."""
        return self._select("WHERE kind = ? ORDER BY created_at DESC LIMIT ?", [kind, limit])

    def latest(self, kind: JobKind) -> JobRecord | None:
        rows = self.list(kind, limit=1)
        return rows[0] if rows else None

    def interrupt(self, kind: JobKind, marker: str | None = None) -> list[str]:
        """Jobs an earlier app process left queued or running are marked interrupted; a child
        whose command still contains `marker` is asked to stop."""
        marks = ", ".join("?" * len(ACTIVE_JOB_STATES))
        left = self._select(f"WHERE kind = ? AND status IN ({marks})", [kind, *ACTIVE_JOB_STATES])
        for job in left:
            if marker:
                end_orphan(job.pid, marker)
            self.save(replace(job, status="interrupted", finished_at=utcnow(), error=INTERRUPTED))
        return [job.job_id for job in left]

    def _select(self, where: str, params: list[Any]) -> list[JobRecord]:
        rows = self.store.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs {where}", params)
        jobs = []
        for row in rows:
            values = dict(zip(_COLUMNS, row))
            for column in _JSON:
                values[column] = json.loads(values[column]) if values[column] is not None else None
            jobs.append(JobRecord(**values))
        return jobs


def wait_for(job_id: str, get: Callable[[str], T | None], ended: Callable[[T], bool], timeout: float,
             poll_s: float = 0.2) -> T:
    """Polls a job until it has ended (every runner's wait()); KeyError for an unknown job,
    TimeoutError when it still runs after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(job_id)
        if job is None:
            raise KeyError(job_id)
        if ended(job):
            return job
        time.sleep(poll_s)
    raise TimeoutError(f"job {job_id} still running after {timeout} s")


def join_all(threads: Iterable[threading.Thread], timeout: float) -> None:
    """Waits for job threads to write their last row at shutdown, `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for thread in list(threads):
        thread.join(max(deadline - time.monotonic(), 0))
