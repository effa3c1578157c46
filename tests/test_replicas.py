"""Several servers of one model (issue 17 §3): requests are balanced over the replicas, a replica
that is down is skipped, one that dies mid-answer fails that answer only, and a checkpoint that
joins reaches every replica of the app's vLLM, one started later included, through vLLM's
filesystem LoRA resolver (no load call per replica).

Fast: the client against tests/openai_stub.py servers, the arena on top of them, and the replica
manager against a stand-in vLLM (this file run as a script: `--fake-vllm`) that resolves adapters
from the shared directory the way vLLM's plugin does. Slow: two real vLLM CPU servers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import httpx
import pytest

from conftest import free_port
from qwen3arena.config import ArenaSettings, ConfigError, EndpointSpec, GenerationParams, VLLMSettings, load_settings
from qwen3arena.serve import ChatResult, ContestantPool, Endpoint, endpoint_contestant, stream_chat
from qwen3arena.serve.balance import BALANCER
from qwen3arena.serve.chat import EndpointUnreachable, UnfinishedStream
from qwen3arena.serve.replicas import MARKER, VLLMReplicas, core_shares, managed_server
from qwen3arena.serve.vllm_server import AdapterError, VLLMServer

PARAMS = GenerationParams(temperature=0, max_tokens=32)


@pytest.fixture(autouse=True)
def fresh_balancer():
    BALANCER.forget()
    yield
    BALANCER.forget()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused


def ask(endpoint: Endpoint, params: GenerationParams = PARAMS, timeout_s: float = 30) -> ChatResult:
    events = list(stream_chat(endpoint, [{"role": "user", "content": "Can I freeze milk?"}], params,
                              enable_thinking=False, timeout_s=timeout_s))
    assert isinstance(events[-1], ChatResult)
    return events[-1]


def replicas_of(*urls: str, down_s: float = 10.0) -> Endpoint:
    return Endpoint(urls[0], "secret-model-name", replicas=tuple(urls), down_s=down_s)


def wait_for(check: Callable[[], object], timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- balancing and skipping, against stub servers ---------------------------------------------

def test_idle_replicas_take_turns_and_a_single_url_endpoint_is_unchanged(stubs):
    a, b = stubs("alpha"), stubs("beta")
    answers = [ask(replicas_of(a.base_url, b.base_url)).content for _ in range(6)]
    assert (a.requests, b.requests) == (3, 3)
    assert answers == ["alpha", "beta"] * 3
    for _ in range(2):
        assert ask(Endpoint(a.base_url, "m")).content == "alpha"
    assert (a.requests, b.requests) == (5, 3)


def test_the_replica_with_fewer_requests_in_flight_gets_the_next_one(stubs):
    busy, idle = stubs(" ".join(["word"] * 60), delay_s=0.05), stubs("idle answer")
    endpoint = replicas_of(busy.base_url, idle.base_url)
    long_answer = stream_chat(endpoint, [{"role": "user", "content": "Tell me a story."}], PARAMS, None, 30)
    next(long_answer)  # streaming from the first replica now
    assert busy.requests == 1
    for _ in range(3):  # round robin alone would send the 2nd of these to the busy replica
        assert ask(endpoint).content == "idle answer"
    assert (busy.requests, idle.requests) == (1, 3)
    long_answer.close()
    assert BALANCER.snapshot()[busy.base_url].outstanding == 0, "a closed stream is no longer in flight"


def test_a_replica_that_refuses_connections_is_skipped_at_once_and_left_alone_for_its_back_off(stubs):
    down, up = dead_url(), stubs("answer from the live replica")
    endpoint = replicas_of(down, up.base_url, down_s=30)
    for _ in range(4):
        assert ask(endpoint).content == "answer from the live replica"
    assert up.requests == 4
    state = BALANCER.snapshot()[down]
    assert BALANCER.is_down(down) and state.failed == 1, "tried once, then skipped while it is down"


def test_a_replica_that_dies_mid_answer_fails_that_answer_only_and_the_next_ones_go_to_the_other(stubs):
    dying = stubs("one two three four five six", drop_after=2)
    healthy = stubs("the other replica answers")
    endpoint = replicas_of(dying.base_url, healthy.base_url, down_s=0.5)
    with pytest.raises(UnfinishedStream) as failed:  # the stub speaks HTTP/1.0: its close ends the body
        ask(endpoint)
    public = failed.value.public
    assert "stopped before it was finished" in public
    assert "127.0.0.1" not in public and "secret-model-name" not in public and str(dying.server.server_address[1]) \
        not in public, "the voter's message names no server and no model"
    for _ in range(3):  # round robin alone would send the 2nd of these to the dead replica again
        assert ask(endpoint).content == "the other replica answers"
    assert (dying.requests, healthy.requests) == (1, 3)
    time.sleep(0.6)  # its back-off is over: it is tried again (and fails again, for twice as long)
    with pytest.raises(UnfinishedStream):
        ask(endpoint)
    assert dying.requests == 2 and BALANCER.is_down(dying.base_url)


def test_when_every_replica_refuses_the_error_is_the_usual_one_and_each_was_tried():
    first, second = dead_url(), dead_url()
    endpoint = replicas_of(first, second)
    for _ in range(2):  # all marked down: still tried (a down mark is a guess), same error
        with pytest.raises(EndpointUnreachable) as failed:
            ask(endpoint)
        assert "connection refused" in failed.value.public and "127.0.0.1" not in failed.value.public
    snapshot = BALANCER.snapshot()
    assert snapshot[first].failed == 2 and snapshot[second].failed == 2


def test_a_battle_side_whose_replica_dies_fails_alone_and_the_next_battle_is_answered(tmp_path, stubs):
    from qwen3arena.arena import Arena
    from qwen3arena.store import Store

    dying = stubs("one two three four five six", drop_after=2, model="left-model")
    healthy = stubs("left answer from the second replica", model="left-model")
    right = stubs("right answer", model="right-model")
    pool = ContestantPool(None)
    pool.add(endpoint_contestant(EndpointSpec(name="left-model", base_urls=[dying.base_url, healthy.base_url]), PARAMS))
    pool.add(endpoint_contestant(EndpointSpec(name="right-model", base_url=right.base_url), PARAMS))
    store = Store(tmp_path / "db.duckdb")
    try:
        arena = Arena(store, pool, ArenaSettings(), random.Random(0))
        first = list(arena.send("page", "anon:page", "Can I freeze milk?"))[-1]
        assert first.finished and not first.votable
        assert [k for k in first.error_kinds if k] == ["UnfinishedStream"]
        shown = " ".join(str(e) for e in first.errors) + " ".join(str(m["content"]) for c in first.chats for m in c)
        assert "left-model" not in shown and "127.0.0.1" not in shown
        assert {c.name for c in pool.available()} == {"left-model", "right-model"}, \
            "one replica down does not take the contestant out of the draw"
        arena.close_session("page")
        second = list(arena.send("page", "anon:page", "Can I freeze milk?"))[-1]
        assert second.votable
        assert set(second.answers) == {"left answer from the second replica", "right answer"}
        assert dying.requests == 1
    finally:
        store.close()


def test_the_pool_draws_an_endpoint_while_one_replica_is_up_and_tells_admins_how_many_are_down(stubs):
    up = stubs("answer")
    pool = ContestantPool(None)
    pool.add(endpoint_contestant(EndpointSpec(name="partly", base_urls=[dead_url(), up.base_url]), PARAMS))
    pool.add(endpoint_contestant(EndpointSpec(name="gone", base_urls=[dead_url(), dead_url()]), PARAMS))
    assert [c.name for c in pool.available()] == ["partly"]
    health = pool.health()
    assert health["partly"].startswith("up (1 of 2 replicas down")
    assert health["gone"].startswith("down: 2 of 2 replicas down")
    pool.report_failure("partly", "the stream broke off")
    assert [c.name for c in pool.available()] == ["partly"]


def test_endpoints_list_replicas_and_the_single_url_form_stays_valid():
    settings = load_settings(env={
        "QWEN3ARENA__ENDPOINTS": "[{name: one, base_url: 'http://a/v1'}, "
                                 "{name: many, base_urls: ['http://b/v1', 'http://c/v1']}, "
                                 "{name: both, base_url: 'http://d/v1', base_urls: ['http://e/v1', 'http://d/v1']}]",
        "QWEN3ARENA__VLLM__REPLICAS": "3", "QWEN3ARENA__VLLM__PORT": "9000"})
    one, many, both = (endpoint_contestant(spec, PARAMS).endpoint for spec in settings.endpoints)
    assert one.urls == ("http://a/v1",) and one.base_url == "http://a/v1"
    assert many.urls == ("http://b/v1", "http://c/v1") and many.base_url == "http://b/v1"
    assert both.urls == ("http://d/v1", "http://e/v1")
    assert settings.vllm.base_urls == tuple(f"http://127.0.0.1:{p}/v1" for p in (9000, 9001, 9002))
    with pytest.raises(ConfigError, match=r"endpoints\[0\] \(x\): give base_url"):
        load_settings(env={"QWEN3ARENA__ENDPOINTS": "[{name: x}]"})
    with pytest.raises(ConfigError, match="vllm.replicas: 0 is out of range"):
        load_settings(env={"QWEN3ARENA__VLLM__REPLICAS": "0"})


# -- the replica manager, against a stand-in vLLM with the filesystem resolver -----------------

def free_ports(n: int) -> int:
    """The first of n consecutive free ports."""
    for _ in range(100):
        first = free_port()
        try:
            for port in range(first, first + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no consecutive free ports")


class FakeResolverVLLM(VLLMServer):
    """This file run as a stand-in vLLM: /health, /v1/models, the LoRA calls (recorded), and
    /v1/completions resolving unknown names from VLLM_LORA_RESOLVER_CACHE_DIR as vLLM does."""

    def command(self) -> list[str]:
        return [sys.executable, __file__, "--fake-vllm", "--port", str(self.settings.port),
                "--served-model-name", self.served_name, "--model", self.model_path,
                "--events", str(self.logs_dir / "events.jsonl")]


def events(member: VLLMServer) -> list[dict]:
    path = member.logs_dir / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def make_adapter(path: Path, rank: int = 8) -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "base_model_name_or_path": "/where/it/was/trained"}))
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    return path


def complete(url: str, model: str) -> int:
    return httpx.post(f"{url}/completions", json={"model": model, "prompt": "Hi", "max_tokens": 1}, timeout=10).status_code


def models(url: str) -> set[str]:
    return {m["id"] for m in httpx.get(f"{url}/models", timeout=5).json()["data"]}


@pytest.fixture
def fake_replicas(tmp_path):
    settings = VLLMSettings(port=free_ports(2), replicas=2, startup_timeout_s=30, restart_backoff_s=0.2)
    replicas = VLLMReplicas(settings, str(tmp_path / "base"), "base", tmp_path / "logs", tmp_path / "shared",
                            server_class=FakeResolverVLLM)
    yield replicas
    replicas.stop()


def test_an_adapter_that_joins_reaches_every_replica_and_one_restarted_later_without_a_load_call(tmp_path,
                                                                                                 fake_replicas):
    replicas = fake_replicas
    first, second = replicas.members
    assert (first.settings.port + 1, first.logs_dir) == (second.settings.port, tmp_path / "logs")
    replicas.start()
    status = replicas.wait_ready()
    assert status.state == "ready" and status.message == "2 of 2 replicas ready"
    replicas.load_adapter("late", str(make_adapter(tmp_path / "runs" / "late")))
    placed = tmp_path / "shared" / "late"
    assert json.loads((placed / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tmp_path / "base")
    assert (placed / MARKER).exists() and (placed / "adapter_model.safetensors").read_bytes() == b"weights"
    assert replicas.status().adapters == ("late",) and replicas.adapter_names() == {"late"}
    assert [complete(url, "late") for url in replicas.base_urls] == [200, 200]
    assert all(e["event"] != "load_lora_adapter" for m in replicas.members for e in events(m))
    assert [e["event"] for e in events(second)] == ["resolved"], "the second replica found it by itself"

    os.killpg(second.status().pid, signal.SIGKILL)  # the second replica dies; its supervisor starts a fresh one
    wait_for(lambda: second.status().state == "ready" and second.status().restarts == 1, 30, "the restart")
    assert models(second.base_url) == {"base"}, "the fresh process was told nothing"
    assert complete(second.base_url, "late") == 200 and "late" in models(second.base_url)

    replicas.unload_adapter("late")
    assert not placed.exists() and replicas.adapter_names() == set()
    assert [complete(url, "late") for url in replicas.base_urls] == [404, 404]


def test_an_adapter_vllm_refuses_is_refused_at_the_join_and_leaves_nothing_behind(tmp_path, fake_replicas):
    fake_replicas.start()
    assert fake_replicas.wait_ready().state == "ready"
    with pytest.raises(AdapterError, match="HTTP 400"):
        fake_replicas.load_adapter("too-big", str(make_adapter(tmp_path / "too-big", rank=64)))
    assert not (tmp_path / "shared" / "too-big").exists()
    assert fake_replicas.adapter_names() == set() and all(m.adapter_names() == set() for m in fake_replicas.members)
    with pytest.raises(AdapterError, match="cannot name an adapter"):
        fake_replicas.load_adapter("../escape", str(make_adapter(tmp_path / "escape")))


def test_the_shared_directory_only_ever_loses_what_the_app_placed_there(tmp_path, fake_replicas):
    shared = tmp_path / "shared"
    foreign = make_adapter(shared / "foreign")
    stale = make_adapter(shared / "stale")
    (stale / MARKER).write_text("an earlier run")
    fake_replicas.load_adapter("kept", str(make_adapter(tmp_path / "kept")))  # queued: nothing is up yet
    fake_replicas.start()
    assert fake_replicas.wait_ready().state == "ready"
    assert foreign.exists() and not stale.exists() and (shared / "kept" / MARKER).exists()
    with pytest.raises(AdapterError, match="not placed by qwen3arena"):
        fake_replicas.load_adapter("foreign", str(make_adapter(tmp_path / "other")))
    assert foreign.exists()


def test_one_replica_is_the_single_server_of_before(tmp_path):
    server = managed_server(VLLMSettings(), "base", tmp_path / "logs", tmp_path / "shared")
    assert type(server) is VLLMServer and server.resolver_dir is None and server.cpu_cores is None
    assert managed_server(VLLMSettings(replicas=2), "base", tmp_path / "logs", tmp_path / "shared").base_urls == (
        "http://127.0.0.1:8011/v1", "http://127.0.0.1:8012/v1")


def test_local_replicas_get_cores_of_their_own():
    assert core_shares([0, 1], 2) == ["0", "1"]  # vLLM alone binds both engines to core 0
    assert core_shares(list(range(16)), 2) == ["0,1,2,3,4,5,6", "7,8,9,10,11,12,13"]  # core 15 for the API
    assert core_shares([0], 2) == ["0", "0"]


def test_the_apps_contestants_are_served_by_every_local_replica(tmp_path):
    from qwen3arena.runtime import create_runtime

    settings = load_settings(env={"QWEN3ARENA_HOME": str(tmp_path / "home"), "QWEN3ARENA__VLLM__REPLICAS": "2",
                                  "QWEN3ARENA__VLLM__PORT": "9100"})
    runtime = create_runtime(settings)
    try:
        assert isinstance(runtime.server, VLLMReplicas)
        assert runtime.server.adapters_dir == settings.home / "served-adapters"
        runtime.checkpoints.register_base(str(tmp_path / "base"))
        endpoint = runtime.pool.get(settings.model.served_name).endpoint
        assert endpoint.urls == ("http://127.0.0.1:9100/v1", "http://127.0.0.1:9101/v1")
    finally:
        runtime.shutdown()


# -- two real vLLM CPU servers --------------------------------------------------------------

def test_two_real_vllm_replicas_serve_a_late_adapter_and_survive_one_killed_mid_answer(tmp_path, embedded_models):
    """Both replicas start, then an adapter joins: each answers it (the second without any call);
    one replica is killed while it streams: that answer fails, the next goes to the other; the
    killed one comes back as a fresh process and answers the adapter through the resolver."""
    from qwen3arena.procs import group_members

    adapter = "tiny-qwen3-concise"
    settings = VLLMSettings(port=free_ports(2), replicas=2, restart_backoff_s=0.5, startup_timeout_s=600)
    replicas = VLLMReplicas(settings, str(embedded_models.base_dir), "tiny-qwen3-base", tmp_path / "logs",
                            tmp_path / "shared")
    greedy = GenerationParams(temperature=0.0, top_p=1.0, max_tokens=24)
    started = time.monotonic()
    replicas.start()
    try:
        status = replicas.wait_ready()
        assert status.state == "ready" and status.message == "2 of 2 replicas ready", replicas.log_tail()
        print(f"both replicas ready in {time.monotonic() - started:.0f} s")
        first, second = replicas.members
        replicas.load_adapter(adapter, str(embedded_models.adapters[adapter]))
        assert adapter not in models(second.base_url), "only the first replica was asked to check it"
        answers = [ask(Endpoint(m.base_url, adapter), greedy, 120).content for m in replicas.members]
        base = ask(Endpoint(first.base_url, "tiny-qwen3-base"), greedy, 120).content
        assert answers[0] == answers[1] != base
        assert adapter in models(second.base_url)
        assert "Resolved and loaded LoRA adapter 'tiny-qwen3-concise'" in second.log_path.read_text()

        endpoint = Endpoint(first.base_url, adapter, replicas=replicas.base_urls)
        BALANCER.forget()
        long = GenerationParams(temperature=0.0, max_tokens=1500, extra={"ignore_eos": True})
        stream = stream_chat(endpoint, [{"role": "user", "content": "Tell me about rice."}], long, False, 120)
        next(stream)
        (busy,) = [u for u, s in BALANCER.snapshot().items() if s.outstanding]
        victim = next(m for m in replicas.members if m.base_url == busy)
        survivor = next(m for m in replicas.members if m is not victim)
        os.killpg(victim.status().pid, signal.SIGKILL)
        with pytest.raises(EndpointUnreachable):
            list(stream)
        after = ask(endpoint, greedy, 120)
        assert after.content == answers[0]
        assert BALANCER.snapshot()[survivor.base_url].served == 1 and BALANCER.is_down(victim.base_url)

        wait_for(lambda: victim.status().state == "ready" and victim.status().restarts == 1, 600, "the restart")
        assert replicas.status().message == "2 of 2 replicas ready"
        assert adapter not in models(victim.base_url), "the fresh process was told nothing"
        assert ask(Endpoint(victim.base_url, adapter), greedy, 120).content == answers[0]
        assert "Resolved and loaded LoRA adapter" in victim.log_path.read_text()
    finally:
        pids = [m.status().pid for m in replicas.members]
        replicas.stop()
    wait_for(lambda: all(not group_members(pid) for pid in pids if pid), 30, "every vLLM process to end")


# -- the stand-in vLLM --------------------------------------------------------------------------

def _fake_vllm() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake-vllm", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--events", required=True)
    args = parser.parse_args()
    resolver_dir = os.environ.get("VLLM_LORA_RESOLVER_CACHE_DIR") \
        if "lora_filesystem_resolver" in os.environ.get("VLLM_PLUGINS", "") else None
    loaded: set[str] = set()

    def record(event: str, name: str) -> None:
        with open(args.events, "a") as out:
            out.write(json.dumps({"event": event, "name": name}) + "\n")

    def resolve(name: str) -> int:
        """vLLM's FilesystemResolver: <dir>/<name> whose base is this --model; 400 past the rank."""
        config_path = Path(resolver_dir or "/nonexistent", name, "adapter_config.json")
        if not config_path.exists():
            return 404
        config = json.loads(config_path.read_text())
        if config.get("peft_type") != "LORA" or config.get("base_model_name_or_path") != args.model:
            return 404
        if config.get("r", 0) > 16:
            return 400
        loaded.add(name)
        record("resolved", name)
        return 200

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _reply(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {})
            elif self.path == "/v1/models":
                self._reply(200, {"data": [{"id": n} for n in [args.served_model_name, *sorted(loaded)]]})
            else:
                self._reply(404, {})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path == "/v1/load_lora_adapter":
                record("load_lora_adapter", body["lora_name"])
                loaded.add(body["lora_name"])
                self._reply(200, {})
            elif self.path == "/v1/unload_lora_adapter":
                known = body["lora_name"] in loaded
                loaded.discard(body["lora_name"])
                self._reply(200 if known else 404, {})
            elif self.path == "/v1/completions":
                model = body.get("model")
                code = 200 if model == args.served_model_name or model in loaded else resolve(model)
                self._reply(code, {"choices": [{"text": "x", "finish_reason": "length"}]} if code == 200 else
                            {"error": {"message": f"model {model} {code}", "code": code}})
            else:
                self._reply(404, {})

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    _fake_vllm()
