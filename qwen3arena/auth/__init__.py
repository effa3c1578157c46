"""Accounts, roles and the server-side role guard (see access.py for the model)."""

from qwen3arena.auth.access import (
    ANONYMOUS,
    COOKIE,
    LOCAL_ADMIN,
    ROLES,
    WRONG_LOGIN,
    AccessControl,
    Forbidden,
    LoginFailed,
    LoginThrottled,
    Role,
    User,
    load_accounts,
    roles_at_least,
)
from qwen3arena.auth.passwords import hash_password, verify_password
from qwen3arena.auth.web import LOGIN_PATH, LOGOUT_PATH, launch_options

__all__ = [
    "ANONYMOUS", "COOKIE", "LOCAL_ADMIN", "LOGIN_PATH", "LOGOUT_PATH", "ROLES", "WRONG_LOGIN",
    "AccessControl", "Forbidden", "LoginFailed", "LoginThrottled", "Role", "User", "hash_password", "launch_options",
    "load_accounts", "roles_at_least", "verify_password",
]
