"""The Space configuration: `python app.py` with the environment the README documents for a
Hugging Face Space (SPACE_ID set by the Space, QWEN3ARENA_HOME on attached storage, accounts
and keys from secrets) serves a public arena, a login, and no Train tab without a GPU."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx

from conftest import free_port
from qwen3arena.auth import hash_password
from qwen3arena.config import load_settings

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_app(env: dict[str, str], port: int) -> Iterator[subprocess.Popen]:
    """`python app.py` as a Space runs it; yields once the page answers, stops it after."""
    log = Path(env["QWEN3ARENA_HOME"]) / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=REPO,
                               env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert app.poll() is None, "the app exited:\n" + "\n".join(log.read_text().splitlines()[-25:])
            assert time.monotonic() < deadline, "the page did not come up"
            try:
                if httpx.get(url + "/", timeout=5).status_code in (200, 302):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        yield app
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.pid, signal.SIGKILL)
            app.wait(30)


def space_home(tmp_path: Path, embedded_models) -> Path:
    home = tmp_path / "data"
    home.mkdir()
    (home / "models").symlink_to(embedded_models.base_dir.parent.parent, target_is_directory=True)
    return home


def test_space_settings_come_from_space_yaml(tmp_path):
    settings = load_settings(env={"SPACE_ID": "someone/qwen3arena", "QWEN3ARENA_HOME": str(tmp_path)})
    assert (settings.ui.host, settings.ui.port, settings.ui.train_tab) == ("0.0.0.0", 7860, "auto")
    assert settings.auth.public and settings.home == tmp_path.resolve()
    assert settings.judge.api_key_env == "OPENAI_API_KEY"
    front = (REPO / "README.md").read_text().split("---")[1]
    assert "app_file: app.py" in front and 'python_version: "3.11"' in front and "sdk: gradio" in front
    assert "hf_oauth: true" in front


def test_the_space_configuration_starts_the_app(tmp_path, embedded_models):
    home = space_home(tmp_path, embedded_models)
    port = free_port()
    accounts = [{"username": "ann", "role": "admin", "password_hash": hash_password("pw")}]
    env = {**os.environ, "SPACE_ID": "someone/qwen3arena", "QWEN3ARENA_HOME": str(home),
           "QWEN3ARENA__AUTH__ACCOUNTS": json.dumps(accounts), "QWEN3ARENA_SECRET": "test-secret",
           "OPENAI_API_KEY": "sk-test", "QWEN3ARENA__VLLM__PORT": str(free_port()), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("QWEN3ARENA_CONFIG", None)
    url = f"http://127.0.0.1:{port}"
    with running_app(env, port):
        config = httpx.get(url + "/config", timeout=30).text  # public: anonymous visitors get the page
        assert "train-start" not in config, "no Train tab without a GPU"
        assert "chat-a" in config and "label-next" in config
        login = httpx.post(url + "/auth/login", data={"username": "ann", "password": "pw"}, timeout=30)
        assert login.status_code == 303 and "qwen3arena_session" in login.headers["set-cookie"]
        assert (home / "qwen3arena.duckdb").exists(), "data on the attached storage"


def test_hugging_face_login_on_a_space_maps_users_to_roles(tmp_path, embedded_models):
    """The whole OAuth round trip against a local OpenID provider standing in for hf.co: the
    Space's login button route, the callback, the id_token checks, then roles on the API."""
    from oidc_stub import CLIENT_ID, CLIENT_SECRET, OIDCStub
    from test_access_api import call

    provider = OIDCStub()
    home = space_home(tmp_path, embedded_models)
    port = free_port()
    env = {**os.environ, "SPACE_ID": "someone/qwen3arena", "SYSTEM": "spaces", "QWEN3ARENA_HOME": str(home),
           "QWEN3ARENA_SECRET": "test-secret", "QWEN3ARENA__VLLM__PORT": str(free_port()),
           "CUDA_VISIBLE_DEVICES": "", "OAUTH_CLIENT_ID": CLIENT_ID, "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
           "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": provider.url,
           "QWEN3ARENA__AUTH__HF_OAUTH": "true", "QWEN3ARENA__AUTH__HF_ADMINS": '["alice"]',
           "QWEN3ARENA__AUTH__HF_LABELLERS": '["bob"]'}
    env.pop("QWEN3ARENA_CONFIG", None)
    url = f"http://127.0.0.1:{port}"

    def hf_login(username: str) -> dict[str, str]:
        start = httpx.get(url + "/login/huggingface", timeout=30)
        assert start.status_code in (302, 307), start.text
        authorize = urlparse(start.headers["location"])
        assert authorize.geturl().startswith(provider.url + "/oauth/authorize")
        query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        assert query["client_id"] == CLIENT_ID
        session = {"session": start.cookies["session"]}
        code = provider.issue_code(username, query.get("nonce"))
        sep = "&" if "?" in query["redirect_uri"] else "?"
        back = httpx.get(f"{query['redirect_uri']}{sep}code={code}&state={query['state']}", cookies=session,
                         timeout=30)
        assert back.status_code in (302, 307), back.text[:500]
        return {"session": back.cookies["session"]}

    try:
        with running_app(env, port):
            assert "Sign in with Hugging Face" in httpx.get(url + "/config", timeout=30).text
            admin, labeller = hf_login("alice"), hf_login("bob")
            event, body = call(url, "models_status", [], admin)
            assert event == "complete" and '"contestants"' in body, body[:300]
            event, body = call(url, "models_status", [], labeller)
            assert event == "error" and "may not do this" in body
            event, body = call(url, "models_status", [], {})
            assert event == "error" and "Please log in" in body
            event, body = call(url, "label_campaigns", [], labeller)
            assert event == "complete", body[:300]
            stranger = hf_login("carol")  # a HF user on no list: a visitor, arena only
            event, body = call(url, "label_campaigns", [], stranger)
            assert event == "error"
    finally:
        provider.close()
