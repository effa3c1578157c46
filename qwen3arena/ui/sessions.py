"""Bounds the memory Gradio keeps per browser session (issue 18, item 10).

Gradio 6.31 builds a `SessionState` for a session at its first event: the config of every
component of the app, plus the last value sent to each output. It drops a closed page's
`gr.State` values after an hour but never the SessionState itself, until 10,000 sessions exist.
Measured on this app, that is about 0.55 MiB of Python objects and 1 MiB of RSS for every
visitor's page (the app went from 550 to 728 MiB over 622 battles and never shrank).

`bound_sessions` forgets a session whose page was closed (Gradio's heartbeat ended) a short
grace ago, or that sent no event for `idle_s`: an open page polls the readiness line every few
seconds, so only a closed or abandoned page, or an idle API client, is that quiet. Beyond
`max_sessions` the least recently used go first. A forgotten page that sends an event again gets
a fresh session state: component values the server kept for it start from their defaults (the
Arena service keeps its battles by session id itself).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import logging
import threading
import weakref
from collections.abc import Callable

import gradio as gr

log = logging.getLogger(__name__)

CLOSED_GRACE_S = 120.0  # a closed page's heartbeat may reconnect (a network blip) with the same session


def forget_sessions(demo: gr.Blocks, idle_s: float, max_sessions: int,
                    closed_grace_s: float = CLOSED_GRACE_S,
                    on_forget: Callable[[str], None] | None = None) -> int:
    """Forgets the sessions that are over (see the module's docstring) and calls `on_forget`
    with each one's id (the app closes the page's unvoted battle); returns how many."""
    holder = getattr(demo, "state_holder", None)  # set by launch()
    if holder is None:
        return 0
    now = datetime.datetime.now()
    with holder.lock:
        used = dict(holder.time_last_used)
        sessions = dict(holder.session_data)
    idle = {sid: (now - used.get(sid, now)).total_seconds() for sid in sessions}
    over = {sid for sid, state in sessions.items()
            if idle[sid] > idle_s or (getattr(state, "is_closed", False) and idle[sid] > closed_grace_s)}
    keep = sorted((sid for sid in sessions if sid not in over), key=lambda sid: idle[sid])
    over.update(keep[max_sessions:])  # least recently used beyond the cap
    for sid in over:
        try:
            holder.delete_state(sid)  # runs gr.State delete callbacks, as Gradio's own expiry does
        except Exception:  # a callback's failure must not keep the session's memory
            log.exception("deleting the state of session %s", sid)
        with holder.lock:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)
        if on_forget is not None:
            try:
                on_forget(sid)
            except Exception:
                log.exception("closing what session %s held", sid)
    if over:
        _return_memory()
    return len(over)


def bound_sessions(demo: gr.Blocks, idle_s: float, max_sessions: int, every_s: float = 60.0,
                   closed_grace_s: float = CLOSED_GRACE_S,
                   on_forget: Callable[[str], None] | None = None) -> threading.Event:
    """Runs `forget_sessions` every `every_s` on a daemon thread while `demo` exists; set the
    returned event to stop it."""
    stop = threading.Event()
    ref = weakref.ref(demo)

    def loop() -> None:
        while not stop.wait(every_s):
            blocks = ref()
            if blocks is None:
                return
            try:
                forgotten = forget_sessions(blocks, idle_s, max_sessions, closed_grace_s, on_forget)
            except Exception:  # never let the reaper die: the memory would grow again
                log.exception("forgetting idle sessions")
                continue
            finally:
                del blocks
            if forgotten:
                log.info("forgot %d idle or closed page session(s)", forgotten)

    threading.Thread(target=loop, daemon=True, name="qwen3arena-sessions").start()
    return stop


def _return_memory() -> None:
    """Hands freed heap pages back to the system (glibc keeps them otherwise), so the app's
    size shrinks when visitors leave, not only stops growing."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc (macOS, musl): nothing to do
        pass
