"""Shared fixtures. Slow parts (the embedded models, one vLLM server, one web app) are built
once per test session; the models are cached across sessions in QWEN3ARENA_TEST_MODELS."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("UNSLOTH_SKIP_TORCHVISION_CHECK", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CONTESTANTS = ("tiny-qwen3-base", "tiny-qwen3-concise", "tiny-qwen3-chatty")

# Fixtures that build models, start vLLM, the web app or a browser: a test using any of them is
# "slow". The fast lane (README) is `pytest -m "not slow"`: everything that needs no server.
SLOW_FIXTURES = {"embedded_models", "runtime", "app_url", "public_app", "browser", "campaign"}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs the models, a vLLM server, the web app, a browser, "
                                       "or starts Unsloth, vLLM or EvalScope processes (deselect with -m 'not slow')")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the session (Debian's binaries, as the postgres user when root),
    stopped at the end; each test takes a database of its own (store_target). Durability off
    (fsync): speed, not crash safety, is what these tests need from it. Missing binaries skip the
    PostgreSQL tests locally, but fail them in CI (CI=1, set by .ci/run), which must run them."""
    import shutil

    from qwen3arena.store.postgres import LocalPostgres, PostgresMissing

    data_dir = Path(tempfile.mkdtemp(prefix="q3a-pg-"))  # under /tmp: the postgres user reaches it
    try:
        server = LocalPostgres(data_dir, free_port(), settings={
            "fsync": "off", "full_page_writes": "off", "max_connections": "300"})
    except PostgresMissing as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the PostgreSQL store tests: {exc}")
        pytest.skip(f"PostgreSQL store tests skipped: {exc}")
    try:
        server.init()
        server.start()
    except Exception as exc:
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail(f"the test PostgreSQL server did not start: {exc}")
    yield server
    server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def postgres_database(postgres_server):
    """The URL of a fresh database on the session's server, dropped afterwards (its connections
    with it)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield postgres_server.create_database(name)
    with psycopg.connect(postgres_server.url(), autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["duckdb", "postgres"])
def store_target(request, tmp_path):
    """Where a test's Store lives, once per backend: a DuckDB file, or a fresh PostgreSQL database."""
    if request.param == "duckdb":
        return tmp_path / "db.duckdb"
    return request.getfixturevalue("postgres_database")


@pytest.fixture(scope="session")
def embedded_models():
    from qwen3arena.embedded import ensure_embedded_models

    cache = Path(os.environ.get("QWEN3ARENA_TEST_MODELS",
                                Path(tempfile.gettempdir()) / "qwen3arena-test-models"))
    return ensure_embedded_models(cache, on_progress=print)


def make_settings(home: Path, models_dir: Path, **overrides: str):
    from qwen3arena.config import load_settings

    home.mkdir(parents=True, exist_ok=True)
    link = home / "models"
    if not link.exists():
        link.symlink_to(models_dir, target_is_directory=True)
    env = {"QWEN3ARENA_HOME": str(home), "QWEN3ARENA__VLLM__PORT": str(free_port()),
           "QWEN3ARENA__GENERATION__TEMPERATURE": "0", "QWEN3ARENA__GENERATION__MAX_TOKENS": "48"}
    env.update({f"QWEN3ARENA__{k.upper()}": v for k, v in overrides.items()})
    return load_settings(env=env)


@pytest.fixture(scope="session")
def runtime(tmp_path_factory, embedded_models):
    """The app's services with one real vLLM server (tiny Qwen3 + two LoRA adapters)."""
    from qwen3arena.runtime import create_runtime

    models_dir = embedded_models.base_dir.parent.parent
    settings = make_settings(tmp_path_factory.mktemp("home"), models_dir)
    rt = create_runtime(settings)
    rt.start(wait=True)
    status = rt.server.status()
    assert status.state == "ready", f"vLLM failed: {status.message}\n{rt.server.log_tail()}"
    yield rt
    rt.shutdown()


@pytest.fixture(scope="session")
def app_url(runtime):
    """The web app on a free port, serving the shared runtime."""
    from qwen3arena.ui import build_app

    demo = build_app(runtime)
    demo.queue(default_concurrency_limit=8)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    demo.close()




def seed_unfinished_votes(store, model_a: str, model_b: str, prefix: str, n: int = 30) -> None:
    """n voted battles with answers of varied length and markdown, for boards that need many
    votes (style control). Their answers carry no finish reason, so the harvest never uses them."""
    from qwen3arena.store import BattleRecord

    for i in range(n):
        store.save_battle(BattleRecord(
            f"{prefix}-{i}", f"anon:{prefix}", model_a, model_b, status="ready", turns=1,
            conversation_a=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" * (10 + 7 * i)}],
            conversation_b=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "- b\n" * (1 + i % 7)}]))
        store.record_vote(f"{prefix}-{i}", ("model_a", "model_b", "tie")[i % 3], f"anon:{prefix}")


@pytest.fixture
def stubs():
    """make(*args) -> a StubEndpoint (a scripted OpenAI-compatible server), closed afterwards."""
    from openai_stub import StubEndpoint

    made: list[StubEndpoint] = []

    def make(*args, **kwargs) -> StubEndpoint:
        made.append(StubEndpoint(*args, **kwargs))
        return made[-1]

    yield make
    for stub in made:
        stub.close()
