"""The Arena tab over HTTP (gradio_client) with stub contestants and no vLLM: what a page is
told when its action is refused (issue 18, items 0 and 9). `stub_app` is also the app of the
browser tests in test_browser_render.py."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from gradio_client import Client

from conftest import free_port
from openai_stub import StubEndpoint

pytestmark = pytest.mark.slow  # the web app


@contextlib.contextmanager
def stub_app(home: Path, stubs: Sequence[StubEndpoint]) -> Iterator[tuple]:
    """The whole app (every tab) on `home`, its only contestants the stubs (named after their
    `model`), no vLLM. Yields (runtime, url)."""
    from qwen3arena.config import load_settings
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui import build_app

    endpoints = [{"name": s.model, "base_url": s.base_url} for s in stubs]
    settings = load_settings(env={"QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__ENABLED": "false",
                                  "QWEN3ARENA__ENDPOINTS": yaml.safe_dump(endpoints),
                                  "QWEN3ARENA__UI__TRAIN_TAB": "'off'"})
    runtime = create_runtime(settings)
    demo = build_app(runtime)
    demo.queue(default_concurrency_limit=8)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield runtime, f"http://127.0.0.1:{port}"
    finally:
        demo.close()
        runtime.shutdown()


@pytest.fixture
def two_stubs():
    stubs = [StubEndpoint("Keep it in a cool, dry place.", model="stub-left-model"),
             StubEndpoint("Refrigerate it within two hours.", model="stub-right-model")]
    yield stubs
    for stub in stubs:
        stub.close()


def _status(result) -> str:
    return json.dumps(result)


def test_a_vote_after_a_restart_says_the_app_restarted(tmp_path, two_stubs):
    """The page still shows a battle answered before the restart; its vote names that battle."""
    with stub_app(tmp_path, two_stubs) as (_, url):
        client = Client(url, verbose=False)
        answered = client.predict("How should I store rice?", api_name="/send")
        shown = answered[3]  # the battle id the page shows (an opaque id, no name)
        assert "Both answers are complete" in _status(answered) and shown
    with stub_app(tmp_path, two_stubs) as (runtime, url):  # the app restarted; the page did not
        client = Client(url, verbose=False)
        result = client.predict(shown, api_name="/vote_model_a")
        assert "app restarted" in _status(result) and "Nothing was lost" in _status(result)
        assert "Start a battle before voting" not in _status(result)
        assert runtime.store.list_votes() == []
        assert runtime.store.get_battle(shown).conversation_a[-1]["role"] == "assistant", "its answers are kept"


def test_a_vote_for_a_battle_the_page_no_longer_holds_is_refused_and_said(tmp_path, two_stubs):
    with stub_app(tmp_path, two_stubs) as (runtime, url):
        client = Client(url, verbose=False)
        old = client.predict("First question?", api_name="/send")[3]
        client.predict(api_name="/new_round")
        new = client.predict("Second question?", api_name="/send")[3]
        assert new != old
        refused = client.predict(old, api_name="/vote_model_a")
        assert "closed when a new round started" in _status(refused)
        other = Client(url, verbose=False)  # another page cannot vote on this page's battle
        assert "not the one open on your page" in _status(other.predict(new, api_name="/vote_model_a"))
        assert runtime.store.list_votes() == []
        recorded = client.predict(new, api_name="/vote_model_b")  # names only after the undo window
        assert "Recorded" in _status(recorded) and "stub-left-model" not in _status(recorded)
        revealed = client.predict(new, api_name="/vote_reveal")
        assert "Model A** was" in _status(revealed)
        assert [v.battle_id for v in runtime.store.list_votes()] == [new]
