"""The checkpoint lifecycle: a finished run's adapter is registered with its lineage, joins or
leaves the arena, and is exported as a merged model.

Runtime wires this service; the application layer (qwen3arena.api) and the training runner's
on_finished hook call it. It owns which LoRA adapters the vLLM server holds and which models the
arena's pool may draw, so nothing else loads or unloads adapters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qwen3arena.config import Settings
from qwen3arena.serve import AdapterError, Contestant, ContestantPool, Endpoint, VLLMServer
from qwen3arena.store import ModelRecord, RunRecord, Store
from qwen3arena.train import export_merged_subprocess


@dataclass(frozen=True)
class Registered:
    """What registering or publishing did: `in_arena` now, or `joins_at_start` (no server here:
    the app loads it when it starts), or neither and `reason` says why."""

    name: str
    in_arena: bool = False
    joins_at_start: bool = False
    reason: str | None = None


class Checkpoints:
    def __init__(self, settings: Settings, store: Store, server: VLLMServer | None, pool: ContestantPool):
        self.settings = settings
        self.store = store
        self.server = server
        self.pool = pool
        self.served_base: str | None = None  # the base model directory vLLM serves, once resolved

    def adapters(self) -> list[ModelRecord]:
        return [m for m in self.store.list_models() if m.kind == "adapter"]

    def get(self, name: str | None) -> ModelRecord:
        """A registered LoRA checkpoint, or AdapterError naming what is wrong."""
        record = self.store.get_model(name) if name else None
        if record is None or record.kind != "adapter" or not record.path:
            raise AdapterError(f"{name!r} is not a registered LoRA checkpoint" if name else "Choose a checkpoint.")
        return record

    def adapter_path(self, name: str | None) -> str | None:
        """The adapter directory of a registered LoRA checkpoint (a run's parent), or None for
        the base model and endpoints: a run then starts from a fresh LoRA."""
        record = self.store.get_model(name) if name else None
        return record.path if record is not None and record.kind == "adapter" and record.path else None

    def register_base(self, base_path: str) -> None:
        """The served base model: registered and drawable once vLLM serves it."""
        self.served_base = base_path
        name = self.settings.model.served_name
        self.store.upsert_model(existing_or(self.store, ModelRecord(
            name=name, kind="base", path=base_path, base_url=self.settings.vllm.base_url, model_id=name)))
        self._join_pool(name)

    def arena_adapters(self) -> dict[str, str]:
        """Registered adapters marked for the arena on this served base (loaded at start-up)."""
        return {r.name: r.path for r in self.adapters()
                if r.base_model == self.settings.model.served_name and r.path and r.metadata.get("arena")}

    def add_adapter(self, name: str, path: str) -> None:
        """Registers a LoRA adapter directory, loads it into vLLM and lets the arena draw it."""
        if self.server is None:
            raise AdapterError("vLLM serving is disabled in the configuration")
        resolved = str(Path(path).resolve())
        self.server.load_adapter(name, resolved)
        self.store.upsert_model(existing_or(self.store, ModelRecord(
            name=name, kind="adapter", base_model=self.settings.model.served_name, path=resolved,
            base_url=self.settings.vllm.base_url, model_id=name, metadata={"arena": True})))
        self._join_pool(name)

    def publish(self, name: str) -> Registered:
        """Puts a registered checkpoint into the arena: loaded into the running server now, or,
        without one (the CLI), marked so that the app loads it when it starts."""
        record = self.get(name)
        if self.server is not None:
            self.add_adapter(name, record.path)
            return Registered(name, in_arena=True)
        record.metadata["arena"] = True
        self.store.upsert_model(record)
        return Registered(name, joins_at_start=True)

    def unpublish(self, name: str) -> None:
        """Takes a checkpoint out of the arena (it stays registered, votes stay)."""
        record = self.get(name)
        if self.server is None:
            raise AdapterError("vLLM serving is disabled in the configuration")
        self.pool.remove(name)
        self.server.unload_adapter(name)
        record.metadata["arena"] = False
        self.store.upsert_model(record)

    def export(self, name: str) -> Path:
        """Merged 16-bit copy of a checkpoint under models/exports/, for vLLM or Ollama elsewhere."""
        record = self.get(name)
        out = self.settings.models_dir / "exports" / name
        export_merged_subprocess(record.path, out)
        record.metadata["export"] = str(out)
        self.store.upsert_model(record)
        return out

    def on_run_finished(self, run: RunRecord) -> dict[str, Any]:
        """The training runner's hook: registers the run's adapter; what registering did is kept
        with the run, so its page and the CLI can say whether it joined the arena."""
        return asdict(self.register(run))

    def register(self, run: RunRecord) -> Registered:
        """A finished (or cleanly stopped) run's adapter becomes a checkpoint with its lineage,
        and joins the arena at once when the run asked for it and shares the served base. A
        stopped run's adapter is only part-trained: it is registered but stays out of the arena
        until someone publishes it, so votes are not spent on an unfinished model."""
        config = run.config
        record = existing_or(self.store, ModelRecord(
            name=run.name, kind="adapter", base_model=self.settings.model.served_name,
            path=run.output_dir, metadata={
                "run_id": run.run_id, "base_path": config["base_model"], "dataset": config["dataset"],
                "dataset_sha": run.dataset_sha, "parent": run.parent, "round": run.round,
                "status": run.status, "final_loss": run.metrics.get("final_loss"),
                "method": config.get("method", "sft"),
            }))
        same_base = (self.served_base is not None
                     and Path(config["base_model"]).resolve() == Path(self.served_base).resolve())
        if not same_base:
            record.base_model = config["base_model"]
        self.store.upsert_model(record)
        if run.join_arena and run.status != "succeeded":
            steps = run.metrics.get("steps")
            after = f" after {steps} step{'' if steps == 1 else 's'}" if isinstance(steps, int) else ""
            return Registered(run.name, reason=f"the run was stopped{after}, so its checkpoint stays out of the "
                                               "arena until you publish it (Add to arena, or `python -m qwen3arena "
                                               f"publish {run.name}`)")
        if run.join_arena and same_base:
            return self.publish(run.name)
        if run.join_arena:
            return Registered(run.name, reason="it was trained on another base model, so it cannot join this server")
        return Registered(run.name)

    def _join_pool(self, name: str) -> None:
        record = self.store.get_model(name)
        self.pool.add(Contestant(
            name=name,
            endpoint=Endpoint(self.settings.vllm.base_url, name, replicas=self.settings.vllm.base_urls
                              if self.settings.vllm.replicas > 1 else ()),
            generation=self.settings.generation,
            registered_at=record.created_at if record else None,
        ))


def existing_or(store: Store, record: ModelRecord) -> ModelRecord:
    """Keeps the first registration time and metadata of a model seen before."""
    existing = store.get_model(record.name)
    if existing is not None:
        record.created_at = existing.created_at
        record.metadata = {**existing.metadata, **record.metadata}
    return record
