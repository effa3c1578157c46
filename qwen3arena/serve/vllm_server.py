"""Owns one vLLM OpenAI-compatible server process: start, health, LoRA adapters, restarts, stop.

The server runs the base model with LoRA enabled; adapters are loaded at run time through
/v1/load_lora_adapter, so a freshly trained checkpoint joins without a restart. The process is
a ChildProcess (qwen3arena/procs.py): its own process group that dies with the app
(PR_SET_PDEATHSIG, atexit, and a pid file that the next start uses to clean up after a crash).

A server that dies on its own after it was up (a crash, the OOM killer, kill -9) is restarted
by its supervisor thread, at most vllm.restart_attempts times in a row with a doubling pause,
and the workers it left behind (vLLM's engine core holds gigabytes) are killed first. The
reason and the attempt are in its status, which the Models tab and the arena page show.

With `resolver_dir` (one replica of several, serve/replicas.py), adapters are not loaded by a
call: vLLM's filesystem LoRA resolver loads each one from that directory on its first request,
so a replica that starts (or restarts) later serves every adapter without being told.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import signal
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
from qwen3arena.procs import ChildProcess, child_env, log_tail, running_command, signal_group

log = logging.getLogger(__name__)

# restarting: it crashed after it was up, and the supervisor is starting it again by itself
ServerState = Literal["stopped", "starting", "ready", "restarting", "failed"]
# A crash after this long up starts a fresh count of automatic restarts: the limit is against a
# server that dies again and again, not against one crash a week.
STABLE_S = 600.0


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
    restarts: int = 0              # automatic restarts after crashes, since the last start by hand
    crash: str | None = None       # why the server last died on its own (None: it never did)
    since: float = 0.0             # time.monotonic() of the last change of state


def check_capacity(settings: VLLMSettings, served: int) -> None:
    """AdapterError when `served` adapters already fill the slots that may be used."""
    if served >= settings.adapter_capacity:
        raise AdapterError(
            f"cannot serve more than {settings.adapter_capacity} adapters with "
            f"vllm.max_loras={settings.max_loras}: one LoRA slot must stay free so "
            "base-model answers are never computed with an adapter (docs/serving.md). "
            "Raise vllm.max_loras or unload an adapter."
        )


@functools.cache
def cuda_visible() -> bool:
    """Whether vLLM will run on a CUDA GPU: the same torch as the app's, so the app can tell."""
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # no torch: no CUDA
        return False


class VLLMServer:
    def __init__(self, settings: VLLMSettings, model_path: str, served_name: str, logs_dir: Path,
                 cuda: bool | None = None, resolver_dir: Path | None = None, cpu_cores: str | None = None):
        self.settings = settings
        self.resolver_dir = resolver_dir  # adapters come from here through vLLM's LoRA resolver
        # On the CPU: the cores its engine's threads are bound to (VLLM_CPU_OMP_THREADS_BIND, "0-3");
        # None: vLLM's own choice, which puts every server on the same cores
        self.cpu_cores = cpu_cores
        self.model_path = model_path
        self.served_name = served_name
        self.logs_dir = logs_dir
        self.log_path = logs_dir / "vllm.log"
        self._pid_path = logs_dir / "vllm.pid"
        self._cuda = cuda  # None: found out when the command is built
        self._child: ChildProcess | None = None
        self._state: ServerState = "stopped"
        self._message = "not started"
        self._since = time.monotonic()
        self._generation = 0  # bumped by every start and stop: a supervisor of an older one gives up
        self._restarts = 0
        self._crash: str | None = None
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

    @property
    def on_cuda(self) -> bool:
        return cuda_visible() if self._cuda is None else self._cuda

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
        if self.on_cuda:
            # the share of GPU memory vLLM takes; on the CPU, VLLM_CPU_KVCACHE_SPACE (kv_cache_gib) sizes the cache
            command += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
        if s.reasoning_parser:
            command += ["--reasoning-parser", s.reasoning_parser]
        return command + list(s.extra_args)

    def _set_state(self, state: ServerState, message: str) -> None:
        """Under the lock."""
        if state != self._state:
            self._since = time.monotonic()
        self._state, self._message = state, message

    def start(self) -> None:
        """Starts the process and returns at once; a supervisor thread waits for /health.

        The supervisor thread spawns the process and lives as long as it, restarting it when it
        crashes: PR_SET_PDEATHSIG fires when the spawning *thread* ends, so a short-lived thread
        would kill vLLM.
        """
        with self._lock:
            if self._state in ("starting", "ready", "restarting"):
                return
            self._kill_stale()
            self._generation += 1
            self._restarts, self._crash = 0, None
            self._set_state("starting", "starting vLLM (this takes 30-90 s on a CPU)")
            spawned = threading.Event()
            threading.Thread(target=self._supervise, args=(self._generation, spawned), daemon=True,
                             name="vllm-supervisor").start()
        spawned.wait(30)
        atexit.register(self.stop)

    def _current(self, generation: int) -> bool:
        with self._lock:
            return generation == self._generation

    def _supervise(self, generation: int, spawned: threading.Event) -> None:
        """Spawns vLLM, waits until it is healthy, waits on it, and restarts it when it died on
        its own after it was up (a server that cannot start at all is not retried: its log says why)."""
        was_up = False
        while True:
            child = self._spawn(generation)
            spawned.set()
            if child is None:
                return
            outcome = self._wait_healthy(child, generation)
            up_since = time.monotonic()
            if outcome == "healthy":
                was_up = True
                child.wait()
            if not self._current(generation):
                return  # stopped or restarted by hand: whoever did it owns what comes next
            reason = child.exit_reason(8) if outcome != "timeout" else \
                f"it did not become healthy within {self.settings.startup_timeout_s:.0f} s"
            left = child.reap() if outcome != "timeout" else self._stop_child(child)
            if left:
                log.warning("vLLM (pid %s) died; killed %d worker processes it left: %s", child.pid, len(left), left)
            with self._lock:
                if not self._current(generation):
                    return
                self._child = None
                if outcome == "healthy" and time.monotonic() - up_since > STABLE_S:
                    self._restarts = 0
                if not was_up:
                    self._set_state("failed", f"vLLM exited during start-up: {reason}" if outcome == "exited"
                                    else f"vLLM did not become healthy within {self.settings.startup_timeout_s:.0f} s")
                    log.error("%s", self._message)
                    self._pid_path.unlink(missing_ok=True)
                    return
                self._crash = reason
                attempts = self.settings.restart_attempts
                if self._restarts >= attempts:
                    self._set_state("failed", f"vLLM crashed ({reason}) and did not stay up after {attempts} "
                                              "automatic restarts; press Restart vLLM once the cause is fixed")
                    log.error("%s", self._message)
                    self._pid_path.unlink(missing_ok=True)
                    return
                self._restarts += 1
                pause = self.settings.restart_backoff_s * 2 ** (self._restarts - 1)
                self._set_state("restarting", f"vLLM crashed ({reason}); restarting it by itself in {pause:.0f} s "
                                              f"(attempt {self._restarts} of {attempts})")
                self._engine_loads, self._kernels = 0, ()
                log.error("%s", self._message)
            # the next start writes a fresh log: keep the one that tells how this server died
            try:
                self.log_path.replace(self.log_path.with_name("vllm.crashed.log"))
            except FileNotFoundError:
                pass
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline:
                if not self._current(generation):
                    return
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
            with self._lock:
                if not self._current(generation):
                    return
                self._message = (f"vLLM crashed ({reason}); restarting it by itself "
                                 f"(attempt {self._restarts} of {attempts})")

    def _spawn(self, generation: int) -> ChildProcess | None:
        extra = {
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
            "VLLM_CPU_KVCACHE_SPACE": str(self.settings.kv_cache_gib),
        }
        if self.resolver_dir is not None:
            # vLLM's own plugin (entry point of the vllm package): a request for a model name it
            # does not know loads <dir>/<name> when that adapter's base_model_name_or_path is
            # this server's --model (needs VLLM_ALLOW_RUNTIME_LORA_UPDATING too)
            extra.update({"VLLM_PLUGINS": "lora_filesystem_resolver",
                          "VLLM_LORA_RESOLVER_CACHE_DIR": str(self.resolver_dir)})
            self.resolver_dir.mkdir(parents=True, exist_ok=True)  # vLLM refuses to start without it
        if self.cpu_cores and not self.on_cuda and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
            extra["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_cores
        env = child_env(extra)
        child = ChildProcess("vllm", self.command(), self.logs_dir, env=env, log_name=self.log_path.name)
        with self._lock:
            if not self._current(generation):
                return None
            try:
                child.start()
            except OSError as exc:
                self._set_state("failed", f"could not start vLLM: {exc}")
                return None
            self._child = child
        self._pid_path.write_text(str(child.pid))
        return child

    def _wait_healthy(self, child: ChildProcess, generation: int) -> Literal["healthy", "exited", "timeout", "stopped"]:
        deadline = time.monotonic() + self.settings.startup_timeout_s
        while time.monotonic() < deadline:
            if not self._current(generation):
                return "stopped"
            if child.poll() is not None:
                return "exited"
            try:
                if httpx.get(f"{self.root_url}/health", timeout=2).status_code == 200:
                    kernels = tuple(vllm_kernels(child.pid))
                    with self._lock:
                        self._kernels = kernels
                    # the app logged the CPU at start-up (runtime.py); this says what vLLM made of it
                    log.info("vLLM is up (pid %s); kernels loaded: %s", child.pid, describe_kernels(list(kernels)))
                    self._load_queued_adapters(generation)
                    return "healthy"
            except httpx.HTTPError:
                pass
            time.sleep(1)
        return "timeout"

    def _stop_child(self, child: ChildProcess) -> list[int]:
        child.stop(grace_s=20.0)
        return []

    def _load_queued_adapters(self, generation: int) -> None:
        """Loads adapters registered during start-up (or served before a crash), then declares
        the server ready."""
        loaded: set[str] = set()
        while True:
            with self._lock:
                if not self._current(generation):
                    return
                pending = {n: p for n, p in self._adapters.items() if n not in loaded}
                if not pending:
                    restarted = self._restarts > 0
                    self._set_state("ready", f"ready (restarted by itself after a crash: {self._crash})"
                                    if restarted else "ready")
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
            child = self._child
            state, message = self._state, self._message
            if state == "ready" and child is not None and child.poll() is not None:
                # died a moment ago: the supervisor is about to restart it (or give up)
                state, message = "restarting", f"vLLM stopped unexpectedly: {child.exit_reason(8)}"
            return ServerStatus(
                state, self.base_url, child.pid if child else None, message,
                self.log_tail() if state in ("failed", "restarting") else "",
                tuple(self._adapters) if state == "ready" else (),
                self._kernels, self._restarts, self._crash, self._since,
            )

    def adapter_names(self) -> set[str]:
        """Every adapter registered: served, or queued until the server is ready."""
        with self._lock:
            return set(self._adapters)

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
            check_capacity(self.settings, len(self._adapters))
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
        if self.resolver_dir is not None:
            # no call: the resolver loads it on its first request, into a LoRA slot all the same
            with self._lock:
                self._engine_loads += 1
            return
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
            never_asked = self.resolver_dir is not None and response.status_code == 404  # never resolved here
            if response.status_code != 200 and not never_asked:
                raise AdapterError(f"unloading adapter {name!r} failed: HTTP {response.status_code} {response.text[:300]}")

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, timeout: float = 20.0) -> None:
        """Stops the server for good (its supervisor does not restart it): SIGTERM to vLLM,
        SIGKILL to its whole process group after `timeout` seconds (the engine workers sit in
        it), and a sweep of whatever a dead server left."""
        with self._lock:
            child, self._child = self._child, None
            self._generation += 1
            self._set_state("stopped", "stopped")
        if child is not None:
            child.stop(grace_s=timeout)
            signal_group(child.pid, signal.SIGKILL)
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
