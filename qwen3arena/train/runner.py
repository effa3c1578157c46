"""Owns training subprocesses: a queue, one run at a time, stop, progress, recovery.

The runner lives in the app process, not in a browser session: a run keeps going when the
page closes, and any page re-attaches by reading the runner's state. Progress comes from the
run's JSONL event file, never from a pipe someone must drain. Runs die with the app
(PR_SET_PDEATHSIG turns that into a clean stop that saves the adapter); on the next start,
runs the store still calls "running" are marked interrupted.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from qwen3arena.jobs import wait_for
from qwen3arena.procs import ChildProcess, child_env, end_orphan, log_tail, new_job_id, read_events
from qwen3arena.store import ACTIVE_RUN_STATES, RunRecord, Store, utcnow
from qwen3arena.train.config import LoraTrainConfig, RunRejected
from qwen3arena.train.data import file_sha256, load_conversations, load_preferences
from qwen3arena.train.launch import training_command, training_env, world_size_of

log = logging.getLogger(__name__)

LOG_NAME, EVENTS_NAME = "train.log", "progress.jsonl"


@dataclass(frozen=True)
class RunProgress:
    """What a page shows of a run: status, the step events so far, the run's notes (choices the
    training process made that the user did not spell out), the log tail."""

    run: RunRecord
    steps: list[dict[str, Any]] = field(default_factory=list)
    log_tail: str = ""
    stopping: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any] | None:
        return self.steps[-1] if self.steps else None

    @property
    def fraction(self) -> float:
        if self.run.status == "succeeded":
            return 1.0
        last = self.last
        return min(last["step"] / max(last["total"], 1), 1.0) if last else 0.0


class TrainingRunner:
    def __init__(self, store: Store, runs_dir: Path,
                 on_finished: Callable[[RunRecord], Mapping[str, Any] | None] | None = None,
                 stop_timeout_s: float = 60.0, env: dict[str, str] | None = None,
                 autostart: bool = True):
        self.store = store
        self.runs_dir = runs_dir
        self.on_finished = on_finished
        self.stop_timeout_s = stop_timeout_s
        self.env = env or {}
        self._queue: collections.deque[str] = collections.deque()
        self._child: ChildProcess | None = None
        self._current: str | None = None
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._closed = False
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.recover()
        if autostart:
            self.start()

    def start(self) -> None:
        """Starts the worker that runs queued runs one at a time."""
        threading.Thread(target=self._work, daemon=True, name="training-runner").start()

    # -- public -----------------------------------------------------------------------------

    def submit(self, config: LoraTrainConfig, join_arena: bool = False,
               taken_names: set[str] | None = None) -> RunRecord:
        """Checks the run (name, dataset, base model, the GPUs it asks for) and queues it;
        nothing starts on error."""
        config.check_runnable()  # the field rules ran when the config was built (LoraTrainConfig)
        world_size_of(config)  # gpus: N on a machine with fewer CUDA GPUs is refused here
        active = {r.name for r in self.store.runs_in_state("queued", "running")}
        if config.name in active:
            raise RunRejected(f"A run named {config.name!r} is already queued or running.")
        if config.name in (taken_names or set()):
            raise RunRejected(f"A checkpoint named {config.name!r} exists; choose another name.")
        # DatasetError names the row
        rows = load_preferences(config.dataset) if config.method == "dpo" else load_conversations(config.dataset)
        run_id = new_job_id()
        output_dir = self.runs_dir / run_id
        config = replace(config, output_dir=str(output_dir))
        record = RunRecord(
            run_id=run_id, name=config.name, status="queued", config=_asdict(config),
            output_dir=str(output_dir), dataset_sha=file_sha256(config.dataset),
            parent=config.parent, round=config.round, join_arena=join_arena,
            metrics={"rows": len(rows)},
        )
        output_dir.mkdir(parents=True)
        config.to_yaml(output_dir / "run.yaml")
        with self._lock:
            self.store.save_run(record)
            self._queue.append(run_id)
        self._wake.set()
        return record

    def settings_of(self, run_id: str, taken_names: set[str] | None = None) -> LoraTrainConfig:
        """An earlier run's arguments, to start again with changes: under the next free
        checkpoint name (name-2, name-3, ...) and without the output directory."""
        record = self.store.get_run(run_id)
        if record is None:
            raise RunRejected(f"No run {run_id!r}.")
        config = LoraTrainConfig.from_dict(record.config, f"run {run_id}", drop_unknown=True)
        taken = set(taken_names or ()) | {r.name for r in self.store.list_runs(limit=10_000)}
        stem = re.sub(r"-\d+$", "", config.name)
        number = 2
        while f"{stem}-{number}" in taken:
            number += 1
        return replace(config, name=f"{stem}-{number}", output_dir="")

    def command(self, run_id: str) -> list[str]:
        """The command line the runner executes for this run (torchrun for several GPUs);
        RunRejected if the run asks for GPUs this machine lacks."""
        run_dir = self.runs_dir / run_id
        return training_command(run_dir / "run.yaml", run_dir / EVENTS_NAME, self._world_size(run_id))

    def _world_size(self, run_id: str) -> int:
        """The run's processes, from its stored `gpus` ("all" resolved on this machine)."""
        record = self.store.get_run(run_id)
        gpus = (record.config if record is not None else {}).get("gpus", 1)
        if gpus == 1:
            return 1
        return world_size_of(LoraTrainConfig.from_dict(record.config, f"run {run_id}", drop_unknown=True))

    def stop(self, run_id: str) -> str:
        """Queued: cancelled. Running: a clean stop (SIGTERM), forced after stop_timeout_s."""
        with self._lock:
            if run_id in self._queue:
                self._queue.remove(run_id)
                run = self.store.get_run(run_id)
                self.store.save_run(replace(run, status="cancelled", finished_at=utcnow()))
                return "Cancelled before it started."
            child = self._child if run_id == self._current else None
            if child is None or child.process is None:
                return "This run is not running."
            if child.stopping:
                return "Already stopping: the run finishes its current step and saves the adapter."
            child.stop(self.stop_timeout_s, block=False)
        return "Stopping: the run finishes its current step and saves the adapter trained so far."

    def progress(self, run_id: str) -> RunProgress | None:
        run = self.store.get_run(run_id)
        if run is None:
            return None
        run_dir = Path(run.output_dir)
        events = read_events(run_dir / EVENTS_NAME)
        steps = [e for e in events if e.get("event") == "step"]
        notes = [str(e.get("message", "")) for e in events if e.get("event") == "note"]
        tail = log_tail(run_dir / LOG_NAME, 25)
        return RunProgress(run, steps, tail, self._stopping(run_id), notes)

    def runs(self, limit: int = 50) -> list[RunRecord]:
        return self.store.list_runs(limit)

    def current(self) -> str | None:
        return self._current

    def queued(self) -> list[str]:
        with self._lock:
            return list(self._queue)

    def wait(self, run_id: str, timeout: float = 600) -> RunRecord:
        return wait_for(run_id, self.store.get_run, lambda run: run.status not in ACTIVE_RUN_STATES, timeout, 0.5)

    def recover(self) -> list[str]:
        """Runs an earlier app process left behind: running ones are interrupted (their
        process is told to stop and save), queued ones are queued again."""
        notes = []
        for run in self.store.runs_in_state("running", "queued"):
            if run.status == "queued":
                self._queue.append(run.run_id)
                continue
            end_orphan(run.pid, "qwen3arena.train")
            saved = (Path(run.output_dir) / "adapter_config.json").exists()
            error = "the app stopped while this run was running" + (
                "; the adapter trained so far was saved" if saved else "")
            self.store.save_run(replace(run, status="interrupted", finished_at=utcnow(), error=error))
            notes.append(run.run_id)
        return notes

    def shutdown(self, timeout: float = 30.0) -> None:
        """Asks the current run to stop cleanly (it saves its adapter)."""
        self._closed = True
        self._wake.set()
        with self._lock:
            child = self._child
        if child is not None:
            child.stop(timeout)

    def _stopping(self, run_id: str) -> bool:
        child = self._child
        return child is not None and self._current == run_id and child.stopping

    # -- the worker -------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._closed:
            self._wake.wait(1.0)
            self._wake.clear()
            while not self._closed:
                with self._lock:
                    if not self._queue:
                        break
                    run_id = self._queue.popleft()
                    self._current = run_id
                try:
                    self._run(run_id)
                except Exception as exc:  # the runner must survive any one run
                    log.exception("run %s", run_id)
                    run = self.store.get_run(run_id)
                    if run is not None:
                        self.store.save_run(replace(run, status="failed", error=f"runner error: {exc}",
                                                    finished_at=utcnow()))
                finally:
                    with self._lock:
                        self._current, self._child = None, None

    def _run(self, run_id: str) -> None:
        run = self.store.get_run(run_id)
        try:  # a run queued before a restart may ask for GPUs the machine no longer shows
            command, world = self.command(run_id), self._world_size(run_id)
        except RunRejected as exc:
            self.store.save_run(replace(run, status="failed", error=str(exc), finished_at=utcnow()))
            return
        child = ChildProcess(run_id, command, Path(run.output_dir), training_env(world, child_env(self.env)),
                             log_name=LOG_NAME, events_name=EVENTS_NAME)
        with self._lock:
            self._child = child
            child.start()
        run = replace(run, status="running", started_at=utcnow(), pid=child.pid)
        self.store.save_run(run)
        wandb_seen = False
        while child.poll() is None:
            time.sleep(0.5)
            if not wandb_seen:
                for event in child.events():
                    if event.get("event") == "wandb":
                        run = replace(run, wandb=event.get("url") or event.get("dir"))
                        self.store.save_run(run)
                        wandb_seen = True
        self._finish(run, child)

    def _finish(self, run: RunRecord, child: ChildProcess) -> None:
        code = child.returncode
        events = child.events()
        final = next((e for e in reversed(events) if e.get("event") in ("done", "stopped", "failed")), None)
        if code != 0:  # several GPUs: the first rank that failed is the cause (the others then fail
            # in a collective, or stop when torchrun ends them), whatever rank 0 wrote last
            final = next((e for e in events if e.get("event") == "failed"), final)
        steps = [e for e in events if e.get("event") == "step"]
        metrics = {**run.metrics, "losses": [e["loss"] for e in steps],
                   "steps": steps[-1]["step"] if steps else 0}
        saved = (Path(run.output_dir) / "adapter_config.json").exists()
        if code == 0 and final and final["event"] == "done":
            status, error = "succeeded", None
        elif final and final["event"] == "stopped" or (child.stopping and saved):
            status, error = "stopped", None if saved else "stopped before the first step; no adapter"
        elif final and final["event"] == "failed":
            status, error = "failed", final.get("reason")
        else:
            status, error = "failed", child.exit_reason()
            log.error("training run %s (%s) failed: %s", run.name, run.run_id, error)
        if final and final["event"] in ("done", "stopped"):
            metrics.update({k: v for k, v in final.items() if k not in ("event", "time")})
        run = replace(run, status=status, error=error, finished_at=utcnow(), metrics=metrics)
        # register (and join the arena) before the run shows its final status, so whoever
        # waits for the run finds its checkpoint in place; what registering did (in the arena
        # or not, and why) is kept with the run as metrics["checkpoint"]
        if saved and status in ("succeeded", "stopped") and self.on_finished is not None:
            try:
                outcome = self.on_finished(run)
                if outcome is not None:
                    run = replace(run, metrics={**run.metrics, "checkpoint": dict(outcome)})
            except Exception as exc:
                log.exception("registering checkpoint of run %s", run.run_id)
                run = replace(run, error=f"trained, but registering the checkpoint failed: {exc}")
        self.store.save_run(run)


def _asdict(config: LoraTrainConfig) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(config)
