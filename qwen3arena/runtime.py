"""The composition root: builds the services from Settings and owns their lifetime.

Wiring only: what a person can do lives in the application layer (qwen3arena.api), which the
faces (tabs, CLI, gr.api) call; the checkpoint lifecycle lives in qwen3arena.checkpoints.
Nothing else wires components together.
Start-up work that takes minutes (building the embedded model, starting vLLM) runs on a
background thread so the page is up at once and shows its progress.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from qwen3arena.arena import Arena
from qwen3arena.auth import AccessControl
from qwen3arena.campaigns import CampaignService
from qwen3arena.checkpoints import Checkpoints, existing_or
from qwen3arena.config import REPO_ROOT, Settings
from qwen3arena.evals import EvalRunner
from qwen3arena.hardware import cpu_info
from qwen3arena.judge.runs import JudgeRuns
from qwen3arena.harvest import Harvester, load_prompt_categories
from qwen3arena.serve import ContestantPool, VLLMServer, endpoint_contestant
from qwen3arena.store import ModelRecord, Store
from qwen3arena.train import TrainingRunner

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    server: VLLMServer | None
    pool: ContestantPool
    arena: Arena
    checkpoints: Checkpoints
    runner: TrainingRunner
    evals: EvalRunner
    harvester: Harvester
    access: AccessControl
    campaigns: CampaignService
    judge_runs: JudgeRuns
    progress: str = "starting"
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, wait: bool = False) -> None:
        """Prepares models and starts serving in the background (or inline with wait=True)."""
        log.info("CPU: %s", cpu_info().summary())
        self._thread = threading.Thread(target=self._prepare, daemon=True, name="qwen3arena-startup")
        self._thread.start()
        if wait:
            self._thread.join()
            if self.server is not None:
                self.server.wait_ready()

    def _prepare(self) -> None:
        try:
            base_path, adapters = self.resolve_models()
            if self.server is not None:
                self.server.model_path = base_path
                self._set_progress("Starting vLLM...")
                self.server.start()
                for name, path in adapters.items():
                    self.checkpoints.add_adapter(name, path)
                status = self.server.wait_ready()
                if status.state != "ready":
                    self.error = f"vLLM {status.state}: {status.message}"
                    self._set_progress(self.error)
                    return
            self._set_progress("ready")
        except Exception as exc:  # shown in the UI; the app stays up
            log.exception("start-up failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self._set_progress(f"start-up failed: {self.error}")

    def _set_progress(self, message: str) -> None:
        self.progress = message
        log.info("%s", message)

    def resolve_models(self) -> tuple[str, dict[str, str]]:
        """The base model directory and the adapters to serve (builds the embedded default once)."""
        settings = self.settings
        adapters: dict[str, str] = {}
        if settings.model.base == "embedded":
            from qwen3arena.embedded import ensure_embedded_models

            built = ensure_embedded_models(settings.models_dir, on_progress=self._set_progress)
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

    def restart_server(self) -> None:
        """Stops and restarts vLLM; the served adapters are loaded again once it is healthy."""
        if self.server is not None:
            self.error = None
            self.server.stop()
            self.server.start()
            self._set_progress("vLLM restarted")

    def shutdown(self) -> None:
        self.runner.shutdown()
        self.evals.shutdown()
        self.judge_runs.shutdown()
        if self.server is not None:
            self.server.stop()
        self.store.close()


def create_runtime(settings: Settings) -> Runtime:
    settings.home.mkdir(parents=True, exist_ok=True)
    access = AccessControl(settings.auth, settings.home)  # a bad account fails before anything starts
    store = Store(settings.db_path)
    interrupted = store.interrupt_unfinished_battles()
    if interrupted:
        log.warning("%d battles left unfinished by the previous run were marked interrupted", interrupted)
    server = None
    if settings.vllm.enabled:
        server = VLLMServer(settings.vllm, model_path="", served_name=settings.model.served_name,
                            logs_dir=settings.logs_dir)
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
        runner=TrainingRunner(store, settings.home / "runs", on_finished=checkpoints.register),
        evals=EvalRunner(settings.home / "evals", store, settings.evals),
        harvester=Harvester(store, settings.home / "datasets" / "rounds", categories),
        access=access,
        campaigns=CampaignService(store, arena, settings.campaigns),
        judge_runs=JudgeRuns(store, settings.judge),
    )
