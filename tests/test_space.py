"""The Space configuration: `python app.py` with the environment the README documents for a
Hugging Face Space (SPACE_ID set by the Space, QWEN3ARENA_HOME on attached storage, accounts
and keys from secrets) serves a public arena, a login, and no Train tab without a GPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import free_port
from qwen3arena.auth import hash_password
from qwen3arena.config import load_settings

REPO = Path(__file__).resolve().parents[1]


def test_space_settings_come_from_space_yaml(tmp_path):
    settings = load_settings(env={"SPACE_ID": "someone/qwen3arena", "QWEN3ARENA_HOME": str(tmp_path)})
    assert (settings.ui.host, settings.ui.port, settings.ui.train_tab) == ("0.0.0.0", 7860, "auto")
    assert settings.auth.public and settings.home == tmp_path.resolve()
    assert settings.judge.api_key_env == "OPENAI_API_KEY"
    front = (REPO / "README.md").read_text().split("---")[1]
    assert "app_file: app.py" in front and 'python_version: "3.11"' in front and "sdk: gradio" in front


def test_the_space_configuration_starts_the_app(tmp_path, embedded_models):
    home = tmp_path / "data"
    home.mkdir()
    (home / "models").symlink_to(embedded_models.base_dir.parent.parent, target_is_directory=True)
    port = free_port()
    accounts = [{"username": "ann", "role": "admin", "password_hash": hash_password("pw")}]
    env = {**os.environ, "SPACE_ID": "someone/qwen3arena", "QWEN3ARENA_HOME": str(home),
           "QWEN3ARENA__AUTH__ACCOUNTS": json.dumps(accounts), "QWEN3ARENA_SECRET": "test-secret",
           "OPENAI_API_KEY": "sk-test", "QWEN3ARENA__VLLM__PORT": str(free_port()), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("QWEN3ARENA_CONFIG", None)
    app = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=REPO,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert app.poll() is None, "the app exited"
            assert time.monotonic() < deadline, "the page did not come up"
            try:
                if httpx.get(url + "/", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        config = httpx.get(url + "/config", timeout=30).text  # public: anonymous visitors get the page
        assert "train-start" not in config, "no Train tab without a GPU"
        assert "chat-a" in config and "label-next" in config
        login = httpx.post(url + "/auth/login", data={"username": "ann", "password": "pw"}, timeout=30)
        assert login.status_code == 303 and "qwen3arena_session" in login.headers["set-cookie"]
        assert (home / "qwen3arena.duckdb").exists(), "data on the attached storage"
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait(30)
