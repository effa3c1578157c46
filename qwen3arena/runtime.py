"""The composition root: builds the services from Settings and owns their lifetime.

Wiring only: what a person can do lives in the application layer (qwen3arena.api), which the
faces (tabs, CLI, gr.api) call; the checkpoint lifecycle lives in qwen3arena.checkpoints.
Nothing else wires components together.
Start-up work that takes minutes (building the embedded model, starting vLLM) runs on a
background thread so the page is up at once and shows its progress.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from qwen3arena.arena import Arena
from qwen3arena.auth import AccessControl
from qwen3arena.campaigns import CampaignService
from qwen3arena.checkpoints import Checkpoints, existing_or
from qwen3arena.config import REPO_ROOT, Settings
from qwen3arena.errors import Refused
from qwen3arena.evals import EvalRunner
from qwen3arena.hardware import cpu_info
from qwen3arena.judge.runs import JudgeRuns
from qwen3arena.harvest import Harvester, load_prompt_categories
from qwen3arena.serve import AdapterError, ContestantPool, VLLMServer, endpoint_contestant
from qwen3arena.serve.replicas import VLLMReplicas, managed_server
from qwen3arena.store import ModelRecord, Store
from qwen3arena.train import TrainingRunner

log = logging.getLogger(__name__)

StepState = Literal["waiting", "running", "done", "reused", "failed"]


@dataclass(frozen=True)
class StartupStep:
    """One step of getting the models ready, as the arena page shows it: it names no model
    (the page shows it before any vote), adapters are numbered."""

    key: str
    label: str                     # "training adapter 1/2", "starting vLLM", ...
    state: StepState = "waiting"
    step: int = 0                  # how far: training steps done, adapters loaded
    total: int = 0
    seconds: float | None = None   # time spent so far (running) or in all (done, failed)


Phase = Literal["starting", "ready", "too_few", "restarting", "crashed", "failed"]


@dataclass(frozen=True)
class Readiness:
    """What the arena page says about the models, with counts and steps only (no names).

    starting: the first start is under way (steps say how far); ready: the arena can draw a
    battle; too_few: start-up is over but fewer than two models are up; restarting: the model
    server crashed and restarts by itself (attempt of attempts), or was restarted on purpose
    (attempt 0); crashed: it crashed and the automatic restarts are used up; failed: start-up
    failed."""

    phase: Phase
    models_up: int
    steps: tuple[StartupStep, ...] = ()
    elapsed_s: float = 0.0
    attempt: int = 0
    attempts: int = 0


@dataclass
class _StepTimes:
    label: str
    state: StepState = "waiting"
    step: int = 0
    total: int = 0
    started: float | None = None
    ended: float | None = None


class StartupSteps:
    """The steps of start-up and how far each has got: written by the start-up thread, read by
    every page's poll (any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, _StepTimes] = {}

    def set(self, key: str, label: str, state: StepState, step: int = 0, total: int = 0,
            at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        with self._lock:
            current = self._steps.setdefault(key, _StepTimes(label))
            current.label, current.step, current.total = label, step, total
            if state == "running" and current.started is None:
                current.started = at
            if state in ("done", "failed") and current.state not in ("done", "failed"):
                current.ended = at
            if state == "running":
                current.ended = None
            current.state = state

    def state(self, key: str) -> StepState | None:
        with self._lock:
            return self._steps[key].state if key in self._steps else None

    def view(self) -> tuple[StartupStep, ...]:
        now = time.monotonic()
        with self._lock:
            return tuple(
                StartupStep(key, s.label, s.state, s.step, s.total,
                            None if s.started is None else (s.ended or now) - s.started)
                for key, s in self._steps.items())


@dataclass
class Runtime:
    settings: Settings
    store: Store
    server: VLLMServer | VLLMReplicas | None
    pool: ContestantPool
    arena: Arena
    checkpoints: Checkpoints
    runner: TrainingRunner
    evals: EvalRunner
    harvester: Harvester
    access: AccessControl
    campaigns: CampaignService
    judge_runs: JudgeRuns
    error: str | None = None
    steps: StartupSteps = field(default_factory=StartupSteps, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)
    _ready_after: float | None = field(default=None, repr=False)  # seconds start-up took, once done
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, wait: bool = False) -> None:
        """Prepares models and starts serving in the background (or inline with wait=True)."""
        log.info("CPU: %s", cpu_info().summary())
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._prepare, daemon=True, name="qwen3arena-startup")
        self._thread.start()
        if wait:
            self._thread.join()
            if self.server is not None:
                self.server.wait_ready()

    def _prepare(self) -> None:
        """Builds what is missing and serves each model as soon as it exists: vLLM starts on
        the base while the embedded adapters still train, and each adapter joins when done."""
        try:
            if self.settings.model.base == "embedded":
                from qwen3arena.embedded import BUILD_STEPS

                for key, label in BUILD_STEPS.items():
                    self.steps.set(key, label, "waiting")
            if self.server is not None:
                self.steps.set("vllm", "starting vLLM", "waiting")
                self.steps.set("adapters", "loading adapters", "waiting", 0, len(self._planned_adapters()))
            base_path, adapters = self.resolve_models(on_base=self._serve_base, on_adapter=self._serve_built_adapter)
            if self.server is not None:
                if self.steps.state("vllm") == "waiting":  # a base that was not built here
                    self._serve_base(base_path)
                for name, path in adapters.items():
                    self._serve_adapter(name, path)
                status = self.server.wait_ready()
                if status.state != "ready":
                    self.error = f"vLLM {status.state}: {status.message}"
                    self.steps.set("vllm", "starting vLLM", "failed")
                    log.error("start-up: %s", self.error)
                    return
            self._ready_after = time.monotonic() - self._started
            log.info("start-up: ready in %.0f s", self._ready_after)
        except Exception as exc:  # shown in the UI; the app stays up
            log.exception("start-up failed")
            self.error = f"{type(exc).__name__}: {exc}"

    def _serve_base(self, base_path) -> None:
        """Registers the base and starts vLLM on it (returns at once; adapters load when ready)."""
        self.checkpoints.register_base(str(base_path))
        if self.server is None or self.steps.state("vllm") not in (None, "waiting"):
            return
        self.server.model_path = str(base_path)
        log.info("start-up: starting vLLM on %s", base_path)
        self.steps.set("vllm", "starting vLLM", "running")
        self.server.start()

    def _serve_adapter(self, name: str, path) -> None:
        """Serves one adapter (queued until vLLM is healthy); a bad adapter is logged and left out."""
        if self.server is None or name in self.server.adapter_names():
            return
        try:
            self.checkpoints.add_adapter(name, str(path))
        except AdapterError as exc:
            log.error("start-up: adapter %s left out: %s", name, exc)

    def _serve_built_adapter(self, name: str, path) -> None:
        if name not in self.settings.model.adapters:  # a configured adapter of that name wins
            self._serve_adapter(name, path)

    def _on_build_step(self, step) -> None:
        self.steps.set(step.key, step.label, step.state, step.step, step.total)

    def _planned_adapters(self) -> set[str]:
        names = set(self.settings.model.adapters) | set(self.checkpoints.arena_adapters())
        if self.settings.model.base == "embedded":
            from qwen3arena.embedded import ADAPTERS

            names |= set(ADAPTERS)
        return names

    def resolve_models(self, on_base=None, on_adapter=None) -> tuple[str, dict[str, str]]:
        """The base model directory and the adapters to serve (builds the embedded default once);
        on_base and on_adapter get each embedded part as soon as it is built."""
        settings = self.settings
        adapters: dict[str, str] = {}
        if settings.model.base == "embedded":
            from qwen3arena.embedded import ensure_embedded_models

            built = ensure_embedded_models(settings.models_dir, on_progress=log.info, on_step=self._on_build_step,
                                           on_base=on_base, on_adapter=on_adapter)
            base_path = str(built.base_dir)
            adapters.update({name: str(path) for name, path in built.adapters.items()})
        else:
            base_path = settings.model.base
        adapters.update(settings.model.adapters)
        for name, path in self.checkpoints.arena_adapters().items():
            adapters.setdefault(name, path)
        self.checkpoints.register_base(base_path)
        return base_path, adapters

    @property
    def base_path(self) -> str | None:
        """The served base model's directory, once start-up resolved it."""
        return self.checkpoints.served_base

    def startup_steps(self) -> tuple[StartupStep, ...]:
        """The start-up steps, with vLLM's and the adapters' read live from the server."""
        if self.server is not None and self.steps.state("vllm") in ("running", "done"):
            status = self.server.status()
            if status.state == "ready":
                self.steps.set("vllm", "starting vLLM", "done", at=status.since)
            elif status.state == "failed":
                self.steps.set("vllm", "starting vLLM", "failed", at=status.since)
            total = max(len(self._planned_adapters()), len(status.adapters))
            loaded = len(status.adapters)
            state: StepState = "done" if status.state == "ready" and loaded >= total and self._done() else \
                "running" if status.state == "ready" else "waiting"
            self.steps.set("adapters", "loading adapters", state, loaded, total)
        return self.steps.view()

    def _done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def readiness(self) -> Readiness:
        """Where the models stand for a visitor: ready, starting (with steps), restarting after
        a crash, or failed. Counts and steps only: it is shown before any vote."""
        up = len(self.pool.available())
        status = self.server.status() if self.server is not None else None
        attempts = self.settings.vllm.restart_attempts
        elapsed = time.monotonic() - self._started
        if up >= 2:
            return Readiness("ready", up)
        if status is not None and status.state == "restarting":
            return Readiness("restarting", up, attempt=status.restarts, attempts=attempts)
        if status is not None and status.state == "starting" and self._ready_after is not None:
            return Readiness("restarting", up, attempts=attempts)  # by hand, or to free LoRA slots: attempt 0
        if status is not None and status.state == "failed" and status.crash:
            return Readiness("crashed", up, attempt=status.restarts, attempts=attempts)
        if self.error or (status is not None and status.state == "failed"):
            return Readiness("failed", up, self.startup_steps(), elapsed)
        if self._done() and (status is None or status.state == "ready"):
            return Readiness("too_few", up)
        return Readiness("starting", up, self.startup_steps(), elapsed)

    @property
    def progress(self) -> str:
        """Start-up in one line for the Models tab (admins: it may name models)."""
        if self.error:
            return f"start-up failed: {self.error}"
        line = " · ".join(_step_line(s) for s in self.startup_steps() if s.state != "waiting")
        if self._ready_after is not None:
            return f"ready in {self._ready_after:.0f} s" + (f" · {line}" if line else "")
        return line or "starting"

    def restart_server(self) -> None:
        """Stops and restarts vLLM; the served adapters are loaded again once it is healthy."""
        if self.server is not None:
            self.error = None
            self.server.stop()
            self.server.start()
            log.info("vLLM restarted by hand")

    def shutdown(self) -> None:
        self.runner.shutdown()
        self.evals.shutdown()
        self.judge_runs.shutdown()
        if self.server is not None:
            self.server.stop()
        self.store.close()


def _step_line(step: StartupStep) -> str:
    """"training adapter 1/2: step 60/150 (41 s)" and the like."""
    text = step.label
    if step.state == "reused":
        return f"{text}: built earlier"
    if step.total and step.state in ("running", "done"):
        text += f": {step.step}/{step.total}"
    if step.state == "failed":
        text += ": failed"
    return text + (f" ({step.seconds:.0f} s)" if step.seconds is not None else "")


class DataDirUnwritable(Refused, OSError):
    """The data directory (QWEN3ARENA_HOME) cannot be written: the app keeps its database,
    models and logs there."""


def check_data_dir(home: Path) -> None:
    """Creates the data directory and proves it writable, or says in one line what to do."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise DataDirUnwritable(
            f"the data directory {home} cannot be written ({exc.strerror or exc}): the app keeps its database, "
            "models and logs there. Set QWEN3ARENA_HOME to a writable directory, or make this one writable."
        ) from exc


def create_runtime(settings: Settings) -> Runtime:
    check_data_dir(settings.home)
    try:
        return _create_runtime(settings)
    except OSError as exc:  # a subdirectory or file the probe did not reach
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        raise DataDirUnwritable(
            f"cannot write {exc.filename or settings.home} ({exc.strerror}): set QWEN3ARENA_HOME to a writable "
            "directory, or fix its permissions."
        ) from exc


def _create_runtime(settings: Settings) -> Runtime:
    access = AccessControl(settings.auth, settings.home)  # a bad account fails before anything starts
    store = Store(settings.store_target)
    # a shared store's other app processes keep their live battles: only the idle ones are left over
    interrupted = store.interrupt_unfinished_battles(settings.arena.battle_idle_s if store.shared else None)
    if interrupted:
        log.warning("%d battles left unfinished by the previous run were marked interrupted", interrupted)
    server = None
    if settings.vllm.enabled:
        server = managed_server(settings.vllm, served_name=settings.model.served_name, logs_dir=settings.logs_dir,
                                adapters_dir=Path(settings.vllm.adapters_dir or settings.home / "served-adapters"))
    pool = ContestantPool(server)
    for spec in settings.endpoints:
        pool.add(endpoint_contestant(spec, settings.generation))
        store.upsert_model(existing_or(store, ModelRecord(
            name=spec.name, kind="endpoint", base_url=spec.base_url, model_id=spec.model_id)))
    arena = Arena(store, pool, settings.arena)
    checkpoints = Checkpoints(settings, store, server, pool)
    categories = load_prompt_categories(sorted((REPO_ROOT / "data" / "prompts").glob("*.jsonl"))
                                        + sorted((settings.home / "prompts").glob("*.jsonl")))
    return Runtime(
        settings, store, server, pool, arena, checkpoints,
        runner=TrainingRunner(store, settings.home / "runs", on_finished=checkpoints.on_run_finished),
        evals=EvalRunner(settings.home / "evals", store, settings.evals),
        harvester=Harvester(store, settings.home / "datasets" / "rounds", categories),
        access=access,
        campaigns=CampaignService(store, arena, settings.campaigns),
        judge_runs=JudgeRuns(store, settings.judge),
    )
