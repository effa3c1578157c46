"""Page sessions are bounded (issue 18, item 10): Gradio keeps each page's session state until
10,000 exist, so the app grew by ~0.5 MiB per visitor and never shrank. The app forgets a page
that is closed or silent, closes its unvoted battle, and lets a forgotten page carry on."""

from __future__ import annotations

import contextlib
import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from gradio_client import Client

from conftest import free_port
from openai_stub import StubEndpoint
from test_arena_pages import two_stubs  # noqa: F401  (the fixture: two stub contestants)

pytestmark = pytest.mark.slow  # the web app


@contextlib.contextmanager
def launched(home: Path, stubs: list[StubEndpoint], **ui: object) -> Iterator[tuple]:
    """The app as `python app.py` serves it (ui.launch), stub contestants, no vLLM."""
    from qwen3arena.config import load_settings
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui import launch

    env = {"QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__ENABLED": "false",
           "QWEN3ARENA__ENDPOINTS": yaml.safe_dump([{"name": s.model, "base_url": s.base_url} for s in stubs]),
           "QWEN3ARENA__UI__TRAIN_TAB": "'off'"}
    env.update({f"QWEN3ARENA__UI__{key.upper()}": str(value) for key, value in ui.items()})
    runtime = create_runtime(load_settings(env=env))
    port = free_port()
    demo = launch(runtime, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield runtime, demo, f"http://127.0.0.1:{port}"
    finally:
        demo.close()
        runtime.shutdown()


def _battle(url: str) -> tuple[Client, str]:
    """A new page (a new session) that asks one question and leaves it unvoted."""
    client = Client(url, verbose=False)
    answered = client.predict("How should I store rice?", api_name="/send")
    assert answered[3], "the page holds a battle"
    return client, answered[3]


def _sessions(demo) -> dict:
    with demo.state_holder.lock:
        return dict(demo.state_holder.session_data)


def test_silent_pages_are_forgotten_with_their_unvoted_battles_and_can_carry_on(tmp_path, two_stubs):
    with launched(tmp_path, two_stubs, session_idle_s=3) as (runtime, demo, url):
        pages, states = [], []
        for _ in range(4):  # each page's state is taken at once: the sweep may forget early pages meanwhile
            pages.append(_battle(url))
            states.append(weakref.ref(_sessions(demo)[pages[-1][0].session_hash]))
        deadline = time.monotonic() + 30
        while (_sessions(demo) or runtime.arena.active_battles()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _sessions(demo) == {}, "a page silent past ui.session_idle_s is forgotten"
        assert runtime.arena.active_battles() == 0, "and its unvoted battle is closed"
        gc.collect()
        assert all(ref() is None for ref in states), "the forgotten session state is freed"
        client, _ = pages[0]
        again = client.predict("And flour?", api_name="/send")  # the same page, forgotten meanwhile
        assert again[3] and runtime.arena.active_battles() == 1
        assert runtime.store.list_votes() == []


def test_beyond_the_cap_the_least_recently_used_pages_go_first(tmp_path, two_stubs):
    from qwen3arena.ui.sessions import forget_sessions

    with launched(tmp_path, two_stubs) as (runtime, demo, url):  # defaults: nothing is idle yet
        pages = [_battle(url) for _ in range(4)]
        assert forget_sessions(demo, idle_s=1800, max_sessions=10) == 0
        newest = pages[-1][0]
        newest.predict(pages[-1][1], api_name="/vote_model_a")  # the newest page acts last
        closed: list[str] = []
        assert forget_sessions(demo, idle_s=1800, max_sessions=2, on_forget=closed.append) >= 2
        kept = set(_sessions(demo))
        assert len(kept) == 2 and newest.session_hash in kept
        assert newest.session_hash not in closed and len(closed) >= 2
        assert len(runtime.store.list_votes()) == 1, "forgetting a page loses no vote"
