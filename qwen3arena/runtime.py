"""The composition root: builds the services from Settings and owns their lifetime.

The UI receives a Runtime and calls its services; nothing else wires components together.
Start-up work that takes minutes (building the embedded model, starting vLLM) runs on a
background thread so the page is up at once and shows its progress.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from qwen3arena.arena import Arena
from qwen3arena.auth import AccessControl
from qwen3arena.campaigns import CampaignService
from qwen3arena.config import REPO_ROOT, Settings
from qwen3arena.evals import EvalRunner
from qwen3arena.hardware import cpu_info
from qwen3arena.harvest import Harvester, HarvestError, load_prompt_categories
from qwen3arena.serve import AdapterError, Contestant, ContestantPool, Endpoint, VLLMServer, endpoint_contestant
from qwen3arena.store import ModelRecord, RunRecord, Store
from qwen3arena.train import LoraTrainConfig, TrainingRunner, export_merged_subprocess

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    server: VLLMServer | None
    pool: ContestantPool
    arena: Arena
    runner: TrainingRunner | None = None
    evals: EvalRunner | None = None
    harvester: Harvester | None = None
    access: AccessControl | None = None
    campaigns: CampaignService | None = None
    base_path: str | None = None
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
            self.base_path = base_path
            if self.server is not None:
                self.server.model_path = base_path
                self._set_progress("Starting vLLM...")
                self.server.start()
                for name, path in adapters.items():
                    self.add_adapter(name, path)
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
        for record in self.store.list_models():
            if (record.kind == "adapter" and record.base_model == settings.model.served_name
                    and record.path and record.metadata.get("arena")):
                adapters.setdefault(record.name, record.path)
        self.store.upsert_model(_existing_or(self.store, ModelRecord(
            name=settings.model.served_name, kind="base", path=base_path,
            base_url=settings.vllm.base_url, model_id=settings.model.served_name)))
        self._add_managed(settings.model.served_name)
        return base_path, adapters

    def add_adapter(self, name: str, path: str) -> None:
        """Registers a LoRA checkpoint, loads it into vLLM and lets the arena draw it."""
        if self.server is None:
            raise AdapterError("vLLM serving is disabled in the configuration")
        self.server.load_adapter(name, str(Path(path).resolve()))
        self.store.upsert_model(_existing_or(self.store, ModelRecord(
            name=name, kind="adapter", base_model=self.settings.model.served_name,
            path=str(Path(path).resolve()), base_url=self.settings.vllm.base_url, model_id=name,
            metadata={"arena": True})))
        self._add_managed(name)

    def remove_adapter(self, name: str) -> None:
        """Takes a checkpoint out of the arena (it stays registered, votes stay)."""
        if self.server is None:
            raise AdapterError("vLLM serving is disabled in the configuration")
        self.pool.remove(name)
        self.server.unload_adapter(name)
        record = self.store.get_model(name)
        if record is not None:
            record.metadata["arena"] = False
            self.store.upsert_model(record)

    def publish(self, name: str) -> str:
        """Puts a registered checkpoint into the arena: loaded into the running server now, or,
        without one (the CLI), marked so that the app loads it when it starts."""
        record = self.store.get_model(name)
        if record is None or record.kind != "adapter" or not record.path:
            raise AdapterError(f"{name!r} is not a registered LoRA checkpoint")
        if self.server is not None:
            self.add_adapter(name, record.path)
            return f"{name} is registered and now in the arena."
        record.metadata["arena"] = True
        self.store.upsert_model(record)
        return f"{name} is registered and joins the arena when the app starts."

    def export_checkpoint(self, name: str) -> Path:
        """Merged 16-bit copy of a checkpoint under models/exports/, for vLLM or Ollama elsewhere."""
        record = self.store.get_model(name)
        if record is None or record.kind != "adapter" or not record.path:
            raise AdapterError(f"{name!r} is not a registered LoRA checkpoint")
        out = self.settings.models_dir / "exports" / name
        export_merged_subprocess(record.path, out)
        record.metadata["export"] = str(out)
        self.store.upsert_model(record)
        return out

    def _add_managed(self, name: str) -> None:
        record = self.store.get_model(name)
        self.pool.add(Contestant(
            name=name,
            endpoint=Endpoint(self.settings.vllm.base_url, name),
            generation=self.settings.generation,
            registered_at=record.created_at if record else None,
        ))

    def restart_server(self) -> None:
        """Stops and restarts vLLM; the served adapters are loaded again once it is healthy."""
        if self.server is not None:
            self.error = None
            self.server.stop()
            self.server.start()
            self._set_progress("vLLM restarted")

    def register_checkpoint(self, run: RunRecord) -> str:
        """A finished (or cleanly stopped) run's adapter becomes a checkpoint with its lineage,
        and joins the arena at once when the run asked for it and shares the served base."""
        config = run.config
        record = _existing_or(self.store, ModelRecord(
            name=run.name, kind="adapter", base_model=self.settings.model.served_name,
            path=run.output_dir, metadata={
                "run_id": run.run_id, "base_path": config["base_model"], "dataset": config["dataset"],
                "dataset_sha": run.dataset_sha, "parent": run.parent, "round": run.round,
                "status": run.status, "final_loss": run.metrics.get("final_loss"),
                "method": config.get("method", "sft"),
            }))
        same_base = self.base_path is not None and Path(config["base_model"]).resolve() == Path(self.base_path).resolve()
        if not same_base:
            record.base_model = config["base_model"]
        self.store.upsert_model(record)
        if run.join_arena and same_base:
            return self.publish(run.name)
        if run.join_arena:
            return f"{run.name} is registered; it was trained on another base model, so it cannot join this server."
        return f"{run.name} is registered."

    def round_run_config(self, number: int, method: str = "sft", parent: str | None = None,
                         name: str | None = None, **overrides) -> LoraTrainConfig:
        """The training run of round N: its data, the parent checkpoint to go on from (its
        adapter's weights), the served base. `overrides` are LoraTrainConfig fields."""
        if self.harvester is None:
            raise HarvestError("Harvesting is not set up in this app.")
        record = self.harvester.get_round(number)
        parent = parent if parent is not None else record.parent
        if parent and self.store.get_model(parent) is None:
            raise HarvestError(f"Parent checkpoint {parent!r} is not registered.")
        data = record.preference_path if method == "dpo" else record.sft_path
        if not data.exists() or not data.read_text().strip():
            kind = "preference pairs" if method == "dpo" else "SFT rows"
            raise HarvestError(f"Round {number} has no {kind}; choose the other method.")
        base = overrides.pop("base_model", None) or self.base_path
        if not base:
            raise HarvestError("The base model is not ready yet; wait until the models have started.")
        defaults = {"learning_rate": 5e-5} if method == "dpo" else {}
        return LoraTrainConfig(
            name=name or f"round{number}-{method}", base_model=base, dataset=str(data), output_dir="",
            method=method, parent=parent or None, round=number, init_adapter=self.adapter_path(parent),
            **{**defaults, **overrides})

    def adapter_path(self, name: str | None) -> str | None:
        """The adapter directory of a registered LoRA checkpoint (a run's parent), or None for
        the base model and endpoints: a run then starts from a fresh LoRA."""
        record = self.store.get_model(name) if name else None
        return record.path if record is not None and record.kind == "adapter" and record.path else None

    def shutdown(self) -> None:
        if self.runner is not None:
            self.runner.shutdown()
        if self.evals is not None:
            self.evals.shutdown()
        if self.server is not None:
            self.server.stop()
        self.store.close()


def _existing_or(store: Store, record: ModelRecord) -> ModelRecord:
    """Keeps the first registration time and metadata of a model seen before."""
    existing = store.get_model(record.name)
    if existing is not None:
        record.created_at = existing.created_at
        record.metadata = {**existing.metadata, **record.metadata}
    return record


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
        store.upsert_model(_existing_or(store, ModelRecord(
            name=spec.name, kind="endpoint", base_url=spec.base_url, model_id=spec.model_id)))
    arena = Arena(store, pool, settings.arena)
    runtime = Runtime(settings, store, server, pool, arena)
    runtime.runner = TrainingRunner(store, settings.home / "runs", on_finished=runtime.register_checkpoint)
    runtime.evals = EvalRunner(settings.home / "evals", store, settings.evals)
    runtime.harvester = Harvester(store, settings.home / "datasets" / "rounds", load_prompt_categories(
        sorted((REPO_ROOT / "data" / "prompts").glob("*.jsonl")) + sorted((settings.home / "prompts").glob("*.jsonl"))))
    runtime.access = access
    runtime.campaigns = CampaignService(store, arena, settings.campaigns)
    return runtime
