"""Accounts, password hashes, session cookies and the role guard (no server needed)."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import pytest

from qwen3arena.auth import (
    WRONG_LOGIN,
    AccessControl,
    Forbidden,
    LoginFailed,
    LoginThrottled,
    hash_password,
    verify_password,
)
from qwen3arena.auth.access import COOKIE
from qwen3arena.config import ConfigError, load_settings

PASSWORD = "correct horse"


def _settings(tmp_path, public: bool = False, **extra: str):
    hashed = hash_password(PASSWORD)
    accounts = [{"username": "ann", "role": "admin", "password_hash": hashed},
                {"username": "lab", "role": "labeller", "password_hash": hashed}]
    env = {"QWEN3ARENA_HOME": str(tmp_path), "QWEN3ARENA__AUTH__ACCOUNTS": json.dumps(accounts),
           "QWEN3ARENA__AUTH__PUBLIC": "true" if public else "false", **extra}
    return load_settings(env=env)


def _request(access: AccessControl, user: str | None):
    cookies = {}
    if user:
        cookies[COOKIE] = access.session_token(access.login(user, PASSWORD))
    return SimpleNamespace(request=SimpleNamespace(cookies=cookies, scope={}), headers={})


def test_hashes_are_salted_and_verify_only_the_right_password():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second, "a per-password salt"
    assert PASSWORD not in first
    assert verify_password(PASSWORD, first) and verify_password(PASSWORD, second)
    assert not verify_password("correct horse ", first)
    assert not verify_password(PASSWORD, "scrypt$1$2$3$bad$hash")


def test_wrong_password_and_unknown_user_get_the_same_message(tmp_path):
    access = AccessControl(_settings(tmp_path).auth, tmp_path)
    with pytest.raises(LoginFailed) as wrong_password:
        access.login("ann", "nope")
    with pytest.raises(LoginFailed) as unknown_user:
        access.login("nobody", PASSWORD)
    assert str(wrong_password.value) == str(unknown_user.value) == WRONG_LOGIN
    assert access.login(" ann ", PASSWORD).role == "admin"


def test_wrong_passwords_lock_the_username_for_longer_each_time(tmp_path):
    access = AccessControl(_settings(tmp_path, QWEN3ARENA__AUTH__LOGIN_ATTEMPTS="3",
                                     QWEN3ARENA__AUTH__LOCKOUT_S="10").auth, tmp_path)
    for _ in range(3):
        with pytest.raises(LoginFailed):
            access.login("ann", "nope", now=100.0)
    # locked: even the right password is refused until the lock ends
    with pytest.raises(LoginThrottled, match="Try again in 10 s") as locked:
        access.login("ANN", PASSWORD, now=100.0)
    assert locked.value.retry_after_s == 10.0
    assert access.login("lab", PASSWORD, now=100.0).role == "labeller", "other usernames are not locked"
    # one more miss after the lock doubles it
    with pytest.raises(LoginFailed):
        access.login("ann", "nope", now=111.0)
    with pytest.raises(LoginThrottled, match="20 s"):
        access.login("ann", PASSWORD, now=111.0)
    # the right password once the lock ends clears the count
    assert access.login("ann", PASSWORD, now=131.5).role == "admin"
    with pytest.raises(LoginFailed):
        access.login("ann", "nope", now=132.0)
    assert access.login("ann", PASSWORD, now=132.0).role == "admin"


def test_lockouts_stop_growing_at_an_hour(tmp_path):
    access = AccessControl(_settings(tmp_path, QWEN3ARENA__AUTH__LOGIN_ATTEMPTS="1").auth, tmp_path)
    now = 0.0
    for _ in range(20):  # 10 misses: 30 s doubled 9 times would be over 4 hours
        try:
            access.login("nobody", "x", now=now)
        except LoginThrottled as exc:
            now += exc.retry_after_s
        except LoginFailed:
            pass
    with pytest.raises(LoginFailed):
        access.login("nobody", "x", now=now)
    with pytest.raises(LoginThrottled) as locked:
        access.login("nobody", "x", now=now)
    assert locked.value.retry_after_s == 3600.0 and "60 min" in str(locked.value)


def test_plain_passwords_in_the_config_are_refused(tmp_path):
    plain = '[{username: x, role: admin, password_hash: "hunter2"}]'
    settings = load_settings(env={"QWEN3ARENA__AUTH__ACCOUNTS": plain})
    with pytest.raises(ConfigError, match="hash-password"):
        AccessControl(settings.auth, tmp_path)
    with pytest.raises(ConfigError):
        load_settings(env={"QWEN3ARENA__AUTH__ACCOUNTS": '[{username: x, role: root, password_hash: "a"}]'})


def test_accounts_file_is_merged(tmp_path):
    path = tmp_path / "accounts.yaml"
    path.write_text(f"- {{username: zed, role: labeller, password_hash: '{hash_password('pw')}'}}\n")
    access = AccessControl(_settings(tmp_path, QWEN3ARENA__AUTH__ACCOUNTS_FILE=str(path)).auth, tmp_path)
    assert access.login("zed", "pw").role == "labeller"
    assert access.login("ann", PASSWORD).role == "admin"


def test_session_cookies_are_signed_expire_and_end_with_the_account(tmp_path):
    settings = _settings(tmp_path)
    access = AccessControl(settings.auth, tmp_path)
    token = access.session_token(access.login("lab", PASSWORD), now=1000.0)
    assert access.user_from_token(token, now=1001.0).name == "lab"
    assert access.user_from_token(token, now=1000.0 + 13 * 3600) is None, "expired after session_hours"
    body, signature = token.rsplit(".", 1)
    claims = json.loads(base64.urlsafe_b64decode(body))
    as_admin = base64.urlsafe_b64encode(json.dumps({**claims, "u": "ann"}).encode()).decode()
    assert access.user_from_token(f"{as_admin}.{signature}", now=1001.0) is None, "a changed name fails"
    assert access.user_from_token(body + "." + "0" * 64, now=1001.0) is None
    # the same key from the data directory: a restart keeps sessions
    again = AccessControl(settings.auth, tmp_path)
    assert again.user_from_token(token, now=1001.0).name == "lab"
    # another key (another deployment) does not accept it
    other = AccessControl(settings.auth, tmp_path / "elsewhere")
    assert other.user_from_token(token, now=1001.0) is None
    # removing the account ends its sessions
    alone = AccessControl(_settings(tmp_path / "x").auth, tmp_path)
    alone.accounts.pop("lab")
    assert alone.user_from_token(token, now=1001.0) is None


def test_roles_are_checked_on_the_request_cookie(tmp_path):
    access = AccessControl(_settings(tmp_path, public=True).auth, tmp_path)
    assert access.require_role(_request(access, "ann"), "admin").name == "ann"
    with pytest.raises(Forbidden, match="labeller"):
        access.require_role(_request(access, "lab"), "admin")
    assert access.require_role(_request(access, "lab"), "admin", "labeller").role == "labeller"
    with pytest.raises(Forbidden, match="log in"):
        access.require_role(_request(access, None), "admin", "labeller")
    assert access.require_role(_request(access, None), "admin", "labeller", "anonymous").role == "anonymous"
    private = AccessControl(_settings(tmp_path).auth, tmp_path)
    assert not private.admits(private.user_for(_request(private, None)))


def test_auth_off_means_everyone_is_admin(tmp_path):
    access = AccessControl(load_settings(env={}).auth, tmp_path)
    assert not access.enabled
    assert access.require_role(SimpleNamespace(request=None, headers={}), "admin").role == "admin"


def test_hugging_face_logins_get_roles_from_the_lists(tmp_path):
    settings = load_settings(env={"QWEN3ARENA__AUTH__HF_OAUTH": "true", "QWEN3ARENA__AUTH__HF_ADMINS": "[boss]",
                                  "QWEN3ARENA__AUTH__HF_LABELLERS": "[kim]", "QWEN3ARENA__AUTH__PUBLIC": "true"})
    access = AccessControl(settings.auth, tmp_path)

    def session(name):
        return {"oauth_info": {"userinfo": {"preferred_username": name}}}

    assert access.identify({}, session("boss")).role == "admin"
    assert access.identify({}, session("kim")).role == "labeller"
    assert access.identify({}, session("someone")).role == "anonymous"
    assert access.identify({}, None).role == "anonymous"
