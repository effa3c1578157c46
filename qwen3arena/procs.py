"""Child processes that never outlive the app (vLLM servers, training runs)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: a new process group, and SIGTERM when the spawning thread's process dies.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so spawn from a thread
    that lives as long as the child (a supervisor that waits on it)."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def running_command(pid: int) -> str | None:
    """The command line of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    return None if state == "Z" else raw.replace(b"\0", b" ").decode(errors="replace")


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a child process appended to its event file so far (a line still being
    written is skipped): how the app follows training runs and benchmark jobs."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return events
