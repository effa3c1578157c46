"""Child processes that never outlive the app (vLLM servers, training runs), and what their
exits mean."""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
from pathlib import Path
from typing import Any


_PR_SET_PDEATHSIG = 1

# What a signal usually means for the processes this app starts (training, export, vLLM,
# EvalScope): a compiled extension built for another CPU (SIGILL), the kernel's OOM killer or
# a forced stop (SIGKILL), a crash in native code (SIGSEGV/SIGBUS/SIGABRT).
SIGNAL_MEANINGS = {
    signal.SIGILL: "illegal instruction: a compiled library does not support this CPU",
    signal.SIGKILL: "out of memory, or killed",
    signal.SIGSEGV: "segmentation fault: a crash in native code",
    signal.SIGBUS: "bus error: a crash in native code, or a file mapped in memory was truncated",
    signal.SIGABRT: "aborted by native code",
    signal.SIGFPE: "arithmetic error in native code",
    signal.SIGTERM: "asked to stop",
    signal.SIGINT: "interrupted",
}


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


def exit_signal(code: int | None) -> signal.Signals | None:
    """The signal that ended a process, from Popen's returncode (-N) or a shell's status (128+N)."""
    if code is None or code == 0:
        return None
    number = -code if code < 0 else code - 128 if 128 < code < 128 + 65 else None
    try:
        return signal.Signals(number) if number else None
    except ValueError:
        return None


def exit_reason(code: int | None, log_tail: str = "", lines: int = 5) -> str:
    """Why a child process ended, in words a user can act on, never empty: "killed by SIGILL
    (illegal instruction: ...)" or "exit code 1", then the last non-empty log lines."""
    sig = exit_signal(code)
    if code is None:
        head = "still running"
    elif sig is not None:
        meaning = SIGNAL_MEANINGS.get(sig)
        head = f"killed by {sig.name}" + (f" ({meaning})" if meaning else "")
    else:
        head = f"exit code {code}"
    tail = [line for line in log_tail.splitlines() if line.strip()][-lines:]
    return head + (": " + " | ".join(tail) if tail else "; the log is empty")


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a child's log ('' before it exists), without colour codes or
    progress-bar redraws, read from the end so a long log costs nothing."""
    try:
        with open(path, "rb") as f:
            f.seek(max(f.seek(0, 2) - 64_000, 0))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    text = _ANSI.sub("", text)
    kept = [part.split("\r")[-1].rstrip() for part in text.split("\n")]
    return "\n".join([line for line in kept if line.strip()][-lines:])


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (vLLM's API server starts its engine as a child)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending += [int(child) for child in task.read_text().split()]
            except (OSError, ValueError):
                pass
    return tree


def mapped_files(pid: int) -> set[str]:
    """The files a live process has mapped into memory (its loaded shared libraries among them)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return set()
    return {line.split(None, 5)[5] for line in lines if len(line.split(None, 5)) == 6 and "/" in line}
