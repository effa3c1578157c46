"""A vLLM server that dies on its own is restarted by itself (a bounded number of times), the
workers it left are killed, and visitors are told the truth (issue 18, item 8).

The fast tests run the real server manager against tests/fake_vllm.py (a process that answers
like vLLM and leaves a worker behind when killed, as vLLM's engine core does); the slow one
kills a real vLLM CPU server with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import free_port
from qwen3arena.config import VLLMSettings
from qwen3arena.procs import group_members, process_tree
from qwen3arena.serve import VLLMServer

FAKE = Path(__file__).with_name("fake_vllm.py")


def fake_command(self: VLLMServer) -> list[str]:
    return [sys.executable, str(FAKE), "--port", str(self.settings.port), "--served-model-name", self.served_name,
            "--worker-pid-file", str(self.logs_dir / "worker.pid")]


class FakeVLLM(VLLMServer):
    command = fake_command


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def wait_for(check: Callable[[], object], timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def make_adapter(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"r": 8}))
    return path


def answer_greedy(base_url: str, model: str) -> str:
    from qwen3arena.config import GenerationParams
    from qwen3arena.serve import ChatResult, Endpoint, stream_chat

    greedy = GenerationParams(temperature=0.0, top_p=1.0, max_tokens=24)
    for event in stream_chat(Endpoint(base_url, model), [{"role": "user", "content": "Can I freeze milk?"}],
                             greedy, enable_thinking=False, timeout_s=120):
        if isinstance(event, ChatResult):
            return event.content
    raise AssertionError("no answer")


def served_by_process(server: VLLMServer) -> set[str]:
    return {m["id"] for m in httpx.get(f"{server.base_url}/models", timeout=5).json()["data"]}


@pytest.fixture
def settings() -> VLLMSettings:
    return VLLMSettings(port=free_port(), startup_timeout_s=30, restart_backoff_s=0.2)


def test_a_killed_server_is_restarted_by_itself_with_its_adapters_and_its_workers_are_killed(tmp_path, settings):
    server = FakeVLLM(settings, model_path="base", served_name="base", logs_dir=tmp_path)
    server.load_adapter("a1", str(make_adapter(tmp_path / "a1")))  # queued until the server is up
    server.start()
    try:
        assert server.wait_ready(30).state == "ready"
        first = server.status().pid
        worker = int((tmp_path / "worker.pid").read_text())
        assert alive(worker)
        os.kill(first, signal.SIGKILL)
        status = wait_for(lambda: (s := server.status()).state == "restarting" and s, what="restarting")
        assert "killed by SIGKILL" in status.message and "attempt 1 of 3" in status.message, status.message
        wait_for(lambda: not alive(worker), 10, "the dead server's worker to be killed")
        status = server.wait_ready(30)
        assert status.state == "ready", status.message
        assert status.pid != first and status.restarts == 1
        assert status.crash and status.crash.startswith("killed by SIGKILL")
        assert "restarted by itself" in status.message
        assert status.adapters == ("a1",) and served_by_process(server) == {"base", "a1"}
        assert (tmp_path / "vllm.crashed.log").exists()  # the log of the server that died is kept
    finally:
        server.stop()


def test_automatic_restarts_are_bounded_and_then_the_server_stays_down_with_the_reason(tmp_path, settings):
    settings.restart_attempts = 2
    server = FakeVLLM(settings, model_path="base", served_name="base", logs_dir=tmp_path)
    server.start()
    try:
        for attempt in (1, 2):
            assert server.wait_ready(30).state == "ready"
            os.kill(server.status().pid, signal.SIGKILL)
            wait_for(lambda: server.status().restarts == attempt, what=f"restart {attempt}")
        assert server.wait_ready(30).state == "ready"
        last = server.status().pid
        os.kill(last, signal.SIGKILL)
        status = wait_for(lambda: (s := server.status()).state == "failed" and s, what="failed")
        assert "did not stay up after 2 automatic restarts" in status.message, status.message
        assert "killed by SIGKILL" in status.message
        time.sleep(1.0)  # longer than any back-off: nothing starts again
        assert server.status().state == "failed" and not group_members(last)
        assert status.log_tail is not None
    finally:
        server.stop()


def test_a_server_stopped_on_purpose_is_not_restarted(tmp_path, settings):
    server = FakeVLLM(settings, model_path="base", served_name="base", logs_dir=tmp_path)
    server.start()
    assert server.wait_ready(30).state == "ready"
    pid = server.status().pid
    server.stop()
    time.sleep(1.0)
    assert server.status().state == "stopped"
    assert not alive(pid) and not group_members(pid)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.root_url}/health", timeout=2)


def test_visitors_are_told_the_server_crashed_and_is_restarting(tmp_path, monkeypatch):
    """The arena's line while the server restarts after a kill -9: not "starting"."""
    from conftest import make_settings
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui.app import readiness

    monkeypatch.setattr(VLLMServer, "command", fake_command)
    base = tmp_path / "base"
    base.mkdir()
    adapter = make_adapter(tmp_path / "adapter")
    settings = make_settings(tmp_path / "home", tmp_path, model__base=str(base),
                             model__adapters=json.dumps({"side-b": str(adapter)}),
                             vllm__restart_backoff_s="3")
    runtime = create_runtime(settings)
    try:
        runtime.start(wait=True)
        assert readiness(runtime) == ""  # two models up: no line
        os.kill(runtime.server.status().pid, signal.SIGKILL)
        wait_for(lambda: runtime.server.status().state == "restarting", what="restarting")
        line = readiness(runtime)
        assert "crashed and is restarting by itself (attempt 1 of 3)" in line, line
        assert "starting" not in line.replace("restarting", "")
        assert "side-b" not in line and "base" not in line
        assert runtime.server.wait_ready(30).state == "ready"
        wait_for(lambda: readiness(runtime) == "", what="the line to clear")
        runtime.restart_server()  # by hand (the Models tab): restarting, and no crash is claimed
        line = readiness(runtime)
        assert "is restarting" in line and "crashed" not in line, line
        assert runtime.server.wait_ready(30).state == "ready"
    finally:
        runtime.shutdown()


def test_a_real_vllm_killed_with_sigkill_comes_back_by_itself_and_leaves_no_worker(tmp_path, embedded_models):
    """A separate real vLLM CPU server (the shared one stays untouched): kill -9 of the API
    server, its engine workers die, it restarts with its adapters and answers as before."""
    settings = VLLMSettings(port=free_port(), restart_backoff_s=1.0)
    server = VLLMServer(settings, model_path=str(embedded_models.base_dir), served_name="tiny-qwen3-base",
                        logs_dir=tmp_path)
    for name, path in embedded_models.adapters.items():
        server.load_adapter(name, str(path))
    server.start()
    try:
        status = server.wait_ready(600)
        assert status.state == "ready", status.message
        before = {m: answer_greedy(server.base_url, m) for m in ["tiny-qwen3-base", *embedded_models.adapters]}
        tree = process_tree(status.pid)
        assert len(tree) >= 2, "vLLM's engine runs in child processes"
        killed = time.monotonic()
        os.kill(status.pid, signal.SIGKILL)
        wait_for(lambda: not any(alive(p) for p in tree), 30, "the engine workers to be killed")
        reaped_s = time.monotonic() - killed
        status = server.wait_ready(600)
        back_s = time.monotonic() - killed
        assert status.state == "ready" and status.restarts == 1, status.message
        assert sorted(status.adapters) == sorted(embedded_models.adapters)
        after = {m: answer_greedy(server.base_url, m) for m in before}
        assert after == before
        print(f"\nworkers gone {reaped_s:.1f} s after kill -9; serving again after {back_s:.1f} s")
    finally:
        server.stop()
