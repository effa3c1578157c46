"""Owns one vLLM OpenAI-compatible server process: start, health, LoRA adapters, stop.

The server runs the base model with LoRA enabled; adapters are loaded at run time through
/v1/load_lora_adapter, so a freshly trained checkpoint joins without a restart. The process
gets its own process group and dies with the app (PR_SET_PDEATHSIG, atexit, and a pid file
that the next start uses to clean up after a crash).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import httpx

from qwen3arena.errors import Refused
from qwen3arena.config import VLLMSettings
from qwen3arena.hardware import describe_kernels, vllm_kernels
from qwen3arena.procs import die_with_parent, exit_reason, log_tail, running_command, signal_group

log = logging.getLogger(__name__)

ServerState = Literal["stopped", "starting", "ready", "failed"]


class AdapterError(Refused, RuntimeError):
    """An adapter could not be loaded or unloaded; the message says why."""


@dataclass(frozen=True)
class ServerStatus:
    state: ServerState
    url: str
    pid: int | None
    message: str
    log_tail: str
    adapters: tuple[str, ...]
    kernels: tuple[str, ...] = ()  # vLLM's native libraries the running server loaded (hardware.py)


class VLLMServer:
    def __init__(self, settings: VLLMSettings, model_path: str, served_name: str, logs_dir: Path):
        self.settings = settings
        self.model_path = model_path
        self.served_name = served_name
        self.log_path = logs_dir / "vllm.log"
        self._pid_path = logs_dir / "vllm.pid"
        self._process: subprocess.Popen | None = None
        self._state: ServerState = "stopped"
        self._message = "not started"
        self._adapters: dict[str, str] = {}
        self._engine_loads = 0  # adapters loaded since the process started (served or not)
        self._kernels: tuple[str, ...] = ()
        self._lock = threading.RLock()
        logs_dir.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def root_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def command(self) -> list[str]:
        s = self.settings
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model_path,
            "--served-model-name", self.served_name,
            "--host", s.host, "--port", str(s.port),
            "--dtype", s.dtype,
            "--max-model-len", str(s.max_model_len),
            "--enable-lora",
            "--max-loras", str(s.max_loras),
            "--max-lora-rank", str(s.max_lora_rank),
            "--disable-uvicorn-access-log",
        ]
        if s.reasoning_parser:
            command += ["--reasoning-parser", s.reasoning_parser]
        return command + list(s.extra_args)

    def start(self) -> None:
        """Starts the process and returns at once; a supervisor thread waits for /health.

        The supervisor thread spawns the process and lives as long as it: PR_SET_PDEATHSIG
        fires when the spawning *thread* ends, so a short-lived thread would kill vLLM.
        """
        with self._lock:
            if self._state in ("starting", "ready"):
                return
            self._kill_stale()
            self._engine_loads = 0
            self._kernels = ()
            self._state, self._message = "starting", "starting vLLM (this takes 30-90 s on a CPU)"
            spawned = threading.Event()
            threading.Thread(target=self._supervise, args=(spawned,), daemon=True,
                             name="vllm-supervisor").start()
        spawned.wait(30)
        atexit.register(self.stop)

    def _supervise(self, spawned: threading.Event) -> None:
        env = {
            **os.environ,
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_CPU_KVCACHE_SPACE": str(self.settings.kv_cache_gib),
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
        }
        try:
            with open(self.log_path, "w") as log_file:
                process = subprocess.Popen(
                    self.command(), stdout=log_file, stderr=subprocess.STDOUT, env=env,
                    preexec_fn=die_with_parent,
                )
        except OSError as exc:
            with self._lock:
                self._state, self._message = "failed", f"could not start vLLM: {exc}"
            spawned.set()
            return
        with self._lock:
            self._process = process
        self._pid_path.write_text(str(process.pid))
        spawned.set()
        self._wait_healthy(process)
        process.wait()

    def _wait_healthy(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                with self._lock:
                    if self._state == "starting":
                        self._state = "failed"
                        self._message = f"vLLM exited during start-up: {exit_reason(process.poll(), self.log_tail(8))}"
                        log.error("%s", self._message)
                return
            try:
                if httpx.get(f"{self.root_url}/health", timeout=2).status_code == 200:
                    kernels = tuple(vllm_kernels(process.pid))
                    with self._lock:
                        self._kernels = kernels
                    # the app logged the CPU at start-up (runtime.py); this says what vLLM made of it
                    log.info("vLLM is up (pid %s); kernels loaded: %s", process.pid, describe_kernels(list(kernels)))
                    self._load_queued_adapters()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        with self._lock:
            self._state = "failed"
            self._message = f"vLLM did not become healthy within {self.settings.startup_timeout_s:.0f} s"
        self.stop(keep_state=True)

    def _load_queued_adapters(self) -> None:
        """Loads adapters registered during start-up, then declares the server ready."""
        loaded: set[str] = set()
        while True:
            with self._lock:
                pending = {n: p for n, p in self._adapters.items() if n not in loaded}
                if not pending:
                    self._state, self._message = "ready", "ready"
                    return
            for name, path in pending.items():
                try:
                    self._post_load(name, path)
                except AdapterError as exc:
                    log.error("%s", exc)
                    with self._lock:
                        self._adapters.pop(name, None)
                loaded.add(name)

    def wait_ready(self, timeout: float | None = None) -> ServerStatus:
        deadline = time.monotonic() + (timeout or self.settings.startup_timeout_s)
        while time.monotonic() < deadline:
            status = self.status()
            if status.state in ("ready", "failed", "stopped"):
                return status
            time.sleep(0.5)
        return self.status()

    def status(self) -> ServerStatus:
        with self._lock:
            process = self._process
            if self._state == "ready" and process is not None and process.poll() is not None:
                self._state = "failed"
                self._message = f"vLLM stopped unexpectedly: {exit_reason(process.poll(), self.log_tail(8))}"
                log.error("%s", self._message)
            return ServerStatus(
                self._state, self.base_url, process.pid if process else None, self._message,
                self.log_tail() if self._state == "failed" else "",
                tuple(self._adapters) if self._state == "ready" else (),
                self._kernels,
            )

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    # -- adapters ---------------------------------------------------------------------------

    def load_adapter(self, name: str, path: str) -> None:
        """Serves a LoRA adapter under `name`; queued until the server is ready."""
        if not Path(path, "adapter_config.json").exists():
            raise AdapterError(f"{path} is not a LoRA adapter directory (no adapter_config.json)")
        with self._lock:
            if name in self._adapters:
                if self._adapters[name] == path:
                    return
                raise AdapterError(f"an adapter named {name!r} is already served from {self._adapters[name]}")
            if len(self._adapters) >= self.settings.adapter_capacity:
                raise AdapterError(
                    f"cannot serve more than {self.settings.adapter_capacity} adapters with "
                    f"vllm.max_loras={self.settings.max_loras}: one LoRA slot must stay free so "
                    "base-model answers are never computed with an adapter (docs/serving.md). "
                    "Raise vllm.max_loras or unload an adapter."
                )
            self._adapters[name] = path
            ready = self._state == "ready"
            slots_held = ready and self._engine_loads >= self.settings.adapter_capacity
        if slots_held:
            # vLLM's unload only forgets the name: the engine keeps the adapter in its LoRA slot.
            # Once every slot is held, base-model answers come back with an adapter applied
            # (docs/serving.md, tests/test_serving.py), so the engine restarts with the served
            # adapters only. Blocking: when this returns, the adapter is served.
            log.warning("restarting vLLM: adapters unloaded earlier still hold its LoRA slots")
            self.stop()
            self.start()
            with self._lock:
                self._message = "restarting to free the LoRA slots of unloaded adapters"
            status = self.wait_ready()
            if status.state != "ready" or name not in status.adapters:
                with self._lock:
                    self._adapters.pop(name, None)
                raise AdapterError(f"adapter {name!r}: vLLM restart to free LoRA slots ended {status.state}: "
                                   f"{status.message}")
            return
        if ready:
            try:
                self._post_load(name, path)
            except AdapterError:
                with self._lock:
                    self._adapters.pop(name, None)
                raise

    def _post_load(self, name: str, path: str) -> None:
        try:
            response = httpx.post(f"{self.base_url}/load_lora_adapter",
                                  json={"lora_name": name, "lora_path": path}, timeout=120)
        except httpx.HTTPError as exc:
            raise AdapterError(f"loading adapter {name!r}: vLLM unreachable ({exc})") from exc
        if response.status_code != 200 and "already" not in response.text:
            raise AdapterError(f"loading adapter {name!r} failed: HTTP {response.status_code} {response.text[:300]}")
        with self._lock:
            self._engine_loads += 1  # a LoRA slot the engine holds until it restarts

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if self._adapters.pop(name, None) is None:
                raise AdapterError(f"no adapter named {name!r} is served")
            ready = self._state == "ready"
        if ready:
            response = httpx.post(f"{self.base_url}/unload_lora_adapter", json={"lora_name": name}, timeout=60)
            if response.status_code != 200:
                raise AdapterError(f"unloading adapter {name!r} failed: HTTP {response.status_code} {response.text[:300]}")

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, keep_state: bool = False, timeout: float = 20.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `timeout` seconds."""
        with self._lock:
            process, self._process = self._process, None
            if not keep_state:
                self._state, self._message = "stopped", "stopped"
        if process is None:
            return
        if process.poll() is None:
            signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                signal_group(process.pid, signal.SIGKILL)
                process.wait(5)
        # engine workers sit in the same group; make sure none outlive the server
        signal_group(process.pid, signal.SIGKILL)
        self._pid_path.unlink(missing_ok=True)

    def _kill_stale(self) -> None:
        """Ends a server left behind by an app that crashed (pid file, still a vLLM)."""
        try:
            pid = int(self._pid_path.read_text())
        except (FileNotFoundError, ValueError):
            return
        if "vllm.entrypoints" in (running_command(pid) or ""):
            log.warning("stopping a vLLM server (pid %s) left by an earlier run", pid)
            signal_group(pid, signal.SIGKILL)
            time.sleep(1)
