"""Child processes that never outlive the app (vLLM servers, training runs, benchmarks), and
what their exits mean. `ChildProcess` is the one way a job's child is started, followed and
stopped."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3arena.config import REPO_ROOT

log = logging.getLogger(__name__)


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


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group: what a dead child left running."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return sorted(members)


@dataclass(frozen=True)
class LockHolder:
    """A process holding a POSIX lock on a file (as /proc/locks lists it)."""

    pid: int
    kind: str            # "READ" (a shared lock: a read-only DuckDB reader) or "WRITE"
    command: str | None  # its command line, when it still runs


def file_lock_holders(path: Path) -> list[LockHolder]:
    """The other processes holding a lock on `path`, from /proc/locks (empty where there is none):
    who keeps a DuckDB file from being opened, without reading DuckDB's error text."""
    try:
        st = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = []
    for line in lines:
        fields = line.split()
        if "->" in fields or key not in fields:  # "->": a process waiting for the lock, not holding it
            continue
        at = fields.index(key)
        try:
            pid = int(fields[at - 1])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid():
            holders.append(LockHolder(pid, fields[at - 2], running_command(pid)))
    return holders


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


def new_job_id() -> str:
    """The id of a training run, benchmark job or judge job (and its directory's name): sorts
    by start time, unique without a counter."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a job's child: the app's own, offline unless the user said otherwise
    (the Hub is never needed for shipped or local models), this package importable wherever
    the app was started from, then `extra`."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONPATH": path,
            **(extra or {})}


def end_orphan(pid: int | None, marker: str) -> bool:
    """Asks a child an earlier app process left behind to stop (SIGTERM to its group), if that
    pid still runs a command containing `marker` (a reused pid is left alone)."""
    if pid and marker in (running_command(pid) or ""):
        signal_group(pid, signal.SIGTERM)
        return True
    return False


@dataclass
class ChildProcess:
    """One supervised child of a job: its own process group that dies with the app, its output
    in `directory/log_name`, its progress as JSON lines in `directory/events_name`.

    Start it from a thread that lives as long as the child (see die_with_parent). Stopping is
    SIGTERM to the child itself (it decides how to end cleanly: training saves its adapter),
    then SIGKILL to the whole group after a grace period, and a sweep of what it left behind."""

    job_id: str
    command: list[str]
    directory: Path
    env: dict[str, str] = field(default_factory=child_env)
    log_name: str = "child.log"
    events_name: str = "events.jsonl"
    cwd: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    stopping: bool = False

    @property
    def log_path(self) -> Path:
        return Path(self.directory) / self.log_name

    @property
    def events_path(self) -> Path:
        return Path(self.directory) / self.events_name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def returncode(self) -> int | None:
        return self.process.returncode if self.process is not None else None

    def start(self) -> int:
        """Starts the child (a fresh log); returns its pid."""
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, env=self.env,
                                            cwd=self.cwd, preexec_fn=die_with_parent)
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if the child still runs after `timeout` seconds."""
        try:
            return self.process.wait(timeout) if self.process is not None else None
        except subprocess.TimeoutExpired:
            return None

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.events_path)

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_path, lines)

    def exit_reason(self, lines: int = 5) -> str:
        """Why the child ended (its signal and what that means, or its exit code) and its last
        log lines."""
        return exit_reason(self.returncode, self.log_tail(max(lines, 25)), lines)

    def stop(self, grace_s: float = 10.0, block: bool = True) -> bool:
        """SIGTERM now; SIGKILL to the group if the child still runs after `grace_s`. With
        block=False the wait happens on a thread and this returns at once. False when the
        child was not running (what it left behind is reaped all the same)."""
        if self.process is None:
            return False
        if self.process.poll() is not None:
            self.reap()
            return False
        self.stopping = True
        self.process.send_signal(signal.SIGTERM)
        if block:
            self._force(grace_s)
        else:
            threading.Thread(target=self._force, args=(grace_s,), daemon=True,
                             name=f"stop-{self.job_id}").start()
        return True

    def _force(self, grace_s: float) -> None:
        if self.wait(grace_s) is None:
            log.warning("%s ignored SIGTERM for %.0f s; killing it", self.job_id, grace_s)
        signal_group(self.process.pid, signal.SIGKILL)  # the child, or whatever it left behind
        self.process.wait()

    def reap(self) -> list[int]:
        """Once the child has ended, SIGKILL to what is left of its process group, and the pids
        that were still alive. Workers a child started (vLLM's engine core) do not die with it:
        after a crash they would hold their memory (gigabytes for vLLM) until someone noticed."""
        if self.process is None or self.process.poll() is None:
            return []
        left = group_members(self.process.pid)
        if left:
            log.warning("%s ended; killing the %d processes it left behind: %s", self.job_id, len(left), left)
            signal_group(self.process.pid, signal.SIGKILL)
        return left
