"""Roles enforced on the server: every endpoint through raw HTTP (/gradio_api/call/...) and
gradio_client, for anonymous visitors, labellers and admins, on an app with accounts."""

from __future__ import annotations

import json

import httpx
import pytest
from gradio_client import Client

from conftest import free_port
from qwen3arena.auth import AccessControl, hash_password, launch_options
from qwen3arena.config import load_settings

PASSWORD = "s3cret-pass"
ARENA = {"send", "regenerate", "new_round", "vote_model_a", "vote_model_b", "vote_tie", "vote_both_bad",
         "vote_undo", "vote_reveal", "vote_repair"}  # vote_repair checks the role itself (admin, labeller)


def _auth_settings(public: bool):
    hashed = hash_password(PASSWORD)
    accounts = [{"username": "boss", "role": "admin", "password_hash": hashed},
                {"username": "lena", "role": "labeller", "password_hash": hashed}]
    return load_settings(env={"QWEN3ARENA__AUTH__ACCOUNTS": json.dumps(accounts),
                              "QWEN3ARENA__AUTH__PUBLIC": "true" if public else "false"}).auth


def _launch(runtime, public: bool):
    from qwen3arena.ui import build_app

    access = AccessControl(_auth_settings(public), runtime.settings.home)
    demo = build_app(runtime, access=access)
    demo.queue(default_concurrency_limit=8)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(access, "qwen3arena"))
    return demo, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def public_app(runtime):
    demo, url = _launch(runtime, public=True)
    yield url
    demo.close()


def login(url: str, user: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(f"{url}/auth/login", data={"username": user, "password": password}, timeout=30)


def cookies_of(url: str, user: str | None) -> dict[str, str]:
    if user is None:
        return {}
    response = login(url, user)
    assert response.status_code == 303, response.text
    return dict(response.cookies)


def _example(parameter: dict):
    if parameter.get("type", {}).get("type") == "filepath" or "FileData" in json.dumps(parameter.get("type")):
        return None
    if parameter.get("parameter_has_default"):
        return parameter.get("parameter_default")
    return parameter.get("example_input")


def call(url: str, name: str, data: list, cookies: dict) -> tuple[str, str]:
    """One raw HTTP call: the event type that ends the stream and its data."""
    start = httpx.post(f"{url}/gradio_api/call/{name}", json={"data": data}, cookies=cookies, timeout=30)
    if start.status_code != 200:
        return f"http {start.status_code}", start.text
    event_id = start.json()["event_id"]
    stream = httpx.get(f"{url}/gradio_api/call/{name}/{event_id}", cookies=cookies, timeout=120).text
    events = [line[len("event: "):] for line in stream.splitlines() if line.startswith("event: ")]
    return (events[-1] if events else "none"), stream


def test_a_wrong_password_says_nothing_about_which_part(public_app):
    wrong_password, unknown_user = login(public_app, "boss", "nope"), login(public_app, "nobody", PASSWORD)
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert "Wrong username or password." in wrong_password.text and "Wrong username or password." in unknown_user.text
    assert "qwen3arena_session" not in wrong_password.headers.get("set-cookie", "")


def test_password_guessing_locks_the_username_not_the_others(public_app):
    # an unknown username is throttled like a real one (lockouts tell nothing about who exists)
    answers = [login(public_app, "mallory", f"guess-{i}") for i in range(5)]
    assert [a.status_code for a in answers] == [401] * 5
    locked = login(public_app, "mallory", "guess-5")
    assert locked.status_code == 429 and "Try again in 30 s" in locked.text
    assert 1 <= int(locked.headers["retry-after"]) <= 30
    assert login(public_app, "boss").status_code == 303, "another username is not locked"


def test_every_restricted_endpoint_refuses_the_wrong_role(public_app):
    admin = cookies_of(public_app, "boss")
    info = httpx.get(f"{public_app}/gradio_api/info", cookies=admin, timeout=30).json()["named_endpoints"]
    names = sorted(path.strip("/") for path in info)
    label = {n for n in names if n.startswith("label_")}
    admin_only = [n for n in names if n not in ARENA and n not in label]
    # the admin tabs' endpoints are all there (a missing tab would make this test vacuous)
    assert {"models_status", "restart_vllm", "train_start", "checkpoint_export", "judge_battles",
            "run_benchmarks", "scoreboard", "campaign_create", "campaign_progress", "round_build",
            "round_preview", "round_train", "run_status", "data_exclude", "round_export"} <= set(admin_only)
    for role, user in (("anonymous", None), ("labeller", "lena")):
        cookies = cookies_of(public_app, user)
        refused = label if role == "anonymous" else set()
        for name in admin_only + sorted(refused):
            data = [_example(p) for p in info[f"/{name}"]["parameters"]]
            event, body = call(public_app, name, data, cookies)
            assert event == "error", f"{role} called {name}: {body[:300]}"
            expected = "Please log in" if role == "anonymous" else "may not do this"
            assert expected in body, f"{role} {name}: {body[:300]}"


def test_roles_through_gradio_client(public_app, runtime):
    anonymous = Client(public_app, verbose=False)
    labeller = Client(public_app, verbose=False, httpx_kwargs={"cookies": cookies_of(public_app, "lena")})
    admin = Client(public_app, verbose=False, httpx_kwargs={"cookies": cookies_of(public_app, "boss")})
    for client in (anonymous, labeller):
        with pytest.raises(Exception, match="log in|may not do this"):
            client.predict(api_name="/models_status")
        with pytest.raises(Exception, match="log in|may not do this"):
            client.predict(api_name="/campaigns_list")
    with pytest.raises(Exception, match="log in"):
        anonymous.predict(api_name="/label_campaigns")
    labeller.predict(api_name="/label_campaigns")  # allowed
    status = admin.predict(api_name="/models_status")  # the typed API: fields, not a Markdown summary
    assert status["ok"] and status["result"]["contestants"], "Contestants up"
    result = status["result"]
    assert result["cpu"] and result["kernels"] and result["kernels"][0].startswith("_C")  # which CPU, which kernels
    # the arena is open to anonymous visitors in public mode
    result = anonymous.predict("y" * 5000, api_name="/send")
    assert "limit is 4,000" in json.dumps(result)


def test_without_public_mode_anonymous_visitors_are_sent_to_log_in(runtime):
    demo, url = _launch(runtime, public=False)
    try:
        page = httpx.get(url + "/", timeout=30)
        assert page.status_code == 302 and page.headers["location"] == "/auth/login"
        assert httpx.get(url + "/config", timeout=30).status_code == 401
        assert httpx.post(f"{url}/gradio_api/call/send", json={"data": ["hi"]}, timeout=30).status_code == 401
        cookies = cookies_of(url, "lena")
        assert httpx.get(url + "/", cookies=cookies, timeout=30).status_code == 200
        event, body = call(url, "restart_vllm", [], cookies)
        assert event == "error" and "may not do this" in body
        assert httpx.get(url + "/auth/logout", cookies=cookies, timeout=30).status_code == 303
    finally:
        demo.close()
