"""Who is asking, and may they? Accounts, roles, signed session cookies, the role guard.

Model (see README "Accounts and roles"):
- auth off (no accounts, no HF login; the local default): every visitor is an admin.
- auth on: a visitor with a valid session cookie has their account's role; anyone else is
  anonymous, admitted only when `auth.public` is true (Arena only), else sent to log in.

The guard runs on the server inside every handler (require_role), so hiding a tab is never
the protection: a call through gradio_client or raw HTTP meets the same check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import math
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

import yaml

from qwen3arena.errors import Refused
from qwen3arena.auth.passwords import DUMMY_HASH, is_password_hash, verify_password
from qwen3arena.config import AccountSpec, AuthSettings, ConfigError, _build

Role = Literal["admin", "labeller", "anonymous"]
ROLES: tuple[Role, ...] = ("admin", "labeller", "anonymous")
COOKIE = "qwen3arena_session"
WRONG_LOGIN = "Wrong username or password."
MAX_LOCKOUT_S = 3600.0


class LoginThrottled(Refused, ValueError):
    """Too many wrong passwords for one username; `retry_after_s` says when to try again."""

    def __init__(self, retry_after_s: float):
        self.retry_after_s = retry_after_s
        super().__init__(f"Too many wrong passwords for this username. Try again in "
                         f"{_duration(retry_after_s)}.")


def _duration(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


class LoginThrottle:
    """Wrong passwords in a row per username; past the limit the username is locked, for
    longer after each further miss. A right password resets it (memory only: a restart
    forgets, which costs an attacker nothing they could not get by waiting)."""

    def __init__(self, attempts: int, lockout_s: float):
        self.attempts = max(1, attempts)
        self.lockout_s = lockout_s
        self._misses: dict[str, tuple[int, float]] = {}  # username -> (misses, locked until)
        self._lock = threading.Lock()

    def check(self, username: str, now: float) -> None:
        with self._lock:
            _, until = self._misses.get(username.casefold(), (0, 0.0))
        if until > now:
            raise LoginThrottled(until - now)

    def failed(self, username: str, now: float) -> None:
        key = username.casefold()
        with self._lock:
            misses, _ = self._misses.get(key, (0, 0.0))
            misses += 1
            over = misses - self.attempts
            until = now + min(self.lockout_s * 2 ** over, MAX_LOCKOUT_S) if over >= 0 else 0.0
            self._misses[key] = (misses, until)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._misses.pop(username.casefold(), None)


class LoginFailed(Refused, ValueError):
    """The login was refused; the message is the same whichever part was wrong."""


class Forbidden(Refused, PermissionError):
    """The caller's role may not do this; the message is safe to show."""


@dataclass(frozen=True)
class User:
    name: str | None          # account or HF username; None: anonymous
    role: Role
    via: Literal["local", "account", "huggingface", "anonymous"] = "account"

    @property
    def voter(self) -> str | None:
        """The voter id prefix for votes (None: the arena derives one from the session)."""
        return f"user:{self.name}" if self.name else None


LOCAL_ADMIN = User(None, "admin", "local")
ANONYMOUS = User(None, "anonymous", "anonymous")


def load_accounts(settings: AuthSettings) -> dict[str, AccountSpec]:
    """Accounts from the config (and env) plus `accounts_file`; refuses plain-text passwords."""
    accounts = list(settings.accounts)
    if settings.accounts_file:
        path = Path(settings.accounts_file).expanduser()
        try:
            raw = yaml.safe_load(path.read_text()) or []
        except FileNotFoundError as exc:
            raise ConfigError(f"auth.accounts_file: {path} not found") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"auth.accounts_file: {path} is not valid YAML: {exc}") from exc
        if isinstance(raw, Mapping):
            raw = raw.get("accounts", [])
        if not isinstance(raw, list):
            raise ConfigError(f"auth.accounts_file: {path} must hold a list of accounts")
        accounts += [_build(AccountSpec, item, f"{path}[{i}]") for i, item in enumerate(raw)]
    book: dict[str, AccountSpec] = {}
    for account in accounts:
        if not account.username.strip():
            raise ConfigError("auth.accounts: an account has an empty username")
        if not is_password_hash(account.password_hash):
            raise ConfigError(
                f"auth.accounts: {account.username!r} has no password hash (plain passwords are not "
                "accepted); make one with `python -m qwen3arena hash-password`")
        if account.username in book:
            raise ConfigError(f"auth.accounts: {account.username!r} appears twice")
        book[account.username] = account
    return book


class AccessControl:
    """Logins, sessions and role checks for one app. Holds no per-request state; the only
    state is the count of wrong passwords per username."""

    def __init__(self, settings: AuthSettings, home: Path | None = None,
                 secret: bytes | None = None, env: Mapping[str, str] | None = None):
        self.settings = settings
        self.accounts = load_accounts(settings)
        self.enabled = settings.enabled
        env = os.environ if env is None else env
        self._secret = secret or _secret(settings, home, env)
        self.throttle = LoginThrottle(settings.login_attempts, settings.lockout_s)

    # -- logins and sessions ----------------------------------------------------------------

    def login(self, username: str, password: str, now: float | None = None) -> User:
        """Checks a username and password; LoginFailed with one message for any mistake, and
        LoginThrottled (even for the right password) while the username is locked."""
        username = (username or "").strip()
        now = time.time() if now is None else now
        self.throttle.check(username, now)
        account = self.accounts.get(username)
        # an unknown user still pays for a hash, and is throttled alike, so neither timing nor
        # lockouts tell which usernames exist
        ok = verify_password(password or "", account.password_hash if account else DUMMY_HASH)
        if account is None or not ok:
            self.throttle.failed(username, now)
            raise LoginFailed(WRONG_LOGIN)
        self.throttle.succeeded(username)
        return User(account.username, account.role, "account")

    def session_token(self, user: User, now: float | None = None) -> str:
        """A signed, expiring cookie value naming the user (the role is looked up on use)."""
        expires = int((now or time.time()) + self.settings.session_hours * 3600)
        body = base64.urlsafe_b64encode(json.dumps({"u": user.name, "exp": expires}).encode()).decode()
        return f"{body}.{self._sign(body)}"

    def user_from_token(self, token: str | None, now: float | None = None) -> User | None:
        """The account a cookie names, if its signature holds, it has not expired and the
        account still exists (removing an account ends its sessions)."""
        if not token or "." not in token:
            return None
        body, signature = token.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError:
            return None
        if data.get("exp", 0) < (now or time.time()):
            return None
        account = self.accounts.get(data.get("u"))
        return User(account.username, account.role, "account") if account else None

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()

    def user_from_hf(self, session: Mapping[str, Any] | None) -> User | None:
        """The role of a Hugging Face login (gradio keeps it in the session under oauth_info)."""
        if not self.settings.hf_oauth or not session:
            return None
        info = session.get("oauth_info") or {}
        name = (info.get("userinfo") or {}).get("preferred_username")
        if not name:
            return None
        if name in self.settings.hf_admins:
            return User(name, "admin", "huggingface")
        if name in self.settings.hf_labellers or "*" in self.settings.hf_labellers:
            return User(name, "labeller", "huggingface")
        return User(name, "anonymous", "huggingface")

    # -- who is asking ----------------------------------------------------------------------

    def identify(self, cookies: Mapping[str, str], session: Mapping[str, Any] | None = None) -> User:
        """The caller of one HTTP request: LOCAL_ADMIN when auth is off."""
        if not self.enabled:
            return LOCAL_ADMIN
        return self.user_from_token(cookies.get(COOKIE)) or self.user_from_hf(session) or ANONYMOUS

    def admits(self, user: User) -> bool:
        """Whether the app lets this caller in at all (anonymous only in public mode)."""
        return user.role != "anonymous" or self.settings.public or not self.enabled

    def user_for(self, request: Any) -> User:
        """The caller of a Gradio handler (gr.Request), from the cookies of the HTTP request
        that started the event; never from anything the browser sends as an input."""
        if not self.enabled:
            return LOCAL_ADMIN
        if request is None:
            return ANONYMOUS
        inner = getattr(request, "request", None)
        cookies = getattr(inner, "cookies", None)
        if cookies is None:
            cookies = _cookies_from_headers(getattr(request, "headers", None) or {})
        session = None
        if inner is not None and "session" in getattr(inner, "scope", {}):
            session = inner.session
        return self.identify(cookies, session)

    def require_role(self, request: Any, *roles: Role) -> User:
        """The caller, if their role is one of `roles`; Forbidden otherwise. Every handler that
        is not for everyone calls this first."""
        user = self.user_for(request)
        if user.role not in roles or not self.admits(user):
            if user.role == "anonymous":
                raise Forbidden("Please log in: this needs an account.")
            raise Forbidden(f"Your account ({user.role}) may not do this.")
        return user


def roles_at_least(role: Role) -> tuple[Role, ...]:
    """admin ⊃ labeller ⊃ anonymous."""
    return ROLES[: ROLES.index(role) + 1]


def _cookies_from_headers(headers: Mapping[str, str] | Iterable) -> dict[str, str]:
    raw = ""
    if isinstance(headers, Mapping):
        raw = headers.get("cookie", "") or headers.get("Cookie", "")
    cookies = {}
    for part in raw.split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            cookies[key.strip()] = value.strip()
    return cookies


def _secret(settings: AuthSettings, home: Path | None, env: Mapping[str, str]) -> bytes:
    """The cookie-signing key: the secret variable if set, else a random key kept in the data
    directory (so logins survive a restart), else a key for this process only."""
    if settings.secret_env and env.get(settings.secret_env):
        return env[settings.secret_env].encode()
    if home is None:
        return secrets.token_bytes(32)
    path = Path(home) / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process wrote it first
            return path.read_text().strip().encode()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
