"""Which replica answers a request: least outstanding requests first, round robin among equals,
and a replica that failed is skipped for a back-off.

One balancer for the whole process, keyed by base URL: two contestants served by the same
servers (the base model and its adapters on the same vLLM replicas) share the counts, because
they share the servers. A replica is marked down when a request to it failed on the server's
side (refused connection, broken stream, timeout, HTTP 5xx or 429) or when a health check did
not reach it; it is tried again when its back-off ends (doubling with each failure in a row,
at most 8 times the first), or earlier when every replica of an endpoint is down (a down mark
is a guess: a request is never refused without trying). A finished answer clears the mark.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

MAX_BACKOFF_DOUBLINGS = 3


@dataclass
class ReplicaState:
    outstanding: int = 0        # requests in flight to it from this process
    picked: int = 0             # when it was last picked (a sequence number): round robin among equals
    failures: int = 0           # failures in a row
    down_until: float = 0.0     # time.monotonic() before which it is skipped
    served: int = 0             # requests that finished with an answer (for tests and benchmarks)
    failed: int = 0             # requests that failed on the server's side


def _key(url: str) -> str:
    return url.rstrip("/")


class Balancer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, ReplicaState] = {}
        self._sequence = itertools.count(1)

    def _state(self, url: str) -> ReplicaState:
        """Under the lock."""
        return self._states.setdefault(_key(url), ReplicaState())

    def order(self, urls: tuple[str, ...] | list[str], now: float | None = None) -> list[str]:
        """The replicas in the order they would be tried: the up ones by fewest requests in flight,
        then least recently picked; then the down ones, the soonest back first."""
        now = time.monotonic() if now is None else now
        with self._lock:
            states = {url: self._state(url) for url in urls}
        up = sorted((u for u in urls if states[u].down_until <= now),
                    key=lambda u: (states[u].outstanding, states[u].picked))
        down = sorted((u for u in urls if states[u].down_until > now), key=lambda u: states[u].down_until)
        return up + down

    def acquire(self, urls: tuple[str, ...] | list[str], exclude: set[str] = frozenset()) -> str | None:
        """Picks the replica for one request and counts it in flight (release() when done); None
        when every replica is excluded (they were all tried)."""
        now = time.monotonic()
        with self._lock:
            candidates = [u for u in dict.fromkeys(urls) if u not in exclude]
            if not candidates:
                return None
            states = {u: self._state(u) for u in candidates}
            up = [u for u in candidates if states[u].down_until <= now]
            if up:
                chosen = min(up, key=lambda u: (states[u].outstanding, states[u].picked))
            else:
                chosen = min(candidates, key=lambda u: states[u].down_until)
            state = states[chosen]
            state.outstanding += 1
            state.picked = next(self._sequence)
            return chosen

    def release(self, url: str) -> None:
        with self._lock:
            state = self._state(url)
            state.outstanding = max(state.outstanding - 1, 0)

    def succeeded(self, url: str) -> None:
        with self._lock:
            state = self._state(url)
            state.failures, state.down_until = 0, 0.0
            state.served += 1

    def mark_down(self, url: str, backoff_s: float) -> None:
        """Skips `url` for `backoff_s`, doubled for each failure in a row before this one."""
        with self._lock:
            state = self._state(url)
            state.failures += 1
            state.failed += 1
            pause = backoff_s * 2 ** min(state.failures - 1, MAX_BACKOFF_DOUBLINGS)
            state.down_until = max(state.down_until, time.monotonic() + pause)

    def is_down(self, url: str) -> bool:
        with self._lock:
            return self._state(url).down_until > time.monotonic()

    def snapshot(self) -> dict[str, ReplicaState]:
        """A copy of every replica's state (admin views, tests, benchmarks)."""
        with self._lock:
            return {url: ReplicaState(**vars(state)) for url, state in self._states.items()}

    def forget(self, urls: tuple[str, ...] | list[str] | None = None) -> None:
        """Drops what is known about `urls` (all when None): tests start from a clean slate."""
        with self._lock:
            if urls is None:
                self._states.clear()
            for url in urls or ():
                self._states.pop(_key(url), None)


BALANCER = Balancer()
