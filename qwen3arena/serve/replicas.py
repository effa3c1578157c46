"""Several vLLM replicas of the app's model (`vllm.replicas` > 1), on consecutive ports.

Each replica is a VLLMServer, supervised and restarted like a single server. They do not get
adapters by a load call each: an adapter that joins is placed in one shared directory
(`vllm.adapters_dir`, by default <home>/served-adapters) that every replica reads through vLLM's
own filesystem LoRA resolver (the `lora_filesystem_resolver` plugin of the vllm package,
VLLM_PLUGINS / VLLM_LORA_RESOLVER_CACHE_DIR). A request for an adapter a replica has not seen
loads it from there, so a replica started (or restarted) after the join serves it without being
told, and so does a replica started by hand elsewhere with the same directory and --model.

The resolver accepts an adapter only when its adapter_config.json names the server's --model as
base_model_name_or_path, so the placed copy (hard links, or a copy across file systems, plus a
rewritten adapter_config.json) names it. One request for one token through one ready replica
checks a joining adapter (vLLM's answer, not a guess of ours): a bad one is refused at the join,
as with a load call. Callers see the same interface as VLLMServer; the contestants' endpoint
lists every replica and the client balances requests over them (serve/balance.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import httpx

from qwen3arena.config import VLLMSettings
from qwen3arena.serve.vllm_server import AdapterError, ServerState, ServerStatus, VLLMServer, check_capacity

log = logging.getLogger(__name__)

MARKER = ".qwen3arena-adapter"  # in each directory the app placed: only those are ever removed
_PRECEDENCE: tuple[ServerState, ...] = ("ready", "restarting", "starting", "failed", "stopped")


def managed_server(settings: VLLMSettings, served_name: str, logs_dir: Path, adapters_dir: Path,
                   model_path: str = "") -> VLLMServer | VLLMReplicas:
    """The app's vLLM: one server as always, or replicas when vllm.replicas > 1."""
    if settings.replicas <= 1:
        return VLLMServer(settings, model_path=model_path, served_name=served_name, logs_dir=logs_dir)
    return VLLMReplicas(settings, model_path, served_name, logs_dir, adapters_dir)


def check_adapter_name(name: str) -> None:
    """The resolver looks an adapter up as <dir>/<name>: a name must be one plain path part."""
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise AdapterError(f"{name!r} cannot name an adapter served by several replicas: use letters, digits, "
                           "'-', '_' or '.', not starting with '.'")


def core_shares(cores: list[int], replicas: int) -> list[str]:
    """The CPU cores each replica's engine is bound to. Left to itself every vLLM binds its
    engine to the same core (the first), so two replicas on one machine fight over it: on 2
    cores their requests split lopsidedly (44/4) at 0.4-0.8x one replica's rate, against even
    splits at 0.55-0.87x with a core each (bench/replicas.py, docs/serving.md). One core stays for
    the API processes when there are more cores than replicas; fewer cores than replicas share."""
    if len(cores) > replicas:
        cores = cores[:-1]
    if len(cores) < replicas:
        return [str(cores[i % len(cores)]) for i in range(replicas)]
    size = len(cores) // replicas
    shares = [cores[i * size:(i + 1) * size] for i in range(replicas)]
    return [",".join(str(c) for c in share) for share in shares]


class VLLMReplicas:
    """N VLLMServer replicas of one model, one shared adapter directory; VLLMServer's interface."""

    def __init__(self, settings: VLLMSettings, model_path: str, served_name: str, logs_dir: Path,
                 adapters_dir: Path, cuda: bool | None = None, server_class: type[VLLMServer] = VLLMServer):
        self.settings = settings
        self.served_name = served_name
        self.logs_dir = logs_dir
        self.adapters_dir = Path(adapters_dir)
        # replica 1 keeps the single server's files (logs/vllm.log); the others have a folder each
        count = max(settings.replicas, 1)
        cores = core_shares(sorted(os.sched_getaffinity(0)), count)
        self.members = [
            server_class(dataclasses.replace(settings, port=settings.port + i), model_path, served_name,
                         logs_dir if i == 0 else logs_dir / f"replica-{i + 1}", cuda, resolver_dir=self.adapters_dir,
                         cpu_cores=cores[i])
            for i in range(count)
        ]
        self._adapters: dict[str, str] = {}  # name -> the directory it was registered from
        self._names = threading.Lock()       # guards _adapters: held for a moment only
        self._lock = threading.RLock()       # one join or leave at a time (a join may take minutes)

    # -- what VLLMServer offers ---------------------------------------------------------------

    @property
    def model_path(self) -> str:
        return self.members[0].model_path

    @model_path.setter
    def model_path(self, value: str) -> None:
        for member in self.members:
            member.model_path = value

    @property
    def base_url(self) -> str:
        return self.members[0].base_url

    @property
    def base_urls(self) -> tuple[str, ...]:
        return tuple(member.base_url for member in self.members)

    @property
    def root_url(self) -> str:
        return self.members[0].root_url

    @property
    def log_path(self) -> Path:
        return self.members[0].log_path

    def command(self) -> list[str]:
        return self.members[0].command()

    def start(self) -> None:
        """Starts every replica (each returns at once; their supervisors wait for /health)."""
        with self._lock:
            self._sync_dir()
        for member in self.members:
            member.start()

    def stop(self, timeout: float = 20.0) -> None:
        threads = [threading.Thread(target=member.stop, args=(timeout,), daemon=True) for member in self.members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def wait_ready(self, timeout: float | None = None) -> ServerStatus:
        """Waits until every replica is ready, failed or stopped; the status of them all."""
        deadline = time.monotonic() + (timeout or self.settings.startup_timeout_s)
        while time.monotonic() < deadline:
            if all(m.status().state in ("ready", "failed", "stopped") for m in self.members):
                break
            time.sleep(0.5)
        return self.status()

    def status(self) -> ServerStatus:
        """Ready while any replica is (the message says how many); otherwise the state of the
        replica furthest along (restarting, starting, failed, stopped in that order)."""
        statuses = [m.status() for m in self.members]
        state = next(s for s in _PRECEDENCE if any(st.state == s for st in statuses))
        chosen = [st for st in statuses if st.state == state]
        ready = [st for st in statuses if st.state == "ready"]
        notes = [f"replica {i + 1} ({st.url}) {st.state}: {st.message}"
                 for i, st in enumerate(statuses) if st.state != "ready"]
        message = f"{len(ready)} of {len(statuses)} replicas ready" + "".join(f"; {n}" for n in notes)
        tails = [f"== replica {i + 1} ({st.url}) ==\n{st.log_tail}" for i, st in enumerate(statuses) if st.log_tail]
        adapters = tuple(dict.fromkeys(a for st in ready for a in st.adapters))
        lead = chosen[0]
        return ServerStatus(
            state, ", ".join(st.url for st in statuses), lead.pid, message, "\n".join(tails), adapters,
            lead.kernels, max(st.restarts for st in statuses),
            next((st.crash for st in statuses if st.crash), None), min(st.since for st in chosen))

    def adapter_names(self) -> set[str]:
        with self._names:
            return set(self._adapters)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(f"== replica {i + 1} ({m.base_url}) ==\n{m.log_tail(lines)}"
                         for i, m in enumerate(self.members))

    # -- adapters ---------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> None:
        """Places the adapter where every replica's resolver finds it, registers it with each
        replica (no call to vLLM; one may restart to free LoRA slots, the others serve meanwhile),
        then checks with one request that a ready replica loads it. Queued until they are ready."""
        if not Path(path, "adapter_config.json").exists():
            raise AdapterError(f"{path} is not a LoRA adapter directory (no adapter_config.json)")
        check_adapter_name(name)
        with self._lock:
            with self._names:
                known = self._adapters.get(name)
                served = len(self._adapters)
            if known == path:
                return
            if known is not None:
                raise AdapterError(f"an adapter named {name!r} is already served from {known}")
            check_capacity(self.settings, served)
            self._place(name, path)
            registered: list[VLLMServer] = []
            try:
                for member in self.members:
                    member.load_adapter(name, path)
                    registered.append(member)
                self._probe(name)
            except AdapterError:
                for member in registered:
                    self._forget(member, name)
                self._remove(name)
                raise
            with self._names:
                self._adapters[name] = path

    def unload_adapter(self, name: str) -> None:
        """Removes it from the shared directory first (no replica loads it again), then from each
        replica that loaded it."""
        with self._lock:
            with self._names:
                if self._adapters.pop(name, None) is None:
                    raise AdapterError(f"no adapter named {name!r} is served")
            self._remove(name)
            for member in self.members:
                self._forget(member, name)

    @staticmethod
    def _forget(member: VLLMServer, name: str) -> None:
        try:
            member.unload_adapter(name)
        except AdapterError as exc:
            log.warning("%s: %s", member.base_url, exc)
        except httpx.HTTPError as exc:  # it just died: a fresh process has no adapters loaded
            log.warning("%s: unloading %s: %s", member.base_url, name, exc)

    def _probe(self, name: str) -> None:
        """One token from a ready replica for the adapter: vLLM loads it through the resolver or
        says why not (a rank above vllm.max_lora_rank, a base model that is not this one)."""
        for member in self.members:
            if member.status().state != "ready":
                continue
            try:
                response = httpx.post(f"{member.base_url}/completions", timeout=120, json={
                    "model": name, "prompt": "Hi", "max_tokens": 1, "temperature": 0})
            except httpx.HTTPError as exc:
                log.warning("checking adapter %s on %s: %s", name, member.base_url, exc)
                continue
            if response.status_code != 200:
                raise AdapterError(f"loading adapter {name!r} failed: vLLM did not load it from "
                                   f"{self.adapters_dir / name}: HTTP {response.status_code} {response.text[:300]}")
            return
        log.info("adapter %s placed for the replicas; no replica is ready to check it yet", name)

    # -- the shared directory --------------------------------------------------------------------

    def _place(self, name: str, source: str) -> None:
        """<adapters_dir>/<name>: the adapter's files (hard links where the file system allows)
        and its adapter_config.json naming this model's --model, swapped in whole."""
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        target = self.adapters_dir / name
        if target.exists() and not (target / MARKER).exists():
            raise AdapterError(f"{target} exists and was not placed by qwen3arena: move it away, or rename the "
                               "adapter")
        staging = self.adapters_dir / f".{name}.{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        (staging / MARKER).write_text(source)
        try:
            for item in Path(source).iterdir():
                if item.name == "adapter_config.json" or not item.is_file():
                    continue
                try:
                    os.link(item, staging / item.name)
                except OSError:
                    shutil.copy2(item, staging / item.name)
            config = json.loads(Path(source, "adapter_config.json").read_text())
            config["base_model_name_or_path"] = self.model_path
            (staging / "adapter_config.json").write_text(json.dumps(config, indent=2))
            self._remove(name)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _remove(self, name: str) -> None:
        target = self.adapters_dir / name
        if not (target / MARKER).exists():
            return  # not ours (or gone): never delete what the app did not put there
        trash = self.adapters_dir / f".{name}.gone.{uuid.uuid4().hex[:8]}"
        target.rename(trash)  # at once: no replica resolves it after this line
        shutil.rmtree(trash, ignore_errors=True)

    def _sync_dir(self) -> None:
        """At start: every registered adapter placed again (the base model path may have been
        set since), and what an earlier run placed and nobody registered now removed."""
        self.adapters_dir.mkdir(parents=True, exist_ok=True)
        for entry in self.adapters_dir.iterdir():
            if entry.is_dir() and (entry / MARKER).exists() and entry.name not in self.adapter_names():
                if entry.name.startswith("."):
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    self._remove(entry.name)
        with self._names:
            placed = dict(self._adapters)
        for name, source in placed.items():
            self._place(name, source)
