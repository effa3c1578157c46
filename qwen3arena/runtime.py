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
from qwen3arena.config import Settings
from qwen3arena.serve import AdapterError, Contestant, ContestantPool, Endpoint, VLLMServer, endpoint_contestant
from qwen3arena.store import ModelRecord, Store

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    server: VLLMServer | None
    pool: ContestantPool
    arena: Arena
    progress: str = "starting"
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, wait: bool = False) -> None:
        """Prepares models and starts serving in the background (or inline with wait=True)."""
        self._thread = threading.Thread(target=self._prepare, daemon=True, name="qwen3arena-startup")
        self._thread.start()
        if wait:
            self._thread.join()
            if self.server is not None:
                self.server.wait_ready()

    def _prepare(self) -> None:
        try:
            base_path, adapters = self._resolve_models()
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

    def _resolve_models(self) -> tuple[str, dict[str, str]]:
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
            if record.kind == "adapter" and record.base_model == settings.model.served_name and record.path:
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
            path=str(Path(path).resolve()), base_url=self.settings.vllm.base_url, model_id=name)))
        self._add_managed(name)

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

    def shutdown(self) -> None:
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
    return Runtime(settings, store, server, pool, arena)
