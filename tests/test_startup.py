"""Start-up (issue 18): the page says what is being built or started and how far it is; vLLM
starts on the base while the adapters still train; an interrupted build resumes; the app
refuses in one line when its database is held by a reader or its data directory is read-only;
Gradio's analytics are off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import make_settings
from qwen3arena import embedded
from qwen3arena.config import VLLMSettings
from qwen3arena.serve import VLLMServer
from test_supervision import fake_command, wait_for

REPO = Path(__file__).resolve().parents[1]
ADAPTER_NAMES = list(embedded.ADAPTERS)


class FakeBuild:
    """Stands in for the minutes of training: the base and each adapter are written at once,
    with the progress events the real build reports; `during` runs while adapter 2 trains."""

    def __init__(self, fail_adapter: str | None = None):
        self.events: list[str] = []
        self.fail_adapter = fail_adapter
        self.during = None

    def base(self, out_dir: Path, texts, conversations, spec, on_progress) -> Path:
        self.events.append("build base")
        out_dir.mkdir(parents=True, exist_ok=True)
        on_progress(0, spec.train_steps, float("nan"))
        on_progress(spec.train_steps, spec.train_steps, 0.5)
        return out_dir

    def adapter(self, name, dataset, base_dir, out, key, label, on_progress, step) -> None:
        if name == self.fail_adapter:
            raise RuntimeError("interrupted")
        self.events.append(f"train {name}")
        step(embedded.BuildStep(key, label, "running", 60, 150))
        if name == ADAPTER_NAMES[1] and self.during:
            self.during()
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text(json.dumps({"r": 16}))
        step(embedded.BuildStep(key, label, "done", 150, 150))


@pytest.fixture
def fake_build(monkeypatch) -> FakeBuild:
    build = FakeBuild()
    monkeypatch.setattr(embedded, "build_tiny_qwen3", build.base)
    monkeypatch.setattr(embedded, "_train_adapter", build.adapter)
    return build


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path, monkeypatch, fake_build):
    fake_build.fail_adapter = ADAPTER_NAMES[1]
    with pytest.raises(RuntimeError):
        embedded.ensure_embedded_models(tmp_path)
    assert fake_build.events == ["build base", f"train {ADAPTER_NAMES[0]}"]
    fake_build.fail_adapter, fake_build.events = None, []
    steps: list[embedded.BuildStep] = []
    embedded.ensure_embedded_models(tmp_path, on_step=steps.append)
    assert fake_build.events == [f"train {ADAPTER_NAMES[1]}"]  # the base and adapter 1 are kept
    assert [(s.key, s.state) for s in steps if s.state == "reused"] == [
        ("tokenizer", "reused"), ("base", "reused"), ("adapter-1", "reused")]
    fake_build.events = []
    embedded.ensure_embedded_models(tmp_path)
    assert fake_build.events == []  # complete: nothing is built again


def test_vllm_starts_while_the_adapters_train_and_the_page_shows_each_step(tmp_path, monkeypatch, fake_build):
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui.app import readiness

    monkeypatch.setattr(VLLMServer, "command", fake_command)
    models = tmp_path / "models"
    models.mkdir()
    runtime = create_runtime(make_settings(tmp_path / "home", models))
    seen: dict[str, str] = {}

    def while_adapter_2_trains() -> None:
        # vLLM was started on the base before this adapter's training: wait until it is up
        wait_for(lambda: runtime.server.status().state == "ready", 60, "vLLM on the base")
        wait_for(lambda: len(runtime.pool.available()) == 2, 60, "adapter 1 served")
        seen["line"] = readiness(runtime)  # two models up: the arena opens before the build ends
        seen["progress"] = runtime.progress
        seen["steps"] = "\n".join(f"{s.key}:{s.state}:{s.step}/{s.total}" for s in runtime.startup_steps())

    fake_build.during = while_adapter_2_trains
    try:
        runtime.start()
        wait_for(lambda: "line" in seen, 150, "adapter 2's training")
        assert seen["line"] == "", seen["line"]
        assert "training adapter 2/2: 60/150" in seen["progress"], seen["progress"]
        assert "vllm:done" in seen["steps"] and "adapter-1:done" in seen["steps"], seen["steps"]
        wait_for(lambda: runtime._ready_after is not None, 60, "start-up to finish")
        assert len(runtime.pool.available()) == 3
        assert runtime.progress.startswith("ready in"), runtime.progress
    finally:
        runtime.shutdown()


def test_the_starting_line_lists_the_steps_without_naming_a_model(tmp_path, monkeypatch, fake_build):
    """What a visitor reads during a cold start: each step with how far it is."""
    from qwen3arena.runtime import create_runtime
    from qwen3arena.ui.app import readiness

    monkeypatch.setattr(VLLMServer, "command", fake_command)
    models = tmp_path / "models"
    models.mkdir()
    runtime = create_runtime(make_settings(tmp_path / "home", models))
    lines: list[str] = []

    def hold_adapter_1(name, dataset, base_dir, out, key, label, on_progress, step):
        step(embedded.BuildStep(key, label, "running", 60, 150))
        wait_for(lambda: runtime.steps.state("vllm") == "running", 60, "vLLM started")
        lines.append(readiness(runtime))
        fake_build.adapter(name, dataset, base_dir, out, key, label, on_progress, step)

    monkeypatch.setattr(embedded, "_train_adapter", hold_adapter_1)
    try:
        runtime.start(wait=True)
    finally:
        runtime.shutdown()
    line = lines[0]
    assert line.startswith("⏳ **Getting the models ready**"), line
    for expected in ("✅ building tokenizer", "✅ training base model · 300/300", "⏳ training adapter 1/2 · 60/150",
                     "◻️ training adapter 2/2", "starting vLLM", "◻️ loading adapters · 0/2"):
        assert expected in line, (expected, line)
    assert not [n for n in ADAPTER_NAMES + ["tiny-qwen3-base"] if n in line], line


def test_a_warm_start_shows_the_built_parts_as_built_earlier(tmp_path, monkeypatch, fake_build):
    from qwen3arena.runtime import create_runtime

    monkeypatch.setattr(VLLMServer, "command", fake_command)
    models = tmp_path / "models"
    models.mkdir()
    embedded.ensure_embedded_models(models)
    fake_build.events = []
    runtime = create_runtime(make_settings(tmp_path / "home", models))
    try:
        runtime.start(wait=True)
        assert fake_build.events == []
        states = {s.key: s.state for s in runtime.startup_steps()}
        assert states == {"tokenizer": "reused", "base": "reused", "adapter-1": "reused", "adapter-2": "reused",
                          "vllm": "done", "adapters": "done"}, states
        assert "training base model: built earlier" in runtime.progress
    finally:
        runtime.shutdown()


# -- the vLLM command line ------------------------------------------------------------------

def test_gpu_memory_utilization_is_passed_on_cuda_only(tmp_path):
    settings = VLLMSettings(gpu_memory_utilization=0.55, kv_cache_gib=3)
    on_gpu = VLLMServer(settings, "m", "m", tmp_path, cuda=True).command()
    on_cpu = VLLMServer(settings, "m", "m", tmp_path, cuda=False).command()
    assert on_gpu[on_gpu.index("--gpu-memory-utilization") + 1] == "0.55"
    assert "--gpu-memory-utilization" not in on_cpu  # the CPU sizes its cache by VLLM_CPU_KVCACHE_SPACE
    assert [a for a in on_gpu if a != "--gpu-memory-utilization" and a != "0.55"] == on_cpu


# -- refusals at start ------------------------------------------------------------------------

READER = ("import duckdb, sys, time\n"
          "con = duckdb.connect(sys.argv[1], read_only=True)\n"
          "print('open', flush=True)\n"
          "time.sleep(float(sys.argv[2]))\n")


def _reader(path: Path, hold_s: float) -> subprocess.Popen:
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), str(hold_s)], stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "open"
    return reader


def _start_app(home: Path, capsys, monkeypatch) -> tuple[int, str]:
    """`python app.py` in this process (its start-up until the refusal): exit code and stderr."""
    from qwen3arena.__main__ import main

    monkeypatch.setenv("QWEN3ARENA_HOME", str(home))
    code = main(["app"])
    return code, capsys.readouterr().err


def _seed(home: Path) -> Path:
    from qwen3arena.store import Store

    home.mkdir(parents=True, exist_ok=True)
    Store(home / "qwen3arena.duckdb").close()
    return home / "qwen3arena.duckdb"


def test_a_read_only_reader_of_the_database_gets_a_one_line_refusal_naming_it(tmp_path, capsys, monkeypatch):
    import qwen3arena.store.backends as backends

    monkeypatch.setattr(backends, "LOCK_WAIT_S", 0.5)
    path = _seed(tmp_path / "home")
    reader = _reader(path, 60)
    try:
        code, err = _start_app(tmp_path / "home", capsys, monkeypatch)
    finally:
        reader.kill()
        reader.wait()
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"PID {reader.pid}" in err and "read-only" in err and "close that reader" in err, err
    assert "docs/store.md" in err


def test_a_reader_that_lets_go_within_seconds_does_not_stop_the_start(tmp_path):
    from qwen3arena.store import Store

    path = _seed(tmp_path / "home")
    reader = _reader(path, 1.5)
    started = time.monotonic()
    store = Store(path)  # waits for the reader instead of refusing
    assert 1.0 < time.monotonic() - started < 10
    store.close()
    reader.wait()


def test_a_copy_read_while_the_app_writes_is_the_documented_way_to_read(tmp_path):
    """docs/store.md: copy qwen3arena.duckdb and its .wal, open the copy read-only."""
    import duckdb

    from qwen3arena.store import ModelRecord, Store

    home = tmp_path / "home"
    store = Store(_seed(home))
    store.upsert_model(ModelRecord("m1", "base"))
    copy = tmp_path / "copy"
    copy.mkdir()
    subprocess.run(f"cp {home}/qwen3arena.duckdb* {copy}/", shell=True, check=True)  # as the docs say
    con = duckdb.connect(str(copy / "qwen3arena.duckdb"), read_only=True)
    assert con.execute("SELECT name FROM models").fetchall() == [("m1",)]
    con.close()
    store.upsert_model(ModelRecord("m2", "base"))  # the app goes on writing
    store.close()


def _make_read_only(path: Path) -> None:
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
    elif subprocess.run(["chattr", "-R", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("root here, and chattr +i is not available to make a directory read-only")


def _make_writable(path: Path) -> None:
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=True)
    else:
        subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("case", ["new", "used"])
def test_a_read_only_data_directory_gets_a_one_line_refusal(tmp_path, capsys, monkeypatch, case):
    parent = tmp_path / "ro"
    parent.mkdir()
    home = parent / "home"  # new: it cannot even be created
    if case == "used":
        _seed(home)
    _make_read_only(parent)
    try:
        code, err = _start_app(home, capsys, monkeypatch)
    finally:
        _make_writable(parent)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot be written" in err and "QWEN3ARENA_HOME" in err and str(home) in err, err


# -- analytics ---------------------------------------------------------------------------------

def test_gradio_analytics_are_off_in_the_running_app(app_url):
    assert httpx.get(f"{app_url}/config", timeout=30).json()["analytics_enabled"] is False


def test_the_setting_wins_over_gradio_s_environment_variable(runtime, monkeypatch):
    from conftest import free_port
    from qwen3arena.ui import build_app

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")  # Gradio's own default when unset
    demo = build_app(runtime)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/config", timeout=30).json()["analytics_enabled"] is False
    finally:
        demo.close()
